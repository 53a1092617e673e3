"""
Tests for L{mqttx.transports.coap.protocol}: the CoAP listener driven with
datagrams under a L{Clock}, a real broker behind it.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, capturedLogs
from twisted.python.filepath import FilePath

from mqttx.auth.passwords import PasswordFileAuthenticator
from mqttx.broker.broker import Broker
from mqttx.mqtt.packets import Publish
from mqttx.transports.coap import protocol
from mqttx.transports.coap.codec import BlockValue, Code, Message, MessageType, Option, OptionNumber
from mqttx.transports.coap.messages import EXCHANGE_LIFETIME
from mqttx.transports.coap.observe import SEQUENCE_MODULO
from mqttx.transports.coap.protocol import PIGGYBACK_DELAY
from mqttx.transports.coap.resources import Response
from tests.auth.test_passwords import RecordingRunner
from tests.transports.coap.helpers import CoAPTestCase

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
POST, GET, PUT, DELETE = Code.POST, Code.GET, Code.PUT, Code.DELETE


class PublishTests(CoAPTestCase):
    def test_post_publishes_piggybacked_changed(self) -> None:
        """A CON POST publishes; the 2.04 comes in the ACK, same message ID and token."""
        sub = self.connect_client("sub", 5)
        sub.subscribe("a/b", 1)
        request = self.request(POST, "/ps/a/b", query=("qos=1",), payload=b"hi")
        answer = self.answer()
        self.assertEqual((answer.type, answer.code, answer.message_id, answer.token),
                         (ACK, Code.CHANGED, request.message_id, b"t1"))
        [publish] = sub.publishes()
        self.assertEqual((publish.topic, publish.payload, publish.qos), ("a/b", b"hi", 1))

    def test_duplicate_con_published_once(self) -> None:
        """A repeated CON (same message ID) is not processed again; it gets the same ACK."""
        sub = self.connect_client("sub", 5)
        sub.subscribe("a/b", 0)
        request = self.request(POST, "/ps/a/b", payload=b"once")
        first = self.answer()
        self.send(request)
        self.assertEqual(self.answer(), first)
        self.assertEqual(len(sub.publishes()), 1)

    def test_slow_answer_is_separate(self) -> None:
        """
        An answer not ready within PIGGYBACK_DELAY: the CON is acknowledged
        (empty ACK, repeated for a duplicate), then the response comes as a
        CON of its own with the request's token (RFC 7252 5.2.2).
        """
        pending: Deferred[Response] = Deferred()
        self.patch(self.protocol._pubsub, "handle", lambda request, source: pending)
        request = self.request(POST, "/ps/a", token=b"sl")
        self.assertEqual(self.sent(), [])
        self.clock.advance(PIGGYBACK_DELAY)
        ack = self.answer()
        self.assertEqual((ack.type, ack.code, ack.message_id), (ACK, Code.EMPTY, request.message_id))
        self.send(request)
        self.assertEqual(self.answer(), ack)
        pending.callback(Response(Code.CHANGED))
        response = self.answer()
        self.assertEqual((response.type, response.code, response.token), (CON, Code.CHANGED, b"sl"))

    def test_non_request_gets_non_response(self) -> None:
        """A NON POST is answered with a NON 2.04 carrying its token."""
        self.request(POST, "/ps/x", mtype=NON, token=b"nn")
        answer = self.answer()
        self.assertEqual((answer.type, answer.code, answer.token), (NON, Code.CHANGED, b"nn"))

    def test_outside_ps_is_not_found(self) -> None:
        """Paths outside /ps/ are 4.04."""
        self.request(GET, "/other/x")
        self.assertEqual(self.answer().code, Code.NOT_FOUND)

    def test_unknown_critical_option_is_bad_option(self) -> None:
        """An unknown critical option gets 4.02 Bad Option (RFC 7252 5.4.1)."""
        self.request(POST, "/ps/a", options=(Option(2049, b"x"),))
        self.assertEqual(self.answer().code, Code.BAD_OPTION)

    def test_non_with_unknown_critical_option_dropped(self) -> None:
        """A NON with an unknown critical option is rejected silently (RFC 7252 5.4.1)."""
        self.request(POST, "/ps/a", mtype=NON, options=(Option(2049, b"x"),))
        self.assertEqual(self.sent(), [])

    def test_payload_over_max_is_too_large(self) -> None:
        """A payload over max_payload gets 4.13 with Size1."""
        self.build_coap(max_payload=10)
        self.request(POST, "/ps/a", payload=b"x" * 11)
        answer = self.answer()
        self.assertEqual(answer.code, Code.REQUEST_ENTITY_TOO_LARGE)
        self.assertEqual(answer.size1, 10)


class Block1Tests(CoAPTestCase):
    def test_block1_upload_published_whole(self) -> None:
        """A POST in Block1 blocks is answered 2.31 per block and published once, whole."""
        sub = self.connect_client("sub", 5)
        sub.subscribe("up", 0)
        body = bytes(range(256)) * 10
        for num in range(3):
            chunk = body[num * 1024 : (num + 1) * 1024]
            block = BlockValue(num, num < 2, 6)
            self.request(POST, "/ps/up", payload=chunk, options=(block.option(OptionNumber.BLOCK1),))
            answer = self.answer()
            self.assertEqual(answer.code, Code.CONTINUE if num < 2 else Code.CHANGED)
            self.assertEqual(answer.block1.num if answer.block1 else None, num)
        [publish] = sub.publishes()
        self.assertEqual(publish.payload, body)

    def test_block1_out_of_order_incomplete(self) -> None:
        """A Block1 block that is not the next one gets 4.08."""
        self.request(POST, "/ps/up", payload=b"x" * 16, options=(BlockValue(1, True, 0).option(OptionNumber.BLOCK1),))
        self.assertEqual(self.answer().code, Code.REQUEST_ENTITY_INCOMPLETE)

    def test_block1_over_max_payload(self) -> None:
        """Blocks adding up to more than max_payload get 4.13."""
        self.build_coap(max_payload=40)
        for num in range(2):
            block = BlockValue(num, True, 1).option(OptionNumber.BLOCK1)
            self.request(POST, "/ps/up", payload=b"x" * 32, options=(block,))
        self.assertEqual(self.sent()[-1].code, Code.REQUEST_ENTITY_TOO_LARGE)


class GetTests(CoAPTestCase):
    def test_get_retained_block2(self) -> None:
        """A retained message over the block size comes in Block2 blocks with an ETag."""
        body = b"0123456789abcdef" * 200  # 3200 bytes
        pub = self.connect_client("pub", 5)
        pub.publish_acked("big", body, retain=True)
        self.request(GET, "/ps/big")
        first = self.answer()
        self.assertEqual((first.code, first.block2, first.size2), (Code.CONTENT, BlockValue(0, True, 6), 3200))
        got, num = first.payload, 1
        while True:
            self.request(GET, "/ps/big", options=(BlockValue(num, False, 6).option(OptionNumber.BLOCK2),))
            block = self.answer()
            self.assertEqual(block.etag, first.etag)
            got += block.payload
            assert block.block2 is not None
            if not block.block2.more:
                break
            num += 1
        self.assertEqual(got, body)


    def test_kept_representations_bounded(self) -> None:
        """Block2 representations kept for later blocks are capped in bytes, the oldest dropped."""
        self.patch(protocol, "MAX_KEPT_BYTES", 5000)
        pub = self.connect_client("pub", 5)
        for topic in ("one", "two"):
            pub.publish_acked(topic, b"x" * 3000, retain=True)
            self.request(GET, f"/ps/{topic}")
        self.assertEqual([k[2] for k in self.protocol._downloads], [("ps", "two")])
        self.assertEqual(self.protocol._kept_bytes, 3000)


class ObserveTests(CoAPTestCase):
    def observe(self, path: str = "/ps/a/b", token: bytes = b"ob", **kw: object) -> Message:
        self.request(GET, path, observe=0, token=token, **kw)  # type: ignore[arg-type]
        return self.answer()

    def test_notifications_follow_mqtt_publishes(self) -> None:
        """
        Messages published by an MQTT client reach the observer as 2.05
        notifications with its token and increasing Observe numbers.
        """
        registration = self.observe()
        self.assertEqual((registration.type, registration.code), (ACK, Code.CONTENT))
        self.assertIsNotNone(registration.observe)
        pub = self.connect_client("pub", 5)
        for i in range(3):
            pub.publish_acked("a/b", b"m%d" % i)
        notes = self.sent()
        self.assertEqual([n.payload for n in notes], [b"m0", b"m1", b"m2"])
        self.assertEqual({n.token for n in notes}, {b"ob"})
        numbers = [registration.observe, *[n.observe for n in notes]]
        self.assertEqual(numbers, sorted(numbers))
        self.assertEqual(len(set(numbers)), 4)

    def test_confirmable_every_n(self) -> None:
        """
        Every confirmable_every-th notification is CON (RFC 7641 4.5); until
        it is acknowledged the others wait, then follow.
        """
        self.build_coap(confirmable_every=3)
        self.observe()
        pub = self.connect_client("pub", 5)
        for i in range(5):
            pub.publish_acked("a/b", b"%d" % i)
        notes = self.sent()
        self.assertEqual([n.type for n in notes], [NON, NON, CON])
        self.ack(notes[2])
        rest = self.sent()
        self.assertEqual([n.payload for n in rest], [b"3", b"4"])

    def test_reset_drops_observation(self) -> None:
        """An RST to a notification ends the observation and its bridge client."""
        self.observe()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a/b", b"1")
        [note] = self.sent()
        with capturedLogs() as events:
            self.reset(note)
        self.assertEqual(self.protocol.observations, {})
        self.assertIn("coap.observe_dropped", [e.get("event_id") for e in events])
        pub.publish_acked("a/b", b"2")
        self.assertEqual(self.sent(), [])

    def test_unacknowledged_confirmable_drops_observation(self) -> None:
        """A CON notification never acknowledged is retransmitted 4 times, then the observation ends."""
        self.build_coap(confirmable_every=1)
        self.observe()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a/b", b"1")
        [note] = self.sent()
        self.assertEqual(note.type, CON)
        for _ in range(4):
            self.clock.advance(60)
        self.assertEqual([m.message_id for m in self.sent()], [note.message_id] * 4)
        self.clock.advance(60)
        self.assertEqual(self.protocol.observations, {})

    def test_cancel_with_observe_1(self) -> None:
        """A GET with Observe=1 and the same token deregisters (RFC 7641 3.6)."""
        self.observe()
        self.request(GET, "/ps/a/b", observe=1, token=b"ob")
        answer = self.answer()
        self.assertIsNone(answer.observe)
        self.assertEqual(self.protocol.observations, {})
        self.connect_client("pub", 5).publish_acked("a/b", b"late")
        self.assertEqual(self.sent(), [])

    def test_cancel_stops_retransmission(self) -> None:
        """Cancelling an observation stops retransmitting its unacknowledged CON notification."""
        self.build_coap(confirmable_every=1)
        self.observe()
        self.connect_client("pub", 5).publish_acked("a/b", b"1")
        [note] = self.sent()
        self.request(GET, "/ps/a/b", observe=1, token=b"ob")
        self.sent()
        self.clock.advance(100)
        self.assertEqual(self.sent(), [])

    def test_wildcard_filter(self) -> None:
        """A `+` path segment is an MQTT wildcard; notifications carry the topic as Location-Path."""
        self.observe("/ps/a/+")
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a/x", b"1")
        pub.publish_acked("b/x", b"2")
        pub.publish_acked("a/y", b"3")
        notes = self.sent()
        self.assertEqual([(n.payload, n.location_path) for n in notes], [(b"1", ["a", "x"]), (b"3", ["a", "y"])])

    def test_wildcard_get_without_observe_is_bad_request(self) -> None:
        """A GET of a filter without Observe is 4.00: no one representation."""
        self.request(GET, "/ps/a/#")
        self.assertEqual(self.answer().code, Code.BAD_REQUEST)

    def test_observer_limit(self) -> None:
        """Beyond max_observers_per_source, registrations get 5.03 and no observation."""
        self.build_coap(max_observers_per_source=2)
        for token in (b"1", b"2"):
            self.assertIsNotNone(self.observe(token=token).observe)
        refused = self.observe(token=b"3")
        self.assertEqual((refused.code, refused.observe), (Code.SERVICE_UNAVAILABLE, None))
        self.assertEqual(len(self.protocol.observations), 2)

    def test_stop_sends_final_503(self) -> None:
        """Stopping ends each observation with a 5.03 notification without Observe (RFC 7641 3.2)."""
        self.observe()
        self.protocol.stop()
        [final] = self.sent()
        self.assertEqual((final.code, final.token, final.observe), (Code.SERVICE_UNAVAILABLE, b"ob", None))
        self.assertEqual(self.protocol.observations, {})

    def test_broker_ending_client_sends_final_503(self) -> None:
        """When the broker ends the observation's client (a takeover), the observer gets a final 5.03."""
        self.observe()
        [observation] = self.protocol.observations.values()
        assert observation.client is not None
        self.connect_client(observation.client.client_id, 5)
        [final] = self.sent()
        self.assertEqual((final.code, final.token, final.observe), (Code.SERVICE_UNAVAILABLE, b"ob", None))
        self.assertEqual(self.protocol.observations, {})

    def test_sequence_wraps_at_24_bits(self) -> None:
        """Observe numbers are taken modulo 2**24 (RFC 7641 4.4)."""
        self.observe()
        [observation] = self.protocol.observations.values()
        observation.sequence = SEQUENCE_MODULO - 1
        self.connect_client("pub", 5).publish_acked("a/b", b"x")
        [note] = self.sent()
        self.assertEqual(note.observe, 0)

    def test_notification_block2(self) -> None:
        """A large notification carries its first block; the rest come by GET with Block2."""
        self.observe()
        body = b"z" * 2500
        self.connect_client("pub", 5).publish_acked("a/b", body)
        [note] = self.sent()
        self.assertEqual((note.block2, len(note.payload)), (BlockValue(0, True, 6), 1024))
        self.request(GET, "/ps/a/b", token=b"b2", options=(BlockValue(2, False, 6).option(OptionNumber.BLOCK2),))
        last = self.answer()
        self.assertEqual((last.payload, last.etag), (body[2048:], note.etag))


