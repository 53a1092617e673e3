# -*- test-case-name: tests.broker.test_shared -*-
"""
Tests for shared subscriptions (MQTT 5.0 section 4.8.2): L{mqttx.broker.shared},
the shared half of L{mqttx.broker.router.Router}, and the broker's handling
of C{$share/...} filters, through real server protocols on
L{StringTransport}s.
"""

from __future__ import annotations

from random import Random

from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.broker import Broker
from mqttx.broker.message import Message
from mqttx.broker.router import Router
from mqttx.broker.session import SLOW_CONSUMER_BYTES
from mqttx.broker.state import (
    Delivery,
    InflightEntry,
    SessionRecord,
    SharedDelivery,
    SubscriptionEntry,
)
from mqttx.mqtt.packets import (
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
)
from mqttx.mqtt.properties import Properties
from mqttx.store.memory import MemoryStore
from tests.helpers import BrokerTestCase, FakeClient

#: A 5.0 session that outlives its connection.
PERSISTENT = Properties(session_expiry_interval=600)


def payloads(client: FakeClient) -> list[bytes]:
    """The payloads of the PUBLISH packets C{client} got since its last read."""
    return [p.payload for p in client.publishes()]


def group_of(delivery: Delivery) -> str | None:
    """The shared subscription a delivery records, if any."""
    return delivery.group if isinstance(delivery, SharedDelivery) else None


class ScriptedRandom(Random):
    """A random source whose C{randrange} answers from a script."""

    def __init__(self, answers: list[int]) -> None:
        super().__init__(0)
        self.answers = list(answers)
        self.asked: list[int] = []

    def randrange(self, start: int, stop: int | None = None, step: int = 1) -> int:
        self.asked.append(start if stop is None else stop - start)
        return self.answers.pop(0)


