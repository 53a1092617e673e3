# -*- test-case-name: tests.integration.test_http_auth -*-
"""
The HTTP authentication hook end to end: a real C{twistd mqttx} with
C{auth.http} pointing at a twisted.web server in this process, and real
clients (paho-mqtt and a raw client for the exact CONNACK codes).
"""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mqttx.mqtt.packets import ConnAck
from mqttx.mqtt.reason_codes import ConnackReturnCode, ReasonCode

from .helpers import HOST, V5, V311, PahoClient, connect_packet, open_raw
from .test_durability import BrokerProcess

PASSWORD = "correct horse battery staple"


class AuthResource(Resource):
    """
    Allows alice with L{PASSWORD}, denies everybody else; C{slow} users'
    requests are never answered. Records each request's JSON.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []
        self.hanging: list[Request] = []

    def render_POST(self, request: Request) -> bytes | int:
        assert request.content is not None
        body = json.loads(request.content.read())
        self.seen.append(body)
        if body["username"] == "slow":
            self.hanging.append(request)
            return NOT_DONE_YET
        password = base64.b64decode(body["password"] or "")
        allowed = body["username"] == "alice" and password == PASSWORD.encode()
        request.setHeader(b"Content-Type", b"application/json")
        return json.dumps({"result": "allow" if allowed else "deny"}).encode()


class HTTPAuthTests(TestCase):
    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.resource = AuthResource()
        root = Resource()
        root.putChild(b"auth", self.resource)
        site = Site(root)
        port: IListeningPort = await TCP4ServerEndpoint(reactor, 0, interface=HOST).listen(site)
        self.addCleanup(port.stopListening)
        self.web_port = port.getHost().port  # type: ignore[attr-defined]

    def finish_hanging(self) -> None:
        for request in self.resource.hanging:
            if not request.finished and not request._disconnected:
                request.finish()

    async def start(self, url: str) -> None:
        self.process = BrokerProcess(self)
        config = json.loads(self.process.config.getContent())
        config["persistence"] = {"backend": "memory"}
        config["auth"] = {
            "allow_anonymous": False,
            "http": {"url": url, "timeout": 1.0, "cache_seconds": 60},
        }
        self.process.config.setContent(json.dumps(config).encode())
        self.port = await self.process.start()

    async def raw_connack(
        self, level: int, username: str | None, password: bytes | None, client_id: str = "raw"
    ) -> int:
        raw = await open_raw(self, self.port, level)
        packet = connect_packet(level, client_id)
        raw.send(replace(packet, username=username, password=password))
        ack = await raw.expect(ConnAck)
        if ack.reason_code:
            await raw.expect_closed()
        return ack.reason_code

    async def test_allow_deny_cache(self) -> None:
        """
        The endpoint's allow admits paho 3.1.1 and 5.0 clients, its deny
        gets 0x86 / 0x04; a second identical CONNECT is answered from the
        cache; anonymous clients get 0x87 without a request. The password
        never appears in the broker's log.
        """
        await self.start(f"http://{HOST}:{self.web_port}/auth")
        for version in (V311, V5):
            client = PahoClient(self, self.port, "paho", version)
            client.client.username_pw_set("alice", PASSWORD)
            self.assertEqual((await client.connect()).reason_code, 0)
        self.assertEqual(
            await self.raw_connack(4, "alice", b"wrong"),
            ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
        )
        self.assertEqual(
            await self.raw_connack(5, "alice", b"wrong"), ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )
        self.assertEqual(len(self.resource.seen), 2)  # one per distinct request
        self.assertEqual(
            self.resource.seen[0],
            {
                "client_id": "paho",
                "username": "alice",
                "password": base64.b64encode(PASSWORD.encode()).decode(),
                "listener": "mqtt",
            },
        )
        self.assertEqual(await self.raw_connack(5, None, None), ReasonCode.NOT_AUTHORIZED)
        self.assertEqual(len(self.resource.seen), 2)
        self.assertNotIn(PASSWORD, self.process.output)

    async def test_endpoint_down(self) -> None:
        """
        Nothing listening at the URL: CONNACK 0x88 / 0x03, logged once with
        the URL.
        """
        closed: IListeningPort = await TCP4ServerEndpoint(reactor, 0, interface=HOST).listen(
            Site(Resource())
        )
        url = f"http://{HOST}:{closed.getHost().port}/auth"  # type: ignore[attr-defined]
        await maybeDeferred(closed.stopListening)
        await self.start(url)
        self.assertEqual(
            await self.raw_connack(5, "alice", PASSWORD.encode()), ReasonCode.SERVER_UNAVAILABLE
        )
        self.assertEqual(
            await self.raw_connack(4, "alice", PASSWORD.encode()),
            ConnackReturnCode.SERVER_UNAVAILABLE,
        )
        self.assertEqual(self.process.output.count("auth.http_failed"), 1)
        self.assertIn(url, self.process.output)
        self.assertNotIn(PASSWORD, self.process.output)

    async def test_slow_endpoint(self) -> None:
        """
        An endpoint that does not answer within the timeout: CONNACK 0x88.
        """
        self.addCleanup(self.finish_hanging)
        await self.start(f"http://{HOST}:{self.web_port}/auth")
        self.assertEqual(await self.raw_connack(5, "slow", b"pw"), ReasonCode.SERVER_UNAVAILABLE)
        self.assertEqual(len(self.resource.hanging), 1)
        self.assertIn("timeout", self.process.output)
        # Let the broker's aborted request reach our server.
        d: Deferred[None] = Deferred()
        reactor.callLater(0.1, d.callback, None)
        await d
