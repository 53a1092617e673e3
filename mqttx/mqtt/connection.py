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

from .aliases import OutboundTopicAliases
from .codec import Decoder, encode
from .errors import MalformedPacket
from .packet_type import PacketType, ProtocolVersion
from .packets import (
    Auth,
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
from .reason_codes import ReasonCode, describe
from .topics import SHARE_PREFIX, is_valid_topic_filter

#: The largest packet MQTT can express: 1 + 4 header bytes + 268,435,455.
MAX_PACKET_SIZE = 268_435_460

_FROM_SERVER_ONLY = frozenset(
    {PacketType.CONNACK, PacketType.SUBACK, PacketType.UNSUBACK, PacketType.PINGRESP}
)

#: Packets that carry no Reason String or User Property for a client that
#: set Request Problem Information to 0: all but PUBLISH, CONNACK and
#: DISCONNECT [MQTT-3.1.2-29].
_PROBLEM_INFORMATION_OPTIONAL = frozenset(
    {
        PacketType.PUBACK,
        PacketType.PUBREC,
        PacketType.PUBREL,
        PacketType.PUBCOMP,
        PacketType.SUBACK,
        PacketType.UNSUBACK,
        PacketType.AUTH,
    }
)


class State(Enum):
    """Where a connection is in its life."""

    AWAITING_CONNECT = "awaiting CONNECT"
    CONNECTED = "connected"
    CLOSED = "closed"


class AuthPhase(Enum):
    """
    Whose turn it is in an enhanced authentication exchange (MQTT 5
    section 4.12): the one a CONNECT with an Authentication Method starts,
    or a re-authentication (AUTH 0x19) after CONNACK.
    """

    #: No exchange is running.
    NONE = "none"
    #: The server owes the next step: its answer to the CONNECT or to the
    #: client's last AUTH.
    SERVER = "server"
    #: The server sent AUTH 0x18 and waits for the client's AUTH 0x18.
    CLIENT = "client"


class Connection:
    """
    One MQTT connection, server side.

    @param max_packet_size: the largest packet accepted from the client;
        anything longer is refused from its fixed header (0x95).
    @param receive_maximum: the inbound QoS 1/2 window advertised to MQTT 5
        clients; exceeding it is a protocol violation (0x93).
    @param topic_alias_maximum: the highest inbound topic alias accepted from
        MQTT 5 clients; 0 disables aliases. It also caps the outbound aliases.
    @param maximum_qos: the highest QoS the client may publish with (MQTT 5
        Maximum QoS); a PUBLISH above it is refused (0x9B).
    @param subscription_identifiers: whether a SUBSCRIBE may carry a
        Subscription Identifier; if not, one that does is refused (0xA1).

    @ivar protocol_level: 3, 4 or 5 once CONNECT arrived, else C{None}.
    @ivar keep_alive: the keep-alive in force, in seconds (0: none).
    @ivar client_receive_maximum: how many QoS 1/2 PUBLISH the client accepts
        unacknowledged (MQTT 5 Receive Maximum; 65535 when absent).
    @ivar client_maximum_packet_size: the largest packet the client accepts.
    @ivar request_problem_information: whether the client allows reason
        strings and user properties on acknowledgements.
    @ivar authentication_method: the MQTT 5 Authentication Method of the
        CONNECT, which every AUTH must repeat, else C{None}.
    @ivar auth_phase: whose turn it is in an enhanced authentication.
    @ivar outbound_aliases: the topic aliases of PUBLISH sent to an MQTT 5
        client that announced a Topic Alias Maximum (at most
        C{topic_alias_maximum} of them), else C{None}.
    """

    def __init__(
        self,
        *,
        max_packet_size: int = MAX_PACKET_SIZE,
        receive_maximum: int = 65535,
        topic_alias_maximum: int = 0,
        maximum_qos: int = 2,
        subscription_identifiers: bool = True,
    ) -> None:
        self._decoder = Decoder(max_packet_size)
        self._receive_maximum = receive_maximum
        self._topic_alias_maximum = topic_alias_maximum
        self._maximum_qos = maximum_qos
        self._subscription_identifiers = subscription_identifiers
        self.outbound_aliases: OutboundTopicAliases | None = None
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
        self.authentication_method: str | None = None
        self.auth_phase = AuthPhase.NONE
        # The first packet (not AUTH or DISCONNECT) the client sent before
        # CONNACK while the server was deciding on its last AUTH.
        self._sent_ahead: PacketType | None = None

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
        # Only before CONNACK can an enhanced authentication restrict what
        # the client may send: connected clients skip the check.
        pre_connack = self.state is State.AWAITING_CONNECT
        for index, packet in enumerate(packets):
            kind = packet.type
            if (
                pre_connack
                and self.auth_phase is not AuthPhase.NONE
                and kind is not PacketType.AUTH
                and kind is not PacketType.DISCONNECT
            ):
                self._before_connack(kind)
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
                for sub in packet.subscriptions:
                    if sub.no_local and sub.topic_filter.startswith(SHARE_PREFIX):
                        # [MQTT-3.8.3-4]
                        self._fail(ReasonCode.PROTOCOL_ERROR, "No Local on a shared subscription")
                if packet.properties.subscription_identifier and not self._subscription_identifiers:
                    # MQTT 5 section 3.2.2.3.12: the CONNACK said Subscription
                    # Identifier Available 0.
                    self._fail(
                        ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED,
                        "subscription identifiers are not supported",
                    )
            elif kind is PacketType.UNSUBSCRIBE:
                assert isinstance(packet, Unsubscribe)
                self._check_filters(packet.topic_filters)
            elif kind is PacketType.AUTH:
                assert isinstance(packet, Auth)
                self._on_auth(packet)
            elif kind in _FROM_SERVER_ONLY:
                self._fail(ReasonCode.PROTOCOL_ERROR, f"a client may not send {kind.name}")
        return packets

    def _check_filters(self, topic_filters: Iterable[str]) -> None:
        for topic_filter in topic_filters:
            checked = topic_filter
            if topic_filter.startswith(SHARE_PREFIX):
                # A shared subscription's ShareName, and whether a filter
                # follows it, are the broker's to refuse with SUBACK 0x8F
                # [MQTT-4.8.2-1] [MQTT-4.8.2-2]; the filter itself must be
                # well-formed like any other.
                checked = topic_filter[len(SHARE_PREFIX) :].partition("/")[2]
                if not checked:
                    continue
            if not is_valid_topic_filter(checked):
                # [MQTT-4.7.1-2] [MQTT-4.7.1-3] A malformed filter is a
                # protocol violation, which closes the connection
                # [MQTT-4.8.0-1] (as Mosquitto does); SUBACK 0x8F is for
                # well-formed filters a client may not use.
                self._fail(ReasonCode.MALFORMED_PACKET, f"invalid topic filter {topic_filter!r}")

    def send(self, packet: Packet) -> bytes:
        """
        Encode a packet for the client.

        Acknowledgements of inbound QoS 1/2 messages release the client's send
        quota; AUTH moves the L{auth_phase}. A client that set Request
        Problem Information to 0 gets no reason string or user properties on packets other than PUBLISH,
        CONNACK and DISCONNECT ([MQTT-3.1.2-29]): they are removed here, so
        callers always give them. A packet larger than the client's Maximum
        Packet Size loses its reason string and user properties
        ([MQTT-3.1.2-25]); if still too large, nothing is sent and C{b""} is
        returned.
        """
        kind = packet.type
        if kind is PacketType.PUBACK or kind is PacketType.PUBCOMP:
            assert isinstance(packet, (PubAck, PubComp))
            if packet.reason_code != ReasonCode.PACKET_IDENTIFIER_IN_USE:
                # (PUBACK 0x91 refuses a PUBLISH whose packet identifier a
                # QoS 2 exchange still holds: the quota stays in use.)
                self._unacknowledged.discard(packet.packet_id)
        elif kind is PacketType.PUBREC:
            assert isinstance(packet, PubRec)
            if packet.reason_code >= 0x80:
                self._unacknowledged.discard(packet.packet_id)
        elif kind is PacketType.AUTH:
            assert isinstance(packet, Auth)
            # Section 4.12: AUTH 0x18 gives the client the turn; AUTH 0x00
            # ends a re-authentication.
            if packet.reason_code == ReasonCode.CONTINUE_AUTHENTICATION:
                self.auth_phase = AuthPhase.CLIENT
            else:
                self.auth_phase = AuthPhase.NONE
        if not self.request_problem_information and kind in _PROBLEM_INFORMATION_OPTIONAL:
            packet = _without_problem_information(packet)
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
        if len(data) > self.client_maximum_packet_size and packet.type is PacketType.CONNACK:
            # A client must get its CONNACK: then go without what the server
            # is free not to send. Response Information is optional (MQTT 5
            # section 3.2.2.3.15), so is a Server Reference (4.11); without a
            # Topic Alias Maximum the client only sends no aliases.
            optional = replace(lean, response_information=None, server_reference=None)
            for leaner in (optional, replace(optional, topic_alias_maximum=None)):
                data = encode(replace(packet, properties=leaner), level)  # type: ignore[arg-type]
                if len(data) <= self.client_maximum_packet_size:
                    break
        return data if len(data) <= self.client_maximum_packet_size else b""

    def disconnect(self, reason_code: int, reason_string: str | None = None) -> bytes:
        """
        Close the connection from the server side.

        @param reason_string: what went wrong, for the client's diagnostics;
            by default a short description of an error C{reason_code}.
        @return: the DISCONNECT to send (MQTT 5, after CONNECT only), else
            C{b""}: 3.1/3.1.1 servers never send DISCONNECT.
        """
        accepted = self._accepted
        self._accepted = False
        self.state = State.CLOSED
        if not accepted or not self.is_v5:
            return b""
        if reason_string is None:
            reason_string = describe(reason_code) or None
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
        self.auth_phase = AuthPhase.NONE
        self._sent_ahead = None
        if keep_alive is not None:
            self.keep_alive = keep_alive

    def check_challenge(self) -> None:
        """
        Call after sending AUTH 0x18 before CONNACK. The client may send
        packets right behind what it hopes is its last AUTH: they wait, and
        count once that AUTH ends the exchange with CONNACK. But if the
        server challenges again, they came before CONNACK in the middle of
        the exchange, which the client must not do [MQTT-3.1.2-30].

        @raise MalformedPacket: (0x82) if the client did so with anything
            but DISCONNECT.
        """
        kind = self._sent_ahead
        if kind is not None:
            self._fail(
                ReasonCode.PROTOCOL_ERROR,
                f"{kind.name} before CONNACK during enhanced authentication [MQTT-3.1.2-30]",
            )

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
                # The server never uses more aliases than it accepts itself,
                # nor more than the client does [MQTT-3.3.2-11]; a client
                # that announced none gets none [MQTT-3.1.2-27]. The table
                # lives and dies with this connection [MQTT-3.3.2-7].
                outbound = min(props.topic_alias_maximum, self._topic_alias_maximum)
                if outbound:
                    self.outbound_aliases = OutboundTopicAliases(outbound)
            if props.request_problem_information == 0:
                self.request_problem_information = False
            self._session_expiry_at_connect = props.session_expiry_interval or 0
            if props.authentication_method is not None:
                # Section 4.12: the CONNECT starts an enhanced authentication.
                self.authentication_method = props.authentication_method
                self.auth_phase = AuthPhase.SERVER

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

    def _on_auth(self, auth: Auth) -> None:
        method = self.authentication_method
        if method is None:
            # Section 3.15 [MQTT-4.12.0-7]: no AUTH unless CONNECT named a method.
            self._fail(ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")
        if auth.properties.authentication_method != method:
            # [MQTT-4.12.0-5] Every AUTH repeats the CONNECT's method.
            self._fail(ReasonCode.PROTOCOL_ERROR, "AUTH with another authentication method")
        code = auth.reason_code
        if code == ReasonCode.CONTINUE_AUTHENTICATION:
            if self.auth_phase is not AuthPhase.CLIENT:
                # [MQTT-4.12.0-3] The client's AUTH 0x18 answers the server's.
                self._fail(ReasonCode.PROTOCOL_ERROR, "AUTH 0x18 without a challenge to answer")
            self.auth_phase = AuthPhase.SERVER
        elif code == ReasonCode.RE_AUTHENTICATE:
            if not self._accepted:
                # [MQTT-4.12.1-1] Re-authentication begins after CONNACK.
                self._fail(ReasonCode.PROTOCOL_ERROR, "re-authentication before CONNACK")
            if self.auth_phase is not AuthPhase.NONE:
                self._fail(ReasonCode.PROTOCOL_ERROR, "re-authentication during an authentication")
            self.auth_phase = AuthPhase.SERVER
        else:
            # Section 3.15.2.1: only the server sends AUTH 0x00.
            self._fail(ReasonCode.PROTOCOL_ERROR, "AUTH 0x00 from a client")

    def _before_connack(self, kind: PacketType) -> None:
        if self.auth_phase is AuthPhase.CLIENT:
            # [MQTT-3.1.2-30] While the exchange waits for the client's AUTH,
            # it may send nothing but AUTH or DISCONNECT.
            self._fail(
                ReasonCode.PROTOCOL_ERROR,
                f"{kind.name} before CONNACK during enhanced authentication [MQTT-3.1.2-30]",
            )
        if self._sent_ahead is None:
            self._sent_ahead = kind

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
        if publish.qos:
            # (QoS 0 is never above the maximum: it costs nothing more.)
            if publish.qos > self._maximum_qos:
                # [MQTT-3.2.2-11] Above the Maximum QoS of the CONNACK:
                # DISCONNECT 0x9B (MQTT 5 section 3.3.1.2); 3.1.1 can only close.
                self._fail(
                    ReasonCode.QOS_NOT_SUPPORTED, f"QoS {publish.qos} is above the maximum {self._maximum_qos}"
                )
            if self.protocol_level == ProtocolVersion.MQTT_5:
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


def _without_problem_information(packet: Packet) -> Packet:
    """C{packet} without its Reason String and User Properties, if it has any."""
    properties: Properties = packet.properties  # type: ignore[union-attr]
    if properties.reason_string is None and not properties.user_property:
        return packet
    lean = replace(properties, reason_string=None, user_property=())
    return replace(packet, properties=lean)  # type: ignore[arg-type]