class SharedSubscribeTests(BrokerTestCase):
    """
    SUBSCRIBE and UNSUBSCRIBE with C{$share/{group}/{filter}}.
    """

    def test_connack_says_available(self) -> None:
        """
        With C{shared_subscriptions} on (the default), a 5.0 CONNACK has no
        Shared Subscription Available property, which means available
        (section 3.2.2.3.14).
        """
        client = self.connect_client("c1", 5)
        assert client.connack is not None
        self.assertIsNone(client.connack.properties.shared_subscription_available)

    def test_connack_says_unavailable_when_off(self) -> None:
        """
        With C{shared_subscriptions} off, a 5.0 CONNACK says Shared
        Subscription Available 0, and C{$share/} filters get SUBACK 0x9E
        (5.0) or 0x80 (3.1.1) even when the share is invalid.
        """
        self.use_config(shared_subscriptions=False)
        v5 = self.connect_client("c5", 5)
        assert v5.connack is not None
        self.assertEqual(v5.connack.properties.shared_subscription_available, 0)
        self.assertEqual(v5.subscribe("$share//t").reason_codes, (0x9E,))
        v3 = self.connect_client("c3", 4)
        self.assertEqual(v3.subscribe("$share/g/t", qos=1), SubAck(1, (0x80,)))
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_granted(self) -> None:
        """
        A valid shared subscription is granted the QoS asked for, to 5.0 and
        3.1.1 clients alike, and is kept with the session's subscriptions
        under its full filter.
        """
        v5 = self.connect_client("c5", 5)
        self.assertEqual(v5.subscribe("$share/g/a/+", qos=2).reason_codes, (2,))
        v3 = self.connect_client("c3", 4)
        self.assertEqual(v3.subscribe("$share/g/a/+", qos=1), SubAck(1, (1,)))
        assert v5.session is not None
        self.assertEqual(list(v5.session.subscriptions), ["$share/g/a/+"])
        group = self.broker.router.group("$share/g/a/+")
        assert group is not None
        self.assertEqual([m.client_id for m in group.members], ["c5", "c3"])
        self.assertEqual((group.name, group.topic_filter), ("g", "a/+"))
        self.assertEqual(self.broker.router.subscription_count, 2)

    def test_invalid_share_name_v5(self) -> None:
        """
        A 5.0 client that subscribes with an empty ShareName
        [MQTT-4.8.2-1], one with C{+} or C{#}, or one not followed by C{/}
        and a filter [MQTT-4.8.2-2] gets SUBACK 0x8F for that filter; the
        others of the same SUBSCRIBE are granted, and it stays connected.
        """
        bad = ("$share//t", "$share/+/t", "$share/g+/t", "$share/#/t", "$share/g#/t", "$share/g", "$share/g/")
        client = self.connect_client("c1", 5)
        subs = tuple(Subscription(f, 1) for f in bad) + (Subscription("$share/g/t", 1),)
        client.send(Subscribe(7, subs))
        ack = client.expect(SubAck)
        self.assertEqual((ack.packet_id, ack.reason_codes), (7, (0x8F,) * len(bad) + (1,)))
        self.assertFalse(client.disconnecting)
        self.assertEqual(self.broker.router.subscription_count, 1)

    def test_invalid_share_name_v311(self) -> None:
        """
        A 3.1.1 client that subscribes with an invalid ShareName gets SUBACK
        0x80 (failure) for it.
        """
        client = self.connect_client("c1", 4)
        client.send(Subscribe(3, (Subscription("$share//t", 0), Subscription("$share/a+b/t", 0))))
        self.assertEqual(client.expect(SubAck), SubAck(3, (0x80, 0x80)))
        self.assertFalse(client.disconnecting)
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_malformed_filter_after_share_closes(self) -> None:
        """
        If the filter after a valid ShareName is malformed, that is a
        malformed filter as anywhere else (5.0 [MQTT-4.7.1-1]): DISCONNECT
        0x81.
        """
        client = self.connect_client("c1", 5)
        client.send(Subscribe(1, (Subscription("$share/g/a/#/b", 0),)))
        self.assertClosedWith(client, 0x81)
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_no_local_is_protocol_error(self) -> None:
        """
        If a 5.0 client sets No Local on a shared subscription, it is a
        Protocol Error [MQTT-3.8.3-4]: DISCONNECT 0x82, and nothing of that
        SUBSCRIBE is subscribed.
        """
        client = self.connect_client("c1", 5)
        client.send(Subscribe(1, (Subscription("t", 0), Subscription("$share/g/t", 1, no_local=True))))
        self.assertClosedWith(client, 0x82)
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_no_retained_messages(self) -> None:
        """
        A new shared subscription gets no retained messages, whatever its
        Retain Handling (section 3.3.1.3: they go to new Non-shared
        Subscriptions); a non-shared one of the same session does.
        """
        pub = self.connect_client("pub", 5)
        pub.publish_acked("r/t", b"kept", 1, retain=True)
        sub = self.connect_client("sub", 5)
        self.assertEqual(sub.subscribe("$share/g/r/#", qos=1).reason_codes, (1,))
        self.assertEqual(sub.received(), [])
        sub.subscribe("r/#", qos=1)
        [got] = sub.publishes()
        self.assertEqual((got.topic, got.payload, got.retain), ("r/t", b"kept", True))

    def test_resubscribe_replaces_membership(self) -> None:
        """
        If a member subscribes to the same shared filter again, the new
        subscription replaces the old one, as for a non-shared one (section
        3.8.4): still one member, at the new QoS.
        """
        sub = self.connect_client("sub", 4)
        sub.subscribe("$share/g/t", qos=0)
        sub.subscribe("$share/g/t", qos=1)
        self.assertEqual(self.broker.router.subscription_count, 1)
        self.connect_client("pub", 4).publish_acked("t", b"m", 1)
        [got] = sub.publishes()
        self.assertEqual(got.qos, 1)

    def test_unsubscribe_leaves_group(self) -> None:
        """
        UNSUBSCRIBE C{$share/g/t} ends the membership: UNSUBACK 0x00, then
        0x11 the second time, and messages go to the other members only.
        """
        a = self.connect_client("a", 5)
        b = self.connect_client("b", 5)
        a.subscribe("$share/g/t")
        b.subscribe("$share/g/t")
        self.assertEqual(a.unsubscribe("$share/g/t"), UnsubAck(2, (0x00,)))
        self.assertEqual(a.unsubscribe("$share/g/t"), UnsubAck(3, (0x11,)))
        pub = self.connect_client("pub", 5)
        for i in range(3):
            pub.publish("t", b"%d" % i)
        self.assertEqual(a.received(), [])
        self.assertEqual(payloads(b), [b"0", b"1", b"2"])

    def test_last_member_ends_group(self) -> None:
        """
        When its last member leaves, the shared subscription ends: a
        message matching only it has no subscriber (5.0 PUBACK 0x10).
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t")
        a.unsubscribe("$share/g/t")
        self.assertIsNone(self.broker.router.group("$share/g/t"))
        self.assertEqual(self.broker.router.group_count, 0)
        pub = self.connect_client("pub", 5)
        pub.publish("t", qos=1)
        self.assertEqual(pub.expect(PubAck).reason_code, 0x10)

    def test_session_end_leaves_groups(self) -> None:
        """
        When a session ends, it leaves every shared subscription it had.
        """
        a = self.connect_client("a", 4)
        a.subscribe("$share/g/t")
        a.subscribe("$share/h/t")
        a.disconnect()
        self.assertEqual(self.broker.router.subscription_count, 0)
        self.assertEqual(self.broker.router.group_count, 0)


class SharedDeliveryTests(BrokerTestCase):
    """
    Which member of a shared subscription gets a message, and how.
    """

    def members(self, *client_ids: str, level: int = 4, qos: int = 1, filter: str = "$share/g/t") -> list[FakeClient]:
        clients = []
        for client_id in client_ids:
            client = self.connect_client(client_id, level)
            client.subscribe(filter, qos=qos)
            clients.append(client)
        return clients

    def test_round_robin(self) -> None:
        """
        By default each message goes to exactly one member, the members in
        turn in the order they joined (round robin).
        """
        a, b, c = self.members("a", "b", "c", qos=0)
        pub = self.connect_client("pub")
        for i in range(7):
            pub.publish("t", b"%d" % i)
        self.assertEqual(payloads(a), [b"0", b"3", b"6"])
        self.assertEqual(payloads(b), [b"1", b"4"])
        self.assertEqual(payloads(c), [b"2", b"5"])

    def test_publish_acknowledged_as_matched(self) -> None:
        """
        A message that only a shared subscription matches has matching
        subscribers: 5.0 PUBACK 0x00, not 0x10.
        """
        self.members("a")
        pub = self.connect_client("pub", 5)
        pub.publish("t", qos=1)
        self.assertEqual(pub.expect(PubAck), PubAck(1, 0x00))

    def test_groups_are_independent(self) -> None:
        """
        Each shared subscription a message matches (another ShareName, or
        another filter in the same group) gets it once.
        """
        a = self.connect_client("a")
        a.subscribe("$share/g/t/#")
        b = self.connect_client("b")
        b.subscribe("$share/h/t/#")
        c = self.connect_client("c")
        c.subscribe("$share/g/t/+")
        self.connect_client("pub").publish("t/x", b"m")
        for client in (a, b, c):
            self.assertEqual(payloads(client), [b"m"])

    def test_shared_and_non_shared_copies(self) -> None:
        """
        A session subscribed to a topic both shared and non-shared gets one
        copy for each subscription (section 4.8.2).
        """
        sub = self.connect_client("sub")
        sub.subscribe("$share/g/t")
        sub.subscribe("t")
        self.connect_client("pub").publish("t", b"m")
        self.assertEqual(payloads(sub), [b"m", b"m"])

    def test_qos_is_min_of_published_and_granted(self) -> None:
        """
        A member gets a message at min(published QoS, its granted QoS)
        [MQTT-4.8.2-3]: the granted QoS of each member counts, not the group's.
        """
        low = self.connect_client("low")
        low.subscribe("$share/g/t", qos=0)
        high = self.connect_client("high")
        high.subscribe("$share/g/t", qos=2)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"to low", 2)
        pub.publish_acked("t", b"to high", 1)
        self.assertEqual(low.received(), [Publish("t", b"to low", 0)])
        self.assertEqual(high.received(), [Publish("t", b"to high", 1, packet_id=1)])

    def test_subscription_identifier_and_retain_as_published(self) -> None:
        """
        A 5.0 member gets its own subscription's Subscription Identifier
        [MQTT-3.3.4-3], and RETAIN as published if it asked for that
        [MQTT-3.3.1-13].
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("$share/g/t", qos=1, subscription_id=42, retain_as_published=True)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 1, retain=True)
        self.assertEqual(
            sub.received(),
            [Publish("t", b"m", 1, True, False, 1, Properties(subscription_identifier=(42,)))],
        )

    def test_dollar_topics_not_matched_by_leading_wildcards(self) -> None:
        """
        C{$share/g/#} does not match topics starting with C{$}
        [MQTT-4.7.2-1]; C{$share/g/$app/#} does.
        """
        wild = self.connect_client("wild")
        wild.subscribe("$share/g/#")
        app = self.connect_client("app")
        app.subscribe("$share/g/$app/#")
        self.connect_client("pub").publish("$app/x", b"m")
        self.assertEqual(wild.received(), [])
        self.assertEqual(payloads(app), [b"m"])

    def test_paused_member_skipped(self) -> None:
        """
        A member whose transport is paused (a slow consumer) is passed over
        while another can take the message, so it does not stall the group.
        """
        a, b = self.members("a", "b", qos=0)
        a.protocol.pauseProducing()
        pub = self.connect_client("pub")
        for i in range(4):
            pub.publish("t", b"%d" % i)
        self.assertEqual(payloads(b), [b"0", b"1", b"2", b"3"])
        self.assertEqual(self.broker.counters.dropped_qos0, 0)
        a.protocol.resumeProducing()
        self.assertEqual(a.received(), [])

    def test_full_window_member_skipped(self) -> None:
        """
        A member whose in-flight window is full is passed over for QoS 1/2
        messages while another has room.
        """
        self.use_config(max_inflight=1)
        a, b = self.members("a", "b")
        pub = self.connect_client("pub")
        for i in range(4):
            pub.publish_acked("t", b"%d" % i, 1)
        got_a = a.publishes()
        got_b = b.publishes()
        self.assertEqual([p.payload for p in got_a], [b"0"])
        self.assertEqual([p.payload for p in got_b], [b"1"])
        # Both full: the rest wait at online members, in turn.
        assert a.session is not None and b.session is not None
        self.assertEqual([d.message.payload for d in a.session.queue], [b"2"])
        self.assertEqual([d.message.payload for d in b.session.queue], [b"3"])
        b.ack(got_b)
        self.assertEqual(payloads(b), [b"3"])

    def test_offline_member_skipped(self) -> None:
        """
        A persistent member that is offline is passed over while another is
        online; with none online, it keeps the messages for when it returns.
        """
        away = self.connect_client("away", 5, clean_start=False, properties=PERSISTENT)
        away.subscribe("$share/g/t", qos=1)
        away.drop()
        here = self.connect_client("here", 5)
        here.subscribe("$share/g/t", qos=1)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"1", 1)
        pub.publish_acked("t", b"2", 1)
        got = here.publishes()
        self.assertEqual([p.payload for p in got], [b"1", b"2"])
        here.ack(got)
        here.disconnect()
        pub.publish_acked("t", b"3", 1)
        back = self.connect_client("away", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(back.received(), [Publish("t", b"3", 1, packet_id=1)])

    def test_online_member_preferred_over_offline_when_none_ready(self) -> None:
        """
        With no member able to take a message now, it waits at an online
        member (here paused) rather than an offline one, and goes out when
        that member resumes.
        """
        away = self.connect_client("away", 5, clean_start=False, properties=PERSISTENT)
        away.subscribe("$share/g/t", qos=1)
        away.drop()
        slow = self.connect_client("slow", 5)
        slow.subscribe("$share/g/t", qos=1)
        slow.protocol.pauseProducing()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 1)
        self.assertEqual(slow.received(), [])
        slow.protocol.resumeProducing()
        self.assertEqual(slow.received(), [Publish("t", b"m", 1, packet_id=1)])
        self.assertEqual(len(self.broker.sessions["away"].queue), 0)


