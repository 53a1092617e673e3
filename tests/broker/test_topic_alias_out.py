# -*- test-case-name: tests.broker.test_topic_alias_out -*-
"""
Outbound topic aliases (MQTT 5 section 3.3.2.3.4): the broker gives the
topics it sends a client that announced a Topic Alias Maximum aliases, and
sends each topic name only when its alias is new or replaced.
"""

from __future__ import annotations

from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import PubAck, Publish
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from tests.helpers import BrokerTestCase, FakeClient


def aliased(
    topic: str, alias: int, payload: bytes = b"x", qos: int = 0, pid: int | None = None, **props: object
) -> Publish:
    """The PUBLISH a client taking aliases expects."""
    return Publish(topic, payload, qos, False, False, pid, Properties(topic_alias=alias, **props))  # type: ignore[arg-type]


class OutboundTopicAliasTests(BrokerTestCase):
    """Topic aliases on PUBLISH the broker sends."""

    def subscriber(
        self, client_id: str = "sub", maximum: int = 2, topic_filter: str = "#", qos: int = 0, **props: object
    ) -> FakeClient:
        properties = Properties(topic_alias_maximum=maximum, **props)  # type: ignore[arg-type]
        sub = self.connect_client(client_id, 5, properties=properties)
        sub.subscribe(topic_filter, qos)
        return sub

    def publish(self, *topics: str, qos: int = 0) -> None:
        pub = self.connect_client("pub", 5)
        for i, topic in enumerate(topics):
            pub.publish_acked(topic, b"%d" % i, qos) if qos else pub.publish(topic, b"%d" % i)
        pub.disconnect()

    def test_topic_name_sent_once_then_alias_alone(self) -> None:
        """
        If a client announced a Topic Alias Maximum, the first PUBLISH of a
        topic carries the topic name and alias 1 (a new mapping), and the
        next ones the alias with an empty topic name (section 3.3.2.3.4);
        aliases never exceed its maximum [MQTT-3.3.2-11] nor are 0
        [MQTT-3.3.2-8].
        """
        sub = self.subscriber(maximum=3)
        self.publish("a/topic", "a/topic", "b/topic", "a/topic", "b/topic")
        self.assertEqual(
            sub.publishes(),
            [
                aliased("a/topic", 1, b"0"),
                aliased("", 1, b"1"),
                aliased("b/topic", 2, b"2"),
                aliased("", 1, b"3"),
                aliased("", 2, b"4"),
            ],
        )

    def test_least_recently_used_alias_is_replaced(self) -> None:
        """
        Once all aliases up to the client's maximum are in use, a new topic
        takes the alias of the topic least recently sent, with its topic
        name; the topic that lost it is sent with its name (and another
        alias) when it comes back.
        """
        sub = self.subscriber(maximum=2)
        self.publish("a", "b", "a", "c", "b", "c", "a")
        self.assertEqual(
            sub.publishes(),
            [
                aliased("a", 1, b"0"),
                aliased("b", 2, b"1"),
                aliased("", 1, b"2"),
                # b is the least recently used: c takes alias 2.
                aliased("c", 2, b"3"),
                # Then a is: b comes back on alias 1.
                aliased("b", 1, b"4"),
                aliased("", 2, b"5"),
                aliased("a", 1, b"6"),
            ],
        )

    def test_no_aliases_for_clients_that_take_none(self) -> None:
        """
        A 5.0 client without a Topic Alias Maximum (or with 0) gets no topic
        alias [MQTT-3.1.2-27]; 3.1.1 clients have no properties at all.
        """
        absent = self.connect_client("absent", 5)
        zero = self.connect_client("zero", 5, properties=Properties(topic_alias_maximum=0))
        old = self.connect_client("old", 4)
        for client in (absent, zero, old):
            client.subscribe("t")
        self.publish("t", "t")
        for client in (absent, zero, old):
            self.assertEqual(
                client.publishes(),
                [Publish("t", b"0", properties=NO_PROPERTIES), Publish("t", b"1", properties=NO_PROPERTIES)],
            )

    def test_outbound_aliases_are_capped_by_the_configuration(self) -> None:
        """
        The broker uses at most C{topic_alias_maximum} aliases towards a
        client (fewer than the client allows, never more [MQTT-3.3.2-11]);
        with 0 it uses none.
        """
        self.use_config(topic_alias_maximum=1)
        sub = self.subscriber(maximum=10)
        self.publish("a", "b", "b")
        self.assertEqual(sub.publishes(), [aliased("a", 1, b"0"), aliased("b", 1, b"1"), aliased("", 1, b"2")])

        self.use_config(topic_alias_maximum=0)
        sub = self.subscriber(maximum=10)
        self.publish("a", "a")
        self.assertEqual(sub.publishes(), [Publish("a", b"0"), Publish("a", b"1")])

    def test_qos1_alias_keeps_packet_identifiers_and_properties(self) -> None:
        """
        A QoS 1 PUBLISH sent with an alias alone still has its own packet
        identifier, and the message's properties and the subscription
        identifier come along with the alias.
        """
        sub = self.connect_client("sub", 5, properties=Properties(topic_alias_maximum=2))
        sub.subscribe("t/+", 1, subscription_id=7)
        pub = self.connect_client("pub", 5)
        props = Properties(content_type="text/plain", user_property=(("k", "v"),))
        for payload in (b"1", b"2", b"3"):
            pub.publish_acked("t/x", payload, 1, properties=props)
        got = sub.publishes()
        extra = {"content_type": "text/plain", "user_property": (("k", "v"),), "subscription_identifier": (7,)}
        self.assertEqual(
            got,
            [
                aliased("t/x", 1, b"1", 1, got[0].packet_id, **extra),
                aliased("", 1, b"2", 1, got[1].packet_id, **extra),
                aliased("", 1, b"3", 1, got[2].packet_id, **extra),
            ],
        )
        self.assertEqual(len({p.packet_id for p in got} - {None, 0}), 3)

    def test_clients_with_and_without_aliases_share_a_publish(self) -> None:
        """
        One message routed to clients that take aliases, at different points
        of their alias tables, and to one that takes none: each gets its own
        correct encoding.
        """
        fresh = self.subscriber("fresh", maximum=2)
        warm = self.subscriber("warm", maximum=2)
        plain = self.connect_client("plain", 5)
        plain.subscribe("#")
        pub = self.connect_client("pub", 5)
        pub.publish("other", b"0")
        fresh.received()
        self.assertEqual(warm.publishes(), [aliased("other", 1, b"0")])
        plain.received()
        late = self.subscriber("late", maximum=2)
        pub.publish("t", b"1")
        self.assertEqual(fresh.publishes(), [aliased("t", 2, b"1")])
        self.assertEqual(warm.publishes(), [aliased("t", 2, b"1")])
        self.assertEqual(late.publishes(), [aliased("t", 1, b"1")])
        self.assertEqual(plain.publishes(), [Publish("t", b"1")])

    def test_retained_messages_use_aliases(self) -> None:
        """
        Retained messages sent for a new subscription use the connection's
        aliases too, with RETAIN 1 [MQTT-3.3.1-9].
        """
        pub = self.connect_client("pub", 5)
        pub.publish("r/1", b"one", retain=True)
        pub.publish("r/2", b"two", retain=True)
        sub = self.connect_client("sub", 5, properties=Properties(topic_alias_maximum=5))
        sub.subscribe("r/1")
        self.assertEqual(sub.received(), [Publish("r/1", b"one", 0, True, properties=Properties(topic_alias=1))])
        sub.subscribe("r/#")
        self.assertEqual(
            sorted(sub.publishes(), key=lambda p: p.payload),
            [
                Publish("", b"one", 0, True, properties=Properties(topic_alias=1)),
                Publish("r/2", b"two", 0, True, properties=Properties(topic_alias=2)),
            ],
        )

    def test_aliases_are_not_carried_into_a_new_connection(self) -> None:
        """
        Alias mappings last only as long as the network connection
        [MQTT-3.3.2-7]: after the client reconnects to its session, the next
        PUBLISH of a topic it had an alias for carries the topic name again.
        """
        props = Properties(topic_alias_maximum=2, session_expiry_interval=60)
        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        sub.subscribe("t", 1)
        self.publish("t", qos=1)
        first = sub.publishes()
        self.assertEqual(first, [aliased("t", 1, b"0", 1, first[0].packet_id)])
        sub.ack(first)
        sub.drop()
        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        self.publish("t", qos=1)
        again = sub.publishes()
        self.assertEqual(again, [aliased("t", 1, b"0", 1, again[0].packet_id)])

    def test_resent_publish_is_encoded_for_the_new_connection(self) -> None:
        """
        Unacknowledged PUBLISH resent on resumption (DUP 1, same packet
        identifiers [MQTT-4.4.0-1]) use the new connection's aliases: the
        first carries the topic name again even if it first went out with
        an alias alone, and a client that now takes no aliases gets plain
        topic names.
        """
        props = Properties(topic_alias_maximum=2, session_expiry_interval=60)
        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        sub.subscribe("t", 1)
        self.publish("t", "t", qos=1)
        first = sub.publishes()
        ids = [p.packet_id for p in first]
        self.assertEqual(first, [aliased("t", 1, b"0", 1, ids[0]), aliased("", 1, b"1", 1, ids[1])])
        sub.drop()

        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        resent = sub.publishes()
        self.assertEqual(
            resent,
            [
                Publish("t", b"0", 1, False, True, ids[0], Properties(topic_alias=1)),
                Publish("", b"1", 1, False, True, ids[1], Properties(topic_alias=1)),
            ],
        )
        sub.drop()

        plain = Properties(session_expiry_interval=60)
        sub = self.connect_client("sub", 5, clean_start=False, properties=plain)
        self.assertEqual(
            sub.publishes(),
            [Publish("t", b"0", 1, False, True, ids[0]), Publish("t", b"1", 1, False, True, ids[1])],
        )
        sub.send(*(PubAck(pid or 0) for pid in ids))
        self.assertEqual(sub.received(), [])

    def test_publish_too_large_for_the_client_does_not_take_an_alias(self) -> None:
        """
        A PUBLISH too large for the client's Maximum Packet Size is not sent
        [MQTT-3.1.2-25], so the client never learnt its alias: the next
        PUBLISH of that topic carries the topic name, and the alias the
        dropped one would have replaced still holds its topic.
        """
        sub = self.subscriber(maximum=1, maximum_packet_size=64)
        pub = self.connect_client("pub", 5)
        pub.publish("a", b"small")
        pub.publish("b", b"x" * 100)
        pub.publish("a", b"again")
        pub.publish("b", b"fits")
        self.assertEqual(
            sub.publishes(),
            [aliased("a", 1, b"small"), aliased("", 1, b"again"), aliased("b", 1, b"fits")],
        )
        self.assertEqual(self.broker.counters.dropped_too_large, 1)

    def test_alias_only_publish_is_smaller(self) -> None:
        """
        The point of it all: once aliased, a long topic name is no longer
        sent, and the PUBLISH shrinks by its length.
        """
        topic = "building/7/floor/3/room/12/sensor/temperature"
        sub = self.subscriber(maximum=1)
        self.publish(topic, topic)
        data = sub.transport.value()
        first, second = sub.publishes()
        self.assertEqual(len(encode(first, 5)) - len(encode(second, 5)), len(topic))
        self.assertIn(encode(second, 5), data)
