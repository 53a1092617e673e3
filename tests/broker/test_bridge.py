# -*- test-case-name: tests.broker.test_bridge -*-
"""
Tests for L{mqttx.broker.bridge}: virtual MQTT 5 clients publishing and
subscribing through a real L{Broker} (memory store, L{Clock}), with real
MQTT clients on the other side where it matters.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TypeVar

from twisted.internet.defer import Deferred
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from mqttx.auth.acl import ACLAuthorizer, parse_acl
from mqttx.auth.anonymous import NoUserDatabase
from mqttx.auth.passwords import PasswordFileAuthenticator, format_line, hash_password
from mqttx.broker.admin import Admin
from mqttx.broker.bridge import Bridge, BridgeClient, BridgeError, Delivery, Origin, new_client_id
from mqttx.broker.broker import Broker
from mqttx.broker.message import Message
from mqttx.broker.session import SLOW_CONSUMER_BYTES
from mqttx.interfaces import IStore
from mqttx.mqtt.packets import Disconnect, Packet, PubRec, PubRel
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode
from tests.auth.test_passwords import RecordingRunner
from tests.broker.test_broker import _SlowStore
from tests.helpers import BrokerTestCase

T = TypeVar("T")

ORIGIN = Origin("http", "127.0.0.1:50000", "web-1")


class BridgeTestCase(BrokerTestCase):
    """A broker and a L{Bridge} into it."""

    def _build(self) -> None:
        super()._build()
        self.bridge = Bridge(self.broker)

    def client(self, origin: Origin = ORIGIN, **kwargs: object) -> BridgeClient:
        """An admitted bridge client."""
        return self.successResultOf(self.bridge.connect(origin, **kwargs))  # type: ignore[arg-type]

    def refusal(self, d: Deferred[T]) -> BridgeError:
        """The L{BridgeError} C{d} failed with."""
        failure: Failure = self.failureResultOf(d, BridgeError)
        error = failure.value
        assert isinstance(error, BridgeError)
        return error


class Collector:
    """A deliver callback that keeps what it gets."""

    def __init__(self) -> None:
        self.got: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> None:
        self.got.append(delivery)

    def topics(self) -> list[str]:
        return [d.topic for d in self.got]


class PublishTests(BridgeTestCase):
    """Publishing through the bridge reaches MQTT subscribers."""

    def test_qos_routed(self) -> None:
        """
        Messages at QoS 0, 1 and 2 reach an MQTT 5 subscriber with their
        payload and properties; QoS 1 fires on PUBACK, QoS 2 on PUBCOMP.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t/#", 2)
        client = self.client()
        props = Properties(content_type="text/plain", user_property=(("k", "v"),))
        for qos in (0, 1, 2):
            self.assertIsNone(self.successResultOf(client.publish(f"t/{qos}", b"p%d" % qos, qos, properties=props)))
        got = sub.publishes()
        self.assertEqual(
            [(p.topic, p.payload, p.qos) for p in got], [("t/0", b"p0", 0), ("t/1", b"p1", 1), ("t/2", b"p2", 2)]
        )
        self.assertEqual(got[0].properties.content_type, "text/plain")
        self.assertEqual(got[0].properties.user_property, (("k", "v"),))
        session = client.link.session
        assert session is not None
        self.assertEqual(session.inbound_qos2, set())
        self.assertEqual(self.broker.received_qos, [1, 1, 1])

    def test_no_subscribers_is_success(self) -> None:
        """PUBACK 0x10 (no matching subscribers) is a success."""
        client = self.client()
        self.assertIsNone(self.successResultOf(client.publish("nobody", b"x", 1)))

    def test_retained(self) -> None:
        """
        A retained message is kept and sent to a later MQTT subscriber with
        RETAIN=1 [MQTT-3.3.1-5] [MQTT-3.3.1-8].
        """
        client = self.client()
        self.successResultOf(client.publish("r/1", b"kept", 1, retain=True))
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/#", 1)
        [p] = sub.publishes()
        self.assertEqual((p.topic, p.payload, p.retain), ("r/1", b"kept", True))

    def test_bad_topic(self) -> None:
        """A wildcard or an empty topic is refused with 0x90 [MQTT-3.3.2-2]."""
        client = self.client()
        for topic in ("a/+", "a/#", ""):
            self.assertEqual(self.refusal(client.publish(topic, b"x", 1)).reason_code, ReasonCode.TOPIC_NAME_INVALID)
        self.assertFalse(client.ended)

    def test_topic_limits(self) -> None:
        """A topic over C{max_topic_levels} is refused with 0x90."""
        self.use_config(max_topic_levels=2)
        client = self.client()
        self.assertEqual(self.refusal(client.publish("a/b/c", b"x")).reason_code, ReasonCode.TOPIC_NAME_INVALID)
        self.successResultOf(client.publish("a/b", b"x"))

    def test_too_large(self) -> None:
        """A message over C{max_packet_size} is refused with 0x95."""
        self.use_config(max_packet_size=1000)
        client = self.client()
        error = self.refusal(client.publish("t", b"x" * 1000, 1))
        self.assertEqual(error.reason_code, ReasonCode.PACKET_TOO_LARGE)
        self.assertIn("1000", error.message)
        self.successResultOf(client.publish("t", b"x" * 900, 1))

    def test_bad_qos(self) -> None:
        """QoS 3 is malformed (0x81); above the maximum QoS is 0x9B."""
        self.use_config(maximum_qos=1)
        client = self.client()
        self.assertEqual(self.refusal(client.publish("t", b"x", 3)).reason_code, ReasonCode.MALFORMED_PACKET)
        self.assertEqual(self.refusal(client.publish("t", b"x", 2)).reason_code, ReasonCode.QOS_NOT_SUPPORTED)

    def test_retain_unavailable(self) -> None:
        """With retain unavailable, a retained publish gets 0x9A and the client stays."""
        self.use_config(retain_available=False)
        client = self.client()
        self.assertEqual(
            self.refusal(client.publish("t", b"x", 0, retain=True)).reason_code, ReasonCode.RETAIN_NOT_SUPPORTED
        )
        self.assertFalse(client.ended)

    def test_payload_format(self) -> None:
        """A payload declared UTF-8 that is not gets 0x99 (section 3.3.2.3.2), at any QoS."""
        client = self.client()
        props = Properties(payload_format_indicator=1)
        for qos in (0, 1):
            error = self.refusal(client.publish("t", b"\xff", qos, properties=props))
            self.assertEqual(error.reason_code, ReasonCode.PAYLOAD_FORMAT_INVALID)
        self.assertFalse(client.ended)

    def test_held_publisher_waits(self) -> None:
        """
        While the broker holds the client for inbound flow control, its
        publishes wait, in order, and go once it is released.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 1)
        client = self.client()
        client.link.hold_reading(True)
        d0 = client.publish("t", b"0", 0)
        d1 = client.publish("t", b"1", 1)
        self.assertNoResult(d0)
        self.assertNoResult(d1)
        self.assertEqual(sub.received(), [])
        client.link.hold_reading(False)
        self.successResultOf(d0)
        self.successResultOf(d1)
        self.assertEqual([p.payload for p in sub.publishes()], [b"0", b"1"])

    def test_window(self) -> None:
        """
        No more QoS 1/2 publishes than the broker's Receive Maximum are
        unacknowledged at once: the others wait for an acknowledgement.
        """
        self.use_config(receive_maximum=2)
        client = self.client()
        link = client.link
        # Acknowledgements held back, as by a slow store write.
        sent: list[Packet] = []
        original = link.send
        link.send = sent.append  # type: ignore[method-assign,assignment]
        ds = [client.publish("t", b"%d" % i, 1) for i in range(3)]
        self.assertEqual(len(sent), 2)
        link.send = original  # type: ignore[method-assign]
        original(sent.pop(0))
        self.successResultOf(ds[0])
        self.successResultOf(ds[2])
        self.assertNoResult(ds[1])

    def test_client_id_generated(self) -> None:
        """Without a client id, one is made from the listener's name."""
        client = self.client(Origin("http", "127.0.0.1:1"))
        self.assertTrue(client.client_id.startswith("http-"))
        self.assertIn(client.client_id, self.broker.sessions)
        self.assertNotEqual(new_client_id("x"), new_client_id("x"))

    def test_client_id_too_long(self) -> None:
        """A client identifier over C{max_client_id_length} is refused with 0x85."""
        self.use_config(max_client_id_length=5)
        error = self.refusal(self.bridge.connect(Origin("http", "p", "abcdef")))
        self.assertEqual(error.reason_code, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)


