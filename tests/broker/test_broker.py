# -*- test-case-name: tests.broker.test_broker -*-
"""
Tests for L{mqttx.broker.broker}, through real server protocols on
L{StringTransport}s: CONNECT and CONNACK, QoS flows, takeover, wills,
retained messages, subscriptions and shutdown.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed

from mqttx.broker.admission import NEVER_EXPIRES
from mqttx.broker.state import Delivery
from mqttx.config import MQTTConfig
from mqttx.interfaces import IStore
from mqttx.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.store.memory import MemoryStore
from tests.helpers import PROTOCOL_NAMES, BrokerTestCase


class ConnAckTests(BrokerTestCase):
    """
    The answer to CONNECT.
    """

    def test_session_present_clean_session(self) -> None:
        """
        If a client connects with CleanSession 1, CONNACK has Session Present
        0, even when a session was stored [MQTT-3.2.2-1].
        """
        self.connect_client("c1", clean_start=False).drop()
        client = self.connect_client("c1", clean_start=True)
        self.assertEqual(client.connack, ConnAck(False, 0))

    def test_session_present_when_stored(self) -> None:
        """
        If a client connects with CleanSession 0 and a session is stored for
        it, CONNACK has Session Present 1 [MQTT-3.2.2-2].
        """
        self.connect_client("c1", clean_start=False).drop()
        client = self.connect_client("c1", clean_start=False)
        self.assertEqual(client.connack, ConnAck(True, 0))

    def test_session_present_without_stored_session(self) -> None:
        """
        If a client connects with CleanSession 0 and no session is stored,
        CONNACK has Session Present 0 [MQTT-3.2.2-3].
        """
        client = self.connect_client("c1", clean_start=False)
        self.assertEqual(client.connack, ConnAck(False, 0))

    def test_v5_session_present(self) -> None:
        """
        If a 5.0 client connects with Clean Start 0 to a session that has not
        expired, CONNACK has Session Present 1 [MQTT-3.2.2-2] (5.0).
        """
        props = Properties(session_expiry_interval=60)
        self.connect_client("c1", 5, clean_start=False, properties=props).drop()
        client = self.connect_client("c1", 5, clean_start=False, properties=props)
        assert client.connack is not None
        self.assertTrue(client.connack.session_present)

    def test_v311_empty_client_id_clean_session_assigned(self) -> None:
        """
        If a 3.1.1 client connects with an empty client identifier and
        CleanSession 1, the broker assigns it a unique one [MQTT-3.1.3-6].
        """
        a = self.connect_client("", 4, clean_start=True)
        b = self.connect_client("", 4, clean_start=True)
        self.assertEqual(a.connack, ConnAck(False, 0))
        self.assertEqual(b.connack, ConnAck(False, 0))
        assert a.session is not None and b.session is not None
        self.assertTrue(a.session.client_id)
        self.assertNotEqual(a.session.client_id, b.session.client_id)
        self.assertFalse(a.disconnecting)

    def test_v311_empty_client_id_persistent_refused(self) -> None:
        """
        If a 3.1.1 client connects with an empty client identifier and
        CleanSession 0, the broker answers CONNACK 0x02 (identifier rejected)
        and closes [MQTT-3.1.3-8].
        """
        client = self.connect_client("", 4, clean_start=False)
        self.assertEqual(client.connack, ConnAck(False, 0x02))
        self.assertTrue(client.disconnecting)

    def test_v31_empty_client_id_refused(self) -> None:
        """
        If an MQTT 3.1 client connects with an empty client identifier, the
        broker answers CONNACK 0x02: 3.1 requires 1 to 23 characters.
        """
        client = self.connect_client("", 3, clean_start=True)
        self.assertEqual(client.connack, ConnAck(False, 0x02))
        self.assertTrue(client.disconnecting)

    def test_v31_client_accepted(self) -> None:
        """
        If an MQTT 3.1 client (C{MQIsdp}, level 3) connects, it is let in.
        """
        client = self.connect_client("c1", 3)
        self.assertEqual(client.connack, ConnAck(False, 0))
        self.assertFalse(client.disconnecting)

    def test_v5_empty_client_id_assigned_identifier(self) -> None:
        """
        If a 5.0 client connects with an empty client identifier, CONNACK
        carries the Assigned Client Identifier, which names its session
        [MQTT-3.1.3-7] [MQTT-3.2.2-16].
        """
        client = self.connect_client("", 5)
        assert client.connack is not None and client.session is not None
        assigned = client.connack.properties.assigned_client_identifier
        self.assertTrue(assigned)
        self.assertEqual(client.session.client_id, assigned)

    def test_v5_client_id_not_echoed(self) -> None:
        """
        If a 5.0 client names itself, CONNACK has no Assigned Client
        Identifier.
        """
        client = self.connect_client("c1", 5)
        assert client.connack is not None
        self.assertIsNone(client.connack.properties.assigned_client_identifier)

    def test_v5_authentication_method_refused(self) -> None:
        """
        If a 5.0 client asks for an enhanced authentication method, which
        the broker does not offer, it answers CONNACK 0x8C (Bad
        authentication method) and closes (section 4.12).
        """
        client = self.connect_client("c1", 5, properties=Properties(authentication_method="SCRAM-SHA-1"))
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0x8C)
        self.assertFalse(client.connack.session_present)
        self.assertTrue(client.disconnecting)
        self.assertNotIn("c1", self.broker.sessions)

    def test_v5_connack_properties(self) -> None:
        """
        A 5.0 CONNACK tells the client the broker's maximum packet size and
        topic alias maximum; it has no Shared Subscription Available (absent:
        available) and no Session Expiry Interval when the client's was kept
        (section 3.2.2.3).
        """
        self.use_config(max_packet_size=5000, topic_alias_maximum=10)
        client = self.connect_client("c1", 5, properties=Properties(session_expiry_interval=100))
        assert client.connack is not None
        props = client.connack.properties
        self.assertEqual(props.maximum_packet_size, 5000)
        self.assertEqual(props.topic_alias_maximum, 10)
        self.assertIsNone(props.shared_subscription_available)
        self.assertIsNone(props.session_expiry_interval)
        self.assertIsNone(props.receive_maximum)

    def test_v5_connack_receive_maximum(self) -> None:
        """
        If the broker's inbound window is below 65535, the 5.0 CONNACK
        carries it as Receive Maximum (section 3.2.2.3.3).
        """
        self.use_config(receive_maximum=10)
        client = self.connect_client("c1", 5)
        assert client.connack is not None
        self.assertEqual(client.connack.properties.receive_maximum, 10)

    def test_v5_session_expiry_capped_is_echoed(self) -> None:
        """
        If a 5.0 client asks for a session expiry longer than
        C{max_session_expiry}, CONNACK carries the capped value
        (section 3.2.2.3.2).
        """
        self.use_config(max_session_expiry=600)
        client = self.connect_client("c1", 5, properties=Properties(session_expiry_interval=NEVER_EXPIRES))
        assert client.connack is not None and client.session is not None
        self.assertEqual(client.connack.properties.session_expiry_interval, 600)
        self.assertEqual(client.session.expiry_interval, 600)

    def test_v311_connack_has_no_properties(self) -> None:
        """
        A 3.1.1 CONNACK is two bytes: flags and return code.
        """
        client = self.connect_client("c1", 4)
        self.assertEqual(client.transport.value(), b"\x20\x02\x00\x00")


class QoSTests(BrokerTestCase):
    """
    QoS 0, 1 and 2 end to end.
    """

    def _matrix(self, level: int) -> None:
        for granted in (0, 1, 2):
            sub = self.connect_client(f"sub{granted}", level)
            ack = sub.subscribe(f"q/{granted}", qos=granted)
            self.assertEqual(ack.reason_codes, (granted,))
            pub = self.connect_client(f"pub{granted}", level)
            for published in (0, 1, 2):
                pub.publish_acked(f"q/{granted}", b"%d" % published, published)
                [got] = sub.publishes()
                self.assertEqual(got.qos, min(published, granted), (published, granted))
                self.assertEqual(got.payload, b"%d" % published)
                self.assertFalse(got.dup)
                self.assertEqual(got.packet_id is None, got.qos == 0)
                sub.ack([got])
                if got.qos == 2:
                    assert got.packet_id is not None
                    self.assertEqual(sub.received(), [PubRel(got.packet_id)])
                    sub.send(PubComp(got.packet_id))
                self.assertEqual(sub.received(), [])
            assert sub.session is not None
            self.assertEqual(sub.session.inflight, {})

    def test_delivery_qos_is_min_of_published_and_granted_v311(self) -> None:
        """
        If a 3.1.1 client publishes at QoS p to a subscription granted QoS g,
        the subscriber gets it at min(p, g) ([MQTT-3.8.4-6], section 4.3).
        """
        self._matrix(4)

    def test_delivery_qos_is_min_of_published_and_granted_v5(self) -> None:
        """
        The same for 5.0 [MQTT-3.8.4-8].
        """
        self._matrix(5)

    def test_qos1_inbound_acknowledged(self) -> None:
        """
        If a client publishes at QoS 1, the broker answers PUBACK with the
        same packet identifier (3.1.1 [MQTT-4.3.2-2], 5.0 [MQTT-4.3.2-4]).
        """
        pub = self.connect_client("pub")
        pub.publish("t", b"m", 1, packet_id=42)
        self.assertEqual(pub.received(), [PubAck(42)])

    def test_qos2_inbound_flow(self) -> None:
        """
        If a client publishes at QoS 2, the broker answers PUBREC, then
        PUBCOMP to its PUBREL (5.0 [MQTT-4.3.3-9] [MQTT-4.3.3-11]); the message is
        delivered once, at PUBLISH.
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=0)
        pub = self.connect_client("pub")
        pub.publish("t", b"m", 2, packet_id=9)
        self.assertEqual(pub.received(), [PubRec(9)])
        self.assertEqual(sub.received(), [Publish("t", b"m")])
        pub.send(PubRel(9))
        self.assertEqual(pub.received(), [PubComp(9)])
        self.assertEqual(sub.received(), [])

    def test_v5_no_matching_subscribers(self) -> None:
        """
        If a 5.0 client publishes at QoS 1 or 2 to a topic nobody subscribes
        to, the acknowledgement says 0x10 (No matching subscribers).
        """
        pub = self.connect_client("pub", 5)
        pub.publish("nobody", b"m", 1, packet_id=1)
        pub.publish("nobody", b"m", 2, packet_id=2)
        self.assertEqual(pub.received(), [PubAck(1, 0x10), PubRec(2, 0x10)])

    def test_qos2_duplicate_before_pubrel_not_delivered_again(self) -> None:
        """
        If a client sends a QoS 2 PUBLISH again (DUP=1) before PUBREL, the
        broker answers PUBREC again but does not deliver it twice
        [MQTT-4.3.3-10].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=2)
        pub = self.connect_client("pub")
        pub.publish("t", b"once", 2, packet_id=5)
        pub.publish("t", b"once", 2, packet_id=5, dup=True)
        self.assertEqual(pub.received(), [PubRec(5), PubRec(5)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"once"])
        pub.send(PubRel(5))
        self.assertEqual(pub.received(), [PubComp(5)])
        self.assertEqual(sub.received(), [])

    def test_qos2_identifier_reusable_after_pubcomp(self) -> None:
        """
        If a client reuses a QoS 2 packet identifier after PUBCOMP, the
        broker treats it as a new message [MQTT-4.3.3-12].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=0)
        pub = self.connect_client("pub")
        for payload in (b"first", b"second"):
            pub.publish("t", payload, 2, packet_id=5)
            pub.send(PubRel(5))
            self.assertEqual(pub.received(), [PubRec(5), PubComp(5)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"first", b"second"])

    def test_pubrel_for_unknown_identifier(self) -> None:
        """
        If a 3.1.1 client sends PUBREL for a packet identifier the broker
        does not know, it still answers PUBCOMP (section 4.3.3).
        """
        pub = self.connect_client("pub")
        pub.send(PubRel(77))
        self.assertEqual(pub.received(), [PubComp(77)])
        self.assertFalse(pub.disconnecting)

    def test_v5_pubrel_for_unknown_identifier(self) -> None:
        """
        If a 5.0 client sends PUBREL for an unknown packet identifier, the
        broker answers PUBCOMP 0x92 (Packet Identifier not found), with a
        Reason String (section 3.7.2.2.2).
        """
        pub = self.connect_client("pub", 5)
        pub.send(PubRel(77))
        self.assertEqual(pub.received(), [PubComp(77, 0x92, Properties(reason_string="packet identifier not found"))])

    def test_outbound_qos2_flow(self) -> None:
        """
        If a subscriber answers a QoS 2 PUBLISH with PUBREC, the broker sends
        PUBREL, and the delivery ends with the subscriber's PUBCOMP
        [MQTT-4.3.3-4].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=2)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"m", 2)
        [got] = sub.publishes()
        assert got.packet_id is not None and sub.session is not None
        sub.send(PubRec(got.packet_id))
        self.assertEqual(sub.received(), [PubRel(got.packet_id)])
        self.assertIn(got.packet_id, sub.session.inflight)
        sub.send(PubComp(got.packet_id))
        self.assertEqual(sub.session.inflight, {})

    def test_v5_pubrec_error_ends_delivery(self) -> None:
        """
        If a 5.0 subscriber answers a QoS 2 PUBLISH with a PUBREC reason code
        of 0x80 or more, the delivery ends without PUBREL (section 4.3.3).
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", qos=2)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"m", 2)
        [got] = sub.publishes()
        assert got.packet_id is not None and sub.session is not None
        sub.send(PubRec(got.packet_id, 0x80))
        self.assertEqual(sub.received(), [])
        self.assertEqual(sub.session.inflight, {})

    def test_packet_identifiers_distinct_while_in_flight(self) -> None:
        """
        While QoS 1 deliveries are unacknowledged, each has its own packet
        identifier [MQTT-2.3.1-4].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=1)
        pub = self.connect_client("pub")
        for i in range(5):
            pub.publish_acked("t", b"%d" % i, 1)
        ids = [p.packet_id for p in sub.publishes()]
        self.assertEqual(len(set(ids)), 5)
        self.assertNotIn(0, ids)

    def test_v311_inflight_window(self) -> None:
        """
        If C{max_inflight} is 2, a 3.1.1 subscriber has at most two QoS 1
        messages unacknowledged; the third waits until a PUBACK, and order is
        kept.
        """
        self.use_config(max_inflight=2)
        self._window("sub", 4)

    def test_v5_receive_maximum_window(self) -> None:
        """
        If a 5.0 subscriber's Receive Maximum is 2, the broker sends it at
        most two unacknowledged QoS 1/2 PUBLISH; the rest wait, in order
        [MQTT-3.3.4-9].
        """
        self._window("sub", 5, Properties(receive_maximum=2))

    def _window(self, client_id: str, level: int, props: Properties = NO_PROPERTIES) -> None:
        sub = self.connect_client(client_id, level, properties=props)
        sub.subscribe("t", qos=2)
        pub = self.connect_client("pub", level)
        pub.publish_acked("t", b"1", 1)
        pub.publish_acked("t", b"2", 2)
        pub.publish_acked("t", b"3", 1)
        pub.publish_acked("t", b"4", 1)
        first = sub.publishes()
        self.assertEqual([p.payload for p in first], [b"1", b"2"])
        # PUBREC does not free the QoS 2 slot: only PUBCOMP does.
        assert first[1].packet_id is not None
        sub.send(PubRec(first[1].packet_id))
        self.assertEqual(sub.received(), [PubRel(first[1].packet_id)])
        sub.ack(first[:1])
        second = sub.publishes()
        self.assertEqual([p.payload for p in second], [b"3"])
        sub.send(PubComp(first[1].packet_id))
        self.assertEqual([p.payload for p in sub.publishes()], [b"4"])

    def test_qos0_not_held_by_window(self) -> None:
        """
        If the in-flight window is full, QoS 0 messages still go out at once.
        """
        self.use_config(max_inflight=1)
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=1)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"a", 1)
        pub.publish_acked("t", b"b", 1)
        pub.publish("t", b"c", 0)
        self.assertEqual([p.payload for p in sub.publishes()], [b"a", b"c"])

    def test_queue_bound_drops_and_counts(self) -> None:
        """
        If more messages wait for a subscriber than C{max_queued_messages},
        the excess is dropped and counted in C{broker.counters}.
        """
        self.use_config(max_inflight=1, max_queued_messages=2)
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=1)
        pub = self.connect_client("pub")
        for i in range(6):
            pub.publish_acked("t", b"%d" % i, 1)
        # One in flight, two queued, three dropped.
        self.assertEqual(self.broker.counters.dropped_queue_full, 3)
        got = []
        for _ in range(3):
            batch = sub.publishes()
            got.extend(batch)
            sub.ack(batch)
        self.assertEqual([p.payload for p in got], [b"0", b"1", b"2"])


class TakeoverTests(BrokerTestCase):
    """
    A second connection with the same client identifier.
    """

    def test_second_connection_closes_first(self) -> None:
        """
        If a client connects with the identifier of a connected client, the
        broker closes the existing connection [MQTT-3.1.4-2].
        """
        first = self.connect_client("c1")
        second = self.connect_client("c1")
        self.assertTrue(first.disconnecting)
        self.assertEqual(first.received(), [])
        self.assertEqual(second.connack, ConnAck(False, 0))
        self.assertFalse(second.disconnecting)

    def test_v5_takeover_sends_session_taken_over(self) -> None:
        """
        If a 5.0 client is taken over, it gets DISCONNECT 0x8E (Session taken
        over) before its connection closes [MQTT-3.1.4-3].
        """
        first = self.connect_client("c1", 5)
        self.connect_client("c1", 5)
        self.assertClosedWith(first, 0x8E)

    def test_session_continues_on_new_connection(self) -> None:
        """
        If a persistent session is taken over, its subscriptions and
        unacknowledged messages continue on the new connection, which sees
        Session Present 1; the old connection's end changes nothing
        [MQTT-3.1.2-4].
        """
        first = self.connect_client("c1", clean_start=False)
        first.subscribe("t", qos=1)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"unacked", 1)
        [unacked] = first.publishes()
        second = self.connect_client("c1", clean_start=False)
        self.assertEqual(second.connack, ConnAck(True, 0))
        resent = second.publishes()
        self.assertEqual([(p.payload, p.dup, p.packet_id) for p in resent], [(b"unacked", True, unacked.packet_id)])
        first.finish_close()
        pub.publish_acked("t", b"new", 1)
        self.assertEqual([p.payload for p in second.publishes()], [b"new"])
        self.assertEqual(first.received(), [])
        self.assertIn("c1", self.broker.sessions)

    def test_takeover_publishes_old_will_v311(self) -> None:
        """
        If a 3.1.1 client with a will is taken over, its will is published,
        as for any end without DISCONNECT [MQTT-3.1.2-8].
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("will")
        self.connect_client("c1", will=Will("will", b"old"))
        self.connect_client("c1")
        self.assertEqual(watcher.received(), [Publish("will", b"old")])

    def test_v5_takeover_cancels_delayed_will(self) -> None:
        """
        If a 5.0 session with a delayed will is taken over (resumed) before
        the delay passes, the will is not published [MQTT-3.1.3-9].
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("will")
        props = Properties(session_expiry_interval=100)
        will = Will("will", b"old", properties=Properties(will_delay_interval=10))
        self.connect_client("c1", 5, clean_start=False, properties=props, will=will)
        self.connect_client("c1", 5, clean_start=False, properties=props)
        self.clock.advance(200)
        self.assertEqual(watcher.received(), [])

    def test_takeover_of_clean_session_starts_fresh(self) -> None:
        """
        If the connection taken over had a session that ends with it, the
        new connection gets a new session (Session Present 0).
        """
        first = self.connect_client("c1", clean_start=True)
        first.subscribe("t")
        second = self.connect_client("c1", clean_start=False)
        self.assertEqual(second.connack, ConnAck(False, 0))
        assert second.session is not None
        self.assertEqual(second.session.subscriptions, {})


class WillTests(BrokerTestCase):
    """
    Will messages.
    """

    def setUp(self) -> None:
        super().setUp()
        self.watcher = self.connect_client("watcher", 5)
        self.watcher.subscribe("will/#", qos=2)

    def _wills(self) -> list[tuple[str, bytes]]:
        packets = self.watcher.publishes()
        self.watcher.ack(packets)
        self.watcher.received()
        return [(p.topic, p.payload) for p in packets]

    def test_abrupt_loss_publishes_will(self) -> None:
        """
        If a client's connection is lost without DISCONNECT, its will is
        published at its QoS [MQTT-3.1.2-8].
        """
        client = self.connect_client("c1", will=Will("will/c1", b"lost", qos=1))
        client.drop()
        [will] = self.watcher.publishes()
        self.assertEqual((will.topic, will.payload, will.qos, will.retain), ("will/c1", b"lost", 1, False))

    def test_normal_disconnect_discards_will(self) -> None:
        """
        If a client sends DISCONNECT, its will is discarded, not published
        [MQTT-3.1.2-10] [MQTT-3.14.4-3].
        """
        client = self.connect_client("c1", will=Will("will/c1", b"lost"))
        client.disconnect()
        self.clock.advance(1000)
        self.assertEqual(self._wills(), [])

    def test_v5_disconnect_with_will_message(self) -> None:
        """
        If a 5.0 client sends DISCONNECT 0x04 (Disconnect with Will Message),
        its will is published (section 3.14.2.1).
        """
        client = self.connect_client("c1", 5, will=Will("will/c1", b"asked"))
        client.disconnect(0x04)
        self.assertEqual(self._wills(), [("will/c1", b"asked")])

    def test_v5_disconnect_with_error_code_publishes_will(self) -> None:
        """
        If a 5.0 client sends DISCONNECT with an error reason code (here
        0x80, Unspecified error), the will is published: only a normal
        disconnection (0x00) deletes it [MQTT-3.1.2-8] [MQTT-3.14.4-3].
        """
        client = self.connect_client("c1", 5, will=Will("will/c1", b"error"))
        client.disconnect(0x80)
        self.assertEqual(self._wills(), [("will/c1", b"error")])

    def test_v5_normal_disconnect_discards_will(self) -> None:
        """
        If a 5.0 client sends DISCONNECT 0x00, its will, even a delayed one,
        is never published [MQTT-3.1.2-10].
        """
        client = self.connect_client(
            "c1",
            5,
            properties=Properties(session_expiry_interval=100),
            will=Will("will/c1", b"w", properties=Properties(will_delay_interval=10)),
        )
        client.disconnect(0x00)
        self.clock.advance(1000)
        self.assertEqual(self._wills(), [])

    def test_v5_will_delay(self) -> None:
        """
        If a 5.0 will has a Will Delay Interval, it is published that long
        after the connection is lost, not before (section 3.1.3.2.2).
        """
        client = self.connect_client(
            "c1",
            5,
            properties=Properties(session_expiry_interval=100),
            will=Will("will/c1", b"late", properties=Properties(will_delay_interval=30)),
        )
        client.drop()
        self.clock.advance(29.9)
        self.assertEqual(self._wills(), [])
        self.clock.advance(0.1)
        self.assertEqual(self._wills(), [("will/c1", b"late")])
        self.clock.advance(1000)
        self.assertEqual(self._wills(), [])

    def test_v5_delayed_will_published_at_session_end(self) -> None:
        """
        If a 5.0 session expires before its will delay, the will is published
        when the session ends [MQTT-3.1.3-9] (section 3.1.3.2.2).
        """
        client = self.connect_client(
            "c1",
            5,
            properties=Properties(session_expiry_interval=10),
            will=Will("will/c1", b"expired", properties=Properties(will_delay_interval=60)),
        )
        client.drop()
        self.clock.advance(9.9)
        self.assertEqual(self._wills(), [])
        self.clock.advance(0.1)
        self.assertEqual(self._wills(), [("will/c1", b"expired")])
        self.assertNotIn("c1", self.broker.sessions)

    def test_v5_delayed_will_without_session_expiry(self) -> None:
        """
        If a 5.0 session ends with its connection (expiry 0), a delayed will
        is published at once.
        """
        client = self.connect_client(
            "c1", 5, will=Will("will/c1", b"now", properties=Properties(will_delay_interval=60))
        )
        client.drop()
        self.assertEqual(self._wills(), [("will/c1", b"now")])

    def test_v5_resume_cancels_delayed_will(self) -> None:
        """
        If a 5.0 client resumes its session before the will delay passes,
        the will is not published [MQTT-3.1.3-9].
        """
        props = Properties(session_expiry_interval=100)
        will = Will("will/c1", b"late", properties=Properties(will_delay_interval=30))
        self.connect_client("c1", 5, clean_start=False, properties=props, will=will).drop()
        self.clock.advance(20)
        self.connect_client("c1", 5, clean_start=False, properties=props)
        self.clock.advance(1000)
        self.assertEqual(self._wills(), [])

    def test_will_retain_stored_as_retained(self) -> None:
        """
        If a will has Will Retain set, it is published as a retained message
        [MQTT-3.1.2-17]: live subscribers get it with RETAIN 0, later ones
        with RETAIN 1.
        """
        client = self.connect_client("c1", will=Will("will/c1", b"gone", qos=1, retain=True))
        client.drop()
        [live] = self.watcher.publishes()
        self.assertFalse(live.retain)
        later = self.connect_client("later")
        later.subscribe("will/c1", qos=1)
        [retained] = later.publishes()
        self.assertEqual((retained.payload, retained.retain, retained.qos), (b"gone", True, 1))

    def test_will_properties_forwarded(self) -> None:
        """
        A 5.0 will's properties (here Content Type) go with it; its Will
        Delay Interval does not.
        """
        client = self.connect_client(
            "c1",
            5,
            will=Will("will/c1", b"w", properties=Properties(content_type="text/plain", will_delay_interval=0)),
        )
        client.drop()
        [will] = self.watcher.publishes()
        self.assertEqual(will.properties.content_type, "text/plain")
        self.assertIsNone(will.properties.will_delay_interval)

    def test_session_expiry_protocol_error_publishes_will(self) -> None:
        """
        If a 5.0 client that connected with Session Expiry 0 sets a non-zero
        one at DISCONNECT, that is a Protocol Error: the broker answers
        DISCONNECT 0x82, closes, and publishes the will, as the DISCONNECT
        was not valid (section 3.14.2.2.2).
        """
        client = self.connect_client("c1", 5, will=Will("will/c1", b"bad"))
        client.send(Disconnect(0, Properties(session_expiry_interval=60)))
        self.assertClosedWith(client, 0x82)
        client.finish_close()
        self.assertEqual(self._wills(), [("will/c1", b"bad")])
        self.assertNotIn("c1", self.broker.sessions)


class RetainedTests(BrokerTestCase):
    """
    Retained messages.
    """

    def test_retained_sent_on_subscribe(self) -> None:
        """
        If a client publishes with RETAIN 1, the message is stored and sent
        to later subscribers with RETAIN 1 [MQTT-3.3.1-5] [MQTT-3.3.1-6]
        [MQTT-3.3.1-8], after the SUBACK.
        """
        pub = self.connect_client("pub")
        pub.publish_acked("r/t", b"kept", 1, retain=True)
        sub = self.connect_client("sub")
        sub.send(Subscribe(1, (Subscription("r/#", 1),)))
        self.assertEqual(sub.received(), [SubAck(1, (1,)), Publish("r/t", b"kept", 1, True, False, 1)])

    def test_retained_replaced(self) -> None:
        """
        If a second retained message is published to a topic, it replaces
        the first [MQTT-3.3.1-5].
        """
        pub = self.connect_client("pub")
        pub.publish("r/t", b"one", 0, retain=True)
        pub.publish("r/t", b"two", 0, retain=True)
        sub = self.connect_client("sub")
        sub.subscribe("r/t")
        self.assertEqual(sub.received(), [Publish("r/t", b"two", 0, True)])

    def test_retained_cleared_by_empty_payload(self) -> None:
        """
        If a retained message with an empty payload is published, the topic's
        retained message is removed and the empty one is not stored
        [MQTT-3.3.1-10] [MQTT-3.3.1-11].
        """
        pub = self.connect_client("pub")
        pub.publish("r/t", b"one", 0, retain=True)
        pub.publish("r/t", b"", 0, retain=True)
        sub = self.connect_client("sub")
        sub.subscribe("r/#")
        self.assertEqual(sub.received(), [])
        self.assertEqual(len(self.broker.retained), 0)

    def test_empty_retained_delivered_live(self) -> None:
        """
        If an empty retained message is published, current subscribers still
        get it, with RETAIN 0 [MQTT-3.3.1-10].
        """
        sub = self.connect_client("sub")
        sub.subscribe("r/t")
        pub = self.connect_client("pub")
        pub.publish("r/t", b"", 0, retain=True)
        self.assertEqual(sub.received(), [Publish("r/t", b"", 0, False)])

    def test_retained_qos_downgraded(self) -> None:
        """
        If a retained message was published at QoS 2 and the new
        subscription grants QoS 1, it is sent at QoS 1 [MQTT-3.8.4-6].
        """
        pub = self.connect_client("pub")
        pub.publish_acked("r/t", b"m", 2, retain=True)
        sub = self.connect_client("sub")
        sub.subscribe("r/t", qos=1)
        [got] = sub.publishes()
        self.assertEqual((got.qos, got.retain), (1, True))

    def test_live_forwarding_clears_retain(self) -> None:
        """
        If a message published with RETAIN 1 matches an established
        subscription, it is forwarded with RETAIN 0 (3.1.1 [MQTT-3.3.1-9],
        5.0 [MQTT-3.3.1-12]).
        """
        for level in (4, 5):
            sub = self.connect_client(f"sub{level}", level)
            sub.subscribe(f"r/{level}")
            pub = self.connect_client(f"pub{level}", level)
            pub.publish(f"r/{level}", b"m", 0, retain=True)
            [got] = sub.publishes()
            self.assertFalse(got.retain, level)

    def test_v5_retain_as_published(self) -> None:
        """
        If a 5.0 subscription has Retain As Published, live messages keep
        the RETAIN flag they were published with [MQTT-3.3.1-13].
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/t", retain_as_published=True)
        pub = self.connect_client("pub", 5)
        pub.publish("r/t", b"kept", 0, retain=True)
        pub.publish("r/t", b"plain", 0, retain=False)
        self.assertEqual([(p.payload, p.retain) for p in sub.publishes()], [(b"kept", True), (b"plain", False)])

    def test_v5_retain_handling_0_resends_on_resubscribe(self) -> None:
        """
        If a 5.0 client subscribes again with Retain Handling 0, retained
        messages are sent again [MQTT-3.3.1-9] (5.0) [MQTT-3.8.4-4].
        """
        self.connect_client("pub").publish("r/t", b"m", 0, retain=True)
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/t", retain_handling=0)
        self.assertEqual(len(sub.publishes()), 1)
        sub.subscribe("r/t", retain_handling=0)
        self.assertEqual(len(sub.publishes()), 1)

    def test_v5_retain_handling_1_only_new_subscription(self) -> None:
        """
        If a 5.0 client subscribes with Retain Handling 1, retained messages
        are sent only if the subscription did not exist [MQTT-3.3.1-10].
        """
        self.connect_client("pub").publish("r/t", b"m", 0, retain=True)
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/t", retain_handling=1)
        self.assertEqual(len(sub.publishes()), 1)
        sub.subscribe("r/t", retain_handling=1)
        self.assertEqual(sub.received(), [])

    def test_v5_retain_handling_2_never(self) -> None:
        """
        If a 5.0 client subscribes with Retain Handling 2, no retained
        messages are sent [MQTT-3.3.1-11].
        """
        self.connect_client("pub").publish("r/t", b"m", 0, retain=True)
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/t", retain_handling=2)
        self.assertEqual(sub.received(), [])

    def test_retained_survives_publisher_session(self) -> None:
        """
        A retained message is not part of the publisher's session: it stays
        when that session ends [MQTT-3.1.2-7].
        """
        pub = self.connect_client("pub")
        pub.publish("r/t", b"m", 0, retain=True)
        pub.disconnect()
        sub = self.connect_client("sub")
        sub.subscribe("r/t")
        self.assertEqual(len(sub.publishes()), 1)

    def test_v5_retained_message_expiry(self) -> None:
        """
        If a retained 5.0 message has a Message Expiry Interval, it is not
        sent to subscribers once expired, and its remaining lifetime is
        forwarded before that [MQTT-3.3.2-5] [MQTT-3.3.2-6].
        """
        pub = self.connect_client("pub", 5)
        pub.publish("r/t", b"m", 0, retain=True, properties=Properties(message_expiry_interval=10))
        self.clock.advance(4)
        sub = self.connect_client("sub", 5)
        sub.subscribe("r/t")
        [got] = sub.publishes()
        self.assertEqual(got.properties.message_expiry_interval, 6)
        self.clock.advance(6)
        late = self.connect_client("late", 5)
        late.subscribe("r/t")
        self.assertEqual(late.received(), [])


