# -*- test-case-name: tests.transports.test_http_publish -*-
"""
C{POST /api/v1/publish}: the raw and JSON forms, the MQTT 5 properties
from headers and JSON, the answers, and QoS 1/2 answered only once the
broker accepted the message.
"""

from __future__ import annotations

import json
from base64 import b64encode

from twisted.internet.defer import Deferred, fail

from mqttx.broker.message import Message as StoredMessage
from mqttx.mqtt.packets import Publish
from mqttx.mqtt.properties import Properties
from mqttx.store.memory import MemoryStore

from .http_helpers import HTTPTestCase


class _SlowRetainStore(MemoryStore):
    """Retained writes finish when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[None]] = []

    def put_retained(self, message: StoredMessage) -> Deferred[None]:
        super().put_retained(message)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d


class PublishTestCase(HTTPTestCase):
    def subscriber(self, topic_filter: str = "#", level: int = 5):  # type: ignore[no-untyped-def]
        client = self.connect_client("sub", level)
        self.assertLess(client.subscribe(topic_filter, 2).reason_codes[0], 0x80)
        return client

    def published(self, client) -> list[Publish]:  # type: ignore[no-untyped-def]
        return [p for p in client.received() if isinstance(p, Publish)]


class RawFormTests(PublishTestCase):
    """The body is the payload; topic, QoS and retain in the query; properties in headers."""

    def test_qos_0_1_2_reach_an_mqtt_subscriber(self) -> None:
        """Each QoS is published as sent and answered 200 with what was published."""
        sub = self.subscriber()
        for qos in (0, 1, 2):
            response = self.request("POST", f"/api/v1/publish?topic=t/{qos}&qos={qos}", b"v%d" % qos)
            self.assertEqual(response.status, 200)
            self.assertEqual(response.json(), {"topic": f"t/{qos}", "qos": qos, "retain": False})
        got = self.published(sub)
        expected = [("t/0", b"v0", 0), ("t/1", b"v1", 1), ("t/2", b"v2", 2)]
        self.assertEqual([(p.topic, p.payload, p.qos) for p in got], expected)

    def test_retained(self) -> None:
        """retain=true keeps the message for later subscribers [MQTT-3.3.1-5]."""
        response = self.request("POST", "/api/v1/publish?topic=r&retain=true", b"kept")
        self.assertEqual(response.json(), {"topic": "r", "qos": 0, "retain": True})
        sub = self.subscriber("r")
        (message,) = self.published(sub)
        self.assertEqual((message.payload, message.retain), (b"kept", True))

    def test_empty_retained_body_clears(self) -> None:
        """An empty body with retain=true removes the topic's retained message [MQTT-3.3.1-10]."""
        self.request("POST", "/api/v1/publish?topic=r&retain=true", b"kept")
        self.assertIsNotNone(self.broker.retained.get("r"))
        response = self.request("POST", "/api/v1/publish?topic=r&retain=true", b"")
        self.assertEqual(response.status, 200)
        self.assertIsNone(self.broker.retained.get("r"))

    def test_properties_from_headers(self) -> None:
        """Content-Type and the X-MQTT-* headers become the message's MQTT 5 properties."""
        sub = self.subscriber()
        headers = [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("X-MQTT-Message-Expiry", "120"),
            ("X-MQTT-Response-Topic", "replies/1"),
            ("X-MQTT-Correlation-Data", b64encode(b"\x00\x01id").decode()),
            ("X-MQTT-Payload-Format", "1"),
            ("X-MQTT-User-Property", "a=1"),
            ("X-MQTT-User-Property", "b = x=y"),
            ("X-MQTT-User-Property", "a=2"),
        ]
        self.assertEqual(self.request("POST", "/api/v1/publish?topic=p", b"text", headers).status, 200)
        (message,) = self.published(sub)
        props = message.properties
        self.assertEqual(props.content_type, "text/plain; charset=utf-8")
        self.assertEqual(props.message_expiry_interval, 120)
        self.assertEqual(props.response_topic, "replies/1")
        self.assertEqual(props.correlation_data, b"\x00\x01id")
        self.assertEqual(props.payload_format_indicator, 1)
        self.assertEqual(props.user_property, (("a", "1"), ("b", "x=y"), ("a", "2")))

    def test_form_urlencoded_is_not_a_content_type(self) -> None:
        """curl -d's default content type is not carried, and the body is not parsed as a form."""
        sub = self.subscriber()
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        self.request("POST", "/api/v1/publish?topic=p", b"topic=other&qos=2", headers)
        (message,) = self.published(sub)
        self.assertEqual((message.topic, message.payload, message.qos), ("p", b"topic=other&qos=2", 0))
        self.assertIsNone(message.properties.content_type)

    def test_json_payload_with_topic_in_query(self) -> None:
        """With a topic in the query, a JSON body is a payload of content type application/json."""
        sub = self.subscriber()
        body = b'{"temp": 21.5}'
        response = self.request("POST", "/api/v1/publish?topic=j", body, {"Content-Type": "application/json"})
        self.assertEqual(response.status, 200)
        (message,) = self.published(sub)
        self.assertEqual((message.payload, message.properties.content_type), (body, "application/json"))

    def test_bad_requests(self) -> None:
        """A missing or invalid topic, QoS or retain value, bad header values: 400 with why."""
        cases = [
            ("/api/v1/publish", {}, 0x90),
            ("/api/v1/publish?topic=", {}, 0x90),
            ("/api/v1/publish?topic=a/%2B", {}, 0x90),  # [MQTT-3.3.2-2] no wildcards
            ("/api/v1/publish?topic=a/%23", {}, 0x90),
            ("/api/v1/publish?topic=a&qos=3", {}, 0x9B),
            ("/api/v1/publish?topic=a&qos=x", {}, 0x9B),
            ("/api/v1/publish?topic=a&qos=1&qos=2", {}, 0x82),
            ("/api/v1/publish?topic=a&retain=maybe", {}, 0x82),
            ("/api/v1/publish?topic=a", {"X-MQTT-Correlation-Data": "!!"}, 0x82),
            ("/api/v1/publish?topic=a", {"X-MQTT-Message-Expiry": "-1"}, 0x82),
            ("/api/v1/publish?topic=a", {"X-MQTT-Payload-Format": "2"}, 0x82),
            ("/api/v1/publish?topic=a", {"X-MQTT-User-Property": "novalue"}, 0x82),
            ("/api/v1/publish?topic=a", {"X-MQTT-Response-Topic": "a/#"}, 0x90),
        ]
        for target, headers, code in cases:
            response = self.request("POST", target, b"x", headers)
            self.assertEqual(response.status, 400, (target, headers))
            self.assertEqual(response.json()["reason_code"], code, (target, headers))
        self.assertEqual(self.broker.received_qos, [0, 0, 0])

    def test_payload_format_checked(self) -> None:
        """Payload format 1 with a payload that is not UTF-8 is refused: 400, 0x99 [MQTT-3.3.2-4]."""
        response = self.request("POST", "/api/v1/publish?topic=a", b"\xff\xfe", {"X-MQTT-Payload-Format": "1"})
        self.assertEqual((response.status, response.json()["reason_code"]), (400, 0x99))

    def test_unexpected_failure_is_500(self) -> None:
        """A failure the bridge does not explain: a JSON 500, logged, no traceback to the client."""
        self.bridge.publish_once = lambda *args, **kwargs: fail(RuntimeError("store on fire"))  # type: ignore[method-assign]
        response = self.request("POST", "/api/v1/publish?topic=a", b"x")
        self.assertEqual((response.status, response.json()), (500, {"error": "internal error", "reason_code": 0x83}))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_503_while_stopping(self) -> None:
        """While the broker shuts down, publishing is refused with 503."""
        self.broker.shutdown()
        response = self.request("POST", "/api/v1/publish?topic=a", b"x")
        self.assertEqual((response.status, response.json()["reason_code"]), (503, 0x8B))


