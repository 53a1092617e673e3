# -*- test-case-name: tests.broker.test_broker -*-
"""
The broker core: sessions, routing, retained messages, wills and session
expiry, independent of any transport.

Transports hand it packets through a L{ClientLink} (see
L{mqttx.transports.mqtt}); it answers through the same link.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import partial
from random import Random
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.auth.ratelimit import AuthFailureLimiter
from mqttx.interfaces import IAuthenticationMethod, IAuthenticator, IAuthorizer, IStore
from mqttx.mqtt.packet_type import ProtocolVersion
from mqttx.mqtt.packets import (
    Auth,
    Connect,
    Disconnect,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    Subscribe,
    Unsubscribe,
)
from mqttx.mqtt.properties import NO_PROPERTIES
from mqttx.mqtt.reason_codes import ReasonCode

from .acks import Acknowledgements
from .admission import Admission, VerifiedIdentity
from .auth import EnhancedAuthentication
from .expiry import Expiry
from .flow import FlowControl
from .message import Message
from .replies import IN_USE, NOT_FOUND, NOT_UTF8, QUEUES_FULL, is_utf8
from .retained import RetainedIndex
from .router import Route, Router
from .session import Counters, FrameCache, Session, SessionLink
from .shared import STRATEGIES
from .state import SharedDelivery
from .stats import ListenerStats
from .subscriptions import Subscriptions
from .systopics import SYS_PREFIX, SysTopics

if TYPE_CHECKING:
    from mqttx.config import MQTTConfig


class ClientLink(SessionLink, Protocol):
    """What the broker needs of a client connection, beyond a session's needs."""

    #: The name of the listener the client came in on.
    listener: str
    #: The client's address, for logs.
    peer: str
    #: The connection's enhanced authentication, which the broker sets
    #: when the CONNECT names a method it offers (MQTT 5 section 4.12).
    authentication: EnhancedAuthentication | None
    #: Who the client's TLS certificate says it is, on a listener that takes
    #: that as the user name; else C{None} (the CONNECT's credentials count).
    identity: VerifiedIdentity | None

    def set_keep_alive(self, seconds: int) -> None:
        """Impose the Server Keep Alive on the connection."""

    def challenge(self, packet: Auth) -> None:
        """Send AUTH 0x18 (Continue authentication) and read the client's answer."""


