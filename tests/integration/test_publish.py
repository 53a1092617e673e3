# -*- test-case-name: tests.integration.test_publish -*-
"""
PUBLISH and SUBSCRIBE over real TCP: every QoS, QoS downgrade, ordering,
exactly-once, wildcards and the C{$} rule.
"""

from __future__ import annotations

from mqttx.mqtt.packets import PubComp, Publish, PubRec, PubRel

from .helpers import V5, V31, V311, IntegrationTestCase, MixinBase


class PublishSubscribeTestsMixin(MixinBase):
    """Messages flow from publishers to subscribers at every QoS."""

    async def test_each_qos_is_delivered(self) -> None:
        """
        Messages published at QoS 0, 1 and 2 to a QoS 2 subscription arrive
        once each with their topic, payload and QoS, RETAIN 0 and DUP 0
        [MQTT-4.5.0-1] [MQTT-3.3.1-3].
        """
        sub = await self.subscriber("pubsub-sub", "qos/#", 2)
        pub = await self.connected("pubsub-pub")
        for qos in (0, 1, 2):
            await pub.publish(f"qos/{qos}", f"payload {qos}".encode(), qos)
        got = await sub.messages.get(3)
        self.assertEqual(
            sorted((m.topic, m.payload, m.qos, m.retain, m.dup) for m in got),
            [
                ("qos/0", b"payload 0", 0, False, False),
                ("qos/1", b"payload 1", 1, False, False),
                ("qos/2", b"payload 2", 2, False, False),
            ],
        )
        await sub.messages.expect_nothing()

    async def test_delivery_qos_is_the_lower_of_publish_and_subscription(self) -> None:
        """
        Every publish QoS crossed with every granted QoS: each message is
        delivered once, at the minimum of the two [MQTT-3.8.4-6]
        (5.0 [MQTT-3.8.4-8]).
        """
        sub = await self.connected("matrix-sub")
        granted = await sub.subscribe_many([("matrix/0", 0), ("matrix/1", 1), ("matrix/2", 2)])
        self.assertEqual(granted, [0, 1, 2])
        pub = await self.connected("matrix-pub")
        for sub_qos in (0, 1, 2):
            for pub_qos in (0, 1, 2):
                await pub.publish(f"matrix/{sub_qos}", f"published at {pub_qos}".encode(), pub_qos)
        got = await sub.messages.get(9)
        self.assertEqual(
            sorted((m.topic, m.payload, m.qos) for m in got),
            sorted(
                (f"matrix/{s}", f"published at {p}".encode(), min(p, s))
                for s in (0, 1, 2)
                for p in (0, 1, 2)
            ),
        )
        await sub.messages.expect_nothing()

    async def test_order_is_kept_per_topic_and_qos(self) -> None:
        """
        100 messages published back to back on one topic arrive in the order
        published, for each QoS, none lost or repeated [MQTT-4.6.0-6]
        (5.0 [MQTT-4.6.0-5]). At QoS 1 and 2 they are more than the outbound
        window (32), so the broker's queue keeps the order too.
        """
        sub = await self.subscriber("order-sub", "order/#", 2)
        pub = await self.connected("order-pub")
        for qos in (0, 1, 2):
            payloads = [f"{qos}:{i}".encode() for i in range(100)]
            await pub.publish_many(f"order/{qos}", payloads, qos)
            got = await sub.messages.get(100)
            self.assertEqual([m.payload for m in got], payloads)
            self.assertEqual({(m.topic, m.qos) for m in got}, {(f"order/{qos}", qos)})
        await sub.messages.expect_nothing()

    async def test_qos2_messages_are_delivered_exactly_once(self) -> None:
        """
        QoS 2 messages from a real client reach a QoS 2 subscriber exactly
        once: no loss, no duplicate [MQTT-4.3.3-2] (5.0 [MQTT-4.3.3-10]).
        """
        sub = await self.subscriber("once-sub", "once", 2)
        pub = await self.connected("once-pub")
        payloads = [f"m{i}".encode() for i in range(40)]
        await pub.publish_many("once", payloads, 2)
        got = await sub.messages.get(40)
        self.assertEqual(sorted(m.payload for m in got), sorted(payloads))
        self.assertEqual({m.dup for m in got}, {False})
        await sub.messages.expect_nothing()

    async def test_unsubscribed_topic_is_not_delivered(self) -> None:
        """
        After UNSUBSCRIBE the broker stops delivering messages that match the
        removed filter [MQTT-3.10.4-2], while other subscriptions go on.
        """
        sub = await self.connected("unsub-sub")
        self.assertEqual(await sub.subscribe_many([("unsub/a", 1), ("unsub/b", 1)]), [1, 1])
        await sub.unsubscribe("unsub/a")
        pub = await self.connected("unsub-pub")
        await pub.publish("unsub/a", b"gone", 1)
        await pub.publish("unsub/b", b"kept", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.topic, got.payload), ("unsub/b", b"kept"))
        await sub.messages.expect_nothing()


