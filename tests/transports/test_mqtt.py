# -*- test-case-name: tests.transports.test_mqtt -*-
"""
Tests for L{mqttx.transports.mqtt}: the connection's timers (CONNECT
timeout, keep-alive), protocol errors and malformed input, the maximum
packet size, closing and back-pressure.
"""

from __future__ import annotations

from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.internet.error import ConnectionLost
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from zope.interface import implementer

from mqttx.broker.broker import Broker
from mqttx.broker.session import SLOW_CONSUMER_BYTES
from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    Subscribe,
    Subscription,
    Will,
)
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.mqtt import ABORT_TIMEOUT, CONNECT_TIMEOUT
from tests.helpers import BrokerTestCase, FakeClient
from tests.strategies import LEVELS, packets


class KeepAliveTests(BrokerTestCase):
    """
    The keep-alive: a client that sends nothing for one and a half keep-alive
    periods is disconnected as if the network had failed (3.1.1
    [MQTT-3.1.2-24], 5.0 [MQTT-3.1.2-22]).
    """

    def test_silent_client_dropped_after_one_and_a_half_keep_alives(self) -> None:
        """
        If a client with keep-alive 10 sends nothing after CONNECT, the broker
        closes its connection at 15 seconds and not before [MQTT-3.1.2-24].
        """
        client = self.connect_client("c1", keep_alive=10)
        self.clock.advance(14.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)
        # 3.1.1 servers have no DISCONNECT to send.
        self.assertEqual(client.received(), [])

    def test_v5_silent_client_gets_keep_alive_timeout(self) -> None:
        """
        If a 5.0 client lets its keep-alive lapse, the broker sends DISCONNECT
        0x8D (Keep Alive timeout) and closes [MQTT-3.1.2-22].
        """
        client = self.connect_client("c1", 5, keep_alive=4)
        self.clock.advance(5.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertEqual(client.received(), [Disconnect(0x8D, Properties(reason_string="keep alive timeout"))])
        self.assertTrue(client.disconnecting)

    def test_any_packet_resets_the_deadline(self) -> None:
        """
        If a client sends any packet, the 1.5 keep-alive period starts again
        from that packet.
        """
        client = self.connect_client("c1", keep_alive=10)
        self.clock.advance(10)
        client.send(PingReq())
        self.assertEqual(client.received(), [PingResp()])
        self.clock.advance(12)
        client.publish("t", b"still here")
        self.clock.advance(14.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)

    def test_partial_packet_resets_the_deadline(self) -> None:
        """
        If a client is in the middle of sending a packet, the bytes it sent
        count as activity.
        """
        client = self.connect_client("c1", keep_alive=10)
        data = encode(Publish("t", b"p" * 100), 4)
        self.clock.advance(14)
        client.send_bytes(data[:50])
        self.clock.advance(14)
        client.send_bytes(data[50:])
        self.clock.advance(14)
        self.assertFalse(client.disconnecting)

    def test_zero_keep_alive_never_drops(self) -> None:
        """
        If a client connects with keep-alive 0, the broker never closes its
        connection for being silent (3.1.1 section 3.1.2.10).
        """
        client = self.connect_client("c1", keep_alive=0)
        self.clock.advance(10 * 24 * 3600)
        self.assertFalse(client.disconnecting)

    def test_keep_alive_timeout_publishes_will(self) -> None:
        """
        If a client is dropped for its keep-alive, its will is published as
        on any abnormal end (issue 2: wills on keep-alive timeout).
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("will/#")
        client = self.connect_client("c1", keep_alive=2, will=Will("will/c1", b"gone"))
        self.clock.advance(3)
        self.assertTrue(client.disconnecting)
        client.finish_close()
        self.assertEqual(watcher.received(), [Publish("will/c1", b"gone")])

    def test_v5_server_keep_alive_caps_client_value(self) -> None:
        """
        If C{keepalive_max} is set and a 5.0 client asks for a longer
        keep-alive, CONNACK carries Server Keep Alive with the maximum and the
        broker enforces that value ([MQTT-3.2.2-21], [MQTT-3.1.2-22]).
        """
        self.use_config(keepalive_max=20)
        client = self.connect_client("c1", 5, keep_alive=600)
        assert client.connack is not None
        self.assertEqual(client.connack.properties.server_keep_alive, 20)
        self.clock.advance(29.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [Disconnect(0x8D, Properties(reason_string="keep alive timeout"))])

    def test_v5_server_keep_alive_replaces_zero(self) -> None:
        """
        If C{keepalive_max} is set and a 5.0 client asks for no keep-alive
        (0), the broker imposes the maximum through Server Keep Alive.
        """
        self.use_config(keepalive_max=20)
        client = self.connect_client("c1", 5, keep_alive=0)
        assert client.connack is not None
        self.assertEqual(client.connack.properties.server_keep_alive, 20)
        self.clock.advance(30)
        self.assertTrue(client.disconnecting)

    def test_v5_keep_alive_within_maximum_is_kept(self) -> None:
        """
        If a 5.0 client's keep-alive is within C{keepalive_max}, CONNACK has
        no Server Keep Alive and the client's value is used [MQTT-3.2.2-22].
        """
        self.use_config(keepalive_max=20)
        client = self.connect_client("c1", 5, keep_alive=10)
        assert client.connack is not None
        self.assertIsNone(client.connack.properties.server_keep_alive)
        self.clock.advance(15)
        self.assertTrue(client.disconnecting)

    def test_v311_keep_alive_over_maximum_refused(self) -> None:
        """
        If C{keepalive_max} is set and a 3.1.1 client asks for a longer
        keep-alive (which 3.1.1 cannot renegotiate), the broker refuses it
        with CONNACK 0x02, as Mosquitto does, and closes [MQTT-3.2.2-5].
        """
        self.use_config(keepalive_max=20)
        client = self.connect_client("c1", 4, keep_alive=60)
        self.assertEqual(client.connack, ConnAck(False, 0x02))
        self.assertTrue(client.disconnecting)
        self.assertNotIn("c1", self.broker.sessions)

    def test_v311_keep_alive_within_maximum_accepted(self) -> None:
        """
        If a 3.1.1 client's keep-alive is within C{keepalive_max}, it is let
        in with its own keep-alive.
        """
        self.use_config(keepalive_max=20)
        client = self.connect_client("c1", 4, keep_alive=20)
        self.assertEqual(client.connack, ConnAck(False, 0))
        self.clock.advance(29.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)


class ConnectTimeoutTests(BrokerTestCase):
    """
    The start of a connection: CONNECT must come first, only once, and in
    time.
    """

    def test_no_connect_closed_after_timeout(self) -> None:
        """
        If a connection sends nothing, the broker closes it after
        C{CONNECT_TIMEOUT} seconds and not before, without writing anything.
        """
        client = self.open_connection()
        self.clock.advance(CONNECT_TIMEOUT - 0.1)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.transport.value(), b"")

    def test_partial_connect_closed_after_timeout(self) -> None:
        """
        If a connection sends only part of a CONNECT, it is still closed
        after C{CONNECT_TIMEOUT}.
        """
        client = self.open_connection()
        client.send_bytes(encode(Connect("c1"), 4)[:5])
        self.clock.advance(CONNECT_TIMEOUT)
        self.assertTrue(client.disconnecting)

    def test_connect_cancels_timeout(self) -> None:
        """
        If a client sends CONNECT in time, the CONNECT timeout no longer
        applies.
        """
        client = self.connect_client("c1")
        self.clock.advance(CONNECT_TIMEOUT * 100)
        self.assertFalse(client.disconnecting)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closed_connection_aborted_if_it_does_not_drain(self) -> None:
        """
        If a connection the broker closed is not gone after
        C{ABORT_TIMEOUT} (the peer does not read), the broker aborts it.
        """
        client = self.open_connection()
        self.clock.advance(CONNECT_TIMEOUT)
        self.assertTrue(client.disconnecting)
        self.assertFalse(client.aborted)
        self.clock.advance(ABORT_TIMEOUT)
        self.assertTrue(client.aborted)

    def test_no_abort_once_connection_gone(self) -> None:
        """
        If a closed connection ends in time, no abort is left pending.
        """
        client = self.open_connection()
        self.clock.advance(CONNECT_TIMEOUT)
        client.finish_close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(client.aborted)

    def test_first_packet_not_connect_closes(self) -> None:
        """
        If the first packet is not CONNECT, the broker closes the connection
        without answering [MQTT-3.1.0-1].
        """
        packets: list[Packet] = [PingReq(), Publish("t", b"x"), Subscribe(1, (Subscription("t"),))]
        for packet in packets:
            client = self.open_connection()
            client.send(packet)
            self.assertTrue(client.disconnecting, packet)
            self.assertEqual(client.transport.value(), b"", packet)

    def test_second_connect_closes_v311(self) -> None:
        """
        If a 3.1.1 client sends a second CONNECT, the broker closes the
        connection [MQTT-3.1.0-2], and its will is published.
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("will")
        client = self.connect_client("c1", will=Will("will", b"w"))
        client.send(Connect("c1"))
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [])
        client.finish_close()
        self.assertEqual(watcher.received(), [Publish("will", b"w")])

    def test_second_connect_closes_v5_with_protocol_error(self) -> None:
        """
        If a 5.0 client sends a second CONNECT, the broker sends DISCONNECT
        0x82 (Protocol Error) and closes [MQTT-3.1.0-2].
        """
        client = self.connect_client("c1", 5)
        client.send(Connect("c1", 5))
        self.assertClosedWith(client, 0x82)

    def test_packets_behind_connect_in_one_chunk(self) -> None:
        """
        If a client sends CONNECT and more packets in one chunk, the broker
        answers CONNACK first and then handles the rest in order.
        """
        client = self.open_connection()
        client.send_bytes(encode(Connect("c1"), 4) + encode(Publish("t", b"x", 1, packet_id=7), 4) + b"\xc0\x00")
        self.assertEqual(client.received(), [ConnAck(False, 0), PubAck(7), PingResp()])