class JSONFormTests(PublishTestCase):
    """No topic in the query and Content-Type application/json: the body describes the message."""

    def post(self, form: object, content_type: str = "application/json"):  # type: ignore[no-untyped-def]
        body = form if isinstance(form, bytes) else json.dumps(form).encode()
        return self.request("POST", "/api/v1/publish", body, {"Content-Type": content_type})

    def test_every_field(self) -> None:
        """Topic, payload, QoS, retain and every property of the JSON form are published."""
        sub = self.subscriber()
        response = self.post(
            {
                "topic": "j/1",
                "payload": "héllo",
                "qos": 1,
                "retain": False,
                "content_type": "text/plain",
                "user_properties": {"a": "1", "b": "2"},
                "message_expiry": 60,
                "response_topic": "r/1",
                "correlation_data_base64": b64encode(b"cid").decode(),
                "payload_format": 1,
            },
            "application/json; charset=utf-8",
        )
        self.assertEqual((response.status, response.json()), (200, {"topic": "j/1", "qos": 1, "retain": False}))
        (message,) = self.published(sub)
        self.assertEqual((message.topic, message.payload, message.qos), ("j/1", "héllo".encode(), 1))
        self.assertEqual(
            message.properties,
            Properties(
                payload_format_indicator=1,
                message_expiry_interval=60,
                content_type="text/plain",
                response_topic="r/1",
                correlation_data=b"cid",
                user_property=(("a", "1"), ("b", "2")),
            ),
        )

    def test_binary_payload_and_property_pairs(self) -> None:
        """payload_base64 carries bytes; user_properties may be a list of pairs, names repeated."""
        sub = self.subscriber()
        form = {
            "topic": "bin",
            "payload_base64": b64encode(b"\x00\xff").decode(),
            "user_properties": [["k", "1"], ["k", "2"]],
            "retain": True,
        }
        self.assertEqual(self.post(form).status, 200)
        (message,) = self.published(sub)
        # [MQTT-3.3.1-12] retain is 0 to a live subscriber without Retain As Published.
        self.assertEqual((message.payload, message.retain), (b"\x00\xff", False))
        self.assertEqual(message.properties.user_property, (("k", "1"), ("k", "2")))
        self.assertEqual(self.broker.retained.get("bin").payload, b"\x00\xff")  # type: ignore[union-attr]

    def test_bad_json_forms(self) -> None:
        """Bad JSON, bad fields or bad base64: 400, nothing published."""
        cases: list[object] = [
            b"{not json",
            b"[1, 2]",
            b"\xff",
            {"payload": "no topic"},
            {"topic": "a", "qos": 3},
            {"topic": "a", "qos": True},
            {"topic": "a", "retain": "perhaps"},
            {"topic": "a", "payload_base64": "!!"},
            {"topic": "a", "payload": "x", "payload_base64": "eA=="},
            {"topic": "a", "payload": 5},
            {"topic": "a", "user_properties": "k=v"},
            {"topic": "a", "user_properties": {"k": 1}},
            {"topic": "a", "correlation_data_base64": "*"},
            {"topic": "a", "message_expiry": "soon"},
            {"topic": "a", "unknown": 1},
            {"topic": "a/+"},
        ]
        for form in cases:
            response = self.post(form)
            self.assertEqual(response.status, 400, form)
            self.assertIn("error", response.json())
        self.assertEqual(self.broker.received_qos, [0, 0, 0])


