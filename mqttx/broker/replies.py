# -*- test-case-name: tests.broker.test_properties -*-
"""
What the broker answers with, worked out from configuration and packets
alone: CONNACK properties, will messages, reason strings, payload checks.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from mqttx.mqtt.packets import Connect, Subscribe, Will
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import describe

from .message import Message

if TYPE_CHECKING:
    from mqttx.config import MQTTConfig


def connack_properties(
    config: MQTTConfig,
    connect: Connect,
    client_id: str,
    requested: int,
    expiry: int,
    assigned: str | None,
    server_keep_alive: int | None,
) -> Properties:
    """
    The properties of a successful MQTT 5 CONNACK: what this client is
    told of the session and of the server's limits and features. A
    feature that is available goes unsaid, as absent means available.
    """
    response_information = None
    if config.response_information is not None and connect.properties.request_response_information == 1:
        # Only when asked for [MQTT-3.1.2-28]: the root of this client's
        # response topics (section 4.10).
        response_information = config.response_information + client_id
    return Properties(
        # MQTT 5 section 3.2.2.3.2: tell the client when its expiry was cut down.
        session_expiry_interval=expiry if expiry != requested else None,
        assigned_client_identifier=assigned,
        server_keep_alive=server_keep_alive,
        receive_maximum=config.receive_maximum if config.receive_maximum != 65535 else None,
        maximum_packet_size=config.max_packet_size,
        topic_alias_maximum=config.topic_alias_maximum or None,
        retain_available=None if config.retain_available else 0,
        # Absent means available (section 3.2.2.3.14).
        shared_subscription_available=None if config.shared_subscriptions else 0,
        # [MQTT-3.2.2-9] Said only when below 2, the value absence means.
        maximum_qos=config.maximum_qos if config.maximum_qos < 2 else None,
        wildcard_subscription_available=None if config.wildcard_subscriptions else 0,
        subscription_identifier_available=None if config.subscription_identifiers else 0,
        response_information=response_information,
    )


def will_message(will: Will | None, client_id: str) -> tuple[Message | None, int]:
    """
    The will a CONNECT announces, as the message to publish (without its
    Will Delay Interval, which is not forwarded), and that delay.
    """
    if will is None:
        return None, 0
    props = will.properties
    delay = props.will_delay_interval or 0
    if props.will_delay_interval is not None:
        props = replace(props, will_delay_interval=None)
    return Message(will.topic, will.payload, will.qos, will.retain, props, client_id), delay


# Reason strings of refusals, made once (MQTT 5 section 3.4.2.2.2).
IN_USE = Properties(reason_string="packet identifier in use by a QoS 2 message awaiting PUBREL")
NOT_UTF8 = Properties(reason_string="payload is not valid UTF-8")
NOT_FOUND = Properties(reason_string="packet identifier not found")
QUEUES_FULL = Properties(reason_string="quota exceeded: the queues of all matching subscribers are full")


def suback_refusals(packet: Subscribe, codes: list[int]) -> Properties:
    """The Reason String of a SUBACK: which filters were refused, and why."""
    refused = [
        f"{sub.topic_filter}: {describe(code)}"
        for sub, code in zip(packet.subscriptions, codes, strict=True)
        if code >= 0x80
    ]
    return Properties(reason_string="; ".join(refused)) if refused else NO_PROPERTIES


def is_utf8(data: bytes) -> bool:
    """
    Whether C{data} is well-formed UTF-8 (RFC 3629: no surrogates, no
    overlong forms, nothing above U+10FFFF), as a payload with Payload
    Format Indicator 1 must be (section 3.3.2.3.2).
    """
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
