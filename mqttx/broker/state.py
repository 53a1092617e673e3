# -*- test-case-name: tests.broker.test_session -*-
"""
Value records of session state: what a session holds and what a store keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from .message import Message


@dataclass(frozen=True, slots=True)
class SubscriptionEntry:
    """One subscription of a session, with its MQTT 5 options."""

    topic_filter: str
    qos: int
    no_local: bool = False
    retain_as_published: bool = False
    retain_handling: int = 0
    subscription_id: int | None = None


# Delivery records are created for every QoS 1/2 delivery: not frozen, so
# that __init__ is plain attribute stores (see Message). Never modified.
@dataclass(slots=True)
class Delivery:
    """
    A message on its way to one session, at the QoS and RETAIN flag that
    session gets it with.

    @ivar seq: the session's sequence number for it, increasing in queue order.
    """

    seq: int
    message: Message
    qos: int
    retain: bool
    subscription_ids: tuple[int, ...] = ()


@dataclass(slots=True, kw_only=True)
class SharedDelivery(Delivery):
    """
    A L{Delivery} of a message of a shared subscription.

    (A subclass rather than a field of L{Delivery}, so that deliveries of
    non-shared subscriptions, the hot path, do not pay for one more field.)

    @ivar group: that subscription's full filter, C{$share/{group}/{filter}},
        so that another member of the group can be given the message if
        this session's connection ends before it is acknowledged.
    """

    group: str


@dataclass(slots=True)
class InflightEntry:
    """
    An outbound QoS 1/2 PUBLISH sent and not yet completed.

    @ivar released: for QoS 2, whether PUBREC arrived and PUBREL was sent.
    """

    packet_id: int
    delivery: Delivery
    released: bool = False


@dataclass(frozen=True, slots=True)
class SessionRecord:
    """
    The durable part of a session.

    @ivar expiry_interval: seconds the session outlives its connection;
        already capped by the broker's limit.
    @ivar disconnected_at: clock time the last connection ended, or C{None}
        while connected.
    @ivar will: a will still to be published (delayed), or C{None}.
    @ivar will_at: clock time that will is due.
    """

    client_id: str
    protocol_level: int
    expiry_interval: int
    subscriptions: tuple[SubscriptionEntry, ...] = ()
    disconnected_at: float | None = None
    will: Message | None = None
    will_at: float | None = None


@dataclass(frozen=True, slots=True)
class StoredSession:
    """A session as loaded from a store: its record and message state, in order."""

    record: SessionRecord
    queued: tuple[Delivery, ...] = ()
    inflight: tuple[InflightEntry, ...] = ()
    inbound_qos2: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class StoreSnapshot:
    """Everything a store holds, as the broker reads it at start."""

    sessions: tuple[StoredSession, ...] = ()
    retained: tuple[Message, ...] = ()
