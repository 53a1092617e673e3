# -*- test-case-name: tests.transports.test_limits -*-
"""
Limits enforced by the MQTT transport: connections (global, per listener,
per source address), the CONNECT timeout, client identifier length, topic
limits on PUBLISH and the per-client publish rate.
"""

from __future__ import annotations

from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs

from mqttx.mqtt.packets import ConnAck, Connect, Publish
from mqttx.mqtt.reason_codes import ConnackReturnCode, ReasonCode
from mqttx.transports import limits as limits_module
from mqttx.transports.limits import LOG_INTERVAL, ConnectionLimits
from mqttx.transports.mqtt import _HANDLERS, MQTTServerFactory, MQTTServerProtocol

from ..helpers import PROTOCOL_NAMES, BrokerTestCase


def address(host: str = "10.0.0.1", port: int = 50000) -> IPv4Address:
    return IPv4Address("TCP", host, port)


class ConnectionLimitTests(BrokerTestCase):
    """
    C{max_connections} and a listener's own C{max_connections}: a
    connection over them is closed as it is accepted (the factory builds no
    protocol), before anything is read.
    """

    def test_global_limit_refuses_at_accept(self) -> None:
        """
        With C{max_connections: 2}, a third connection gets no protocol;
        once one closes, a new one is accepted again.
        """
        self.use_config(max_connections=2)
        first = self.open_connection()
        self.open_connection()
        self.assertIsNone(self.factory.buildProtocol(address()))
        self.assertEqual(self.factory.limits.refused["connections"], 1)
        first.drop()
        self.assertIsInstance(self.factory.buildProtocol(address()), MQTTServerProtocol)

    def test_limit_is_shared_by_listeners(self) -> None:
        """
        Listeners built with the same L{ConnectionLimits} share the global
        count.
        """
        self.use_config(max_connections=1)
        other = MQTTServerFactory(self.broker, self.clock, "other", limits=self.factory.limits)
        self.assertIsNotNone(self.factory.buildProtocol(address()))
        self.assertIsNone(other.buildProtocol(address()))

    def test_listener_limit(self) -> None:
        """
        A listener's C{max_connections} bounds its own connections only.
        """
        shared = self.factory.limits
        small = MQTTServerFactory(self.broker, self.clock, "small", max_connections=1, limits=shared)
        self.assertIsNotNone(small.buildProtocol(address()))
        self.assertIsNone(small.buildProtocol(address()))
        self.assertEqual(shared.refused["listener"], 1)
        self.assertIsNotNone(self.factory.buildProtocol(address()))

    def test_closed_connection_frees_its_listener_slot(self) -> None:
        """When a connection of a full listener ends, the listener accepts again."""
        small = MQTTServerFactory(self.broker, self.clock, "small", max_connections=1)
        proto = small.buildProtocol(address())
        assert proto is not None
        proto.makeConnection(StringTransport())
        proto.connectionLost()
        self.assertIsNotNone(small.buildProtocol(address()))
        self.assertEqual(small.limits.open, 1)

    def test_refusals_logged_once_per_interval(self) -> None:
        """
        Refusals make one log line per reason per L{LOG_INTERVAL}, which
        reports how many were not logged.
        """
        self.use_config(max_connections=1)
        self.open_connection()
        with capturedLogs() as events:
            for _ in range(5):
                self.factory.buildProtocol(address())
            self.clock.advance(LOG_INTERVAL)
            self.factory.buildProtocol(address())
        limited = [e for e in events if e.get("event_id") == "connect.limited"]
        self.assertEqual([(e["reason"], e["more"]) for e in limited], [("connections", 0), ("connections", 4)])
        self.assertEqual(self.factory.limits.refused["connections"], 6)


