# -*- test-case-name: tests.broker.test_bridge -*-
"""
The bridge API: how the HTTP and CoAP bridges enter the broker.

A bridge origin is an in-process virtual MQTT 5 client. Its L{BridgeLink}
(in L{mqttx.broker.bridge_link}) is a L{ClientLink} like a socket connection's, admitted with
L{Broker.connect} (so authentication, the auth-failure limiter, takeover,
ACLs, limits, flow control, persistence, logs and per-listener stats all
apply as to an MQTT client). Packets the broker sends it are handled as
objects; the PUBLISH frames it writes (from the shared frame cache) are
decoded as an MQTT 5 client would and handed to the consumer's callback,
then acknowledged by the link itself.

    bridge = Bridge(broker)
    client = await bridge.connect(Origin("http", "127.0.0.1:53122", "", "alice", b"secret"))
    await client.publish("a/b", b"hello", qos=1)
    codes = await client.subscribe([("a/#", 1)], deliver)
    kept = client.retained("a/b")   # read one retained message, no subscription

Every refusal is a L{BridgeError} with the MQTT 5 reason code that says why.
Nothing ends a bridge client for being slow (the broker drops its QoS 0
messages over the allowance and stops holding publishers for it), and it
has no keep-alive; L{BridgeClient.closed} says when the broker ended it.
"""

from __future__ import annotations

import hmac
import math
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from mqttx.mqtt._wire import encode_properties, encode_vbi
from mqttx.mqtt.packet_type import PacketType, ProtocolVersion
from mqttx.mqtt.packets import Connect, Publish, Subscription
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.mqtt.topics import SHARE_PREFIX, is_valid_topic_filter, is_valid_topic_name

from .admission import VerifiedIdentity
from .bridge_link import BridgeError, BridgeLink, Delivery
from .limits import topic_checked, topic_over_limits
from .replies import is_utf8
from .session import Session

if TYPE_CHECKING:
    from .broker import Broker

__all__ = ["Bridge", "BridgeClient", "BridgeError", "BridgeLink", "Delivery", "Origin", "new_client_id"]

#: Seconds a client of L{Bridge.publish_once} stays admitted after its last use.
IDLE_TIMEOUT = 60.0


def new_client_id(prefix: str) -> str:
    """A fresh client identifier: C{"{prefix}-{16 random hex digits}"}."""
    return f"{prefix}-{secrets.token_hex(8)}"


@dataclass(frozen=True, slots=True)
class Origin:
    """
    Who publishes or subscribes through a bridge.

    @ivar listener: the bridge listener's name (authentication and stats
        are per listener).
    @ivar peer: the client's address, for logs and the auth-failure limiter,
        e.g. C{"127.0.0.1:53122"}.
    @ivar client_id: the virtual client's identifier; empty for a new one
        (L{new_client_id} with the listener's name as prefix).
    @ivar username: the user name checked by the broker's authenticator.
    @ivar password: the password checked with it.
    @ivar verified: the bridge vouches for C{username} itself (a CoAP
        source-address rule): the broker checks no password, as for a TLS
        client certificate, and the user name counts for ACLs.
    """

    listener: str
    peer: str
    client_id: str = ""
    username: str | None = None
    password: bytes | None = None
    verified: bool = False


