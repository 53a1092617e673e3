# -*- test-case-name: tests.store.test_memory -*-
"""
An L{IStore} that keeps everything in this process's memory.

It survives a broker being rebuilt in the same process (tests, and the
durable stores' reference behaviour), not a restart of the process.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mqttx.broker.message import Message
from mqttx.broker.state import (
    Delivery,
    InflightEntry,
    SessionRecord,
    StoredSession,
    StoreSnapshot,
)
from mqttx.interfaces import IStore


@dataclass(slots=True)
class _Session:
    record: SessionRecord
    queued: dict[int, Delivery] = field(default_factory=dict)
    inflight: dict[int, InflightEntry] = field(default_factory=dict)
    inbound_qos2: dict[int, None] = field(default_factory=dict)



def _done() -> Deferred[None]:
    return succeed(None)


@implementer(IStore)
class MemoryStore:
    """An in-memory L{IStore}; every write has happened when its Deferred fires, at once."""

    def __init__(self) -> None:
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, Message] = {}

    def load(self) -> Deferred[StoreSnapshot]:
        return succeed(
            StoreSnapshot(
                sessions=tuple(
                    StoredSession(
                        record=s.record,
                        queued=tuple(s.queued[k] for k in sorted(s.queued)),
                        inflight=tuple(s.inflight.values()),
                        inbound_qos2=tuple(s.inbound_qos2),
                    )
                    for s in self._sessions.values()
                ),
                retained=tuple(self._retained.values()),
            )
        )

    def save_session(self, record: SessionRecord) -> Deferred[None]:
        session = self._sessions.get(record.client_id)
        if session is None:
            self._sessions[record.client_id] = _Session(record)
        else:
            session.record = record
        return _done()

    def delete_session(self, client_id: str) -> Deferred[None]:
        self._sessions.pop(client_id, None)
        return _done()

    def add_queued(self, client_id: str, delivery: Delivery) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.queued[delivery.seq] = delivery
        return _done()

    def remove_queued(self, client_id: str, seq: int) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.queued.pop(seq, None)
        return _done()

    def put_inflight(self, client_id: str, entry: InflightEntry) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.inflight[entry.packet_id] = entry
        return _done()

    def remove_inflight(self, client_id: str, packet_id: int) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.inflight.pop(packet_id, None)
        return _done()

    def add_inbound_qos2(self, client_id: str, packet_id: int) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.inbound_qos2[packet_id] = None
        return _done()

    def remove_inbound_qos2(self, client_id: str, packet_id: int) -> Deferred[None]:
        session = self._sessions.get(client_id)
        if session is not None:
            session.inbound_qos2.pop(packet_id, None)
        return _done()

    def put_retained(self, message: Message) -> Deferred[None]:
        self._retained[message.topic] = message
        return _done()

    def delete_retained(self, topic: str) -> Deferred[None]:
        self._retained.pop(topic, None)
        return _done()

    def close(self) -> Deferred[None]:
        return _done()
