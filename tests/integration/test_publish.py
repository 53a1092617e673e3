# -*- test-case-name: tests.integration.test_publish -*-
"""
PUBLISH and SUBSCRIBE over real TCP: every QoS, QoS downgrade, ordering,
exactly-once, wildcards and the C{$} rule.
"""

from __future__ import annotations

from mqttx.mqtt.packets import PubComp, Publish, PubRec, PubRel

from .helpers import V5, V31, V311, IntegrationTestCase, MixinBase, pause


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

    async def test_burst_of_qos0_messages_reaches_a_reading_subscriber(self) -> None:
        """
        A subscriber that reads its socket gets every QoS 0 message of a
        burst (50 messages of 4 kB published back to back): only a client
        that does not keep up loses QoS 0 messages (DESIGN, slow consumers).
        """
        sub = await self.subscriber("burst-sub", "burst/t", 0)
        pub = await self.connected("burst-pub")
        payloads = [b"%02d" % i + b"x" * 4000 for i in range(50)]
        await pub.publish_many("burst/t", payloads, 0)
        got = await sub.messages.get(50)
        self.assertEqual([m.payload for m in got], payloads)

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

    async def test_repeated_subscription_replaces_the_first(self) -> None:
        """
        Subscribing again to the same filter replaces the subscription: its
        new QoS applies, messages come once, and retained messages are sent
        again [MQTT-3.8.4-3].
        """
        pub = await self.connected("resub-pub")
        await pub.publish("resub/t", b"retained", 2, retain=True)
        sub = await self.subscriber("resub-sub", "resub/t", 0)
        [first] = await sub.messages.get()
        self.assertEqual((first.payload, first.qos, first.retain), (b"retained", 0, True))
        self.assertEqual(await sub.subscribe("resub/t", 2), 2)
        [again] = await sub.messages.get()
        self.assertEqual((again.payload, again.qos, again.retain), (b"retained", 2, True))
        await pub.publish("resub/t", b"live", 2)
        [live] = await sub.messages.get()
        self.assertEqual((live.payload, live.qos, live.retain), (b"live", 2, False))
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
        await pub.publish("props/t", b"p", 1, UserProperty=props)
        [got] = await sub.messages.get()
        self.assertEqual(got.user_properties(), props)


    async def test_subscription_identifiers_are_sent_with_matching_messages(self) -> None:
        """
        A message carries the Subscription Identifiers of every matching
        subscription [MQTT-3.3.4-3] [MQTT-3.3.4-4], and only theirs.
        """
        sub = await self.connected("ids-sub")
        self.assertEqual(await sub.subscribe("ids/#", 1, subscription_id=7), 1)
        self.assertEqual(await sub.subscribe("ids/+", 1, subscription_id=9), 1)
        self.assertEqual(await sub.subscribe("ids/x/plain", 1), 1)
        pub = await self.connected("ids-pub")
        await pub.publish("ids/x", b"both", 1)
        await pub.publish("ids/x/y", b"one", 1)
        await pub.publish("ids/x/plain", b"hash and plain", 1)
        got = await sub.messages.get(3)
        self.assertEqual(
            [(m.payload, sorted(getattr(m.properties, "SubscriptionIdentifier", []))) for m in got],
            [(b"both", [7, 9]), (b"one", [7]), (b"hash and plain", [7])],
        )
        await sub.messages.expect_nothing()

    async def test_no_local_subscription_skips_own_messages(self) -> None:
        """
        With No Local, messages the client publishes itself are not sent back
        to it [MQTT-3.8.3-3]; other clients' messages are.
        """
        sub = await self.connected("nl-sub")
        self.assertEqual(await sub.subscribe("nl/t", 1, noLocal=True), 1)
        await sub.publish("nl/t", b"mine", 1)
        other = await self.connected("nl-other")
        await other.publish("nl/t", b"theirs", 1)
        [got] = await sub.messages.get()
        self.assertEqual(got.payload, b"theirs")
        await sub.messages.expect_nothing()

    async def test_message_properties_are_forwarded_unaltered(self) -> None:
        """
        Payload Format Indicator, Content Type, Response Topic and
        Correlation Data reach the subscriber unaltered [MQTT-3.3.2-4]
        [MQTT-3.3.2-20] [MQTT-3.3.2-15] [MQTT-3.3.2-16], live and retained.
        """
        sub = await self.subscriber("fwd-sub", "fwd/t", 1)
        pub = await self.connected("fwd-pub")
        props = {
            "PayloadFormatIndicator": 1,
            "ContentType": "text/plain",
            "ResponseTopic": "fwd/reply",
            "CorrelationData": b"\x00\x01id",
        }
        await pub.publish("fwd/t", b"hello", 1, retain=True, **props)
        late = await self.subscriber("fwd-late", "fwd/t", 1)
        for got in (await sub.messages.get_one(), await late.messages.get_one()):
            self.assertEqual({name: getattr(got.properties, name, None) for name in props}, props)

    async def test_inbound_topic_alias_is_resolved(self) -> None:
        """
        A PUBLISH may name its topic by a Topic Alias set earlier on the
        connection [MQTT-3.3.2-12]; subscribers get the full topic name and
        no alias, having allowed none [MQTT-3.1.2-27].
        """
        sub = await self.subscriber("alias-sub", "alias/#", 1)
        pub = await self.connected("alias-pub")
        await pub.publish("alias/long/topic", b"set", 1, TopicAlias=1)
        await pub.publish("", b"used", 1, TopicAlias=1)
        got = await sub.messages.get(2)
        self.assertEqual(
            [(m.topic, m.payload) for m in got], [("alias/long/topic", b"set"), ("alias/long/topic", b"used")]
        )
        self.assertEqual([getattr(m.properties, "TopicAlias", None) for m in got], [None, None])

    async def test_unsuback_reason_codes(self) -> None:
        """
        UNSUBACK has one reason code per filter, in order [MQTT-3.11.3-1]:
        0x00 for a removed subscription, 0x11 (No subscription existed)
        otherwise.
        """
        sub = await self.subscriber("unsub-codes", "uc/a", 1)
        self.assertEqual(await sub.unsubscribe("uc/a", "uc/b"), [0x00, 0x11])

    async def test_message_expiry_is_counted_down_and_enforced(self) -> None:
        """
        A live subscriber gets the Message Expiry Interval less the time the
        message waited [MQTT-3.3.2-6]; a message that expires while queued
        for an offline session is not delivered [MQTT-3.3.2-5], and an
        expired retained message is not sent to new subscribers.
        """
        live = await self.subscriber("exp-live", "exp/live", 1)
        offline = self.paho("exp-offline", clean=False, session_expiry=60)
        await offline.connect()
        await offline.subscribe("exp/queued", 1)
        await offline.disconnect()
        pub = await self.connected("exp-pub")
        await pub.publish("exp/live", b"fresh", 1, MessageExpiryInterval=60)
        [got] = await live.messages.get()
        self.assertIn(getattr(got.properties, "MessageExpiryInterval", None), (59, 60))
        await pub.publish("exp/queued", b"stale", 1, MessageExpiryInterval=1)
        await pub.publish("exp/retained", b"stale", 1, retain=True, MessageExpiryInterval=1)
        # real-time: the messages' expiry interval (1 s) must pass.
        await pause(1.3)
        again = self.paho("exp-offline", clean=False, session_expiry=60)
        ack = await again.connect()
        self.assertTrue(ack.session_present)
        await again.subscribe("exp/retained", 1)
        await again.messages.expect_nothing()


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
