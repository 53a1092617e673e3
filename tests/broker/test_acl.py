# -*- test-case-name: tests.broker.test_acl -*-
"""
Tests for the broker's topic authorization: an L{ACLAuthorizer} given to
L{Broker} is asked on PUBLISH, on SUBSCRIBE and on each delivery.
"""

from __future__ import annotations

from twisted.logger import capturedLogs

from mqttx.auth.acl import ACLAuthorizer, parse_acl
from mqttx.broker.broker import Broker
from mqttx.mqtt.packets import (
    PubAck,
    PubComp,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)
from mqttx.mqtt.reason_codes import ReasonCode

from ..helpers import BrokerTestCase, FakeClient

#: Anonymous clients read and write under open/ and read news/; alice
#: writes news/ and reads everything under open/ but open/secret; every
#: client reads and writes under its own devices/CLIENT-ID/; writer writes
#: all of open/; root reads everything.
ACL_TEXT = """
topic open/#
topic read news/#
topic deny open/secret
user alice
topic write news/#
topic read open/#
topic deny open/secret
user root
topic read #
user writer
topic write open/#
pattern devices/%c/#
"""


def _pid(packet_id: int | None) -> int:
    assert packet_id is not None
    return packet_id


class ACLBrokerTestCase(BrokerTestCase):
    """A broker with the rules of L{ACL_TEXT} and C{root} as admin."""

    def make_broker(self) -> Broker:
        self.authorizer = ACLAuthorizer(parse_acl(ACL_TEXT), ("root",))
        return Broker(self.config, clock=self.clock, store=self.store, authorizer=self.authorizer)

    def subscriber(
        self, topic_filter: str, level: int = 4, client_id: str = "sub", username: str | None = None
    ) -> FakeClient:
        """A client subscribed to C{topic_filter} at QoS 1, granted."""
        client = self.connect_client(client_id, level, username=username)
        suback = client.subscribe(topic_filter, 1)
        self.assertEqual(suback.reason_codes, (1,))
        return client


class PublishTests(ACLBrokerTestCase):
    """A PUBLISH to a topic the client may not write."""

    def test_v5_qos1_denied_puback_0x87(self) -> None:
        """
        MQTT 5: PUBACK 0x87 (Not authorized, section 3.4.2.1), and the
        message reaches nobody.
        """
        sub = self.subscriber("news/#")
        pub = self.connect_client("pub", 5)
        pid = _pid(pub.publish("news/today", qos=1))
        self.assertEqual(pub.received(), [PubAck(pid, ReasonCode.NOT_AUTHORIZED)])
        self.assertEqual(sub.received(), [])

    def test_v5_qos2_denied_pubrec_0x87(self) -> None:
        """MQTT 5: PUBREC 0x87 ends the QoS 2 exchange (section 4.3.3); nothing delivered."""
        sub = self.subscriber("news/#")
        pub = self.connect_client("pub", 5)
        pid = _pid(pub.publish("news/today", qos=2))
        self.assertEqual(pub.received(), [PubRec(pid, ReasonCode.NOT_AUTHORIZED)])
        self.assertEqual(sub.received(), [])
        self.assertNotIn(pid, pub.session.inbound_qos2 if pub.session else set())

    def test_qos0_denied_dropped(self) -> None:
        """A denied QoS 0 message is dropped; the connection stays open."""
        sub = self.subscriber("news/#")
        for level in (4, 5):
            pub = self.connect_client(f"pub{level}", level)
            pub.publish("news/today")
            self.assertEqual(pub.received(), [])
            self.assertFalse(pub.disconnecting)
        self.assertEqual(sub.received(), [])

    def test_v311_denied_acknowledged_and_dropped(self) -> None:
        """
        [MQTT-3.3.5-2] 3.1.1 cannot say no: the server acknowledges as
        usual (PUBACK; PUBREC, PUBREL, PUBCOMP) and delivers nothing.
        """
        sub = self.subscriber("news/#")
        pub = self.connect_client("pub", 4)
        pid = _pid(pub.publish("news/today", qos=1))
        self.assertEqual(pub.received(), [PubAck(pid)])
        pid = _pid(pub.publish("news/today", qos=2))
        self.assertEqual(pub.received(), [PubRec(pid)])
        pub.send(PubRel(pid))
        self.assertEqual(pub.received(), [PubComp(pid)])
        self.assertEqual(sub.received(), [])

    def test_granted_publish_delivered(self) -> None:
        """A publish the rules grant is routed as usual."""
        sub = self.subscriber("news/#")
        pub = self.connect_client("pub", 5, username="alice")
        pub.publish_acked("news/today", b"hi", qos=1)
        [message] = sub.publishes()
        self.assertEqual((message.topic, message.payload), ("news/today", b"hi"))

    def test_pattern_client_id(self) -> None:
        """C{pattern devices/%c/#}: a client writes its own device topics only."""
        pub = self.connect_client("dev1", 5)
        pid = _pid(pub.publish("devices/dev1/status", qos=1))
        self.assertEqual(pub.received(), [PubAck(pid, ReasonCode.NO_MATCHING_SUBSCRIBERS)])
        pid = _pid(pub.publish("devices/dev2/status", qos=1))
        self.assertEqual(pub.received(), [PubAck(pid, ReasonCode.NOT_AUTHORIZED)])

    def test_denial_logged_once(self) -> None:
        """A denial is logged once per client and topic, not per message, as C{acl.denied}."""
        pub = self.connect_client("pub", 5)
        with capturedLogs() as events:
            for _ in range(3):
                pub.publish("news/a")
            pub.publish("news/b")
        denied = [(e["action"], e["topic"]) for e in events if e.get("event_id") == "acl.denied"]
        self.assertEqual(denied, [("publish", "news/a"), ("publish", "news/b")])


