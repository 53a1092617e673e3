# -*- test-case-name: tests.test_metrics -*-
"""
Plain per-listener counters, bumped where the event happens and read at
scrape time by L{mqttx.metrics} and the C{$SYS} publisher
(L{mqttx.broker.systopics}); no locks, no client-library objects on the
hot path (DESIGN.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.logger import Logger

from mqttx.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from .session import Session

__all__ = [
    "CONNECT_ACCEPTED",
    "DISCONNECT_LOST",
    "DISCONNECT_NORMAL",
    "DROP_REASONS",
    "ListenerStats",
    "SessionFigures",
    "disconnect_reason",
    "disconnected",
    "session_figures",
]

#: The reason of an accepted CONNECT in L{ListenerStats.connects}.
CONNECT_ACCEPTED = "success"
#: The reason of a disconnection after the client's DISCONNECT.
DISCONNECT_NORMAL = "client_disconnect"
#: The reason of a connection the peer (or the network) ended without
#: DISCONNECT.
DISCONNECT_LOST = "connection_lost"


class ListenerStats:
    """
    What happened on one listener.

    @ivar connections_open: transport connections open now (CONNECT or not).
    @ivar bytes_received: bytes read from its clients.
    @ivar bytes_sent: bytes written to its clients.
    @ivar connects: CONNECT outcomes by reason: C{"success"}, or the CONNACK
        refusal's reason code name in lower case (C{"not_authorized"}).
    @ivar disconnects: ends of admitted connections by reason:
        C{"client_disconnect"}, C{"connection_lost"}, or the reason code the
        server closed with (C{"keep_alive_timeout"}, C{"session_taken_over"},
        C{"server_shutting_down"}, C{"malformed_packet"}, ...).
    @ivar tls_handshake_failures: TLS handshakes that failed (a TLS
        listener's; see L{mqttx.transports.tls}).
    """

    __slots__ = (
        "bytes_received",
        "bytes_sent",
        "connections_open",
        "connects",
        "disconnects",
        "tls_handshake_failures",
    )

    def __init__(self) -> None:
        self.connections_open = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.connects: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.tls_handshake_failures = 0


def disconnect_reason(reason_code: int | None) -> str:
    """
    Name why a connection ended, for logs and metrics.

    @param reason_code: the reason code the server closed it with, or
        L{None} if the peer went away first.
    @return: C{"connection_lost"} for L{None}, C{"client_disconnect"} for
        0x00 (the server closes with it after the client's DISCONNECT), else
        the reason code's name in lower case.
    """
    if reason_code is None:
        return DISCONNECT_LOST
    if reason_code == ReasonCode.SUCCESS:
        return DISCONNECT_NORMAL
    try:
        return ReasonCode(reason_code).name.lower()
    except ValueError:
        return f"0x{reason_code:02x}"


class _Link(Protocol):
    """What L{disconnected} names a connection by."""

    @property
    def listener(self) -> str: ...
    @property
    def peer(self) -> str: ...
    @property
    def protocol_level(self) -> int: ...
    @property
    def username(self) -> str | None: ...


def disconnected(log: Logger, stats: ListenerStats, link: _Link, client_id: str, reason_code: int | None) -> None:
    """
    Count the end of an admitted connection in C{stats.disconnects} and log
    it (C{client.disconnected}), the same for MQTT and bridge clients.

    @param reason_code: as for L{disconnect_reason}.
    """
    reason = disconnect_reason(reason_code)
    stats.disconnects[reason] += 1
    log.info(
        "client {client_id!r} from {peer} on {listener} disconnected: {reason}",
        client_id=client_id,
        peer=link.peer,
        listener=link.listener,
        protocol_level=link.protocol_level,
        username=link.username,
        reason=reason,
        event_id="client.disconnected",
    )


#: Why messages were not delivered, by the L{mqttx.broker.session.Counters}
#: attribute that counts them: QoS 0 to an offline or congested client,
#: queue full, above the client's Maximum Packet Size, expired.
DROP_REASONS = (
    ("slow_consumer", "dropped_qos0"),
    ("queue_full", "dropped_queue_full"),
    ("too_large", "dropped_too_large"),
    ("expired", "dropped_expired"),
)


@dataclass(frozen=True, slots=True)
class SessionFigures:
    """What the sessions hold now, summed (a walk over every session)."""

    online: int
    offline: int
    subscriptions: int
    queued: int
    inflight: int


def session_figures(sessions: Iterable[Session]) -> SessionFigures:
    """Sum up C{sessions}, for the metrics collector and the admin API."""
    online = offline = subscriptions = queued = inflight = 0
    for session in sessions:
        if session.link is not None:
            online += 1
        else:
            offline += 1
        subscriptions += len(session.subscriptions)
        queued += len(session.queue)
        inflight += len(session.inflight)
    return SessionFigures(online, offline, subscriptions, queued, inflight)
