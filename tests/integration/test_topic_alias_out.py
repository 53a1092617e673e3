# -*- test-case-name: tests.integration.test_topic_alias_out -*-
"""
Outbound topic aliases over real TCP (MQTT 5 section 3.3.2.3.4): the broker
aliases the topics it sends to a client that announced a Topic Alias
Maximum, replacing the least recently used alias once all are taken.

paho-mqtt 2.2 hands a PUBLISH to the application as it came, with an empty
topic name and the Topic Alias property when the broker sent an alias
alone, so these tests resolve aliases as a receiver must: a PUBLISH with a
topic name and an alias sets the mapping, one with an empty topic name uses
it. mosquitto_sub (libmosquitto) resolves them itself.
"""

from __future__ import annotations

from typing import Any

from mqttx.mqtt.packets import PubAck, Publish, SubAck, Subscribe, Subscription
from mqttx.mqtt.properties import Properties

from .helpers import V5, V311, IntegrationTestCase, PahoClient, Received

#: Six topics published in an order that keeps evicting aliases from a
#: client that takes three: every topic is replaced, and comes back.
TOPICS = [f"alias/sensors/building-{n}/temperature" for n in range(6)]
ORDER = [0, 1, 2, 0, 3, 1, 4, 0, 5, 2, 2, 3, 4, 5, 0, 1] * 3


def lru_counts(order: list[int], maximum: int) -> tuple[int, int, int]:
    """
    How many PUBLISH an LRU alias table of C{maximum} entries sends for
    C{order} with the topic name, with the alias alone, and replacing an
    alias: the reference the broker is held to, computed independently.
    """
    recent: list[int] = []  # topics holding an alias, least recently used first
    named = alone = replaced = 0
    for topic in order:
        if topic in recent:
            recent.remove(topic)
            alone += 1
        else:
            named += 1
            if len(recent) == maximum:
                recent.pop(0)
                replaced += 1
        recent.append(topic)
    return named, alone, replaced


class Resolver:
    """
    The receiving side of topic aliases: what a client must do with the
    PUBLISH it gets (section 3.3.2.3.4). Fails the test on an alias it
    cannot resolve.
    """

    def __init__(self, case: IntegrationTestCase, maximum: int) -> None:
        self.case = case
        self.maximum = maximum
        self.mapping: dict[int, str] = {}
        #: Counts: PUBLISH with a topic name and an alias, with the alias
        #: alone, and mappings that replaced another topic.
        self.set = self.used = self.replaced = 0

    def topic(self, message: Received) -> str:
        alias = getattr(message.properties, "TopicAlias", None)
        if alias is None:
            self.case.assertTrue(message.topic, "a PUBLISH without alias has a topic name")
            return message.topic
        # [MQTT-3.3.2-8] [MQTT-3.3.2-11]
        self.case.assertTrue(1 <= alias <= self.maximum, f"alias {alias} out of 1..{self.maximum}")
        if message.topic:
            old = self.mapping.get(alias)
            if old is not None and old != message.topic:
                self.replaced += 1
            self.mapping[alias] = message.topic
            self.set += 1
            return message.topic
        self.case.assertIn(alias, self.mapping, "alias used before it was set")
        self.used += 1
        return self.mapping[alias]