class PublishSubscribeV31Tests(PublishSubscribeTestsMixin, IntegrationTestCase):
    version = V31


class PublishSubscribeV311Tests(PublishSubscribeTestsMixin, IntegrationTestCase):
    version = V311


class PublishSubscribeV5Tests(PublishSubscribeTestsMixin, IntegrationTestCase):
    version = V5


class PublishV5Tests(IntegrationTestCase):
    """What MQTT 5 adds to PUBLISH."""

    version = V5

    async def test_puback_says_no_matching_subscribers(self) -> None:
        """
        A QoS 1 message nobody subscribed to is acknowledged with PUBACK 0x10
        (No matching subscribers); once someone subscribes, with 0x00
        (MQTT 5 section 3.4.2.1).
        """
        pub = await self.connected("lonely-pub")
        self.assertEqual(await pub.publish("lonely/t", b"anyone?", 1), 0x10)
        await self.subscriber("lonely-sub", "lonely/#", 1)
        self.assertEqual(await pub.publish("lonely/t", b"someone", 1), 0x00)

    async def test_pubrec_says_no_matching_subscribers(self) -> None:
        """
        A QoS 2 message nobody subscribed to gets PUBREC 0x10 (No matching
        subscribers, MQTT 5 section 3.5.2.1), and the exchange completes
        normally with PUBCOMP 0x00.
        """
        raw, _ = await self.raw_connected("lonely-raw")
        raw.send(Publish("lonely/q2", b"anyone?", 2, packet_id=9))
        self.assertEqual(await raw.expect(PubRec), PubRec(9, 0x10))
        raw.send(PubRel(9))
        self.assertEqual(await raw.expect(PubComp), PubComp(9, 0x00))

    async def test_user_properties_are_forwarded_in_order(self) -> None:
        """
        User properties reach the subscriber unaltered and in order, repeated
        names included [MQTT-3.3.2-17] [MQTT-3.3.2-18].
        """
        sub = await self.subscriber("props-sub", "props/t", 1)
        pub = await self.connected("props-pub")
        props = [("a", "1"), ("b", "2"), ("a", "3")]
        await pub.publish("props/t", b"p", 1, user_properties=props)
        [got] = await sub.messages.get()
        self.assertEqual(got.user_properties(), props)


class ExactlyOnceTestsMixin(MixinBase):
    """The inbound half of QoS 2, driven packet by packet."""

    async def test_repeated_publish_before_pubrel_is_not_delivered_again(self) -> None:
        """
        A QoS 2 PUBLISH sent again (DUP 1, same packet identifier) before
        PUBREL is answered with PUBREC but not delivered a second time; after
        PUBCOMP the identifier starts a new message [MQTT-4.3.3-2]
        (5.0 [MQTT-4.3.3-10] [MQTT-4.3.3-12]).
        """
        sub = await self.subscriber("eo-sub", "eo/t", 2)
        raw, _ = await self.raw_connected("eo-raw")
        raw.send(Publish("eo/t", b"first", 2, packet_id=7))
        self.assertEqual(await raw.expect(PubRec), PubRec(7))
        raw.send(Publish("eo/t", b"first", 2, dup=True, packet_id=7))
        self.assertEqual(await raw.expect(PubRec), PubRec(7))
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.qos), (b"first", 2))
        await sub.messages.expect_nothing()
        raw.send(PubRel(7))
        self.assertEqual(await raw.expect(PubComp), PubComp(7))
        raw.send(Publish("eo/t", b"second", 2, packet_id=7))
        self.assertEqual(await raw.expect(PubRec), PubRec(7))
        raw.send(PubRel(7))
        self.assertEqual(await raw.expect(PubComp), PubComp(7))
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.qos), (b"second", 2))
        await sub.messages.expect_nothing()


