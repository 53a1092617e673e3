# -*- test-case-name: tests.transports.test_http_subscribe -*-
"""
C{GET /api/v1/subscribe}: the server-sent-events stream, its framing and
heartbeat, refusals before it starts, back-pressure, persistent sessions
resumed with C{Last-Event-ID}, and its end.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.error import ConnectionDone
from twisted.python.failure import Failure

from mqttx.mqtt.packets import Publish
from mqttx.mqtt.properties import Properties
from mqttx.transports.http.site import IDLE_TIMEOUT
from mqttx.transports.http.subscribe import message_event

from .http_helpers import HTTPTestCase, Response, parse_response


def sse_blocks(body: bytes) -> list[dict[str, Any]]:
    """The events and comments of a stream body: each a dict of its fields."""
    blocks = []
    for block in body.decode("utf-8").split("\n\n"):
        if not block:
            continue
        fields: dict[str, Any] = {}
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            fields.setdefault(name or "comment", value[1:] if value.startswith(" ") else value)
        blocks.append(fields)
    return blocks


class Stream:
    """One open SSE request, read as it goes."""

    def __init__(self, case: HTTPTestCase, target: str, headers: dict[str, str] | None = None, **kw: Any) -> None:
        self.channel, self.transport = case.open_http()
        self.channel.dataReceived(case.request_bytes("GET", target, headers=headers or {}, **kw))

    @property
    def response(self) -> Response:
        return parse_response(self.transport.value())

    def blocks(self) -> list[dict[str, Any]]:
        return sse_blocks(self.response.body)

    def producer(self) -> Any:
        """The push producer registered with the transport (the HTTP channel)."""
        producer = self.transport.producer
        assert producer is not None
        return producer

    def messages(self) -> list[dict[str, Any]]:
        return [
            {"id": int(b["id"]), **json.loads(b["data"])} for b in self.blocks() if b.get("event") == "message"
        ]

    def close(self) -> None:
        self.channel.connectionLost(Failure(ConnectionDone()))


class StreamTests(HTTPTestCase):
    """The stream's headers and events."""

    def test_headers_and_first_line(self) -> None:
        """200, text/event-stream, no caching nor proxy buffering, a retry line first."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        response = stream.response
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("content-type"), "text/event-stream; charset=utf-8")
        self.assertEqual(response.header("cache-control"), "no-cache")
        self.assertEqual(response.header("x-accel-buffering"), "no")
        self.assertFalse(response.complete)
        self.assertEqual(stream.blocks(), [{"retry": "3000"}])

    def test_message_events(self) -> None:
        """Each message is an event with an increasing id, its topic, payload, QoS, retain and properties."""
        stream = Stream(self, "/api/v1/subscribe?filter=a/%2B&qos=1")
        publisher = self.connect_client("pub", 5)
        props = Properties(content_type="text/plain", user_property=(("k", "v"), ("k", "w")), correlation_data=b"c")
        publisher.publish_acked("a/1", b"one", qos=1, properties=props)
        publisher.send(Publish("a/2", b"\xff\x00", 0))
        publisher.send(Publish("b/1", b"other", 0))
        self.assertEqual(
            stream.messages(),
            [
                {
                    "id": 1,
                    "topic": "a/1",
                    "payload": "one",
                    "qos": 1,
                    "retain": False,
                    "properties": {
                        "content_type": "text/plain",
                        "correlation_data_base64": "Yw==",
                        "user_properties": [["k", "v"], ["k", "w"]],
                    },
                },
                {
                    "id": 2,
                    "topic": "a/2",
                    "payload_base64": "/wA=",
                    "encoding": "base64",
                    "qos": 0,
                    "retain": False,
                    "properties": {},
                },
            ],
        )

    def test_event_framing(self) -> None:
        """An event is event, id and one data line, then a blank line; the JSON holds no raw newline."""
        from mqttx.broker.bridge import Delivery

        event = message_event(7, Delivery("t", b"line1\nline2", 0, False))
        self.assertEqual(
            event,
            b'event: message\nid: 7\ndata: {"topic":"t","payload":"line1\\nline2","qos":0,'
            b'"retain":false,"properties":{}}\n\n',
        )

    def test_several_filters_and_retained_first(self) -> None:
        """Several filter parameters; retained messages come first [MQTT-3.3.1-6]."""
        self.request("POST", "/api/v1/publish?topic=r/1&retain=true", b"kept")
        stream = Stream(self, "/api/v1/subscribe?filter=r/%23&filter=x")
        self.request("POST", "/api/v1/publish?topic=x", b"live")
        messages = stream.messages()
        self.assertEqual(
            [(m["topic"], m["payload"], m["retain"]) for m in messages], [("r/1", "kept", True), ("x", "live", False)]
        )

    def test_qos_downgraded_to_the_subscription(self) -> None:
        """qos is the maximum QoS: a QoS 2 message to a QoS 0 stream is delivered at 0 [MQTT-3.8.4-8]."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        self.request("POST", "/api/v1/publish?topic=a&qos=2", b"x")
        self.assertEqual([m["qos"] for m in stream.messages()], [0])

    def test_head(self) -> None:
        """HEAD answers the stream's headers without opening a stream or a session."""
        response = self.request("HEAD", "/api/v1/subscribe?filter=a")
        self.assertEqual((response.status, response.header("content-type")), (200, "text/event-stream; charset=utf-8"))
        self.assertEqual(self.broker.sessions, {})

    def test_heartbeat(self) -> None:
        """A comment every http.heartbeat_interval seconds (15 here)."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        self.clock.advance(14.9)
        self.assertEqual(len(stream.blocks()), 1)
        self.clock.advance(0.1)
        self.assertEqual(stream.blocks()[1:], [{"comment": "heartbeat"}])
        self.clock.advance(15)
        self.assertEqual(len(stream.blocks()), 3)

    def test_not_cut_by_the_idle_timeout(self) -> None:
        """An open stream outlives the connection idle timeout."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        self.clock.advance(IDLE_TIMEOUT * 3)
        self.assertFalse(stream.transport.disconnecting)


