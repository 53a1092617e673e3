# -*- test-case-name: tests.mqtt.test_codec -*-
"""
Decoders for the body (variable header and payload) of every packet type but
PUBLISH, whose decoder lives inline in L{mqttx.mqtt.codec.Decoder} because it
is the broker's hot path.

Each decoder takes C{(data, flags, start, end, level)}: the buffer, the low
four bits of the fixed header (already checked against the reserved values),
the body's bounds and the connection's protocol level, and returns the packet
or raises L{MalformedPacket}. A body must be consumed exactly: fields running
past C{end} and bytes left over after the last field are both malformed.
"""

from __future__ import annotations

from collections.abc import Callable

from ._wire import (
    CONNACK_CODES_V3,
    MALFORMED,
    PROTOCOL_ERROR,
    SUBACK_CODES_V3,
    check_reason_code,
    decode_properties,
    read_bin,
    read_str,
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
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from .properties import NO_PROPERTIES, WILL, Properties
from .reason_codes import ReasonCode

BodyDecoder = Callable[[bytes, int, int, int, int], Packet]

#: The protocol name each supported protocol level requires (3.1.1 [MQTT-3.1.2-1], 5.0 [MQTT-3.1.2-1]).
PROTOCOL_NAMES: dict[int, bytes] = {3: b"MQIsdp", 4: b"MQTT", 5: b"MQTT"}


def _trailing(ptype: PacketType) -> MalformedPacket:
    return MalformedPacket(MALFORMED, f"{ptype.name} has bytes after its last field")


def _packet_id(data: bytes, p: int, end: int, ptype: PacketType, required: bool) -> int:
    if p + 2 > end:
        raise truncated(f"{ptype.name} packet identifier")
    pid = (data[p] << 8) | data[p + 1]
    if required and not pid:
        # [MQTT-2.3.1-1] (5.0: [MQTT-2.2.1-3]); 5.0 treats it as a Protocol Error.
        raise MalformedPacket(PROTOCOL_ERROR, f"{ptype.name} with packet identifier 0 [MQTT-2.3.1-1]")
    return pid


def connect_level(data: bytes, start: int, end: int) -> int | None:
    """
    Find the protocol level byte of a CONNECT without validating anything, so
    the caller can answer even a bad CONNECT in the client's version.

    @return: the level byte, or C{None} if the body is too short to hold it.
    """
    if start + 2 > end:
        return None
    p = start + 2 + ((data[start] << 8) | data[start + 1])
    return data[p] if p < end else None


def decode_connect(data: bytes, flags: int, start: int, end: int, level: int) -> Connect:
    """
    Decode a CONNECT body (section 3.1). C{level} is ignored: the packet
    carries its own.

    @raise MalformedPacket: 0x84 for an unknown protocol name or level
        (3.1.1 [MQTT-3.1.2-1], [MQTT-3.1.2-2]); 0x81 for a set reserved flag
        [MQTT-3.1.2-3], will QoS or retain without a will [MQTT-3.1.2-11]
        [MQTT-3.1.2-13] [MQTT-3.1.2-15], will QoS 3 [MQTT-3.1.2-14], a password
        without a user name before 5.0 [MQTT-3.1.2-22], missing or extra fields.
    """
    name, p = read_bin(data, start, end, "protocol name")
    if p >= end:
        raise truncated("protocol level")
    level = data[p]
    if PROTOCOL_NAMES.get(level) != name:
        raise MalformedPacket(
            ReasonCode.UNSUPPORTED_PROTOCOL_VERSION,
            f"unsupported protocol {name[:16]!r} level {level} [MQTT-3.1.2-1] [MQTT-3.1.2-2]",
        )
    if p + 4 > end:
        raise truncated("CONNECT variable header")
    cflags = data[p + 1]
    keep_alive = (data[p + 2] << 8) | data[p + 3]
    p += 4
    if cflags & 0x01 and level >= 4:
        raise MalformedPacket(MALFORMED, "CONNECT reserved flag is set [MQTT-3.1.2-3]")
    will_flag = cflags & 0x04
    will_qos = (cflags >> 3) & 3
    will_retain = bool(cflags & 0x20)
    if not will_flag and (will_qos or will_retain):
        raise MalformedPacket(
            MALFORMED, "will QoS or retain set without a will [MQTT-3.1.2-11] [MQTT-3.1.2-13] [MQTT-3.1.2-15]"
        )
    if will_qos == 3:
        raise MalformedPacket(MALFORMED, "will QoS 3 [MQTT-3.1.2-14]")
    if cflags & 0x40 and not cflags & 0x80 and level < 5:
        raise MalformedPacket(MALFORMED, "password without user name [MQTT-3.1.2-22]")
    props = NO_PROPERTIES
    if level == 5:
        props, p = decode_properties(data, p, end, PacketType.CONNECT)
    client_id, p = read_str(data, p, end, "client identifier")
    will = None
    if will_flag:
        will_props = NO_PROPERTIES
        if level == 5:
            will_props, p = decode_properties(data, p, end, WILL)
        will_topic, p = read_str(data, p, end, "will topic")
        will_payload, p = read_bin(data, p, end, "will payload")
        will = Will(will_topic, will_payload, will_qos, will_retain, will_props)
    username = password = None
    if cflags & 0x80:
        username, p = read_str(data, p, end, "user name")
    if cflags & 0x40:
        password, p = read_bin(data, p, end, "password")
    if p != end:
        raise _trailing(PacketType.CONNECT)
    return Connect(
        client_id, level, name.decode("ascii"), bool(cflags & 0x02), keep_alive, username, password, will, props
    )


def decode_connack(data: bytes, flags: int, start: int, end: int, level: int) -> ConnAck:
    """Decode a CONNACK body (section 3.2)."""
    if start + 2 > end:
        raise truncated("CONNACK variable header")
    ack_flags, code = data[start], data[start + 1]
    if level < 5:
        if end != start + 2:
            raise _trailing(PacketType.CONNACK)
        if code not in CONNACK_CODES_V3:
            raise MalformedPacket(MALFORMED, f"reserved CONNACK return code {code}")
        if level == 3:
            # 3.1 has no session present flag; the byte is reserved.
            return ConnAck(False, code)
    if ack_flags & 0xFE:
        raise MalformedPacket(MALFORMED, "CONNACK reserved flags are set [MQTT-3.2.2-1]")
    props = NO_PROPERTIES
    if level == 5:
        check_reason_code(code, PacketType.CONNACK)
        props, p = decode_properties(data, start + 2, end, PacketType.CONNACK)
        if p != end:
            raise _trailing(PacketType.CONNACK)
    return ConnAck(bool(ack_flags), code, props)


def _ack_decoder(cls: type[PubAck | PubRec | PubRel | PubComp]) -> BodyDecoder:
    ptype = cls.type

    def decode_ack(data: bytes, flags: int, start: int, end: int, level: int) -> Packet:
        size = end - start
        pid = _packet_id(data, start, end, ptype, False)
        if size == 2:
            return cls(pid)
        if level < 5:
            raise _trailing(ptype)
        # 5.0 (3.4.2.1 and its siblings): the reason code may be omitted when
        # 0 and there are no properties; the property length when there are none.
        code = check_reason_code(data[start + 2], ptype)
        if size == 3:
            return cls(pid, code)
        props, p = decode_properties(data, start + 3, end, ptype)
        if p != end:
            raise _trailing(ptype)
        return cls(pid, code, props)

    return decode_ack


def _props_v5(data: bytes, p: int, end: int, level: int, ptype: PacketType) -> tuple[Properties, int]:
    if level == 5:
        return decode_properties(data, p, end, ptype)
    return NO_PROPERTIES, p


def decode_subscribe(data: bytes, flags: int, start: int, end: int, level: int) -> Subscribe:
    """
    Decode a SUBSCRIBE body (section 3.8).

    @raise MalformedPacket: 0x82 without any filter (3.1.1 [MQTT-3.8.3-3],
        5.0 [MQTT-3.8.3-2]) or with Retain Handling 3; 0x81 for an empty filter
        [MQTT-4.7.3-1], reserved option bits (3.1.1 [MQTT-3-8.3-4], 5.0
        [MQTT-3.8.3-5]), or QoS 3 before 5.0 (5.0 calls that a Protocol Error).
    """
    ptype = PacketType.SUBSCRIBE
    pid = _packet_id(data, start, end, ptype, True)
    props, p = _props_v5(data, start + 2, end, level, ptype)
    subs: list[Subscription] = []
    while p < end:
        topic_filter, p = read_str(data, p, end, "topic filter")
        if not topic_filter:
            raise MalformedPacket(MALFORMED, "empty topic filter [MQTT-4.7.3-1]")
        if p >= end:
            raise truncated("subscription options")
        opts = data[p]
        p += 1
        qos = opts & 3
        if level < 5:
            if opts & 0xFC or qos == 3:
                raise MalformedPacket(MALFORMED, f"requested QoS byte 0x{opts:02X} [MQTT-3-8.3-4]")
            subs.append(Subscription(topic_filter, qos))
            continue
        if opts & 0xC0:
            raise MalformedPacket(MALFORMED, "subscription options reserved bits are set [MQTT-3.8.3-5]")
        if qos == 3:
            raise MalformedPacket(PROTOCOL_ERROR, "subscription Maximum QoS 3 (3.8.3.1)")
        retain_handling = (opts >> 4) & 3
        if retain_handling == 3:
            raise MalformedPacket(PROTOCOL_ERROR, "Retain Handling 3 (3.8.3.1)")
        subs.append(Subscription(topic_filter, qos, bool(opts & 0x04), bool(opts & 0x08), retain_handling))
    if not subs:
        raise MalformedPacket(PROTOCOL_ERROR, "SUBSCRIBE without topic filters [MQTT-3.8.3-3]")
    return Subscribe(pid, tuple(subs), props)


def decode_suback(data: bytes, flags: int, start: int, end: int, level: int) -> SubAck:
    """Decode a SUBACK body (section 3.9)."""
    ptype = PacketType.SUBACK
    pid = _packet_id(data, start, end, ptype, False)
    props, p = _props_v5(data, start + 2, end, level, ptype)
    codes = tuple(data[p:end])
    if not codes:
        # One code per filter of the SUBSCRIBE, which has at least one [MQTT-3.8.4-6].
        raise MalformedPacket(PROTOCOL_ERROR, "SUBACK without reason codes")
    valid = SUBACK_CODES_V3 if level < 5 else None
    for code in codes:
        if valid is None:
            check_reason_code(code, ptype)
        elif code not in valid:
            raise MalformedPacket(MALFORMED, f"reserved SUBACK return code 0x{code:02X} [MQTT-3.9.3-2]")
    return SubAck(pid, codes, props)


def decode_unsubscribe(data: bytes, flags: int, start: int, end: int, level: int) -> Unsubscribe:
    """
    Decode an UNSUBSCRIBE body (section 3.10).

    @raise MalformedPacket: 0x82 without any filter [MQTT-3.10.3-2]; 0x81 for
        an empty filter [MQTT-4.7.3-1].
    """
    ptype = PacketType.UNSUBSCRIBE
    pid = _packet_id(data, start, end, ptype, True)
    props, p = _props_v5(data, start + 2, end, level, ptype)
    filters: list[str] = []
    while p < end:
        topic_filter, p = read_str(data, p, end, "topic filter")
        if not topic_filter:
            raise MalformedPacket(MALFORMED, "empty topic filter [MQTT-4.7.3-1]")
        filters.append(topic_filter)
    if not filters:
        raise MalformedPacket(PROTOCOL_ERROR, "UNSUBSCRIBE without topic filters [MQTT-3.10.3-2]")
    return Unsubscribe(pid, tuple(filters), props)


def decode_unsuback(data: bytes, flags: int, start: int, end: int, level: int) -> UnsubAck:
    """Decode an UNSUBACK body (section 3.11); 3.1/3.1.1 carry only the packet identifier."""
    ptype = PacketType.UNSUBACK
    pid = _packet_id(data, start, end, ptype, False)
    if level < 5:
        if end != start + 2:
            raise _trailing(ptype)
        return UnsubAck(pid)
    props, p = decode_properties(data, start + 2, end, ptype)
    codes = tuple(data[p:end])
    if not codes:
        # One code per filter of the UNSUBSCRIBE [MQTT-3.11.3-1], which has at least one.
        raise MalformedPacket(PROTOCOL_ERROR, "UNSUBACK without reason codes")
    for code in codes:
        check_reason_code(code, ptype)
    return UnsubAck(pid, codes, props)


def _empty_decoder(cls: type[PingReq | PingResp]) -> BodyDecoder:
    instance = cls()

    def decode_empty(data: bytes, flags: int, start: int, end: int, level: int) -> Packet:
        if end != start:
            raise _trailing(cls.type)
        return instance

    return decode_empty


def decode_disconnect(data: bytes, flags: int, start: int, end: int, level: int) -> Disconnect:
    """
    Decode a DISCONNECT body (section 3.14). In 5.0 the reason code may be
    omitted when 0 (Remaining Length 0) and the property length when there
    are no properties (Remaining Length 1) (3.14.2.1, 3.14.2.2.1).
    """
    ptype = PacketType.DISCONNECT
    if end == start:
        return Disconnect()
    if level < 5:
        raise _trailing(ptype)
    code = check_reason_code(data[start], ptype)
    props, p = (NO_PROPERTIES, end) if end == start + 1 else decode_properties(data, start + 1, end, ptype)
    if p != end:
        raise _trailing(ptype)
    return Disconnect(code, props)


def decode_auth(data: bytes, flags: int, start: int, end: int, level: int) -> Auth:
    """
    Decode an AUTH body (section 3.15). Remaining Length 0 means success
    without properties (3.15.2.1); a lone reason code is accepted as in
    DISCONNECT, though the encoder never writes it.
    """
    ptype = PacketType.AUTH
    if end == start:
        return Auth()
    code = check_reason_code(data[start], ptype)
    props, p = (NO_PROPERTIES, end) if end == start + 1 else decode_properties(data, start + 1, end, ptype)
    if p != end:
        raise _trailing(ptype)
    return Auth(code, props)


#: Body decoder by packet type; PUBLISH (3) is handled by the Decoder itself.
BODY_DECODERS: dict[int, BodyDecoder] = {
    PacketType.CONNECT: decode_connect,
    PacketType.CONNACK: decode_connack,
    PacketType.PUBACK: _ack_decoder(PubAck),
    PacketType.PUBREC: _ack_decoder(PubRec),
    PacketType.PUBREL: _ack_decoder(PubRel),
    PacketType.PUBCOMP: _ack_decoder(PubComp),
    PacketType.SUBSCRIBE: decode_subscribe,
    PacketType.SUBACK: decode_suback,
    PacketType.UNSUBSCRIBE: decode_unsubscribe,
    PacketType.UNSUBACK: decode_unsuback,
    PacketType.PINGREQ: _empty_decoder(PingReq),
    PacketType.PINGRESP: _empty_decoder(PingResp),
    PacketType.DISCONNECT: decode_disconnect,
    PacketType.AUTH: decode_auth,
}
