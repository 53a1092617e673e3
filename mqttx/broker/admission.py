# -*- test-case-name: tests.broker.test_broker -*-
"""
CONNECT admission: the checks a CONNECT must pass, authentication (by
password or MQTT 5 enhanced authentication), takeover of an existing
session, and the CONNACK that answers it.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from mqttx.auth.ratelimit import AuthFailureLimiter, source_host
from mqttx.interfaces import IAuthenticationMethod, IAuthenticator, IAuthorizer, IStore
from mqttx.mqtt.packet_type import ProtocolVersion
from mqttx.mqtt.packets import ConnAck, Connect
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode, connack_code_v3, describe
from mqttx.mqtt.topics import is_valid_topic_name

from .auth import AuthFailure, AuthSuccess, EnhancedAuthentication, connack_code
from .replies import connack_properties, is_utf8, will_message
from .session import Session
from .stats import CONNECT_ACCEPTED, ListenerStats

if TYPE_CHECKING:
    from mqttx.config import MQTTConfig

    from .broker import ClientLink

#: The largest value of a four-byte session expiry: the session never ends.
NEVER_EXPIRES = 0xFFFFFFFF

#: CONNACK refusals counted as authentication failures.
_AUTH_FAILURES = frozenset(
    {ReasonCode.BAD_USER_NAME_OR_PASSWORD, ReasonCode.NOT_AUTHORIZED, ReasonCode.BAD_AUTHENTICATION_METHOD}
)


@dataclass(frozen=True, slots=True)
class VerifiedIdentity:
    """
    Who a client is, vouched for by its transport instead of a password:
    its verified TLS certificate on a listener that takes the certificate's
    identity as the user name (C{use_identity_as_username}), or the
    source-address rule a CoAP request matched. No password is checked, and
    the name replaces the CONNECT's user name, for ACLs and logs alike.

    @ivar username: the user name; C{None} if the certificate's subject has
        no common name, and the client is refused (0x87, not authorized).
    """

    username: str | None


class AdmissionHost(Protocol):
    """What admission needs of the broker: its sessions and client counters."""

    #: The sessions, by client identifier.
    sessions: dict[str, Session]
    #: Clients connected now, and at most.
    clients_connected: int
    clients_maximum: int
    #: CONNECTs refused for their credentials or authentication.
    auth_failures: int

    @property
    def stopping(self) -> bool:
        """Whether the broker is shutting down."""

    def stats_for(self, listener: str) -> ListenerStats:
        """The counters of the listener named C{listener}."""

    def new_session(self, client_id: str, level: int, expiry: int) -> Session:
        """A new session, not yet registered in C{sessions}."""

    def end_session(self, session: Session) -> None:
        """End C{session}: drop its subscriptions, publish its pending will."""

    def detach(self, session: Session) -> None:
        """C{session} lost its connection: start its will and expiry."""

    def log_denial(self, client_id: str, action: str, topic: str) -> None:
        """Log an authorization denial, once per client, action and topic."""


class Admission:
    """
    Decides on CONNECT packets for a broker and answers them with CONNACK.

    @param config: the C{mqtt} section of the configuration.
    @param host: the broker whose sessions clients are admitted to.
    @param store: where persistent sessions are kept.
    @param authenticator: checks credentials at CONNECT.
    @param authentication_methods: the MQTT 5 enhanced authentication
        methods offered, each under its C{name}.
    @param auth_limiter: counts failed authentications per source address
        (see L{Broker}), or C{None}.
    @param authorizer: gives each admitted client its topic access, or C{None}.
    @raise ValueError: if two authentication methods have the same name.
    """

    log = Logger()

    def __init__(
        self,
        config: MQTTConfig,
        host: AdmissionHost,
        *,
        store: IStore,
        authenticator: IAuthenticator,
        authentication_methods: Iterable[IAuthenticationMethod],
        auth_limiter: AuthFailureLimiter | None,
        authorizer: IAuthorizer | None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self._host = host
        self._store = store
        self._limiter = auth_limiter
        self._authorizer = authorizer
        self._methods: dict[str, IAuthenticationMethod] = {}
        for method in authentication_methods:
            if method.name in self._methods:
                raise ValueError(f"two authentication methods named {method.name!r}")
            self._methods[method.name] = method

    def connect(self, link: ClientLink, connect: Connect) -> Deferred[Session | None]:
        """
        Decide on a CONNECT and answer it with CONNACK.

        @return: a Deferred firing with the client's session if it was let in,
            or C{None} after a refusal (the caller then closes the connection).
        """
        level = connect.protocol_level
        v5 = level == ProtocolVersion.MQTT_5
        config = self.config
        if config.server_reference is not None:
            # MQTT 5 section 4.11: send the client elsewhere, with the Server
            # Reference (3.2.2.3.16); 3.1.1 can only say 0x03 (unavailable).
            code = ReasonCode.SERVER_MOVED if config.server_moved else ReasonCode.USE_ANOTHER_SERVER
            return self._refuse(link, connect, code, Properties(server_reference=config.server_reference))
        props = connect.properties
        client_id = connect.client_id
        assigned = None
        if not client_id:
            if level == ProtocolVersion.MQTT_3_1 or (not v5 and not connect.clean_start):
                # [MQTT-3.1.3-8] 3.1.1 assigns an id only with a clean session.
                return self._refuse(link, connect, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            client_id = assigned = "mqttx-" + secrets.token_hex(8)
        method = None
        if props.authentication_method is not None:
            method = self._methods.get(props.authentication_method)
            if method is None:
                # [MQTT-4.12.0-1] A method not offered: CONNACK 0x8C, close.
                return self._refuse(link, connect, ReasonCode.BAD_AUTHENTICATION_METHOD)
        will = connect.will
        if will is not None:
            if not is_valid_topic_name(will.topic):
                if not v5:
                    # [MQTT-4.7.1-1] breaks section 3.1, and 3.1.1 has no
                    # return code for it: close without CONNACK [MQTT-3.1.4-1].
                    return succeed(None)
                return self._refuse(link, connect, ReasonCode.TOPIC_NAME_INVALID)
            if will.retain and not self.config.retain_available:
                # [MQTT-3.2.2-13]
                return self._refuse(link, connect, ReasonCode.RETAIN_NOT_SUPPORTED)
            if will.qos > config.maximum_qos:
                # [MQTT-3.2.2-12] CONNACK 0x9B; 3.1.1 has no such code, and
                # should answer with the nearest one (section 3.1.4): 0x03.
                return self._refuse(link, connect, ReasonCode.QOS_NOT_SUPPORTED)
            if will.properties.payload_format_indicator == 1 and config.validate_payload_format:
                if not is_utf8(will.payload):
                    # Section 3.1.3.2.3: a will declared UTF-8 that is not
                    # gets CONNACK 0x99 (only 5.0 wills have properties).
                    return self._refuse(
                        link,
                        connect,
                        ReasonCode.PAYLOAD_FORMAT_INVALID,
                        Properties(reason_string="will payload is not valid UTF-8"),
                    )
        server_keep_alive = None
        keepalive_max = self.config.keepalive_max
        if keepalive_max and (connect.keep_alive == 0 or connect.keep_alive > keepalive_max):
            if not v5:
                # 3.1.1 cannot be told another keep-alive: refuse, as Mosquitto does.
                return self._refuse(link, connect, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
            server_keep_alive = keepalive_max
        identity = link.identity
        if identity is not None:
            if identity.username is None:
                self.log.info(
                    "client certificate of {client_id!r} from {peer} has no common name for a user name",
                    client_id=client_id,
                    peer=link.peer,
                    listener=link.listener,
                    event_id="connect.no_certificate_name",
                )
                return self._refuse(link, connect, ReasonCode.NOT_AUTHORIZED)
            connect = replace(connect, username=identity.username, password=None)
        limiter = self._limiter
        if limiter is not None and limiter.blocked(source_host(link.peer)):
            # Too many failed authentications from this address lately:
            # refused without checking (no password hash spent on it).
            # 0x9F (connection rate exceeded); 3.1.1: 0x03 (unavailable).
            return self._refuse(link, connect, ReasonCode.CONNECTION_RATE_EXCEEDED)
        if method is not None:
            # Section 4.12: the method alone authenticates the client, over
            # AUTH packets; nothing is admitted before it succeeds.
            authentication = EnhancedAuthentication(method, link, client_id, connect.username)
            link.authentication = authentication
            outcome = authentication.authenticate(props.authentication_data)
            return outcome.addCallback(
                self._enhanced_authenticated, link, connect, client_id, assigned, server_keep_alive
            )
        if identity is not None:
            # The verified certificate authenticated the client.
            d: Deferred[int] = succeed(ReasonCode.SUCCESS)
        else:
            d = self.authenticator.authenticate(client_id, connect.username, connect.password, link.listener)
        return d.addCallback(self._authenticated, link, connect, client_id, assigned, server_keep_alive)

    def _enhanced_authenticated(
        self,
        outcome: AuthSuccess | AuthFailure | None,
        link: ClientLink,
        connect: Connect,
        client_id: str,
        assigned: str | None,
        server_keep_alive: int | None,
    ) -> Deferred[Session | None] | Session | None:
        if outcome is None:
            return None  # The connection closed during the exchange.
        if isinstance(outcome, AuthFailure):
            if self._limiter is not None:
                self._limiter.failed(source_host(link.peer))
            # [MQTT-4.12.0-4] CONNACK with the method's reason, then close.
            return self._refuse(link, connect, connack_code(outcome))
        return self._authenticated(ReasonCode.SUCCESS, link, connect, client_id, assigned, server_keep_alive)

    def _authenticated(
        self,
        code: int,
        link: ClientLink,
        connect: Connect,
        client_id: str,
        assigned: str | None,
        server_keep_alive: int | None,
    ) -> Deferred[Session | None] | Session | None:
        if code != ReasonCode.SUCCESS:
            if code == ReasonCode.BAD_USER_NAME_OR_PASSWORD and self._limiter is not None:
                self._limiter.failed(source_host(link.peer))
            return self._refuse(link, connect, ReasonCode(code))
        if self._host.stopping:
            return self._refuse(link, connect, ReasonCode.SERVER_UNAVAILABLE)
        return self._admit(link, connect, client_id, assigned, server_keep_alive)

    def _refuse(
        self, link: ClientLink, connect: Connect, code: ReasonCode, properties: Properties = NO_PROPERTIES
    ) -> Deferred[Session | None]:
        """
        Answer CONNECT with CONNACK C{code} (3.1/3.1.1: the nearest return
        code), and C{properties} for MQTT 5, with a Reason String describing
        the code unless they have one; the caller then closes.
        """
        self.log.info(
            "CONNACK {code.name} for {client_id!r} from {peer}",
            code=code,
            client_id=connect.client_id,
            peer=link.peer,
            listener=link.listener,
            protocol_level=connect.protocol_level,
            username=connect.username,
            reason=code.name.lower(),
            event_id="connect.refused",
        )
        self._host.stats_for(link.listener).connects[code.name.lower()] += 1
        if code in _AUTH_FAILURES:
            self._host.auth_failures += 1
        if connect.protocol_level == ProtocolVersion.MQTT_5:
            if properties.reason_string is None:
                properties = replace(properties, reason_string=describe(code) or None)
            link.send(ConnAck(False, code, properties))
        else:
            link.send(ConnAck(False, connack_code_v3(code)))
        return succeed(None)

    def _admit(
        self,
        link: ClientLink,
        connect: Connect,
        client_id: str,
        assigned: str | None,
        server_keep_alive: int | None,
    ) -> Session:
        host = self._host
        config = self.config
        level = connect.protocol_level
        v5 = level == ProtocolVersion.MQTT_5
        existing = host.sessions.get(client_id)
        if existing is not None and existing.link is not None:
            # [MQTT-3.1.4-3] Take the session over: close the old connection,
            # which loses its will as any abnormal end would.
            old = existing.link
            existing.link = None
            host.clients_connected -= 1
            old.close(ReasonCode.SESSION_TAKEN_OVER)
            self.log.info(
                "session {client_id!r} taken over by {peer}",
                client_id=client_id,
                peer=link.peer,
                event_id="session.takeover",
            )
            host.detach(existing)
            existing = host.sessions.get(client_id)
        if existing is not None and connect.clean_start:
            # [MQTT-3.1.2-4] Clean start discards the existing session.
            host.end_session(existing)
            existing = None

        if v5:
            requested = connect.properties.session_expiry_interval or 0
        else:
            requested = 0 if connect.clean_start else NEVER_EXPIRES
        expiry = min(requested, config.max_session_expiry)

        if existing is None:
            session = host.new_session(client_id, level, expiry)
            host.sessions[client_id] = session
            present = False
        else:
            session = existing
            present = True
            # [MQTT-3.1.3-9] A resumed session cancels a delayed will.
            session.cancel_timers()
            session.pending_will = None
            session.protocol_level = level
            session.expiry_interval = expiry

        session.will, session.will_delay = will_message(connect.will, client_id)
        session.send_quota = (
            connect.properties.receive_maximum or 65535 if v5 else config.max_inflight
        )
        session.disconnected_at = None
        session.link = link
        session.attached(link.listener, link.peer, connect.username)
        if self._authorizer is not None:
            access = session.access = self._authorizer.for_client(client_id, connect.username)
            will = session.will
            if will is not None and not access.can_publish(will.topic):
                # A will is a PUBLISH made for the client: one it may not
                # make is dropped, as its own would be; the client is let in.
                host.log_denial(client_id, "will", will.topic)
                session.will = None
        host.clients_connected += 1
        if host.clients_connected > host.clients_maximum:
            host.clients_maximum = host.clients_connected
        host.stats_for(link.listener).connects[CONNECT_ACCEPTED] += 1
        if server_keep_alive is not None:
            link.set_keep_alive(server_keep_alive)
        if session.persistent:
            session.stored = True
            self._store.save_session(session.record())
        elif session.stored:
            session.stored = False
            self._store.delete_session(client_id)

        props = NO_PROPERTIES
        if v5:
            props = connack_properties(self.config, connect, client_id, requested, expiry, assigned, server_keep_alive)
            authentication = link.authentication
            if authentication is not None:
                # [MQTT-4.12.0-5] The CONNECT's method, and its final data.
                props = replace(
                    props,
                    authentication_method=authentication.method_name,
                    authentication_data=authentication.final_data,
                )
        link.send(ConnAck(present, ReasonCode.SUCCESS, props))
        self.log.info(
            "client {client_id!r} connected from {peer} on {listener} (MQTT level {protocol_level}, "
            "user {username!r}, session present: {present})",
            client_id=client_id,
            peer=link.peer,
            listener=link.listener,
            protocol_level=level,
            username=connect.username,
            present=present,
            reason=CONNECT_ACCEPTED,
            event_id="client.connected",
        )
        if present:
            session.resend_inflight()
            session.drain()
        return session
