# -*- test-case-name: tests.integration.test_retained -*-
"""
Retained messages over real TCP.
"""

from __future__ import annotations

from .helpers import V5, V31, V311, IntegrationTestCase, MixinBase


class RetainedTestsMixin(MixinBase):
    """The broker keeps the last retained message of each topic for new subscribers."""

    async def test_retained_message_is_sent_on_subscribe_with_retain_set(self) -> None:
        """
        A retained message is kept [MQTT-3.3.1-5] and sent to a later
        subscriber [MQTT-3.3.1-6] with RETAIN 1 [MQTT-3.3.1-8]
        (5.0 [MQTT-3.3.1-9]).
        """
        pub = await self.connected("ret-pub")
        await pub.publish("ret/a", b"kept", 1, retain=True)
        sub = await self.subscriber("ret-sub", "ret/a", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos, got.retain), ("ret/a", b"kept", 1, True))
        await sub.messages.expect_nothing()

    async def test_last_retained_message_replaces_the_earlier_ones(self) -> None:
        """
        A new retained message replaces the one kept for its topic
        [MQTT-3.3.1-5]: a subscriber gets only the last.
        """
        pub = await self.connected("ret-pub")
        for payload in (b"v1", b"v2", b"v3"):
            await pub.publish("ret/last", payload, 1, retain=True)
        sub = await self.subscriber("ret-sub", "ret/last", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.retain), (b"v3", True))
        await sub.messages.expect_nothing()

    async def test_non_retained_publish_leaves_the_retained_message(self) -> None:
        """
        A PUBLISH with RETAIN 0 neither replaces nor removes the retained
        message [MQTT-3.3.1-12] (5.0 [MQTT-3.3.1-8]).
        """
        pub = await self.connected("ret-pub")
        await pub.publish("ret/keep", b"retained", 1, retain=True)
        await pub.publish("ret/keep", b"passing", 1)
        sub = await self.subscriber("ret-sub", "ret/keep", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.retain), (b"retained", True))
        await sub.messages.expect_nothing()

    async def test_empty_retained_message_clears_the_topic(self) -> None:
        """
        A retained PUBLISH with an empty payload goes to current subscribers
        as usual and removes the retained message; it is not retained itself
        [MQTT-3.3.1-10] [MQTT-3.3.1-11] (5.0 [MQTT-3.3.1-6] [MQTT-3.3.1-7]).
        """
        pub = await self.connected("ret-pub")
        await pub.publish("ret/clear", b"soon gone", 1, retain=True)
        live = await self.subscriber("ret-live", "ret/clear", 1)
        [old] = await live.messages.get()
        self.assertEqual((old.payload, old.retain), (b"soon gone", True))
        await pub.publish("ret/clear", b"", 1, retain=True)
        [got] = await live.messages.get()
        self.assertEqual((got.topic, got.payload, got.retain), ("ret/clear", b"", False))
        late = await self.subscriber("ret-late", "ret/clear", 1)
        await late.messages.expect_nothing()

    async def test_live_delivery_has_retain_0(self) -> None:
        """
        A retained message sent to an existing subscription goes out with
        RETAIN 0 [MQTT-3.3.1-9] (5.0 without Retain As Published
        [MQTT-3.3.1-12]).
        """
        sub = await self.subscriber("ret-sub", "ret/live", 2)
        pub = await self.connected("ret-pub")
        await pub.publish("ret/live", b"now", 2, retain=True)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.qos, got.retain), (b"now", 2, False))

    async def test_retained_delivery_qos_is_the_lower_of_message_and_subscription(self) -> None:
        """
        A retained message goes to each new subscriber at the minimum of its
        QoS and the granted QoS [MQTT-3.8.4-6] (5.0 [MQTT-3.8.4-8]).
        """
        pub = await self.connected("ret-pub")
        await pub.publish("ret/q2", b"two", 2, retain=True)
        await pub.publish("ret/q1", b"one", 1, retain=True)
        for sub_qos in (0, 1, 2):
            sub = await self.connected(f"ret-sub-{sub_qos}")
            self.assertEqual(await sub.subscribe_many([("ret/q2", sub_qos), ("ret/q1", sub_qos)]), [sub_qos] * 2)
            got = await sub.messages.get(2)
            self.assertEqual(
                sorted((m.topic, m.qos, m.retain) for m in got),
                [("ret/q1", min(1, sub_qos), True), ("ret/q2", sub_qos, True)],
            )
            await sub.disconnect()

    async def test_wildcard_subscription_gets_every_matching_retained_message(self) -> None:
        """
        A new wildcard subscription gets the retained message of every
        matching topic [MQTT-3.3.1-6], and of no other.
        """
        pub = await self.connected("ret-pub")
        for topic in ("ret/w/1", "ret/w/2", "ret/w/x/3", "ret/other", "$ret/w/4"):
            await pub.publish(topic, topic.encode(), 1, retain=True)
        sub = await self.subscriber("ret-sub", "ret/w/#", 1)
        got = await sub.messages.get(3)
        self.assertEqual(
            sorted((m.topic, m.payload, m.retain) for m in got),
            [(t, t.encode(), True) for t in ("ret/w/1", "ret/w/2", "ret/w/x/3")],
        )
        await sub.messages.expect_nothing()
        everything = await self.subscriber("ret-all", "#", 1)
        got = await everything.messages.get(4)
        # [MQTT-4.7.2-1] "#" does not match "$ret/w/4".
        self.assertEqual(sorted(m.topic for m in got), ["ret/other", "ret/w/1", "ret/w/2", "ret/w/x/3"])
        await everything.messages.expect_nothing()

    async def test_every_retained_message_is_sent_however_many(self) -> None:
        """
        A new subscription gets the retained message of every matching topic
        [MQTT-3.3.1-6], even when together they are far more than a socket
        takes at once (100 messages of 2.4 kB, at QoS 0).
        """
        pub = await self.connected("ret-pub")
        topics = [f"ret/many/{i:03d}" for i in range(100)]
        for topic in topics:
            # QoS 1: PUBACK says the broker has it before the subscription is made.
            await pub.publish(topic, topic.encode() * 200, 1, retain=True)
        sub = await self.subscriber("ret-sub", "ret/many/#", 0)
        got = await sub.messages.get(100)
        self.assertEqual(
            sorted((m.topic, m.payload, m.qos, m.retain) for m in got),
            [(t, t.encode() * 200, 0, True) for t in topics],
        )


