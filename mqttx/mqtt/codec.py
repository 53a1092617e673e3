# -*- test-case-name: tests.mqtt.test_codec -*-
"""
The sans-IO MQTT 3.1 / 3.1.1 / 5.0 codec: packets to bytes with L{encode}
and L{encode_publish_frame}, bytes to packets with L{Decoder}.

The codec knows the wire format and every rule that can be checked on one
packet in isolation; it knows nothing of sessions, packet-identifier
bookkeeping, topic aliases or limits negotiated in CONNECT/CONNACK other than
the maximum packet size. Those belong to the connection.

Bad input raises L{MalformedPacket} and nothing else; its C{reason_code}
is the MQTT 5 code to put in the DISCONNECT (or CONNACK, while connecting).
Encoding trusts its caller to build valid packets and checks only what it
must to produce bytes: a packet that cannot be represented raises
C{ValueError} (C{struct.error} for an integer field out of range), a
programming error rather than a protocol one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields
from typing import Any

from ._decode import BODY_DECODERS, connect_level, decode_connect
from ._wire import (
    MALFORMED,
    PROTOCOL_ERROR,
    decode_properties,
    encode_bin,
    encode_properties,
    encode_str,
    encode_vbi,
    pack_u16,
    truncated,
)
from .errors import MalformedPacket
from .packet_type import PacketType
from .packets import (
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
    UnsubAck,
    Unsubscribe,
)
from .properties import NO_PROPERTIES, WILL, Properties
from .reason_codes import ReasonCode

__all__ = ["MAX_PACKET_SIZE", "Decoder", "encode", "encode_publish_frame"]

#: The largest packet MQTT can express: 1 type byte, 4 length bytes, 268,435,455 more.
MAX_PACKET_SIZE = 268_435_460

_PUBLISH = PacketType.PUBLISH

# --- encoding -----------------------------------------------------------------


def _frame(first: int, body: bytes) -> bytes:
    return bytes((first,)) + encode_vbi(len(body)) + body


def encode_publish_frame(packet: Publish, protocol_level: int) -> tuple[bytes, int]:
    """
    Encode a PUBLISH and say where its packet identifier is, so that one
    encoding can serve every subscriber of the same shape:
    C{frame[:off] + pid.to_bytes(2, "big") + frame[off + 2:]}.

    @param packet: the PUBLISH. For QoS > 0 a C{packet_id} of C{None} writes
        a placeholder 0, to be patched.
    @param protocol_level: 3, 4 or 5; properties are written only for 5.
    @return: the frame and the offset of its two packet-identifier bytes,
        or -1 for QoS 0.
    @raise ValueError: if the topic is too long or a property may not be sent
        in a PUBLISH.
    """
    return publish_frame(
        packet.topic,
        packet.payload,
        packet.qos,
        packet.retain,
        packet.dup,
        packet.properties,
        protocol_level,
        packet.packet_id or 0,
    )


def publish_frame(
    topic_name: str,
    payload: bytes,
    qos: int,
    retain: bool,
    dup: bool,
    properties: Properties,
    protocol_level: int,
    packet_id: int = 0,
) -> tuple[bytes, int]:
    """
    L{encode_publish_frame} from the fields of a PUBLISH, for the broker's
    hot path, which then need not build a L{Publish} per delivery shape.
    """
    topic = topic_name.encode("utf-8")
    tlen = len(topic)
    if tlen > 0xFFFF:
        raise ValueError("topic name longer than 65,535 bytes")
    first = 0x30 | (qos << 1)
    if dup:
        first |= 0x08
    if retain:
        first |= 0x01
    if protocol_level == 5:
        tail = b"\x00" if properties is NO_PROPERTIES else encode_properties(properties, _PUBLISH)
    else:
        tail = b""
    if qos:
        size = 4 + tlen + len(tail) + len(payload)
        header = bytes((first, size)) if size < 0x80 else bytes((first,)) + encode_vbi(size)
        return (
            b"".join((header, pack_u16(tlen), topic, pack_u16(packet_id), tail, payload)),
            len(header) + 2 + tlen,
        )
    size = 2 + tlen + len(tail) + len(payload)
    header = bytes((first, size)) if size < 0x80 else bytes((first,)) + encode_vbi(size)
    return b"".join((header, pack_u16(tlen), topic, tail, payload)), -1


def _encode_publish(packet: Publish, level: int) -> bytes:
    if packet.qos and packet.packet_id is None:
        raise ValueError("a QoS 1 or 2 PUBLISH needs a packet identifier")
    return encode_publish_frame(packet, level)[0]


def _encode_connect(packet: Connect, level: int) -> bytes:
    if packet.protocol_level != level:
        raise ValueError(f"CONNECT for level {packet.protocol_level} encoded at level {level}")
    will = packet.will
    flags = 0x02 if packet.clean_start else 0
    if will is not None:
        flags |= 0x04 | (will.qos << 3) | (0x20 if will.retain else 0)
    if packet.username is not None:
        flags |= 0x80
    if packet.password is not None:
        flags |= 0x40
    parts = [encode_str(packet.protocol_name), bytes((level, flags)), pack_u16(packet.keep_alive)]
    if level == 5:
        parts.append(encode_properties(packet.properties, PacketType.CONNECT))
    parts.append(encode_str(packet.client_id))
    if will is not None:
        if level == 5:
            parts.append(encode_properties(will.properties, WILL))
        parts += (encode_str(will.topic), encode_bin(will.payload))
    if packet.username is not None:
        parts.append(encode_str(packet.username))
    if packet.password is not None:
        parts.append(encode_bin(packet.password))
    return _frame(0x10, b"".join(parts))


def _encode_connack(packet: ConnAck, level: int) -> bytes:
    flags = 1 if packet.session_present and level > 3 else 0
    if level < 5:
        return bytes((0x20, 2, flags, packet.reason_code))
    body = bytes((flags, packet.reason_code)) + encode_properties(packet.properties, PacketType.CONNACK)
    return _frame(0x20, body)


def _encode_ack(packet: PubAck | PubRec | PubRel | PubComp, level: int) -> bytes:
    first = 0x62 if packet.type is PacketType.PUBREL else packet.type << 4
    pid = pack_u16(packet.packet_id)
    props = packet.properties
    if level < 5 or (not packet.reason_code and (props is NO_PROPERTIES or not props)):
        return bytes((first, 2)) + pid
    if props is NO_PROPERTIES or not props:
        return bytes((first, 3)) + pid + bytes((packet.reason_code,))
    return _frame(first, pid + bytes((packet.reason_code,)) + encode_properties(props, packet.type))


def _encode_subscribe(packet: Subscribe, level: int) -> bytes:
    parts = [pack_u16(packet.packet_id)]
    if level == 5:
        parts.append(encode_properties(packet.properties, PacketType.SUBSCRIBE))
    for sub in packet.subscriptions:
        opts = sub.qos
        if level == 5:
            opts |= (
                (0x04 if sub.no_local else 0) | (0x08 if sub.retain_as_published else 0) | (sub.retain_handling << 4)
            )
        parts += (encode_str(sub.topic_filter), bytes((opts,)))
    return _frame(0x82, b"".join(parts))


def _encode_suback(packet: SubAck, level: int) -> bytes:
    if level < 5:
        # 3.1.1 has a single failure code, 0x80 [MQTT-3.9.3-2].
        return _frame(0x90, pack_u16(packet.packet_id) + bytes(min(c, 0x80) for c in packet.reason_codes))
    props = encode_properties(packet.properties, PacketType.SUBACK)
    return _frame(0x90, pack_u16(packet.packet_id) + props + bytes(packet.reason_codes))


def _encode_unsubscribe(packet: Unsubscribe, level: int) -> bytes:
    parts = [pack_u16(packet.packet_id)]
    if level == 5:
        parts.append(encode_properties(packet.properties, PacketType.UNSUBSCRIBE))
    parts += map(encode_str, packet.topic_filters)
    return _frame(0xA2, b"".join(parts))


def _encode_unsuback(packet: UnsubAck, level: int) -> bytes:
    if level < 5:
        return b"\xb0\x02" + pack_u16(packet.packet_id)
    props = encode_properties(packet.properties, PacketType.UNSUBACK)
    return _frame(0xB0, pack_u16(packet.packet_id) + props + bytes(packet.reason_codes))


def _encode_disconnect(packet: Disconnect, level: int) -> bytes:
    props = packet.properties
    if level < 5 or (not packet.reason_code and (props is NO_PROPERTIES or not props)):
        return b"\xe0\x00"
    if props is NO_PROPERTIES or not props:
        return bytes((0xE0, 1, packet.reason_code))
    return _frame(0xE0, bytes((packet.reason_code,)) + encode_properties(props, PacketType.DISCONNECT))


def _encode_auth(packet: Auth, level: int) -> bytes:
    if level != 5:
        raise ValueError("AUTH exists only in MQTT 5.0")
    props = packet.properties
    if not packet.reason_code and (props is NO_PROPERTIES or not props):
        return b"\xf0\x00"
    # The spec only names the empty short form for AUTH (3.15.2.1), so a
    # non-zero code always carries a property length.
    return _frame(0xF0, bytes((packet.reason_code,)) + encode_properties(props, PacketType.AUTH))


_ENCODERS: dict[type, Callable[[Any, int], bytes]] = {
    Connect: _encode_connect,
    ConnAck: _encode_connack,
    Publish: _encode_publish,
    PubAck: _encode_ack,
    PubRec: _encode_ack,
    PubRel: _encode_ack,
    PubComp: _encode_ack,
    Subscribe: _encode_subscribe,
    SubAck: _encode_suback,
    Unsubscribe: _encode_unsubscribe,
    UnsubAck: _encode_unsuback,
    PingReq: lambda packet, level: b"\xc0\x00",
    PingResp: lambda packet, level: b"\xd0\x00",
    Disconnect: _encode_disconnect,
    Auth: _encode_auth,
}


def encode(packet: Packet, protocol_level: int) -> bytes:
    """
    Encode one packet for a connection speaking C{protocol_level}.

    Properties and reason codes are written only for level 5, in their
    shortest legal form (an acknowledgement with reason 0 and no properties
    has Remaining Length 2; DISCONNECT and AUTH have Remaining Length 0). For
    levels 3 and 4 they are ignored, except that SUBACK's codes are the 3.1.1
    return codes (any failure is written as 0x80), CONNACK's code is the
    3.1.1 return code, and a 3.1 CONNACK has no session present flag.

    @param packet: any packet; a L{Connect} must carry the same level.
    @param protocol_level: 3 (MQTT 3.1), 4 (3.1.1) or 5 (5.0).
    @return: the packet's bytes.
    @raise ValueError: for a packet that cannot be sent at that level (AUTH
        before 5.0, a CONNECT of another level, a property the packet may not
        carry, a QoS > 0 PUBLISH without a packet identifier).
    """
    return _ENCODERS[type(packet)](packet, protocol_level)


# --- decoding -----------------------------------------------------------------

# Fixed-header flag rules, per protocol level and packet type: the required
# low nibble, or _ANY (PUBLISH, checked by its decoder, and everything in 3.1,
# which left those bits "not used" and whose clients set DUP on retried
# SUBSCRIBEs), _BAD_TYPE (reserved type 0; AUTH before 5.0) or _NOT_CONNECT
# (anything, even type 0, before CONNECT on a server's decoder).
_ANY, _BAD_TYPE, _NOT_CONNECT = 16, 17, 18
_V311_FLAGS = (_BAD_TYPE, 0, 0, _ANY, 0, 0, 2, 0, 2, 0, 2, 0, 0, 0, 0, _BAD_TYPE)
_FLAG_RULES: dict[int | None, tuple[int, ...]] = {
    None: (_NOT_CONNECT, 0, *[_NOT_CONNECT] * 14),
    3: (_BAD_TYPE, 0, *[_ANY] * 13, _BAD_TYPE),
    4: _V311_FLAGS,
    5: (*_V311_FLAGS[:15], 0),
}


def _bad_first_byte(first: int, rule: int) -> MalformedPacket:
    ptype = first >> 4
    if rule == _NOT_CONNECT:
        return MalformedPacket(PROTOCOL_ERROR, f"packet type {ptype} before CONNECT [MQTT-3.1.0-1]")
    if rule == _BAD_TYPE:
        return MalformedPacket(MALFORMED, f"reserved packet type {ptype}")
    return MalformedPacket(
        MALFORMED,
        f"{PacketType(ptype).name} fixed header flags 0x{first & 15:X} [MQTT-2.2.2-1] [MQTT-2.2.2-2]",
    )


def _publish_factory() -> Callable[[str, bytes, int, bool, bool, int | None, Properties], Publish]:
    """
    Build a L{Publish} constructor for the decoder's hot path.

    A frozen dataclass's C{__init__} assigns each field through
    C{object.__setattr__}, which costs more than the rest of decoding a small
    PUBLISH. Setting the slots through their descriptors gives the same
    object in less than half the time. The shortcut is used only while
    L{Publish} has exactly the fields below and no C{__post_init__};
    otherwise the class itself is returned.
    """
    names = ("topic", "payload", "qos", "retain", "dup", "packet_id", "properties")
    if tuple(f.name for f in fields(Publish)) != names or hasattr(Publish, "__post_init__"):
        return Publish
    new = object.__new__
    s_topic, s_payload, s_qos, s_retain, s_dup, s_pid, s_props = (Publish.__dict__[n].__set__ for n in names)

    def make(
        topic: str, payload: bytes, qos: int, retain: bool, dup: bool, packet_id: int | None, props: Properties
    ) -> Publish:
        packet: Publish = new(Publish)
        s_topic(packet, topic)
        s_payload(packet, payload)
        s_qos(packet, qos)
        s_retain(packet, retain)
        s_dup(packet, dup)
        s_pid(packet, packet_id)
        s_props(packet, props)
        return packet

    return make


_make_publish = _publish_factory()


#: PUBLISH fixed-header flags -> (QoS, retain, DUP), or None if not allowed.
_PUBLISH_FLAGS: tuple[tuple[int, bool, bool] | None, ...] = tuple(
    None if (f >> 1) & 3 == 3 or (f & 8 and not f & 6) else ((f >> 1) & 3, bool(f & 1), bool(f & 8))
    for f in range(16)
)


def _bad_publish_flags(first: int) -> MalformedPacket:
    if first & 6 == 6:
        return MalformedPacket(MALFORMED, "PUBLISH with QoS 3 [MQTT-3.3.1-4]")
    return MalformedPacket(MALFORMED, "PUBLISH with DUP and QoS 0 [MQTT-3.3.1-2]")


class Decoder:
    """
    Turn a byte stream into packets, however it is split into chunks.

    A decoder serves one connection, in either direction. Created without a
    C{protocol_level} it accepts only a CONNECT first and then decodes at that
    CONNECT's level; created with one (a client, or a test) it decodes at that
    level from the start.

    @ivar max_packet_size: the largest total packet size (fixed header
        included) accepted; checked as soon as a fixed header is complete.
    @ivar protocol_level: C{None} until a CONNECT's protocol level byte has
        been read. It is set before the rest of the CONNECT is validated, even
        to an unsupported value, so that the caller can answer a bad CONNECT
        in the client's version.
    @ivar packets_before_error: after L{feed} raised, the packets decoded
        from that chunk before the bad one, which the caller may still act on.
    """

    def __init__(self, max_packet_size: int = MAX_PACKET_SIZE, protocol_level: int | None = None) -> None:
        if protocol_level not in _FLAG_RULES:
            raise ValueError(f"unsupported protocol level {protocol_level}")
        self.max_packet_size = max_packet_size
        self.protocol_level = protocol_level
        self.packets_before_error: list[Packet] = []
        self._buf = bytearray()
        # Buffered bytes needed before decoding is worth retrying.
        self._need = 0
        self._error: MalformedPacket | None = None

    def feed(self, data: bytes | bytearray | memoryview) -> list[Packet]:
        """
        Add bytes received from the peer.

        @param data: the next chunk; any size, any split.
        @return: the packets completed by this chunk, in order.
        @raise MalformedPacket: for the first bad packet; the decoder is then
            dead and raises the same error on every later call.
        """
        if self._error is not None:
            raise MalformedPacket(self._error.reason_code, self._error.detail)
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return []
            chunk = bytes(buf)
            buf.clear()
        else:
            # Decoding from the caller's bytes, without a copy, is the common case.
            chunk = data if type(data) is bytes else bytes(data)
        out: list[Packet] = []
        try:
            pos = self._decode(chunk, out)
        except MalformedPacket as e:
            self._error = e
            self.packets_before_error = out
            raise
        if pos < len(chunk):
            buf += memoryview(chunk)[pos:]
        return out

    def _decode(self, data: bytes, out: list[Packet]) -> int:
        """Decode every complete packet of C{data} into C{out}; return where the rest starts."""
        n = len(data)
        pos = 0
        rules = _FLAG_RULES[self.protocol_level]
        # 0 until CONNECT; the flag rules then admit nothing else.
        level = self.protocol_level or 0
        max_size = self.max_packet_size
        append = out.append
        make_publish = _make_publish
        publish_flags = _PUBLISH_FLAGS
        any_flags = _ANY
        while pos < n:
            first = data[pos]
            ptype = first >> 4
            rule = rules[ptype]
            if rule != any_flags and rule != first & 15:
                raise _bad_first_byte(first, rule)
            if pos + 1 == n:
                self._need = 2
                break
            size = data[pos + 1]
            if size < 0x80:
                start = pos + 2
            else:
                size, start = _remaining_length(data, pos + 1, n)
                if start < 0:
                    self._need = n - pos + 1
                    break
            end = start + size
            if end - pos > max_size:
                raise MalformedPacket(
                    ReasonCode.PACKET_TOO_LARGE,
                    f"{end - pos} byte packet exceeds the maximum packet size {max_size}",
                )
            if end > n:
                self._need = end - pos
                break
            if ptype == 3:
                # PUBLISH, inline: the hot path (section 3.3).
                flags = publish_flags[first & 15]
                if flags is None:
                    raise _bad_publish_flags(first)
                qos, retain, dup = flags
                p = start + 2
                if p > end:
                    raise truncated("topic name")
                q = p + ((data[start] << 8) | data[start + 1])
                if q > end:
                    raise truncated("topic name")
                try:
                    topic = data[p:q].decode("utf-8")
                except UnicodeDecodeError:
                    raise MalformedPacket(MALFORMED, "topic name is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
                if "+" in topic or "#" in topic:
                    raise MalformedPacket(ReasonCode.TOPIC_NAME_INVALID, "wildcard in topic name [MQTT-3.3.2-2]")
                if "\x00" in topic:
                    raise MalformedPacket(MALFORMED, "topic name contains U+0000 [MQTT-1.5.4-2]")
                if qos:
                    if q + 2 > end:
                        raise truncated("PUBLISH packet identifier")
                    pid: int | None = (data[q] << 8) | data[q + 1]
                    if not pid:
                        raise MalformedPacket(PROTOCOL_ERROR, "PUBLISH with packet identifier 0 [MQTT-2.3.1-1]")
                    q += 2
                else:
                    pid = None
                props = NO_PROPERTIES
                if level == 5:
                    if q < end and not data[q]:
                        q += 1
                    else:
                        props, q = decode_properties(data, q, end, _PUBLISH)
                    if not topic and props.topic_alias is None:
                        raise MalformedPacket(PROTOCOL_ERROR, "empty topic name without a Topic Alias (3.3.2.1)")
                elif not topic:
                    raise MalformedPacket(MALFORMED, "empty topic name [MQTT-4.7.3-1]")
                append(make_publish(topic, data[q:end], qos, retain, dup, pid, props))
            elif ptype == 1:
                found = connect_level(data, start, end)
                if found is not None:
                    self.protocol_level = found
                connect = decode_connect(data, 0, start, end, level)
                level = self.protocol_level = connect.protocol_level
                rules = _FLAG_RULES[level]
                append(connect)
            else:
                append(BODY_DECODERS[ptype](data, first & 15, start, end, level))
            pos = end
        return pos


def _remaining_length(data: bytes, p: int, n: int) -> tuple[int, int]:
    """
    Decode a multi-byte Remaining Length starting at C{data[p]}.

    @return: the length and the offset after it, or C{(0, -1)} if C{data}
        ends before the length does.
    @raise MalformedPacket: (0x81) for more than four bytes or a non-minimal
        encoding [MQTT-1.5.5-1].
    """
    value = 0
    shift = 0
    for i in range(4):
        if p >= n:
            return 0, -1
        digit = data[p]
        p += 1
        value |= (digit & 0x7F) << shift
        if digit < 0x80:
            if not digit and i:
                raise MalformedPacket(MALFORMED, "Remaining Length is not minimally encoded [MQTT-1.5.5-1]")
            return value, p
        shift += 7
    raise MalformedPacket(MALFORMED, "Remaining Length is longer than four bytes")

