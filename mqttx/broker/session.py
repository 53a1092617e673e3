# -*- test-case-name: tests.broker.test_broker -*-
"""
A session: the state the broker keeps for one client identifier, online or
not, and the outbound half of the QoS protocol.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall

from mqttx.mqtt.aliases import OutboundTopicAliases
from mqttx.mqtt.codec import encode, encode_publish_frame, publish_frame
from mqttx.mqtt.packet_type import ProtocolVersion
from mqttx.mqtt.packets import Packet, Publish, PubRel
from mqttx.mqtt.properties import NO_PROPERTIES, Properties

from .message import Message
from .state import Delivery, InflightEntry, SessionRecord, SharedDelivery, SubscriptionEntry

if TYPE_CHECKING:
    from mqttx.interfaces import IClientAccess, IStore

    from .flow import FlowControl


#: Bytes waiting in a client's transport before it pauses the connection
#: (one packet of the default maximum size fits), and the QoS 0 allowance
#: beyond that before the client is a slow consumer (DESIGN.md).
SLOW_CONSUMER_BYTES = 1 << 20
#: Bytes waiting in a paused client's transport from which it holds back
#: the publishers feeding it (L{mqttx.broker.flow}): more than a burst of
#: a reader that keeps up, so pauses that end within a turn or two cost
#: publishers nothing.
FLOW_CONTROL_BYTES = 256 << 10


class SessionLink(Protocol):
    """What a session needs of the connection it is attached to."""

    protocol_level: int
    #: The largest packet the client accepts.
    max_packet_size: int
    #: True while the client's transport cannot take more bytes.
    paused: bool
    #: QoS 0 bytes written since the transport paused; see L{Session.deliver}.
    paused_bytes: int

    def waiting(self) -> int:
        """Bytes written to the client and not yet sent, while paused."""
    #: The topic aliases of this connection's outbound PUBLISH, or C{None}
    #: if the client takes none (then frames are shared across sessions).
    topic_aliases: OutboundTopicAliases | None

    def write(self, data: bytes) -> None:
        """Write encoded packets to the client."""

    def send(self, packet: Packet) -> None:
        """Encode and write one packet."""

    def hold_reading(self, held: bool) -> None:
        """Stop (or resume) reading the client: inbound flow control."""

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        """Close the connection (MQTT 5: with DISCONNECT); fires once it is gone."""


#: Per-publish cache of encoded PUBLISH frames, by delivery shape:
#: (protocol level, QoS, RETAIN, subscription identifiers), and for clients
#: that take topic aliases also (alias, whether the topic name is sent).
FrameCache = dict[
    tuple[int, int, bool, tuple[int, ...]] | tuple[int, int, bool, tuple[int, ...], int, bool],
    tuple[bytes, int],
]

_PID_BYTES = [i.to_bytes(2, "big") for i in range(65536)]


@dataclass(frozen=True, slots=True)
class Attachment:
    """
    Who connected to a session: on which listener, from where, as which
    user, and when (clock time).
    """

    listener: str
    peer: str
    username: str | None
    at: float


class PendingAck:
    """An acknowledgement waiting for C{waiting} store writes to be done."""

    __slots__ = ("ack", "failed", "link", "waiting")

    def __init__(self, ack: Packet, link: SessionLink, waiting: int) -> None:
        self.ack = ack
        self.link = link
        self.waiting = waiting
        self.failed = False


class Counters:
    """
    Plain counters for the metrics collector, read at scrape time.

    C{sent_qos0..2} count PUBLISH sent to clients by QoS (first sends, not
    resends), C{sent_bytes_qos0..2} their size on the wire.
    """

    __slots__ = (
        "dropped_qos0",
        "dropped_queue_full",
        "dropped_too_large",
        "dropped_expired",
        "sent_qos0",
        "sent_qos1",
        "sent_qos2",
        "sent_bytes_qos0",
        "sent_bytes_qos1",
        "sent_bytes_qos2",
    )

    def __init__(self) -> None:
        self.sent_qos0 = self.sent_qos1 = self.sent_qos2 = 0
        self.sent_bytes_qos0 = self.sent_bytes_qos1 = self.sent_bytes_qos2 = 0
        self.dropped_qos0 = 0
        self.dropped_queue_full = 0
        self.dropped_too_large = 0
        self.dropped_expired = 0

    @property
    def delivered(self) -> int:
        """PUBLISH sent to clients, every QoS."""
        return self.sent_qos0 + self.sent_qos1 + self.sent_qos2


class Session:
    """
    One client's session.

    Outbound QoS 1/2 messages go out while fewer than C{send_quota} are in
    flight (the client's Receive Maximum, or C{max_inflight} for 3.1.1);
    others wait in a queue bounded by C{max_queued}, in order. While offline,
    QoS 0 messages are dropped and QoS 1/2 queued; while the client's
    transport is paused, QoS 1/2 are queued and QoS 0 written up to the
    slow-consumer allowance. A link with a full transport or a queue is
    congested: the publisher of the message is held until L{drain} finds it
    clear (L{mqttx.broker.flow}).

    @ivar persistent: whether the session outlives its connection (expiry
        interval > 0); only persistent sessions are written to the store.
    """

    def __init__(
        self,
        client_id: str,
        protocol_level: int,
        expiry_interval: int,
        *,
        store: IStore,
        counters: Counters,
        max_queued: int,
        clock_seconds: Callable[[], float],
        writes: list[Deferred[None]],
        flow: FlowControl,
    ) -> None:
        self.client_id = client_id
        self.protocol_level = protocol_level
        self.expiry_interval = expiry_interval
        self.subscriptions: dict[str, SubscriptionEntry] = {}
        self.queue: deque[Delivery] = deque()
        self.inflight: dict[int, InflightEntry] = {}
        self.inbound_qos2: set[int] = set()
        self.link: SessionLink | None = None
        self.send_quota = 65535
        self.will: Message | None = None
        self.will_delay = 0
        self.pending_will: Message | None = None
        self.will_call: IDelayedCall | None = None
        self.expiry_call: IDelayedCall | None = None
        self.disconnected_at: float | None = None
        #: Whether the store holds a record of this session.
        self.stored = False
        #: PUBACK/PUBREC waiting for store writes, in arrival order.
        self.acks: deque[PendingAck] = deque()
        #: Whether messages of shared subscriptions were given to it, which
        #: may have to move to another member when its connection ends.
        self.shared = False
        #: What the client may do with topics, while an authorizer is set
        #: (L{mqttx.interfaces.IAuthorizer}); set at each CONNECT. C{None}
        #: without an authorizer, and for a session restored from the
        #: store until its client connects again.
        self.access: IClientAccess | None = None
        #: Who last connected to it, for the admin API; not stored: C{None}
        #: for a session restored from the store until its client connects
        #: again. (One attribute, not four: CPython keeps the attributes of
        #: an instance with at most 30 of them in a fast inline layout, and
        #: every delivery reads a session's.)
        self.attachment: Attachment | None = None
        self._store = store
        self._writes = writes
        self._flow = flow
        self._counters = counters
        self._max_queued = max_queued
        self._seconds = clock_seconds
        self._next_pid = 1
        self._seq = 0

    @property
    def persistent(self) -> bool:
        """Whether this session outlives its connection."""
        return self.expiry_interval > 0

    @property
    def username(self) -> str | None:
        """The user name of the client that last connected to it, if known."""
        attachment = self.attachment
        return None if attachment is None else attachment.username

    def attached(self, listener: str, peer: str, username: str | None) -> None:
        """A connection took this session: remember who and when (L{attachment})."""
        self.attachment = Attachment(listener, peer, username, self._seconds())

    def cancel_timers(self) -> None:
        """Stop the pending will and expiry timers."""
        for call in (self.will_call, self.expiry_call):
            if call is not None and call.active():
                call.cancel()
        self.will_call = self.expiry_call = None

    def restore_sequence(self) -> None:
        """After loading from a store, continue sequence numbers past the loaded ones."""
        seqs = [d.seq for d in self.queue] + [e.delivery.seq for e in self.inflight.values()]
        self._seq = max(seqs, default=0)

    def record(self) -> SessionRecord:
        """The durable part of this session, for the store."""
        will_at = None
        if self.pending_will is not None and self.will_call is not None:
            will_at = self.will_call.getTime()
        return SessionRecord(
            client_id=self.client_id,
            protocol_level=self.protocol_level,
            expiry_interval=self.expiry_interval,
            subscriptions=tuple(self.subscriptions.values()),
            disconnected_at=self.disconnected_at,
            will=self.pending_will,
            will_at=will_at,
        )

    # Delivery: the hot path.

    def deliver(
        self,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        frames: FrameCache,
        group: str | None = None,
    ) -> None:
        """
        Send, queue or drop one message for this session.

        @param qos: the delivery QoS, already min(published, granted).
        @param frames: encoded frames shared by every session that gets this
            message in the same shape.
        @param group: the full filter of the shared subscription it comes
            from, if any (see L{SharedDelivery}).
        """
        link = self.link
        if qos == 0:
            if link is None:
                self._counters.dropped_qos0 += 1
                return
            frame = self._frame(link, message, 0, retain, sub_ids, frames)
            if frame is not None:
                data = frame[0]
                if link.paused:
                    # A paused transport holds a megabyte already; the client
                    # is a slow consumer once it would hold two, and more
                    # than a megabyte plus eight messages of this size: then
                    # QoS 0 is dropped. (The second bound keeps large
                    # messages to a reader that keeps up from being dropped.)
                    size = len(data)
                    waiting = link.waiting() + size
                    if waiting > FLOW_CONTROL_BYTES:
                        self._flow.congested.append(link)
                    if waiting > 2 * SLOW_CONSUMER_BYTES and waiting > SLOW_CONSUMER_BYTES + 8 * size:
                        self._counters.dropped_qos0 += 1
                        return
                    link.paused_bytes += size
                link.write(data)
                counters = self._counters
                counters.sent_qos0 += 1
                counters.sent_bytes_qos0 += len(data)
            return
        self._seq += 1
        if group is None:
            delivery = Delivery(self._seq, message, qos, retain, sub_ids)
        else:
            delivery = SharedDelivery(self._seq, message, qos, retain, sub_ids, group=group)
        if link is not None and not link.paused and not self.queue and len(self.inflight) < self.send_quota:
            self._send_inflight(link, delivery, frames)
            return
        if link is not None:
            # Queued behind a full window or a full transport.
            self._flow.congested.append(link)
        if len(self.queue) >= self._max_queued:
            self._counters.dropped_queue_full += 1
            return
        self.queue.append(delivery)
        if self.persistent:
            self._writes.append(self._store.add_queued(self.client_id, delivery))

    def _frame(
        self,
        link: SessionLink,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        frames: FrameCache,
    ) -> tuple[bytes, int] | None:
        if link.topic_aliases is not None:
            return self._aliased_frame(link, link.topic_aliases, message, qos, retain, sub_ids, frames, False)
        level = link.protocol_level
        key = (level, qos, retain, sub_ids)
        frame = frames.get(key)
        if frame is None:
            frame = frames[key] = publish_frame(
                message.topic,
                message.payload,
                qos,
                retain,
                False,
                NO_PROPERTIES if level != 5 else self._properties(level, message, sub_ids),
                level,
            )
        if len(frame[0]) > link.max_packet_size:
            # [MQTT-3.3.4-7] Not sent, and handled as if it had been.
            self._counters.dropped_too_large += 1
            return None
        return frame

    def _aliased_frame(
        self,
        link: SessionLink,
        aliases: OutboundTopicAliases,
        message: Message,
        qos: int,
        retain: bool,
        sub_ids: tuple[int, ...],
        frames: FrameCache,
        dup: bool,
    ) -> tuple[bytes, int] | None:
        """
        L{_frame} for a client that takes topic aliases (MQTT 5 section
        3.3.2.3.4): a topic it already has an alias for goes out as that
        alias and an empty topic name; a new one with its name and the
        alias it takes from now on, the least recently used one once all
        are in use. Frames are still shared with other sessions whose
        client gets the same alias the same way.
        """
        topic = message.topic
        alias = aliases.find(topic)
        new = not alias
        if new:
            alias = aliases.candidate()
        key = (ProtocolVersion.MQTT_5, qos, retain, sub_ids, alias, new)
        frame = frames.get(key)
        if frame is None:
            props = replace(self._properties(ProtocolVersion.MQTT_5, message, sub_ids), topic_alias=alias)
            frame = frames[key] = encode_publish_frame(
                Publish(topic if new else "", message.payload, qos, retain, dup, 1 if qos else None, props),
                ProtocolVersion.MQTT_5,
            )
        if len(frame[0]) > link.max_packet_size:
            # [MQTT-3.1.2-25] Not sent, and handled as if it had been; the
            # client was not told the alias, so it is not taken.
            self._counters.dropped_too_large += 1
            return None
        if new:
            aliases.bind(topic, alias)
        return frame

    def _properties(self, level: int, message: Message, sub_ids: tuple[int, ...]) -> Properties:
        if level != ProtocolVersion.MQTT_5:
            return NO_PROPERTIES
        props = message.properties
        if message.expires_at is not None:
            # [MQTT-3.3.2-6] Forward the time the message has left.
            remaining = max(0, math.ceil(message.expires_at - self._seconds()))
            props = replace(props, message_expiry_interval=remaining)
        if sub_ids:
            props = replace(props, subscription_identifier=sub_ids)
        return props

    def _allocate_pid(self) -> int:
        pid = self._next_pid
        inflight = self.inflight
        while pid in inflight:
            pid = pid + 1 if pid < 65535 else 1
        self._next_pid = pid + 1 if pid < 65535 else 1
        return pid

    def _send_inflight(self, link: SessionLink, delivery: Delivery, frames: FrameCache) -> bool:
        message = delivery.message
        frame = self._frame(link, message, delivery.qos, delivery.retain, delivery.subscription_ids, frames)
        if frame is None:
            return False
        pid = self._allocate_pid()
        entry = InflightEntry(pid, delivery)
        self.inflight[pid] = entry
        if self.persistent:
            self._writes.append(self._store.put_inflight(self.client_id, entry))
        data, offset = frame
        link.write(data[:offset] + _PID_BYTES[pid] + data[offset + 2 :])
        counters = self._counters
        if delivery.qos == 1:
            counters.sent_qos1 += 1
            counters.sent_bytes_qos1 += len(data)
        else:
            counters.sent_qos2 += 1
            counters.sent_bytes_qos2 += len(data)
        return True

    def drain(self) -> None:
        """Send queued messages while the link is writable and the quota allows."""
        link = self.link
        queue = self.queue
        now = self._seconds()
        while queue and link is not None and not link.paused and len(self.inflight) < self.send_quota:
            delivery = queue.popleft()
            if self.persistent:
                self._writes.append(self._store.remove_queued(self.client_id, delivery.seq))
            expires_at = delivery.message.expires_at
            if expires_at is not None and expires_at <= now:
                self._counters.dropped_expired += 1
                continue
            self._send_inflight(link, delivery, {})
            link = self.link
        if link is not None and not queue and not link.paused:
            self._flow.resumed(link)

    # Outbound acknowledgements.

    def puback(self, packet_id: int) -> bool:
        """PUBACK arrived: a QoS 1 delivery is complete. @return: whether it was known."""
        entry = self.inflight.get(packet_id)
        if entry is None or entry.delivery.qos != 1:
            return False
        self._complete(packet_id)
        return True

    def pubrec(self, packet_id: int, reason_code: int) -> bool:
        """
        PUBREC arrived for a QoS 2 delivery: answer PUBREL (unless the client
        refused the message with a reason code >= 0x80, which ends it).

        @return: whether the packet identifier was known.
        """
        entry = self.inflight.get(packet_id)
        if entry is None or entry.delivery.qos != 2:
            return False
        if reason_code >= 0x80:
            self._complete(packet_id)
            return True
        if not entry.released:
            entry = replace(entry, released=True)
            self.inflight[packet_id] = entry
            if self.persistent:
                self._writes.append(self._store.put_inflight(self.client_id, entry))
        if self.link is not None:
            self.link.send(PubRel(packet_id))
        return True

    def pubcomp(self, packet_id: int) -> bool:
        """PUBCOMP arrived: a QoS 2 delivery is complete. @return: whether it was known."""
        entry = self.inflight.get(packet_id)
        if entry is None or not entry.released:
            return False
        self._complete(packet_id)
        return True

    def _complete(self, packet_id: int) -> None:
        del self.inflight[packet_id]
        if self.persistent:
            self._writes.append(self._store.remove_inflight(self.client_id, packet_id))
        if self.queue:
            self.drain()

    def resend_inflight(self) -> None:
        """
        On resumption, resend unacknowledged PUBLISH with DUP=1 and PUBREL for
        released QoS 2 messages, in their original order ([MQTT-4.4.0-1],
        [MQTT-4.6.0-1]).
        """
        link = self.link
        assert link is not None
        level = link.protocol_level
        now = self._seconds()
        for pid, entry in list(self.inflight.items()):
            if entry.released:
                link.send(PubRel(pid))
                continue
            d = entry.delivery
            message = d.message
            if message.expires_at is not None and message.expires_at <= now:
                self._counters.dropped_expired += 1
                del self.inflight[pid]
                if self.persistent:
                    self._writes.append(self._store.remove_inflight(self.client_id, pid))
                continue
            aliases = link.topic_aliases
            if aliases is not None:
                # Against this connection's topic aliases: the client forgot
                # those of the connection the PUBLISH was first sent on
                # [MQTT-3.3.2-7].
                frame = self._aliased_frame(
                    link, aliases, message, d.qos, d.retain, d.subscription_ids, {}, True
                )
                data = b"" if frame is None else frame[0][: frame[1]] + _PID_BYTES[pid] + frame[0][frame[1] + 2 :]
            else:
                data = encode(
                    Publish(
                        message.topic, message.payload, d.qos, d.retain, True, pid,
                        self._properties(level, message, d.subscription_ids),
                    ),
                    level,
                )
                if len(data) > link.max_packet_size:
                    self._counters.dropped_too_large += 1
                    data = b""
            if data:
                link.write(data)
            else:
                # Dropped without draining the queue, which would send newer
                # messages ahead of the older in-flight ones still to resend.
                del self.inflight[pid]
                if self.persistent:
                    self._writes.append(self._store.remove_inflight(self.client_id, pid))

    def hand_over_shared(self, give: Callable[[SharedDelivery], bool]) -> None:
        """
        Offer the messages of shared subscriptions that this session has not
        completed to C{give}, oldest first; those it takes (returning true)
        leave this session. In flight QoS 1 messages and queued ones are
        offered; a QoS 2 message already sent stays, to be completed with
        this session or not at all ([MQTT-4.8.2-4], [MQTT-4.8.2-5]).
        """
        persistent = self.persistent
        kept = False
        for pid, entry in list(self.inflight.items()):
            delivery = entry.delivery
            if not isinstance(delivery, SharedDelivery):
                continue
            if delivery.qos == 2 or not give(delivery):
                kept = True
                continue
            del self.inflight[pid]
            if persistent:
                self._writes.append(self._store.remove_inflight(self.client_id, pid))
        queue = self.queue
        if queue:
            remaining = []
            for delivery in queue:
                if isinstance(delivery, SharedDelivery):
                    if give(delivery):
                        if persistent:
                            self._writes.append(self._store.remove_queued(self.client_id, delivery.seq))
                        continue
                    kept = True
                remaining.append(delivery)
            if len(remaining) != len(queue):
                queue.clear()
                queue.extend(remaining)
        self.shared = kept
