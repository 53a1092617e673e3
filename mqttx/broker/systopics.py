# -*- test-case-name: tests.broker.test_systopics -*-
"""
The C{$SYS} topics: the broker's figures, published retained every
C{sys_interval} seconds under the names Mosquitto uses, so dashboards and
scripts written for it work unchanged.

They go through the broker's normal routing (L{Broker.route}), as any
message does: subscribers get them live, a later subscription to
C{$SYS/#} gets the last of each as a retained message, and access rules on
delivery apply to them. They are not written to the store: they describe
this process and are published again after a restart.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall

from mqttx import __version__

from .message import Message

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["SYS_PREFIX", "SysTopics"]

SYS_PREFIX = "$SYS/broker/"

#: The load averages' windows, in seconds, by topic suffix.
_WINDOWS = (("1min", 60.0), ("5min", 300.0), ("15min", 900.0))


class SysTopics:
    """
    Publishes the C{$SYS/broker/...} topics of one broker.

    Each tick publishes the topics whose value changed since the previous
    one (all of them at the first); the version is published once.

    Topics, under C{$SYS/broker/}: C{version}, C{uptime} (C{"N seconds"}),
    C{clients/connected}, C{clients/disconnected} (persistent sessions
    without a connection), C{clients/total} (both), C{clients/maximum} (the
    most connected at once), C{messages/received} and C{messages/sent}
    (PUBLISH, every QoS), C{bytes/received} and C{bytes/sent} (every byte of
    every listener), C{load/messages/received/1min} (and C{5min},
    C{15min}; C{load/messages/sent/...}, C{load/bytes/received/...},
    C{load/bytes/sent/...}: per minute, exponentially weighted moving
    averages over 1, 5 and 15 minutes as Mosquitto computes them),
    C{subscriptions/count}, C{retained messages/count}.

    @param broker: the broker whose figures are published, and which routes them.
    @param clock: the broker's clock.
    @param interval: seconds between ticks.
    """

    def __init__(self, broker: Broker, clock: IReactorTime, interval: float) -> None:
        self._broker = broker
        self._clock = clock
        self._interval = interval
        self._call = LoopingCall(self.tick)
        self._call.clock = clock
        self._started_at = clock.seconds()
        self._last: dict[str, bytes] = {}
        self._last_tick: float | None = None
        self._last_totals: dict[str, int] = {}
        self._loads: dict[str, float] = {}

    def start(self) -> None:
        """Publish now, then every C{interval} seconds."""
        self._started_at = self._clock.seconds()
        self._call.start(self._interval, now=True)

    def stop(self) -> None:
        """Stop publishing."""
        if self._call.running:
            self._call.stop()

    def totals(self) -> dict[str, int]:
        """The counters the load averages are computed from."""
        broker = self._broker
        counters = broker.counters
        stats = broker.listener_stats.values()
        return {
            "messages/received": sum(broker.received_qos),
            "messages/sent": counters.delivered,
            "bytes/received": sum(s.bytes_received for s in stats),
            "bytes/sent": sum(s.bytes_sent for s in stats),
        }

    def values(self) -> dict[str, str]:
        """Every topic (after C{$SYS/broker/}) with its value now."""
        broker = self._broker
        now = self._clock.seconds()
        totals = self.totals()
        self._update_loads(now, totals)
        connected = broker.clients_connected
        values = {
            "version": f"mqttx version {__version__}",
            "uptime": f"{int(now - self._started_at)} seconds",
            "clients/connected": str(connected),
            "clients/disconnected": str(len(broker.sessions) - connected),
            "clients/total": str(len(broker.sessions)),
            "clients/maximum": str(broker.clients_maximum),
            "subscriptions/count": str(sum(len(s.subscriptions) for s in broker.sessions.values())),
            "retained messages/count": str(len(broker.retained)),
        }
        for name, total in totals.items():
            values[name] = str(total)
        for name, load in self._loads.items():
            values[name] = f"{load:.2f}"
        return values

    def _update_loads(self, now: float, totals: dict[str, int]) -> None:
        # As Mosquitto's sys_tree.c: the rate per minute since the last tick,
        # folded into each average with weight 1 - exp(-elapsed / window).
        last_tick = self._last_tick
        if last_tick is not None and now <= last_tick:
            return
        self._last_tick = now
        previous, self._last_totals = self._last_totals, totals
        for name, total in totals.items():
            if last_tick is None:
                rate = 0.0
            else:
                rate = (total - previous.get(name, 0)) * 60.0 / (now - last_tick)
            for suffix, window in _WINDOWS:
                key = f"load/{name}/{suffix}"
                if last_tick is None:
                    self._loads[key] = 0.0
                    continue
                exponent = math.exp(-(now - last_tick) / window)
                self._loads[key] = rate + exponent * (self._loads[key] - rate)

    def tick(self) -> None:
        """Publish the topics whose value changed."""
        route = self._broker.route
        last = self._last
        for name, value in self.values().items():
            payload = value.encode("utf-8")
            topic = SYS_PREFIX + name
            if last.get(topic) == payload:
                continue
            last[topic] = payload
            route(Message(topic, payload, 0, True))