class SubscribeTests(ACLBrokerTestCase):
    """SUBSCRIBE to filters the client may not read."""

    def _subscribe(self, client: FakeClient, *filters: str) -> SubAck:
        client.send(Subscribe(client.next_pid(), tuple(Subscription(f, 1) for f in filters)))
        return client.expect(SubAck)

    def test_v5_denied_filters_0x87(self) -> None:
        """
        MQTT 5: each filter not granted gets 0x87 (section 3.9.3), the
        others their QoS [MQTT-3.9.3-1].
        """
        client = self.connect_client("c", 5)
        suback = self._subscribe(client, "news/#", "other", "open/secret", "#", "open/#")
        self.assertEqual(suback.reason_codes, (1, 0x87, 0x87, 0x87, 1))
        self.assertEqual(sorted(client.session.subscriptions if client.session else ()), ["news/#", "open/#"])

    def test_v311_denied_filters_0x80(self) -> None:
        """3.1.1: each filter not granted gets 0x80 (Failure, section 3.9.3)."""
        client = self.connect_client("c", 4)
        suback = self._subscribe(client, "news/+", "newsy")
        self.assertEqual(suback.reason_codes, (1, 0x80))

    def test_sys_only_for_admins(self) -> None:
        """C{$SYS/#} is granted to admins only, even when the file grants C{#}."""
        bob = self.connect_client("bob", 5)
        self.assertEqual(self._subscribe(bob, "$SYS/#").reason_codes, (0x87,))
        root = self.connect_client("root", 5, username="root")
        self.assertEqual(self._subscribe(root, "$SYS/#").reason_codes, (1,))

    def test_subscribe_denial_logged(self) -> None:
        """A refused filter is logged as C{acl.denied}."""
        client = self.connect_client("c", 5)
        with capturedLogs() as events:
            self._subscribe(client, "other")
        self.assertEqual(
            [(e["action"], e["topic"]) for e in events if e.get("event_id") == "acl.denied"],
            [("subscribe", "other")],
        )