class AccessTests(CoAPTestCase):
    def test_no_rule_forbidden_logged_once(self) -> None:
        """A source no rule admits gets 4.03, logged at info once per address (then at debug)."""
        stranger = ("192.0.2.1", 5683)
        with capturedLogs() as events:
            for _ in range(2):
                self.request(POST, "/ps/a", source=stranger)
                self.assertEqual(self.answer(stranger).code, Code.FORBIDDEN)
        denied = [e["log_level"] for e in events if e.get("event_id") == "coap.denied"]
        self.assertEqual(denied, [LogLevel.info, LogLevel.debug])

    def test_rule_username_and_subscribe_flag(self) -> None:
        """A rule's user publishes (the broker sees its user name); its subscribe: false refuses GET."""
        device = ("10.1.2.3", 5683)
        sub = self.connect_client("sub", 5)
        sub.subscribe("d", 0)
        self.request(POST, "/ps/d", payload=b"v", source=device)
        self.assertEqual(self.answer(device).code, Code.CHANGED)
        self.assertEqual(len(sub.publishes()), 1)
        self.assertIn("dev", [s.username for s in self.broker.sessions.values()])
        self.request(GET, "/ps/d", observe=0, source=device)
        self.assertEqual(self.answer(device).code, Code.FORBIDDEN)

    def test_rate_limit(self) -> None:
        """Over max_request_rate a source gets 4.29 with Max-Age (RFC 8516)."""
        self.build_coap(max_request_rate=2)
        codes = []
        for _ in range(3):
            self.request(POST, "/ps/a")
            codes.append(self.answer().code)
        self.assertEqual(codes, [Code.CHANGED, Code.CHANGED, Code.TOO_MANY_REQUESTS])
        self.request(POST, "/ps/a")
        self.assertGreaterEqual(self.answer().uint(OptionNumber.MAX_AGE) or 0, 1)
        self.clock.advance(1)
        self.request(POST, "/ps/a")
        self.assertEqual(self.answer().code, Code.CHANGED)