class RetainedV31Tests(RetainedTestsMixin, IntegrationTestCase):
    version = V31


class RetainedV311Tests(RetainedTestsMixin, IntegrationTestCase):
    version = V311


class RetainedV5Tests(RetainedTestsMixin, IntegrationTestCase):
    version = V5


class RetainOptionsV5Tests(IntegrationTestCase):
    """MQTT 5 subscription options about retained messages."""

    version = V5

    async def test_retain_as_published_keeps_the_retain_flag(self) -> None:
        """
        With Retain As Published, a live delivery keeps the RETAIN flag the
        publisher set [MQTT-3.3.1-13]; without it, RETAIN is 0
        [MQTT-3.3.1-12].
        """
        rap = await self.connected("rap-sub")
        self.assertEqual(await rap.subscribe("rap/t", 1, retainAsPublished=True), 1)
        plain = await self.subscriber("plain-sub", "rap/t", 1)
        pub = await self.connected("rap-pub")
        await pub.publish("rap/t", b"flagged", 1, retain=True)
        await pub.publish("rap/t", b"unflagged", 1)
        got = await rap.messages.get(2)
        self.assertEqual([(m.payload, m.retain) for m in got], [(b"flagged", True), (b"unflagged", False)])
        got = await plain.messages.get(2)
        self.assertEqual([(m.payload, m.retain) for m in got], [(b"flagged", False), (b"unflagged", False)])

    async def test_retain_handling_2_sends_no_retained_messages(self) -> None:
        """
        Retain Handling 2: no retained message on subscribe [MQTT-3.3.1-11];
        live messages still flow.
        """
        pub = await self.connected("rh-pub")
        await pub.publish("rh/t", b"old", 1, retain=True)
        sub = await self.connected("rh-sub")
        self.assertEqual(await sub.subscribe("rh/t", 1, retainHandling=2), 1)
        await sub.messages.expect_nothing()
        await pub.publish("rh/t", b"new", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.retain), (b"new", False))

    async def test_retain_handling_1_sends_retained_messages_only_for_a_new_subscription(self) -> None:
        """
        Retain Handling 1: retained messages are sent when the subscription
        is new, not when it is repeated [MQTT-3.3.1-10]; Retain Handling 0
        sends them every time [MQTT-3.3.1-9].
        """
        pub = await self.connected("rh-pub")
        await pub.publish("rh/t", b"old", 1, retain=True)
        sub = await self.connected("rh-sub")
        self.assertEqual(await sub.subscribe("rh/t", 1, retainHandling=1), 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.retain), (b"old", True))
        self.assertEqual(await sub.subscribe("rh/t", 1, retainHandling=1), 1)
        await sub.messages.expect_nothing()
        self.assertEqual(await sub.subscribe("rh/t", 1, retainHandling=0), 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, got.retain), (b"old", True))