class ConnectionRateTests(BrokerTestCase):
    """
    C{max_connection_rate} with C{connection_burst}: a token bucket per
    source address.
    """

    def test_burst_then_rate(self) -> None:
        """
        An address may open C{connection_burst} connections at once, then
        C{max_connection_rate} per second; others are unaffected.
        """
        self.use_config(max_connection_rate=2.0, connection_burst=3)
        built = [self.factory.buildProtocol(address()) for _ in range(4)]
        self.assertEqual([p is not None for p in built], [True, True, True, False])
        self.assertEqual(self.factory.limits.refused["rate"], 1)
        self.assertIsNotNone(self.factory.buildProtocol(address("10.0.0.2")))
        self.clock.advance(0.5)
        self.assertIsNotNone(self.factory.buildProtocol(address()))
        self.assertIsNone(self.factory.buildProtocol(address()))

    def test_off_by_default(self) -> None:
        """Without C{max_connection_rate}, one address may connect at will."""
        self.assertTrue(all(self.factory.buildProtocol(address()) for _ in range(100)))

    def test_addresses_without_host_are_not_limited(self) -> None:
        """Unix socket peers have no host: the rate limit does not apply."""
        self.use_config(max_connection_rate=1.0, connection_burst=1)
        self.assertTrue(all(self.factory.buildProtocol(None) for _ in range(5)))

    def test_idle_addresses_are_forgotten(self) -> None:
        """
        The table of addresses stays bounded: once it is large, addresses
        whose bucket has refilled are dropped.
        """
        self.patch(limits_module, "_PRUNE_AT", 10)
        limits = ConnectionLimits(self.config.__class__(max_connection_rate=1.0, connection_burst=1), self.clock)
        for i in range(10):
            self.assertTrue(limits.admit("mqtt", 0, f"10.1.0.{i}"))
        self.clock.advance(5)
        self.assertTrue(limits.admit("mqtt", 0, "10.2.0.1"))
        self.assertTrue(limits.admit("mqtt", 0, "10.2.0.2"))
        self.assertLessEqual(len(limits._buckets), 2)


class ConnectTimeoutTests(BrokerTestCase):
    """C{connect_timeout}: a socket that never sends CONNECT is closed."""

    def test_configured_timeout(self) -> None:
        """The connection is closed C{connect_timeout} seconds after accept."""
        self.use_config(connect_timeout=3.0)
        client = self.open_connection()
        self.clock.advance(2.9)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.1)
        self.assertClosedWith(client, None)


