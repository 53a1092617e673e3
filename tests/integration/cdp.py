# -*- test-case-name: tests.integration.test_status_page -*-
"""
Headless Chromium driven over the DevTools protocol on a pipe
(C{--remote-debugging-pipe}: commands go to the browser's file descriptor 3,
answers and events come from its descriptor 4, each a JSON object ended by a
NUL byte). Enough to open a page, read what it renders as it changes, and
collect what it logged (console messages, CSP violations), in real time.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from .helpers import reactor
from .test_browser import CHROMIUM_FLAGS, EXIT_TIMEOUT, chromium_profile, no_strays

__all__ = ["Chromium", "start_chromium"]

#: How long one DevTools command may take.
COMMAND_TIMEOUT = 10.0


class _Pipe(ProcessProtocol):
    """The browser process: its output, and the DevTools messages on fd 4."""

    def __init__(self) -> None:
        self.err = bytearray()
        self.ended: Deferred[None] = Deferred()
        self.running = True
        self.events: list[dict[str, Any]] = []
        self._buffer = b""
        self._next_id = 1
        self._pending: dict[int, Deferred[dict[str, Any]]] = {}

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD != 4:
            self.err += data[-4096:]
            del self.err[:-65536]
            return
        self._buffer += data
        *messages, self._buffer = self._buffer.split(b"\0")
        for raw in messages:
            message = json.loads(raw)
            pending = self._pending.pop(message.get("id", -1), None)
            if pending is None:
                self.events.append(message)
            elif "error" in message:
                pending.errback(FailTest(f"DevTools error: {message['error']}"))
            else:
                pending.callback(message.get("result", {}))

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> Deferred[dict[str, Any]]:
        assert self.transport is not None
        command: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session is not None:
            command["sessionId"] = session
        d: Deferred[dict[str, Any]] = Deferred()
        self._pending[self._next_id] = d
        self._next_id += 1
        self.transport.writeToChild(3, json.dumps(command).encode() + b"\0")
        d.addTimeout(COMMAND_TIMEOUT, reactor)
        return d

    def processEnded(self, reason: Failure) -> None:
        self.running = False
        for d in self._pending.values():
            d.errback(FailTest(f"Chromium ended: {reason.value}; stderr {self.err[-2000:].decode(errors='replace')}"))
        self._pending.clear()
        self.ended.callback(None)


class Chromium:
    """
    One headless Chromium with a fresh profile and one page, attached.

    @ivar session: the DevTools session of the page.
    """

    def __init__(self, pipe: _Pipe, transport: IProcessTransport, marker: str) -> None:
        self._pipe = pipe
        self._transport = transport
        self._marker = marker
        self.session = ""

    @property
    def stderr(self) -> str:
        """The end of what the browser wrote to standard error."""
        text = self._pipe.err.decode("utf-8", "replace")
        return "\n".join(line for line in text.splitlines() if "dbus/" not in line)[-3000:]

    def logged(self) -> list[str]:
        """What the page logged: console messages and browser log entries (CSP violations...)."""
        lines = []
        for event in self._pipe.events:
            params = event.get("params", {})
            if event.get("method") == "Runtime.consoleAPICalled":
                args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
                lines.append(f"console.{params.get('type')}: {' '.join(args)}")
            elif event.get("method") == "Runtime.exceptionThrown":
                lines.append(f"exception: {params.get('exceptionDetails', {}).get('text')}")
            elif event.get("method") == "Log.entryAdded":
                entry = params.get("entry", {})
                lines.append(f"{entry.get('source')}/{entry.get('level')}: {entry.get('text')} {entry.get('url', '')}")
        return lines

    async def attach(self) -> None:
        """Attach to the browser's page and enable its runtime and log events."""
        deadline = time.monotonic() + COMMAND_TIMEOUT
        while True:
            targets = (await self._pipe.send("Target.getTargets"))["targetInfos"]
            pages = [t for t in targets if t["type"] == "page"]
            if pages:
                break
            if time.monotonic() > deadline:
                raise FailTest(f"Chromium opened no page: {targets}")
            await deferLater(reactor, 0.1, lambda: None)
        attached = await self._pipe.send("Target.attachToTarget", {"targetId": pages[0]["targetId"], "flatten": True})
        self.session = attached["sessionId"]
        await self.send("Runtime.enable")
        await self.send("Log.enable")

    def send(self, method: str, params: dict[str, Any] | None = None) -> Deferred[dict[str, Any]]:
        """A DevTools command to the page."""
        return self._pipe.send(method, params, self.session)

    async def navigate(self, url: str) -> None:
        """Open C{url} in the page."""
        result = await self.send("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise FailTest(f"Chromium could not open {url}: {result['errorText']}")

    async def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (JSON-able)."""
        result = await self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in result:
            raise FailTest(f"{expression!r} failed in the page: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def close(self) -> None:
        """Kill the browser, and wait until every process of its profile is gone."""
        if self._pipe.running:
            self._transport.signalProcess("KILL")
            done: Deferred[None] = Deferred()
            self._pipe.ended.addBoth(lambda _: done.callback(None))
            done.addTimeout(EXIT_TIMEOUT, reactor)
            try:
                await done
            except TimeoutError:
                raise FailTest("Chromium did not end once killed") from None
        await no_strays(self._marker)


async def start_chromium(case: TestCase) -> Chromium:
    """
    Start headless Chromium on a blank page with a fresh profile, attached
    over the DevTools pipe; it is killed at test cleanup.
    """
    executable = shutil.which("chromium")
    assert executable is not None
    profile, marker = chromium_profile(case)
    argv = [executable, *CHROMIUM_FLAGS, "--remote-debugging-pipe", marker, "about:blank"]
    env = {"HOME": profile, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    pipe = _Pipe()
    transport = _reactor.spawnProcess(
        pipe, executable, argv, env=env, childFDs={0: "w", 1: "r", 2: "r", 3: "w", 4: "r"}
    )
    chromium = Chromium(pipe, transport, marker)
    case.addCleanup(chromium.close)
    await chromium.attach()
    return chromium
