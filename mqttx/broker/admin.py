# -*- test-case-name: tests.broker.test_admin -*-
"""
Admin queries and actions over one broker, for the HTTP admin API: its
clients and their subscriptions, retained messages, figures, and what an
administrator may do (disconnect a client, delete a retained message).

Answers are plain frozen dataclasses; L{to_json} turns one (or a L{Page}
of them) into dicts and lists ready for C{json.dumps}. Lists are paged
(C{offset}, C{limit} at most L{MAX_LIMIT}), so a broker with many clients
never builds a huge answer. Nothing here knows HTTP.
"""

from __future__ import annotations

import base64
import dataclasses
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mqttx import __version__
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.mqtt.topics import is_valid_topic_filter, is_valid_topic_name, parse_shared

from .stats import DROP_REASONS, session_figures
from .systopics import SYS_PREFIX

if TYPE_CHECKING:
    from .broker import Broker
    from .session import Session

__all__ = [
    "MAX_LIMIT",
    "Admin",
    "ClientDetails",
    "ClientInfo",
    "Page",
    "RetainedInfo",
    "SubscriptionInfo",
    "properties_to_json",
    "to_json",
]

T = TypeVar("T")

#: The most items one page holds.
MAX_LIMIT = 1000
#: Payload bytes shown in a retained message's preview, by default.
PREVIEW_BYTES = 64


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """
    One page of a list.

    @ivar items: the page's items.
    @ivar offset: where the page starts in the whole list.
    @ivar total: how many items the whole list has.
    @ivar next_offset: the offset of the next page, or C{None} after the last.
    """

    items: tuple[T, ...]
    offset: int
    total: int
    next_offset: int | None


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """
    One client (session), connected or not.

    @ivar listener: the listener it last connected on (C{None} for a
        session restored from the store whose client has not connected since).
    @ivar peer: the address it last connected from.
    @ivar protocol_level: 3, 4 or 5.
    @ivar session_expiry: seconds the session outlives its connection.
    @ivar connected_since: clock time (seconds since the epoch) of its
        CONNECT, while connected.
    @ivar disconnected_at: when its connection ended, while offline.
    """

    client_id: str
    username: str | None
    listener: str | None
    peer: str | None
    protocol_level: int
    connected: bool
    session_expiry: int
    subscriptions: int
    queued: int
    inflight: int
    connected_since: float | None
    disconnected_at: float | None


@dataclass(frozen=True, slots=True)
class SubscriptionInfo:
    """
    One subscription of one session.

    @ivar topic_filter: as subscribed (C{$share/GROUP/FILTER} for a shared one).
    @ivar share_group: the share group of a shared subscription, else C{None}.
    """

    client_id: str
    topic_filter: str
    qos: int
    no_local: bool
    retain_as_published: bool
    retain_handling: int
    subscription_id: int | None
    share_group: str | None


@dataclass(frozen=True, slots=True)
class ClientDetails:
    """One client and its subscriptions."""

    client: ClientInfo
    subscriptions: tuple[SubscriptionInfo, ...]
    #: Whether a will waits to be published for it (delayed, or until it ends).
    will_pending: bool


@dataclass(frozen=True, slots=True)
class RetainedInfo:
    """
    One retained message.

    @ivar properties: its MQTT 5 properties (see L{properties_to_json}).
    @ivar payload_preview: the payload's first bytes: as text if they are
        UTF-8 (C{preview_encoding} C{"utf-8"}), else in base64 (C{"base64"}).
    @ivar expires_in: seconds it has left, if it expires.
    """

    topic: str
    payload_size: int
    qos: int
    properties: dict[str, Any]
    payload_preview: str
    preview_encoding: str
    expires_in: int | None


def properties_to_json(props: Properties) -> dict[str, Any]:
    """
    The message properties that are set, named as everywhere in the HTTP
    API (the JSON publish form, the event stream, the admin API):
    C{content_type}, C{payload_format}, C{message_expiry} (seconds),
    C{response_topic}, C{correlation_data_base64} and C{user_properties}
    (C{[name, value]} pairs, in order, duplicates kept).
    """
    out: dict[str, Any] = {}
    if props is NO_PROPERTIES:
        return out
    if props.content_type is not None:
        out["content_type"] = props.content_type
    if props.payload_format_indicator is not None:
        out["payload_format"] = props.payload_format_indicator
    if props.message_expiry_interval is not None:
        out["message_expiry"] = props.message_expiry_interval
    if props.response_topic is not None:
        out["response_topic"] = props.response_topic
    if props.correlation_data is not None:
        out["correlation_data_base64"] = base64.b64encode(props.correlation_data).decode("ascii")
    if props.user_property:
        out["user_properties"] = [list(pair) for pair in props.user_property]
    return out


