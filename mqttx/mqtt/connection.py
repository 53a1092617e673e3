# -*- test-case-name: tests.mqtt.test_connection -*-
"""
The server side of one MQTT connection as a sans-IO state machine.

L{Connection} turns received bytes into validated packets and packets to
send into bytes. It enforces what one connection must by the specification:
CONNECT first and only once, packets a client may not send, the keep-alive
deadline, inbound topic aliases, the inbound Receive Maximum, and the maximum
packet size in both directions. It knows nothing of sessions, sockets or
clocks: times are given to it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from enum import Enum
from typing import NoReturn

from .codec import Decoder, encode
from .errors import MalformedPacket
from .packet_type import PacketType, ProtocolVersion
from .packets import (
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    Subscribe,
    Unsubscribe,
)
from .properties import NO_PROPERTIES, Properties
from .reason_codes import ReasonCode
from .topics import is_valid_topic_filter

#: The largest packet MQTT can express: 1 + 4 header bytes + 268,435,455.
MAX_PACKET_SIZE = 268_435_460

_FROM_SERVER_ONLY = frozenset(
    {PacketType.CONNACK, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP}
)


class State(Enum):
    """Where a connection is in its life."""

    AWAITING_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


class Connection:
    """
    One MQTT connection, server side.

    @param max_packet_size: the largest packet accepted from the client;
        anything longer is refused from its fixed header (0x95).
    @param receive_maximum: the inbound QoS 1/2 window advertised to MQTT 5
        clients; exceeding it is a protocol violation (0x93).
    @param topic_alias_maximum: the highest inbound topic alias accepted from
        MQTT 5 clients; 0 disables aliases.

    @ivar protocol_level: 3, 4 or 5 once CONNECT arrived, else C{None}.
    @ivar keep_alive: the keep-alive in force, in seconds (0: none).
    @ivar client_receive_maximum: how many QoS 1/2 PUBLISH the client accepts
        unacknowledged (MQTT 5 Receive Maximum; 65535 when absent).
    @ivar client_maximum_packet_size: the largest packet the client accepts.
    @ivar request_problem_information: whether the client allows reason
        strings and user properties on acknowledgements.
    """

    def __init__(
        self,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        receive_maximum: int = 65535,
        topic_alias_maximum: int = 0,
    ) -> None:
        self._decoder = Decoder(max_packet_size)
        self._receive_maximum = receive_maximum
        self._topic_alias_maximum = topic_alias_maximum
        self._aliases: dict[int, str] = {}
        # Inbound QoS 1/2 packet ids not yet answered with PUBACK, or with
        # PUBREC then PUBCOMP: the client's send quota in use (MQTT 5 4.9).
        self._unacknowledged: set[int] = set()
        self.state = State.AWAITING_CONNECT
        self.protocol_level: int | None = None
        self.keep_alive = 0
        self.last_received = 0.0
        self.client_receive_maximum = 65535
        self.client_maximum_packet_size = MAX_PACKET_SIZE
        self.client_topic_alias_maximum = 0
        self.request_problem_information = True
        self._session_expiry_at_connect = 0
        self._accepted = False

    @property
    def announced_level(self) -> int | None:
        """
        The protocol level a CONNECT announced, even one that failed to
        decode, so a refusal can be answered in a version the client reads.
        """
        return self._decoder.protocol_level

    @property
    def is_v5(self) -> bool:
        """Whether the peer speaks MQTT 5."""
        return self.protocol_level == ProtocolVersion.MQTT_5

    def receive_data(self, data: bytes, now: float) -> list[Packet]:
        """
        Feed bytes received from the client.

        @param now: the current time, for the keep-alive deadline.
        @return: the complete, valid packets they finish, in order.
        @raise MalformedPacket: the client broke the specification; its
            reason code says how. The connection is then closed.
        """
        if self.state is State.CLOSED:
            return []
        self.last_received = now
        try:
            packets = self._decoder.feed(data)
        except MalformedPacket:
            self.state = State.CLOSED
            raise
        if not packets:
            return packets
        for index, packet in enumerate(packets):
            kind = packet.type
            if kind is PacketType.PUBLISH:
                assert isinstance(packet, Publish)
                checked = self._check_publish(packet)
                if checked is not packet:
                    packets[index] = checked
            elif kind is PacketType.CONNECT:
                assert isinstance(packet, Connect)
                self._on_connect(packet)
            elif kind is PacketType.DISCONNECT:
                assert isinstance(packet, Disconnect)
                self._on_disconnect(packet)
                # [MQTT-3.14.4-1] Nothing after DISCONNECT counts.
                del packets[index + 1 :]
                break
            elif kind is PacketType.SUBSCRIBE:
                assert isinstance(packet, Subscribe)
                self._check_filters(s.topic_filter for s in packet.subscriptions)
            elif kind is PacketType.UNSUBSCRIBE:
                assert isinstance(packet, Unsubscribe)
                self._check_filters(packet.topic_filters)
            elif kind in _FROM_SERVER_ONLY:
                self._fail(ReasonCode.PROTOCOL_ERROR, f"a client may not send {kind.name}")
        return packets

    def _check_filters(self, topic_filters: Iterable[str]) -> None:
        for topic_filter in topic_filters:
            if not is_valid_topic_filter(topic_filter):
                # [MQTT-4.7.1-2] [MQTT-4.7.1-3] A malformed filter is a
                # protocol violation, which closes the connection
                # [MQTT-4.8.0-1] (as Mosquitto does); SUBACK 0x8F is for
                # well-formed filters a client may not use.
                self._fail(ReasonCode.MALFORMED_PACKET, f"invalid topic filter {topic_filter!r}")

    def send(self, packet: Packet) -> bytes:
        """
        Encode a packet for the client.

        Acknowledgements of inbound QoS 1/2 messages release the client's send
        quota. A packet larger than the client's Maximum Packet Size loses its
        reason string and user properties ([MQTT-3.1.2-25]); if still too
        large, nothing is sent and C{b""} is returned.
        """
        kind = packet.type
        if kind is PacketType.PUBACK or kind is PacketType.PUBCOMP:
            assert isinstance(packet, (PubAck, PubComp))
            self._unacknowledged.discard(packet.packet_id)
        elif kind is PacketType.PUBREC:
            assert isinstance(packet, PubRec)
            if packet.reason_code >= 0x80:
                self._unacknowledged.discard(packet.packet_id)
        level = self.protocol_level or ProtocolVersion.MQTT_3_1_1
        data = encode(packet, level)
        if len(data) > self.client_maximum_packet_size:
            return self._shrink(packet, level)
        return data

    def _shrink(self, packet: Packet, level: int) -> bytes:
        properties: Properties | None = getattr(packet, "properties", None)
        if properties is None or packet.type is PacketType.PUBLISH:
            return b""
        lean = replace(properties, reason_string=None, user_property=())
        data = encode(replace(packet, properties=lean), level)  # type: ignore[arg-type]
        return data if len(data) <= self.client_maximum_packet_size else b""

    def disconnect(self, reason_code: int, reason_string: str | None = None) -> bytes:
        """
        Close the connection from the server side.

        @return: the DISCONNECT to send (MQTT 5, after CONNECT only), else
            C{b""}: 3.1/3.1.1 servers never send DISCONNECT.
        """
        accepted = self._accepted
        self._accepted = False
        self.state = State.CLOSED
        if not accepted or not self.is_v5:
            return b""
        props = NO_PROPERTIES if reason_string is None else Properties(reason_string=reason_string)
        return self.send(Disconnect(reason_code, props))

    def accepted(self, keep_alive: int | None = None) -> None:
        """
        The broker accepted the CONNECT (and is sending a successful CONNACK).

        @param keep_alive: the Server Keep Alive that replaces the client's,
            if the broker imposes one.
        """
        self.state = State.CONNECTED
        self._accepted = True
        if keep_alive is not None:
            self.keep_alive = keep_alive

    def keepalive_deadline(self) -> float | None:
        """
        When the client is overdue: 1.5 keep-alive periods after the last
        bytes received ([MQTT-3.1.2-24]), or C{None} without a keep-alive.
        """
        if not self.keep_alive:
            return None
        return self.last_received + self.keep_alive * 1.5

    def _fail(self, reason_code: ReasonCode, detail: str) -> NoReturn:
        self.state = State.CLOSED
        raise MalformedPacket(reason_code, detail)

    def _on_connect(self, connect: Connect) -> None:
        if self.protocol_level is not None:
            # [MQTT-3.1.0-2] A second CONNECT is a protocol violation.
            self._fail(ReasonCode.PROTOCOL_ERROR, "second CONNECT")
        self.protocol_level = connect.protocol_level
        self.keep_alive = connect.keep_alive
        props = connect.properties
        if props is not NO_PROPERTIES:
            if props.receive_maximum is not None:
                self.client_receive_maximum = props.receive_maximum
            if props.maximum_packet_size is not None:
                self.client_maximum_packet_size = props.maximum_packet_size
            if props.topic_alias_maximum is not None:
                self.client_topic_alias_maximum = props.topic_alias_maximum
            if props.request_problem_information == 0:
                self.request_problem_information = False
            self._session_expiry_at_connect = props.session_expiry_interval or 0

    def _on_disconnect(self, disconnect: Disconnect) -> None:
        expiry = disconnect.properties.session_expiry_interval
        if expiry and not self._session_expiry_at_connect:
            # MQTT 5 section 3.14.2.2.2: a session that was to end with the
            # connection cannot be made to outlive it at DISCONNECT.
            self._fail(
                ReasonCode.PROTOCOL_ERROR,
                "session expiry set at DISCONNECT after zero at CONNECT",
            )
        # The client ended the connection: the server sends no DISCONNECT back.
        self._accepted = False
        self.state = State.CLOSED

    def _check_publish(self, publish: Publish) -> Publish:
        if self.state is State.AWAITING_CONNECT and self.protocol_level is None:
            self._fail(ReasonCode.PROTOCOL_ERROR, "PUBLISH before CONNECT")
        props = publish.properties
        if props is not NO_PROPERTIES:
            if props.subscription_identifier:
                # [MQTT-3.3.4-6]
                self._fail(ReasonCode.PROTOCOL_ERROR, "PUBLISH from a client has a subscription identifier")
            alias = props.topic_alias
            if alias is not None:
                publish = self._resolve_alias(publish, alias)
        if publish.qos and self.protocol_level == ProtocolVersion.MQTT_5:
            pid = publish.packet_id
            unacked = self._unacknowledged
            if pid not in unacked:
                if len(unacked) >= self._receive_maximum:
                    # [MQTT-3.3.4-7] The client exceeded our Receive Maximum.
                    self._fail(ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, "receive maximum exceeded")
                unacked.add(pid)  # type: ignore[arg-type]
        return publish

    def _resolve_alias(self, publish: Publish, alias: int) -> Publish:
        if alias == 0 or alias > self._topic_alias_maximum:
            # [MQTT-3.3.2-8] [MQTT-3.3.2-9]
            self._fail(ReasonCode.TOPIC_ALIAS_INVALID, f"topic alias {alias} out of range")
        topic = publish.topic
        if topic:
            self._aliases[alias] = topic
        else:
            known = self._aliases.get(alias)
            if known is None:
                self._fail(ReasonCode.PROTOCOL_ERROR, f"unknown topic alias {alias}")
            topic = known
        return replace(publish, topic=topic, properties=replace(publish.properties, topic_alias=None))