class MalformedInputTests(BrokerTestCase):
    """
    Bad input ends in a clean close: 5.0 clients get DISCONNECT with the
    codec's reason code first (section 4.13), 3.1.1 connections just close
    [MQTT-4.8.0-1]; nothing is raised out of C{dataReceived}.
    """

    # (description, 3.1.1 bytes, 5.0 bytes, 5.0 reason code)
    CASES = [
        ("PUBLISH with QoS 3", b"\x36\x05\x00\x01t\x00\x01", b"\x36\x06\x00\x01t\x00\x01\x00", 0x81),
        (
            "SUBSCRIBE with reserved flags 0",
            b"\x80\x06\x00\x01\x00\x01t\x00",
            b"\x80\x07\x00\x01\x00\x00\x01t\x00",
            0x81,
        ),
        (
            "PUBLISH QoS 1 with packet identifier 0",
            b"\x32\x05\x00\x01t\x00\x00",
            b"\x32\x06\x00\x01t\x00\x00\x00",
            0x82,
        ),
        ("PUBLISH with a wildcard in its topic", b"\x30\x03\x00\x01#", b"\x30\x04\x00\x01#\x00", 0x90),
        ("Remaining Length not minimal", b"\xc0\x80\x00", b"\xc0\x80\x00", 0x81),
        ("reserved packet type 0", b"\x00\x00", b"\x00\x00", 0x81),
        ("CONNACK from a client", b"\x20\x02\x00\x00", b"\x20\x03\x00\x00\x00", 0x82),
        ("SUBSCRIBE without filters", b"\x82\x02\x00\x01", b"\x82\x03\x00\x01\x00", 0x82),
        ("PUBLISH with invalid UTF-8 topic", b"\x30\x03\x00\x01\xff", b"\x30\x04\x00\x01\xff\x00", 0x81),
    ]

    def _check(self, level: int) -> None:
        for what, v3, v5, code in self.CASES:
            client = self.connect_client("c-" + what, level)
            client.send_bytes(v5 if level == 5 else v3)
            self.assertClosedWith(client, code if level == 5 else None, what)
            # Anything after the error is ignored.
            client.send_bytes(b"\xc0\x00")
            self.assertEqual(client.received(), [], what)
            client.finish_close()

    def test_v5_malformed_packets_disconnect_with_reason(self) -> None:
        """
        If a 5.0 client sends a malformed packet or breaks the protocol, the
        broker sends DISCONNECT with the codec's reason code, then closes.
        """
        self._check(5)

    def test_v311_malformed_packets_close(self) -> None:
        """
        If a 3.1.1 client sends a malformed packet, the broker closes the
        connection without sending anything [MQTT-4.8.0-1].
        """
        self._check(4)

    def test_malformed_input_publishes_will(self) -> None:
        """
        If a client's connection ends on a protocol error, its will is
        published ([MQTT-3.1.2-8]: not a normal DISCONNECT).
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("will")
        client = self.connect_client("c1", 5, will=Will("will", b"w"))
        client.send_bytes(b"\x36\x00")
        client.finish_close()
        self.assertEqual(watcher.received(), [Publish("will", b"w")])

    def test_packet_too_large_v5(self) -> None:
        """
        If a 5.0 client sends a packet longer than C{max_packet_size}, the
        broker sends DISCONNECT 0x95 (Packet too large) and closes.
        """
        self.use_config(max_packet_size=64)
        client = self.connect_client("c1", 5)
        client.publish("t", b"x" * 100)
        self.assertClosedWith(client, 0x95)

    def test_packet_too_large_rejected_from_fixed_header(self) -> None:
        """
        If a client announces a packet longer than C{max_packet_size}, the
        broker refuses it from the fixed header, before the body arrives.
        """
        self.use_config(max_packet_size=64)
        client = self.connect_client("c1", 5)
        client.send_bytes(b"\x30\xff\xff\xff\x7f")
        self.assertClosedWith(client, 0x95)

    def test_packet_too_large_v311_closes(self) -> None:
        """
        If a 3.1.1 client sends a packet longer than C{max_packet_size}, the
        broker closes the connection.
        """
        self.use_config(max_packet_size=64)
        client = self.connect_client("c1", 4)
        client.publish("t", b"x" * 100)
        self.assertEqual(client.received(), [])
        self.assertTrue(client.disconnecting)

    def test_unsupported_protocol_level(self) -> None:
        """
        If CONNECT names a protocol level the broker does not support, it
        answers CONNACK 0x01 and closes [MQTT-3.1.2-2].
        """
        data = bytearray(encode(Connect("c1"), 4))
        self.assertEqual(data[2:9], b"\x00\x04MQTT\x04")
        data[8] = 6
        client = self.open_connection(4)
        client.send_bytes(bytes(data))
        self.assertEqual(client.received(), [ConnAck(False, 0x01)])
        self.assertTrue(client.disconnecting)
        self.assertEqual(self.broker.sessions, {})

    def test_malformed_v5_connect_refused_with_connack(self) -> None:
        """
        If a 5.0 CONNECT is malformed (reserved flag set), the broker answers
        CONNACK with 0x81, saying why in its Reason String, and closes,
        without DISCONNECT [MQTT-3.1.2-3] [MQTT-3.14.0-1].
        """
        data = bytearray(encode(Connect("c1", 5), 5))
        self.assertEqual(data[2:9], b"\x00\x04MQTT\x05")
        data[9] |= 0x01
        client = self.open_connection(5)
        client.send_bytes(bytes(data))
        why = Properties(reason_string="CONNECT reserved flag is set [MQTT-3.1.2-3]")
        self.assertEqual(client.received(), [ConnAck(False, 0x81, why)])
        self.assertTrue(client.disconnecting)

    def test_auth_without_method_is_protocol_error(self) -> None:
        """
        If a 5.0 client sends AUTH though no authentication method was
        agreed at CONNECT, the broker sends DISCONNECT 0x82 and closes
        (section 4.12).
        """
        client = self.connect_client("c1", 5)
        client.send_bytes(b"\xf0\x00")
        self.assertClosedWith(client, 0x82)

    def test_second_connect_of_unknown_level(self) -> None:
        """
        A second CONNECT is a Protocol Error [MQTT-3.1.0-2], also when its
        protocol level is unknown: DISCONNECT 0x82, not 0x84, which only
        CONNACK may carry.
        """
        client = self.connect_client("c", 5)
        data = bytearray(encode(Connect("c", 5, "MQTT"), 5))
        data[8] = 6  # The protocol level, after the fixed header and "MQTT".
        client.send_bytes(bytes(data))
        self.assertClosedWith(client, ReasonCode.PROTOCOL_ERROR)


class CloseTests(BrokerTestCase):
    """
    How connections end.
    """

    def test_v5_disconnect_not_answered(self) -> None:
        """
        If a 5.0 client sends DISCONNECT, the broker closes the connection
        and sends nothing back: DISCONNECT is the last packet on a
        connection ([MQTT-3.14.4-1], [MQTT-3.14.4-3]).
        """
        client = self.connect_client("c1", 5)
        client.send(Disconnect())
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [])

    def test_v311_disconnect_closes(self) -> None:
        """
        If a 3.1.1 client sends DISCONNECT, the broker closes the connection
        and ignores anything sent after it.
        """
        client = self.connect_client("c1", 4)
        client.send_bytes(encode(Disconnect(), 4) + b"\xc0\x00")
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [])

    def test_connection_lost_twice_is_harmless(self) -> None:
        """
        If the transport reports the connection lost after the broker
        already closed it, nothing breaks.
        """
        client = self.connect_client("c1", 5)
        client.send(Disconnect())
        client.finish_close()
        client.protocol.connectionLost(Failure(ConnectionLost()))
        self.assertNotIn("c1", self.broker.sessions)


class BackPressureTests(BrokerTestCase):
    """
    A slow subscriber: while its transport is paused, QoS 0 messages to it
    are dropped and counted, QoS 1/2 queued, and it is not read
    (DESIGN.md, slow consumers).
    """

    def setUp(self) -> None:
        super().setUp()
        self.sub = self.connect_client("sub")
        self.sub.subscribe("t", qos=2)
        self.pub = self.connect_client("pub")

    def test_registered_as_streaming_producer(self) -> None:
        """
        Each connection registers itself with its transport as a streaming
        (push) producer.
        """
        self.assertIs(self.sub.transport.producer, self.sub.protocol)
        self.assertTrue(self.sub.transport.streaming)

    def test_paused_drops_qos0_and_queues_qos1(self) -> None:
        """
        If a subscriber's transport is paused, QoS 1/2 messages to it are
        queued, and QoS 0 messages are still written until another
        C{SLOW_CONSUMER_BYTES} wait for it, then dropped and counted; on
        resume the queued ones are sent in order and the budget starts over.
        """
        self.sub.protocol.pauseProducing()
        chunk = b"x" * (SLOW_CONSUMER_BYTES // 16 - 8)
        for _ in range(15):
            self.pub.publish("t", chunk, 0)
            # Twisted pauses again on every write while over its limit.
            self.sub.protocol.pauseProducing()
        self.pub.publish_acked("t", b"1a", 1)
        self.pub.publish("t", b"0b" * 40, 0)
        self.pub.publish_acked("t", b"2a", 2)
        self.pub.publish("t", chunk, 0)
        self.pub.publish_acked("t", b"1b", 1)
        got = self.sub.publishes()
        self.assertEqual(len(got), 16)
        self.assertEqual((got[-1].payload, got[-1].qos), (b"0b" * 40, 0))
        self.assertEqual(self.broker.counters.dropped_qos0, 1)
        self.sub.protocol.resumeProducing()
        got = self.sub.publishes()
        self.assertEqual([(p.payload, p.qos) for p in got], [(b"1a", 1), (b"2a", 2), (b"1b", 1)])
        self.sub.protocol.pauseProducing()
        self.pub.publish("t", chunk, 0)
        self.assertEqual(len(self.sub.publishes()), 1)
        self.assertEqual(self.broker.counters.dropped_qos0, 1)

    def test_paused_allowance_follows_what_the_transport_holds(self) -> None:
        """
        With a transport that says how much it still holds (Twisted's TCP
        transports do), a subscriber that stays paused but keeps draining is
        not a slow consumer: only bytes actually waiting count. Once they
        pass the allowance, QoS 0 is dropped.
        """
        transport = self.sub.transport
        protocol = self.sub.protocol
        transport.dataBuffer, transport.offset, transport._tempDataLen = b"", 0, 0  # type: ignore[attr-defined]
        protocol._measurable = True
        protocol.pauseProducing()
        chunk = b"x" * (SLOW_CONSUMER_BYTES // 4)
        for _ in range(40):
            self.pub.publish("t", chunk, 0)
            transport._tempDataLen = SLOW_CONSUMER_BYTES  # type: ignore[attr-defined]
        self.assertEqual(len(self.sub.publishes()), 40)
        self.assertEqual(self.broker.counters.dropped_qos0, 0)
        transport._tempDataLen = 3 * SLOW_CONSUMER_BYTES  # type: ignore[attr-defined]
        self.pub.publish("t", chunk, 0)
        self.assertEqual(self.sub.publishes(), [])
        self.assertEqual(self.broker.counters.dropped_qos0, 1)

    def test_paused_large_qos0_needs_eight_messages_of_backlog(self) -> None:
        """
        A paused subscriber of large messages is not a slow consumer before
        eight of them wait for it, even past C{SLOW_CONSUMER_BYTES}: a reader
        that keeps up with large messages does not lose them in every burst.
        """
        self.sub.protocol.pauseProducing()
        large = b"x" * (SLOW_CONSUMER_BYTES // 2)
        for _ in range(9):
            self.pub.publish("t", large, 0)
        self.assertEqual(len(self.sub.publishes()), 8)
        self.assertEqual(self.broker.counters.dropped_qos0, 1)

    def test_paused_stops_reading(self) -> None:
        """
        If the transport pauses the connection, the connection pauses reading
        from the transport too, and resumes with it.
        """
        self.sub.protocol.pauseProducing()
        self.assertEqual(self.sub.transport.producerState, "paused")
        self.sub.protocol.resumeProducing()
        self.assertEqual(self.sub.transport.producerState, "producing")

    def test_keep_alive_not_counted_while_not_reading(self) -> None:
        """
        If mqttx stops reading a client because its transport is paused, the
        client's silence meanwhile does not count against its keep-alive
        [MQTT-3.1.2-24]: the period starts again when reading resumes.
        """
        client = self.connect_client("ka", keep_alive=10)
        client.protocol.pauseProducing()
        self.clock.advance(60)
        self.assertFalse(client.disconnecting)
        client.protocol.resumeProducing()
        self.clock.advance(14.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(client.disconnecting)

    def test_paused_queue_is_bounded(self) -> None:
        """
        If a paused subscriber's queue reaches C{max_queued_messages},
        further QoS 1/2 messages are dropped and counted.
        """
        self.use_config(max_queued_messages=2)
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=1)
        pub = self.connect_client("pub")
        sub.protocol.pauseProducing()
        for i in range(5):
            pub.publish_acked("t", b"%d" % i, 1)
        self.assertEqual(self.broker.counters.dropped_queue_full, 3)
        sub.protocol.resumeProducing()
        self.assertEqual([p.payload for p in sub.publishes()], [b"0", b"1"])

    def test_other_subscribers_not_stalled(self) -> None:
        """
        If one subscriber is paused, others still get messages at once.
        """
        other = self.connect_client("other")
        other.subscribe("t", qos=1)
        self.sub.protocol.pauseProducing()
        self.pub.publish_acked("t", b"m", 1)
        self.assertEqual([p.payload for p in other.publishes()], [b"m"])
        self.assertEqual(self.sub.received(), [])


class FakeSocket:
    """
    The socket of a L{DirectTransport}: takes up to C{room} bytes per
    send (all when C{None}), or raises C{error}; what it takes reaches the
    peer (the transport's C{value()}).
    """

    def __init__(self, transport: StringTransport) -> None:
        self._transport = transport
        self.sends: list[bytes] = []
        self.room: int | None = None
        self.error: OSError | None = None

    def send(self, data: bytes) -> int:
        if self.error is not None:
            raise self.error
        taken = data if self.room is None else data[: self.room]
        self.sends.append(taken)
        self._transport.io.write(taken)
        return len(taken)


class DirectTransport(StringTransport):
    """
    A L{StringTransport} with the parts of Twisted's TCP transport that
    direct sending uses: its socket, and how much waits in its buffer
    (what went through C{write}, which the test empties with L{drained}).
    """

    def __init__(self, peerAddress: IPv4Address) -> None:
        super().__init__(peerAddress=peerAddress)
        self.dataBuffer = b""
        self.offset = 0
        self._tempDataLen = 0
        self.connected = True
        self.socket = FakeSocket(self)

    def write(self, data: bytes) -> None:
        super().write(data)
        self._tempDataLen += len(data)

    def loseConnection(self) -> None:
        super().loseConnection()
        self.disconnecting = True

    def drained(self) -> None:
        """The reactor sent what waited in Twisted's buffer."""
        self._tempDataLen = 0


class DirectSendTests(BrokerTestCase):
    """
    What a read causes is sent when the read is handled, straight to the
    socket, not when the reactor next polls: the latency of S4.
    """

    def open_connection(self, level: int = 4) -> FakeClient:
        self._ports += 1
        addr = IPv4Address("TCP", "127.0.0.1", self._ports)
        proto = self.factory.buildProtocol(addr)
        assert proto is not None
        transport = DirectTransport(addr)
        proto.makeConnection(transport)
        return FakeClient(proto, transport, level)

    def setUp(self) -> None:
        super().setUp()
        self.sub = self.connect_client("sub", 5)
        self.sub.subscribe("t", qos=1)
        self.pub = self.connect_client("pub")
        self.sub_transport = cast(DirectTransport, self.sub.transport)
        self.pub_transport = cast(DirectTransport, self.pub.transport)
        self.sub_transport.socket.sends.clear()

    def test_one_send_per_read(self) -> None:
        """
        What the packets of one read deliver to a subscriber goes out in one
        send when the read is handled, Twisted's buffer untouched.
        """
        one = encode(Publish("t", b"1", 0, False, False, None), 4)
        self.pub.send_bytes(one + encode(Publish("t", b"2", 0, False, False, None), 4))
        self.assertEqual(len(self.sub_transport.socket.sends), 1)
        self.assertEqual(self.sub_transport._tempDataLen, 0)
        self.pub.send_bytes(one)
        self.assertEqual(len(self.sub_transport.socket.sends), 2)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"1", b"2", b"1"])

    def test_acknowledgement_sent_after_deliveries(self) -> None:
        """
        The PUBACK a read causes is sent in the same way, after the
        delivery it acknowledges was sent.
        """
        self.pub_transport.socket.sends.clear()
        self.pub.publish("t", b"m", 1)
        self.assertEqual(self.pub.received(), [PubAck(1)])
        self.assertEqual(len(self.pub_transport.socket.sends), 1)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"m"])

    def test_rest_of_a_partial_send_goes_to_twisted(self) -> None:
        """
        What the socket does not take is written to Twisted's buffer, in
        order; while bytes wait there, later writes queue behind them.
        """
        self.sub_transport.socket.room = 3
        self.pub.publish("t", b"payload", 0)
        self.assertEqual(len(self.sub_transport.socket.sends), 1)
        self.assertGreater(self.sub_transport._tempDataLen, 0)
        self.pub.publish("t", b"second", 0)
        self.assertEqual(len(self.sub_transport.socket.sends), 1)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"payload", b"second"])

    def test_socket_errors_left_to_twisted(self) -> None:
        """A send that would block or fails leaves everything to Twisted's buffer."""
        for error in (BlockingIOError(), ConnectionResetError()):
            self.sub_transport.drained()
            self.sub_transport.socket.error = error
            self.pub.publish("t", b"m", 0)
            self.assertGreater(self.sub_transport._tempDataLen, 0)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"m", b"m"])

    def test_close_during_a_read_keeps_order(self) -> None:
        """
        If handling a read closes the connection, what the read sent before
        goes out ahead of the DISCONNECT: here a retained PUBLISH where
        retain is not available (0x9A) behind one the client gets itself.
        """
        self.use_config(retain_available=False)
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", qos=1)
        own = encode(Publish("t", b"own", 0, False, False, None), 5)
        sub.send_bytes(own + encode(Publish("t", b"kept", 0, True, False, None), 5))
        packets = sub.received()
        self.assertEqual([type(p) for p in packets], [Publish, Disconnect])
        self.assertEqual(cast(Disconnect, packets[1]).reason_code, ReasonCode.RETAIN_NOT_SUPPORTED)

    def test_writes_outside_a_read_go_to_twisted(self) -> None:
        """
        Writes that no read caused (a will published by a timer) take
        Twisted's usual path: sent when the reactor polls.
        """
        client = self.connect_client(
            "w",
            5,
            will=Will("t", b"bye", properties=Properties(will_delay_interval=5)),
            properties=Properties(session_expiry_interval=60),
        )
        client.drop()
        self.sub_transport.drained()
        self.clock.advance(5)
        self.assertEqual(self.sub_transport.socket.sends, [])
        self.assertGreater(self.sub_transport._tempDataLen, 0)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"bye"])


