# -*- test-case-name: tests.mqtt.test_codec -*-
"""
Tests for L{mqttx.mqtt.codec}: round trips of every packet type at every
protocol level, incremental decoding, limits, and a corpus of malformed
packets, each with the reason code the specification asks for.
"""

from __future__ import annotations

import time

from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import MAX_PACKET_SIZE, Decoder, encode, encode_publish_frame
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode

MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL_ERROR = ReasonCode.PROTOCOL_ERROR

USER = (("k", "v"), ("k", "v2"), ("\ufeffbom", ""))


def connect_for(level: int, **kwargs: object) -> Connect:
    """A CONNECT for C{level} with the right protocol name."""
    return Connect("client-1", level, "MQIsdp" if level == 3 else "MQTT", **kwargs)  # type: ignore[arg-type]


def samples(level: int) -> list[Packet]:
    """One or more packets of every type valid at C{level}."""
    v5 = level == 5
    packets: list[Packet] = [
        connect_for(level),
        connect_for(
            level,
            clean_start=False,
            keep_alive=60,
            username="user",
            password=b"\x00secret\xff",
            will=Will("will/topic", b"bye", 2, True),
        ),
        ConnAck(level > 3, 0),
        ConnAck(False, 5 if level < 5 else ReasonCode.NOT_AUTHORIZED),
        Publish("a/b", b"payload"),
        Publish("a/\ufeffb", b"", 1, False, False, 1),
        Publish("t", b"x" * 300, 2, True, True, 0xFFFF),
        Publish("big", b"y" * 20_000, 1, packet_id=7),
        PubAck(1),
        PubRec(2),
        PubRel(3),
        PubComp(0xFFFF),
        Subscribe(10, (Subscription("a/+/c", 0), Subscription("#", 1), Subscription("x", 2))),
        SubAck(10, (0, 1, 2, 0x80)),
        Unsubscribe(11, ("a/+/c", "#")),
        UnsubAck(11, (0, 0x11) if v5 else ()),
        PingReq(),
        PingResp(),
        Disconnect(),
    ]
    if v5:
        packets += [
            connect_for(
                5,
                username=None,
                password=b"pw",  # 5.0 allows a password without a user name
                will=Will("w", b"", 0, False, Properties(will_delay_interval=5, payload_format_indicator=1)),
                properties=Properties(
                    session_expiry_interval=0xFFFFFFFF,
                    receive_maximum=20,
                    maximum_packet_size=1024,
                    topic_alias_maximum=0,
                    request_problem_information=0,
                    request_response_information=1,
                    authentication_method="SCRAM",
                    authentication_data=b"\x01",
                    user_property=USER,
                ),
            ),
            ConnAck(
                True,
                0,
                Properties(
                    assigned_client_identifier="auto-1",
                    server_keep_alive=30,
                    maximum_qos=1,
                    retain_available=0,
                    wildcard_subscription_available=1,
                    subscription_identifier_available=0,
                    shared_subscription_available=1,
                    response_information="r",
                    server_reference="other:1883",
                    reason_string="welcome",
                ),
            ),
            Publish(
                "",
                b"{}",
                1,
                packet_id=5,
                properties=Properties(
                    topic_alias=3,
                    payload_format_indicator=1,
                    message_expiry_interval=60,
                    content_type="application/json",
                    response_topic="reply/here",
                    correlation_data=b"\x00\x01",
                    subscription_identifier=(1, 268_435_455),
                    user_property=USER,
                ),
            ),
            PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS),
            PubRec(2, ReasonCode.QUOTA_EXCEEDED, Properties(reason_string="full")),
            PubRel(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
            PubComp(4, 0, Properties(user_property=USER)),
            Subscribe(
                12,
                (Subscription("a", 2, True, True, 2), Subscription("$share/g/b", 1, False, False, 1)),
                Properties(subscription_identifier=(77,), user_property=USER),
            ),
            SubAck(12, (ReasonCode.GRANTED_QOS_2, ReasonCode.NOT_AUTHORIZED), Properties(reason_string="no")),
            Unsubscribe(13, ("a",), Properties(user_property=USER)),
            UnsubAck(13, (ReasonCode.NO_SUBSCRIPTION_EXISTED,), Properties(reason_string="none")),
            Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE),
            Disconnect(0, Properties(session_expiry_interval=10, reason_string="bye")),
            Disconnect(ReasonCode.SERVER_MOVED, Properties(server_reference="elsewhere")),
            Auth(),
            Auth(
                ReasonCode.CONTINUE_AUTHENTICATION,
                Properties(authentication_method="SCRAM", authentication_data=b"x"),
            ),
            Auth(ReasonCode.RE_AUTHENTICATE),
        ]
    return packets


