# -*- test-case-name: tests.transports.test_limits -*-
"""
Admission limits applied as connections are accepted, before a protocol
object or any buffer exists for them: C{max_connections} (global and per
listener) and C{max_connection_rate} per source address.

A refused connection is closed at once (the listener's factory returns
C{None}, so Twisted closes the socket without reading from it): a client
over the limit has sent nothing yet, and answering it with a CONNACK would
mean reading and parsing its CONNECT, that is spending the memory and time
the limit is there to save. Refusals are counted and logged at most once
per L{LOG_INTERVAL} seconds per reason, with how many there were.
"""

from __future__ import annotations

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mqttx.config import MQTTConfig

__all__ = ["LOG_INTERVAL", "ConnectionLimits"]

#: The least seconds between two log lines about refused connections.
LOG_INTERVAL = 10.0

#: Source addresses tracked for the connection rate before full buckets
#: (addresses that have not connected for a while) are forgotten.
_PRUNE_AT = 4096


class ConnectionLimits:
    """
    Counts the open connections of one broker and decides whether a new
    one may be accepted.

    @ivar open: connections open now, over every listener.
    @ivar refused: refused connections so far, by reason: C{"connections"}
        (C{max_connections}), C{"listener"} (a listener's own limit),
        C{"rate"} (C{max_connection_rate}).
    """

    log = Logger()

    def __init__(self, config: MQTTConfig, clock: IReactorTime) -> None:
        self._max = config.max_connections
        self._rate = config.max_connection_rate
        self._burst = float(config.connection_burst)
        self._clock = clock
        self.open = 0
        self._by_listener: dict[str, int] = {}
        #: Per source address: (tokens, when they were counted).
        self._buckets: dict[str, tuple[float, float]] = {}
        self.refused: dict[str, int] = {"connections": 0, "listener": 0, "rate": 0}
        self._unlogged: dict[str, int] = {}
        self._logged_at: dict[str, float] = {}

    def admit(self, listener: str, listener_max: int, host: str | None) -> bool:
        """
        Whether a connection just accepted on C{listener} from C{host} may
        go on. If it may, it is counted as open until L{closed}.

        @param listener_max: the listener's own limit; 0 for none.
        @param host: the source address, or C{None} when it has none (Unix
            sockets), which the rate limit does not apply to.
        """
        if self._max and self.open >= self._max:
            return self._refuse("connections", listener, host)
        count = self._by_listener.get(listener, 0)
        if listener_max and count >= listener_max:
            return self._refuse("listener", listener, host)
        if self._rate and host is not None and not self._take(host):
            return self._refuse("rate", listener, host)
        self.open += 1
        self._by_listener[listener] = count + 1
        return True

    def closed(self, listener: str) -> None:
        """An admitted connection on C{listener} has ended."""
        self.open -= 1
        self._by_listener[listener] -= 1

    def _take(self, host: str) -> bool:
        now = self._clock.seconds()
        buckets = self._buckets
        tokens, then = buckets.get(host, (self._burst, now))
        tokens = min(self._burst, tokens + (now - then) * self._rate)
        if tokens < 1.0:
            buckets[host] = (tokens, now)
            return False
        buckets[host] = (tokens - 1.0, now)
        if len(buckets) > _PRUNE_AT:
            self._prune(now)
        return True

    def _prune(self, now: float) -> None:
        """Forget the addresses whose bucket has filled up again."""
        rate, burst = self._rate, self._burst
        self._buckets = {
            host: (tokens, then)
            for host, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * rate < burst
        }

    def _refuse(self, reason: str, listener: str, host: str | None) -> bool:
        self.refused[reason] += 1
        now = self._clock.seconds()
        last = self._logged_at.get(reason)
        if last is not None and now - last < LOG_INTERVAL:
            self._unlogged[reason] = self._unlogged.get(reason, 0) + 1
            return False
        self._logged_at[reason] = now
        self.log.warn(
            "connection from {host} on {listener} refused ({reason} limit); "
            "{more} more refused for it since the last report",
            host=host,
            listener=listener,
            reason=reason,
            more=self._unlogged.pop(reason, 0),
            event_id="connect.limited",
        )
        return False
