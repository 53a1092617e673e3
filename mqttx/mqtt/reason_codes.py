# -*- test-case-name: tests.mqtt.test_codec -*-
"""
MQTT reason codes (MQTT 5.0 section 2.4) and MQTT 3.1.1 CONNACK return codes.
"""

from __future__ import annotations

from enum import IntEnum


class ReasonCode(IntEnum):
    """Every MQTT 5.0 reason code. Values below 0x80 mean success."""

    SUCCESS = 0x00  # also NORMAL_DISCONNECTION and GRANTED_QOS_0
    GRANTED_QOS_1 = 0x01
    GRANTED_QOS_2 = 0x02
    DISCONNECT_WITH_WILL_MESSAGE = 0x04
    NO_MATCHING_SUBSCRIBERS = 0x10
    NO_SUBSCRIPTION_EXISTED = 0x11
    CONTINUE_AUTHENTICATION = 0x18
    RE_AUTHENTICATE = 0x19
    UNSPECIFIED_ERROR = 0x80
    MALFORMED_PACKET = 0x81
    PROTOCOL_ERROR = 0x82
    IMPLEMENTATION_SPECIFIC_ERROR = 0x83
    UNSUPPORTED_PROTOCOL_VERSION = 0x84
    CLIENT_IDENTIFIER_NOT_VALID = 0x85
    BAD_USER_NAME_OR_PASSWORD = 0x86
    NOT_AUTHORIZED = 0x87
    SERVER_UNAVAILABLE = 0x88
    SERVER_BUSY = 0x89
    BANNED = 0x8A
    SERVER_SHUTTING_DOWN = 0x8B
    BAD_AUTHENTICATION_METHOD = 0x8C
    KEEP_ALIVE_TIMEOUT = 0x8D
    SESSION_TAKEN_OVER = 0x8E
    TOPIC_FILTER_INVALID = 0x8F
    TOPIC_NAME_INVALID = 0x90
    PACKET_IDENTIFIER_IN_USE = 0x91
    PACKET_IDENTIFIER_NOT_FOUND = 0x92
    RECEIVE_MAXIMUM_EXCEEDED = 0x93
    TOPIC_ALIAS_INVALID = 0x94
    PACKET_TOO_LARGE = 0x95
    MESSAGE_RATE_TOO_HIGH = 0x96
    QUOTA_EXCEEDED = 0x97
    ADMINISTRATIVE_ACTION = 0x98
    PAYLOAD_FORMAT_INVALID = 0x99
    RETAIN_NOT_SUPPORTED = 0x9A
    QOS_NOT_SUPPORTED = 0x9B
    USE_ANOTHER_SERVER = 0x9C
    SERVER_MOVED = 0x9D
    SHARED_SUBSCRIPTIONS_NOT_SUPPORTED = 0x9E
    CONNECTION_RATE_EXCEEDED = 0x9F
    MAXIMUM_CONNECT_TIME = 0xA0
    SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED = 0xA1
    WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED = 0xA2


NORMAL_DISCONNECTION = ReasonCode.SUCCESS


def describe(code: int) -> str:
    """
    A short human explanation of an error reason code, for the Reason String
    of packets that have nothing more specific to say (MQTT 5 section
    3.14.2.2.3: diagnostics, not to be parsed by the receiver).

    @param code: an MQTT 5 reason code.
    @return: the explanation, or C{""} for codes below 0x80.
    """
    return _DESCRIPTIONS.get(code, "")


