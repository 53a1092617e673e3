# -*- test-case-name: tests.integration.test_http -*-
"""
The HTTP bridge over real loopback sockets: Debian's C{curl} publishes and
reads event streams (C{curl -N}), paho-mqtt publishes and subscribes on the
same broker, and twisted.web's L{Agent} checks the refusals.
"""

from __future__ import annotations

import json
from base64 import b64encode
from io import BytesIO
from typing import Any, ClassVar

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.protocol import Protocol
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from mqttx.broker.bridge import Bridge, Origin
from mqttx.config import HTTPConfig, ListenerConfig
from mqttx.transports.http import HTTPContext, HTTPSite, build_site
from tests.transports.http_helpers import FakeAuthenticator, FakeAuthorizer, basic

from .helpers import (
    HOST,
    TIMEOUT,
    V5,
    IntegrationTestCase,
    Received,
    RunningProcess,
    reactor,
    run_process,
    spawn,
    start_broker,
)

CURL = "/usr/bin/curl"


def _prop(message: Received, name: str) -> Any:
    """An MQTT 5 property of a message paho received, by paho's name; None if absent."""
    return getattr(message.properties, name, None)


class HTTPBridgeTestCase(IntegrationTestCase):
    """
    A broker with an MQTT listener (L{port}) and an C{http} listener
    (L{http_port}) on loopback; users and ACLs of the unit tests' fakes
    (alice/secret; nobody may use C{secret/...}).
    """

    broker_config: ClassVar[dict[str, Any]] = {"max_packet_size": 10_000}
    http_config = HTTPConfig(heartbeat_interval=0.5, session_expiry=600)

    async def setUp(self) -> None:  # type: ignore[override]
        self.authenticator = FakeAuthenticator()
        self.server = await start_broker(
            self, authenticator=self.authenticator, authorizer=FakeAuthorizer(), **self.broker_config
        )
        listener = ListenerConfig(name="http", protocol="http", endpoint="tcp:0", http=self.http_config)
        self.bridge = Bridge(self.broker, reactor)
        self.site: HTTPSite = build_site(HTTPContext(self.broker, self.bridge, listener, reactor, frozenset({"root"})))
        self._channels: list[Any] = []
        build = self.site.buildProtocol

        def tracked(addr: Any) -> Any:
            channel = build(addr)
            if channel is not None:
                self._channels.append(channel)
            return channel

        self.site.buildProtocol = tracked  # type: ignore[method-assign]
        self.http: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(self.site)
        self.addCleanup(self._stop_http)

    async def _stop_http(self) -> None:
        await maybeDeferred(self.http.stopListening)
        for channel in self._channels:
            if channel.transport is not None and channel.transport.connected:
                channel.transport.abortConnection()
        await self.wait_until(lambda: self.site.limits.open == 0, "HTTP connections closed")

    @property
    def http_port(self) -> int:
        return int(self.http.getHost().port)  # type: ignore[attr-defined]

    def url(self, path: str) -> str:
        return f"http://{HOST}:{self.http_port}{path}"

    async def curl(self, *args: str) -> tuple[int, Any]:
        """Run curl to the end; its status code and JSON body."""
        out, err, code = await run_process(self, CURL, ["-s", "-w", "\n%{http_code}", *args])
        self.assertEqual(code, 0, err)
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body) if body else None

    def stream(self, *args: str) -> RunningProcess:
        """curl -N reading an event stream, until the test ends."""
        return spawn(self, CURL, ["-s", "-N", *args])

    async def agent(
        self, method: bytes, path: str, body: bytes | None = None, headers: dict[bytes, list[bytes]] | None = None
    ) -> tuple[IResponse, bytes]:
        """One request with twisted.web's Agent; the response and its body."""
        producer = None if body is None else FileBodyProducer(BytesIO(body))
        d: Deferred[IResponse] = Agent(_reactor).request(
            method, self.url(path).encode(), Headers(headers or {}), producer
        )
        d.addTimeout(TIMEOUT, reactor)
        response = await d
        return response, await readBody(response)