class RoundTripTests(SynchronousTestCase):
    """Every packet type survives encode then decode, at every level."""

    def check_level(self, level: int) -> None:
        for packet in samples(level):
            frame = encode(packet, level)
            self.assertEqual(Decoder(protocol_level=level).feed(frame), [packet], packet)

    def test_mqtt31(self) -> None:
        """Every packet type round-trips at level 3 (MQTT 3.1)."""
        self.check_level(3)

    def test_mqtt311(self) -> None:
        """Every packet type round-trips at level 4 (MQTT 3.1.1)."""
        self.check_level(4)

    def test_mqtt5(self) -> None:
        """Every packet type round-trips at level 5, with and without properties."""
        self.check_level(5)

    def test_byte_by_byte(self) -> None:
        """
        Fed one byte at a time, a server decoder returns nothing until each
        packet is complete, then exactly that packet.
        """
        for level in (3, 4, 5):
            packets = samples(level)
            decoder = Decoder()
            for packet in packets:
                frame = encode(packet, level)
                for i in range(len(frame) - 1):
                    self.assertEqual(decoder.feed(frame[i : i + 1]), [])
                self.assertEqual(decoder.feed(frame[-1:]), [packet])
            self.assertEqual(decoder.protocol_level, level)

    def test_many_packets_in_one_chunk(self) -> None:
        """One chunk holding many packets, the first a CONNECT, yields them all in order."""
        for level in (3, 4, 5):
            packets = samples(level)
            stream = b"".join(encode(p, level) for p in packets)
            self.assertEqual(Decoder().feed(stream), packets)

    def test_packet_split_across_chunks(self) -> None:
        """A chunk may end inside a packet; the rest completes it with the packets after it."""
        packets = samples(4)
        stream = b"".join(encode(p, 4) for p in packets)
        decoder = Decoder()
        got: list[Packet] = []
        for i in range(0, len(stream), 7):
            got += decoder.feed(stream[i : i + 7])
        self.assertEqual(got, packets)

    def test_bytearray_and_memoryview_input(self) -> None:
        """The decoder accepts any bytes-like chunk."""
        frame = encode(Publish("t", b"p"), 4)
        decoder = Decoder(protocol_level=4)
        self.assertEqual(decoder.feed(bytearray(frame)), [Publish("t", b"p")])
        self.assertEqual(decoder.feed(memoryview(frame)), [Publish("t", b"p")])

    def test_bom_is_kept(self) -> None:
        """[MQTT-1.5.4-3] (3.1.1: [MQTT-1.5.3-3]) A leading U+FEFF is neither skipped nor stripped."""
        frame = b"\x30\x06\x00\x04\xef\xbb\xbfa"
        self.assertEqual(Decoder(protocol_level=4).feed(frame), [Publish("\ufeffa")])

    def test_decoded_empty_properties_are_shared(self) -> None:
        """A v5 packet with an empty property block decodes to the shared NO_PROPERTIES."""
        [packet] = Decoder(protocol_level=5).feed(encode(Publish("t"), 5))
        assert isinstance(packet, Publish)
        self.assertIs(packet.properties, NO_PROPERTIES)


class EncodingTests(SynchronousTestCase):
    """Exact bytes where the specification fixes them."""

    def test_connect_31(self) -> None:
        """A 3.1 CONNECT carries protocol name MQIsdp and level 3."""
        self.assertEqual(
            encode(connect_for(3), 3), b"\x10\x16\x00\x06MQIsdp\x03\x02\x00\x00\x00\x08client-1"
        )

    def test_connect_311(self) -> None:
        """A 3.1.1 CONNECT with will, user name and password sets every flag bit but bit 0."""
        packet = connect_for(4, username="u", password=b"p", will=Will("w", b"m", 2, True), clean_start=True)
        self.assertEqual(
            encode(packet, 4),
            b"\x10\x20\x00\x04MQTT\x04\xf6\x00\x00\x00\x08client-1\x00\x01w\x00\x01m\x00\x01u\x00\x01p",
        )

    def test_v5_acks_use_the_shortest_form(self) -> None:
        """
        (3.4.2.1) An acknowledgement with reason 0 and no properties has
        Remaining Length 2; with only a reason code, 3.
        """
        self.assertEqual(encode(PubAck(5), 5), b"\x40\x02\x00\x05")
        self.assertEqual(encode(PubRel(5), 5), b"\x62\x02\x00\x05")
        self.assertEqual(encode(PubRec(5, 0x80), 5), b"\x50\x03\x00\x05\x80")
        self.assertEqual(
            encode(PubComp(5, 0, Properties(reason_string="r")), 5), b"\x70\x08\x00\x05\x00\x04\x1f\x00\x01r"
        )

    def test_v5_disconnect_and_auth_short_forms(self) -> None:
        """(3.14.2.1, 3.15.2.1) Reason 0 and no properties: Remaining Length 0."""
        self.assertEqual(encode(Disconnect(), 5), b"\xe0\x00")
        self.assertEqual(encode(Disconnect(0x8B), 5), b"\xe0\x01\x8b")
        self.assertEqual(encode(Auth(), 5), b"\xf0\x00")
        self.assertEqual(encode(Auth(0x19), 5), b"\xf0\x02\x19\x00")

    def test_v3_ignores_properties_and_reason_codes(self) -> None:
        """For 3.1 and 3.1.1, properties and reason codes are not written."""
        props = Properties(reason_string="ignored")
        for level in (3, 4):
            self.assertEqual(encode(PubAck(5, 0x80, props), level), b"\x40\x02\x00\x05")
            self.assertEqual(encode(Disconnect(0x8B, props), level), b"\xe0\x00")
            self.assertEqual(encode(UnsubAck(5, (0x11,), props), level), b"\xb0\x02\x00\x05")
            alias = Publish("t", b"", properties=Properties(topic_alias=1))
            self.assertEqual(encode(alias, level), b"\x30\x03\x00\x01t")

    def test_v3_suback_failure_is_0x80(self) -> None:
        """[MQTT-3.9.3-2] A 3.1.1 SUBACK has one failure code, 0x80, for any 5.0 failure."""
        self.assertEqual(encode(SubAck(1, (0, 2, ReasonCode.NOT_AUTHORIZED)), 4), b"\x90\x05\x00\x01\x00\x02\x80")

    def test_auth_before_v5_is_refused(self) -> None:
        """AUTH does not exist before 5.0."""
        self.assertRaises(ValueError, encode, Auth(), 4)

    def test_connect_level_must_match(self) -> None:
        """A CONNECT is encoded with its own level, which must be the one asked for."""
        self.assertRaises(ValueError, encode, connect_for(4), 5)

    def test_property_not_allowed_is_refused(self) -> None:
        """A property the packet type may not carry is a programming error."""
        self.assertRaises(ValueError, encode, PubAck(1, 0, Properties(topic_alias=1)), 5)

    def test_publish_needs_packet_id(self) -> None:
        """[MQTT-2.2.1-3] encode() refuses a QoS 1 PUBLISH without a packet identifier."""
        self.assertRaises(ValueError, encode, Publish("t", b"", 1), 4)

    def test_oversized_fields_are_refused(self) -> None:
        """[MQTT-4.7.3-3] Strings and binary fields hold at most 65,535 bytes."""
        self.assertRaises(ValueError, encode, Publish("t" * 65_536), 4)
        self.assertRaises(ValueError, encode, Subscribe(1, (Subscription("f" * 65_536),)), 4)
        self.assertRaises(ValueError, encode, connect_for(4, username="u", password=b"p" * 65_536), 4)

    def test_remaining_length_boundaries(self) -> None:
        """The Remaining Length uses 1, 2 and 3 bytes at 127, 128 and 16,384 (section 1.5.5)."""
        for payload_size, header in ((124, b"\x30\x7f"), (125, b"\x30\x80\x01"), (16_381, b"\x30\x80\x80\x01")):
            frame = encode(Publish("t", b"x" * payload_size), 4)
            self.assertEqual(frame[: len(header)], header)
            self.assertEqual(Decoder(protocol_level=4).feed(frame), [Publish("t", b"x" * payload_size)])


