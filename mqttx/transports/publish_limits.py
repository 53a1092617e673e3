# -*- test-case-name: tests.transports.test_publish_limits -*-
"""
The limits on what one client may publish, checked as its PUBLISH packets
are read: C{max_topic_length} and C{max_topic_levels}, C{max_publish_rate}
and C{max_publish_bytes_rate}.
"""

from __future__ import annotations

import sys
from typing import Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from mqttx.broker.broker import Broker
from mqttx.broker.limits import topic_checked
from mqttx.broker.session import Session
from mqttx.config import MQTTConfig
from mqttx.mqtt.packets import Publish
from mqttx.mqtt.reason_codes import ReasonCode

__all__ = ["PublishLimits", "Publisher"]


class Publisher(Protocol):
    """What L{PublishLimits} uses of the connection it checks."""

    @property
    def log(self) -> Logger:
        """The connection's logger."""

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        """Close the connection with C{reason_code}."""

    def update_reading(self) -> None:
        """Pause or resume reading the client, as L{PublishLimits.held} (among others) now wants."""


class PublishLimits:
    """
    The PUBLISH limits of one connection. Its L{publish} takes the place of
    L{Broker.publish} as the connection's PUBLISH handler, and only when
    L{needed}: no cost when the limits are off.

    A topic over C{max_topic_length} or C{max_topic_levels} closes the
    connection (MQTT 5 with DISCONNECT 0x90, topic name invalid). Over
    C{max_publish_rate} or C{max_publish_bytes_rate}, the message is handled
    and the client is L{held}, not read again, until its token buckets have
    refilled; nothing is dropped. The buckets hold one second's worth: a
    burst of that much passes.

    @ivar held: whether the client is over its publish rate now.
    """

    def __init__(self, publisher: Publisher, config: MQTTConfig, clock: IReactorTime) -> None:
        self.held = False
        self._publisher = publisher
        self._clock = clock
        self._call: IDelayedCall | None = None
        # A topic has more than max_topic_levels levels when it has more
        # than this many '/'.
        self._max_topic_length = config.max_topic_length
        self._max_separators = config.max_topic_levels - 1 if config.max_topic_levels else sys.maxsize
        self._msg_rate = config.max_publish_rate
        self._byte_rate = float(config.max_publish_bytes_rate)
        self._rated = bool(self._msg_rate or self._byte_rate)
        self._msg_tokens = self._msg_rate
        self._byte_tokens = self._byte_rate
        self._tokens_at = clock.seconds()

    @staticmethod
    def needed(config: MQTTConfig) -> bool:
        """Whether C{config} sets any PUBLISH limit."""
        return topic_checked(config) or bool(config.max_publish_rate or config.max_publish_bytes_rate)

    def publish(self, broker: Broker, session: Session, packet: Publish) -> None:
        """Check a PUBLISH of C{session}'s client, then hand it to C{broker}."""
        topic = packet.topic
        length = len(topic)
        separators = self._max_separators
        # Separators are counted only when the topic is long enough to have too many.
        if length > self._max_topic_length or (length > separators and topic.count("/") > separators):
            self._publisher.log.info(
                "PUBLISH topic over the topic limits from {client_id!r} ({length} characters)",
                client_id=session.client_id,
                length=len(topic),
                event_id="publish.topic_limited",
            )
            self._publisher.close(ReasonCode.TOPIC_NAME_INVALID, "topic over the broker's limits")
            return
        if self._rated:
            self._charge(len(topic) + len(packet.payload))
        broker.publish(session, packet)

    def stop(self) -> None:
        """The connection is gone: cancel the timer that would release it."""
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None

    def _charge(self, size: int) -> None:
        """Take one message of C{size} bytes from the client's buckets."""
        now = self._clock.seconds()
        elapsed = now - self._tokens_at
        self._tokens_at = now
        wait = 0.0
        rate = self._msg_rate
        if rate:
            tokens = min(rate, self._msg_tokens + elapsed * rate) - 1.0
            self._msg_tokens = tokens
            if tokens < 0:
                wait = -tokens / rate
        rate = self._byte_rate
        if rate:
            tokens = min(rate, self._byte_tokens + elapsed * rate) - size
            self._byte_tokens = tokens
            if tokens < 0:
                wait = max(wait, -tokens / rate)
        if wait > 0 and not self.held:
            self.held = True
            self._publisher.update_reading()
            self._call = self._clock.callLater(wait, self._release)

    def _release(self) -> None:
        self._call = None
        self.held = False
        self._publisher.update_reading()
