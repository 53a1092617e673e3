# -*- test-case-name: tests.mqtt.test_codec_properties -*-
"""
Property-based tests for L{mqttx.mqtt.codec} (STYLE.md section 7): round
trip, chunking invariance, and bad input raising nothing but
L{MalformedPacket}.
"""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import Decoder, encode, encode_publish_frame
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packets import Connect, Packet, Publish
from tests.strategies import LEVELS, connects, leveled_packets, packet_ids, packets, publishes

fast = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def streams(draw: st.DrawFn) -> tuple[Connect, list[Packet]]:
    """A CONNECT and the packets that follow it on one connection."""
    level = draw(st.sampled_from(LEVELS))
    return draw(connects(level)), draw(st.lists(packets(level), max_size=8))


def split(stream: bytes, cuts: list[int]) -> list[bytes]:
    """Cut C{stream} at each offset in C{cuts}."""
    edges = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in zip(edges, edges[1:], strict=False)]


class CodecPropertyTests(SynchronousTestCase):
    """Properties every input must satisfy."""

    @fast
    @given(leveled_packets)
    def test_round_trip(self, case: tuple[int, Packet]) -> None:
        """Any valid packet decodes to itself at its level."""
        level, packet = case
        self.assertEqual(Decoder(protocol_level=level).feed(encode(packet, level)), [packet])

    @fast
    @given(streams(), st.data())
    def test_chunking_is_invisible(self, case: tuple[Connect, list[Packet]], data: st.DataObject) -> None:
        """However a connection's bytes are cut into chunks, the same packets come out."""
        connect, sent = case
        level = connect.protocol_level
        stream = b"".join(encode(p, level) for p in [connect, *sent])
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=12))
        decoder = Decoder()
        received = [p for chunk in split(stream, cuts) for p in decoder.feed(chunk)]
        self.assertEqual(received, [connect, *sent])
        self.assertEqual(decoder.protocol_level, level)

    @fast
    @given(st.sampled_from((None, *LEVELS)), st.binary(max_size=64))
    def test_garbage_raises_only_malformed(self, level: int | None, junk: bytes) -> None:
        """Random bytes either decode or raise L{MalformedPacket}; nothing else escapes."""
        with contextlib.suppress(MalformedPacket):
            Decoder(protocol_level=level).feed(junk)

    @fast
    @given(st.sampled_from(LEVELS), st.integers(0, 255), st.binary(max_size=48))
    def test_framed_garbage_raises_only_malformed(self, level: int, first: int, body: bytes) -> None:
        """
        Random bodies behind a well-formed fixed header of any type reach every
        body decoder, and still raise nothing but L{MalformedPacket}.
        """
        with contextlib.suppress(MalformedPacket):
            Decoder(protocol_level=level).feed(bytes((first, len(body))) + body)

    @fast
    @given(leveled_packets, st.data())
    def test_mutated_packets_raise_only_malformed(self, case: tuple[int, Packet], data: st.DataObject) -> None:
        """
        A valid packet with bytes flipped, dropped or inserted either raises
        L{MalformedPacket} or decodes to packets that re-encode and decode
        to themselves (the decoder accepts nothing the encoder cannot write).
        """
        level, packet = case
        frame = bytearray(encode(packet, level))
        for _ in range(data.draw(st.integers(1, 4))):
            at = data.draw(st.integers(0, len(frame)))
            action = data.draw(st.sampled_from(("flip", "drop", "insert")))
            if action == "insert" or at == len(frame):
                frame.insert(at, data.draw(st.integers(0, 255)))
            elif action == "drop":
                del frame[at]
            else:
                frame[at] ^= 1 << data.draw(st.integers(0, 7))
        max_size = data.draw(st.sampled_from((8, 64, 268_435_460)))
        decoder = Decoder(max_packet_size=max_size, protocol_level=level)
        try:
            decoded = decoder.feed(bytes(frame))
        except MalformedPacket:
            return
        for again in decoded:
            again_level = again.protocol_level if isinstance(again, Connect) else decoder.protocol_level
            assert again_level is not None
            self.assertEqual(Decoder(protocol_level=again_level).feed(encode(again, again_level)), [again])

    @fast
    @given(st.sampled_from(LEVELS).flatmap(lambda level: st.tuples(st.just(level), publishes(level))), packet_ids)
    def test_publish_frame_patching(self, case: tuple[int, Publish], pid: int) -> None:
        """Patching a packet identifier into a PUBLISH frame gives exactly encode() of the packet with it."""
        level, packet = case
        frame, off = encode_publish_frame(packet, level)
        if not packet.qos:
            self.assertEqual((frame, off), (encode(packet, level), -1))
            return
        patched = frame[:off] + pid.to_bytes(2, "big") + frame[off + 2 :]
        expected = Publish(packet.topic, packet.payload, packet.qos, packet.retain, packet.dup, pid, packet.properties)
        self.assertEqual(patched, encode(expected, level))