class CurlPublishTests(HTTPBridgeTestCase):
    """curl publishes; paho MQTT 5 subscribers receive."""

    async def test_qos_0_1_2(self) -> None:
        """Each QoS reaches the subscriber as published, and curl gets 200 with what was published."""
        sub = await self.subscriber("sub", "t/#", 2, V5)
        for qos in (0, 1, 2):
            target = self.url(f"/api/v1/publish?topic=t/{qos}&qos={qos}")
            status, body = await self.curl("--data-binary", f"m{qos}", target)
            self.assertEqual((status, body), (200, {"topic": f"t/{qos}", "qos": qos, "retain": False}))
        got = await sub.messages.get(3)
        expected = [("t/0", b"m0", 0), ("t/1", b"m1", 1), ("t/2", b"m2", 2)]
        self.assertEqual([(m.topic, m.payload, m.qos) for m in got], expected)

    async def test_retained(self) -> None:
        """A retained message published with curl reaches a later subscriber with the retain flag."""
        status, _ = await self.curl("--data-binary", "kept", self.url("/api/v1/publish?topic=r/1&retain=true&qos=1"))
        self.assertEqual(status, 200)
        sub = await self.subscriber("late", "r/#", 1, V5)
        (message,) = await sub.messages.get()
        self.assertEqual((message.topic, message.payload, message.retain), ("r/1", b"kept", True))

    async def test_properties_from_headers(self) -> None:
        """Content-Type and the X-MQTT-* headers arrive as MQTT 5 properties at a paho subscriber."""
        sub = await self.subscriber("sub", "p", 1, V5)
        status, _ = await self.curl(
            "-H", "Content-Type: text/plain",
            "-H", "X-MQTT-User-Property: site=lab",
            "-H", "X-MQTT-User-Property: room=2",
            "-H", "X-MQTT-Message-Expiry: 300",
            "-H", "X-MQTT-Response-Topic: replies/p",
            "-H", "X-MQTT-Correlation-Data: " + b64encode(b"req-7").decode(),
            "--data-binary", "21.5",
            self.url("/api/v1/publish?topic=p&qos=1"),
        )  # fmt: skip
        self.assertEqual(status, 200)
        (message,) = await sub.messages.get()
        self.assertEqual(message.payload, b"21.5")
        self.assertEqual(_prop(message, "ContentType"), "text/plain")
        self.assertEqual(message.user_properties(), [("site", "lab"), ("room", "2")])
        self.assertLessEqual(_prop(message, "MessageExpiryInterval"), 300)
        self.assertEqual(_prop(message, "ResponseTopic"), "replies/p")
        self.assertEqual(_prop(message, "CorrelationData"), b"req-7")

    async def test_json_form(self) -> None:
        """The JSON form, with a binary payload and user properties, as a paho subscriber sees it."""
        sub = await self.subscriber("sub", "j", 2, V5)
        form = {
            "topic": "j",
            "payload_base64": b64encode(b"\x00\x01").decode(),
            "qos": 2,
            "content_type": "application/octet-stream",
            "user_properties": {"k": "v"},
        }
        status, body = await self.curl(
            "-H", "Content-Type: application/json", "--data-binary", json.dumps(form), self.url("/api/v1/publish")
        )
        self.assertEqual((status, body), (200, {"topic": "j", "qos": 2, "retain": False}))
        (message,) = await sub.messages.get()
        self.assertEqual((message.payload, message.qos), (b"\x00\x01", 2))
        self.assertEqual(_prop(message, "ContentType"), "application/octet-stream")
        self.assertEqual(message.user_properties(), [("k", "v")])

    async def test_too_large(self) -> None:
        """A body over max_packet_size: curl gets 413 (0x95), nothing is published."""
        status, body = await self.curl("--data-binary", "x" * 10_001, self.url("/api/v1/publish?topic=big"))
        self.assertEqual((status, body["reason_code"]), (413, 0x95))
        # A large body: curl sends Expect: 100-continue (from 1 kB in curl 7,
        # 1 MB in curl 8) and waits; the 413 comes instead of 100 Continue.
        large = self.mktemp()
        with open(large, "wb") as f:
            f.write(b"x" * 2_000_000)
        status, body = await self.curl("--data-binary", "@" + large, self.url("/api/v1/publish?topic=big"))
        self.assertEqual((status, body["reason_code"]), (413, 0x95))
        self.assertEqual(self.broker.received_qos, [0, 0, 0])


