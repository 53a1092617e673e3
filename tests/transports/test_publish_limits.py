# -*- test-case-name: tests.transports.test_publish_limits -*-
"""
Tests for L{mqttx.transports.publish_limits}: L{PublishLimits} on its own,
with a fake connection and broker. Through the protocol, see
L{tests.transports.test_limits}.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.logger import Logger, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.broker import Broker
from mqttx.broker.session import Session
from mqttx.config import MQTTConfig
from mqttx.mqtt.packets import Publish
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.publish_limits import Publisher, PublishLimits


class FakePublisher:
    """A connection that records what L{PublishLimits} asks of it."""

    log = Logger()

    def __init__(self, limits: list[PublishLimits]) -> None:
        self.closed: list[tuple[int, str | None]] = []
        self.held: list[bool] = []
        self._limits = limits

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        self.closed.append((reason_code, reason_string))
        return succeed(None)

    def update_reading(self) -> None:
        self.held.append(self._limits[0].held)


class FakeBroker:
    def __init__(self) -> None:
        self.published: list[Publish] = []

    def publish(self, session: Any, packet: Publish) -> None:
        self.published.append(packet)


class FakeSession:
    client_id = "c1"


class PublishLimitsTests(SynchronousTestCase):
    def limits(self, **settings: Any) -> PublishLimits:
        self.clock = Clock()
        self.broker = FakeBroker()
        made: list[PublishLimits] = []
        self.publisher = FakePublisher(made)
        publisher: Publisher = self.publisher
        made.append(PublishLimits(publisher, dataclasses.replace(MQTTConfig(), **settings), self.clock))
        return made[0]

    def publish(self, limits: PublishLimits, topic: str = "t", payload: bytes = b"") -> None:
        limits.publish(cast(Broker, self.broker), cast(Session, FakeSession()), Publish(topic, payload))

    def test_needed(self) -> None:
        """
        Limits are needed with the default C{max_topic_levels}, or with a
        rate; not with every limit off.
        """
        off = dataclasses.replace(MQTTConfig(), max_topic_levels=0)
        self.assertTrue(PublishLimits.needed(MQTTConfig()))
        self.assertFalse(PublishLimits.needed(off))
        self.assertTrue(PublishLimits.needed(dataclasses.replace(off, max_publish_rate=1.0)))
        self.assertTrue(PublishLimits.needed(dataclasses.replace(off, max_publish_bytes_rate=1)))

    def test_topic_within_limits_published(self) -> None:
        """A topic within the limits goes to the broker, and nothing is held."""
        limits = self.limits(max_topic_levels=3, max_topic_length=10)
        self.publish(limits, "a/b/c")
        self.assertEqual([p.topic for p in self.broker.published], ["a/b/c"])
        self.assertEqual(self.publisher.closed, [])
        self.assertEqual(self.publisher.held, [])

    def test_topic_over_limits_closes(self) -> None:
        """
        A topic with too many levels, or too long, closes the connection
        with 0x90 and is not published; each is logged.
        """
        for topic, settings in [("a/b/c/d", {"max_topic_levels": 3}), ("a" * 11, {"max_topic_length": 10})]:
            limits = self.limits(**settings)
            with capturedLogs() as events:
                self.publish(limits, topic)
            self.assertEqual(self.broker.published, [])
            self.assertEqual(self.publisher.closed, [(ReasonCode.TOPIC_NAME_INVALID, "topic over the broker's limits")])
            self.assertEqual([e["event_id"] for e in events], ["publish.topic_limited"])

    def test_message_rate_holds_until_refilled(self) -> None:
        """
        With 2 messages/s, the third message in a second is published and
        holds the client for the half second that repays it.
        """
        limits = self.limits(max_publish_rate=2.0)
        self.publish(limits)
        self.publish(limits)
        self.assertFalse(limits.held)
        self.publish(limits)
        self.assertEqual(len(self.broker.published), 3)
        self.assertEqual(self.publisher.held, [True])
        self.clock.advance(0.49)
        self.assertTrue(limits.held)
        self.clock.advance(0.01)
        self.assertFalse(limits.held)
        self.assertEqual(self.publisher.held, [True, False])

    def test_byte_rate_counts_topic_and_payload(self) -> None:
        """
        With 100 bytes/s, a message of 1 + 299 bytes holds the client for
        two seconds.
        """
        limits = self.limits(max_publish_bytes_rate=100)
        self.publish(limits, "t", b"x" * 299)
        self.assertTrue(limits.held)
        self.clock.advance(1.99)
        self.assertTrue(limits.held)
        self.clock.advance(0.01)
        self.assertFalse(limits.held)

    def test_held_once(self) -> None:
        """More messages while held schedule no second release."""
        limits = self.limits(max_publish_rate=1.0)
        for _ in range(3):
            self.publish(limits)
        self.assertEqual(self.publisher.held, [True])
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_stop_cancels_release(self) -> None:
        """L{PublishLimits.stop} leaves no timer behind."""
        limits = self.limits(max_publish_rate=1.0)
        self.publish(limits)
        self.publish(limits)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        limits.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        limits.stop()