class PublishFrameTests(SynchronousTestCase):
    """L{encode_publish_frame} lets the broker patch only the packet identifier."""

    def test_patching_matches_encode(self) -> None:
        """Patching the id into a frame gives exactly encode() of the packet with that id."""
        for level in (3, 4, 5):
            for qos in (1, 2):
                for props in (NO_PROPERTIES, Properties(subscription_identifier=(3,), user_property=USER)):
                    for payload in (b"", b"x" * 200):
                        template = Publish("a/b", payload, qos, True, False, None, props)
                        frame, off = encode_publish_frame(template, level)
                        for pid in (1, 0x1234, 0xFFFF):
                            patched = frame[:off] + pid.to_bytes(2, "big") + frame[off + 2 :]
                            expected = Publish("a/b", payload, qos, True, False, pid, props)
                            self.assertEqual(patched, encode(expected, level))

    def test_qos0_has_no_offset(self) -> None:
        """A QoS 0 PUBLISH has no packet identifier [MQTT-2.2.1-2]: the offset is -1."""
        frame, off = encode_publish_frame(Publish("t", b"p"), 4)
        self.assertEqual((frame, off), (encode(Publish("t", b"p"), 4), -1))


class DecoderStateTests(SynchronousTestCase):
    """Protocol level, limits and the decoder's life cycle."""

    def test_connect_sets_protocol_level(self) -> None:
        """A server decoder starts without a level and takes the CONNECT's."""
        decoder = Decoder()
        self.assertIsNone(decoder.protocol_level)
        decoder.feed(encode(connect_for(5), 5))
        self.assertEqual(decoder.protocol_level, 5)

    def test_packet_before_connect(self) -> None:
        """[MQTT-3.1.0-1] The first packet must be CONNECT: anything else is a Protocol Error."""
        for frame in (encode(PingReq(), 4), encode(Publish("t"), 4), b"\xf0\x00", b"\x00\x00"):
            self.assertMalformedReason(Decoder(), frame, PROTOCOL_ERROR)

    def test_level_known_for_bad_connect(self) -> None:
        """
        [MQTT-3.1.2-2] An unsupported level is refused with 0x84, and the
        decoder reports the level it read so the caller can answer.
        """
        decoder = Decoder()
        frame = b"\x10\x0d\x00\x04MQTT\x06\x02\x00\x00\x00\x01c"
        self.assertMalformedReason(decoder, frame, ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)
        self.assertEqual(decoder.protocol_level, 6)

    def test_level_known_when_rest_of_connect_is_bad(self) -> None:
        """The level is set before the rest of the CONNECT is validated."""
        decoder = Decoder()
        self.assertMalformedReason(decoder, b"\x10\x0d\x00\x04MQTT\x05\x03\x00\x00\x00\x00\x00", MALFORMED)
        self.assertEqual(decoder.protocol_level, 5)

    def test_connect_too_short_for_level(self) -> None:
        """A CONNECT that ends before its level byte is malformed and sets no level."""
        decoder = Decoder()
        self.assertMalformedReason(decoder, b"\x10\x04\x00\x04MQ", MALFORMED)
        self.assertIsNone(decoder.protocol_level)

    def test_dead_after_error(self) -> None:
        """After a malformed packet every feed raises the same error."""
        decoder = Decoder(protocol_level=4)
        self.assertMalformedReason(decoder, b"\x00\x00", MALFORMED)
        self.assertMalformedReason(decoder, encode(PingReq(), 4), MALFORMED)

    def test_packets_before_error_are_kept(self) -> None:
        """The packets decoded from a chunk before a bad one stay available."""
        decoder = Decoder(protocol_level=4)
        good: list[Packet] = [Publish("a", b"1"), PingReq()]
        self.assertMalformedReason(decoder, b"".join(encode(p, 4) for p in good) + b"\x00\x00", MALFORMED)
        self.assertEqual(decoder.packets_before_error, good)

    def test_max_packet_size_from_fixed_header(self) -> None:
        """
        A packet larger than max_packet_size is refused with 0x95 as soon
        as its Remaining Length is known, before its body arrives.
        """
        decoder = Decoder(max_packet_size=1024 * 1024, protocol_level=4)
        # PUBLISH with Remaining Length 268,435,455: only the fixed header is fed.
        self.assertMalformedReason(decoder, b"\x30\xff\xff\xff\x7f", ReasonCode.PACKET_TOO_LARGE)

    def test_max_packet_size_counts_the_fixed_header(self) -> None:
        """max_packet_size is the whole packet: a 100-byte packet passes a limit of 100, not 99."""
        frame = encode(Publish("t", b"x" * 95), 4)
        self.assertEqual(len(frame), 100)
        self.assertEqual(len(Decoder(max_packet_size=100, protocol_level=4).feed(frame)), 1)
        too_small = Decoder(max_packet_size=99, protocol_level=4)
        self.assertMalformedReason(too_small, frame[:2], ReasonCode.PACKET_TOO_LARGE)

    def test_max_packet_size_before_connect(self) -> None:
        """The limit applies to the CONNECT too."""
        frame = encode(connect_for(4, username="x" * 100), 4)
        self.assertMalformedReason(Decoder(max_packet_size=50), frame[:3], ReasonCode.PACKET_TOO_LARGE)

    def test_large_packet_byte_by_byte_is_linear(self) -> None:
        """
        Feeding a 1 MB packet one byte at a time does not re-copy the buffer
        on every call (quadratic time would take minutes here).
        """
        frame = encode(Publish("t", b"z" * 1_000_000), 4)
        decoder = Decoder(protocol_level=4)
        begun = time.perf_counter()
        for i in range(len(frame) - 1):
            decoder.feed(frame[i : i + 1])
        self.assertEqual(decoder.feed(frame[-1:]), [Publish("t", b"z" * 1_000_000)])
        self.assertLess(time.perf_counter() - begun, 10)

    def test_bad_level_argument(self) -> None:
        """Only levels 3, 4 and 5 (or None) can be given."""
        self.assertRaises(ValueError, Decoder, protocol_level=6)

    def test_v5_short_forms(self) -> None:
        """(3.4.2.1, 3.14.2.1, 3.15.2.1) Every legal short form of a 5.0 acknowledgement decodes."""
        cases: list[tuple[bytes, Packet]] = [
            (b"\x40\x02\x00\x01", PubAck(1)),
            (b"\x40\x03\x00\x01\x10", PubAck(1, 0x10)),
            (b"\x40\x04\x00\x01\x10\x00", PubAck(1, 0x10)),
            (b"\x62\x02\x00\x01", PubRel(1)),
            (b"\xe0\x00", Disconnect()),
            (b"\xe0\x01\x04", Disconnect(4)),
            (b"\xe0\x02\x04\x00", Disconnect(4)),
            (b"\xf0\x00", Auth()),
            (b"\xf0\x01\x18", Auth(0x18)),
        ]
        for frame, packet in cases:
            self.assertEqual(Decoder(protocol_level=5).feed(frame), [packet])

    def test_mqtt31_tolerates_dup_on_subscribe(self) -> None:
        """3.1 left the header flags of SUBSCRIBE to DUP/QoS; a retried SUBSCRIBE sets DUP."""
        frame = b"\x8a\x06\x00\x01\x00\x01a\x00"
        self.assertEqual(Decoder(protocol_level=3).feed(frame), [Subscribe(1, (Subscription("a"),))])

    def assertMalformedReason(self, decoder: Decoder, data: bytes, reason: ReasonCode) -> None:
        error = self.assertRaises(MalformedPacket, decoder.feed, data)
        self.assertEqual(error.reason_code, reason, str(error))


