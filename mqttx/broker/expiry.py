# -*- test-case-name: tests.broker.test_broker -*-
"""
Wills and session expiry: what happens to a session once its connection is
gone, until it ends, and at its end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, Protocol

from twisted.logger import Logger

from mqttx.interfaces import IStore

from .message import Message
from .router import Router
from .session import Session
from .state import SharedDelivery, StoredSession

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime


class ExpiryHost(Protocol):
    """What L{Expiry} needs of the broker."""

    sessions: dict[str, Session]
    router: Router

    @property
    def stopping(self) -> bool:
        """Whether the broker's shutdown has begun."""

    def new_session(self, client_id: str, level: int, expiry: int) -> Session:
        """A new session, not yet in C{sessions}."""

    def route(self, message: Message) -> int:
        """Deliver a message to every matching session."""


class Expiry:
    """
    Starts, fires and cancels the will delays and session expiry of the
    broker's sessions, and ends sessions.

    @param host: the broker, whose sessions these are.
    @param clock: the time source of will delays and expiry.
    @param store: where persistent sessions are kept.
    @param hand_over: gives a message of a shared subscription that a
        session did not complete to another member (see L{Session.hand_over_shared}).
    """

    log = Logger()

    def __init__(
        self,
        host: ExpiryHost,
        *,
        clock: IReactorTime,
        store: IStore,
        hand_over: Callable[[Session, SharedDelivery], bool],
    ) -> None:
        self._host = host
        self.sessions = host.sessions
        self.router = host.router
        self.new_session = host.new_session
        self.route = host.route
        self._clock = clock
        self._store = store
        self._hand_over = hand_over

    @property
    def _stopping(self) -> bool:
        return self._host.stopping

    def restore(self, stored: StoredSession, now: float) -> Session | None:
        """Rebuild a stored session; return it if it has already expired."""
        record = stored.record
        session = self.new_session(record.client_id, record.protocol_level, record.expiry_interval)
        session.stored = True
        for entry in record.subscriptions:
            session.subscriptions[entry.topic_filter] = entry
            self.router.subscribe(record.client_id, entry)
        session.queue.extend(stored.queued)
        for inflight in stored.inflight:
            session.inflight[inflight.packet_id] = inflight
        session.inbound_qos2.update(stored.inbound_qos2)
        session.shared = any(isinstance(d, SharedDelivery) for d in session.queue) or any(
            isinstance(e.delivery, SharedDelivery) for e in session.inflight.values()
        )
        session.restore_sequence()
        # A process that died while the client was connected lost the time
        # it disconnected: count from now.
        session.disconnected_at = record.disconnected_at if record.disconnected_at is not None else now
        self.sessions[record.client_id] = session
        if record.will is not None:
            session.pending_will = record.will
            due = record.will_at if record.will_at is not None else now
            session.will_call = self._clock.callLater(max(0.0, due - now), self._fire_will, session)
        remaining = session.disconnected_at + session.expiry_interval - now
        if remaining <= 0:
            return session
        session.expiry_call = self._clock.callLater(remaining, self._expire, session)
        return None

    def detach(self, session: Session) -> None:
        """A session lost its connection: start its will delay and expiry, or end it."""
        now = self._clock.seconds()
        session.disconnected_at = now
        will = session.will
        session.will = None
        if will is not None:
            # [MQTT-3.1.3-9] The will waits for its delay, but never outlives the session.
            delay = min(session.will_delay, session.expiry_interval)
            if delay == 0 or self._stopping and not session.persistent:
                self._publish_will(will)
            else:
                session.pending_will = will
                session.will_call = self._clock.callLater(delay, self._fire_will, session)
        if session.expiry_interval == 0:
            self.end_session(session)
            return
        if not self._stopping:
            session.expiry_call = self._clock.callLater(session.expiry_interval, self._expire, session)
        if session.persistent:
            self._store.save_session(session.record())

    def _fire_will(self, session: Session) -> None:
        will = session.pending_will
        session.pending_will = None
        session.will_call = None
        if will is not None:
            self._publish_will(will)
            if session.persistent and self.sessions.get(session.client_id) is session:
                self._store.save_session(session.record())

    def _publish_will(self, will: Message) -> None:
        expiry = will.properties.message_expiry_interval
        if expiry is not None:
            will = replace(will, expires_at=self._clock.seconds() + expiry)
        self.route(will)

    def _expire(self, session: Session) -> None:
        session.expiry_call = None
        self.log.info("session {client_id!r} expired", client_id=session.client_id, event_id="session.expired")
        self.end_session(session)

    def end_session(self, session: Session) -> None:
        """End a session: drop its subscriptions and publish its pending will."""
        session.cancel_timers()
        will = session.pending_will
        session.pending_will = None
        for topic_filter in session.subscriptions:
            self.router.unsubscribe(session.client_id, topic_filter)
        session.subscriptions.clear()
        if session.shared:
            session.hand_over_shared(partial(self._hand_over, session))
        if self.sessions.get(session.client_id) is session:
            del self.sessions[session.client_id]
        if session.stored:
            session.stored = False
            self._store.delete_session(session.client_id)
        if will is not None:
            # [MQTT-3.1.3-9] Sent at the latest when the session ends.
            self._publish_will(will)