class BridgeClient:
    """
    An admitted virtual client: one MQTT session.

    @ivar client_id: its client identifier.
    @ivar session_present: whether it resumed a stored session.
    @ivar closed: fires with the reason code once the client is over:
        after L{close} (0x00), or when the broker ended it (0x8E session
        taken over, 0x98 administrative action, 0x8B shutdown, ...).
    """

    def __init__(self, bridge: Bridge, link: BridgeLink, client_id: str, session_present: bool) -> None:
        self.client_id = client_id
        self.session_present = session_present
        self.link = link
        self.closed: Deferred[ReasonCode] = link.closed
        self._bridge = bridge

    @property
    def ended(self) -> bool:
        """Whether the client is over."""
        return self.link.ended

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> Deferred[None]:
        """
        Publish a message. While the broker holds this client for flow
        control, or its QoS 1/2 window is full, it waits its turn.

        @return: fires when the broker accepted it: QoS 0 once routed, QoS 1
            on PUBACK (after the store write, when persistence says so),
            QoS 2 on PUBCOMP. Fails with L{BridgeError} (0x87 ACL, 0x90 bad
            topic, 0x95 too large, 0x97 quota, 0x9A retain unsupported,
            0x9B QoS unsupported, 0x99 payload not UTF-8, ...).
        """
        link = self.link
        if link.ended:
            return fail(BridgeError(link.close_code or ReasonCode.UNSPECIFIED_ERROR, "client closed"))
        refusal = self._bridge.check_publish(topic, payload, qos, retain, properties)
        if refusal is not None:
            return fail(refusal)
        session = link.session
        if qos == 0 and session is not None and session.access is not None and not session.access.can_publish(topic):
            # An MQTT client's QoS 0 PUBLISH is dropped unanswered; a
            # bridge can say so (the broker says it for QoS 1/2).
            link.broker.log_denial(session.client_id, "publish", topic)
            return fail(BridgeError(ReasonCode.NOT_AUTHORIZED, f"publish to {topic[:100]!r} not authorized"))
        return link.submit(Publish(topic, payload, qos, retain, False, None, properties))

    def subscribe(
        self,
        filters: Sequence[tuple[str, int]],
        deliver: Callable[[Delivery], None],
        *,
        retain_handling: int = 0,
    ) -> Deferred[tuple[int, ...]]:
        """
        Subscribe to C{filters} (topic filter, QoS). C{deliver} is called
        for each message, retained ones first, and for what a resumed
        session had queued; it replaces an earlier callback. QoS 1/2
        deliveries are acknowledged once it returns.

        @param retain_handling: MQTT 5's Retain Handling option (section
            3.8.3.1): 0 sends the matching retained messages, 1 only for a
            filter the session was not subscribed to already (a resumed
            session does not get them again), 2 never.

        @return: fires with the granted QoS or refusal code per filter
            (SUBACK: 0x87 not authorized, 0x8F invalid, 0x97 quota, ...).
            It is fired before any message is delivered, but retained
            messages and what a resumed session kept are delivered within
            this call, so before callbacks added to it afterwards (an
            C{await}) run. Fails with L{BridgeError} 0x8F for a malformed
            filter.
        """
        link = self.link
        if link.ended:
            return fail(BridgeError(link.close_code or ReasonCode.UNSPECIFIED_ERROR, "client closed"))
        subscriptions = []
        for topic_filter, qos in filters:
            checked = topic_filter
            if topic_filter.startswith(SHARE_PREFIX):
                checked = topic_filter[len(SHARE_PREFIX) :].partition("/")[2] or "x"
            if not is_valid_topic_filter(checked):
                return fail(BridgeError(ReasonCode.TOPIC_FILTER_INVALID, f"invalid topic filter {topic_filter!r}"))
            if qos not in (0, 1, 2):
                return fail(BridgeError(ReasonCode.MALFORMED_PACKET, "QoS must be 0, 1 or 2"))
            subscriptions.append(Subscription(topic_filter, qos, retain_handling=retain_handling))
        if not subscriptions:
            return fail(BridgeError(ReasonCode.PROTOCOL_ERROR, "no topic filter"))
        # What a resumed session kept and the retained messages of the new
        # subscriptions reach the consumer after its SUBACK.
        was_delivering = link.delivering
        link.delivering = True
        try:
            link.start_delivering(deliver)
            d = link.subscribe(tuple(subscriptions))
        finally:
            link.delivering = was_delivering
        if not was_delivering:
            link.deliver_frames()
        return d

    def unsubscribe(self, filters: Sequence[str]) -> Deferred[None]:
        """Unsubscribe from C{filters}; fires with UNSUBACK."""
        link = self.link
        if link.ended:
            return fail(BridgeError(link.close_code or ReasonCode.UNSPECIFIED_ERROR, "client closed"))
        for topic_filter in filters:
            checked = topic_filter
            if topic_filter.startswith(SHARE_PREFIX):
                checked = topic_filter[len(SHARE_PREFIX) :].partition("/")[2] or "x"
            if not is_valid_topic_filter(checked):
                return fail(BridgeError(ReasonCode.TOPIC_FILTER_INVALID, f"invalid topic filter {topic_filter!r}"))
        return link.unsubscribe(tuple(filters))

    def retained(self, topic: str, qos: int = 2) -> Delivery | None:
        """
        The retained message of C{topic} as a subscription of this client
        to C{topic} would receive it, without subscribing: RETAIN set, at
        most C{qos}, Message Expiry Interval the time it has left
        ([MQTT-3.3.2-6]). Nothing is sent through the session, nor counted
        as sent. A read (a CoAP GET) needs no admission of its own.

        @return: the message, or C{None} if there is none (or it expired).
        @raise BridgeError: 0x87 if the client may not read C{topic} (ACL;
            C{$SYS} only for admins, with an authorizer set), 0x90 for an
            invalid topic name (a wildcard filter is not one topic), as
            L{publish} does once the client is over.
        """
        link = self.link
        session = link.session
        if link.ended or session is None:
            raise BridgeError(link.close_code or ReasonCode.UNSPECIFIED_ERROR, "client closed")
        if not is_valid_topic_name(topic):
            raise BridgeError(ReasonCode.TOPIC_NAME_INVALID, f"invalid topic name {topic[:100]!r}")
        access = session.access
        # With an authorizer, every admitted session has its access (the
        # broker grants everything without one, as for deliveries).
        if access is not None and not access.can_read(topic):
            link.broker.log_denial(session.client_id, "read", topic)
            raise BridgeError(ReasonCode.NOT_AUTHORIZED, f"read of {topic[:100]!r} not authorized")
        broker = link.broker
        message = broker.retained.get(topic)
        if message is None or not message.payload:
            return None
        props = message.properties
        if message.expires_at is not None:
            left = message.expires_at - broker.clock.seconds()
            if left <= 0:
                return None
            props = replace(props, message_expiry_interval=math.ceil(left))
        return Delivery(topic, message.payload, min(message.qos, qos), True, props)

    def pause(self) -> None:
        """The consumer cannot take more now: it is a slow consumer until L{resume}."""
        self.link.set_consumer_paused(True)

    def resume(self) -> None:
        """The consumer can take messages again: what waited is delivered."""
        self.link.set_consumer_paused(False)

    def close(self) -> None:
        """A normal DISCONNECT: the session stays if it has an expiry."""
        self.link.disconnect()


