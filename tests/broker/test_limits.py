# -*- test-case-name: tests.broker.test_limits -*-
"""
Limits on SUBSCRIBE: C{max_topic_length} and C{max_topic_levels} on
filters, C{max_subscriptions} per session.
"""

from __future__ import annotations

from mqttx.config import MQTTConfig
from mqttx.mqtt.packets import SubAck, Subscribe, Subscription
from mqttx.mqtt.reason_codes import ReasonCode

from ..helpers import BrokerTestCase


class FilterLimitTests(BrokerTestCase):
    """A filter over the topic limits is refused; the others in the SUBSCRIBE stand."""

    def default_config(self) -> MQTTConfig:
        return MQTTConfig(max_topic_length=10, max_topic_levels=3)

    def subscribe_many(self, level: int, *filters: str) -> SubAck:
        client = self.connect_client("c", level)
        client.send(Subscribe(client.next_pid(), tuple(Subscription(f, 1) for f in filters)))
        self.client = client
        return client.expect(SubAck)

    def test_v5_long_filter_0x8f(self) -> None:
        """MQTT 5: a filter over C{max_topic_length} gets 0x8F (topic filter invalid)."""
        suback = self.subscribe_many(5, "a" * 11, "a" * 10)
        self.assertEqual(suback.reason_codes, (ReasonCode.TOPIC_FILTER_INVALID, 1))
        self.assertEqual(set(self.client.session.subscriptions), {"a" * 10})  # type: ignore[union-attr]

    def test_v5_deep_filter_0x8f(self) -> None:
        """MQTT 5: a filter with more than C{max_topic_levels} levels gets 0x8F."""
        suback = self.subscribe_many(5, "a/b/c/d", "a/+/#")
        self.assertEqual(suback.reason_codes, (ReasonCode.TOPIC_FILTER_INVALID, 1))

    def test_v311_refused_with_0x80(self) -> None:
        """3.1.1: both limits answer 0x80 (failure)."""
        suback = self.subscribe_many(4, "a" * 11, "a/b/c/d", "a/b")
        self.assertEqual(suback.reason_codes, (0x80, 0x80, 1))


class MaxSubscriptionsTests(BrokerTestCase):
    """C{max_subscriptions}."""

    def default_config(self) -> MQTTConfig:
        return MQTTConfig(max_subscriptions=2)

    def test_v5_beyond_limit_0x97(self) -> None:
        """
        MQTT 5: filters beyond the session's C{max_subscriptions} get 0x97
        (quota exceeded); replacing a subscription it holds still works.
        """
        client = self.connect_client("c", 5)
        self.assertEqual(client.subscribe("a").reason_codes, (0,))
        self.assertEqual(client.subscribe("b").reason_codes, (0,))
        self.assertEqual(client.subscribe("c").reason_codes, (ReasonCode.QUOTA_EXCEEDED,))
        self.assertEqual(client.subscribe("a", 1).reason_codes, (1,))
        client.unsubscribe("b")
        self.assertEqual(client.subscribe("c").reason_codes, (0,))

    def test_v311_beyond_limit_0x80(self) -> None:
        """3.1.1: 0x80 for the filters beyond the limit, in one SUBSCRIBE too."""
        client = self.connect_client("c", 4)
        client.send(Subscribe(client.next_pid(), tuple(Subscription(f, 0) for f in "abc")))
        self.assertEqual(client.expect(SubAck).reason_codes, (0, 0, 0x80))

    def test_default_limit(self) -> None:
        """The default allows 10,000 subscriptions per session."""
        self.assertEqual(MQTTConfig().max_subscriptions, 10_000)