_DESCRIPTIONS: dict[int, str] = {
    ReasonCode.UNSPECIFIED_ERROR: "unspecified error",
    ReasonCode.MALFORMED_PACKET: "malformed packet",
    ReasonCode.PROTOCOL_ERROR: "protocol error",
    ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR: "internal error",
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: "unsupported protocol version",
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: "client identifier not valid",
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: "bad user name or password",
    ReasonCode.NOT_AUTHORIZED: "not authorized",
    ReasonCode.SERVER_UNAVAILABLE: "server unavailable",
    ReasonCode.SERVER_BUSY: "server busy",
    ReasonCode.BANNED: "banned",
    ReasonCode.SERVER_SHUTTING_DOWN: "server shutting down",
    ReasonCode.BAD_AUTHENTICATION_METHOD: "authentication method not supported",
    ReasonCode.KEEP_ALIVE_TIMEOUT: "keep alive timeout",
    ReasonCode.SESSION_TAKEN_OVER: "session taken over by another connection",
    ReasonCode.TOPIC_FILTER_INVALID: "topic filter not accepted",
    ReasonCode.TOPIC_NAME_INVALID: "topic name not accepted",
    ReasonCode.PACKET_IDENTIFIER_IN_USE: "packet identifier in use",
    ReasonCode.PACKET_IDENTIFIER_NOT_FOUND: "packet identifier not found",
    ReasonCode.RECEIVE_MAXIMUM_EXCEEDED: "receive maximum exceeded",
    ReasonCode.TOPIC_ALIAS_INVALID: "topic alias invalid",
    ReasonCode.PACKET_TOO_LARGE: "packet too large",
    ReasonCode.MESSAGE_RATE_TOO_HIGH: "message rate too high",
    ReasonCode.QUOTA_EXCEEDED: "quota exceeded",
    ReasonCode.ADMINISTRATIVE_ACTION: "administrative action",
    ReasonCode.PAYLOAD_FORMAT_INVALID: "payload is not valid UTF-8",
    ReasonCode.RETAIN_NOT_SUPPORTED: "retained messages are not supported",
    ReasonCode.QOS_NOT_SUPPORTED: "QoS not supported",
    ReasonCode.USE_ANOTHER_SERVER: "use another server",
    ReasonCode.SERVER_MOVED: "server moved",
    ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: "shared subscriptions are not supported",
    ReasonCode.CONNECTION_RATE_EXCEEDED: "connection rate exceeded",
    ReasonCode.MAXIMUM_CONNECT_TIME: "maximum connect time reached",
    ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: "subscription identifiers are not supported",
    ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: "wildcard subscriptions are not supported",
}


class ConnackReturnCode(IntEnum):
    """MQTT 3.1 / 3.1.1 CONNACK return codes (3.1.1 section 3.2.2.3)."""

    ACCEPTED = 0x00
    UNACCEPTABLE_PROTOCOL_VERSION = 0x01
    IDENTIFIER_REJECTED = 0x02
    SERVER_UNAVAILABLE = 0x03
    BAD_USER_NAME_OR_PASSWORD = 0x04
    NOT_AUTHORIZED = 0x05


def connack_code_v3(code: int) -> ConnackReturnCode:
    """
    Map an MQTT 5 CONNACK reason code to the nearest 3.1.1 return code.

    @param code: an MQTT 5 reason code.
    @return: the 3.1.1 return code a 3.1/3.1.1 client should see.
    """
    return _V5_TO_V3_CONNACK.get(code, ConnackReturnCode.SERVER_UNAVAILABLE)


_V5_TO_V3_CONNACK: dict[int, ConnackReturnCode] = {
    ReasonCode.SUCCESS: ConnackReturnCode.ACCEPTED,
    ReasonCode.UNSUPPORTED_PROTOCOL_VERSION: ConnackReturnCode.UNACCEPTABLE_PROTOCOL_VERSION,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: ConnackReturnCode.IDENTIFIER_REJECTED,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.NOT_AUTHORIZED: ConnackReturnCode.NOT_AUTHORIZED,
    ReasonCode.BANNED: ConnackReturnCode.NOT_AUTHORIZED,
    ReasonCode.BAD_AUTHENTICATION_METHOD: ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
    ReasonCode.SERVER_UNAVAILABLE: ConnackReturnCode.SERVER_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: ConnackReturnCode.SERVER_UNAVAILABLE,
}