ACL_TEXT = """
topic read open/#
topic write open/#
user writer
topic write open/#
topic write news/#
"""


class ACLTests(BridgeTestCase):
    """Topic authorization applies to bridge clients as to MQTT ones."""

    def make_broker(self) -> Broker:
        authorizer = ACLAuthorizer(parse_acl(ACL_TEXT), ())
        return Broker(self.config, clock=self.clock, store=self.store, authorizer=authorizer)

    def test_publish_denied(self) -> None:
        """A publish the client may not make fails with 0x87, at every QoS."""
        client = self.client(Origin("http", "p", "c1", "writer", b"x"))
        for qos in (0, 1, 2):
            self.assertEqual(self.refusal(client.publish("secret", b"x", qos)).reason_code, ReasonCode.NOT_AUTHORIZED)
        self.successResultOf(client.publish("news/a", b"x", 1))
        self.assertFalse(client.ended)

    def test_subscribe_denied(self) -> None:
        """SUBACK carries 0x87 for a filter the client may not subscribe to."""
        client = self.client()
        codes = self.successResultOf(client.subscribe([("secret/#", 1), ("open/#", 1)], Collector()))
        self.assertEqual(codes, (ReasonCode.NOT_AUTHORIZED, 1))


RETAINED_ACL = """
topic readwrite open/#
user writer
topic readwrite open/#
topic write secret/#
"""