def to_json(value: Any) -> Any:
    """An answer of L{Admin} as dicts, lists and scalars, for C{json.dumps}."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def _page(items: Iterable[T], offset: int, limit: int, total: int) -> Page[T]:
    offset = max(0, offset)
    limit = max(1, min(limit, MAX_LIMIT))
    taken = tuple(islice(items, offset, offset + limit))
    end = offset + len(taken)
    return Page(taken, offset, total, end if end < total else None)


class Admin:
    """
    The admin view of one broker.

    @param broker: the broker.
    """

    log = Logger()

    def __init__(self, broker: Broker) -> None:
        self._broker = broker

    # Clients.

    def _info(self, session: Session) -> ClientInfo:
        connected = session.link is not None
        attachment = session.attachment
        return ClientInfo(
            client_id=session.client_id,
            username=None if attachment is None else attachment.username,
            listener=None if attachment is None else attachment.listener,
            peer=None if attachment is None else attachment.peer,
            protocol_level=session.protocol_level,
            connected=connected,
            session_expiry=session.expiry_interval,
            subscriptions=len(session.subscriptions),
            queued=len(session.queue),
            inflight=len(session.inflight),
            connected_since=attachment.at if connected and attachment is not None else None,
            disconnected_at=None if connected else session.disconnected_at,
        )

    def clients(
        self, *, offset: int = 0, limit: int = 100, prefix: str = "", connected: bool | None = None
    ) -> Page[ClientInfo]:
        """
        The clients, in the order their sessions began.

        @param prefix: only client identifiers starting with it.
        @param connected: only connected (C{True}) or offline (C{False}) ones.
        """
        sessions: Iterable[Session] = self._broker.sessions.values()
        if not prefix and connected is None:
            total = len(self._broker.sessions)
        else:
            sessions = [
                s
                for s in sessions
                if s.client_id.startswith(prefix) and (connected is None or (s.link is not None) == connected)
            ]
            total = len(sessions)
        return _page(map(self._info, sessions), offset, limit, total)

    def client(self, client_id: str) -> ClientDetails | None:
        """One client with its subscriptions, or C{None} if it has no session."""
        session = self._broker.sessions.get(client_id)
        if session is None:
            return None
        return ClientDetails(
            self._info(session),
            tuple(self._subscriptions_of(session)),
            session.will is not None or session.pending_will is not None,
        )

    def disconnect(self, client_id: str, requested_by: str, *, discard_session: bool = False) -> bool:
        """
        Disconnect a client: MQTT 5 clients get DISCONNECT 0x98
        (Administrative action), 3.1/3.1.1 ones see their connection closed;
        bridge clients see their C{closed} fire with 0x98. Its will is
        published, as for any connection the server ends. The session stays
        if it has an expiry, unless C{discard_session}: then it ends too
        (at once if the client is offline).

        @param requested_by: who asked (an administrator's user name), for the log.
        @return: whether there was anything to do: a connected client, or a
            session to discard.
        """
        broker = self._broker
        session = broker.sessions.get(client_id)
        if session is None:
            return False
        link = session.link
        if link is None and not discard_session:
            return False
        self.log.info(
            "client {client_id!r} disconnected by {requested_by} (administrative action{discarded})",
            client_id=client_id,
            requested_by=requested_by,
            discarded=", session discarded" if discard_session else "",
            event_id="admin.disconnect",
        )
        if link is None:
            broker.end_session(session)
            return True
        if discard_session:
            # The session ends with the connection (Broker.detach).
            session.expiry_interval = 0
        link.close(ReasonCode.ADMINISTRATIVE_ACTION)
        return True

    # Subscriptions.

    @staticmethod
    def _subscriptions_of(session: Session) -> Iterator[SubscriptionInfo]:
        client_id = session.client_id
        for entry in session.subscriptions.values():
            group = None
            if entry.topic_filter.startswith("$share/"):
                try:
                    shared = parse_shared(entry.topic_filter)
                except ValueError:
                    shared = None
                group = shared.group if shared is not None else None
            yield SubscriptionInfo(
                client_id,
                entry.topic_filter,
                entry.qos,
                entry.no_local,
                entry.retain_as_published,
                entry.retain_handling,
                entry.subscription_id,
                group,
            )

    def subscriptions(
        self, *, offset: int = 0, limit: int = 100, client_id: str | None = None
    ) -> Page[SubscriptionInfo]:
        """Every subscription, by session then in the order made (or only C{client_id}'s)."""
        sessions = self._broker.sessions
        if client_id is not None:
            session = sessions.get(client_id)
            chosen = [] if session is None else [session]
        else:
            chosen = list(sessions.values())
        total = sum(len(s.subscriptions) for s in chosen)
        items = (info for s in chosen for info in self._subscriptions_of(s))
        return _page(items, offset, limit, total)

    # Retained messages.

    def retained(
        self, topic_filter: str = "#", *, offset: int = 0, limit: int = 100, preview: int = PREVIEW_BYTES
    ) -> Page[RetainedInfo]:
        """
        The retained messages whose topic matches C{topic_filter}, by topic
        (a wildcard at the start skips C{$} topics, as for subscriptions).

        @param preview: payload bytes shown, at most.
        @raise ValueError: if C{topic_filter} is not a valid topic filter.
        """
        if not is_valid_topic_filter(topic_filter):
            raise ValueError(f"invalid topic filter {topic_filter!r}")
        now = self._broker.clock.seconds()
        found = sorted(
            (item for item in self._broker.retained.match(topic_filter) if _alive(item[1].expires_at, now)),
            key=lambda item: item[0],
        )
        preview = max(0, preview)
        items = (self._retained_info(topic, message, now, preview) for topic, message in found)
        return _page(items, offset, limit, len(found))

    @staticmethod
    def _retained_info(topic: str, message: Any, now: float, preview: int) -> RetainedInfo:
        payload: bytes = message.payload
        head = payload[:preview]
        try:
            text = head.decode("utf-8")
            encoding = "utf-8"
        except UnicodeDecodeError as e:
            if e.start >= len(head) - 3 and len(head) < len(payload):
                # Cut in the middle of a character: show the whole ones.
                try:
                    text = head[: e.start].decode("utf-8")
                    encoding = "utf-8"
                except UnicodeDecodeError:
                    text, encoding = base64.b64encode(head).decode("ascii"), "base64"
            else:
                text, encoding = base64.b64encode(head).decode("ascii"), "base64"
        expires_at = message.expires_at
        return RetainedInfo(
            topic,
            len(payload),
            message.qos,
            properties_to_json(message.properties),
            text,
            encoding,
            None if expires_at is None else max(0, int(expires_at - now + 0.999)),
        )

    def delete_retained(self, topic: str, requested_by: str) -> Deferred[bool]:
        """
        Delete the retained message of C{topic}, as an empty retained PUBLISH
        would [MQTT-3.3.1-6] (but nothing is delivered to subscribers).

        @param requested_by: who asked, for the log.
        @return: fires with whether there was one, once the store deleted it.
        @raise ValueError: if C{topic} is not a valid topic name.
        """
        if not is_valid_topic_name(topic):
            raise ValueError(f"invalid topic name {topic!r}")
        broker = self._broker
        if not broker.retained.discard(topic):
            return succeed(False)
        self.log.info(
            "retained message of {topic!r} deleted by {requested_by}",
            topic=topic,
            requested_by=requested_by,
            event_id="admin.retained_deleted",
        )
        if topic.startswith(SYS_PREFIX):
            return succeed(True)  # Never stored.
        return broker.store.delete_retained(topic).addCallback(lambda _: True)

    # Figures.

    def stats(self) -> dict[str, Any]:
        """
        The broker's figures now, as the metrics collector and C{$SYS} read
        them: clients, sessions, subscriptions, retained, queued and in-flight
        messages, messages and bytes received and sent (by QoS), drops by
        reason, authentication failures, and each listener's counters. C{time}
        is the broker's clock, so that two answers give rates.
        """
        broker = self._broker
        counters = broker.counters
        figures = session_figures(broker.sessions.values())
        listeners = {
            name: {
                "connections_open": stats.connections_open,
                "bytes_received": stats.bytes_received,
                "bytes_sent": stats.bytes_sent,
                "connects": dict(stats.connects),
                "disconnects": dict(stats.disconnects),
                "tls_handshake_failures": stats.tls_handshake_failures,
            }
            for name, stats in sorted(broker.listener_stats.items())
        }
        sent = [counters.sent_qos0, counters.sent_qos1, counters.sent_qos2]
        return {
            "node": broker.node_name,
            "version": __version__,
            "time": broker.clock.seconds(),
            "clients": {
                "connected": broker.clients_connected,
                "maximum": broker.clients_maximum,
                "sessions": len(broker.sessions),
                "offline": figures.offline,
            },
            "subscriptions": figures.subscriptions,
            "retained_messages": len(broker.retained),
            "queued_messages": figures.queued,
            "inflight_messages": figures.inflight,
            "messages": {
                "received": sum(broker.received_qos),
                "sent": sum(sent),
                "received_by_qos": list(broker.received_qos),
                "sent_by_qos": sent,
                "received_bytes_by_qos": list(broker.received_bytes_qos),
                "sent_bytes_by_qos": [counters.sent_bytes_qos0, counters.sent_bytes_qos1, counters.sent_bytes_qos2],
                "dropped": {reason: getattr(counters, attribute) for reason, attribute in DROP_REASONS},
            },
            "bytes": {
                "received": sum(s["bytes_received"] for s in listeners.values()),
                "sent": sum(s["bytes_sent"] for s in listeners.values()),
            },
            "auth_failures": broker.auth_failures,
            "listeners": listeners,
        }


def _alive(expires_at: float | None, now: float) -> bool:
    return expires_at is None or expires_at > now