class PropertiesOnTheWireTests(BrokerTestCase):
    """
    Limits the client announced in its CONNECT.
    """

    def test_message_over_client_maximum_packet_size_dropped(self) -> None:
        """
        If a message is larger than the Maximum Packet Size a 5.0 subscriber
        announced, it is not sent to it, and counted [MQTT-3.1.2-24]; smaller
        ones still are.
        """
        sub = self.connect_client("sub", 5, properties=Properties(maximum_packet_size=64))
        sub.subscribe("t", qos=1)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"x" * 100, 1)
        pub.publish_acked("t", b"small", 1)
        self.assertEqual([p.payload for p in sub.publishes()], [b"small"])
        self.assertEqual(self.broker.counters.dropped_too_large, 1)


@implementer(IAuthenticator)
class PendingAuthenticator:
    """An authenticator whose answers the test gives, one per CONNECT, in order."""

    def __init__(self) -> None:
        self.pending: list[Deferred[int]] = []

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        self.pending.append(d)
        return d


class SlowAuthenticationTests(BrokerTestCase):
    """
    Admission that takes time: the authenticator answers later.
    """

    def make_broker(self) -> Broker:
        self.authenticator = PendingAuthenticator()
        return Broker(self.config, clock=self.clock, store=self.store, authenticator=self.authenticator)

    def _connect(self, client_id: str, level: int = 4, **kwargs: Any) -> FakeClient:
        client = self.open_connection(level)
        client.send(Connect(client_id, level, **kwargs))
        return client

    def test_packets_wait_for_admission(self) -> None:
        """
        If a client sends packets behind CONNECT while it is being
        authenticated, they are handled after the CONNACK, in order, and the
        connection is not read meanwhile.
        """
        client = self._connect("c1")
        client.send(Publish("t", b"x", 1, packet_id=3), PingReq())
        self.assertEqual(client.received(), [])
        self.assertEqual(client.transport.producerState, "paused")
        self.authenticator.pending[0].callback(0)
        self.assertEqual(client.received(), [ConnAck(False, 0), PubAck(3), PingResp()])
        self.assertEqual(client.transport.producerState, "producing")

    def test_authenticator_that_never_answers_times_out(self) -> None:
        """
        If the authenticator does not answer within the CONNECT timeout, the
        connection is closed; a late answer then finds no connection to admit.
        """
        client = self._connect("late", 5)
        self.clock.advance(CONNECT_TIMEOUT)
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [])
        client.finish_close()
        self.authenticator.pending[0].callback(0)
        self.assertNotIn("late", self.broker.sessions)

    def test_refused_client_packets_not_processed(self) -> None:
        """
        If the authenticator refuses a client, CONNACK carries its code and
        the packets the client sent behind CONNECT are not processed
        [MQTT-3.1.4-5] [MQTT-3.2.2-5].
        """
        watcher = self.open_connection()
        watcher.send(Connect("watcher"), Subscribe(1, (Subscription("t"),)))
        self.authenticator.pending[0].callback(0)
        watcher.received()
        client = self._connect("c1", username="u", password=b"bad")
        client.send(Publish("t", b"x", 0, True))
        self.authenticator.pending[1].callback(0x86)
        self.assertEqual(client.received(), [ConnAck(False, 0x04)])
        self.assertTrue(client.disconnecting)
        self.assertEqual(watcher.received(), [])
        self.assertEqual(len(self.broker.retained), 0)

    def test_v5_refusal_code(self) -> None:
        """
        If the authenticator refuses a 5.0 client, CONNACK carries the
        authenticator's reason code.
        """
        client = self._connect("c1", 5, protocol_name="MQTT")
        self.authenticator.pending[0].callback(0x87)
        [connack] = client.received()
        assert isinstance(connack, ConnAck)
        self.assertEqual(connack.reason_code, 0x87)
        self.assertTrue(client.disconnecting)

    def test_connection_lost_during_authentication(self) -> None:
        """
        If the connection is lost while the client is being authenticated,
        the session the broker then admits is detached at once: its will is
        published and a session ending with the connection is gone.
        """
        watcher = self.open_connection()
        watcher.send(Connect("watcher"), Subscribe(1, (Subscription("will"),)))
        self.authenticator.pending[0].callback(0)
        watcher.received()
        client = self._connect("c1", will=Will("will", b"w"))
        client.drop()
        self.authenticator.pending[1].callback(0)
        self.assertNotIn("c1", self.broker.sessions)
        self.assertEqual(watcher.received(), [Publish("will", b"w")])

    def test_persistent_session_detached_if_lost_during_authentication(self) -> None:
        """
        If the connection of a persistent session is lost during
        authentication, the session is kept offline: messages for it are
        queued, not written to the dead connection.
        """
        client = self._connect("c1", clean_start=False)
        client.drop()
        self.authenticator.pending[0].callback(0)
        session = self.broker.sessions["c1"]
        self.assertIsNone(session.link)
        self.assertIsNotNone(session.disconnected_at)

    def test_protocol_error_during_authentication(self) -> None:
        """
        If a client breaks the protocol while being authenticated, the
        connection closes and, once it is gone, the admitted session is
        detached.
        """
        client = self._connect("c1", clean_start=False)
        client.send_bytes(b"\x00\x00")
        self.assertTrue(client.disconnecting)
        self.authenticator.pending[0].callback(0)
        client.finish_close()
        self.assertIsNone(self.broker.sessions["c1"].link)