class RetainedTests(BridgeTestCase):
    """L{BridgeClient.retained} reads one retained message as a subscriber gets it."""

    def make_broker(self) -> Broker:
        authorizer = ACLAuthorizer(parse_acl(RETAINED_ACL), ("root",))
        return Broker(self.config, clock=self.clock, store=self.store, authorizer=authorizer)

    def test_found(self) -> None:
        """The retained message comes with RETAIN set, its QoS (at most the one asked) and its properties."""
        client = self.client()
        props = Properties(content_type="application/json", user_property=(("k", "v"),))
        self.successResultOf(client.publish("open/t", b"{}", 1, retain=True, properties=props))
        self.assertEqual(client.retained("open/t"), Delivery("open/t", b"{}", 1, True, props))
        got = client.retained("open/t", 0)
        assert got is not None
        self.assertEqual(got.qos, 0)

    def test_none(self) -> None:
        """Without a retained message (or once cleared) it is C{None}; nothing else is retained."""
        client = self.client()
        self.assertIsNone(client.retained("open/none"))
        self.successResultOf(client.publish("open/c", b"v", retain=True))
        self.successResultOf(client.publish("open/c", b"", retain=True))
        self.assertIsNone(client.retained("open/c"))
        self.successResultOf(client.publish("open/live", b"v"))
        self.assertIsNone(client.retained("open/live"))

    def test_remaining_expiry(self) -> None:
        """
        The Message Expiry Interval is the time the message has left, rounded
        up [MQTT-3.3.2-6]; an expired message is C{None}.
        """
        client = self.client()
        props = Properties(message_expiry_interval=30)
        self.successResultOf(client.publish("open/e", b"v", retain=True, properties=props))
        self.clock.advance(9.5)
        got = client.retained("open/e")
        assert got is not None
        self.assertEqual(got.properties.message_expiry_interval, 21)
        self.clock.advance(20.5)
        self.assertIsNone(client.retained("open/e"))

    def test_acl_denied(self) -> None:
        """A topic the client may not read fails with 0x87, logged once, even with a message retained."""
        writer = self.client(Origin("http", "p", "w", "writer", b"x"))
        self.successResultOf(writer.publish("secret/s", b"v", retain=True))
        with capturedLogs() as events:
            for _ in range(2):
                with self.assertRaises(BridgeError) as caught:
                    writer.retained("secret/s")
                self.assertEqual(caught.exception.reason_code, ReasonCode.NOT_AUTHORIZED)
        self.assertEqual([e["event_id"] for e in events if e.get("event_id") == "acl.denied"], ["acl.denied"])
        self.assertFalse(writer.ended)
        with self.assertRaises(BridgeError):
            self.client().retained("secret/none")

    def test_sys_admins_only(self) -> None:
        """C{$SYS} retained messages are read by admins only."""
        self.broker.retained.set("$SYS/broker/version", Message("$SYS/broker/version", b"1", 0, True))
        with self.assertRaises(BridgeError) as caught:
            self.client(Origin("http", "p", "w", "writer", b"x")).retained("$SYS/broker/version")
        self.assertEqual(caught.exception.reason_code, ReasonCode.NOT_AUTHORIZED)
        root = self.client(Origin("http", "p", "r", "root", b"x"))
        self.assertEqual(root.retained("$SYS/broker/version"), Delivery("$SYS/broker/version", b"1", 0, True))

    def test_bad_topic_and_closed(self) -> None:
        """A wildcard filter is no topic name (0x90); a closed client fails as its publishes do."""
        client = self.client()
        with self.assertRaises(BridgeError) as caught:
            client.retained("open/+")
        self.assertEqual(caught.exception.reason_code, ReasonCode.TOPIC_NAME_INVALID)
        client.close()
        code = self.refusal(client.publish("open/t", b"v")).reason_code
        with self.assertRaises(BridgeError) as caught:
            client.retained("open/t")
        self.assertEqual(caught.exception.reason_code, code)

    def test_nothing_sent(self) -> None:
        """A read neither subscribes the client nor counts a message sent."""
        client = self.client()
        self.successResultOf(client.publish("open/t", b"v", retain=True))
        sent = Admin(self.broker).stats()["messages"]["sent"]
        self.assertIsNotNone(client.retained("open/t"))
        self.assertEqual(Admin(self.broker).stats()["messages"]["sent"], sent)
        self.assertEqual(self.broker.sessions[client.client_id].subscriptions, {})