class ClientIdLengthTests(BrokerTestCase):
    """C{max_client_id_length}."""

    def setUp(self) -> None:
        super().setUp()
        self.use_config(max_client_id_length=23)

    def connect_raw(self, client_id: str, level: int) -> ConnAck:
        client = self.open_connection(level)
        client.send(Connect(client_id, level, PROTOCOL_NAMES[level], True, 0))
        connack = client.expect(ConnAck)
        self.client = client
        return connack

    def test_v5_refused_with_0x85(self) -> None:
        """MQTT 5: a longer client identifier gets CONNACK 0x85 and the connection closes."""
        with capturedLogs() as events:
            connack = self.connect_raw("x" * 24, 5)
        self.assertEqual(connack.reason_code, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
        self.assertClosedWith(self.client, None)
        self.assertEqual(len([e for e in events if e.get("event_id") == "connect.client_id_too_long"]), 1)

    def test_v311_refused_with_0x02(self) -> None:
        """3.1.1: CONNACK 0x02 (identifier rejected), then close."""
        connack = self.connect_raw("x" * 24, 4)
        self.assertEqual(connack.reason_code, ConnackReturnCode.IDENTIFIER_REJECTED)
        self.assertClosedWith(self.client, None)

    def test_at_the_limit_accepted(self) -> None:
        """An identifier of exactly the limit is accepted."""
        self.assertEqual(self.connect_raw("x" * 23, 5).reason_code, 0)


class PublishTopicLimitTests(BrokerTestCase):
    """C{max_topic_length} and C{max_topic_levels} on PUBLISH."""

    def test_v5_long_topic_disconnect_0x90(self) -> None:
        """MQTT 5: a topic over C{max_topic_length} gets DISCONNECT 0x90."""
        self.use_config(max_topic_length=10)
        sub = self.connect_client("sub", 5)
        sub.subscribe("#")
        pub = self.connect_client("pub", 5)
        pub.publish("a" * 10)
        self.assertEqual([p.topic for p in sub.publishes()], ["a" * 10])
        with capturedLogs() as events:
            pub.publish("a" * 11)
        self.assertClosedWith(pub, ReasonCode.TOPIC_NAME_INVALID)
        self.assertEqual(sub.publishes(), [])
        self.assertEqual(len([e for e in events if e.get("event_id") == "publish.topic_limited"]), 1)

    def test_v311_too_many_levels_closes(self) -> None:
        """3.1.1: a topic with more than C{max_topic_levels} levels closes the connection."""
        self.use_config(max_topic_levels=3)
        sub = self.connect_client("sub", 4)
        sub.subscribe("#")
        pub = self.connect_client("pub", 4)
        pub.publish("a/b/c")
        self.assertEqual([p.topic for p in sub.publishes()], ["a/b/c"])
        pub.publish("a/b/c/d")
        self.assertClosedWith(pub, None)
        self.assertEqual(sub.publishes(), [])

    def test_no_check_when_off(self) -> None:
        """With every PUBLISH limit off, PUBLISH goes straight to the broker."""
        self.use_config(max_topic_levels=0)
        client = self.connect_client("c", 5)
        self.assertIs(client.protocol._handlers, _HANDLERS)

    def test_default_levels_checked(self) -> None:
        """By default, 128 levels pass and 129 do not."""
        pub = self.connect_client("pub", 5)
        pub.publish("/".join("a" * 128))
        self.assertFalse(pub.disconnecting)
        pub.publish("/".join("a" * 129))
        self.assertClosedWith(pub, ReasonCode.TOPIC_NAME_INVALID)


class PublishRateTests(BrokerTestCase):
    """
    C{max_publish_rate} and C{max_publish_bytes_rate}: a client over them
    is not read until it is back within them; nothing is dropped.
    """

    def test_message_rate_pauses_reading(self) -> None:
        """
        With 2 messages/s, the third PUBLISH in a second pauses reading for
        the half second that repays it; every message is delivered.
        """
        self.use_config(max_publish_rate=2.0)
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 1)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t")
        pub.publish_acked("t")
        self.assertEqual(pub.transport.producerState, "producing")
        pub.publish_acked("t")
        self.assertEqual(pub.transport.producerState, "paused")
        self.assertEqual(len(sub.publishes()), 3)
        self.clock.advance(0.49)
        self.assertEqual(pub.transport.producerState, "paused")
        self.clock.advance(0.01)
        self.assertEqual(pub.transport.producerState, "producing")
        self.assertFalse(pub.disconnecting)

    def test_byte_rate_pauses_reading(self) -> None:
        """
        With 100 bytes/s, a PUBLISH of 1 + 299 bytes pauses reading for
        two seconds (what it took beyond the one-second allowance).
        """
        self.use_config(max_publish_bytes_rate=100)
        pub = self.connect_client("pub", 4)
        pub.publish("t", b"x" * 299)
        self.assertEqual(pub.transport.producerState, "paused")
        self.clock.advance(1.99)
        self.assertEqual(pub.transport.producerState, "paused")
        self.clock.advance(0.01)
        self.assertEqual(pub.transport.producerState, "producing")

    def test_pause_survives_other_resumes(self) -> None:
        """
        While held by the rate, a resume of the transport (its buffer
        drained) does not resume reading.
        """
        self.use_config(max_publish_rate=1.0)
        pub = self.connect_client("pub", 5)
        pub.publish("t")
        pub.publish("t")
        self.assertEqual(pub.transport.producerState, "paused")
        pub.protocol.pauseProducing()
        pub.protocol.resumeProducing()
        self.assertEqual(pub.transport.producerState, "paused")
        self.clock.advance(1.0)
        self.assertEqual(pub.transport.producerState, "producing")

    def test_timer_cancelled_when_lost(self) -> None:
        """A connection lost while held leaves no timer behind."""
        self.use_config(max_publish_rate=1.0)
        pub = self.connect_client("pub", 5)
        pub.publish("t")
        pub.publish("t")
        pub.drop()
        rate_calls = [
            c
            for c in self.clock.getDelayedCalls()
            if getattr(getattr(c, "func", None), "__name__", "") == "_release"
        ]
        self.assertEqual(rate_calls, [])

    def test_publish_packets_unchanged(self) -> None:
        """The limited path hands the broker the same PUBLISH."""
        self.use_config(max_publish_rate=100.0)
        sub = self.connect_client("sub", 5)
        sub.subscribe("t")
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"payload")
        [got] = sub.publishes()
        self.assertEqual((got.topic, got.payload), ("t", b"payload"))
        self.assertIsInstance(got, Publish)