class RefusalTests(HTTPTestCase):
    """Refusals come as JSON errors before any stream."""

    def test_bad_queries(self) -> None:
        for target, code in [
            ("/api/v1/subscribe", 0x8F),
            ("/api/v1/subscribe?filter=", 0x8F),
            ("/api/v1/subscribe?filter=a&qos=3", 0x9B),
            ("/api/v1/subscribe?filter=a&qos=0&qos=1", 0x82),
            ("/api/v1/subscribe?filter=a/%23/b", 0x8F),  # [MQTT-4.7.1-1] # must be last
            ("/api/v1/subscribe?filter=a%2Bb", 0x8F),  # [MQTT-4.7.1-2]
            ("/api/v1/subscribe?filter=a&client_id=", 0x85),
        ]:
            response = self.request("GET", target)
            self.assertEqual((response.status, response.json()["reason_code"]), (400, code), target)

    def test_acl_denied_filter(self) -> None:
        """A filter the ACLs deny: 403 with 0x87 from the SUBACK, no stream, no session left."""
        response = self.request("GET", "/api/v1/subscribe?filter=ok&filter=secret/%23", auth=("alice", b"secret"))
        self.assertEqual((response.status, response.json()["reason_code"]), (403, 0x87))
        self.assertIn("secret/#", response.json()["error"])
        self.assertEqual(self.broker.sessions, {})

    def test_credentials(self) -> None:
        """Wrong credentials: 401 with the challenge; anonymous refused: 401."""
        response = self.request("GET", "/api/v1/subscribe?filter=a", auth=("alice", b"x"))
        self.assertEqual(response.status, 401)
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="mqttx"')
        self.authenticator.anonymous = False
        self.assertEqual(self.request("GET", "/api/v1/subscribe?filter=a").status, 401)
        self.assertEqual(self.request("GET", "/api/v1/subscribe?filter=a", auth=("alice", b"secret")).status, 200)

    def test_503_while_stopping(self) -> None:
        self.broker.shutdown()
        self.assertEqual(self.request("GET", "/api/v1/subscribe?filter=a").status, 503)


class BackPressureTests(HTTPTestCase):
    """A slow SSE reader is a slow consumer."""

    def test_transport_pause_pauses_the_client(self) -> None:
        """The stream is the transport's producer: pausing it pauses the bridge client, QoS 1 waits."""
        stream = Stream(self, "/api/v1/subscribe?filter=a&qos=1")
        (session,) = self.broker.sessions.values()
        link = session.link
        assert link is not None
        producer = stream.producer()
        producer.pauseProducing()  # What a full TCP send buffer does.
        self.assertTrue(link.paused)
        self.request("POST", "/api/v1/publish?topic=a&qos=1", b"waits")
        self.assertEqual(stream.messages(), [])
        producer.resumeProducing()
        self.assertFalse(link.paused)
        self.assertEqual([m["payload"] for m in stream.messages()], ["waits"])

    def test_paused_reader_holds_publishers_then_is_a_slow_consumer(self) -> None:
        """
        A paused reader holds HTTP publishers (their answers wait, as an MQTT
        publisher is not read) for mqtt.flow_control_timeout; then it is a
        slow consumer: publishers go on, QoS 0 over its allowance is dropped
        and counted.
        """
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        stream.producer().pauseProducing()
        big = b"x" * 100_000
        transports = []
        for _ in range(30):
            channel, transport = self.open_http()
            channel.dataReceived(self.request_bytes("POST", "/api/v1/publish?topic=a", big))
            transports.append(transport)
        self.assertIn(b"", [t.value() for t in transports])
        self.clock.advance(self.config.flow_control_timeout + 1)
        self.assertEqual({parse_response(t.value()).status for t in transports}, {200})
        self.assertGreater(self.broker.counters.dropped_qos0, 0)
        self.assertLess(len(stream.messages()), 30)