class AuthenticationTests(BridgeTestCase):
    """Bridge clients are authenticated by the broker's authenticator."""

    def make_broker(self) -> Broker:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(format_line("alice", hash_password("wonderland", 1000)) + "\n")
        self.runner = RecordingRunner()
        authenticator = PasswordFileAuthenticator(path, False, {"open": True}, self.runner)
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=authenticator)

    def test_good_password(self) -> None:
        """A user with its password is admitted."""
        client = self.client(Origin("http", "p", "c1", "alice", b"wonderland"))
        self.assertFalse(client.ended)

    def test_bad_password(self) -> None:
        """A wrong password is refused with 0x86, counted on the listener."""
        error = self.refusal(self.bridge.connect(Origin("http", "p", "c1", "alice", b"nope")))
        self.assertEqual(error.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertEqual(self.broker.stats_for("http").connects["bad_user_name_or_password"], 1)
        self.assertEqual(self.broker.stats_for("http").connections_open, 0)
        self.assertNotIn("c1", self.broker.sessions)

    def test_anonymous_per_listener(self) -> None:
        """Anonymous clients are refused (0x87) but on a listener that allows them."""
        error = self.refusal(self.bridge.connect(Origin("http", "p", "c1")))
        self.assertEqual(error.reason_code, ReasonCode.NOT_AUTHORIZED)
        self.client(Origin("open", "p", "c2"))

    def test_verified_user(self) -> None:
        """
        A user name the bridge vouches for (a CoAP rule's) is admitted
        without a password, with a password file in use, and is the
        session's user name; the same name unverified and without a
        password is refused.
        """
        self.client(Origin("coap", "p", "c1", "sensors", verified=True))
        self.assertEqual(self.runner.calls, [])
        self.assertEqual(self.broker.sessions["c1"].username, "sensors")
        error = self.refusal(self.bridge.connect(Origin("coap", "p", "c2", "sensors")))
        self.assertEqual(error.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)


class SubscribeTests(BridgeTestCase):
    """Subscribing through the bridge."""

    def test_live_and_retained(self) -> None:
        """
        The callback gets retained messages first (RETAIN=1), then live ones
        published by an MQTT client; QoS 1/2 deliveries are acknowledged, so
        nothing stays in flight.
        """
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/r", b"old", 1, retain=True)
        client = self.client()
        got = Collector()
        codes = self.successResultOf(client.subscribe([("t/#", 2)], got))
        self.assertEqual(codes, (2,))
        self.assertEqual([(d.topic, d.payload, d.retain) for d in got.got], [("t/r", b"old", True)])
        pub.publish_acked("t/a", b"a1", 1, properties=Properties(content_type="x/y"))
        pub.publish_acked("t/b", b"b2", 2)
        pub.publish("t/c", b"c0", 0)
        self.assertEqual(got.topics(), ["t/r", "t/a", "t/b", "t/c"])
        self.assertEqual([d.qos for d in got.got], [1, 1, 2, 0])
        self.assertEqual(got.got[1].properties.content_type, "x/y")
        session = client.link.session
        assert session is not None
        self.assertEqual(session.inflight, {})
        self.assertEqual(len(session.queue), 0)

    def test_bridge_to_bridge(self) -> None:
        """A bridge client gets what another bridge client publishes."""
        got = Collector()
        self.successResultOf(self.client(Origin("http", "p", "s")).subscribe([("x", 1)], got))
        self.successResultOf(self.client(Origin("coap", "p", "c")).publish("x", b"1", 1))
        self.assertEqual(got.topics(), ["x"])

    def test_invalid_filter(self) -> None:
        """A malformed filter is refused with 0x8F."""
        client = self.client()
        error = self.refusal(client.subscribe([("a/#/b", 0)], Collector()))
        self.assertEqual(error.reason_code, ReasonCode.TOPIC_FILTER_INVALID)

    def test_unsubscribe(self) -> None:
        """After unsubscribing, nothing more is delivered."""
        client = self.client()
        got = Collector()
        self.successResultOf(client.subscribe([("t", 0)], got))
        self.successResultOf(client.unsubscribe(["t"]))
        self.successResultOf(self.client(Origin("http", "p", "other")).publish("t", b"x"))
        self.assertEqual(got.got, [])

    def test_paused_slow_consumer(self) -> None:
        """
        While paused, QoS 1 messages are queued in the session and QoS 0
        ones delivered up to the slow-consumer allowance, then dropped;
        on resume the queued ones arrive.
        """
        client = self.client()
        got = Collector()
        self.successResultOf(client.subscribe([("t", 1)], got))
        client.pause()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"q1", 1)
        session = client.link.session
        assert session is not None
        self.assertEqual(len(session.queue), 1)
        payload = b"x" * 10_000
        count = 2 * SLOW_CONSUMER_BYTES // len(payload)
        for _ in range(count):
            pub.publish("t", payload, 0)
        zeros = [d for d in got.got if d.qos == 0]
        self.assertGreater(len(zeros), 50)
        self.assertLess(len(zeros), count)
        self.assertEqual(self.broker.counters.dropped_qos0, count - len(zeros))
        self.assertNotIn(b"q1", [d.payload for d in got.got])
        client.resume()
        self.assertEqual(got.got[-1].payload, b"q1")
        self.assertEqual(session.inflight, {})
        self.assertEqual(len(session.queue), 0)

    def test_paused_consumer_holds_publisher(self) -> None:
        """
        A paused bridge consumer with messages queued for it holds back the
        MQTT client publishing them, until it resumes; a bridge publisher
        held that way waits (inbound flow control).
        """
        client = self.client()
        got = Collector()
        self.successResultOf(client.subscribe([("t", 1)], got))
        client.pause()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"1", 1)
        self.assertEqual(pub.transport.producerState, "paused")
        bridged = self.client(Origin("http", "p", "bridged"))
        self.successResultOf(bridged.publish("t", b"2", 1))
        waiting = bridged.publish("t", b"3", 1)
        self.assertNoResult(waiting)
        client.resume()
        self.assertEqual(pub.transport.producerState, "producing")
        self.successResultOf(waiting)
        self.assertEqual([d.payload for d in got.got], [b"1", b"2", b"3"])

    def test_slow_consumer_gives_up_holding(self) -> None:
        """A consumer paused past C{flow_control_timeout} stops holding publishers."""
        client = self.client()
        self.successResultOf(client.subscribe([("t", 1)], Collector()))
        client.pause()
        bridged = self.client(Origin("http", "p", "bridged"))
        self.successResultOf(bridged.publish("t", b"1", 1))
        waiting = bridged.publish("t", b"2", 1)
        self.assertNoResult(waiting)
        self.clock.advance(self.config.flow_control_timeout)
        self.successResultOf(waiting)
        self.assertFalse(client.ended)

    def test_consumer_failure(self) -> None:
        """A callback that raises ends the client with 0x83, logged."""
        client = self.client()

        def broken(delivery: Delivery) -> None:
            raise RuntimeError("boom")

        self.successResultOf(client.subscribe([("t", 0)], broken))
        self.successResultOf(self.client(Origin("http", "p", "other")).publish("t", b"x"))
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class SessionTests(BridgeTestCase):
    """Persistent sessions, takeover and the end of bridge clients."""

    def test_persistent_session(self) -> None:
        """
        A client with a session expiry closes; QoS 1 messages published
        meanwhile are queued, and reach it once it resumes with clean start
        0 and subscribes again (its session is present).
        """
        origin = Origin("http", "p", "keep")
        client = self.client(origin, session_expiry=60)
        self.successResultOf(client.subscribe([("t", 1)], Collector()))
        client.close()
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.SUCCESS)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"while away", 1)
        pub.publish("t", b"qos0 dropped", 0)
        again = self.client(origin, clean_start=False, session_expiry=60)
        self.assertTrue(again.session_present)
        got = Collector()
        self.successResultOf(again.subscribe([("t", 1)], got))
        self.assertEqual([d.payload for d in got.got], [b"while away"])
        session = again.link.session
        assert session is not None
        self.assertEqual(session.inflight, {})

    def test_resumed_exchanges_completed(self) -> None:
        """
        A session resumed by a bridge client completes what its previous
        connection left in flight: a QoS 1 message is delivered again (DUP)
        and acknowledged, a released QoS 2 one gets its PUBCOMP
        ([MQTT-4.4.0-1]).
        """
        props = Properties(session_expiry_interval=60)
        mqtt = self.connect_client("keep", 5, clean_start=False, properties=props)
        mqtt.subscribe("t", 2)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"two", 2)
        pub.publish_acked("t", b"one", 1)
        two, one = mqtt.publishes()
        assert two.packet_id is not None
        mqtt.send(PubRec(two.packet_id))
        self.assertIsInstance(mqtt.received()[0], PubRel)
        mqtt.drop()
        client = self.client(Origin("http", "p", "keep"), clean_start=False, session_expiry=60)
        got = Collector()
        self.successResultOf(client.subscribe([("t", 2)], got))
        self.assertEqual([d.payload for d in got.got], [b"one"])
        session = client.link.session
        assert session is not None
        self.assertEqual(session.inflight, {})

    def test_clean_start_discards(self) -> None:
        """Reconnecting with clean start gets a new session [MQTT-3.1.2-4]."""
        origin = Origin("http", "p", "keep")
        self.client(origin, session_expiry=60).close()
        self.assertFalse(self.client(origin, session_expiry=60).session_present)

    def test_takeover(self) -> None:
        """An MQTT client with the same client id takes over: C{closed} fires with 0x8E."""
        client = self.client()
        pending = client.publish("t", b"x", 1)
        self.successResultOf(pending)
        self.connect_client(ORIGIN.client_id, 5)
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.SESSION_TAKEN_OVER)
        self.assertTrue(client.ended)
        self.assertEqual(self.refusal(client.publish("t", b"x")).reason_code, ReasonCode.SESSION_TAKEN_OVER)
        self.assertEqual(self.broker.stats_for("http").disconnects["session_taken_over"], 1)

    def test_takeover_fails_waiting_publish(self) -> None:
        """A publish waiting for flow control fails when the client is taken over."""
        client = self.client()
        client.link.hold_reading(True)
        d = client.publish("t", b"x", 1)
        self.client()
        self.assertEqual(self.refusal(d).reason_code, ReasonCode.SESSION_TAKEN_OVER)

    def test_shutdown(self) -> None:
        """At shutdown, C{closed} fires with 0x8B."""
        client = self.client()
        self.successResultOf(self.broker.shutdown())
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.SERVER_SHUTTING_DOWN)

    def test_refused_while_stopping(self) -> None:
        """A client connecting during shutdown is refused with 0x88."""
        self.broker._stopping = True
        self.assertEqual(self.refusal(self.bridge.connect(ORIGIN)).reason_code, ReasonCode.SERVER_UNAVAILABLE)

    def test_close_counts(self) -> None:
        """A normal close counts as a client disconnect and frees the session."""
        client = self.client()
        self.assertEqual(self.broker.clients_connected, 1)
        client.close()
        self.assertEqual(self.broker.clients_connected, 0)
        self.assertNotIn(ORIGIN.client_id, self.broker.sessions)
        self.assertEqual(self.broker.stats_for("http").disconnects["client_disconnect"], 1)
        self.assertEqual(self.broker.stats_for("http").connections_open, 0)


