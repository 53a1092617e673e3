# -*- test-case-name: tests.integration.test_browser -*-
"""
MQTT.js, the JavaScript client, against an mqtt-ws listener: in a real
browser (Debian's headless Chromium, on the page in C{tests/browser/}) and in
Node.js (C{tests/browser/node_client.js}).

They need C{chromium}, C{node} and the npm package
(C{npm ci --prefix tests/browser}); without them the tests are skipped, unless
the environment variable C{CI} is set: CI must run them, so there they fail.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import uuid
from typing import Any
from urllib.parse import urlencode

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.python.filepath import FilePath
from twisted.trial.unittest import FailTest, SkipTest, TestCase
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from mqttx.config import WebSocketConfig
from mqttx.transports.mqtt import MQTTServerFactory
from mqttx.transports.websocket import MQTTWebSocketFactory

from .helpers import HOST, V5, IntegrationTestCase, Received, RunningProcess, reactor, spawn

#: The npm package (C{package.json}, its lock file), the page and the Node.js client.
BROWSER_DIR = FilePath(__file__).parent().sibling("browser")
#: MQTT.js's browser build, as C{npm ci} installs it.
MQTT_JS = BROWSER_DIR.preauthChild("node_modules/mqtt/dist/mqtt.min.js")
#: How long the browser or Node.js has for all its round trips.
CLIENT_TIMEOUT = 30.0
#: How long Chromium's processes have to go once it is killed.
EXIT_TIMEOUT = 10.0
#: The most of a child's standard error a failure message shows.
STDERR_TAIL = 3000
#: The largest report the page may POST.
MAX_REPORT = 64 * 1024

#: Chromium without anything that would reach beyond loopback or need a
#: display; C{--no-sandbox} because CI runs as root.
CHROMIUM_FLAGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _missing(*executables: str) -> str | None:
    """Why these tests cannot run here, or C{None} if they can."""
    for name in executables:
        if shutil.which(name) is None:
            return f"{name!r} is not installed (Debian: apt-get install chromium nodejs npm)"
    if not MQTT_JS.exists():
        return f"MQTT.js is not installed: {MQTT_JS.path} is missing (run: npm ci --prefix tests/browser)"
    return None


def _tail(text: str) -> str:
    """
    The end of a child's standard error, without Chromium's complaints that
    there is no D-Bus (none in CI, and not needed).
    """
    text = "\n".join(line for line in text.splitlines() if "dbus/" not in line)
    return text if len(text) <= STDERR_TAIL else "..." + text[-STDERR_TAIL:]


def _processes_using(marker: str) -> list[int]:
    """The processes whose command line contains C{marker}."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue  # ended meanwhile
        if marker.encode() in cmdline:
            pids.append(int(entry))
    return pids


def chromium_profile(case: TestCase) -> tuple[str, str]:
    """
    A fresh Chromium profile directory of C{case}, and the flag that gives
    it to Chromium, which also marks every process of that browser (see
    L{no_strays}).
    """
    profile = os.path.abspath(case.mktemp())
    os.makedirs(profile)
    return profile, f"--user-data-dir={profile}"


async def no_strays(marker: str) -> None:
    """
    Once Chromium is killed, wait until every process of its profile
    (renderers, GPU and network services; C{marker} is its
    C{--user-data-dir} flag) is gone.

    @raise FailTest: if some still run after L{EXIT_TIMEOUT} seconds
        (they are killed).
    """
    deadline = time.monotonic() + EXIT_TIMEOUT
    while left := _processes_using(marker):
        if time.monotonic() > deadline:
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            raise FailTest(f"Chromium processes {left} still ran {EXIT_TIMEOUT}s after it was killed")
        await deferLater(reactor, 0.05, lambda: None)