class PasswordFileAccessTests(CoAPTestCase):
    """The broker has a user database (a password file with no CoAP users in it)."""

    def make_broker(self) -> Broker:
        path = self.mktemp()
        FilePath(path).setContent(b"")
        authenticator = PasswordFileAuthenticator(path, False, {}, RecordingRunner())
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=authenticator)

    def test_rule_vouches_for_its_user(self) -> None:
        """
        A rule's user publishes without a password, as a verified identity;
        a rule without a user is an anonymous client, which this broker
        refuses (4.03).
        """
        device = ("10.1.2.3", 5683)
        self.request(POST, "/ps/d", payload=b"v", source=device)
        self.assertEqual(self.answer(device).code, Code.CHANGED)
        self.assertIn("dev", [s.username for s in self.broker.sessions.values()])
        self.request(POST, "/ps/d", payload=b"v")
        self.assertEqual(self.answer().code, Code.FORBIDDEN)


class MalformedTests(CoAPTestCase):
    def test_malformed_con_reset(self) -> None:
        """A malformed CON gets RST with its message ID; one log line, no traceback."""
        with capturedLogs() as events:
            self.send(bytes([0x40, 0x01, 0x12, 0x34, 0xFF]))  # payload marker, no payload
        [rst] = self.sent()
        self.assertEqual((rst.type, rst.message_id), (RST, 0x1234))
        self.assertEqual([e.get("event_id") for e in events], ["coap.malformed"])
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_short_datagram_ignored(self) -> None:
        """A datagram shorter than a header is ignored."""
        self.send(b"\x40\x01")
        self.assertEqual(self.sent(), [])

    def test_duplicate_remembered_for_exchange_lifetime(self) -> None:
        """After EXCHANGE_LIFETIME the same message ID is a new request."""
        sub = self.connect_client("sub", 5)
        sub.subscribe("a", 0)
        request = self.request(POST, "/ps/a")
        self.clock.advance(EXCHANGE_LIFETIME + 1)
        self.send(request)
        self.assertEqual(len([p for p in sub.received() if isinstance(p, Publish)]), 2)