class CloseCachedTests(BridgeTestCase):
    """L{Bridge.close_cached} ends every cached client."""

    def test_close_cached(self) -> None:
        """After it, no publish_once client is connected, and none is cached."""
        origin = Origin("http", "127.0.0.1:1")
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        self.successResultOf(self.bridge.publish_once(replace(origin, username="u"), "t", b"x"))
        self.assertEqual((self.bridge.cached, self.broker.clients_connected), (2, 2))
        self.bridge.close_cached()
        self.assertEqual((self.bridge.cached, self.broker.clients_connected), (0, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class PublishOnceTests(BridgeTestCase):
    """L{Bridge.publish_once} reuses admitted clients per credentials."""

    def make_broker(self) -> Broker:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(format_line("alice", hash_password("wonderland", 1000)) + "\n")
        self.runner = RecordingRunner()
        authenticator = PasswordFileAuthenticator(path, False, {}, self.runner)
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=authenticator)

    def test_one_authentication(self) -> None:
        """Many publishes with the same credentials verify the password once."""
        sub = self.connect_client("sub", 5, username="alice", password=b"wonderland")
        sub.subscribe("t", 1)
        self.runner.calls.clear()
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        for i in range(5):
            self.successResultOf(self.bridge.publish_once(origin, "t", b"%d" % i, 1))
        self.assertEqual(len(self.runner.calls), 1)
        self.assertEqual(len(sub.publishes()), 5)
        self.assertEqual(self.bridge.cached, 1)

    def test_concurrent_admission(self) -> None:
        """Publishes arriving while the client is being admitted share that admission."""
        self.runner.hold = True
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        ds = [self.bridge.publish_once(origin, "t", b"x", 1) for _ in range(3)]
        self.runner.fire()
        for d in ds:
            self.successResultOf(d)
        self.assertEqual(len(self.runner.calls), 1)

    def test_wrong_password_not_cached(self) -> None:
        """A refused password is checked again each time, and not cached."""
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"nope")
        for _ in range(2):
            error = self.refusal(self.bridge.publish_once(origin, "t", b"x"))
            self.assertEqual(error.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertEqual(len(self.runner.calls), 2)
        self.assertEqual(self.bridge.cached, 0)
        # The right password after a wrong one is checked, not taken from a cache.
        good = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        self.successResultOf(self.bridge.publish_once(good, "t", b"x"))
        self.assertEqual(len(self.runner.calls), 3)

    def test_idle_expiry(self) -> None:
        """A cached client unused for the idle time is closed; a use before restarts it."""
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        self.clock.advance(50)
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        self.clock.advance(50)
        self.assertEqual(self.bridge.cached, 1)
        self.assertEqual(self.broker.clients_connected, 1)
        self.clock.advance(11)
        self.assertEqual(self.bridge.cached, 0)
        self.assertEqual(self.broker.clients_connected, 0)
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        self.assertEqual(len(self.runner.calls), 2)

    def test_kicked_client_dropped(self) -> None:
        """A cached client the broker ends is dropped from the cache and replaced when needed."""
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        [session] = self.broker.sessions.values()
        assert session.link is not None
        session.link.close(ReasonCode.ADMINISTRATIVE_ACTION)
        self.assertEqual(self.bridge.cached, 0)
        self.successResultOf(self.bridge.publish_once(origin, "t", b"x"))
        self.assertEqual(len(self.runner.calls), 2)

    def test_verified_client_not_shared(self) -> None:
        """
        The client cached for a vouched-for user name is never handed to a
        request that only claims that name.
        """
        verified = Origin("coap", "127.0.0.1:1", "", "alice", verified=True)
        self.successResultOf(self.bridge.publish_once(verified, "t", b"x"))
        self.assertEqual(self.bridge.cached, 1)
        claimed = Origin("coap", "127.0.0.1:1", "", "alice")
        error = self.refusal(self.bridge.publish_once(claimed, "t", b"x"))
        self.assertEqual(error.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_bad_topic_before_admission(self) -> None:
        """A bad topic is refused without admitting a client."""
        origin = Origin("http", "127.0.0.1:1", "", "alice", b"wonderland")
        error = self.refusal(self.bridge.publish_once(origin, "a/#", b"x"))
        self.assertEqual(error.reason_code, ReasonCode.TOPIC_NAME_INVALID)
        self.assertEqual(self.runner.calls, [])


class KickTests(BridgeTestCase):
    """A bridge client's session seen from an MQTT client's side."""

    def make_broker(self) -> Broker:
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=NoUserDatabase(True))

    def test_disconnect_packet_unused(self) -> None:
        """The bridge client never gets a DISCONNECT packet: C{closed} carries the code."""
        client = self.client()
        client.link.send(Disconnect(ReasonCode.ADMINISTRATIVE_ACTION))
        self.assertFalse(client.ended)
        client.link.close(ReasonCode.ADMINISTRATIVE_ACTION)
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.ADMINISTRATIVE_ACTION)


