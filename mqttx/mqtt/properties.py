# -*- test-case-name: tests.mqtt.test_codec -*-
"""
MQTT 5.0 properties (section 2.2.2): identifiers, wire types, the packets each
may appear in, and the typed L{Properties} value every packet carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import NamedTuple

from .packet_type import PacketType


class PropertyId(IntEnum):
    """MQTT 5.0 property identifiers."""

    PAYLOAD_FORMAT_INDICATOR = 0x01
    MESSAGE_EXPIRY_INTERVAL = 0x02
    CONTENT_TYPE = 0x03
    RESPONSE_TOPIC = 0x08
    CORRELATION_DATA = 0x09
    SUBSCRIPTION_IDENTIFIER = 0x0B
    SESSION_EXPIRY_INTERVAL = 0x11
    ASSIGNED_CLIENT_IDENTIFIER = 0x12
    SERVER_KEEP_ALIVE = 0x13
    AUTHENTICATION_METHOD = 0x15
    AUTHENTICATION_DATA = 0x16
    REQUEST_PROBLEM_INFORMATION = 0x17
    WILL_DELAY_INTERVAL = 0x18
    REQUEST_RESPONSE_INFORMATION = 0x19
    RESPONSE_INFORMATION = 0x1A
    SERVER_REFERENCE = 0x1C
    REASON_STRING = 0x1F
    RECEIVE_MAXIMUM = 0x21
    TOPIC_ALIAS_MAXIMUM = 0x22
    TOPIC_ALIAS = 0x23
    MAXIMUM_QOS = 0x24
    RETAIN_AVAILABLE = 0x25
    USER_PROPERTY = 0x26
    MAXIMUM_PACKET_SIZE = 0x27
    WILDCARD_SUBSCRIPTION_AVAILABLE = 0x28
    SUBSCRIPTION_IDENTIFIER_AVAILABLE = 0x29
    SHARED_SUBSCRIPTION_AVAILABLE = 0x2A


class PropertyType(IntEnum):
    """How a property value is encoded on the wire (section 1.5)."""

    BYTE = 1
    TWO_BYTE_INT = 2
    FOUR_BYTE_INT = 3
    VARIABLE_BYTE_INT = 4
    UTF8_STRING = 5
    BINARY = 6
    UTF8_PAIR = 7


#: A pseudo packet type for the will properties inside CONNECT.
WILL = "will"

P = PacketType


class PropertySpec(NamedTuple):
    """What the specification says of one property."""

    id: PropertyId
    field: str
    type: PropertyType
    allowed_in: frozenset[PacketType | str]


def _spec(pid: PropertyId, ptype: PropertyType, *where: PacketType | str) -> PropertySpec:
    return PropertySpec(pid, pid.name.lower(), ptype, frozenset(where))


_B, _I2, _I4 = PropertyType.BYTE, PropertyType.TWO_BYTE_INT, PropertyType.FOUR_BYTE_INT
_VBI = PropertyType.VARIABLE_BYTE_INT
_STR, _BIN, _PAIR = PropertyType.UTF8_STRING, PropertyType.BINARY, PropertyType.UTF8_PAIR
_ACKS = (P.PUBACK, P.PUBREC, P.PUBREL, P.PUBCOMP)

#: Every property, by identifier, with the packets it may appear in (table 2-4).
PROPERTY_SPECS: dict[int, PropertySpec] = {
    s.id: s
    for s in (
        _spec(PropertyId.PAYLOAD_FORMAT_INDICATOR, _B, P.PUBLISH, WILL),
        _spec(PropertyId.MESSAGE_EXPIRY_INTERVAL, _I4, P.PUBLISH, WILL),
        _spec(PropertyId.CONTENT_TYPE, _STR, P.PUBLISH, WILL),
        _spec(PropertyId.RESPONSE_TOPIC, _STR, P.PUBLISH, WILL),
        _spec(PropertyId.CORRELATION_DATA, _BIN, P.PUBLISH, WILL),
        _spec(PropertyId.SUBSCRIPTION_IDENTIFIER, _VBI, P.PUBLISH, P.SUBSCRIBE),
        _spec(PropertyId.SESSION_EXPIRY_INTERVAL, _I4, P.CONNECT, P.CONNACK, P.DISCONNECT),
        _spec(PropertyId.ASSIGNED_CLIENT_IDENTIFIER, _STR, P.CONNACK),
        _spec(PropertyId.SERVER_KEEP_ALIVE, _I2, P.CONNACK),
        _spec(PropertyId.AUTHENTICATION_METHOD, _STR, P.CONNECT, P.CONNACK, P.AUTH),
        _spec(PropertyId.AUTHENTICATION_DATA, _BIN, P.CONNECT, P.CONNACK, P.AUTH),
        _spec(PropertyId.REQUEST_PROBLEM_INFORMATION, _B, P.CONNECT),
        _spec(PropertyId.WILL_DELAY_INTERVAL, _I4, WILL),
        _spec(PropertyId.REQUEST_RESPONSE_INFORMATION, _B, P.CONNECT),
        _spec(PropertyId.RESPONSE_INFORMATION, _STR, P.CONNACK),
        _spec(PropertyId.SERVER_REFERENCE, _STR, P.CONNACK, P.DISCONNECT),
        _spec(
            PropertyId.REASON_STRING, _STR, P.CONNACK, *_ACKS, P.SUBACK, P.UNSUBACK, P.DISCONNECT, P.AUTH
        ),
        _spec(PropertyId.RECEIVE_MAXIMUM, _I2, P.CONNECT, P.CONNACK),
        _spec(PropertyId.TOPIC_ALIAS_MAXIMUM, _I2, P.CONNECT, P.CONNACK),
        _spec(PropertyId.TOPIC_ALIAS, _I2, P.PUBLISH),
        _spec(PropertyId.MAXIMUM_QOS, _B, P.CONNACK),
        _spec(PropertyId.RETAIN_AVAILABLE, _B, P.CONNACK),
        _spec(
            PropertyId.USER_PROPERTY, _PAIR,
            P.CONNECT, P.CONNACK, P.PUBLISH, WILL, *_ACKS, P.SUBSCRIBE, P.SUBACK,
            P.UNSUBSCRIBE, P.UNSUBACK, P.DISCONNECT, P.AUTH,
        ),
        _spec(PropertyId.MAXIMUM_PACKET_SIZE, _I4, P.CONNECT, P.CONNACK),
        _spec(PropertyId.WILDCARD_SUBSCRIPTION_AVAILABLE, _B, P.CONNACK),
        _spec(PropertyId.SUBSCRIPTION_IDENTIFIER_AVAILABLE, _B, P.CONNACK),
        _spec(PropertyId.SHARED_SUBSCRIPTION_AVAILABLE, _B, P.CONNACK),
    )
}


@dataclass(frozen=True, slots=True)
class Properties:
    """
    The MQTT 5 properties of one packet. C{None} (or an empty tuple) means
    absent. Field names are the lower-case L{PropertyId} names, except
    C{subscription_identifier}, which is a tuple because a PUBLISH sent to a
    client may carry several (section 3.3.2.3.8), and C{user_property}, a tuple
    of (name, value) pairs in the order sent, duplicates kept.
    """

    payload_format_indicator: int | None = None
    message_expiry_interval: int | None = None
    content_type: str | None = None
    response_topic: str | None = None
    correlation_data: bytes | None = None
    subscription_identifier: tuple[int, ...] = ()
    session_expiry_interval: int | None = None
    assigned_client_identifier: str | None = None
    server_keep_alive: int | None = None
    authentication_method: str | None = None
    authentication_data: bytes | None = None
    request_problem_information: int | None = None
    will_delay_interval: int | None = None
    request_response_information: int | None = None
    response_information: str | None = None
    server_reference: str | None = None
    reason_string: str | None = None
    receive_maximum: int | None = None
    topic_alias_maximum: int | None = None
    topic_alias: int | None = None
    maximum_qos: int | None = None
    retain_available: int | None = None
    user_property: tuple[tuple[str, str], ...] = ()
    maximum_packet_size: int | None = None
    wildcard_subscription_available: int | None = None
    subscription_identifier_available: int | None = None
    shared_subscription_available: int | None = None

    def __bool__(self) -> bool:
        return self != NO_PROPERTIES


#: The shared empty property set.
NO_PROPERTIES = Properties()
