# -*- test-case-name: tests.mqtt.test_codec -*-
"""
MQTT wire primitives shared by the encoder and the decoder (section 1.5 of
both specifications): Variable Byte Integers, length-prefixed strings and
binary data, MQTT 5 properties, and the reason codes each packet may carry.

Every reader takes the buffer, a start offset and the end of the enclosing
structure, and returns C{(value, next_offset)}; it raises L{MalformedPacket}
when a field would run past that end, so one packet can never read into the
next.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from .errors import MalformedPacket
from .packet_type import PacketType
from .properties import (
    NO_PROPERTIES,
    PROPERTY_SPECS,
    WILL,
    Properties,
    PropertyId,
    PropertyType,
)
from .reason_codes import ReasonCode

MALFORMED = ReasonCode.MALFORMED_PACKET
PROTOCOL_ERROR = ReasonCode.PROTOCOL_ERROR

#: The largest value a Variable Byte Integer can carry (section 1.5.5).
MAX_VBI = 268_435_455

pack_u16: Callable[[int], bytes] = struct.Struct(">H").pack
pack_u32: Callable[[int], bytes] = struct.Struct(">I").pack
_unpack_u32_from = struct.Struct(">I").unpack_from

#: One-byte Variable Byte Integers, the overwhelmingly common case.
_SMALL_VBI: tuple[bytes, ...] = tuple(bytes((i,)) for i in range(0x80))


def truncated(what: str) -> MalformedPacket:
    """
    Build the error for a field that runs past its packet or property block.

    @param what: the field that did not fit.
    @return: a L{MalformedPacket} to raise.
    """
    return MalformedPacket(MALFORMED, f"{what} runs past the end of the packet")


def encode_vbi(value: int) -> bytes:
    """
    Encode a Variable Byte Integer in its minimal form [MQTT-1.5.5-1].

    @param value: 0 to L{MAX_VBI}.
    @return: one to four bytes.
    @raise ValueError: if C{value} is out of range.
    """
    if value < 0x80:
        if value < 0:
            raise ValueError(f"negative variable byte integer {value}")
        return _SMALL_VBI[value]
    if value > MAX_VBI:
        raise ValueError(f"{value} does not fit in a variable byte integer")
    out = bytearray()
    while value:
        digit = value & 0x7F
        value >>= 7
        out.append(digit | 0x80 if value else digit)
    return bytes(out)


def decode_vbi(data: bytes, p: int, end: int, what: str) -> tuple[int, int]:
    """
    Decode a Variable Byte Integer.

    @param data: the buffer.
    @param p: where the integer starts.
    @param end: the end of the enclosing structure.
    @param what: the field's name, for the error message.
    @return: the value and the offset after it.
    @raise MalformedPacket: (0x81) if it runs past C{end}, is longer than four
        bytes, or is not minimally encoded [MQTT-1.5.5-1].
    """
    value = 0
    shift = 0
    for i in range(4):
        if p >= end:
            raise truncated(what)
        digit = data[p]
        p += 1
        value |= (digit & 0x7F) << shift
        if digit < 0x80:
            if digit == 0 and i:
                # A trailing zero digit means fewer bytes would have done.
                raise MalformedPacket(MALFORMED, f"{what} is not minimally encoded [MQTT-1.5.5-1]")
            return value, p
        shift += 7
    raise MalformedPacket(MALFORMED, f"{what} is longer than four bytes")


def encode_str(text: str) -> bytes:
    """
    Encode a UTF-8 Encoded String (section 1.5.4): two length bytes, then UTF-8.

    @param text: the string; at most 65,535 bytes once encoded.
    @return: the length-prefixed bytes.
    @raise ValueError: if the text has lone surrogates or is too long.
    """
    raw = text.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ValueError("string longer than 65,535 bytes")
    return pack_u16(len(raw)) + raw


def encode_bin(raw: bytes) -> bytes:
    """
    Encode Binary Data (section 1.5.6): two length bytes, then the bytes.

    @param raw: at most 65,535 bytes.
    @return: the length-prefixed bytes.
    @raise ValueError: if C{raw} is too long.
    """
    if len(raw) > 0xFFFF:
        raise ValueError("binary data longer than 65,535 bytes")
    return pack_u16(len(raw)) + raw


def read_bin(data: bytes, p: int, end: int, what: str) -> tuple[bytes, int]:
    """
    Read Binary Data (section 1.5.6).

    @return: the bytes and the offset after them.
    @raise MalformedPacket: (0x81) if the field runs past C{end}.
    """
    q = p + 2
    if q > end:
        raise truncated(what)
    q += (data[p] << 8) | data[p + 1]
    if q > end:
        raise truncated(what)
    return data[p + 2 : q], q


def read_str(data: bytes, p: int, end: int, what: str) -> tuple[str, int]:
    """
    Read a UTF-8 Encoded String (section 1.5.4). A leading or embedded
    U+FEFF is kept as it is [MQTT-1.5.4-3] (3.1.1: [MQTT-1.5.3-3]).

    @return: the string and the offset after it.
    @raise MalformedPacket: (0x81) if the field runs past C{end}, is not
        well-formed UTF-8 or encodes a surrogate [MQTT-1.5.4-1] (3.1.1:
        [MQTT-1.5.3-1]), or contains U+0000 [MQTT-1.5.4-2] ([MQTT-1.5.3-2]).
    """
    raw, q = read_bin(data, p, end, what)
    try:
        # Python's strict UTF-8 codec rejects overlong forms, encoded
        # surrogates and code points above U+10FFFF, and keeps a BOM.
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedPacket(MALFORMED, f"{what} is not well-formed UTF-8 [MQTT-1.5.4-1]") from None
    if "\x00" in text:
        raise MalformedPacket(MALFORMED, f"{what} contains U+0000 [MQTT-1.5.4-2]")
    return text, q


# --- properties (MQTT 5.0 section 2.2.2) -------------------------------------

PropertyContext = PacketType | str
_T = PropertyType
_BOOLEAN_PROPERTIES = frozenset(
    {
        # "It is a Protocol Error to include ... a value other than 0 or 1."
        PropertyId.PAYLOAD_FORMAT_INDICATOR,
        PropertyId.REQUEST_PROBLEM_INFORMATION,
        PropertyId.REQUEST_RESPONSE_INFORMATION,
        PropertyId.MAXIMUM_QOS,
        PropertyId.RETAIN_AVAILABLE,
        PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE,
        PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE,
        PropertyId.SHARED_SUBSCRIPTION_AVAILABLE,
    }
)
#: "It is a Protocol Error to include ... the value 0" (3.1.2.11.3, 3.1.2.11.4, 3.8.2.1.2).
_NONZERO_PROPERTIES = frozenset(
    {PropertyId.RECEIVE_MAXIMUM, PropertyId.MAXIMUM_PACKET_SIZE, PropertyId.SUBSCRIPTION_IDENTIFIER}
)

#: Per context: property identifier -> (field name, wire type), only the allowed ones (table 2-4).
_ALLOWED: dict[PropertyContext, dict[int, tuple[str, PropertyType]]] = {}
for _spec in PROPERTY_SPECS.values():
    for _ctx in _spec.allowed_in:
        _ALLOWED.setdefault(_ctx, {})[_spec.id] = (_spec.field, _spec.type)
for _ctx in (*PacketType, WILL):
    _ALLOWED.setdefault(_ctx, {})

#: Encoding order: (field, identifier byte, wire type, contexts allowed in).
_ENCODE_ORDER: tuple[tuple[str, bytes, PropertyType, frozenset[PropertyContext]], ...] = tuple(
    (s.field, bytes((s.id,)), s.type, s.allowed_in) for s in sorted(PROPERTY_SPECS.values())
)

_USER_PROPERTY = PropertyId.USER_PROPERTY
_SUBSCRIPTION_IDENTIFIER = PropertyId.SUBSCRIPTION_IDENTIFIER


def _check_value(pid: int, value: Any) -> None:
    """Apply the value rules of section 3 to one decoded property."""
    if pid in _BOOLEAN_PROPERTIES:
        if value > 1:
            raise MalformedPacket(PROTOCOL_ERROR, f"{PropertyId(pid).name} must be 0 or 1, not {value}")
    elif pid in _NONZERO_PROPERTIES:
        if value == 0:
            raise MalformedPacket(PROTOCOL_ERROR, f"{PropertyId(pid).name} must not be 0")
    elif pid == PropertyId.TOPIC_ALIAS:
        if value == 0:
            # [MQTT-3.3.2-8]; a 0 alias is answered with 0x94 (3.3.2.3.4).
            raise MalformedPacket(ReasonCode.TOPIC_ALIAS_INVALID, "Topic Alias 0 [MQTT-3.3.2-8]")
    elif pid == PropertyId.RESPONSE_TOPIC and ("+" in value or "#" in value):
        raise MalformedPacket(PROTOCOL_ERROR, "Response Topic contains a wildcard [MQTT-3.3.2-14]")


def decode_properties(data: bytes, p: int, end: int, ctx: PropertyContext) -> tuple[Properties, int]:
    """
    Read a property block: its Variable Byte Integer length, then the properties.

    @param ctx: the packet type the block belongs to, or L{WILL}.
    @return: the properties (L{NO_PROPERTIES} when the block is empty) and the
        offset after the block.
    @raise MalformedPacket: 0x81 if the block runs past C{end}, a property is
        truncated or not allowed in C{ctx}; 0x82 if a property other than User
        Property (and, in PUBLISH, Subscription Identifier) appears twice or has a
        value the specification calls a Protocol Error; 0x94 for Topic Alias 0.
    """
    length, p = decode_vbi(data, p, end, "property length")
    if not length:
        return NO_PROPERTIES, p
    q = p + length
    if q > end:
        raise truncated("property block")
    allowed = _ALLOWED[ctx]
    fields: dict[str, Any] = {}
    user: list[tuple[str, str]] = []
    sub_ids: list[int] = []
    while p < q:
        pid, p = decode_vbi(data, p, q, "property identifier")
        spec = allowed.get(pid)
        if spec is None:
            name = PropertyId(pid).name if pid in PROPERTY_SPECS else f"0x{pid:02X}"
            raise MalformedPacket(MALFORMED, f"property {name} is not allowed in {_ctx_name(ctx)}")
        field, ptype = spec
        value: Any
        if ptype is _T.BYTE:
            if p >= q:
                raise truncated(field)
            value = data[p]
            p += 1
        elif ptype is _T.TWO_BYTE_INT:
            if p + 2 > q:
                raise truncated(field)
            value = (data[p] << 8) | data[p + 1]
            p += 2
        elif ptype is _T.FOUR_BYTE_INT:
            if p + 4 > q:
                raise truncated(field)
            (value,) = _unpack_u32_from(data, p)
            p += 4
        elif ptype is _T.VARIABLE_BYTE_INT:
            value, p = decode_vbi(data, p, q, field)
        elif ptype is _T.UTF8_STRING:
            value, p = read_str(data, p, q, field)
        elif ptype is _T.BINARY:
            value, p = read_bin(data, p, q, field)
        else:
            key, p = read_str(data, p, q, "user property name")
            value, p = read_str(data, p, q, "user property value")
            user.append((key, value))
            continue
        _check_value(pid, value)
        if pid == _SUBSCRIPTION_IDENTIFIER and (ctx is PacketType.PUBLISH or not sub_ids):
            # A PUBLISH to a client carries one per matching subscription (3.3.2.3.8).
            sub_ids.append(value)
            continue
        if field in fields or pid == _SUBSCRIPTION_IDENTIFIER:
            raise MalformedPacket(PROTOCOL_ERROR, f"property {PropertyId(pid).name} appears twice")
        fields[field] = value
    if ctx is PacketType.CONNECT and "authentication_data" in fields and "authentication_method" not in fields:
        raise MalformedPacket(PROTOCOL_ERROR, "Authentication Data without Authentication Method (3.1.2.11.10)")
    if user:
        fields["user_property"] = tuple(user)
    if sub_ids:
        fields["subscription_identifier"] = tuple(sub_ids)
    return Properties(**fields), q


def encode_properties(props: Properties, ctx: PropertyContext) -> bytes:
    """
    Encode a property block, length included.

    @param ctx: the packet type the block belongs to, or L{WILL}.
    @return: the bytes; C{b"\\x00"} for no properties.
    @raise ValueError: if a property is set that C{ctx} may not carry.
    """
    if props is NO_PROPERTIES:
        return b"\x00"
    parts: list[bytes] = []
    for field, ident, ptype, where in _ENCODE_ORDER:
        value = getattr(props, field)
        if value is None or value == ():
            continue
        if ctx not in where:
            raise ValueError(f"property {field} may not be sent in {_ctx_name(ctx)}")
        if ptype is _T.BYTE:
            parts += (ident, bytes((value,)))
        elif ptype is _T.TWO_BYTE_INT:
            parts += (ident, pack_u16(value))
        elif ptype is _T.FOUR_BYTE_INT:
            parts += (ident, pack_u32(value))
        elif ptype is _T.VARIABLE_BYTE_INT:
            for item in value:
                parts += (ident, encode_vbi(item))
        elif ptype is _T.UTF8_STRING:
            parts += (ident, encode_str(value))
        elif ptype is _T.BINARY:
            parts += (ident, encode_bin(value))
        else:
            for key, val in value:
                parts += (ident, encode_str(key), encode_str(val))
    body = b"".join(parts)
    return encode_vbi(len(body)) + body


def _ctx_name(ctx: PropertyContext) -> str:
    return "the will properties" if ctx == WILL else ctx.name if isinstance(ctx, PacketType) else str(ctx)


# --- reason codes --------------------------------------------------------------

_R = ReasonCode
_PUBACK_CODES = frozenset(
    {_R.SUCCESS, _R.NO_MATCHING_SUBSCRIBERS, _R.UNSPECIFIED_ERROR, _R.IMPLEMENTATION_SPECIFIC_ERROR,
     _R.NOT_AUTHORIZED, _R.TOPIC_NAME_INVALID, _R.PACKET_IDENTIFIER_IN_USE, _R.QUOTA_EXCEEDED,
     _R.PAYLOAD_FORMAT_INVALID}
)
_PUBREL_CODES = frozenset({_R.SUCCESS, _R.PACKET_IDENTIFIER_NOT_FOUND})

#: The MQTT 5 reason codes each packet may carry (tables 3-1, 3-4 .. 3-9, 3-10, 3-11, 3-13, 3-14 .. 3-16).
REASON_CODES: dict[PacketType, frozenset[int]] = {
    PacketType.CONNACK: frozenset(
        {_R.SUCCESS, _R.UNSPECIFIED_ERROR, _R.MALFORMED_PACKET, _R.PROTOCOL_ERROR,
         _R.IMPLEMENTATION_SPECIFIC_ERROR, _R.UNSUPPORTED_PROTOCOL_VERSION, _R.CLIENT_IDENTIFIER_NOT_VALID,
         _R.BAD_USER_NAME_OR_PASSWORD, _R.NOT_AUTHORIZED, _R.SERVER_UNAVAILABLE, _R.SERVER_BUSY, _R.BANNED,
         _R.BAD_AUTHENTICATION_METHOD, _R.TOPIC_NAME_INVALID, _R.PACKET_TOO_LARGE, _R.QUOTA_EXCEEDED,
         _R.PAYLOAD_FORMAT_INVALID, _R.RETAIN_NOT_SUPPORTED, _R.QOS_NOT_SUPPORTED, _R.USE_ANOTHER_SERVER,
         _R.SERVER_MOVED, _R.CONNECTION_RATE_EXCEEDED}
    ),
    PacketType.PUBACK: _PUBACK_CODES,
    PacketType.PUBREC: _PUBACK_CODES,
    PacketType.PUBREL: _PUBREL_CODES,
    PacketType.PUBCOMP: _PUBREL_CODES,
    PacketType.SUBACK: frozenset(
        {_R.SUCCESS, _R.GRANTED_QOS_1, _R.GRANTED_QOS_2, _R.UNSPECIFIED_ERROR, _R.IMPLEMENTATION_SPECIFIC_ERROR,
         _R.NOT_AUTHORIZED, _R.TOPIC_FILTER_INVALID, _R.PACKET_IDENTIFIER_IN_USE, _R.QUOTA_EXCEEDED,
         _R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, _R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
         _R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED}
    ),
    PacketType.UNSUBACK: frozenset(
        {_R.SUCCESS, _R.NO_SUBSCRIPTION_EXISTED, _R.UNSPECIFIED_ERROR, _R.IMPLEMENTATION_SPECIFIC_ERROR,
         _R.NOT_AUTHORIZED, _R.TOPIC_FILTER_INVALID, _R.PACKET_IDENTIFIER_IN_USE}
    ),
    PacketType.DISCONNECT: frozenset(
        {_R.SUCCESS, _R.DISCONNECT_WITH_WILL_MESSAGE, _R.UNSPECIFIED_ERROR, _R.MALFORMED_PACKET,
         _R.PROTOCOL_ERROR, _R.IMPLEMENTATION_SPECIFIC_ERROR, _R.NOT_AUTHORIZED, _R.SERVER_BUSY,
         _R.SERVER_SHUTTING_DOWN, _R.KEEP_ALIVE_TIMEOUT, _R.SESSION_TAKEN_OVER, _R.TOPIC_FILTER_INVALID,
         _R.TOPIC_NAME_INVALID, _R.RECEIVE_MAXIMUM_EXCEEDED, _R.TOPIC_ALIAS_INVALID, _R.PACKET_TOO_LARGE,
         _R.MESSAGE_RATE_TOO_HIGH, _R.QUOTA_EXCEEDED, _R.ADMINISTRATIVE_ACTION, _R.PAYLOAD_FORMAT_INVALID,
         _R.RETAIN_NOT_SUPPORTED, _R.QOS_NOT_SUPPORTED, _R.USE_ANOTHER_SERVER, _R.SERVER_MOVED,
         _R.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED, _R.CONNECTION_RATE_EXCEEDED, _R.MAXIMUM_CONNECT_TIME,
         _R.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, _R.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED}
    ),
    PacketType.AUTH: frozenset({_R.SUCCESS, _R.CONTINUE_AUTHENTICATION, _R.RE_AUTHENTICATE}),
}

#: MQTT 3.1.1 SUBACK return codes; others are reserved [MQTT-3.9.3-2].
SUBACK_CODES_V3 = frozenset({0x00, 0x01, 0x02, 0x80})

#: MQTT 3.1/3.1.1 CONNACK return codes 0-5; 6-255 are reserved (3.1.1 table 3.1).
CONNACK_CODES_V3 = frozenset(range(6))


def check_reason_code(code: int, ptype: PacketType) -> int:
    """
    Check that C{code} is one the specification lists for C{ptype}.

    @return: C{code}.
    @raise MalformedPacket: (0x82) for any other code ([MQTT-3.4.2-1] and the
        matching statement of each packet).
    """
    if code not in REASON_CODES[ptype]:
        raise MalformedPacket(PROTOCOL_ERROR, f"reason code 0x{code:02X} is not valid in {ptype.name}")
    return code