class DurableTests(BridgeTestCase):
    """A QoS 1/2 publish fires only once the store writes it caused are done."""

    def make_store(self) -> IStore:
        self.slow = _SlowStore()
        return self.slow

    def _offline_subscriber(self) -> None:
        sub = self.connect_client("sub", 5, clean_start=False, properties=Properties(session_expiry_interval=60))
        sub.subscribe("t", qos=1)
        sub.disconnect()

    def test_waits_for_store(self) -> None:
        """
        A message queued for an offline persistent session is acknowledged
        (and its Deferred fired) after the store write, in order
        [MQTT-4.6.0-2].
        """
        self._offline_subscriber()
        client = self.client()
        first = client.publish("t", b"1", 1)
        second = client.publish("t", b"2", 2)
        self.assertNoResult(first)
        self.assertNoResult(second)
        one, two = self.slow.pending
        two.callback(None)
        self.assertNoResult(second)
        one.callback(None)
        self.successResultOf(first)
        self.successResultOf(second)

    def test_store_failure(self) -> None:
        """If the store write fails, the publish fails and the client is ended (0x80)."""
        self._offline_subscriber()
        self.slow.fail_next = True
        client = self.client()
        error = self.refusal(client.publish("t", b"1", 1))
        self.assertEqual(error.reason_code, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