class DeliveryTests(ACLBrokerTestCase):
    """Each delivery is checked against the subscriber's read rights."""

    def test_denied_topic_skipped(self) -> None:
        """
        C{open/#} is granted though C{open/secret} is denied: messages of
        C{open/secret} are not delivered, others are; the publisher may
        write both.
        """
        sub = self.subscriber("open/#", 5)
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/secret", qos=1)
        pub.publish_acked("open/news", qos=1)
        self.assertEqual([p.topic for p in sub.publishes()], ["open/news"])

    def test_each_subscriber_by_own_rights(self) -> None:
        """One message reaches the subscribers who may read it, not the others."""
        anon = self.subscriber("open/#", 4, "anon")
        root = self.subscriber("#", 4, "root", username="root")
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/secret", qos=1)
        self.assertEqual(anon.received(), [])
        self.assertEqual([p.topic for p in root.publishes()], ["open/secret"])

    def test_retained_on_subscribe_filtered(self) -> None:
        """Retained messages sent on subscribe are checked too [MQTT-3.3.1-9]."""
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/secret", b"s", qos=1, retain=True)
        pub.publish_acked("open/news", b"n", qos=1, retain=True)
        sub = self.subscriber("open/#", 5)
        self.assertEqual([(p.topic, p.retain) for p in sub.publishes()], [("open/news", True)])

    def test_will_delivered_by_read_rights(self) -> None:
        """
        A will is published like any message [MQTT-3.1.2-8]: only to the
        subscribers that may read its topic (and only if its client may write it).
        """
        anon = self.subscriber("open/#", 4, "anon")
        root = self.subscriber("#", 4, "root", username="root")
        dying = self.connect_client("dying", 4, will=Will("open/secret", b"gone", 1), username="writer")
        dying.drop()
        self.assertEqual(anon.received(), [])
        self.assertEqual([p.payload for p in root.publishes()], [b"gone"])

    def test_will_checked_against_writer(self) -> None:
        """
        A will to a topic its client may not write is dropped at CONNECT
        (logged as C{acl.denied}), like its other PUBLISH; the client is let in.
        """
        root = self.subscriber("#", 4, "root", username="root")
        with capturedLogs() as events:
            dying = self.connect_client("dying", 4, will=Will("news/x", b"gone", 1))
        self.assertEqual(dying.connack.reason_code if dying.connack else None, 0)
        dying.drop()
        self.assertEqual(root.received(), [])
        self.assertEqual(
            [(e["action"], e["topic"]) for e in events if e.get("event_id") == "acl.denied"],
            [("will", "news/x")],
        )

    def test_shared_subscription_member_checked(self) -> None:
        """A member of a shared subscription gets only what it may read."""
        sub = self.connect_client("anon", 5)
        self.assertEqual(sub.subscribe("$share/g/open/#", 1).reason_codes, (1,))
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/secret", qos=1)
        pub.publish_acked("open/x", qos=1)
        self.assertEqual([p.topic for p in sub.publishes()], ["open/x"])

    def test_rights_follow_the_username(self) -> None:
        """A session resumed under another username is checked with the new one's rules."""
        sub = self.connect_client("c", 4, clean_start=False, username="root")
        sub.subscribe("open/#", 1)
        sub.disconnect()
        again = self.connect_client("c", 4, clean_start=False)
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/secret", qos=1)
        self.assertEqual(again.received(), [])


    def test_restored_session_until_reconnect(self) -> None:
        """
        The store keeps no user names: a persistent session restored at
        start gets nothing until its client connects again, then follows
        that client's rules.
        """
        sub = self.connect_client("c", 4, clean_start=False, username="root")
        sub.subscribe("open/#", 1)
        sub.disconnect()
        self._build()  # A restart on the same store.
        pub = self.connect_client("pub", 4, username="writer")
        pub.publish_acked("open/a", qos=1)
        again = self.connect_client("c", 4, clean_start=False, username="root")
        self.assertEqual(again.received(), [])
        pub.publish_acked("open/b", qos=1)
        self.assertEqual([p.topic for p in again.publishes()], ["open/b"])

class NoAuthorizerTests(BrokerTestCase):
    """Without an authorizer nothing is checked."""

    def test_everything_allowed(self) -> None:
        """Sessions get no access object; every topic goes through."""
        sub = self.connect_client("sub", 5)
        self.assertEqual(sub.subscribe("#", 1).reason_codes, (1,))
        self.assertIsNone(sub.session.access if sub.session else "missing")
        pub = self.connect_client("pub", 5)
        pub.publish_acked("any/thing", qos=1)
        self.assertEqual([p.topic for p in sub.publishes()], ["any/thing"])
