# -*- test-case-name: tests.mqtt.test_connection -*-
"""
Tests for L{mqttx.mqtt.connection}: the sans-IO server connection.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.connection import Connection, State
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
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
)
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode, describe


def v5_connect(**props: object) -> Connect:
    return Connect("c", protocol_level=5, keep_alive=10, properties=Properties(**props))  # type: ignore[arg-type]


class ConnectionTests(SynchronousTestCase):
    """Tests for L{Connection}."""

    def feed(self, conn: Connection, *packets: Packet, level: int = 5, now: float = 0.0) -> list[Packet]:
        return conn.receive_data(b"".join(encode(p, level) for p in packets), now)

    def assertViolation(self, conn: Connection, code: ReasonCode, *packets: Packet, level: int = 5) -> None:
        with self.assertRaises(MalformedPacket) as caught:
            self.feed(conn, *packets, level=level)
        self.assertEqual(caught.exception.reason_code, code)
        self.assertIs(conn.state, State.CLOSED)

    def test_connect_records_client_limits(self) -> None:
        """
        The client's Receive Maximum, Maximum Packet Size, Topic Alias
        Maximum and Request Problem Information are taken from CONNECT.
        """
        conn = Connection()
        [connect] = self.feed(
            conn,
            v5_connect(
                receive_maximum=7,
                maximum_packet_size=300,
                topic_alias_maximum=3,
                request_problem_information=0,
            ),
        )
        self.assertIsInstance(connect, Connect)
        self.assertEqual(conn.protocol_level, 5)
        self.assertEqual(
            (conn.client_receive_maximum, conn.client_maximum_packet_size, conn.client_topic_alias_maximum),
            (7, 300, 3),
        )
        self.assertFalse(conn.request_problem_information)

    def test_packet_before_connect_is_protocol_error(self) -> None:
        """[MQTT-3.1.0-1] The first packet must be CONNECT."""
        self.assertViolation(Connection(), ReasonCode.PROTOCOL_ERROR, PingReq(), level=4)

    def test_second_connect_is_protocol_error(self) -> None:
        """[MQTT-3.1.0-2] A second CONNECT is a protocol violation."""
        conn = Connection()
        self.feed(conn, v5_connect())
        self.assertViolation(conn, ReasonCode.PROTOCOL_ERROR, v5_connect())

    def test_server_only_packets_refused(self) -> None:
        """A client sending CONNACK, SUBACK, UNSUBACK or PINGRESP breaks the protocol."""
        for packet in (ConnAck(), SubAck(1, (0,))):
            conn = Connection()
            self.feed(conn, v5_connect())
            self.assertViolation(conn, ReasonCode.PROTOCOL_ERROR, packet)

    def test_keepalive_deadline_is_one_and_a_half_periods(self) -> None:
        """[MQTT-3.1.2-24] The deadline is 1.5 keep-alive periods after the last bytes."""
        conn = Connection()
        self.feed(conn, v5_connect(), now=100.0)
        self.assertEqual(conn.keepalive_deadline(), 115.0)
        conn.receive_data(b"\xc0", 104.0)  # half a PINGREQ still counts as traffic
        self.assertEqual(conn.keepalive_deadline(), 119.0)

    def test_no_deadline_without_keepalive(self) -> None:
        """A keep-alive of 0 turns the mechanism off (3.1.1 section 3.1.2.10)."""
        conn = Connection()
        self.feed(conn, Connect("c", keep_alive=0), level=4)
        self.assertIsNone(conn.keepalive_deadline())

    def test_server_keep_alive_replaces_clients(self) -> None:
        """The Server Keep Alive given at acceptance is the one enforced [MQTT-3.2.2-21]."""
        conn = Connection()
        self.feed(conn, v5_connect(), now=0.0)
        conn.accepted(keep_alive=60)
        self.assertEqual(conn.keepalive_deadline(), 90.0)

    def test_topic_alias_sets_and_resolves(self) -> None:
        """
        A PUBLISH with a topic and an alias sets the alias; a later PUBLISH with
        an empty topic and that alias gets the topic back [MQTT-3.3.2-12].
        """
        conn = Connection(topic_alias_maximum=2)
        self.feed(conn, v5_connect())
        first, second = self.feed(
            conn,
            Publish("a/b", b"1", properties=Properties(topic_alias=2)),
            Publish("", b"2", properties=Properties(topic_alias=2)),
        )
        assert isinstance(first, Publish) and isinstance(second, Publish)
        self.assertEqual((first.topic, second.topic), ("a/b", "a/b"))
        self.assertIsNone(second.properties.topic_alias)

    def test_topic_alias_out_of_range(self) -> None:
        """[MQTT-3.3.2-8] [MQTT-3.3.2-9] Alias 0 or above the maximum: DISCONNECT 0x94."""
        for alias in (0, 3):
            conn = Connection(topic_alias_maximum=2)
            self.feed(conn, v5_connect())
            self.assertViolation(
                conn, ReasonCode.TOPIC_ALIAS_INVALID, Publish("t", properties=Properties(topic_alias=alias))
            )

    def test_unknown_topic_alias(self) -> None:
        """An empty topic with an alias never set is a protocol error."""
        conn = Connection(topic_alias_maximum=2)
        self.feed(conn, v5_connect())
        self.assertViolation(
            conn, ReasonCode.PROTOCOL_ERROR, Publish("", properties=Properties(topic_alias=1))
        )

    def test_subscription_identifier_from_client(self) -> None:
        """[MQTT-3.3.4-6] A client's PUBLISH may not carry a subscription identifier."""
        conn = Connection()
        self.feed(conn, v5_connect())
        self.assertViolation(
            conn,
            ReasonCode.PROTOCOL_ERROR,
            Publish("t", properties=Properties(subscription_identifier=(4,))),
        )

    def test_receive_maximum_exceeded(self) -> None:
        """
        [MQTT-3.3.4-7] More unacknowledged QoS 1/2 PUBLISH than the advertised
        Receive Maximum is 0x93; acknowledging one frees a slot.
        """
        conn = Connection(receive_maximum=2)
        self.feed(conn, v5_connect())
        self.feed(conn, Publish("t", b"", 1, packet_id=1), Publish("t", b"", 2, packet_id=2))
        conn.send(PubAck(1))
        self.feed(conn, Publish("t", b"", 1, packet_id=3))
        self.assertViolation(conn, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, Publish("t", b"", 1, packet_id=4))

    def test_qos2_slot_held_until_pubcomp(self) -> None:
        """A QoS 2 message holds its slot through PUBREC until PUBCOMP is sent."""
        conn = Connection(receive_maximum=1)
        self.feed(conn, v5_connect())
        self.feed(conn, Publish("t", b"", 2, packet_id=1))
        conn.send(PubRec(1))
        # A retransmission of the same id does not take a second slot.
        self.feed(conn, Publish("t", b"", 2, dup=True, packet_id=1))
        self.assertViolation(conn, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED, Publish("t", b"", 1, packet_id=2))

    def test_pubcomp_frees_qos2_slot(self) -> None:
        """Sending PUBCOMP releases the slot of a QoS 2 message."""
        conn = Connection(receive_maximum=1)
        self.feed(conn, v5_connect())
        self.feed(conn, Publish("t", b"", 2, packet_id=1))
        conn.send(PubRec(1))
        conn.send(PubComp(1))
        self.assertEqual(len(self.feed(conn, Publish("t", b"", 1, packet_id=2))), 1)

    def test_v3_has_no_receive_maximum(self) -> None:
        """3.1.1 has no Receive Maximum: the window is not enforced."""
        conn = Connection(receive_maximum=1)
        self.feed(conn, Connect("c"), level=4)
        packets = self.feed(conn, *(Publish("t", b"", 1, packet_id=i) for i in range(1, 5)), level=4)
        self.assertEqual(len(packets), 4)

    def test_session_expiry_set_at_disconnect_after_zero(self) -> None:
        """Non-zero expiry in DISCONNECT after 0 at CONNECT is a protocol error (5.0 section 3.14.2.2.2)."""
        conn = Connection()
        self.feed(conn, v5_connect())
        self.assertViolation(
            conn, ReasonCode.PROTOCOL_ERROR, Disconnect(properties=Properties(session_expiry_interval=5))
        )

    def test_nothing_after_disconnect(self) -> None:
        """[MQTT-3.14.4-1] Packets after DISCONNECT in the same chunk are ignored."""
        conn = Connection()
        self.feed(conn, Connect("c"), level=4)
        packets = self.feed(conn, Disconnect(), Publish("t", b"x"), level=4)
        self.assertEqual(packets, [Disconnect()])
        self.assertEqual(conn.receive_data(encode(PingReq(), 4), 0.0), [])

    def test_disconnect_only_for_accepted_v5(self) -> None:
        """
        A server DISCONNECT is produced for an accepted MQTT 5 connection
        only: never for 3.1.1, never before CONNACK.
        """
        v3 = Connection()
        self.feed(v3, Connect("c"), level=4)
        v3.accepted()
        self.assertEqual(v3.disconnect(ReasonCode.SERVER_SHUTTING_DOWN), b"")

        early = Connection()
        self.feed(early, v5_connect())
        self.assertEqual(early.disconnect(ReasonCode.SERVER_SHUTTING_DOWN), b"")

        v5 = Connection()
        self.feed(v5, v5_connect())
        v5.accepted()
        data = v5.disconnect(ReasonCode.SERVER_SHUTTING_DOWN, "bye")
        self.assertEqual(
            Decoder(protocol_level=5).feed(data),
            [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN, Properties(reason_string="bye"))],
        )

    def test_disconnect_after_protocol_error(self) -> None:
        """After a protocol error an accepted MQTT 5 connection still gets its DISCONNECT."""
        conn = Connection()
        self.feed(conn, v5_connect())
        conn.accepted()
        self.assertViolation(conn, ReasonCode.PROTOCOL_ERROR, v5_connect())
        self.assertNotEqual(conn.disconnect(ReasonCode.PROTOCOL_ERROR), b"")

    def test_oversized_ack_loses_reason_string(self) -> None:
        """
        [MQTT-3.1.2-25] A packet over the client's Maximum Packet Size loses its
        reason string and user properties; a PUBLISH is not sent at all.
        """
        conn = Connection()
        self.feed(conn, v5_connect(maximum_packet_size=20))
        ack = PubAck(1, ReasonCode.NOT_AUTHORIZED, Properties(reason_string="x" * 40))
        self.assertEqual(Decoder(protocol_level=5).feed(conn.send(ack)), [PubAck(1, ReasonCode.NOT_AUTHORIZED)])
        self.assertEqual(conn.send(Publish("t", b"y" * 40)), b"")

    def test_announced_level_of_bad_connect(self) -> None:
        """The level of a CONNECT that fails validation is still known, to answer it."""
        conn = Connection()
        with self.assertRaises(MalformedPacket):
            conn.receive_data(b"\x10\x0c\x00\x04MQTT\x07\x02\x00\x00\x00\x00", 0.0)
        self.assertEqual(conn.announced_level, 7)

    def test_malformed_topic_filter_closes(self) -> None:
        """
        [MQTT-4.7.1-2] [MQTT-4.7.1-3] A SUBSCRIBE or UNSUBSCRIBE with a
        malformed filter is a malformed packet [MQTT-4.8.0-1].
        """
        for packet in (
            Subscribe(1, (Subscription("a/b", 0), Subscription("a/#/b", 0))),
            Subscribe(1, (Subscription("sport+", 0),)),
            Unsubscribe(1, ("#/a",)),
        ):
            conn = Connection()
            self.feed(conn, v5_connect())
            self.assertViolation(conn, ReasonCode.MALFORMED_PACKET, packet)

    def test_well_formed_filters_pass(self) -> None:
        """Well-formed filters, shared ones included, reach the broker."""
        conn = Connection()
        self.feed(conn, v5_connect())
        packets = self.feed(
            conn,
            Subscribe(1, (Subscription("+/a/#", 0), Subscription("$share/g/x", 0))),
            Unsubscribe(2, ("#",)),
        )
        self.assertEqual(len(packets), 2)