class CurlSubscribeTests(HTTPBridgeTestCase):
    """curl -N reads event streams of what paho publishes."""

    async def test_stream_while_paho_publishes(self) -> None:
        """Messages paho publishes appear on the stream as events; heartbeats keep it alive."""
        curl = self.stream(self.url("/api/v1/subscribe?filter=s/%2B&qos=1"))
        await curl.wait_for_output(b"retry: 3000")
        pub = await self.connected("pub", V5)
        await pub.publish("s/1", b"hello", qos=1, ContentType="text/plain")
        await pub.publish("s/2", b"\xff", qos=0)
        await curl.wait_for_output(b'"topic":"s/2"')
        events = [json.loads(line[len("data: ") :]) for line in curl.out.splitlines() if line.startswith("data: ")]
        self.assertEqual(
            events,
            [
                {
                    "topic": "s/1",
                    "payload": "hello",
                    "qos": 1,
                    "retain": False,
                    "properties": {"content_type": "text/plain"},
                },
                {
                    "topic": "s/2",
                    "payload_base64": "/w==",
                    "encoding": "base64",
                    "qos": 0,
                    "retain": False,
                    "properties": {},
                },
            ],
        )
        self.assertIn("id: 2\n", curl.out)
        await curl.wait_for_output(b": heartbeat")

    async def test_reader_leaving_ends_its_client(self) -> None:
        """curl killed: the stream's virtual client disconnects and its session ends."""
        curl = self.stream(self.url("/api/v1/subscribe?filter=a"))
        await curl.wait_for_output(b"retry:")
        self.assertEqual(len(self.broker.sessions), 1)
        curl.kill()
        await self.wait_until(lambda: not self.broker.sessions, "the stream's session ended")

    async def test_resume_with_last_event_id(self) -> None:
        """A named stream's session outlives curl; Last-Event-ID resumes it with what was queued meanwhile."""
        target = self.url("/api/v1/subscribe?filter=q&qos=1&client_id=dashboard")
        first = self.stream(target)
        await first.wait_for_output(b"retry:")
        pub = await self.connected("pub", V5)
        await pub.publish("q", b"one", qos=1)
        await first.wait_for_output(b"id: 1")
        first.kill()
        await self.wait_until(
            lambda: "dashboard" in self.broker.sessions and self.broker.sessions["dashboard"].link is None,
            "the stream's session detached",
        )
        await pub.publish("q", b"two", qos=1)
        await pub.publish("q", b"three", qos=1)
        second = self.stream("-H", "Last-Event-ID: 1", target)
        await second.wait_for_output(b'"payload":"three"')
        ids = [int(line[4:]) for line in second.out.splitlines() if line.startswith("id: ")]
        self.assertEqual(ids, [2, 3])
        payloads = [json.loads(line[6:])["payload"] for line in second.out.splitlines() if line.startswith("data: ")]
        self.assertEqual(payloads, ["two", "three"])


