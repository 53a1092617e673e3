# -*- test-case-name: tests.broker.test_flow -*-
"""
Inbound flow control: publishers are read only as fast as the subscribers
they feed drain.

A subscriber is congested while its transport is paused (its buffer full)
or messages wait in its session's queue (its window full). A publisher
whose message reaches a congested subscriber is held: its connection is not
read until every subscriber holding it is clear again, so TCP
pushes back on the publisher instead of the broker queueing, dropping or
acknowledging what it cannot deliver. A subscriber that stays congested for
C{timeout} seconds is a slow consumer: it lets its publishers go and holds
none until it resumes, so it never stalls others for longer (DESIGN.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

if TYPE_CHECKING:
    from .session import SessionLink


class FlowControl:
    """
    Who holds whom.

    @ivar congested: the paused links that the message being routed reached,
        appended by L{Session.deliver}; L{hold} consumes them.
    """

    log = Logger()

    def __init__(self, clock: IReactorTime, timeout: float) -> None:
        self.congested: list[SessionLink] = []
        self._clock = clock
        self._timeout = timeout
        # Congested subscriber -> the publishers it holds.
        self._held: dict[SessionLink, set[SessionLink]] = {}
        # Publisher -> how many subscribers hold it.
        self._holds: dict[SessionLink, int] = {}
        self._timers: dict[SessionLink, IDelayedCall] = {}
        # Subscribers that stayed congested past the timeout.
        self._slow: set[SessionLink] = set()

    def hold(self, publisher: SessionLink) -> None:
        """Hold C{publisher} for every subscriber in L{congested}, then clear it."""
        congested = self.congested
        if self._timeout > 0:
            for subscriber in congested:
                if subscriber is not publisher and subscriber not in self._slow:
                    self._hold(subscriber, publisher)
        congested.clear()

    def _hold(self, subscriber: SessionLink, publisher: SessionLink) -> None:
        held = self._held.get(subscriber)
        if held is None:
            held = self._held[subscriber] = set()
            self._timers[subscriber] = self._clock.callLater(self._timeout, self._give_up, subscriber)
        if publisher in held:
            return
        held.add(publisher)
        count = self._holds.get(publisher, 0)
        self._holds[publisher] = count + 1
        if count == 0:
            publisher.hold_reading(True)

    def resumed(self, subscriber: SessionLink) -> None:
        """C{subscriber} is clear again (see L{Session.drain}): it holds nobody."""
        self._slow.discard(subscriber)
        if subscriber in self._held:
            self._timers.pop(subscriber).cancel()
            self._release(subscriber)

    def forget(self, link: SessionLink) -> None:
        """C{link}'s connection is gone: it neither holds nor is held."""
        self.resumed(link)
        if self._holds.pop(link, None) is not None:
            for held in self._held.values():
                held.discard(link)

    def _give_up(self, subscriber: SessionLink) -> None:
        del self._timers[subscriber]
        self._slow.add(subscriber)
        self.log.info(
            "a slow consumer ({peer}) no longer holds back {count} publisher(s)",
            peer=getattr(subscriber, "peer", "?"),
            count=len(self._held[subscriber]),
            event_id="flow.slow_consumer",
        )
        self._release(subscriber)

    def _release(self, subscriber: SessionLink) -> None:
        holds = self._holds
        for publisher in self._held.pop(subscriber):
            count = holds.pop(publisher) - 1
            if count:
                holds[publisher] = count
            else:
                publisher.hold_reading(False)
