# -*- test-case-name: tests.broker.test_bridge -*-
"""
The broker's side of a bridge's virtual MQTT 5 client (L{BridgeLink}), and
the values it hands the bridges: L{Delivery} and L{BridgeError}. Use them
through L{mqttx.broker.bridge}, which re-exports them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from mqttx.mqtt.aliases import OutboundTopicAliases
from mqttx.mqtt.codec import Decoder
from mqttx.mqtt.connection import MAX_PACKET_SIZE
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packet_type import PacketType, ProtocolVersion
from mqttx.mqtt.packets import (
    Auth,
    ConnAck,
    Disconnect,
    Packet,
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
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode, describe

from .admission import VerifiedIdentity
from .auth import EnhancedAuthentication
from .session import SLOW_CONSUMER_BYTES, Session
from .stats import disconnected

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["BridgeError", "BridgeLink", "Delivery"]


def as_reason_code(code: int) -> ReasonCode:
    """C{code} as a L{ReasonCode}; 0x80 (unspecified error) if it is none."""
    try:
        return ReasonCode(code)
    except ValueError:
        return ReasonCode.UNSPECIFIED_ERROR


class BridgeError(Exception):
    """
    A refusal, with the MQTT 5 reason code that says why.

    @ivar reason_code: e.g. 0x87 (not authorized), 0x86 (bad user name or
        password), 0x90 (topic name invalid), 0x95 (packet too large),
        0x97 (quota exceeded), 0x88 (server unavailable).
    @ivar message: one line for the bridge's answer and logs.
    """

    def __init__(self, reason_code: int, message: str | None = None) -> None:
        self.reason_code = as_reason_code(reason_code)
        self.message = message or describe(self.reason_code) or self.reason_code.name.lower()
        super().__init__(f"0x{self.reason_code:02X} {self.message}")


@dataclass(frozen=True, slots=True)
class Delivery:
    """One message delivered to a bridge subscriber."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    #: Content type, user properties, the expiry left, ...
    properties: Properties = NO_PROPERTIES


@dataclass(slots=True)
class _Outgoing:
    """A PUBLISH waiting for the broker to read it (flow control, window)."""

    packet: Publish
    done: Deferred[None]


