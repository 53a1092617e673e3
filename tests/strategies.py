# -*- test-case-name: tests.mqtt.test_codec_properties -*-
"""
Hypothesis strategies for MQTT packets.

Every strategy generates only packets that are valid for the protocol level
asked for, so that C{Decoder().feed(encode(p, level)) == [p]} must hold:
properties and reason codes only in 5.0, properties only where table 2-4
allows them, values inside the ranges the specifications give.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from mqttx.mqtt._wire import MAX_VBI, REASON_CODES
from mqttx.mqtt.packet_type import PacketType
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
from mqttx.mqtt.properties import NO_PROPERTIES, PROPERTY_SPECS, WILL, Properties

__all__ = [
    "LEVELS",
    "connects",
    "leveled_packets",
    "packet_ids",
    "packets",
    "properties",
    "publishes",
    "topic_filters",
    "topic_names",
    "utf8_text",
]

#: The protocol levels mqttx speaks: MQTT 3.1, 3.1.1 and 5.0.
LEVELS = (3, 4, 5)

# Well-formed UTF-8 strings: no lone surrogates [MQTT-1.5.4-1], no U+0000 [MQTT-1.5.4-2].
_chars = st.characters(codec="utf-8", exclude_characters="\x00")
utf8_text = st.text(_chars, max_size=12) | st.just("\ufeffbom")
topic_names = st.text(st.characters(codec="utf-8", exclude_characters="\x00+#"), min_size=1, max_size=16)
topic_filters = st.text(_chars, min_size=1, max_size=16)
packet_ids = st.integers(1, 0xFFFF)
_binary = st.binary(max_size=24)
_u16 = st.integers(0, 0xFFFF)
_u32 = st.integers(0, 0xFFFF_FFFF)
_bit = st.integers(0, 1)

_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "payload_format_indicator": _bit,
    "message_expiry_interval": _u32,
    "content_type": utf8_text,
    "response_topic": topic_names,
    "correlation_data": _binary,
    "session_expiry_interval": _u32,
    "assigned_client_identifier": utf8_text,
    "server_keep_alive": _u16,
    "authentication_method": utf8_text,
    "authentication_data": _binary,
    "request_problem_information": _bit,
    "will_delay_interval": _u32,
    "request_response_information": _bit,
    "response_information": utf8_text,
    "server_reference": utf8_text,
    "reason_string": utf8_text,
    "receive_maximum": st.integers(1, 0xFFFF),
    "topic_alias_maximum": _u16,
    "topic_alias": st.integers(1, 0xFFFF),
    "maximum_qos": _bit,
    "retain_available": _bit,
    "user_property": st.lists(st.tuples(utf8_text, utf8_text), min_size=1, max_size=3).map(tuple),
    "maximum_packet_size": st.integers(1, 0xFFFF_FFFF),
    "wildcard_subscription_available": _bit,
    "subscription_identifier_available": _bit,
    "shared_subscription_available": _bit,
}


def _make_properties(ctx: PacketType | str, chosen: dict[str, Any]) -> Properties:
    if ctx is PacketType.CONNECT and "authentication_method" not in chosen:
        # Authentication Data needs an Authentication Method (3.1.2.11.10).
        chosen.pop("authentication_data", None)
    return Properties(**chosen)


def properties(ctx: PacketType | str) -> st.SearchStrategy[Properties]:
    """
    Valid MQTT 5 properties for one packet type (or L{WILL}), often empty.

    @param ctx: the packet type the properties belong to.
    """
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for spec in PROPERTY_SPECS.values():
        if ctx not in spec.allowed_in:
            continue
        if spec.field == "subscription_identifier":
            # Several only in a PUBLISH (to a client), one in a SUBSCRIBE.
            most = 3 if ctx is PacketType.PUBLISH else 1
            optional[spec.field] = st.lists(st.integers(1, MAX_VBI), min_size=1, max_size=most).map(tuple)
        else:
            optional[spec.field] = _VALUES[spec.field]
    return st.fixed_dictionaries({}, optional=optional).map(lambda chosen: _make_properties(ctx, chosen))


def _props(level: int, ctx: PacketType | str) -> st.SearchStrategy[Properties]:
    return properties(ctx) if level == 5 else st.just(NO_PROPERTIES)


def _codes(ptype: PacketType) -> st.SearchStrategy[int]:
    return st.sampled_from(sorted(REASON_CODES[ptype]))


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    """A CONNECT for C{level}, with or without will, user name and password."""
    will = draw(
        st.none()
        | st.builds(Will, topic_names, _binary, st.integers(0, 2), st.booleans(), _props(level, WILL))
    )
    username = draw(st.none() | utf8_text)
    password = draw(st.none() | _binary)
    if level < 5 and username is None:
        password = None  # [MQTT-3.1.2-22]
    return Connect(
        client_id=draw(utf8_text),
        protocol_level=level,
        protocol_name="MQIsdp" if level == 3 else "MQTT",
        clean_start=draw(st.booleans()),
        keep_alive=draw(_u16),
        username=username,
        password=password,
        will=will,
        properties=draw(_props(level, PacketType.CONNECT)),
    )


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    """A PUBLISH for C{level}; in 5.0 possibly with an empty topic and a Topic Alias."""
    qos = draw(st.integers(0, 2))
    props = draw(_props(level, PacketType.PUBLISH))
    topic = draw(topic_names)
    if props.topic_alias is not None and draw(st.booleans()):
        topic = ""
    return Publish(
        topic=topic,
        payload=draw(st.binary(max_size=64)),
        qos=qos,
        retain=draw(st.booleans()),
        dup=draw(st.booleans()) if qos else False,
        packet_id=draw(packet_ids) if qos else None,
        properties=props,
    )


def _subscriptions(level: int) -> st.SearchStrategy[Subscription]:
    if level < 5:
        return st.builds(Subscription, topic_filters, st.integers(0, 2))
    return st.builds(Subscription, topic_filters, st.integers(0, 2), st.booleans(), st.booleans(), st.integers(0, 2))


def _ack(cls: type[PubAck | PubRec | PubRel | PubComp], level: int) -> st.SearchStrategy[Packet]:
    if level < 5:
        return st.builds(cls, packet_ids)
    return st.builds(cls, packet_ids, _codes(cls.type), properties(cls.type))


def packets(level: int) -> st.SearchStrategy[Packet]:
    """
    Any valid packet, of any type, for C{level}.

    @param level: 3, 4 or 5.
    """
    p = PacketType
    if level < 5:
        connack_codes: st.SearchStrategy[int] = st.integers(0, 5)
        suback_codes: st.SearchStrategy[int] = st.sampled_from((0, 1, 2, 0x80))
        unsuback_codes: st.SearchStrategy[tuple[int, ...]] = st.just(())
        disconnects: st.SearchStrategy[Packet] = st.just(Disconnect())
    else:
        connack_codes = _codes(p.CONNACK)
        suback_codes = _codes(p.SUBACK)
        unsuback_codes = st.lists(_codes(p.UNSUBACK), min_size=1, max_size=4).map(tuple)
        disconnects = st.builds(Disconnect, _codes(p.DISCONNECT), properties(p.DISCONNECT))
    choices: list[st.SearchStrategy[Packet]] = [
        connects(level),
        st.builds(
            ConnAck,
            st.just(False) if level == 3 else st.booleans(),  # 3.1 has no session present flag
            connack_codes,
            _props(level, p.CONNACK),
        ),
        publishes(level),
        _ack(PubAck, level),
        _ack(PubRec, level),
        _ack(PubRel, level),
        _ack(PubComp, level),
        st.builds(
            Subscribe,
            packet_ids,
            st.lists(_subscriptions(level), min_size=1, max_size=4).map(tuple),
            _props(level, p.SUBSCRIBE),
        ),
        st.builds(
            SubAck,
            packet_ids,
            st.lists(suback_codes, min_size=1, max_size=4).map(tuple),
            _props(level, p.SUBACK),
        ),
        st.builds(
            Unsubscribe,
            packet_ids,
            st.lists(topic_filters, min_size=1, max_size=4).map(tuple),
            _props(level, p.UNSUBSCRIBE),
        ),
        st.builds(UnsubAck, packet_ids, unsuback_codes, _props(level, p.UNSUBACK)),
        st.just(PingReq()),
        st.just(PingResp()),
        disconnects,
    ]
    if level == 5:
        choices.append(st.builds(Auth, _codes(p.AUTH), properties(p.AUTH)))
    return st.one_of(choices)


#: (level, packet) pairs over every level.
leveled_packets: st.SearchStrategy[tuple[int, Packet]] = st.sampled_from(LEVELS).flatmap(
    lambda level: st.tuples(st.just(level), packets(level))
)