class FuzzTests(BrokerTestCase):
    """
    Whatever a client sends after CONNECT, nothing escapes C{dataReceived},
    no error is logged (an unexpected logged error fails the test) and
    everything the broker writes is valid MQTT for the client's version.
    """

    @settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_any_input_after_connect(self, data: st.DataObject) -> None:
        """
        If a client sends any sequence of valid packets of any type, raw
        bytes, or packets with one byte changed, the broker answers with
        valid packets or closes the connection, and never fails.
        """
        level = data.draw(st.sampled_from(LEVELS), label="level")
        self._build()
        watcher = self.connect_client("watcher", level)
        watcher.subscribe("#", qos=2)
        client = self.connect_client("c", level, clean_start=data.draw(st.booleans(), label="clean"))
        encoded = packets(level).map(lambda p: encode(p, level))
        mutated = st.tuples(encoded, st.integers(0, 1000), st.integers(0, 255)).map(
            lambda t: t[0][: t[1] % len(t[0])] + bytes((t[2],)) + t[0][t[1] % len(t[0]) + 1 :]
        )
        chunks = data.draw(
            st.lists(st.one_of(encoded, encoded, mutated, st.binary(max_size=16)), max_size=6), label="chunks"
        )
        for chunk in chunks:
            client.send_bytes(chunk)
            self.clock.advance(1)
            client.received()
            watcher.ack(watcher.publishes())
            watcher.received()
        if data.draw(st.booleans(), label="drop"):
            client.drop()
        else:
            client.finish_close()
        self.clock.advance(10**6)
        watcher.ack(watcher.publishes())
        watcher.received()