def frame(first: int, body: bytes) -> bytes:
    """A packet with a one-byte Remaining Length around a hand-written body."""
    assert len(body) < 0x80
    return bytes((first, len(body))) + body


def s(text: bytes) -> bytes:
    """A hand-written length-prefixed string or binary field."""
    return len(text).to_bytes(2, "big") + text


# A valid 3.1.1 / 5.0 CONNECT variable header up to the flags byte.
V4 = s(b"MQTT") + b"\x04"
V5 = s(b"MQTT") + b"\x05"


class MalformedPacketTests(SynchronousTestCase):
    """
    A corpus of bad packets, each refused with L{MalformedPacket} and the
    reason code the specification gives (3.1.1 statement ids first, 5.0 ids
    where they differ).
    """

    def check(self, level: int | None, data: bytes, reason: ReasonCode) -> None:
        decoder = Decoder(protocol_level=level)
        error = self.assertRaises(MalformedPacket, decoder.feed, data)
        self.assertEqual(error.reason_code, reason, str(error))
        # One byte at a time, the same error comes out at some point.
        decoder = Decoder(protocol_level=level)
        with self.assertRaises(MalformedPacket) as raised:
            for i in range(len(data)):
                decoder.feed(data[i : i + 1])
        self.assertEqual(raised.exception.reason_code, reason)

    # fixed header

    def test_packet_type_0(self) -> None:
        """Packet type 0 is reserved (2.2.1): malformed."""
        self.check(4, b"\x00\x00", MALFORMED)

    def test_auth_before_v5(self) -> None:
        """Packet type 15 is reserved in 3.1.1: malformed."""
        self.check(4, b"\xf0\x00", MALFORMED)
        self.check(3, b"\xf0\x00", MALFORMED)

    def test_pubrel_flags(self) -> None:
        """[MQTT-2.2.2-1] [MQTT-2.2.2-2] [MQTT-3.6.1-1] PUBREL flags must be 0010."""
        self.check(4, frame(0x60, b"\x00\x01"), MALFORMED)
        self.check(5, frame(0x63, b"\x00\x01"), MALFORMED)

    def test_subscribe_flags(self) -> None:
        """[MQTT-3.8.1-1] SUBSCRIBE flags must be 0010."""
        self.check(4, frame(0x80, b"\x00\x01" + s(b"a") + b"\x00"), MALFORMED)

    def test_unsubscribe_flags(self) -> None:
        """[MQTT-3.10.1-1] UNSUBSCRIBE flags must be 0010."""
        self.check(5, frame(0xA0, b"\x00\x01\x00" + s(b"a")), MALFORMED)

    def test_reserved_flags_of_other_packets(self) -> None:
        """[MQTT-2.2.2-1] (5.0: [MQTT-2.1.3-1]) Every other type but PUBLISH has flags 0000."""
        for data in (
            frame(0x42, b"\x00\x01"),
            frame(0x21, b"\x00\x00"),
            frame(0x58, b"\x00\x01"),
            frame(0x74, b"\x00\x01"),
            frame(0x91, b"\x00\x01\x00"),
            frame(0xB2, b"\x00\x01"),
            b"\xc1\x00",
            b"\xd2\x00",
            b"\xe8\x00",
        ):
            self.check(4, data, MALFORMED)

    def test_connect_flags(self) -> None:
        """[MQTT-2.2.2-1] CONNECT's header flags are 0000, whatever the level."""
        self.check(None, frame(0x12, V4 + b"\x02\x00\x00" + s(b"c")), MALFORMED)

    def test_disconnect_and_auth_flags_v5(self) -> None:
        """[MQTT-3.14.1-1] [MQTT-3.15.1-1] DISCONNECT and AUTH header flags are 0000."""
        self.check(5, b"\xe1\x00", MALFORMED)
        self.check(5, b"\xf4\x00", MALFORMED)

    def test_bad_first_byte_refused_alone(self) -> None:
        """A bad first byte is refused before the rest of the packet arrives."""
        self.check(4, b"\x00", MALFORMED)

    # remaining length and other Variable Byte Integers

    def test_remaining_length_five_bytes(self) -> None:
        """(1.5.5) A Remaining Length has at most four bytes."""
        self.check(4, b"\x30\xff\xff\xff\xff\x01", MALFORMED)

    def test_remaining_length_not_minimal(self) -> None:
        """[MQTT-1.5.5-1] 0x80 0x00 encodes 0 in two bytes instead of one."""
        self.check(4, b"\xc0\x80\x00", MALFORMED)
        self.check(4, b"\x30\x83\x80\x00" + b"\x00\x01t", MALFORMED)

    def test_property_length_not_minimal(self) -> None:
        """[MQTT-1.5.5-1] The property length is a minimal Variable Byte Integer too."""
        self.check(5, frame(0x40, b"\x00\x01\x00\x80\x00"), MALFORMED)

    def test_subscription_identifier_not_minimal(self) -> None:
        """[MQTT-1.5.5-1] So is a Subscription Identifier."""
        self.check(5, frame(0x30, s(b"t") + b"\x03\x0b\x81\x00"), MALFORMED)

    # UTF-8 strings

    def test_invalid_utf8(self) -> None:
        """[MQTT-1.5.3-1] (5.0: [MQTT-1.5.4-1]) Ill-formed UTF-8 is malformed."""
        self.check(4, frame(0x30, s(b"a\xff")), MALFORMED)
        self.check(4, frame(0x30, s(b"\xc0\xaf")), MALFORMED)  # overlong "/"
        self.check(5, frame(0x82, b"\x00\x01\x00" + s(b"\xe2\x82") + b"\x00"), MALFORMED)  # truncated sequence

    def test_surrogate(self) -> None:
        """[MQTT-1.5.3-1] (5.0: [MQTT-1.5.4-1]) UTF-8 encoding of U+D800..U+DFFF is malformed."""
        self.check(4, frame(0x30, s(b"\xed\xa0\x80")), MALFORMED)
        self.check(None, frame(0x10, V4 + b"\x02\x00\x00" + s(b"\xed\xbf\xbf")), MALFORMED)

    def test_null_character(self) -> None:
        """[MQTT-1.5.3-2] (5.0: [MQTT-1.5.4-2]) U+0000 in a string is malformed."""
        self.check(4, frame(0x30, s(b"a\x00b")), MALFORMED)
        self.check(None, frame(0x10, V4 + b"\x02\x00\x00" + s(b"c\x00")), MALFORMED)
        self.check(5, frame(0x40, b"\x00\x01\x00\x07\x26" + s(b"\x00") + s(b"v")), MALFORMED)

    # PUBLISH

    def test_publish_qos_3(self) -> None:
        """[MQTT-3.3.1-4] A PUBLISH must not have both QoS bits set."""
        self.check(4, frame(0x36, s(b"t") + b"\x00\x01"), MALFORMED)

    def test_publish_dup_with_qos_0(self) -> None:
        """[MQTT-3.3.1-2] DUP must be 0 for QoS 0."""
        self.check(4, frame(0x38, s(b"t")), MALFORMED)

    def test_publish_wildcards(self) -> None:
        """[MQTT-3.3.2-2] A topic name with + or # is refused with 0x90."""
        self.check(4, frame(0x30, s(b"a/+")), ReasonCode.TOPIC_NAME_INVALID)
        self.check(5, frame(0x30, s(b"#") + b"\x00"), ReasonCode.TOPIC_NAME_INVALID)

    def test_publish_empty_topic_v311(self) -> None:
        """[MQTT-4.7.3-1] Topic names are at least one character long."""
        self.check(4, frame(0x30, s(b"") + b"p"), MALFORMED)

    def test_publish_empty_topic_without_alias_v5(self) -> None:
        """(3.3.2.1) In 5.0 an empty topic name without a Topic Alias is a Protocol Error."""
        self.check(5, frame(0x30, s(b"") + b"\x00p"), PROTOCOL_ERROR)

    def test_publish_empty_topic_with_alias_v5(self) -> None:
        """(3.3.2.3.4) An empty topic name with a Topic Alias decodes; resolving is not the codec's job."""
        [packet] = Decoder(protocol_level=5).feed(frame(0x30, s(b"") + b"\x03\x23\x00\x07p"))
        self.assertEqual(packet, Publish("", b"p", properties=Properties(topic_alias=7)))

    def test_publish_packet_id_0(self) -> None:
        """[MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) A QoS > 0 PUBLISH needs a non-zero packet identifier."""
        self.check(4, frame(0x32, s(b"t") + b"\x00\x00"), PROTOCOL_ERROR)
        self.check(5, frame(0x34, s(b"t") + b"\x00\x00\x00"), PROTOCOL_ERROR)

    def test_publish_truncated(self) -> None:
        """Fields running past the Remaining Length are malformed."""
        self.check(4, frame(0x30, b"\x00\x05abc"), MALFORMED)  # topic
        self.check(4, frame(0x32, s(b"t") + b"\x00"), MALFORMED)  # packet identifier
        self.check(5, frame(0x30, s(b"t")), MALFORMED)  # property length
        self.check(4, frame(0x30, b"\x00"), MALFORMED)  # topic length

    def test_publish_topic_alias_0(self) -> None:
        """[MQTT-3.3.2-8] A Topic Alias of 0 is refused with 0x94."""
        self.check(5, frame(0x30, s(b"t") + b"\x03\x23\x00\x00"), ReasonCode.TOPIC_ALIAS_INVALID)

    def test_response_topic_wildcard(self) -> None:
        """[MQTT-3.3.2-14] The Response Topic must not contain wildcards."""
        self.check(5, frame(0x30, s(b"t") + b"\x04\x08" + s(b"+")), PROTOCOL_ERROR)

    # SUBSCRIBE and UNSUBSCRIBE

    def test_subscribe_without_filters(self) -> None:
        """[MQTT-3.8.3-3] (5.0: [MQTT-3.8.3-2]) A SUBSCRIBE has at least one filter."""
        self.check(4, frame(0x82, b"\x00\x01"), PROTOCOL_ERROR)
        self.check(5, frame(0x82, b"\x00\x01\x00"), PROTOCOL_ERROR)

    def test_subscribe_v311_reserved_bits(self) -> None:
        """[MQTT-3-8.3-4] In 3.1.1 the upper six bits of the requested QoS byte are 0."""
        for opts in (b"\x04", b"\x08", b"\x80", b"\x03"):
            self.check(4, frame(0x82, b"\x00\x01" + s(b"a") + opts), MALFORMED)
        self.check(3, frame(0x82, b"\x00\x01" + s(b"a") + b"\x10"), MALFORMED)

    def test_subscribe_v5_reserved_bits(self) -> None:
        """[MQTT-3.8.3-5] Bits 6 and 7 of the Subscription Options are reserved."""
        for opts in (b"\x40", b"\x80"):
            self.check(5, frame(0x82, b"\x00\x01\x00" + s(b"a") + opts), MALFORMED)

    def test_subscribe_v5_qos_3(self) -> None:
        """(3.8.3.1) "It is a Protocol Error if the Maximum QoS field has the value 3." """
        self.check(5, frame(0x82, b"\x00\x01\x00" + s(b"a") + b"\x03"), PROTOCOL_ERROR)

    def test_subscribe_v5_retain_handling_3(self) -> None:
        """(3.8.3.1) "It is a Protocol Error to send a Retain Handling value of 3." """
        self.check(5, frame(0x82, b"\x00\x01\x00" + s(b"a") + b"\x30"), PROTOCOL_ERROR)

    def test_subscribe_empty_filter(self) -> None:
        """[MQTT-4.7.3-1] A topic filter is at least one character long."""
        self.check(4, frame(0x82, b"\x00\x01" + s(b"") + b"\x00"), MALFORMED)

    def test_subscribe_missing_options(self) -> None:
        """A filter without its options byte runs past the packet."""
        self.check(4, frame(0x82, b"\x00\x01" + s(b"a")), MALFORMED)

    def test_subscribe_packet_id_0(self) -> None:
        """[MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]) SUBSCRIBE needs a non-zero packet identifier."""
        self.check(4, frame(0x82, b"\x00\x00" + s(b"a") + b"\x00"), PROTOCOL_ERROR)

    def test_subscribe_two_subscription_identifiers(self) -> None:
        """(3.8.2.1.2) A SUBSCRIBE carries at most one Subscription Identifier."""
        self.check(5, frame(0x82, b"\x00\x01\x04\x0b\x01\x0b\x02" + s(b"a") + b"\x00"), PROTOCOL_ERROR)

    def test_unsubscribe_without_filters(self) -> None:
        """[MQTT-3.10.3-2] An UNSUBSCRIBE has at least one filter."""
        self.check(4, frame(0xA2, b"\x00\x01"), PROTOCOL_ERROR)
        self.check(5, frame(0xA2, b"\x00\x01\x00"), PROTOCOL_ERROR)

    def test_unsubscribe_empty_filter(self) -> None:
        """[MQTT-4.7.3-1] A topic filter is at least one character long."""
        self.check(4, frame(0xA2, b"\x00\x01" + s(b"")), MALFORMED)

    def test_unsubscribe_packet_id_0(self) -> None:
        """[MQTT-2.3.1-1] UNSUBSCRIBE needs a non-zero packet identifier."""
        self.check(4, frame(0xA2, b"\x00\x00" + s(b"a")), PROTOCOL_ERROR)

    # properties

    def test_property_not_allowed(self) -> None:
        """(2.2.2.2) A property the packet type may not carry is malformed."""
        self.check(5, frame(0x30, s(b"t") + b"\x02\x1f\x00"), MALFORMED)  # Reason String in PUBLISH
        self.check(5, frame(0x40, b"\x00\x01\x00\x03\x23\x00\x01"), MALFORMED)  # Topic Alias in PUBACK
        self.check(5, frame(0x30, s(b"t") + b"\x02\x05\x00"), MALFORMED)  # no property 0x05

    def test_will_property_not_allowed(self) -> None:
        """A will may carry only will properties: Topic Alias is malformed there."""
        body = V5 + b"\x06\x00\x00\x00" + s(b"c") + b"\x03\x23\x00\x01" + s(b"w") + s(b"")
        self.check(None, frame(0x10, body), MALFORMED)

    def test_property_twice(self) -> None:
        """(2.2.2.2) A property other than User Property appearing twice is a Protocol Error."""
        self.check(5, frame(0x30, s(b"t") + b"\x04\x01\x00\x01\x01"), PROTOCOL_ERROR)
        self.check(5, frame(0x20, b"\x00\x00\x06\x21\x00\x01\x21\x00\x01"), PROTOCOL_ERROR)

    def test_repeatable_properties(self) -> None:
        """User Property, and Subscription Identifier in PUBLISH, may repeat (3.3.2.3.8)."""
        body = s(b"t") + b"\x10\x26" + s(b"a") + s(b"") + b"\x26" + s(b"a") + s(b"") + b"\x0b\x01\x0b\x02"
        [packet] = Decoder(protocol_level=5).feed(frame(0x30, body))
        expected = Properties(user_property=(("a", ""), ("a", "")), subscription_identifier=(1, 2))
        self.assertEqual(packet, Publish("t", properties=expected))

    def test_property_length_past_packet(self) -> None:
        """A property block longer than what is left of the packet is malformed."""
        self.check(5, frame(0x40, b"\x00\x01\x00\x05\x1f\x00"), MALFORMED)

    def test_property_value_past_block(self) -> None:
        """A property running past its block, even if the packet goes on, is malformed."""
        self.check(5, frame(0x30, s(b"t") + b"\x02\x02\x00\x00\x00\x05"), MALFORMED)

    def test_boolean_property_values(self) -> None:
        """(3.1.2.11.6, 3.1.2.11.7, 3.2.2.3.4, 3.2.2.3.5, 3.3.2.3.2) 0 or 1, else a Protocol Error."""
        self.check(5, frame(0x30, s(b"t") + b"\x02\x01\x02"), PROTOCOL_ERROR)  # Payload Format Indicator
        self.check(None, frame(0x10, V5 + b"\x02\x00\x00\x02\x17\x02" + s(b"c")), PROTOCOL_ERROR)
        self.check(None, frame(0x10, V5 + b"\x02\x00\x00\x02\x19\x05" + s(b"c")), PROTOCOL_ERROR)
        for ident in (0x24, 0x25, 0x28, 0x29, 0x2A):  # Maximum QoS, Retain/Wildcard/SubId/Shared Available
            self.check(5, frame(0x20, b"\x00\x00\x02" + bytes((ident, 2))), PROTOCOL_ERROR)

    def test_zero_property_values(self) -> None:
        """(3.1.2.11.3, 3.1.2.11.4, 3.8.2.1.2) Receive Maximum, Maximum Packet Size, Subscription Identifier 0."""
        self.check(None, frame(0x10, V5 + b"\x02\x00\x00\x03\x21\x00\x00" + s(b"c")), PROTOCOL_ERROR)
        self.check(None, frame(0x10, V5 + b"\x02\x00\x00\x05\x27\x00\x00\x00\x00" + s(b"c")), PROTOCOL_ERROR)
        self.check(5, frame(0x82, b"\x00\x01\x02\x0b\x00" + s(b"a") + b"\x00"), PROTOCOL_ERROR)

    def test_authentication_data_without_method(self) -> None:
        """(3.1.2.11.10) Authentication Data without an Authentication Method is a Protocol Error."""
        self.check(None, frame(0x10, V5 + b"\x02\x00\x00\x04\x16" + s(b"x") + s(b"c")), PROTOCOL_ERROR)

    # CONNECT

    def test_connect_protocol_name(self) -> None:
        """[MQTT-3.1.2-1] A wrong protocol name for the level is refused with 0x84."""
        for body in (s(b"MQTX") + b"\x04", s(b"MQIsdp") + b"\x04", s(b"MQTT") + b"\x03", s(b"") + b"\x05"):
            self.check(None, frame(0x10, body + b"\x02\x00\x00" + s(b"c")), ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)

    def test_connect_protocol_level(self) -> None:
        """[MQTT-3.1.2-2] A level other than 3, 4 or 5 is refused with 0x84."""
        for level in (0, 2, 6, 255):
            body = s(b"MQTT") + bytes((level,)) + b"\x02\x00\x00" + s(b"c")
            self.check(None, frame(0x10, body), ReasonCode.UNSUPPORTED_PROTOCOL_VERSION)

    def test_connect_reserved_flag(self) -> None:
        """[MQTT-3.1.2-3] The CONNECT reserved flag must be 0."""
        self.check(None, frame(0x10, V4 + b"\x03\x00\x00" + s(b"c")), MALFORMED)
        self.check(None, frame(0x10, V5 + b"\x03\x00\x00\x00" + s(b"c")), MALFORMED)

    def test_connect_will_qos_without_will(self) -> None:
        """[MQTT-3.1.2-11] [MQTT-3.1.2-13] Without a will, will QoS is 0."""
        self.check(None, frame(0x10, V4 + b"\x0a\x00\x00" + s(b"c")), MALFORMED)

    def test_connect_will_retain_without_will(self) -> None:
        """[MQTT-3.1.2-11] [MQTT-3.1.2-15] Without a will, will retain is 0."""
        self.check(None, frame(0x10, V4 + b"\x22\x00\x00" + s(b"c")), MALFORMED)

    def test_connect_will_qos_3(self) -> None:
        """[MQTT-3.1.2-14] Will QoS must not be 3."""
        self.check(None, frame(0x10, V4 + b"\x1e\x00\x00" + s(b"c") + s(b"w") + s(b"m")), MALFORMED)

    def test_connect_password_without_username(self) -> None:
        """[MQTT-3.1.2-22] In 3.1.1 a password needs a user name; 5.0 allows it (3.1.2.9)."""
        self.check(None, frame(0x10, V4 + b"\x42\x00\x00" + s(b"c") + s(b"p")), MALFORMED)
        [packet] = Decoder().feed(frame(0x10, V5 + b"\x42\x00\x00\x00" + s(b"c") + s(b"p")))
        self.assertEqual(packet, Connect("c", 5, password=b"p"))

    def test_connect_missing_payload_fields(self) -> None:
        """[MQTT-3.1.2-9] [MQTT-3.1.2-19] [MQTT-3.1.2-21] Fields the flags announce must be present."""
        for flags, tail in ((b"\x06", s(b"w")), (b"\x82", b""), (b"\xc2", s(b"u")), (b"\x02", b"")):
            payload = tail if flags == b"\x02" else s(b"c") + tail
            self.check(None, frame(0x10, V4 + flags + b"\x00\x00" + payload), MALFORMED)

    def test_connect_trailing_bytes(self) -> None:
        """[MQTT-3.1.2-18] [MQTT-3.1.2-20] Bytes after the last announced field are malformed."""
        self.check(None, frame(0x10, V4 + b"\x02\x00\x00" + s(b"c") + s(b"u")), MALFORMED)

    def test_connect_v31_reserved_flag_tolerated(self) -> None:
        """3.1 did not reserve CONNECT flag bit 0; like Mosquitto, level 3 ignores it."""
        [packet] = Decoder().feed(frame(0x10, s(b"MQIsdp") + b"\x03\x03\x00\x00" + s(b"c")))
        self.assertEqual(packet, Connect("c", 3, "MQIsdp"))

    # acknowledgements and the rest

    def test_connack_reserved_flags(self) -> None:
        """(3.2.2.1; 5.0: [MQTT-3.2.2-1]) CONNACK flag bits 7-1 are reserved."""
        self.check(4, frame(0x20, b"\x02\x00"), MALFORMED)
        self.check(5, frame(0x20, b"\x80\x00\x00"), MALFORMED)

    def test_connack_return_code(self) -> None:
        """(3.1.1 table 3.1) Return codes 6-255 are reserved; 5.0 codes outside table 3-1 are a Protocol Error."""
        self.check(4, frame(0x20, b"\x00\x06"), MALFORMED)
        self.check(5, frame(0x20, b"\x00\x01\x00"), PROTOCOL_ERROR)

    def test_connack_length(self) -> None:
        """A 3.1.1 CONNACK has Remaining Length 2."""
        self.check(4, frame(0x20, b"\x00\x00\x00"), MALFORMED)
        self.check(4, frame(0x20, b"\x00"), MALFORMED)

    def test_ack_length(self) -> None:
        """A 3.1.1 PUBACK, PUBREC, PUBREL, PUBCOMP or UNSUBACK has Remaining Length 2."""
        for first in (0x40, 0x50, 0x62, 0x70, 0xB0):
            self.check(4, frame(first, b"\x00\x01\x00"), MALFORMED)
            self.check(4, frame(first, b"\x00"), MALFORMED)

    def test_ack_reason_codes(self) -> None:
        """[MQTT-3.4.2-1] [MQTT-3.6.2-1] Only the codes listed for the packet type are allowed."""
        self.check(5, frame(0x40, b"\x00\x01\x92"), PROTOCOL_ERROR)
        self.check(5, frame(0x62, b"\x00\x01\x10"), PROTOCOL_ERROR)
        self.check(5, frame(0x70, b"\x00\x01\x80"), PROTOCOL_ERROR)

    def test_ack_trailing_bytes(self) -> None:
        """Bytes after a 5.0 acknowledgement's properties are malformed."""
        self.check(5, frame(0x40, b"\x00\x01\x00\x00\x00"), MALFORMED)

    def test_suback_codes(self) -> None:
        """[MQTT-3.9.3-2] 3.1.1 SUBACK return codes are 0, 1, 2 and 0x80 only."""
        self.check(4, frame(0x90, b"\x00\x01\x03"), MALFORMED)
        self.check(5, frame(0x90, b"\x00\x01\x00\x03"), PROTOCOL_ERROR)

    def test_suback_without_codes(self) -> None:
        """[MQTT-3.8.4-6] [MQTT-3.11.3-1] A SUBACK (and a 5.0 UNSUBACK) has one code per filter, so at least one."""
        self.check(4, frame(0x90, b"\x00\x01"), PROTOCOL_ERROR)
        self.check(5, frame(0xB0, b"\x00\x01\x00"), PROTOCOL_ERROR)

    def test_unsuback_codes(self) -> None:
        """[MQTT-3.11.3-2] 5.0 UNSUBACK codes come from table 3-14."""
        self.check(5, frame(0xB0, b"\x00\x01\x00\x01"), PROTOCOL_ERROR)

    def test_ping_with_body(self) -> None:
        """PINGREQ and PINGRESP have Remaining Length 0."""
        self.check(4, b"\xc0\x01\x00", MALFORMED)
        self.check(5, b"\xd0\x01\x00", MALFORMED)

    def test_disconnect_with_body_v311(self) -> None:
        """A 3.1.1 DISCONNECT has Remaining Length 0."""
        self.check(4, b"\xe0\x01\x00", MALFORMED)

    def test_disconnect_reason_code_v5(self) -> None:
        """[MQTT-3.14.2-1] DISCONNECT codes come from table 3-10."""
        self.check(5, b"\xe0\x01\x01", PROTOCOL_ERROR)

    def test_disconnect_trailing_bytes(self) -> None:
        """Bytes after a DISCONNECT's properties are malformed."""
        self.check(5, b"\xe0\x03\x00\x00\x00", MALFORMED)

    def test_auth_reason_code(self) -> None:
        """[MQTT-3.15.2-1] AUTH codes are 0x00, 0x18 and 0x19."""
        self.check(5, b"\xf0\x02\x01\x00", PROTOCOL_ERROR)

    def test_packet_too_large_reason(self) -> None:
        """A packet over max_packet_size is refused with 0x95, whatever its type."""
        decoder = Decoder(max_packet_size=10, protocol_level=4)
        error = self.assertRaises(MalformedPacket, decoder.feed, b"\x82\x0a")
        self.assertEqual(error.reason_code, ReasonCode.PACKET_TOO_LARGE)
        self.assertEqual(MAX_PACKET_SIZE, 268_435_460)