class SubscriptionTests(BrokerTestCase):
    """
    SUBSCRIBE and UNSUBSCRIBE.
    """

    def test_invalid_filter_v311(self) -> None:
        """
        If a 3.1.1 client subscribes to a malformed filter, that is a protocol
        violation: the connection is closed and nothing is subscribed
        [MQTT-4.7.1-2] [MQTT-4.7.1-3] [MQTT-4.8.0-1].
        """
        for bad in ("a/#/b", "a+"):
            client = self.connect_client("c1")
            client.send(Subscribe(1, (Subscription("a/+", 1), Subscription(bad, 0))))
            self.assertClosedWith(client, None, bad)
            client.finish_close()
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_invalid_filter_v5(self) -> None:
        """
        If a 5.0 client subscribes or unsubscribes with a malformed filter, it
        gets DISCONNECT 0x81 (as from Mosquitto), not SUBACK 0x8F, which is
        for well-formed filters it may not use.
        """
        client = self.connect_client("c1", 5)
        client.send(Subscribe(1, (Subscription("a/#/b", 1), Subscription("a/+", 2))))
        self.assertClosedWith(client, 0x81)
        other = self.connect_client("c2", 5)
        other.send(Unsubscribe(1, ("a/#/b",)))
        self.assertClosedWith(other, 0x81)

    def test_shared_subscription_refused(self) -> None:
        """
        If a client subscribes to C{$share/...} while C{shared_subscriptions}
        is off, SUBACK says 0x9E (5.0, Shared Subscriptions not supported)
        or 0x80 (3.1.1).
        """
        self.use_config(shared_subscriptions=False)
        v5 = self.connect_client("c5", 5)
        self.assertEqual(v5.subscribe("$share/g/t").reason_codes, (0x9E,))
        v3 = self.connect_client("c3", 4)
        self.assertEqual(v3.subscribe("$share/g/t").reason_codes, (0x80,))
        self.assertEqual(self.broker.router.subscription_count, 0)

    def test_overlapping_subscriptions_deliver_once_at_max_qos(self) -> None:
        """
        If a client's subscriptions overlap, a matching message is delivered
        once, at the highest granted QoS [MQTT-3.3.5-1].
        """
        sub = self.connect_client("sub")
        sub.subscribe("a/+", qos=0)
        sub.subscribe("a/#", qos=2)
        sub.subscribe("a/b", qos=1)
        pub = self.connect_client("pub")
        pub.publish_acked("a/b", b"m", 2)
        [got] = sub.publishes()
        self.assertEqual(got.qos, 2)

    def test_v5_overlapping_subscriptions_carry_all_identifiers(self) -> None:
        """
        If a 5.0 client's overlapping subscriptions have Subscription
        Identifiers, the single delivery carries all of them [MQTT-3.3.4-3]
        [MQTT-3.3.4-4].
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("a/+", qos=1, subscription_id=7)
        sub.subscribe("a/#", qos=0, subscription_id=3)
        sub.subscribe("#", qos=0)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a/b", b"m", 1)
        [got] = sub.publishes()
        self.assertEqual(got.qos, 1)
        self.assertEqual(sorted(got.properties.subscription_identifier), [3, 7])

    def test_v5_no_local(self) -> None:
        """
        If a 5.0 subscription has No Local, the client's own messages are not
        forwarded to it; others' are [MQTT-3.8.3-3].
        """
        client = self.connect_client("c1", 5)
        client.subscribe("t", no_local=True)
        client.publish("t", b"mine")
        other = self.connect_client("c2", 5)
        other.publish("t", b"theirs")
        self.assertEqual([p.payload for p in client.publishes()], [b"theirs"])

    def test_own_messages_delivered_without_no_local(self) -> None:
        """
        Without No Local, a client gets its own messages.
        """
        client = self.connect_client("c1", 5)
        client.subscribe("t")
        client.publish("t", b"mine")
        self.assertEqual([p.payload for p in client.publishes()], [b"mine"])

    def test_resubscribe_replaces(self) -> None:
        """
        If a client subscribes again to the same filter, the new subscription
        replaces the old one: one delivery, at the new QoS [MQTT-3.8.4-3].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=2)
        sub.subscribe("t", qos=0)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"m", 2)
        [got] = sub.publishes()
        self.assertEqual(got.qos, 0)

    def test_unsubscribe(self) -> None:
        """
        If a client unsubscribes, it gets UNSUBACK and no more messages for
        that filter [MQTT-3.10.4-2] [MQTT-3.10.4-4].
        """
        sub = self.connect_client("sub")
        sub.subscribe("t")
        self.assertEqual(sub.unsubscribe("t"), UnsubAck(2))
        self.connect_client("pub").publish("t")
        self.assertEqual(sub.received(), [])

    def test_v5_unsuback_reason_codes(self) -> None:
        """
        If a 5.0 client unsubscribes from a filter it had and one it did not,
        UNSUBACK says 0x00 and 0x11 (No subscription existed).
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t")
        self.assertEqual(sub.unsubscribe("t", "other").reason_codes, (0x00, 0x11))

    def test_v311_unsuback_for_unknown_filter(self) -> None:
        """
        If a 3.1.1 client unsubscribes from a filter it does not have, it
        still gets UNSUBACK [MQTT-3.10.4-5].
        """
        sub = self.connect_client("sub")
        self.assertEqual(sub.unsubscribe("nothing"), UnsubAck(1))

    def test_dollar_topics_not_matched_by_leading_wildcards(self) -> None:
        """
        If a message is published to a topic starting with C{$}, filters
        starting with a wildcard do not match it [MQTT-4.7.2-1].
        """
        sub = self.connect_client("sub")
        sub.subscribe("#")
        sub.subscribe("+/x")
        sub.subscribe("$app/#")
        pub = self.connect_client("pub")
        pub.publish("$app/x", b"m")
        [got] = sub.publishes()
        self.assertEqual(got.topic, "$app/x")


class ShutdownTests(BrokerTestCase):
    """
    L{Broker.shutdown}.
    """

    def test_shutdown_closes_clients(self) -> None:
        """
        If the broker shuts down, 5.0 clients get DISCONNECT 0x8B (Server
        shutting down) and 3.1.1 clients are closed; the Deferred fires once
        every connection is gone.
        """
        v5 = self.connect_client("v5", 5)
        v3 = self.connect_client("v3", 4)
        d = self.broker.shutdown()
        self.assertClosedWith(v5, 0x8B)
        self.assertClosedWith(v3, None)
        self.assertNoResult(d)
        v5.finish_close()
        self.assertNoResult(d)
        v3.finish_close()
        self.assertIsNone(self.successResultOf(d))

    def test_shutdown_keeps_persistent_sessions(self) -> None:
        """
        If the broker shuts down, persistent sessions stay in the store with
        their subscriptions; sessions that end with their connection do not.
        """
        keep = self.connect_client("keep", 5, clean_start=False, properties=Properties(session_expiry_interval=600))
        keep.subscribe("t", qos=1)
        gone = self.connect_client("gone", 5)
        gone.subscribe("t", qos=1)
        d = self.broker.shutdown()
        keep.finish_close()
        gone.finish_close()
        self.successResultOf(d)
        snapshot = self.successResultOf(self.store.load())
        self.assertEqual([s.record.client_id for s in snapshot.sessions], ["keep"])
        self.assertEqual([e.topic_filter for e in snapshot.sessions[0].record.subscriptions], ["t"])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_shutdown_without_clients(self) -> None:
        """
        If no client is connected, shutdown completes at once.
        """
        self.successResultOf(self.broker.shutdown())

    def test_connect_refused_while_stopping(self) -> None:
        """
        If a client connects while the broker shuts down, it is refused with
        CONNACK 0x88 (Server unavailable) / 0x03.
        """
        v5 = self.connect_client("v5", 5)
        d = self.broker.shutdown()
        late = self.connect_client("late", 5)
        assert late.connack is not None
        self.assertEqual(late.connack.reason_code, 0x88)
        late3 = self.connect_client("late3", 4)
        self.assertEqual(late3.connack, ConnAck(False, 0x03))
        v5.finish_close()
        self.successResultOf(d)


class RetainUnavailableTests(BrokerTestCase):
    """
    A broker configured with C{retain_available: false}.
    """

    def default_config(self) -> MQTTConfig:
        return MQTTConfig(retain_available=False)

    def test_connack_says_retain_unavailable(self) -> None:
        """
        The 5.0 CONNACK carries Retain Available 0 (section 3.2.2.3.5).
        """
        client = self.connect_client("c1", 5)
        assert client.connack is not None
        self.assertEqual(client.connack.properties.retain_available, 0)

    def test_retained_publish_refused(self) -> None:
        """
        If a 5.0 client publishes with RETAIN 1 anyway, the broker sends
        DISCONNECT 0x9A (Retain not supported) (section 3.3.1.3); a 3.1.1
        client is closed.
        """
        v5 = self.connect_client("c5", 5)
        v5.publish("t", b"m", 0, retain=True)
        self.assertClosedWith(v5, 0x9A)
        v3 = self.connect_client("c3", 4)
        v3.publish("t", b"m", 0, retain=True)
        self.assertClosedWith(v3, None)
        self.assertEqual(len(self.broker.retained), 0)

    def test_will_retain_refused(self) -> None:
        """
        If a 5.0 client asks for a retained will, CONNACK says 0x9A
        [MQTT-3.2.2-13].
        """
        client = self.connect_client("c1", 5, will=Will("w", b"x", retain=True))
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0x9A)
        self.assertTrue(client.disconnecting)


class V5FeatureTests(BrokerTestCase):
    """
    MQTT 5 features seen end to end.
    """

    def test_topic_alias(self) -> None:
        """
        If a 5.0 client sets a Topic Alias with a topic, then publishes with
        the alias alone, subscribers get the full topic and no alias
        (section 3.3.2.3.4).
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("long/topic/name")
        pub = self.connect_client("pub", 5)
        pub.publish("long/topic/name", b"1", properties=Properties(topic_alias=1))
        pub.publish("", b"2", properties=Properties(topic_alias=1))
        got = sub.publishes()
        self.assertEqual(
            [(p.topic, p.payload, p.properties.topic_alias) for p in got],
            [("long/topic/name", b"1", None), ("long/topic/name", b"2", None)],
        )

    def test_topic_alias_over_maximum(self) -> None:
        """
        If a 5.0 client uses a Topic Alias above the broker's Topic Alias
        Maximum, the broker sends DISCONNECT 0x94 [MQTT-3.3.2-9].
        """
        self.use_config(topic_alias_maximum=2)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"1", properties=Properties(topic_alias=3))
        self.assertClosedWith(pub, 0x94)

    def test_receive_maximum_exceeded(self) -> None:
        """
        If a 5.0 client has more unacknowledged QoS 2 messages in flight to
        the broker than its Receive Maximum, the broker sends DISCONNECT 0x93
        (section 3.3.4).
        """
        self.use_config(receive_maximum=2)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"1", 2)
        pub.publish("t", b"2", 2)
        self.assertEqual([type(p) for p in pub.received()], [PubRec, PubRec])
        pub.publish("t", b"3", 2)
        self.assertClosedWith(pub, 0x93)

    def test_receive_maximum_freed_by_pubcomp(self) -> None:
        """
        If a 5.0 client completes its QoS 2 exchanges, its window frees up.
        """
        self.use_config(receive_maximum=1)
        pub = self.connect_client("pub", 5)
        for _ in range(3):
            pub.publish_acked("t", b"m", 2)
        self.assertFalse(pub.disconnecting)

    def test_subscription_identifier_on_retained(self) -> None:
        """
        If a 5.0 subscription has a Subscription Identifier, retained
        messages sent for it carry that identifier [MQTT-3.3.4-3].
        """
        self.connect_client("pub").publish("r", b"m", 0, retain=True)
        sub = self.connect_client("sub", 5)
        sub.subscribe("r", subscription_id=42)
        [got] = sub.publishes()
        self.assertEqual(got.properties.subscription_identifier, (42,))

    def test_message_properties_forwarded(self) -> None:
        """
        A 5.0 message's properties (Content Type, Response Topic,
        Correlation Data, User Properties, Payload Format Indicator) reach
        subscribers unchanged [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
        [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]; a 3.1.1 subscriber gets
        the bare message.
        """
        props = Properties(
            payload_format_indicator=1,
            content_type="text/plain",
            response_topic="reply/here",
            correlation_data=b"\x01\x02",
            user_property=(("a", "1"), ("a", "2")),
        )
        sub5 = self.connect_client("sub5", 5)
        sub5.subscribe("t")
        sub3 = self.connect_client("sub3", 4)
        sub3.subscribe("t")
        self.connect_client("pub", 5).publish("t", b"m", properties=props)
        [got5] = sub5.publishes()
        self.assertEqual(got5.properties, props)
        self.assertEqual(sub3.received(), [Publish("t", b"m")])

    def test_message_expiry_forwarded_as_remaining(self) -> None:
        """
        If a 5.0 message has a Message Expiry Interval, subscribers get the
        time it has left [MQTT-3.3.2-6].
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", qos=1)
        self.connect_client("pub", 5).publish("t", b"m", properties=Properties(message_expiry_interval=30))
        [got] = sub.publishes()
        self.assertEqual(got.properties.message_expiry_interval, 30)

    def test_v31_subscriber_gets_v31_packets(self) -> None:
        """
        An MQTT 3.1 subscriber gets messages from 5.0 publishers encoded for
        3.1.
        """
        sub = self.connect_client("sub", 3)
        sub.subscribe("t", qos=1)
        self.connect_client("pub", 5).publish_acked("t", b"m", 1, properties=Properties(content_type="x"))
        [got] = sub.publishes()
        self.assertEqual((got.topic, got.payload, got.qos), ("t", b"m", 1))

    def test_takeover_across_versions(self) -> None:
        """
        If a 3.1.1 client's persistent session is taken over by a 5.0 client
        with the same identifier, the session continues at 5.0.
        """
        first = self.connect_client("c1", 4, clean_start=False)
        first.subscribe("t", qos=1)
        second = self.connect_client("c1", 5, clean_start=False, properties=Properties(session_expiry_interval=60))
        self.assertClosedWith(first, None)
        assert second.connack is not None
        self.assertTrue(second.connack.session_present)
        self.connect_client("pub").publish_acked("t", b"m", 1)
        [got] = second.publishes()
        self.assertEqual(got.payload, b"m")

    def test_v5_invalid_will_topic(self) -> None:
        """
        If a 5.0 client's Will Topic has a wildcard, CONNACK refuses it with
        0x90 (Topic Name invalid) [MQTT-4.7.1-1].
        """
        client = self.connect_client("c1", 5, will=Will("a/#", b"w"))
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0x90)
        self.assertTrue(client.disconnecting)

    def test_v311_invalid_will_topic_closed_without_connack(self) -> None:
        """
        If a 3.1.1 client's Will Topic has a wildcard, the CONNECT breaks
        section 3.1 [MQTT-4.7.1-1], so the broker closes the connection
        without CONNACK [MQTT-3.1.4-1], as Mosquitto does; 3.1.1 has no
        return code for it.
        """
        for level in (3, 4):
            client = self.open_connection(level)
            client.send(Connect(f"c{level}", level, PROTOCOL_NAMES[level], will=Will("a/+", b"w")))
            self.assertEqual(client.received(), [], level)
            self.assertTrue(client.disconnecting, level)
            self.assertNotIn(f"c{level}", self.broker.sessions)


class _SlowStore(MemoryStore):
    """A L{MemoryStore} whose queue writes complete only when the test says."""

    def __init__(self) -> None:
        super().__init__()
        self.pending: list[Deferred[None]] = []
        #: Whether the next queue write fails (or succeeds) at once.
        self.fail_next = False
        self.done_next = False

    def add_queued(self, client_id: str, delivery: Delivery) -> Deferred[None]:
        super().add_queued(client_id, delivery)
        if self.fail_next:
            self.fail_next = False
            return fail(OSError("disk full"))
        if self.done_next:
            self.done_next = False
            return succeed(None)
        d: Deferred[None] = Deferred()
        self.pending.append(d)
        return d


class DurableAcknowledgementTests(BrokerTestCase):
    """
    QoS 1/2 messages are acknowledged only once the store writes they
    caused are done (L{IStore}), in the order they arrived.
    """

    def make_store(self) -> IStore:
        self.slow = _SlowStore()
        return self.slow

    def _offline_subscriber(self) -> None:
        sub = self.connect_client("sub", 5, clean_start=False, properties=Properties(session_expiry_interval=60))
        sub.subscribe("t", qos=1)
        sub.disconnect()
        sub.finish_close()

    def test_ack_waits_for_store_writes_in_order(self) -> None:
        """
        If a message is queued for a persistent session, PUBACK/PUBREC goes
        out only after the store write fired, and a later message's
        acknowledgement never overtakes an earlier one ([MQTT-4.6.0-2],
        [MQTT-4.6.0-3]).
        """
        self._offline_subscriber()
        pub = self.connect_client("pub", 5)
        pub.send(Publish("t", b"1", 1, packet_id=1), Publish("t", b"2", 2, packet_id=2))
        self.assertEqual(pub.received(), [])
        first, second = self.slow.pending
        second.callback(None)
        self.assertEqual(pub.received(), [])
        first.callback(None)
        self.assertEqual(pub.received(), [PubAck(1), PubRec(2)])

    def test_unstored_message_is_not_acknowledged(self) -> None:
        """
        If a store write fails, the message is not acknowledged and the
        publisher's connection is closed (0x80), so the client sends it again.
        """
        self._offline_subscriber()
        pub = self.connect_client("pub", 5)
        pub.send(Publish("t", b"1", 1, packet_id=1))
        self.slow.pending[0].errback(OSError("disk full"))
        self.assertClosedWith(pub, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_failed_write_drops_later_acknowledgements(self) -> None:
        """
        Once a message's store write fails, the connection closes and the
        messages behind it are not acknowledged on it either, even when
        their writes succeed: the client sends them all again.
        """
        self._offline_subscriber()
        pub = self.connect_client("pub", 5)
        pub.send(Publish("t", b"1", 1, packet_id=1), Publish("t", b"2", 1, packet_id=2))
        first, second = self.slow.pending
        first.errback(OSError("disk full"))
        second.callback(None)
        self.assertClosedWith(pub, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_write_failed_at_once_is_not_acknowledged(self) -> None:
        """
        A store write that has already failed when the store returns it is
        waited for like any other: no acknowledgement, the connection is
        closed; writes already done are not waited for.
        """
        self._offline_subscriber()
        pub = self.connect_client("pub", 5)
        self.slow.fail_next = True
        pub.send(Publish("t", b"1", 1, packet_id=1))
        self.assertClosedWith(pub, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)
        pub = self.connect_client("pub2", 5)
        self.slow.done_next = True
        pub.send(Publish("t", b"2", 1, packet_id=2))
        self.assertEqual(pub.received(), [PubAck(2)])

    def test_no_store_writes_acknowledge_at_once(self) -> None:
        """Without persistent subscribers nothing waits: PUBACK follows at once."""
        pub = self.connect_client("pub", 5)
        pub.send(Publish("t", b"1", 1, packet_id=1))
        self.assertEqual(pub.received(), [PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS)])