class ProblemInformationTests(SynchronousTestCase):
    """
    Reason strings and user properties on what the server sends, and the
    client's Request Problem Information (MQTT 5 section 3.1.2.11.7).
    """

    USER = (("k", "v"), ("k", "v"))

    def connected(self, **props: object) -> Connection:
        conn = Connection()
        conn.receive_data(encode(v5_connect(**props), 5), 0.0)
        conn.accepted()
        return conn

    def sent(self, conn: Connection, packet: Packet) -> Packet:
        [decoded] = Decoder(protocol_level=5).feed(conn.send(packet))
        return decoded

    def problem_packets(self) -> list[Packet]:
        props = Properties(reason_string="why", user_property=self.USER)
        return [
            PubAck(1, ReasonCode.QUOTA_EXCEEDED, props),
            PubRec(2, ReasonCode.PAYLOAD_FORMAT_INVALID, props),
            PubRel(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, props),
            PubComp(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, props),
            SubAck(5, (ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,), props),
            UnsubAck(6, (ReasonCode.NO_SUBSCRIPTION_EXISTED,), props),
            Auth(ReasonCode.CONTINUE_AUTHENTICATION, replace(props, authentication_method="m")),
        ]

    def test_problem_information_sent_by_default(self) -> None:
        """
        A client that did not set Request Problem Information (default 1)
        gets reason strings and user properties wherever they are allowed.
        """
        conn = self.connected()
        for packet in self.problem_packets():
            self.assertEqual(self.sent(conn, packet), packet)

    def test_no_problem_information_on_acknowledgements(self) -> None:
        """
        If the client set Request Problem Information to 0, no packet other
        than PUBLISH, CONNACK and DISCONNECT carries a Reason String or User
        Property [MQTT-3.1.2-29]; the reason codes and other properties stay.
        """
        conn = self.connected(request_problem_information=0)
        for packet in self.problem_packets():
            props = packet.properties  # type: ignore[union-attr]
            lean = replace(props, reason_string=None, user_property=())
            self.assertEqual(self.sent(conn, packet), replace(packet, properties=lean))  # type: ignore[arg-type]

    def test_problem_information_allowed_on_publish_connack_disconnect(self) -> None:
        """
        Request Problem Information 0 leaves PUBLISH (application user
        properties), CONNACK and DISCONNECT as they are [MQTT-3.1.2-29].
        """
        conn = self.connected(request_problem_information=0)
        props = Properties(reason_string="why", user_property=self.USER)
        publish = Publish("t", b"m", properties=Properties(user_property=self.USER))
        for packet in (
            publish,
            ConnAck(False, ReasonCode.SUCCESS, props),
            Disconnect(ReasonCode.SERVER_SHUTTING_DOWN, props),
        ):
            self.assertEqual(self.sent(conn, packet), packet)

    def test_request_problem_information_1(self) -> None:
        """An explicit Request Problem Information 1 is the default."""
        conn = self.connected(request_problem_information=1)
        ack = PubAck(1, ReasonCode.QUOTA_EXCEEDED, Properties(reason_string="full"))
        self.assertEqual(self.sent(conn, ack), ack)

    def test_server_disconnect_has_a_reason_string(self) -> None:
        """
        A server DISCONNECT with an error code carries a short Reason String
        (MQTT 5 section 3.14.2.2.3), the given one or a description of the
        code, even with Request Problem Information 0 [MQTT-3.1.2-29]; a
        normal disconnection has none.
        """
        taken_over = Properties(reason_string="session taken over by another connection")
        for props in ({}, {"request_problem_information": 0}):
            conn = self.connected(**props)
            self.assertEqual(
                Decoder(protocol_level=5).feed(conn.disconnect(ReasonCode.SESSION_TAKEN_OVER)),
                [Disconnect(ReasonCode.SESSION_TAKEN_OVER, taken_over)],
            )
            conn = self.connected(**props)
            self.assertEqual(
                Decoder(protocol_level=5).feed(conn.disconnect(ReasonCode.PROTOCOL_ERROR, "second CONNECT")),
                [Disconnect(ReasonCode.PROTOCOL_ERROR, Properties(reason_string="second CONNECT"))],
            )
        conn = self.connected()
        self.assertEqual(Decoder(protocol_level=5).feed(conn.disconnect(ReasonCode.SUCCESS)), [Disconnect()])

    def test_every_error_code_has_a_description(self) -> None:
        """Every error reason code has a short description, and no success code has one."""
        for code in ReasonCode:
            if code >= 0x80:
                self.assertTrue(describe(code), code.name)
            else:
                self.assertEqual(describe(code), "", code.name)

    def test_no_reason_string_below_mqtt_5(self) -> None:
        """3.1.1 packets carry no properties at all, so no reason strings."""
        conn = Connection()
        conn.receive_data(encode(Connect("c"), 4), 0.0)
        conn.accepted()
        ack = PubAck(1, ReasonCode.SUCCESS, Properties(reason_string="why"))
        self.assertEqual(conn.send(ack), b"\x40\x02\x00\x01")

    def test_puback_packet_identifier_in_use_keeps_the_quota(self) -> None:
        """
        PUBACK 0x91 refuses a QoS 1 PUBLISH reusing the packet identifier of
        a QoS 2 exchange not yet completed: the identifier still counts
        against the Receive Maximum until PUBCOMP (MQTT 5 section 4.9).
        """
        conn = Connection(receive_maximum=1)
        conn.receive_data(encode(v5_connect(), 5), 0.0)
        conn.accepted()
        conn.receive_data(encode(Publish("t", b"2", 2, packet_id=7), 5), 0.0)
        conn.send(PubRec(7))
        conn.receive_data(encode(Publish("t", b"1", 1, packet_id=7), 5), 0.0)
        conn.send(PubAck(7, ReasonCode.PACKET_IDENTIFIER_IN_USE))
        with self.assertRaises(MalformedPacket) as caught:
            conn.receive_data(encode(Publish("t", b"3", 1, packet_id=8), 5), 0.0)
        self.assertEqual(caught.exception.reason_code, ReasonCode.RECEIVE_MAXIMUM_EXCEEDED)

        conn = Connection(receive_maximum=1)
        conn.receive_data(encode(v5_connect(), 5), 0.0)
        conn.accepted()
        conn.receive_data(encode(Publish("t", b"2", 2, packet_id=7), 5), 0.0)
        conn.send(PubRec(7))
        conn.send(PubComp(7))
        self.assertEqual(len(conn.receive_data(encode(Publish("t", b"3", 1, packet_id=8), 5), 0.0)), 1)