class StrategyTests(BrokerTestCase):
    """
    C{mqtt.shared_subscription_strategy}: C{random} and C{sticky}.
    """

    def make_broker(self) -> Broker:
        self.random = ScriptedRandom([])
        return Broker(self.config, clock=self.clock, store=self.store, random=self.random)

    def test_random(self) -> None:
        """
        C{random} gives each message to the member the random source picks
        (among all members), exactly one.
        """
        self.use_config(shared_subscription_strategy="random")
        clients = []
        for client_id in ("a", "b", "c"):
            client = self.connect_client(client_id)
            client.subscribe("$share/g/t")
            clients.append(client)
        self.random.answers = [2, 0, 2, 1]
        pub = self.connect_client("pub")
        for i in range(4):
            pub.publish("t", b"%d" % i)
        self.assertEqual([payloads(c) for c in clients], [[b"1"], [b"3"], [b"0", b"2"]])
        self.assertEqual(self.random.asked, [3, 3, 3, 3])

    def test_random_skips_member_that_cannot_take_it(self) -> None:
        """
        If the member C{random} lands on is paused, the next one that can
        take the message gets it.
        """
        self.use_config(shared_subscription_strategy="random")
        a = self.connect_client("a")
        a.subscribe("$share/g/t")
        b = self.connect_client("b")
        b.subscribe("$share/g/t")
        b.protocol.pauseProducing()
        self.random.answers = [1]
        self.connect_client("pub").publish("t", b"m")
        self.assertEqual(payloads(a), [b"m"])

    def test_sticky(self) -> None:
        """
        C{sticky} gives all of one publisher's messages to the same member
        (the first picked in turn), while that member stays in the group.
        """
        self.use_config(shared_subscription_strategy="sticky")
        a = self.connect_client("a")
        a.subscribe("$share/g/t")
        b = self.connect_client("b")
        b.subscribe("$share/g/t")
        p1 = self.connect_client("p1")
        p2 = self.connect_client("p2")
        for i in range(3):
            p1.publish("t", b"p1-%d" % i)
            p2.publish("t", b"p2-%d" % i)
        self.assertEqual(payloads(a), [b"p1-0", b"p1-1", b"p1-2"])
        self.assertEqual(payloads(b), [b"p2-0", b"p2-1", b"p2-2"])

    def test_sticky_moves_when_member_leaves(self) -> None:
        """
        When the member a publisher sticks to leaves the group (or goes
        offline), its next message goes to another member, which it then
        sticks to.
        """
        self.use_config(shared_subscription_strategy="sticky")
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t")
        b = self.connect_client("b", 5, clean_start=False, properties=PERSISTENT)
        b.subscribe("$share/g/t")
        c = self.connect_client("c", 5)
        c.subscribe("$share/g/t")
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"1")
        self.assertEqual(payloads(a), [b"1"])
        a.unsubscribe("$share/g/t")
        pub.publish("t", b"2")
        pub.publish("t", b"3")
        self.assertEqual((payloads(b), payloads(c)), ([b"2", b"3"], []))
        # A slow member keeps its publisher's messages (QoS 0 to a paused
        # client goes on until its backlog is too large, then is dropped and
        # counted)...
        b.protocol.pauseProducing()
        b.protocol.paused_bytes = SLOW_CONSUMER_BYTES
        pub.publish("t", b"4")
        self.assertEqual(self.broker.counters.dropped_qos0, 1)
        self.assertEqual(c.received(), [])
        # ...an offline one, still a member, does not.
        b.protocol.resumeProducing()
        b.drop()
        pub.publish("t", b"5")
        pub.publish("t", b"6")
        self.assertEqual(payloads(c), [b"5", b"6"])
        group = self.broker.router.group("$share/g/t")
        assert group is not None
        self.assertEqual([m.client_id for m in group.members], ["b", "c"])


