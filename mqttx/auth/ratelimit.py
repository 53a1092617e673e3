# -*- test-case-name: tests.auth.test_ratelimit -*-
"""
Rate limiting of failed authentications per source address.

After C{max_failures} failed CONNECTs (bad user name or password) from one
address within C{window} seconds, further CONNECTs from it are refused at
once, without checking their credentials (so without spending a password
hash on them), until the oldest of those failures is C{window} seconds old.
The broker answers them with CONNACK 0x9F (connection rate exceeded; a
3.1.1 client gets 0x03, server unavailable).
"""

from __future__ import annotations

from collections import OrderedDict, deque

from twisted.internet.interfaces import IReactorTime

__all__ = ["AuthFailureLimiter", "source_host"]


def source_host(peer: str) -> str:
    """
    The address part of a peer as the transports describe it (C{host:port},
    IPv6 hosts included), or the whole description if it has no port.
    """
    host, colon, port = peer.rpartition(":")
    return host if colon and port.isdigit() else peer


class AuthFailureLimiter:
    """
    Counts failed authentications per source address over a sliding window.

    Memory is bounded: an address is forgotten once its last failure is
    older than the window, and at most C{max_addresses} are remembered (the
    one that failed longest ago goes first).

    @param clock: the time source.
    @param max_failures: failures allowed per address within C{window};
        0 turns the limit off.
    @param window: the window, in seconds.
    @param max_addresses: the most addresses remembered.
    """

    def __init__(
        self,
        clock: IReactorTime,
        max_failures: int,
        window: float = 60.0,
        max_addresses: int = 100_000,
    ) -> None:
        self._clock = clock
        self.max_failures = max_failures
        self.window = window
        self._max_addresses = max_addresses
        # address -> times of its recent failures; ordered by last failure.
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()

    def _expire(self, now: float) -> None:
        failures = self._failures
        while failures:
            address, times = next(iter(failures.items()))
            if now - times[-1] < self.window:
                break
            del failures[address]

    def blocked(self, host: str) -> bool:
        """Whether CONNECTs from C{host} are to be refused without a check."""
        if not self.max_failures:
            return False
        now = self._clock.seconds()
        self._expire(now)
        times = self._failures.get(host)
        return (
            times is not None and len(times) >= self.max_failures and now - times[0] < self.window
        )

    def failed(self, host: str) -> None:
        """Record a failed authentication from C{host}."""
        if not self.max_failures:
            return
        now = self._clock.seconds()
        self._expire(now)
        times = self._failures.pop(host, None)
        if times is None:
            times = deque(maxlen=self.max_failures)
            if len(self._failures) >= self._max_addresses:
                self._failures.popitem(last=False)
        times.append(now)
        self._failures[host] = times

    def __len__(self) -> int:
        """The number of addresses remembered."""
        return len(self._failures)