class LifecycleTests(HTTPTestCase):
    """Persistent sessions, the reader leaving, the broker ending the stream."""

    def test_reader_leaves_session_ends(self) -> None:
        """Without client_id the stream's session ends with it."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        self.assertEqual(len(self.broker.sessions), 1)
        stream.close()
        self.assertEqual(self.broker.sessions, {})
        self.assertEqual(self.broker.clients_connected, 0)

    def test_resume_with_last_event_id(self) -> None:
        """client_id keeps the session; Last-Event-ID resumes it with what was queued, ids continuing."""
        first = Stream(self, "/api/v1/subscribe?filter=a&qos=1&client_id=dev1")
        self.request("POST", "/api/v1/publish?topic=a&qos=1", b"m1")
        self.assertEqual([(m["id"], m["payload"]) for m in first.messages()], [(1, "m1")])
        first.close()
        self.assertIn("dev1", self.broker.sessions)
        self.assertEqual(self.broker.sessions["dev1"].expiry_interval, 600)
        self.request("POST", "/api/v1/publish?topic=a&qos=1", b"m2")
        self.request("POST", "/api/v1/publish?topic=a&qos=1", b"m3")
        second = Stream(self, "/api/v1/subscribe?filter=a&qos=1&client_id=dev1", {"Last-Event-ID": "1"})
        self.assertEqual([(m["id"], m["payload"]) for m in second.messages()], [(2, "m2"), (3, "m3")])

    def test_resume_does_not_repeat_retained(self) -> None:
        """
        A resumed stream does not get the retained messages of the filters
        it was subscribed to again (Retain Handling 1); a new filter's do
        come.
        """
        self.request("POST", "/api/v1/publish?topic=a&retain=true", b"kept-a")
        self.request("POST", "/api/v1/publish?topic=b&retain=true", b"kept-b")
        first = Stream(self, "/api/v1/subscribe?filter=a&qos=1&client_id=dev1")
        self.assertEqual([m["payload"] for m in first.messages()], ["kept-a"])
        first.close()
        second = Stream(self, "/api/v1/subscribe?filter=a&filter=b&qos=1&client_id=dev1", {"Last-Event-ID": "1"})
        self.assertEqual([m["payload"] for m in second.messages()], ["kept-b"])

    def test_client_id_without_last_event_id_starts_afresh(self) -> None:
        """client_id without Last-Event-ID: a new session, what was queued is dropped."""
        first = Stream(self, "/api/v1/subscribe?filter=a&qos=1&client_id=dev1")
        first.close()
        self.request("POST", "/api/v1/publish?topic=a&qos=1", b"queued")
        second = Stream(self, "/api/v1/subscribe?filter=a&qos=1&client_id=dev1")
        self.assertEqual(second.messages(), [])

    def test_takeover_ends_the_older_stream(self) -> None:
        """A second stream with the same client_id takes the session over: the first ends with 0x8E."""
        first = Stream(self, "/api/v1/subscribe?filter=a&client_id=dev1")
        Stream(self, "/api/v1/subscribe?filter=a&client_id=dev1", {"Last-Event-ID": "0"})
        response = first.response
        self.assertTrue(response.complete)
        self.assertEqual(json.loads(first.blocks()[-1]["data"])["reason_code"], 0x8E)

    def test_broker_shutdown_ends_the_stream(self) -> None:
        """Broker shutdown: a close event (0x8B) and the response ends."""
        stream = Stream(self, "/api/v1/subscribe?filter=a")
        self.broker.shutdown()
        self.assertTrue(stream.response.complete)
        last = stream.blocks()[-1]
        self.assertEqual(last["event"], "close")
        self.assertEqual(json.loads(last["data"]), {"reason_code": 0x8B, "reason": json.loads(last["data"])["reason"]})
        self.clock.advance(60)  # No heartbeat after the end.
        self.assertEqual(stream.blocks()[-1]["event"], "close")