class BridgeLink:
    """
    The broker's side of one virtual client: a L{ClientLink} (and
    L{SessionLink}) speaking MQTT 5 in process.

    Until the consumer subscribes (gives its callback), the link is paused:
    messages for a resumed session stay queued in it. C{paused} is also set
    while the consumer asks for it (L{BridgeClient.pause}); then QoS 0 is
    still delivered up to the slow-consumer allowance, as written into a
    full transport, and QoS 1/2 wait in the session.

    @ivar ended: whether the virtual client's connection is over.
    @ivar close_code: the reason code it ended with, once ended.
    """

    log = Logger()
    protocol_level: int = ProtocolVersion.MQTT_5
    topic_aliases: OutboundTopicAliases | None = None
    authentication: EnhancedAuthentication | None = None
    identity: VerifiedIdentity | None = None

    def __init__(self, broker: Broker, listener: str, peer: str, username: str | None) -> None:
        self.broker = broker
        self.listener = listener
        self.peer = peer
        self.username = username
        self.max_packet_size = MAX_PACKET_SIZE
        self.paused = True
        self.paused_bytes = 0
        self.session: Session | None = None
        self.ended = False
        self.close_code: ReasonCode | None = None
        self.closed: Deferred[ReasonCode] = Deferred()
        self.keep_alive = 0
        self.deliver: Callable[[Delivery], None] | None = None
        self._consumer_paused = False
        self._held = False
        self._decoder = Decoder(protocol_level=ProtocolVersion.MQTT_5)
        # Frames written and not yet handed to the consumer.
        self._frames: deque[bytes] = deque()
        self.delivering = False
        self.connack: ConnAck | None = None
        self._outgoing: deque[_Outgoing] = deque()
        self._pumping = False
        # Deferreds waiting for acknowledgements, by packet identifier.
        self._publishes: dict[int, Deferred[None]] = {}
        self._subacks: dict[int, Deferred[tuple[int, ...]]] = {}
        self._unsubacks: dict[int, Deferred[None]] = {}
        self._next_pid = 1
        self._early_pubrels: list[int] = []
        self._window = broker.config.receive_maximum
        self._stats = broker.stats_for(listener)
        self._stats.connections_open += 1

    # The broker's side (ClientLink).

    def waiting(self) -> int:
        """Bytes the consumer holds, while paused: the pause threshold plus what came since."""
        return SLOW_CONSUMER_BYTES + self.paused_bytes

    def write(self, data: bytes) -> None:
        """Take encoded PUBLISH frames for the consumer."""
        if self.ended:
            return
        self._stats.bytes_sent += len(data)
        self._frames.append(data)
        if self.deliver is not None and not self.delivering:
            self.deliver_frames()

    def send(self, packet: Packet) -> None:
        """Take one packet from the broker."""
        if self.ended:
            return
        handler = _PACKET_HANDLERS.get(packet.type)
        if handler is not None:
            handler(self, packet)

    def hold_reading(self, held: bool) -> None:
        """The broker holds (or releases) this publisher: later publishes wait."""
        self._held = held
        if not held:
            self.pump()

    def set_keep_alive(self, seconds: int) -> None:
        """A Server Keep Alive: an in-process client is never silent by accident, so only kept."""
        self.keep_alive = seconds

    def challenge(self, packet: Auth) -> None:
        """Never called: a virtual client names no enhanced authentication method."""

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        """The broker ends this client (takeover, kick, shutdown, refusal, store failure)."""
        self.end(reason_code, reason_string)
        return succeed(None)

    def admitted(self, session: Session) -> None:
        """
        The broker admitted this client to C{session}: complete the QoS 2
        exchanges whose PUBREL it resent meanwhile (what it resent of
        PUBLISH waits for the consumer).
        """
        self.session = session
        early, self._early_pubrels = self._early_pubrels, []
        for pid in early:
            self.broker.pubcomp(session, PubComp(pid))

    # The consumer's side.

    def set_consumer_paused(self, paused: bool) -> None:
        """The consumer cannot take more (or can again)."""
        self._consumer_paused = paused
        self._update_paused()

    def start_delivering(self, deliver: Callable[[Delivery], None]) -> None:
        """Set (or replace) the consumer's callback; the first one unpauses the link."""
        self.deliver = deliver
        self._update_paused()

    def _update_paused(self) -> None:
        paused = self._consumer_paused or self.deliver is None or self.ended
        if paused == self.paused:
            return
        self.paused = paused
        if not paused:
            self.paused_bytes = 0
            if self._frames and not self.delivering:
                self.deliver_frames()
            session = self.session
            if session is not None and not self.ended:
                session.drain()

    def deliver_frames(self) -> None:
        """
        Hand the frames written so far to the consumer and acknowledge them,
        including those acknowledging causes to be written (iteratively: a
        long queue does not nest calls).
        """
        deliver = self.deliver
        if deliver is None:
            return
        self.delivering = True
        frames = self._frames
        broker = self.broker
        try:
            while frames and not self.ended:
                try:
                    packets = self._decoder.feed(frames.popleft())
                except MalformedPacket as e:
                    self.log.error("undecodable delivery to {client_id!r}: {e}", client_id=self._id(), e=e)
                    self.end(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
                    return
                for packet in packets:
                    if not isinstance(packet, Publish) or self.ended:
                        continue
                    try:
                        deliver(Delivery(packet.topic, packet.payload, packet.qos, packet.retain, packet.properties))
                    except Exception:
                        self.log.failure(
                            "bridge consumer of {client_id!r} failed", client_id=self._id(), event_id="bridge.error"
                        )
                        self.end(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
                        return
                    session = self.session
                    pid = packet.packet_id
                    if session is None or pid is None:
                        continue
                    if packet.qos == 1:
                        broker.puback(session, PubAck(pid))
                    else:
                        broker.pubrec(session, PubRec(pid))  # PUBREL comes back to send().
        finally:
            self.delivering = False

    def submit(self, packet: Publish) -> Deferred[None]:
        """Publish C{packet} (without its packet identifier) once the broker reads this client."""
        done: Deferred[None] = Deferred()
        self._outgoing.append(_Outgoing(packet, done))
        self.pump()
        return done

    def pump(self) -> None:
        """Hand waiting PUBLISH to the broker while it reads this client and the window allows."""
        if self._pumping:
            return
        self._pumping = True
        outgoing = self._outgoing
        broker = self.broker
        try:
            while outgoing and not self._held and not self.ended:
                head = outgoing[0]
                packet = head.packet
                if packet.qos:
                    if len(self._publishes) >= self._window:
                        break  # The Receive Maximum: wait for an acknowledgement.
                    pid = self._allocate_pid(self._publishes)
                    packet = replace(packet, packet_id=pid)
                    self._publishes[pid] = head.done
                outgoing.popleft()
                session = self.session
                assert session is not None
                self._stats.bytes_received += len(packet.topic) + len(packet.payload) + 8
                try:
                    broker.publish(session, packet)
                except Exception:
                    self.log.failure(
                        "failed handling a publish of {client_id!r}", client_id=self._id(), event_id="broker.error"
                    )
                    self.end(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)
                    break
                if not packet.qos and not head.done.called:
                    head.done.callback(None)
        finally:
            self._pumping = False

    def subscribe(self, subscriptions: tuple[Subscription, ...]) -> Deferred[tuple[int, ...]]:
        """SUBSCRIBE: fires with the SUBACK's reason codes."""
        session = self.session
        assert session is not None
        pid = self._allocate_pid(self._subacks)
        d: Deferred[tuple[int, ...]] = Deferred()
        self._subacks[pid] = d
        self.broker.subscribe(session, Subscribe(pid, subscriptions))
        return d

    def unsubscribe(self, topic_filters: tuple[str, ...]) -> Deferred[None]:
        """UNSUBSCRIBE: fires with the UNSUBACK."""
        session = self.session
        assert session is not None
        pid = self._allocate_pid(self._unsubacks)
        d: Deferred[None] = Deferred()
        self._unsubacks[pid] = d
        self.broker.unsubscribe(session, Unsubscribe(pid, topic_filters))
        return d

    def disconnect(self) -> None:
        """A normal DISCONNECT (0x00): the will is dropped, the session kept if it has an expiry."""
        session = self.session
        if session is not None and not self.ended:
            self.broker.disconnect(session, Disconnect(ReasonCode.SUCCESS))
        self.end(ReasonCode.SUCCESS)

    def end(self, reason_code: int, reason_string: str | None = None) -> None:
        """The virtual connection is over: tell the broker, fail what waits, fire L{closed}."""
        if self.ended:
            return
        self.ended = True
        code = self.close_code = as_reason_code(reason_code)
        self.paused = True
        self._frames.clear()
        self._stats.connections_open -= 1
        session, self.session = self.session, None
        if session is not None:
            disconnected(self.log, self._stats, self, session.client_id, code)
            try:
                self.broker.connection_lost(session, self)
            except Exception:
                self.log.failure("failed ending {client_id!r}", client_id=session.client_id, event_id="broker.error")
        self.broker.flow.forget(self)
        error = BridgeError(code, reason_string or (None if code else "client disconnected"))
        waiting: list[Deferred[None]] | list[Deferred[tuple[int, ...]]]
        for waiting in (
            [o.done for o in self._outgoing],
            list(self._publishes.values()),
            list(self._unsubacks.values()),
            list(self._subacks.values()),
        ):
            for d in waiting:
                if not d.called:
                    d.errback(Failure(error))
        self._outgoing.clear()
        self._publishes.clear()
        self._unsubacks.clear()
        self._subacks.clear()
        self.closed.callback(code)

    # Internals.

    def _id(self) -> str:
        return self.session.client_id if self.session is not None else "?"

    def _allocate_pid(self, used: dict[int, Deferred[None]] | dict[int, Deferred[tuple[int, ...]]]) -> int:
        pid = self._next_pid
        while pid in used:
            pid = pid + 1 if pid < 65535 else 1
        self._next_pid = pid + 1 if pid < 65535 else 1
        return pid

    def _on_connack(self, packet: ConnAck) -> None:
        self.connack = packet

    def _puback(self, packet: PubAck) -> None:
        d = self._publishes.pop(packet.packet_id, None)
        if d is not None:
            _settle(d, packet.reason_code, packet.properties)
        self.pump()

    def _pubrec(self, packet: PubRec) -> None:
        pid = packet.packet_id
        if packet.reason_code >= 0x80:
            self._puback(PubAck(pid, packet.reason_code, packet.properties))
        elif pid in self._publishes and self.session is not None:
            self.broker.pubrel(self.session, PubRel(pid))  # PUBCOMP comes back.

    def _pubcomp(self, packet: PubComp) -> None:
        self._puback(PubAck(packet.packet_id, packet.reason_code, packet.properties))

    def _pubrel(self, packet: PubRel) -> None:
        if self.session is not None:
            self.broker.pubcomp(self.session, PubComp(packet.packet_id))
        else:
            # Resent at admission, before the session is handed over.
            self._early_pubrels.append(packet.packet_id)

    def _suback(self, packet: SubAck) -> None:
        d = self._subacks.pop(packet.packet_id, None)
        if d is not None:
            d.callback(packet.reason_codes)

    def _unsuback(self, packet: UnsubAck) -> None:
        d = self._unsubacks.pop(packet.packet_id, None)
        if d is not None:
            d.callback(None)


def _settle(d: Deferred[None], code: int, properties: Properties) -> None:
    """Fire a publish's Deferred by its acknowledgement's reason code."""
    if code < 0x80:
        d.callback(None)  # 0x10 (no matching subscribers) is a success too.
    else:
        d.errback(Failure(BridgeError(code, properties.reason_string)))


_PACKET_HANDLERS: dict[PacketType, Callable[[BridgeLink, Packet], None]] = {
    PacketType.CONNACK: BridgeLink._on_connack,  # type: ignore[dict-item]
    PacketType.PUBACK: BridgeLink._puback,  # type: ignore[dict-item]
    PacketType.PUBREC: BridgeLink._pubrec,  # type: ignore[dict-item]
    PacketType.PUBREL: BridgeLink._pubrel,  # type: ignore[dict-item]
    PacketType.PUBCOMP: BridgeLink._pubcomp,  # type: ignore[dict-item]
    PacketType.SUBACK: BridgeLink._suback,  # type: ignore[dict-item]
    PacketType.UNSUBACK: BridgeLink._unsuback,  # type: ignore[dict-item]
}