#: A cached client's key: listener, user name, HMAC of the password, client id.
_Key = tuple[str, str | None, bytes | None, str, bool]
_T = TypeVar("_T")


@dataclass(slots=True)
class _Cached:
    """A client of L{Bridge.publish_once}, or its admission in progress."""

    client: BridgeClient | None = None
    waiters: list[Deferred[BridgeClient]] | None = None
    used_at: float = 0.0
    timer: IDelayedCall | None = None


class Bridge:
    """
    The bridges' way into one broker.

    @param broker: the broker.
    @param clock: the clock of the idle time of L{publish_once} clients;
        the broker's by default.
    @param idle_timeout: seconds a L{publish_once} client stays admitted
        after its last use.
    """

    log = Logger()

    def __init__(
        self, broker: Broker, clock: IReactorTime | None = None, idle_timeout: float = IDLE_TIMEOUT
    ) -> None:
        self.broker = broker
        self._clock = clock if clock is not None else broker.clock
        self._idle = idle_timeout
        # Cached publish_once clients by (listener, user name, HMAC of the
        # password, client id): a key that lives only in this process, so
        # the cache holds no password nor a hash anyone could test guesses on.
        self._key = secrets.token_bytes(32)
        self._cache: dict[_Key, _Cached] = {}

    def connect(
        self, origin: Origin, *, clean_start: bool = True, session_expiry: int = 0, keep_alive: int = 0
    ) -> Deferred[BridgeClient]:
        """
        Admit a virtual client (CONNECT), as the broker admits any.

        @param session_expiry: seconds the session outlives the client; a
            persistent session resumed (C{clean_start} false) gets what was
            queued for it once it subscribes.
        @return: fires with the admitted client; fails with L{BridgeError}
            carrying the CONNACK's refusal (0x86 bad user name or password,
            0x87 not authorized, 0x85 client identifier not valid, 0x88
            server unavailable, 0x9F connection rate exceeded, ...).
        """
        broker = self.broker
        client_id = origin.client_id or new_client_id(origin.listener)
        if len(client_id) > broker.config.max_client_id_length:
            return fail(BridgeError(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID, "client identifier too long"))
        link = BridgeLink(broker, origin.listener, origin.peer, origin.username)
        if origin.verified and origin.username is not None:
            link.identity = VerifiedIdentity(origin.username)
        props = Properties(session_expiry_interval=session_expiry) if session_expiry else NO_PROPERTIES
        connect = Connect(
            client_id,
            ProtocolVersion.MQTT_5,
            "MQTT",
            clean_start,
            keep_alive,
            origin.username,
            origin.password,
            None,
            props,
        )
        d = broker.connect(link, connect)
        return d.addCallbacks(self._admitted, self._failed, callbackArgs=(link, client_id), errbackArgs=(link,))

    def _admitted(self, session: Session | None, link: BridgeLink, client_id: str) -> BridgeClient:
        connack = link.connack
        if session is None:
            link.end(ReasonCode.UNSPECIFIED_ERROR)
            code = connack.reason_code if connack is not None else ReasonCode.UNSPECIFIED_ERROR
            reason = connack.properties.reason_string if connack is not None else None
            raise BridgeError(code, reason)
        if link.ended:
            # Ended while the broker decided (shut down, taken over).
            self.broker.connection_lost(session, link)
            raise BridgeError(link.close_code or ReasonCode.UNSPECIFIED_ERROR, "client closed while connecting")
        link.admitted(session)
        present = connack is not None and connack.session_present
        return BridgeClient(self, link, client_id, present)

    def _failed(self, failure: Failure, link: BridgeLink) -> Failure:
        self.log.failure(
            "failed admitting a bridge client from {peer}", failure, peer=link.peer, event_id="broker.error"
        )
        link.end(ReasonCode.UNSPECIFIED_ERROR)
        return Failure(BridgeError(ReasonCode.UNSPECIFIED_ERROR, "admission failed"))

    def check_publish(
        self, topic: str, payload: bytes, qos: int, retain: bool, properties: Properties
    ) -> BridgeError | None:
        """
        What the broker's MQTT connection checks of an inbound PUBLISH
        before the broker sees it, as a refusal, or C{None} if it passes.
        """
        config = self.broker.config
        if qos not in (0, 1, 2):
            return BridgeError(ReasonCode.MALFORMED_PACKET, "QoS must be 0, 1 or 2")
        if qos > config.maximum_qos:
            return BridgeError(ReasonCode.QOS_NOT_SUPPORTED, f"QoS {qos} is above the maximum {config.maximum_qos}")
        if not is_valid_topic_name(topic):
            return BridgeError(ReasonCode.TOPIC_NAME_INVALID, f"invalid topic name {topic[:100]!r}")
        if topic_checked(config) and topic_over_limits(config, topic):
            return BridgeError(ReasonCode.TOPIC_NAME_INVALID, "topic over the broker's limits")
        if retain and not config.retain_available:
            return BridgeError(ReasonCode.RETAIN_NOT_SUPPORTED)
        if properties is not NO_PROPERTIES:
            if properties.topic_alias is not None or properties.subscription_identifier:
                return BridgeError(ReasonCode.PROTOCOL_ERROR, "no topic alias or subscription identifier on a publish")
            if properties.payload_format_indicator == 1 and config.validate_payload_format and not is_utf8(payload):
                return BridgeError(ReasonCode.PAYLOAD_FORMAT_INVALID, "payload is not valid UTF-8")
            try:
                props_size = len(encode_properties(properties, PacketType.PUBLISH))
            except ValueError as e:
                return BridgeError(ReasonCode.PROTOCOL_ERROR, str(e))
        else:
            props_size = 1
        body = 2 + len(topic.encode("utf-8")) + (2 if qos else 0) + props_size + len(payload)
        size = 1 + len(encode_vbi(min(body, 268_435_455))) + body
        if size > config.max_packet_size:
            return BridgeError(
                ReasonCode.PACKET_TOO_LARGE,
                f"{size} byte message exceeds the maximum packet size {config.max_packet_size}",
            )
        return None

    def publish_once(
        self,
        origin: Origin,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> Deferred[None]:
        """
        Publish one message for a one-shot publisher (an HTTP or CoAP
        request), through a client admitted for its credentials and kept
        for L{IDLE_TIMEOUT} seconds after its last use, so that a password
        is not verified on every request. Refused credentials are never
        kept; a kept client the broker ends (taken over, kicked) is dropped.

        @return: as L{BridgeClient.publish}; also fails with the
            admission's L{BridgeError}.
        """
        refusal = self.check_publish(topic, payload, qos, retain, properties)
        if refusal is not None:
            return fail(refusal)
        d = self.cached_client(origin)
        return d.addCallback(lambda client: client.publish(topic, payload, qos, retain, properties))

    def cached_client(self, origin: Origin) -> Deferred[BridgeClient]:
        """The cached client for C{origin}'s credentials, admitted if need be (see L{publish_once})."""
        secret = None if origin.password is None else hmac.digest(self._key, origin.password, "sha256")
        # verified: a request claiming a rule's user name without being
        # vouched for must never get the vouched-for client.
        key = (origin.listener, origin.username, secret, origin.client_id, origin.verified)
        entry = self._cache.get(key)
        now = self._clock.seconds()
        if entry is not None:
            entry.used_at = now
            if entry.client is not None:
                if not entry.client.ended:
                    return succeed(entry.client)
            elif entry.waiters is not None:
                waiter: Deferred[BridgeClient] = Deferred()
                entry.waiters.append(waiter)
                return waiter
        entry = self._cache[key] = _Cached(waiters=[], used_at=now)
        d = self.connect(origin)
        d.addBoth(self._admission_done, key, entry)
        return d

    def _admission_done(
        self, result: BridgeClient | Failure, key: _Key, entry: _Cached
    ) -> BridgeClient | Failure:
        """
        The admission of a cached client is over: keep the client (until the
        broker ends it or it idles) or forget the refusal, and pass the
        result on to the requests that waited for it.
        """
        waiters, entry.waiters = entry.waiters or [], None
        if isinstance(result, Failure):
            self._uncache(None, key, entry)
        else:
            entry.client = result
            result.closed.addCallback(self._uncache, key, entry)
            entry.timer = self._clock.callLater(self._idle, self._idle_check, key, entry)
        for waiter in waiters:
            waiter.callback(result)  # A Failure runs the waiter's errbacks.
        return result

    def _uncache(self, passed: _T, key: _Key, entry: _Cached) -> _T:
        if self._cache.get(key) is entry:
            del self._cache[key]
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.timer = None
        return passed

    def _idle_check(self, key: _Key, entry: _Cached) -> None:
        entry.timer = None
        left = entry.used_at + self._idle - self._clock.seconds()
        if left > 0:
            entry.timer = self._clock.callLater(left, self._idle_check, key, entry)
            return
        if entry.client is not None:
            entry.client.close()  # Drops it from the cache.

    @property
    def cached(self) -> int:
        """How many L{publish_once} clients are admitted or being admitted now."""
        return len(self._cache)

    def close_cached(self) -> None:
        """Close every cached L{publish_once} client (the bridge listener stops)."""
        for entry in list(self._cache.values()):
            if entry.client is not None:
                entry.client.close()