class BrokerFailureTests(BrokerTestCase):
    """
    A bug in the broker core ends one connection cleanly, with the
    failure logged, instead of escaping into the reactor.
    """

    def _break(self, name: str) -> None:
        def broken(*args: object) -> None:
            raise ZeroDivisionError(name)

        self.patch(self.broker, name, broken)

    def test_handler_failure_closes_with_implementation_error(self) -> None:
        """
        If handling a packet raises, the failure is logged, a 5.0 client
        gets DISCONNECT 0x83 (Implementation specific error) and its
        connection closes; other clients carry on.
        """
        other = self.connect_client("other", 5)
        client = self.connect_client("c1", 5)
        self._break("pingreq")
        client.send(PingReq())
        self.assertClosedWith(client, 0x83)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        other.send(Publish("t", b"x", 1, packet_id=1))
        self.assertEqual(other.received(), [PubAck(1, 0x10)])

    def test_handler_failure_in_backlog(self) -> None:
        """
        If handling a packet that came in the same chunk as CONNECT raises,
        the failure is logged and the connection closes.
        """
        self._break("pingreq")
        client = self.open_connection(4)
        client.send_bytes(encode(Connect("c1"), 4) + b"\xc0\x00")
        self.assertEqual(client.received(), [ConnAck(False, 0)])
        self.assertTrue(client.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_failure_at_connection_end_logged(self) -> None:
        """
        If the broker fails while ending a connection, the failure is
        logged and nothing is raised out of C{connectionLost}.
        """
        client = self.connect_client("c1")
        self._break("connection_lost")
        client.drop()
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_admission_failure_refused(self) -> None:
        """
        If deciding on a CONNECT fails, the client is refused (5.0: CONNACK
        0x80; 3.1.1: 0x03 Server unavailable) and the failure is logged.
        """
        self.patch(self.broker, "connect", lambda link, connect: fail(ZeroDivisionError("connect")))
        v5 = self.open_connection(5)
        v5.send(Connect("c5", 5))
        [connack] = v5.received()
        assert isinstance(connack, ConnAck)
        self.assertEqual(connack.reason_code, 0x80)
        self.assertTrue(v5.disconnecting)
        v3 = self.open_connection(4)
        v3.send(Connect("c3", 4))
        self.assertEqual(v3.received(), [ConnAck(False, 0x03)])
        self.assertTrue(v3.disconnecting)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