class HandOverTests(BrokerTestCase):
    """
    Messages of a shared subscription that a member's connection ends
    without acknowledging go to another member (section 4.8.2).
    """

    def test_unacknowledged_qos1_goes_to_other_member(self) -> None:
        """
        If a member's connection is lost with a QoS 1 message in flight, the
        message goes to another member at once, as a new delivery (DUP 0),
        and the first keeps no trace of it.
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t", qos=1)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        b.protocol.pauseProducing()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 1)
        self.assertEqual(a.received(), [Publish("t", b"m", 1, packet_id=1)])
        b.protocol.resumeProducing()
        a.drop()
        self.assertEqual(b.received(), [Publish("t", b"m", 1, packet_id=1)])
        self.assertNotIn("a", self.broker.sessions)

    def test_each_message_handed_over_once(self) -> None:
        """
        Several unacknowledged and queued messages of a lost member each go
        to exactly one other member, in order.
        """
        self.use_config(max_inflight=2)
        a = self.connect_client("a")
        a.subscribe("$share/g/t", qos=1)
        pub = self.connect_client("pub")
        for i in range(5):
            pub.publish_acked("t", b"%d" % i, 1)
        self.assertEqual(payloads(a), [b"0", b"1"])
        b = self.connect_client("b")
        b.subscribe("$share/g/t", qos=1)
        c = self.connect_client("c")
        c.subscribe("$share/g/t", qos=1)
        a.drop()
        got_b, got_c = payloads(b), payloads(c)
        assert b.session is not None and c.session is not None
        queued = [d.message.payload for d in b.session.queue]
        self.assertEqual((got_b, got_c, queued), ([b"0", b"2"], [b"1", b"3"], [b"4"]))
        self.assertEqual(len(c.session.queue), 0)
        self.assertNotIn("a", self.broker.sessions)

    def test_online_members_first(self) -> None:
        """
        A lost member's messages go to an online member rather than an
        offline (persistent) one.
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t", qos=1)
        away = self.connect_client("away", 5, clean_start=False, properties=PERSISTENT)
        away.subscribe("$share/g/t", qos=1)
        away.drop()
        here = self.connect_client("here", 5)
        here.subscribe("$share/g/t", qos=1)
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        self.assertEqual(payloads(a), [b"m"])
        # Next in turn is "away", offline: passed over.
        a.drop()
        self.assertEqual(payloads(here), [b"m"])
        self.assertEqual(len(self.broker.sessions["away"].queue), 0)

    def test_persistent_member_hands_over_and_forgets(self) -> None:
        """
        A persistent member's unacknowledged messages also move on when its
        connection ends; when it resumes, they are not resent to it, and
        the store no longer holds them for it.
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=1)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        b.protocol.pauseProducing()
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        self.assertEqual(payloads(a), [b"m"])
        a.drop()
        b.protocol.resumeProducing()
        self.assertEqual(payloads(b), [b"m"])
        snapshot = self.successResultOf(self.store.load())
        [stored] = [s for s in snapshot.sessions if s.record.client_id == "a"]
        self.assertEqual((stored.queued, stored.inflight), ((), ()))
        back = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(back.received(), [])

    def test_no_other_member_keeps_messages(self) -> None:
        """
        If the lost member is the only one, a persistent session keeps its
        messages: resent with DUP 1 when it resumes [MQTT-4.4.0-1].
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=1)
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        self.assertEqual(payloads(a), [b"m"])
        a.drop()
        back = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(back.received(), [Publish("t", b"m", 1, False, True, 1)])

    def test_sent_qos2_stays_with_member(self) -> None:
        """
        A QoS 2 message already sent to a member whose connection breaks is
        not given to another: it is completed with that member when it
        resumes [MQTT-4.8.2-4].
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=2)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=2)
        b.protocol.pauseProducing()
        self.connect_client("pub", 5).publish_acked("t", b"m", 2)
        self.assertEqual(payloads(a), [b"m"])
        a.drop()
        b.protocol.resumeProducing()
        self.assertEqual(b.received(), [])
        back = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(back.received(), [Publish("t", b"m", 2, False, True, 1)])
        back.send(PubRec(1))
        self.assertEqual(back.received(), [PubRel(1)])
        back.send(PubComp(1))
        assert back.session is not None
        self.assertEqual(back.session.inflight, {})

    def test_sent_qos2_not_sent_elsewhere_when_session_ends(self) -> None:
        """
        If the session of a member with a QoS 2 message in flight ends
        with its connection, the message goes to no other member
        [MQTT-4.8.2-5].
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t", qos=2)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=2)
        b.protocol.pauseProducing()
        self.connect_client("pub", 5).publish_acked("t", b"m", 2)
        self.assertEqual(payloads(a), [b"m"])
        a.drop()
        b.protocol.resumeProducing()
        self.assertEqual(b.received(), [])

    def test_queued_qos2_goes_to_other_member(self) -> None:
        """
        A QoS 2 message that was queued, never sent, moves on like QoS 1.
        """
        self.use_config(max_inflight=1)
        a = self.connect_client("a")
        a.subscribe("$share/g/t", qos=2)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"sent", 2)
        pub.publish_acked("t", b"queued", 2)
        self.assertEqual(payloads(a), [b"sent"])
        b = self.connect_client("b")
        b.subscribe("$share/g/t", qos=2)
        a.drop()
        self.assertEqual(b.received(), [Publish("t", b"queued", 2, packet_id=1)])

    def test_refused_message_not_handed_over(self) -> None:
        """
        A message a member refused with PUBACK or PUBREC 0x80 or above is
        discarded, not sent to another member [MQTT-4.8.2-6].
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/one", qos=1)
        a.subscribe("$share/g/two", qos=2)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/one", qos=1)
        b.subscribe("$share/g/two", qos=2)
        b.protocol.pauseProducing()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("one", b"1", 1)
        pub.publish_acked("two", b"2", 2)
        self.assertEqual(payloads(a), [b"1", b"2"])
        a.send(PubAck(1, 0x80), PubRec(2, 0x83))
        self.assertEqual(a.received(), [])
        a.drop()
        b.protocol.resumeProducing()
        self.assertEqual(b.received(), [])

    def test_takeover_keeps_messages_with_session(self) -> None:
        """
        A takeover that resumes the session is not the end of the member:
        the new connection gets the unacknowledged message again (DUP 1),
        the other member does not.
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=1)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        b.protocol.pauseProducing()
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        self.assertEqual(payloads(a), [b"m"])
        again = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.finish_close()
        self.assertEqual(again.received(), [Publish("t", b"m", 1, False, True, 1)])
        b.protocol.resumeProducing()
        self.assertEqual(b.received(), [])

    def test_session_expiry_hands_over(self) -> None:
        """
        When an offline member's session expires, the messages it kept go
        to another member.
        """
        a = self.connect_client("a", 5, clean_start=False, properties=Properties(session_expiry_interval=60))
        a.subscribe("$share/g/t", qos=1)
        a.drop()
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        self.assertEqual(b.received(), [])
        self.clock.advance(60)
        self.assertNotIn("a", self.broker.sessions)
        self.assertEqual(b.received(), [Publish("t", b"m", 1, packet_id=1)])

    def test_expired_message_dropped_not_handed_over(self) -> None:
        """
        A message whose expiry passed while with the lost member is dropped
        and counted, not handed over [MQTT-3.3.2-5].
        """
        a = self.connect_client("a", 5)
        a.subscribe("$share/g/t", qos=1)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        b.protocol.pauseProducing()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 1, properties=Properties(message_expiry_interval=5))
        self.assertEqual(payloads(a), [b"m"])
        self.clock.advance(5)
        a.drop()
        b.protocol.resumeProducing()
        self.assertEqual(b.received(), [])
        self.assertEqual(self.broker.counters.dropped_expired, 1)

    def test_delivery_records_group(self) -> None:
        """
        A delivery of a shared subscription records the subscription's full
        filter, in the session and in the store; others record none.
        """
        self.use_config(max_inflight=1)
        a = self.connect_client("a", 4, clean_start=False)
        a.subscribe("$share/g/t", qos=1)
        a.subscribe("t", qos=1)
        self.connect_client("pub").publish_acked("t", b"m", 1)
        assert a.session is not None
        [entry] = a.session.inflight.values()
        [queued] = a.session.queue
        self.assertEqual((group_of(entry.delivery), group_of(queued)), (None, "$share/g/t"))
        snapshot = self.successResultOf(self.store.load())
        [stored] = [s for s in snapshot.sessions if s.record.client_id == "a"]
        self.assertEqual([group_of(d) for d in stored.queued], ["$share/g/t"])