class OutboundTopicAliasTests(IntegrationTestCase):
    """A paho MQTT 5 subscriber that takes topic aliases."""

    version = V5

    def aliasing(self, client_id: str, maximum: int, **kwargs: Any) -> PahoClient:
        return self.paho(client_id, connect_properties={"TopicAliasMaximum": maximum}, **kwargs)

    async def test_many_messages_over_more_topics_than_aliases(self) -> None:
        """
        A subscriber with Topic Alias Maximum 3 gets 48 QoS 1 messages on six
        topics: each resolves to the topic it was published on, in order;
        aliases stay within 1..3 [MQTT-3.3.2-11], most messages carry the
        alias alone, and aliases are replaced (least recently used) and
        topics come back with their name.
        """
        sub = self.aliasing("alias-sub", 3)
        await sub.connect()
        self.assertEqual(await sub.subscribe("alias/#", 1), 1)
        pub = await self.connected("alias-pub", V311)
        for i, n in enumerate(ORDER):
            await pub.publish(TOPICS[n], b"%d" % i, 1)
        got = await sub.messages.get(len(ORDER))
        resolver = Resolver(self, 3)
        self.assertEqual(
            [(resolver.topic(m), m.payload, m.qos) for m in got],
            [(TOPICS[n], b"%d" % i, 1) for i, n in enumerate(ORDER)],
        )
        self.assertEqual((resolver.set, resolver.used, resolver.replaced), lru_counts(ORDER, 3))
        self.assertGreater(resolver.used, 0)
        self.assertGreater(resolver.replaced, 0)
        await sub.messages.expect_nothing()

    async def test_lru_replacement_on_the_wire(self) -> None:
        """
        With Topic Alias Maximum 2 and topics a, b, a, c: c replaces b, the
        least recently used, not a; a keeps going out as its alias alone.
        """
        sub = self.aliasing("lru-sub", 2)
        await sub.connect()
        await sub.subscribe("lru/#", 0)
        pub = await self.connected("lru-pub", V311)
        for topic in ("lru/a", "lru/b", "lru/a", "lru/c", "lru/a", "lru/b"):
            await pub.publish(topic, topic.encode(), 1)
        got = await sub.messages.get(6)
        self.assertEqual(
            [(m.topic, getattr(m.properties, "TopicAlias", None), m.payload) for m in got],
            [
                ("lru/a", 1, b"lru/a"),
                ("lru/b", 2, b"lru/b"),
                ("", 1, b"lru/a"),
                ("lru/c", 2, b"lru/c"),
                ("", 1, b"lru/a"),
                # b lost alias 2 to c; c is now the least recently used.
                ("lru/b", 2, b"lru/b"),
            ],
        )

    async def test_no_aliases_without_topic_alias_maximum(self) -> None:
        """
        A paho MQTT 5 client that announces no Topic Alias Maximum never
        gets an alias [MQTT-3.1.2-27]: every PUBLISH has its topic name.
        """
        sub = await self.subscriber("plain-sub", "plain/#", 1)
        pub = await self.connected("plain-pub")
        for i in range(4):
            await pub.publish("plain/t", b"%d" % i, 1)
        got = await sub.messages.get(4)
        self.assertEqual(
            [(m.topic, getattr(m.properties, "TopicAlias", None)) for m in got], [("plain/t", None)] * 4
        )

    async def test_aliases_start_afresh_on_a_new_connection(self) -> None:
        """
        Aliases last as long as the network connection [MQTT-3.3.2-7]: a
        client that resumes its session gets the topic name again with the
        first PUBLISH of a topic it had an alias for.
        """
        sub = self.aliasing("fresh-sub", 4, clean=False, session_expiry=60)
        await sub.connect()
        await sub.subscribe("fresh/t", 1)
        pub = await self.connected("fresh-pub", V311)
        await pub.publish("fresh/t", b"1", 1)
        await pub.publish("fresh/t", b"2", 1)
        got = await sub.messages.get(2)
        self.assertEqual(
            [(m.topic, m.properties.TopicAlias, m.payload) for m in got],  # type: ignore[union-attr]
            [("fresh/t", 1, b"1"), ("", 1, b"2")],
        )
        await sub.disconnect()
        again = self.aliasing("fresh-sub", 4, clean=False, session_expiry=60)
        ack = await again.connect()
        self.assertTrue(ack.session_present)
        await pub.publish("fresh/t", b"3", 1)
        [third] = await again.messages.get(1)
        self.assertEqual((third.topic, third.properties.TopicAlias, third.payload), ("fresh/t", 1, b"3"))  # type: ignore[union-attr]

    async def test_unacknowledged_messages_resent_with_new_aliases(self) -> None:
        """
        PUBLISH left unacknowledged when the connection dropped are resent
        on resumption with DUP 1 and their packet identifiers
        [MQTT-4.4.0-1], encoded with the new connection's aliases: the first
        carries its topic name even though it went out with the alias alone.
        """
        raw, _ = await self.raw_connected("resend-sub", 5, clean=False, session_expiry=60, topic_alias_maximum=2)
        raw.send(Subscribe(1, (Subscription("resend/t", 1),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (1,)))
        pub = await self.connected("resend-pub", V311)
        for payload in (b"1", b"2"):
            await pub.publish("resend/t", payload, 1)
        first = [await raw.expect(Publish) for _ in range(2)]
        self.assertEqual(
            [(p.topic, p.properties.topic_alias, p.payload, p.dup) for p in first],
            [("resend/t", 1, b"1", False), ("", 1, b"2", False)],
        )
        await raw.close()
        await self.wait_until(lambda: self.broker.sessions["resend-sub"].link is None, "the broker saw the drop")

        again, ack = await self.raw_connected(
            "resend-sub", 5, clean=False, session_expiry=60, topic_alias_maximum=2
        )
        self.assertTrue(ack.session_present)
        resent = [await again.expect(Publish) for _ in range(2)]
        self.assertEqual(
            resent,
            [
                Publish("resend/t", b"1", 1, False, True, first[0].packet_id, Properties(topic_alias=1)),
                Publish("", b"2", 1, False, True, first[1].packet_id, Properties(topic_alias=1)),
            ],
        )
        again.send(*(PubAck(p.packet_id or 0) for p in resent))
        await again.packets.expect_nothing()