class _Report(Resource):
    """
    Where the page POSTs its result (JSON); L{received} fires with the
    first one.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.received: Deferred[dict[str, Any]] = Deferred()

    def render_POST(self, request: Request) -> bytes:
        assert request.content is not None
        body = request.content.read(MAX_REPORT)
        try:
            result = json.loads(body)
            if not isinstance(result, dict):
                raise ValueError("not an object")
        except ValueError as e:
            result = {"ok": False, "error": f"unreadable report ({e}): {body[:200]!r}"}
        if not self.received.called:
            self.received.callback(result)
        request.setHeader(b"content-type", b"application/json")
        return b"{}"


class _RecordingSite(Site):
    """A L{Site} that remembers what was requested, for failure messages."""

    noisy = False

    def __init__(self, resource: Resource) -> None:
        super().__init__(resource)
        self.requests: list[str] = []

    def log(self, request: http.Request) -> None:
        self.requests.append(f"{request.method.decode()} {request.uri.decode()[:80]} {request.code}")


class BrowserTestCase(IntegrationTestCase):
    """
    A broker with its TCP listener (for paho) and an mqtt-ws listener
    (C{ws}, path C{/mqtt}) for MQTT.js.
    """

    timeout = 90
    #: What the test runs besides Python.
    needs: tuple[str, ...] = ()

    ws_port: int
    #: The test's own topics are below this.
    prefix: str

    async def setUp(self) -> None:  # type: ignore[override]
        reason = _missing(*self.needs)
        if reason is not None:
            if os.environ.get("CI"):
                self.fail(f"{reason}; CI is set, so the browser tests must run")
            raise SkipTest(reason)
        await super().setUp()
        factory = MQTTWebSocketFactory(MQTTServerFactory(self.broker, reactor, "ws"), WebSocketConfig())
        listening: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(factory)
        self.addCleanup(listening.stopListening)
        self.ws_port = listening.getHost().port  # type: ignore[attr-defined]
        self.prefix = f"mqttjs/{uuid.uuid4().hex}"

    @property
    def ws_url(self) -> str:
        """Where MQTT.js connects."""
        return f"ws://{HOST}:{self.ws_port}/mqtt"

    def ws_connects(self) -> int:
        """Successful CONNECTs the broker saw on the mqtt-ws listener."""
        return self.broker.stats_for("ws").connects["success"]


class ChromiumTests(BrowserTestCase):
    """MQTT.js's browser build in headless Chromium."""

    needs = ("chromium",)

    async def _serve_page(self) -> tuple[_RecordingSite, _Report, int]:
        """Serve C{tests/browser/} and the report resource on loopback."""
        root = File(BROWSER_DIR.path)
        report = _Report()
        root.putChild(b"report", report)
        site = _RecordingSite(root)
        listening: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(site)
        self.addCleanup(listening.stopListening)
        return site, report, listening.getHost().port  # type: ignore[attr-defined]

    def _start_chromium(self, url: str) -> RunningProcess:
        """
        Open C{url} in headless Chromium with a fresh profile. At cleanup it
        is killed, and every process of that profile (renderers, GPU and
        network services) must be gone.
        """
        _, marker = chromium_profile(self)
        chromium = shutil.which("chromium")
        assert chromium is not None
        browser = spawn(self, chromium, [*CHROMIUM_FLAGS, marker, url])
        # Runs before spawn's own cleanup: kill, then wait for the profile's
        # processes, which end once the main process is gone.
        self.addCleanup(self._no_strays, browser, marker)
        return browser

    async def _no_strays(self, browser: RunningProcess, marker: str) -> None:
        await browser.cleanup()
        await no_strays(marker)

    async def test_round_trip_in_the_browser(self) -> None:
        """
        The page in Chromium connects to the mqtt-ws listener with MQTT.js,
        as MQTT 5 and as 3.1.1, subscribes to a topic of its own, publishes
        QoS 1 to it and receives the message back with its payload at QoS 1
        [MQTT-3.8.4-6]. Chromium fails a handshake whose answer does not
        select the C{mqtt} subprotocol it offered [MQTT-6.0.0-4]. A paho
        client on the TCP listener gets both messages too: the browser really
        talked to this broker.
        """
        watcher = await self.subscriber("watcher", f"{self.prefix}/#", 1, V5)
        site, report, http_port = await self._serve_page()
        query = urlencode({"broker": self.ws_url, "report": "/report", "topic": self.prefix})
        url = f"http://{HOST}:{http_port}/index.html?{query}"
        browser = self._start_chromium(url)

        def failed(why: str) -> str:
            return (
                f"{why}\npage requests: {site.requests}\n"
                f"Chromium {'running' if browser.running else 'ended'}; its stderr:\n{_tail(browser.err)}"
            )

        report.received.addTimeout(CLIENT_TIMEOUT, reactor)
        try:
            result = await report.received
        except TimeoutError:
            self.fail(failed(f"no report from the page within {CLIENT_TIMEOUT}s"))
        if not result.get("ok"):
            self.fail(failed(f"the page failed: {result.get('error')}; details {result.get('details')}"))

        runs = result["details"]["runs"]
        self.assertEqual([run["protocolVersion"] for run in runs], [5, 4])
        self.assertIn("HeadlessChrome", result["details"]["userAgent"])
        got = await watcher.messages.get(2)
        self.assertEqual(
            sorted((m.topic, m.payload.decode(), m.qos) for m in got),
            sorted((run["topic"], run["payload"], 1) for run in runs),
        )
        self.assertEqual(self.ws_connects(), 2)


class NodeTests(BrowserTestCase):
    """MQTT.js in Node.js, and paho-mqtt on the TCP listener."""

    needs = ("node",)

    async def test_round_trip_and_paho_interop(self) -> None:
        """
        C{node_client.js} connects over WebSocket as MQTT 5 and as 3.1.1 and
        gets its own QoS 1 messages back; then it receives a message paho
        published over TCP and answers with one that paho receives.
        """
        paho = await self.subscriber("paho", f"{self.prefix}/#", 1, V5)
        node = shutil.which("node")
        assert node is not None
        script = BROWSER_DIR.child("node_client.js").path
        client = spawn(self, node, [script, self.ws_url, self.prefix])
        # Its first line: ready for paho's message, or an early result.
        await client.wait_for_output(b'{"event":', CLIENT_TIMEOUT)
        if '"event":"ready"' in client.out:
            await paho.publish(f"{self.prefix}/from-paho", b"from paho over TCP", 1)
        out, err, code = await client.finish(CLIENT_TIMEOUT)
        lines = out.strip().splitlines()
        try:
            result = json.loads(lines[-1])
        except (IndexError, ValueError):
            self.fail(f"node_client.js printed no result; exit {code}, stdout {out!r}, stderr {_tail(err)}")
        self.assertTrue(result.get("ok"), f"node_client.js failed: {result}; stderr {_tail(err)}")
        self.assertEqual(code, 0, f"node_client.js: exit {code}, stderr {_tail(err)}")

        details = result["details"]
        self.assertEqual([run["protocolVersion"] for run in details["runs"]], [5, 4])
        self.assertEqual(
            details["interop"],
            {"fromPaho": "from paho over TCP", "qos": 1, "replied": "echo: from paho over TCP"},
        )
        got: list[Received] = await paho.messages.get(4)
        self.assertEqual(
            sorted((m.topic, m.qos) for m in got),
            sorted((f"{self.prefix}/{end}", 1) for end in ("node/v5", "node/v4", "from-paho", "from-node")),
        )
        reply = next(m for m in got if m.topic.endswith("/from-node"))
        self.assertEqual(reply.payload, b"echo: from paho over TCP")
        self.assertEqual(self.ws_connects(), 3)