class SharedPersistenceTests(BrokerTestCase):
    """
    Shared memberships are subscriptions of the session: they are stored
    and come back with it.
    """

    def restart(self, *clients: FakeClient) -> None:
        d = self.broker.shutdown()
        for client in clients:
            client.finish_close()
        self.successResultOf(d)
        self._build()

    def test_membership_survives_restart(self) -> None:
        """
        After a restart on the same store, a persistent session is again a
        member of its shared subscriptions, stored under the full filter,
        and gets its share of messages.
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=1, subscription_id=9)
        self.restart(a)
        [stored] = self.successResultOf(self.store.load()).sessions
        self.assertEqual(
            stored.record.subscriptions,
            (SubscriptionEntry("$share/g/t", 1, subscription_id=9),),
        )
        group = self.broker.router.group("$share/g/t")
        assert group is not None
        self.assertEqual([m.client_id for m in group.members], ["a"])
        self.connect_client("pub", 5).publish_acked("t", b"m", 1)
        back = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(
            back.received(),
            [Publish("t", b"m", 1, packet_id=1, properties=Properties(subscription_identifier=(9,)))],
        )

    def test_restored_delivery_still_handed_over(self) -> None:
        """
        A shared delivery restored from the store keeps its group: if the
        member's next connection ends without acknowledging it, it goes to
        another member.
        """
        a = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        a.subscribe("$share/g/t", qos=1)
        a.drop()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 1)
        self.restart(pub)
        self.assertEqual([group_of(d) for d in self.broker.sessions["a"].queue], ["$share/g/t"])
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/t", qos=1)
        b.protocol.pauseProducing()
        back = self.connect_client("a", 5, clean_start=False, properties=PERSISTENT)
        self.assertEqual(payloads(back), [b"m"])
        back.drop()
        b.protocol.resumeProducing()
        self.assertEqual(payloads(b), [b"m"])

    def test_memory_store_keeps_group(self) -> None:
        """
        The memory store gives back queued and in-flight deliveries with
        their group.
        """
        store = MemoryStore()
        delivery = SharedDelivery(1, Message("t", b"m", 1), 1, False, (), group="$share/g/t")
        self.successResultOf(store.save_session(SessionRecord("x", 5, 60)))
        self.successResultOf(store.add_queued("x", delivery))
        self.successResultOf(store.put_inflight("x", InflightEntry(1, delivery)))
        [stored] = self.successResultOf(store.load()).sessions
        self.assertEqual(stored.queued, (delivery,))
        self.assertEqual(stored.inflight, (InflightEntry(1, delivery),))
        self.assertEqual(group_of(stored.queued[0]), "$share/g/t")


class RouterSharedTests(SynchronousTestCase):
    """
    The router's trie of shared subscriptions and its cache.
    """

    def test_cache_holds_groups_not_members(self) -> None:
        """
        The match cache remembers which groups match a topic; members
        joining or leaving an existing group do not clear it, and every
        pick still sees the current members.
        """
        router = Router()
        router.subscribe("a", SubscriptionEntry("$share/g/t/+", 1))
        [group] = router.match_shared("t/x")
        router.subscribe("b", SubscriptionEntry("$share/g/t/+", 1))
        self.assertIs(router.match_shared("t/x")[0], group)
        self.assertIn("t/x", router._group_cache)
        self.assertEqual([m.client_id for m in group.members], ["a", "b"])
        router.unsubscribe("a", "$share/g/t/+")
        self.assertIn("t/x", router._group_cache)
        self.assertEqual([m.client_id for m in group.members], ["b"])

    def test_non_shared_changes_keep_group_cache(self) -> None:
        """
        Non-shared (un)subscriptions clear the route cache, not the group
        cache; a new group clears the group cache, not the route cache.
        """
        router = Router()
        router.subscribe("a", SubscriptionEntry("$share/g/t", 1))
        router.subscribe("a", SubscriptionEntry("t", 1))
        router.match("t")
        router.match_shared("t")
        router.subscribe("b", SubscriptionEntry("u", 1))
        self.assertNotIn("t", router._cache)
        self.assertIn("t", router._group_cache)
        router.match("t")
        router.subscribe("b", SubscriptionEntry("$share/h/t", 1))
        self.assertIn("t", router._cache)
        self.assertEqual(len(router.match_shared("t")), 2)

    def test_group_end_prunes_trie(self) -> None:
        """
        When the last member leaves, the group and its trie nodes go.
        """
        router = Router()
        router.subscribe("a", SubscriptionEntry("$share/g/a/b/c", 0))
        router.subscribe("a", SubscriptionEntry("$share/h/a/#", 0))
        self.assertTrue(router.unsubscribe("a", "$share/g/a/b/c"))
        self.assertFalse(router.unsubscribe("a", "$share/g/a/b/c"))
        self.assertEqual(list(router._group_root.children["a"].children), ["#"])
        self.assertTrue(router.unsubscribe("a", "$share/h/a/#"))
        self.assertEqual(router._group_root.children, {})
        self.assertEqual((router.group_count, router.subscription_count), (0, 0))
        self.assertEqual(router.match_shared("a/b/c"), ())

    def test_subscriptions_lists_members(self) -> None:
        """
        L{Router.subscriptions} lists shared memberships with their full filters.
        """
        router = Router()
        entry = SubscriptionEntry("$share/g/t", 1)
        router.subscribe("a", entry)
        router.subscribe("a", SubscriptionEntry("t", 0))
        self.assertEqual(set(router.subscriptions()), {("a", entry), ("a", SubscriptionEntry("t", 0))})