class AcceptanceTests(PublishTestCase):
    """QoS 1 and 2 are answered once the broker has accepted the message."""

    def make_store(self) -> MemoryStore:
        return _SlowRetainStore()

    def test_qos1_answer_waits_for_the_store(self) -> None:
        """A retained QoS 1 message: no answer until the store has written it."""
        channel, transport = self.open_http()
        channel.dataReceived(self.request_bytes("POST", "/api/v1/publish?topic=r&qos=1&retain=true", b"x"))
        self.assertEqual(transport.value(), b"")
        store = self.store
        assert isinstance(store, _SlowRetainStore)
        store.pending[0].callback(None)
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 200 "))

    def test_qos0_answered_at_once(self) -> None:
        """QoS 0 is answered once routed, not after the store."""
        response = self.request("POST", "/api/v1/publish?topic=r&retain=true", b"x")
        self.assertEqual(response.status, 200)

    def test_reader_gone_before_the_answer(self) -> None:
        """A client that leaves before its QoS 1 answer: nothing is written, nothing fails."""
        from twisted.internet.error import ConnectionDone
        from twisted.python.failure import Failure

        channel, transport = self.open_http()
        channel.dataReceived(self.request_bytes("POST", "/api/v1/publish?topic=r&qos=1&retain=true", b"x"))
        channel.connectionLost(Failure(ConnectionDone()))
        store = self.store
        assert isinstance(store, _SlowRetainStore)
        store.pending[0].callback(None)
        self.assertEqual(transport.value(), b"")