class ExactlyOnceV311Tests(ExactlyOnceTestsMixin, IntegrationTestCase):
    version = V311


class ExactlyOnceV5Tests(ExactlyOnceTestsMixin, IntegrationTestCase):
    version = V5


class WildcardTestsMixin(MixinBase):
    """Topic filters with C{+} and C{#}, and topics starting with C{$}."""

    async def _deliveries(self, topic_filter: str, topics: list[str]) -> list[str]:
        sub = await self.subscriber("wild-sub", topic_filter, 1)
        pub = await self.connected("wild-pub")
        for topic in topics:
            await pub.publish(topic, topic.encode(), 1)
        # The marker is published last on the same connection: once it is in,
        # every earlier match is in too [MQTT-4.6.0-6].
        await sub.subscribe("marker", 1)
        await pub.publish("marker", b"end", 1)
        got: list[str] = []
        while True:
            [message] = await sub.messages.get()
            if message.topic == "marker":
                return got
            self.assertEqual(message.payload, message.topic.encode())
            got.append(message.topic)

    async def test_single_level_wildcard(self) -> None:
        """
        C{+} matches exactly one level, an empty one included (MQTT section
        4.7.1.3, [MQTT-4.7.1-3]).
        """
        got = await self._deliveries(
            "w/+/c", ["w/b/c", "w/c", "w/b/b/c", "w//c", "w/b/c/", "x/b/c", "w/b/cc"]
        )
        self.assertEqual(got, ["w/b/c", "w//c"])

    async def test_multi_level_wildcard(self) -> None:
        """
        C{#} matches any number of levels, including the parent level itself
        (MQTT section 4.7.1.2, [MQTT-4.7.1-2]).
        """
        got = await self._deliveries("w/#", ["w", "w/a", "w/a/b/c", "w/", "wx/a", "v/w", "W/a"])
        self.assertEqual(got, ["w", "w/a", "w/a/b/c", "w/"])

    async def test_dollar_topics_are_not_matched_by_leading_wildcards(self) -> None:
        """
        Filters starting with C{#} or C{+} do not match topics starting with
        C{$}; a filter starting with C{$} does [MQTT-4.7.2-1].
        """
        wild = await self.connected("dollar-wild")
        self.assertEqual(await wild.subscribe_many([("#", 1), ("+/status", 1), ("+/#", 1)]), [1, 1, 1])
        explicit = await self.subscriber("dollar-explicit", "$app/#", 1)
        pub = await self.connected("dollar-pub")
        await pub.publish("$app/status", b"internal", 1)
        await pub.publish("app/status", b"public", 1)
        [got] = await explicit.messages.get()
        self.assertEqual((got.topic, got.payload), ("$app/status", b"internal"))
        [got] = await wild.messages.get()
        self.assertEqual((got.topic, got.payload), ("app/status", b"public"))
        await wild.messages.expect_nothing()
        await explicit.messages.expect_nothing()

    async def test_overlapping_subscriptions_deliver_once_at_the_highest_qos(self) -> None:
        """
        A message matching several subscriptions of one client is delivered
        once, at the highest QoS granted among them (capped by the publish
        QoS) [MQTT-3.3.5-1] (5.0 [MQTT-3.3.4-2]).
        """
        sub = await self.connected("overlap-sub")
        granted = await sub.subscribe_many([("o/#", 0), ("o/+", 2), ("o/x", 1)])
        self.assertEqual(granted, [0, 2, 1])
        pub = await self.connected("overlap-pub")
        await pub.publish("o/x", b"two", 2)
        await pub.publish("o/x", b"one", 1)
        await pub.publish("o/x/y", b"deep", 2)
        got = await sub.messages.get(3)
        # paho hands a QoS 2 message over at PUBREL, so compare without order.
        self.assertEqual(
            sorted((m.topic, m.payload, m.qos) for m in got),
            [("o/x", b"one", 1), ("o/x", b"two", 2), ("o/x/y", b"deep", 0)],
        )
        await sub.messages.expect_nothing()


class WildcardV311Tests(WildcardTestsMixin, IntegrationTestCase):
    version = V311


class WildcardV5Tests(WildcardTestsMixin, IntegrationTestCase):
    version = V5
