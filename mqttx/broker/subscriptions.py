# -*- test-case-name: tests.broker.test_broker -*-
"""
SUBSCRIBE and UNSUBSCRIBE: the subscription checks, SUBACK and UNSUBACK,
and the retained messages a new subscription is sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from mqttx.interfaces import IAuthorizer, IStore
from mqttx.mqtt.packet_type import ProtocolVersion
from mqttx.mqtt.packets import SubAck, Subscribe, UnsubAck, Unsubscribe
from mqttx.mqtt.properties import NO_PROPERTIES
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.mqtt.topics import SHARE_PREFIX, parse_shared

from .limits import filter_refusal
from .message import Message
from .replies import suback_refusals
from .retained import RetainedIndex
from .router import Router
from .session import Session
from .state import SubscriptionEntry

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from mqttx.config import MQTTConfig


class SubscriptionHost(Protocol):
    """What L{Subscriptions} needs of the broker."""

    router: Router
    retained: RetainedIndex[Message]

    def log_denial(self, client_id: str, action: str, topic: str) -> None:
        """Log a denial once per client, action and topic."""


class Subscriptions:
    """
    Handles SUBSCRIBE and UNSUBSCRIBE for the broker.

    @param config: the C{mqtt} section of the configuration.
    @param host: the broker, whose router and retained index are changed
        and read.
    @param store: where persistent sessions are saved.
    @param clock: the time source, for the expiry of retained messages.
    @param authorizer: decides which topics each client may subscribe to,
        or C{None} to allow everything.
    @param may_read: whether a session's client may receive a message of a
        topic (called only with an authorizer set).
    """

    def __init__(
        self,
        config: MQTTConfig,
        host: SubscriptionHost,
        *,
        store: IStore,
        clock: IReactorTime,
        authorizer: IAuthorizer | None,
        may_read: Callable[[Session, str], bool],
    ) -> None:
        self.config = config
        self.router = host.router
        self.retained = host.retained
        self.log_denial = host.log_denial
        self._store = store
        self._clock = clock
        self._authorizer = authorizer
        self._may_read = may_read

    def subscribe(self, session: Session, packet: Subscribe) -> None:
        """
        Add subscriptions, answer SUBACK, then send the retained messages
        the new subscriptions match ([MQTT-3.8.4-4]).
        """
        link = session.link
        if link is None:
            return
        v5 = link.protocol_level == ProtocolVersion.MQTT_5
        ids = packet.properties.subscription_identifier
        sub_id = ids[0] if ids else None
        codes: list[int] = []
        wants_retained: list[SubscriptionEntry] = []
        maximum_qos = self.config.maximum_qos
        wildcards = self.config.wildcard_subscriptions
        for sub in packet.subscriptions:
            topic_filter = sub.topic_filter
            shared = topic_filter.startswith(SHARE_PREFIX)
            if shared:
                refused = self._refuse_share(topic_filter, v5)
                if refused:
                    codes.append(refused)
                    continue
            if not wildcards and ("+" in topic_filter or "#" in topic_filter):
                # Wildcard Subscription Available 0 (MQTT 5 section
                # 3.2.2.3.11): the filter is refused, the others stand.
                codes.append(ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED if v5 else 0x80)
                continue
            access = session.access
            if self._authorizer is not None and (access is None or not access.can_subscribe(topic_filter)):
                # SUBACK 0x87 Not authorized (section 3.9.3); 3.1.1 has only
                # 0x80 Failure (section 3.9.3). The other filters stand.
                self.log_denial(session.client_id, "subscribe", topic_filter)
                codes.append(ReasonCode.NOT_AUTHORIZED if v5 else 0x80)
                continue
            refused = filter_refusal(self.config, session.subscriptions, topic_filter, v5)
            if refused:
                # Topic length and level limits, max_subscriptions.
                codes.append(refused)
                continue
            # [MQTT-3.2.2-10] Any requested QoS is accepted, and granted at
            # most the Maximum QoS (3.1.1 section 3.8.4 allows a lower grant).
            qos = sub.qos if sub.qos <= maximum_qos else maximum_qos
            entry = SubscriptionEntry(
                topic_filter, qos, sub.no_local, sub.retain_as_published, sub.retain_handling, sub_id
            )
            existed = self.router.subscribe(session.client_id, entry)
            session.subscriptions[topic_filter] = entry
            codes.append(qos)
            if shared:
                # Section 3.3.1.3: retained messages go to new Non-shared
                # Subscriptions only.
                continue
            # [MQTT-3.3.1-9..11] Retain Handling 0: always, 1: if new, 2: never.
            if sub.retain_handling == 0 or (sub.retain_handling == 1 and not existed):
                wants_retained.append(entry)
        if session.persistent:
            self._store.save_session(session.record())
        refusals = suback_refusals(packet, codes) if v5 else NO_PROPERTIES
        link.send(SubAck(packet.packet_id, tuple(codes), refusals))
        now = self._clock.seconds()
        for entry in wants_retained:
            self._send_retained(session, entry, now)

    def _refuse_share(self, topic_filter: str, v5: bool) -> int:
        """
        The SUBACK failure code for a C{$share/} filter, or 0 to accept it:
        0x9E when shared subscriptions are turned off, 0x8F for an invalid
        share [MQTT-4.8.2-1] [MQTT-4.8.2-2]; 3.1.1 has only 0x80.
        """
        if not self.config.shared_subscriptions:
            return ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED if v5 else 0x80
        try:
            parse_shared(topic_filter)
        except ValueError:
            return ReasonCode.TOPIC_FILTER_INVALID if v5 else 0x80
        return 0

    def _send_retained(self, session: Session, entry: SubscriptionEntry, now: float) -> None:
        ids = () if entry.subscription_id is None else (entry.subscription_id,)
        for topic, message in self.retained.match(entry.topic_filter):
            if message.expires_at is not None and message.expires_at <= now:
                self.retained.discard(topic)
                self._store.delete_retained(topic)
                continue
            if self._authorizer is not None and not self._may_read(session, topic):
                continue
            # [MQTT-3.3.1-8] Sent because of a new subscription: RETAIN=1.
            session.deliver(message, min(message.qos, entry.qos), True, ids, {})

    def unsubscribe(self, session: Session, packet: Unsubscribe) -> None:
        """Remove subscriptions and answer UNSUBACK [MQTT-3.10.4-4]."""
        link = session.link
        if link is None:
            return
        codes: list[int] = []
        for topic_filter in packet.topic_filters:
            if session.subscriptions.pop(topic_filter, None) is not None:
                self.router.unsubscribe(session.client_id, topic_filter)
                codes.append(ReasonCode.SUCCESS)
            else:
                codes.append(ReasonCode.NO_SUBSCRIPTION_EXISTED)
        if session.persistent:
            self._store.save_session(session.record())
        link.send(UnsubAck(packet.packet_id, tuple(codes)))
