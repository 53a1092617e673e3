"""MQTT control packet types (section 2.1.2)."""

from __future__ import annotations

from enum import IntEnum


class PacketType(IntEnum):
    """The four high bits of a packet's first byte."""

    CONNECT = 1
    CONNACK = 2
    PUBLISH = 3
    PUBACK = 4
    PUBREC = 5
    PUBREL = 6
    PUBCOMP = 7
    SUBSCRIBE = 8
    SUBACK = 9
    UNSUBSCRIBE = 10
    UNSUBACK = 11
    PINGREQ = 12
    PINGRESP = 13
    DISCONNECT = 14
    AUTH = 15


class ProtocolVersion(IntEnum):
    """The CONNECT protocol level of each supported MQTT version."""

    MQTT_3_1 = 3
    MQTT_3_1_1 = 4
    MQTT_5 = 5
