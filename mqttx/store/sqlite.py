# -*- test-case-name: tests.store.test_sqlite -*-
"""
The durable L{IStore}: one SQLite database file.

Writes made during one reactor turn are handed to the writer together
(see L{mqttx.store.writer}); with C{durability: sync} their Deferreds fire
once that commit is on disk, with C{batch} at once, the writer committing
at most every C{commit_interval} seconds.

A message queued or in flight for several sessions is stored once: the
store counts the references to each L{Message} object and deletes its row
when the last one goes.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorThreads, IReactorTime
from zope.interface import implementer

from mqttx.broker.message import Message
from mqttx.broker.state import (
    Delivery,
    InflightEntry,
    SessionRecord,
    SharedDelivery,
    StoredSession,
    StoreSnapshot,
    SubscriptionEntry,
)
from mqttx.interfaces import IStore
from mqttx.mqtt._wire import decode_properties, encode_properties
from mqttx.mqtt.packet_type import PacketType
from mqttx.mqtt.properties import NO_PROPERTIES, Properties

from .schema import StoreError, connect
from .writer import GroupCommitWriter, InlineWriter, Op, Writer

__all__ = ["DURABILITIES", "SQLiteStore", "StoreError"]

#: The durability modes and SQLite's C{synchronous} setting for each.
DURABILITIES = {"sync": "FULL", "batch": "NORMAL"}

_INSERT_MESSAGE = (
    "INSERT INTO messages (id, topic, payload, qos, retain, properties, origin, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_MESSAGE = "DELETE FROM messages WHERE id = ?"
_INSERT_QUEUED = (
    "INSERT OR REPLACE INTO queued (client_id, seq, message_id, qos, retain, subscription_ids, share_group)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_QUEUED = "DELETE FROM queued WHERE client_id = ? AND seq = ?"
_PUT_INFLIGHT = (
    "INSERT OR REPLACE INTO inflight"
    " (client_id, packet_id, seq, message_id, qos, retain, subscription_ids, share_group, released)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_INFLIGHT = "DELETE FROM inflight WHERE client_id = ? AND packet_id = ?"
_ADD_QOS2 = "INSERT OR IGNORE INTO inbound_qos2 (client_id, packet_id) VALUES (?, ?)"
_DELETE_QOS2 = "DELETE FROM inbound_qos2 WHERE client_id = ? AND packet_id = ?"
_PUT_SESSION = (
    "INSERT OR REPLACE INTO sessions (client_id, protocol_level, expiry_interval, disconnected_at,"
    " subscriptions, will_topic, will_payload, will_qos, will_retain, will_properties, will_expires_at,"
    " will_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_DELETE_SESSION = tuple(
    f"DELETE FROM {table} WHERE client_id = ?" for table in ("sessions", "queued", "inflight", "inbound_qos2")
)
_PUT_RETAINED = (
    "INSERT OR REPLACE INTO retained (topic, payload, qos, properties, origin, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_DELETE_RETAINED = "DELETE FROM retained WHERE topic = ?"


def _props(properties: Properties) -> bytes:
    return encode_properties(properties, PacketType.PUBLISH)


def _unprops(data: bytes) -> Properties:
    if data == b"\x00":
        return NO_PROPERTIES
    return decode_properties(data, 0, len(data), PacketType.PUBLISH)[0]


def _ids(ids: tuple[int, ...]) -> str:
    return ",".join(map(str, ids))


def _unids(text: str) -> tuple[int, ...]:
    return tuple(int(i) for i in text.split(",")) if text else ()


def _subscriptions(entries: tuple[SubscriptionEntry, ...]) -> str:
    return json.dumps(
        [
            [e.topic_filter, e.qos, e.no_local, e.retain_as_published, e.retain_handling, e.subscription_id]
            for e in entries
        ]
    )


def _unsubscriptions(text: str) -> tuple[SubscriptionEntry, ...]:
    return tuple(SubscriptionEntry(f, q, bool(nl), bool(rap), rh, sid) for f, q, nl, rap, rh, sid in json.loads(text))


@dataclass(slots=True)
class _Ref:
    """A stored message: its row id, how many deliveries hold it, and the object."""

    row: int
    count: int
    message: Message


@dataclass(slots=True)
class _Held:
    """What one session holds: message keys (C{id(Message)}) by seq and by packet id."""

    queued: dict[int, int] = field(default_factory=dict)
    inflight: dict[int, int] = field(default_factory=dict)


@implementer(IStore)
class SQLiteStore:
    """
    An L{IStore} in a SQLite database file.

    @param path: the database file; it and its folder are created if need be.
    @param durability: C{"sync"} or C{"batch"} (see the module docstring).
    @param commit_interval: with C{batch}, the most seconds between commits.
    @param reactor: fires the Deferreds of a threaded writer, and ends
        reactor turns; C{None} commits each write at once in the calling
        thread (tests and tools).
    @raise StoreError: if the database cannot be used (see
        L{mqttx.store.schema.connect}).

    Call L{load} before writing: it tells the store which sessions and
    message rows the file holds. Message writes for a session not stored
    are ignored, as by L{mqttx.store.memory.MemoryStore}.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        durability: str = "sync",
        commit_interval: float = 1.0,
        reactor: Any = None,
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"unknown durability {durability!r}")
        self.path = Path(path)
        self._synchronous = DURABILITIES[durability]
        conn = connect(self.path, synchronous=self._synchronous)
        self._sync = durability == "sync"
        self._reactor: IReactorTime | None = reactor
        self.writer: Writer
        if reactor is None:
            self.writer = InlineWriter(conn)
        else:
            conn.close()
            threads: IReactorThreads = reactor
            self.writer = GroupCommitWriter(
                lambda: connect(self.path, synchronous=self._synchronous, check=False, check_same_thread=False),
                threads,
                0.0 if self._sync else commit_interval,
            )
        self._ops: list[Op] = []
        self._waiters: list[Deferred[None]] = []
        self._turn_scheduled = False
        self._messages: dict[int, _Ref] = {}
        self._unreferenced: set[int] = set()
        self._held: dict[str, _Held] = {}
        self._stored: set[str] = set()
        self._next_row = 1
        self._closed = False

    # Reading.

    def load(self) -> Deferred[StoreSnapshot]:
        """
        Read everything, on the calling thread (the broker's start, before it
        serves anyone), and forget messages no session holds any more.
        """
        conn = connect(self.path, synchronous=self._synchronous, check=False)
        try:
            return succeed(self._read(conn))
        finally:
            conn.close()

    def _read(self, conn: sqlite3.Connection) -> StoreSnapshot:
        self._messages.clear()
        self._held.clear()
        self._stored.clear()
        by_row: dict[int, Message] = {}
        for row, topic, payload, qos, retain, props, origin, expires_at in conn.execute(
            "SELECT id, topic, payload, qos, retain, properties, origin, expires_at FROM messages"
        ):
            message = Message(topic, payload, qos, bool(retain), _unprops(props), origin, expires_at)
            by_row[row] = message
            self._messages[id(message)] = _Ref(row, 0, message)
        self._next_row = max(by_row, default=0) + 1
        queued: dict[str, list[Delivery]] = {}
        for cid, seq, row, qos, retain, ids, group in conn.execute(
            "SELECT client_id, seq, message_id, qos, retain, subscription_ids, share_group"
            " FROM queued ORDER BY client_id, seq"
        ):
            if row not in by_row:
                # Its message row went with a failed commit: nothing to deliver.
                self._ops.append((_DELETE_QUEUED, (cid, seq)))
                continue
            delivery = self._delivery(by_row[row], seq, qos, retain, ids, group)
            queued.setdefault(cid, []).append(delivery)
            self._hold(cid).queued[seq] = id(delivery.message)
        inflight: dict[str, list[InflightEntry]] = {}
        for cid, pid, seq, row, qos, retain, ids, group, released in conn.execute(
            "SELECT client_id, packet_id, seq, message_id, qos, retain, subscription_ids, share_group,"
            " released FROM inflight ORDER BY client_id, seq"
        ):
            if row not in by_row:
                self._ops.append((_DELETE_INFLIGHT, (cid, pid)))
                continue
            delivery = self._delivery(by_row[row], seq, qos, retain, ids, group)
            inflight.setdefault(cid, []).append(InflightEntry(pid, delivery, bool(released)))
            self._hold(cid).inflight[pid] = id(delivery.message)
        qos2: dict[str, list[int]] = {}
        for cid, pid in conn.execute("SELECT client_id, packet_id FROM inbound_qos2"):
            qos2.setdefault(cid, []).append(pid)
        sessions = []
        for row in conn.execute(
            "SELECT client_id, protocol_level, expiry_interval, disconnected_at, subscriptions, will_topic,"
            " will_payload, will_qos, will_retain, will_properties, will_expires_at, will_at FROM sessions"
        ):
            record = self._record(row)
            cid = record.client_id
            self._stored.add(cid)
            sessions.append(
                StoredSession(
                    record,
                    tuple(queued.get(cid, ())),
                    tuple(inflight.get(cid, ())),
                    tuple(qos2.get(cid, ())),
                )
            )
        retained = tuple(
            Message(topic, payload, qos, True, _unprops(props), origin, expires_at)
            for topic, payload, qos, props, origin, expires_at in conn.execute(
                "SELECT topic, payload, qos, properties, origin, expires_at FROM retained"
            )
        )
        # Left by a crash between a message's last reference going and its
        # deletion? Not with one transaction per turn; kept as a safeguard.
        for key, ref in list(self._messages.items()):
            if ref.count == 0:
                del self._messages[key]
                self._ops.append((_DELETE_MESSAGE, (ref.row,)))
        if self._ops:
            self._flush()
        return StoreSnapshot(tuple(sessions), retained)

    def _delivery(self, message: Message, seq: int, qos: int, retain: int, ids: str, group: str | None) -> Delivery:
        self._messages[id(message)].count += 1
        if group is None:
            return Delivery(seq, message, qos, bool(retain), _unids(ids))
        return SharedDelivery(seq, message, qos, bool(retain), _unids(ids), group=group)

    def _record(self, row: tuple[Any, ...]) -> SessionRecord:
        (cid, level, expiry, disconnected_at, subs) = row[:5]
        (w_topic, w_payload, w_qos, w_retain, w_props, w_expires, will_at) = row[5:]
        will = None
        if w_topic is not None:
            will = Message(w_topic, w_payload, w_qos, bool(w_retain), _unprops(w_props), cid, w_expires)
        return SessionRecord(cid, level, expiry, _unsubscriptions(subs), disconnected_at, will, will_at)

    def _hold(self, client_id: str) -> _Held:
        held = self._held.get(client_id)
        if held is None:
            held = self._held[client_id] = _Held()
        return held

    # Writing.

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        self._stored.add(record.client_id)
        will = record.will
        if will is None:
            will_columns: tuple[Any, ...] = (None,) * 6
        else:
            will_columns = (
                will.topic, will.payload, will.qos, int(will.retain), _props(will.properties), will.expires_at
            )
        self._ops.append(
            (
                _PUT_SESSION,
                (
                    record.client_id,
                    record.protocol_level,
                    record.expiry_interval,
                    record.disconnected_at,
                    _subscriptions(record.subscriptions),
                    *will_columns,
                    record.will_at,
                ),
            )
        )
        return self._written()

    def delete_session(self, client_id: str) -> Deferred[None]:
        self._stored.discard(client_id)
        for statement in _DELETE_SESSION:
            self._ops.append((statement, (client_id,)))
        held = self._held.pop(client_id, None)
        if held is not None:
            for key in (*held.queued.values(), *held.inflight.values()):
                self._release(key)
        return self._written()

    def add_queued(self, client_id: str, delivery: Delivery) -> Deferred[None]:
        if client_id in self._stored:
            columns = self._place(self._hold(client_id).queued, delivery.seq, delivery)
            self._ops.append((_INSERT_QUEUED, (client_id, *columns)))
        return self._written()

    def remove_queued(self, client_id: str, seq: int) -> Deferred[None]:
        held = self._held.get(client_id)
        key = held.queued.pop(seq, None) if held is not None else None
        if key is not None:
            self._ops.append((_DELETE_QUEUED, (client_id, seq)))
            self._release(key)
        return self._written()

    def put_inflight(self, client_id: str, entry: InflightEntry) -> Deferred[None]:
        if client_id in self._stored:
            pid = entry.packet_id
            columns = self._place(self._hold(client_id).inflight, pid, entry.delivery)
            self._ops.append((_PUT_INFLIGHT, (client_id, pid, *columns, int(entry.released))))
        return self._written()

    def remove_inflight(self, client_id: str, packet_id: int) -> Deferred[None]:
        held = self._held.get(client_id)
        key = held.inflight.pop(packet_id, None) if held is not None else None
        if key is not None:
            self._ops.append((_DELETE_INFLIGHT, (client_id, packet_id)))
            self._release(key)
        return self._written()

    def add_inbound_qos2(self, client_id: str, packet_id: int) -> Deferred[None]:
        if client_id not in self._stored:
            return self._written()
        self._ops.append((_ADD_QOS2, (client_id, packet_id)))
        return self._written()

    def remove_inbound_qos2(self, client_id: str, packet_id: int) -> Deferred[None]:
        self._ops.append((_DELETE_QOS2, (client_id, packet_id)))
        return self._written()

    def put_retained(self, message: Message) -> Deferred[None]:
        self._ops.append(
            (
                _PUT_RETAINED,
                (
                    message.topic,
                    message.payload,
                    message.qos,
                    _props(message.properties),
                    message.origin,
                    message.expires_at,
                ),
            )
        )
        return self._written()

    def delete_retained(self, topic: str) -> Deferred[None]:
        self._ops.append((_DELETE_RETAINED, (topic,)))
        return self._written()

    def close(self) -> Deferred[None]:
        """Commit what is pending and close the database."""
        if self._closed:
            return succeed(None)
        self._closed = True
        self._flush()
        return self.writer.close()

    # Internals.

    def _place(self, slots: dict[int, int], slot: int, delivery: Delivery) -> tuple[Any, ...]:
        """
        Make C{slots[slot]} (a queue position or packet id) hold
        C{delivery}'s message, releasing what it held before.

        @return: the delivery's columns: seq, message row, QoS, RETAIN,
            subscription identifiers, shared subscription.
        """
        message = delivery.message
        row = self._keep(message)
        old = slots.get(slot)
        slots[slot] = id(message)
        if old is not None:
            self._release(old)
        group = delivery.group if isinstance(delivery, SharedDelivery) else None
        return (delivery.seq, row, delivery.qos, int(delivery.retain), _ids(delivery.subscription_ids), group)

    def _keep(self, message: Message) -> int:
        """Count one more reference to C{message}, storing it first if new."""
        key = id(message)
        ref = self._messages.get(key)
        if ref is None:
            row = self._next_row
            self._next_row += 1
            self._messages[key] = ref = _Ref(row, 0, message)
            self._ops.append(
                (
                    _INSERT_MESSAGE,
                    (
                        row,
                        message.topic,
                        message.payload,
                        message.qos,
                        int(message.retain),
                        _props(message.properties),
                        message.origin,
                        message.expires_at,
                    ),
                )
            )
        elif ref.count == 0:
            self._unreferenced.discard(key)
        ref.count += 1
        return ref.row

    def _release(self, key: int) -> None:
        """
        Count one reference less. The row goes when the turn ends with none
        left: a message that moves from a queue into flight (released, then
        kept again) is not deleted and written again.
        """
        ref = self._messages[key]
        ref.count -= 1
        if ref.count == 0:
            self._unreferenced.add(key)

    def _written(self) -> Deferred[None]:
        if self._closed:
            raise RuntimeError("store closed")
        reactor = self._reactor
        if reactor is None:
            d: Deferred[None] = Deferred()
            self._waiters.append(d)
            self._flush()
            return d
        if not self._turn_scheduled:
            self._turn_scheduled = True
            reactor.callLater(0, self._flush)
        if not self._sync:
            return succeed(None)
        d = Deferred()
        self._waiters.append(d)
        return d

    def _flush(self) -> None:
        """Hand the turn's writes to the writer, with the deletions they leave."""
        self._turn_scheduled = False
        ops = self._ops
        for key in self._unreferenced:
            ref = self._messages.pop(key)
            ops.append((_DELETE_MESSAGE, (ref.row,)))
        self._unreferenced.clear()
        if not ops and not self._waiters:
            return
        waiters = self._waiters
        self._ops, self._waiters = [], []
        self.writer.submit(ops, waiters)
