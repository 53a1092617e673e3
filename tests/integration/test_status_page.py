# -*- test-case-name: tests.integration.test_status_page -*-
"""
The status page in a real browser: Debian's headless Chromium, driven over
the DevTools pipe (L{tests.integration.cdp}), opens the HTTP listener's
C{/} as the admin and must show the MQTT clients, their subscriptions and
live message rates, as the page's own requests to the admin API get them.

The browser authenticates as a person would: the page answers 401 with a
Basic challenge, and the credentials (here in the URL, C{http://user:pw@...},
which Chromium answers the challenge with, as with what a person types in
its prompt) are sent again with the page's same-origin requests.

It needs C{chromium}; without it the test is skipped, unless C{CI} is set.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any

from paho.mqtt.enums import MQTTErrorCode
from twisted.internet.task import LoopingCall, deferLater
from twisted.trial.unittest import SkipTest

from .admin_fixture import ADMIN, USER, AdminHTTPTestCase
from .cdp import Chromium, start_chromium
from .helpers import HOST, V5, reactor

#: How long the page has to show what the test waits for.
PAGE_TIMEOUT = 30.0

#: What the test reads of the page: the status line, the tables' cells, the
#: figures (null until the page is there).
READ_PAGE = """document.getElementById('rate-out') && JSON.stringify({
  state: document.getElementById('state').textContent,
  stateClass: document.getElementById('state').className,
  clients: [...document.querySelectorAll('#clients tbody tr')].map(r => [...r.cells].map(c => c.textContent)),
  subscriptions: [...document.querySelectorAll('#subscriptions tbody tr')]
    .map(r => [...r.cells].map(c => c.textContent)),
  rateIn: document.getElementById('rate-in').textContent,
  rateOut: document.getElementById('rate-out').textContent,
  live: [...document.querySelectorAll('#live tbody tr')].map(r => [...r.cells].map(c => c.textContent)),
  liveRate: document.getElementById('live-rate').textContent,
  liveState: document.getElementById('live-state').textContent,
  images: document.images.length,
  bold: document.querySelectorAll('tbody b').length,
})"""

#: A client id and a topic filter that would run script, or at least
#: change the page, if the page put them in as HTML.
HOSTILE_ID = '<img src=x onerror="document.title=1">'
HOSTILE_FILTER = "<b>bold</b>/#"


class StatusPageTests(AdminHTTPTestCase):
    """The status page in headless Chromium."""

    timeout = 90

    async def setUp(self) -> None:  # type: ignore[override]
        if shutil.which("chromium") is None:
            reason = "'chromium' is not installed (Debian: apt-get install chromium)"
            if os.environ.get("CI"):
                self.fail(f"{reason}; CI is set, so the browser tests must run")
            raise SkipTest(reason)
        await super().setUp()

    async def _page(self, chromium: Chromium) -> dict[str, Any] | None:
        text = await chromium.evaluate(READ_PAGE)
        return None if text is None else dict(json.loads(text))

    async def _wait_for(self, chromium: Chromium, what: str, ready: Any) -> dict[str, Any]:
        """Read the page until C{ready(page)} is true, or fail with what it showed."""
        deadline = time.monotonic() + PAGE_TIMEOUT
        while True:
            page = await self._page(chromium)
            if page is not None and ready(page):
                return page
            if time.monotonic() > deadline:
                self.fail(
                    f"the page did not show {what} within {PAGE_TIMEOUT}s; it showed {page}\n"
                    f"page log: {chromium.logged()}\nChromium's stderr: {chromium.stderr}"
                )
            await deferLater(reactor, 0.2, lambda: None)

    async def test_clients_subscriptions_and_rates(self) -> None:
        """
        The page lists a paho client and its subscription, a client id and a
        filter that look like HTML as plain text, and once two samples of the
        counters are in, a rate of the messages a publisher keeps sending.
        Asked to watch a filter, it shows those messages as they come over
        its event stream, and their rate. It logs no error and no
        Content-Security-Policy violation.
        """
        await self.subscriber("status-watcher", "status/#", 1, V5)
        odd = await self.connected(HOSTILE_ID, V5)
        await odd.subscribe(HOSTILE_FILTER, 0)
        publisher = await self.connected("status-publisher", V5)

        def publish() -> None:
            # QoS 0 from paho's own thread: no wait for an acknowledgement.
            info = publisher.client.publish("status/rate", b"tick", 0)
            self.assertEqual(info.rc, MQTTErrorCode.MQTT_ERR_SUCCESS)

        ticker = LoopingCall(publish)
        ticker.clock = reactor
        ticker.start(0.02)
        self.addCleanup(ticker.stop)

        chromium = await start_chromium(self)
        user, password = ADMIN
        await chromium.navigate(f"http://{user}:{password}@{HOST}:{self.http_port}/")

        def ready(page: dict[str, Any]) -> bool:
            try:
                rate = float(page["rateIn"])
            except ValueError:
                return False
            ids = [row[0] for row in page["clients"]]
            return "status-watcher" in ids and HOSTILE_ID in ids and rate > 0

        page = await self._wait_for(chromium, "the clients and a message rate", ready)
        self.assertEqual(page["stateClass"], "", page["state"])
        watcher = next(row for row in page["clients"] if row[0] == "status-watcher")
        # Client id, state, MQTT level, listener, peer, user, subscriptions, queued.
        self.assertEqual(watcher[1:4], ["connected", "5", "mqtt"])
        self.assertEqual(watcher[6], "1")
        self.assertIn(["status-watcher", "status/#", "1"], page["subscriptions"])
        self.assertIn([HOSTILE_ID, HOSTILE_FILTER, "0"], page["subscriptions"])
        self.assertEqual((page["images"], page["bold"]), (0, 0), "client strings were parsed as HTML")
        self.assertNotEqual(await chromium.evaluate("document.title"), "1")
        # About 50 messages a second are published and delivered.
        self.assertGreater(float(page["rateOut"]), 0)

        # Live messages of a filter, over the page's server-sent events stream.
        await chromium.evaluate(
            "document.getElementById('live-filter').value = 'status/#';"
            "document.getElementById('live-form').requestSubmit(); true"
        )

        def live(page: dict[str, Any]) -> bool:
            try:
                rate = float(page["liveRate"])
            except ValueError:
                return False
            return ["status/rate", "0", "no", "tick"] in page["live"] and rate > 0

        page = await self._wait_for(chromium, "live messages and their rate", live)
        self.assertEqual(page["liveState"], "Watching status/#")
        problems = [
            line for line in chromium.logged()
            if "Content Security Policy" in line or line.startswith(("exception", "console.error"))
        ]
        self.assertEqual(problems, [])

    async def test_a_user_who_is_not_an_admin_gets_no_page(self) -> None:
        """A user who is not an admin gets a 403 for the page: nothing of the broker is shown."""
        await self.subscriber("hidden-client", "x/#", 0, V5)
        chromium = await start_chromium(self)
        user, password = USER
        await chromium.navigate(f"http://{user}:{password}@{HOST}:{self.http_port}/")
        deadline = time.monotonic() + PAGE_TIMEOUT
        while "admins only" not in (text := await chromium.evaluate("document.body ? document.body.innerText : ''")):
            if time.monotonic() > deadline:
                self.fail(f"no 403 answer shown; the page shows {text!r}")
            await deferLater(reactor, 0.2, lambda: None)
        self.assertNotIn("hidden-client", text)