class _SlowReader(Protocol):
    """An SSE reader over a real socket that stops reading when told."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data


class SlowReaderTests(HTTPBridgeTestCase):
    """A reader that does not read is a slow consumer, over real TCP."""

    broker_config: ClassVar[dict[str, Any]] = {"max_packet_size": 100_000, "flow_control_timeout": 0.2}

    async def test_stalled_reader(self) -> None:
        """
        Once the socket's buffers are full the stream's client is paused and
        QoS 0 messages to it are dropped and counted, publishers are let go
        after the flow control timeout, and the stream goes on when the
        reader reads again.
        """
        request = b"GET /api/v1/subscribe?filter=big HTTP/1.1\r\nHost: x\r\n\r\n"
        reader = _SlowReader(request)
        endpoint = TCP4ClientEndpoint(_reactor, HOST, self.http_port)
        await connectProtocol(endpoint, reader)
        self.addCleanup(lambda: reader.transport.abortConnection())  # type: ignore[union-attr]
        await self.wait_until(lambda: b"retry:" in reader.received, "the stream started")
        assert reader.transport is not None
        reader.transport.pauseProducing()  # type: ignore[attr-defined]
        (session,) = self.broker.sessions.values()
        link = session.link
        assert link is not None
        origin = Origin("http", "test", "", None, None)
        payload = b"x" * 60_000
        published = 0
        # About 36 MB at most: more than loopback's socket buffers hold.
        while not (link.paused and self.broker.counters.dropped_qos0) and published < 600:
            await self.bridge.publish_once(origin, "big", payload)
            published += 1
        self.assertTrue(link.paused, "the stream's client paused")
        self.assertGreater(self.broker.counters.dropped_qos0, 0)
        reader.transport.resumeProducing()  # type: ignore[attr-defined]
        await self.wait_until(lambda: not link.paused, "the stream's client resumed")
        await self.bridge.publish_once(origin, "big", b"after")
        await self.wait_until(lambda: b'"payload":"after"' in reader.received, "the stream goes on")


class AgentTests(HTTPBridgeTestCase):
    """Refusals and probes, with twisted.web.client's Agent."""

    async def test_401_without_credentials(self) -> None:
        """Anonymous clients not allowed: 401 with the Basic challenge."""
        self.authenticator.anonymous = False
        response, body = await self.agent(b"POST", "/api/v1/publish?topic=a", b"x")
        self.assertEqual(response.code, 401)
        self.assertEqual(response.headers.getRawHeaders(b"www-authenticate"), [b'Basic realm="mqttx"'])
        self.assertEqual(json.loads(body)["reason_code"], 0x87)
        auth = {b"authorization": [basic("alice", b"secret")]}
        response, _ = await self.agent(b"POST", "/api/v1/publish?topic=a", b"x", auth)
        self.assertEqual(response.code, 200)

    async def test_403_for_acl_denial(self) -> None:
        """Publishing to or subscribing to a denied topic: 403."""
        auth = {b"authorization": [basic("alice", b"secret")]}
        response, body = await self.agent(b"POST", "/api/v1/publish?topic=secret/x&qos=1", b"x", auth)
        self.assertEqual((response.code, json.loads(body)["reason_code"]), (403, 0x87))
        response, body = await self.agent(b"GET", "/api/v1/subscribe?filter=secret/%23", None, auth)
        self.assertEqual((response.code, json.loads(body)["reason_code"]), (403, 0x87))

    async def test_413_for_a_large_body(self) -> None:
        """A body over max_packet_size: 413, refused from its Content-Length."""
        response, body = await self.agent(b"POST", "/api/v1/publish?topic=a", b"x" * 50_000)
        self.assertEqual((response.code, json.loads(body)["reason_code"]), (413, 0x95))

    async def test_probes(self) -> None:
        response, body = await self.agent(b"GET", "/healthz")
        self.assertEqual((response.code, json.loads(body)), (200, {"status": "ok"}))
        response, _ = await self.agent(b"GET", "/readyz")
        self.assertEqual(response.code, 200)
        response, _ = await self.agent(b"GET", "/metrics")
        self.assertEqual(response.code, 404)  # http.metrics is off here.