class Broker:
    """
    One MQTT broker.

    @param config: the C{mqtt} section of the configuration.
    @param clock: the time source for expiry and will delays.
    @param store: where persistent sessions and retained messages are kept.
    @param authenticator: checks credentials at CONNECT; by default
        anonymous clients are let in.
    @param authentication_methods: the MQTT 5 enhanced authentication
        methods offered, each under its C{name}; none by default.
    @param random: the random source of the C{random} shared subscription
        strategy; a new L{Random} by default.
    @param auth_limiter: counts failed authentications (0x86, bad user name
        or password, and failed enhanced authentications) per source
        address; CONNECTs from an address over its limit are refused with
        0x9F before their credentials are checked. None by default.
    @param sys_topics: whether to publish the C{$SYS} topics every
        C{config.sys_interval} seconds from L{start} to L{shutdown} (off by
        default, so a broker built for a test publishes only what it is told).
    @param authorizer: decides which topics each client may publish to,
        subscribe to and receive (L{IAuthorizer}); C{None}, the default,
        allows everything, at no cost on the message path.
    """

    log = Logger()

    def __init__(
        self,
        config: MQTTConfig,
        *,
        clock: IReactorTime,
        store: IStore,
        node_name: str = "mqttx",
        authenticator: IAuthenticator | None = None,
        random: Random | None = None,
        authentication_methods: Iterable[IAuthenticationMethod] = (),
        auth_limiter: AuthFailureLimiter | None = None,
        sys_topics: bool = False,
        authorizer: IAuthorizer | None = None,
    ) -> None:
        self.config = config
        self.node_name = node_name
        self.counters = Counters()
        self.sessions: dict[str, Session] = {}
        self.router = Router()
        self.retained: RetainedIndex[Message] = RetainedIndex()
        self._clock = clock
        self._store = store
        self._authorizer = authorizer
        #: Denials logged, as (client id, action, topic): each once.
        self._denials_logged: set[tuple[str, str, str]] = set()
        self._random = random if random is not None else Random()
        self._pick = STRATEGIES[config.shared_subscription_strategy]
        self._stopping = False
        #: Observability (read at scrape time, see L{mqttx.metrics}):
        #: PUBLISH received by QoS, their payload bytes by QoS, clients
        #: connected now and at most, CONNECTs refused for their credentials
        #: or authentication, and each listener's counters.
        self.received_qos = [0, 0, 0]
        self.received_bytes_qos = [0, 0, 0]
        self.clients_connected = 0
        self.clients_maximum = 0
        self.auth_failures = 0
        self.listener_stats: dict[str, ListenerStats] = {}
        #: Publishes the $SYS topics from start to shutdown, unless off.
        self.sys_topics = SysTopics(self, clock, config.sys_interval) if sys_topics and config.sys_interval else None
        # Store writes caused by the PUBLISH being handled: its
        # acknowledgement waits for them (see IStore).
        self._writes: list[Deferred[None]] = []
        self._acknowledge = Acknowledgements(self._writes).acknowledge
        self.flow = FlowControl(clock, config.flow_control_timeout)
        #: Decides on CONNECT packets.
        self.admission = Admission(
            config,
            self,
            store=store,
            authenticator=authenticator or NoUserDatabase(True),
            authentication_methods=authentication_methods,
            auth_limiter=auth_limiter,
            authorizer=authorizer,
        )
        self._subscriptions = Subscriptions(
            config, self, store=store, clock=clock, authorizer=authorizer, may_read=self._may_read
        )
        self._expiry = Expiry(self, clock=clock, store=store, hand_over=self._hand_over)

    @property
    def stopping(self) -> bool:
        """Whether L{shutdown} has begun."""
        return self._stopping

    @property
    def clock(self) -> IReactorTime:
        """The broker's time source."""
        return self._clock

    @property
    def store(self) -> IStore:
        """Where persistent sessions and retained messages are kept."""
        return self._store

    def stats_for(self, listener: str) -> ListenerStats:
        """The counters of the listener named C{listener}, created on first use."""
        stats = self.listener_stats.get(listener)
        if stats is None:
            stats = self.listener_stats[listener] = ListenerStats()
        return stats

    @property
    def messages_received(self) -> int:
        """PUBLISH received from clients, every QoS."""
        return sum(self.received_qos)

    # Lifecycle.

    def start(self) -> Deferred[None]:
        """Load persistent sessions and retained messages from the store."""
        return Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        snapshot = await self._store.load()
        now = self._clock.seconds()
        for message in snapshot.retained:
            if message.expires_at is None or message.expires_at > now:
                self.retained.set(message.topic, message)
            else:
                self._store.delete_retained(message.topic)
        expired = [self._expiry.restore(stored, now) for stored in snapshot.sessions]
        # Sessions that expired while the broker was down end only once every
        # session is back, so that their wills reach all subscribers.
        for session in expired:
            if session is not None:
                self.end_session(session)
        self.log.info(
            "broker {node} ready: {sessions} stored sessions, {retained} retained messages",
            node=self.node_name,
            sessions=len(self.sessions),
            retained=len(self.retained),
            event_id="broker.started",
        )
        if self.sys_topics is not None:
            self.sys_topics.start()

    def shutdown(self) -> Deferred[None]:
        """
        Close every client connection (MQTT 5 clients get DISCONNECT 0x8B),
        then keep persistent sessions in the store as they stand, with their
        pending wills, and stop every timer.
        """
        return Deferred.fromCoroutine(self._shutdown())

    async def _shutdown(self) -> None:
        self._stopping = True
        if self.sys_topics is not None:
            self.sys_topics.stop()
        closing = [
            s.link.close(ReasonCode.SERVER_SHUTTING_DOWN)
            for s in list(self.sessions.values())
            if s.link is not None
        ]
        await gatherResults(closing)
        writes = []
        for session in self.sessions.values():
            for call in (session.will_call, session.expiry_call):
                if call is not None and call.active():
                    call.cancel()
            if session.persistent:
                writes.append(self._store.save_session(session.record()))
        await gatherResults(writes)
        self.log.info("broker {node} stopped", node=self.node_name, event_id="broker.stopped")

    # CONNECT and the end of connections.

    def connect(self, link: ClientLink, connect: Connect) -> Deferred[Session | None]:
        """
        Decide on a CONNECT and answer it with CONNACK (see L{Admission}).

        @return: a Deferred firing with the client's session if it was let in,
            or C{None} after a refusal (the caller then closes the connection).
        """
        return self.admission.connect(link, connect)

    def disconnect(self, session: Session, packet: Disconnect) -> None:
        """
        The client sent DISCONNECT: a normal disconnection (reason 0x00)
        drops its will [MQTT-3.1.2-10]; any other reason (0x04 asks for the
        will, 0x80 and up end the connection on an error) keeps it
        [MQTT-3.1.2-8]. Then apply a new session expiry.
        """
        if packet.reason_code == ReasonCode.SUCCESS:
            session.will = None
        expiry = packet.properties.session_expiry_interval
        if expiry is not None:
            session.expiry_interval = min(expiry, self.config.max_session_expiry)

    def connection_lost(self, session: Session, link: ClientLink) -> None:
        """
        A client's connection is gone. Unless the client sent DISCONNECT (and
        no will was asked for), its will is published, after the will delay.
        """
        if session.link is not link:
            return  # Taken over: the new connection owns the session.
        session.link = None
        self.clients_connected -= 1
        if session.shared and not self._stopping:
            # Section 4.8.2: what it did not acknowledge may go to another
            # member at once. (At shutdown, sessions are kept as they stand.)
            session.hand_over_shared(partial(self._hand_over, session))
        self.detach(session)

    def detach(self, session: Session) -> None:
        """A session lost its connection: start its will delay and expiry, or end it."""
        self._expiry.detach(session)

    def new_session(self, client_id: str, level: int, expiry: int) -> Session:
        """A new session, not yet in L{sessions}."""
        return Session(
            client_id,
            level,
            expiry,
            store=self._store,
            counters=self.counters,
            max_queued=self.config.max_queued_messages,
            clock_seconds=self._clock.seconds,
            writes=self._writes,
            flow=self.flow,
        )

    def end_session(self, session: Session) -> None:
        """End a session: drop its subscriptions and publish its pending will."""
        self._expiry.end_session(session)

    # PUBLISH and its acknowledgements, inbound.

    def publish(self, session: Session, packet: Publish) -> None:
        """A client published: route the message and acknowledge it by its QoS."""
        link = session.link
        if link is None:
            return
        qos = packet.qos
        self.received_qos[qos] += 1
        self.received_bytes_qos[qos] += len(packet.payload)
        if packet.retain and not self.config.retain_available:
            # MQTT 5 section 3.3.1.3: DISCONNECT 0x9A; 3.1.1 can only close.
            link.close(ReasonCode.RETAIN_NOT_SUPPORTED)
            return
        pid = packet.packet_id
        if qos == 2 and pid in session.inbound_qos2:
            # [MQTT-4.3.3-10] A repeated PUBLISH before PUBREL is not delivered again.
            link.send(PubRec(pid))
            return
        self._writes.clear()
        access = session.access
        if access is not None and not access.can_publish(packet.topic):
            self._publish_denied(session, link, packet)
            return
        props = packet.properties
        if qos == 1 and session.inbound_qos2 and pid in session.inbound_qos2:
            if link.protocol_level == ProtocolVersion.MQTT_5:
                # [MQTT-2.2.1-3] The identifier still belongs to a QoS 2
                # message awaiting PUBREL: PUBACK 0x91 (section 3.4.2.1),
                # not routed. 3.1.1 has no way to say so: the message is taken.
                self._acknowledge(session, link, PubAck(pid, ReasonCode.PACKET_IDENTIFIER_IN_USE, IN_USE))
                return
        if props.payload_format_indicator == 1 and self.config.validate_payload_format:
            if not is_utf8(packet.payload):
                self._payload_format_invalid(session, link, qos, pid)
                return
        expiry = props.message_expiry_interval
        message = Message(
            packet.topic,
            packet.payload,
            qos,
            packet.retain,
            props,
            session.client_id,
            None if expiry is None else self._clock.seconds() + expiry,
        )
        congested = self.flow.congested
        if congested:
            congested.clear()  # Left by deliveries outside a PUBLISH.
        if qos == 0:
            self.route(message)
            if congested:
                self.flow.hold(link)
            return
        assert pid is not None
        counters = self.counters
        queues_full = counters.dropped_queue_full
        matched = self.route(message)
        if congested:
            self.flow.hold(link)
        code = ReasonCode.SUCCESS
        ack_props = NO_PROPERTIES
        if not matched:
            if link.protocol_level == ProtocolVersion.MQTT_5:
                code = ReasonCode.NO_MATCHING_SUBSCRIBERS
        elif counters.dropped_queue_full != queues_full:
            # Sessions dropped it, their queue full (the counter tells,
            # with no result to collect per delivery). If every matching one
            # did, nobody took it, unless the retained store did.
            refused = counters.dropped_queue_full - queues_full
            if refused >= matched and not packet.retain and link.protocol_level == ProtocolVersion.MQTT_5:
                code = ReasonCode.QUOTA_EXCEEDED  # Section 3.4.2.1.
                ack_props = QUEUES_FULL
        if qos == 1:
            self._acknowledge(session, link, PubAck(pid, code, ack_props))
        elif code >= 0x80:
            # PUBREC >= 0x80 ends the exchange (section 4.3.3): no PUBREL follows.
            self._acknowledge(session, link, PubRec(pid, code, ack_props))
        else:
            session.inbound_qos2.add(pid)
            if session.persistent:
                self._writes.append(self._store.add_inbound_qos2(session.client_id, pid))
            self._acknowledge(session, link, PubRec(pid, code))

    def _publish_denied(self, session: Session, link: SessionLink, packet: Publish) -> None:
        """
        Refuse a PUBLISH the client may not make: MQTT 5 answers PUBACK or
        PUBREC 0x87 (Not authorized, sections 3.4.2.1, 3.5.2.1), which ends
        the exchange; QoS 0 is dropped. 3.1.1 has no way to say no: the
        message is dropped and acknowledged as usual [MQTT-3.3.5-2], as
        Mosquitto does.
        """
        self.log_denial(session.client_id, "publish", packet.topic)
        qos = packet.qos
        if qos == 0:
            return
        pid = packet.packet_id
        assert pid is not None
        if link.protocol_level == ProtocolVersion.MQTT_5:
            ack = PubAck if qos == 1 else PubRec
            self._acknowledge(session, link, ack(pid, ReasonCode.NOT_AUTHORIZED))
        elif qos == 1:
            self._acknowledge(session, link, PubAck(pid))
        else:
            session.inbound_qos2.add(pid)
            if session.persistent:
                self._writes.append(self._store.add_inbound_qos2(session.client_id, pid))
            self._acknowledge(session, link, PubRec(pid))

    def log_denial(self, client_id: str, action: str, topic: str) -> None:
        """Log a denial once per client, action and topic, not per message."""
        key = (client_id, action, topic)
        logged = self._denials_logged
        if key in logged:
            return
        if len(logged) >= 10_000:
            logged.clear()
        logged.add(key)
        self.log.info(
            "{action} of {topic!r} denied to client {client_id!r}",
            action=action,
            topic=topic,
            client_id=client_id,
            event_id="acl.denied",
        )

    def _may_read(self, session: Session, topic: str) -> bool:
        """
        Whether C{session}'s client may receive a message of C{topic}, with
        an authorizer set. A session restored from the store whose client
        has not connected since has no known identity: nothing is granted.
        """
        access = session.access
        if access is not None and access.can_read(topic):
            return True
        self.log_denial(session.client_id, "delivery", topic)
        return False

    def _readable(self, routes: tuple[Route, ...], topic: str) -> tuple[Route, ...]:
        """The routes whose session may read C{topic} (an authorizer is set)."""
        sessions = self.sessions
        for route in routes:
            access = sessions[route.client_id].access
            if access is None or not access.can_read(topic):
                break
        else:
            return routes  # All may read it: the common case, no copy.
        return tuple(route for route in routes if self._may_read(sessions[route.client_id], topic))

    def _payload_format_invalid(self, session: Session, link: SessionLink, qos: int, pid: int | None) -> None:
        """
        Refuse a PUBLISH whose Payload Format Indicator says UTF-8 when its
        payload is not (section 3.3.2.3.2): PUBACK or PUBREC 0x99, which ends
        the exchange; a QoS 0 message has no acknowledgement, so DISCONNECT
        0x99.
        """
        if qos == 0:
            link.close(ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8.reason_string)
            return
        assert pid is not None
        ack = PubAck if qos == 1 else PubRec
        self._acknowledge(session, link, ack(pid, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8))


    def route(self, message: Message) -> int:
        """
        Deliver a message to every matching session and keep it if retained.

        @return: how many sessions it matched.
        """
        if message.retain:
            self._retain(message)
        routes = self.router.match(message.topic)
        if self._authorizer is not None and routes:
            # Each delivery is checked: what a subscription covers may be
            # partly denied, and rules change on reload.
            routes = self._readable(routes, message.topic)
        if not routes:
            return self._route_shared(message, {}) if self.router.group_count else 0
        sessions = self.sessions
        frames: FrameCache = {}
        origin = message.origin
        qos = message.qos
        for route in routes:
            if route.no_local and route.client_id == origin:
                continue  # [MQTT-3.8.3-3]
            session = sessions[route.client_id]
            # [MQTT-3.3.1-9] 3.1.1 / [MQTT-3.3.1-12] 5.0: live messages go out
            # with RETAIN=0 unless Retain As Published.
            session.deliver(
                message,
                qos if qos <= route.qos else route.qos,
                message.retain and route.retain_as_published,
                route.subscription_ids,
                frames,
            )
        if self.router.group_count:
            return len(routes) + self._route_shared(message, frames)
        return len(routes)

    def _route_shared(self, message: Message, frames: FrameCache) -> int:
        """
        Deliver a message to one member of each shared subscription it
        matches (section 4.8.2), picked by the configured strategy, at
        min(published, that member's granted QoS) [MQTT-4.8.2-3]. A session
        with shared and non-shared subscriptions gets a copy for each.

        @return: how many shared subscriptions it matched.
        """
        groups = self.router.match_shared(message.topic)
        if not groups:
            return 0
        sessions = self.sessions
        pick = self._pick
        qos = message.qos
        for group in groups:
            member = pick(group, sessions, qos, message.origin, self._random, None)
            if member is None:
                continue
            entry = member.entry
            session = sessions[member.client_id]
            if self._authorizer is not None and not self._may_read(session, message.topic):
                continue
            session.shared = True
            session.deliver(
                message,
                qos if qos <= entry.qos else entry.qos,
                message.retain and entry.retain_as_published,
                member.subscription_ids,
                frames,
                group.share_filter,
            )
        return len(groups)

    def _hand_over(self, session: Session, delivery: SharedDelivery) -> bool:
        """
        Give a message of a shared subscription that C{session} did not
        complete to another member of that subscription, online ones first.

        @return: whether it left C{session}: given to another member, or
            dropped as expired; C{False} if there is no other member.
        """
        group = self.router.group(delivery.group)
        if group is None:
            return False
        message = delivery.message
        qos = message.qos
        member = self._pick(group, self.sessions, qos, message.origin, self._random, session.client_id)
        if member is None:
            return False
        if message.expires_at is not None and message.expires_at <= self._clock.seconds():
            self.counters.dropped_expired += 1
            return True
        entry = member.entry
        target = self.sessions[member.client_id]
        if self._authorizer is not None and not self._may_read(target, message.topic):
            return False
        target.shared = True
        target.deliver(
            message,
            qos if qos <= entry.qos else entry.qos,
            message.retain and entry.retain_as_published,
            member.subscription_ids,
            {},
            group.share_filter,
        )
        return True

    def _retain(self, message: Message) -> None:
        if message.payload:
            # [MQTT-3.3.1-5] Keep the last retained message of the topic.
            self.retained.set(message.topic, message)
            if not message.topic.startswith(SYS_PREFIX):
                # $SYS topics describe this process: not kept across restarts.
                self._writes.append(self._store.put_retained(message))
        elif self.retained.discard(message.topic):
            # [MQTT-3.3.1-6] [MQTT-3.3.1-7] An empty payload clears it, and
            # is not kept itself.
            self._writes.append(self._store.delete_retained(message.topic))

    def pubrel(self, session: Session, packet: PubRel) -> None:
        """PUBREL: the inbound QoS 2 exchange ends with PUBCOMP [MQTT-4.3.3-11]."""
        link = session.link
        if link is None:
            return
        pid = packet.packet_id
        if pid in session.inbound_qos2:
            session.inbound_qos2.discard(pid)
            if session.persistent:
                self._store.remove_inbound_qos2(session.client_id, pid)
            link.send(PubComp(pid))
        elif link.protocol_level == ProtocolVersion.MQTT_5:
            link.send(PubComp(pid, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, NOT_FOUND))
        else:
            link.send(PubComp(pid))

    def puback(self, session: Session, packet: PubAck) -> None:
        """PUBACK for an outbound QoS 1 message."""
        session.puback(packet.packet_id)

    def pubrec(self, session: Session, packet: PubRec) -> None:
        """
        PUBREC for an outbound QoS 2 message: answer PUBREL, with 0x92 if the
        packet identifier is unknown (MQTT 5 section 3.6.2.1). A PUBREC with
        an error code ends the exchange and gets no PUBREL (section 4.3.3).
        """
        reason_code = packet.reason_code
        if not session.pubrec(packet.packet_id, reason_code) and session.link is not None and reason_code < 0x80:
            if session.link.protocol_level == ProtocolVersion.MQTT_5:
                session.link.send(PubRel(packet.packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, NOT_FOUND))
            else:
                session.link.send(PubRel(packet.packet_id))

    def pubcomp(self, session: Session, packet: PubComp) -> None:
        """PUBCOMP for an outbound QoS 2 message."""
        session.pubcomp(packet.packet_id)

    # Subscriptions (see L{Subscriptions}).

    def subscribe(self, session: Session, packet: Subscribe) -> None:
        """
        Add subscriptions, answer SUBACK, then send the retained messages
        the new subscriptions match ([MQTT-3.8.4-4]).
        """
        self._subscriptions.subscribe(session, packet)

    def unsubscribe(self, session: Session, packet: Unsubscribe) -> None:
        """Remove subscriptions and answer UNSUBACK [MQTT-3.10.4-4]."""
        self._subscriptions.unsubscribe(session, packet)


    def pingreq(self, session: Session) -> None:
        """PINGREQ gets PINGRESP [MQTT-3.12.4-1]."""
        if session.link is not None:
            session.link.send(PingResp())
