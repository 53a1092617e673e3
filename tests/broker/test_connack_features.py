# -*- test-case-name: tests.broker.test_connack_features -*-
"""
The MQTT 5 connection-level features a server announces in CONNACK and
then enforces: Maximum QoS, Wildcard Subscription Available, Subscription
Identifier Available, Response Information and server redirection (Server
Reference), and a CONNACK that always fits the client's Maximum Packet Size.
"""

from __future__ import annotations

from dataclasses import replace

from twisted.logger import capturedLogs

from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import (
    ConnAck,
    Connect,
    Packet,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from tests.helpers import BrokerTestCase, FakeClient

#: The properties of a default successful MQTT 5 CONNACK.
DEFAULT_CONNACK = Properties(maximum_packet_size=1_048_576, topic_alias_maximum=64)


def codes(client: FakeClient) -> list[tuple[str, int | None]]:
    """What the server wrote since the last read: (packet type, reason code)."""
    return [(type(p).__name__, getattr(p, "reason_code", None)) for p in client.received()]


def plain(packet: Packet | None) -> Packet | None:
    """
    C{packet} without its Reason String: diagnostics for people, whose text
    is not this module's concern (section 3.2.2.3.9).
    """
    properties = getattr(packet, "properties", None)
    if packet is None or properties is None:
        return packet
    return replace(packet, properties=replace(properties, reason_string=None))


class ConnAckPropertiesTests(BrokerTestCase):
    """The feature properties of a successful CONNACK."""

    def test_available_features_are_not_announced(self) -> None:
        """
        With every feature on (the defaults), CONNACK says nothing of
        Maximum QoS, Wildcard, Subscription Identifier or Shared
        Subscription availability: absent means available (sections
        3.2.2.3.4, 3.2.2.3.11 to 3.2.2.3.13); nor Response Information,
        which the client did not ask for.
        """
        client = self.connect_client("c", 5)
        self.assertEqual(client.connack, ConnAck(False, 0, DEFAULT_CONNACK))

    def test_unavailable_features_are_announced(self) -> None:
        """
        With Maximum QoS 1, no wildcard subscriptions and no subscription
        identifiers, CONNACK carries Maximum QoS 1 [MQTT-3.2.2-9],
        Wildcard Subscription Available 0 and Subscription Identifier
        Available 0.
        """
        self.use_config(maximum_qos=1, wildcard_subscriptions=False, subscription_identifiers=False)
        client = self.connect_client("c", 5)
        self.assertEqual(
            client.connack,
            ConnAck(
                False,
                0,
                Properties(
                    maximum_packet_size=1_048_576,
                    topic_alias_maximum=64,
                    maximum_qos=1,
                    wildcard_subscription_available=0,
                    subscription_identifier_available=0,
                ),
            ),
        )

    def test_maximum_qos_0_announced(self) -> None:
        """With C{maximum_qos: 0}, CONNACK carries Maximum QoS 0 [MQTT-3.2.2-9]."""
        self.use_config(maximum_qos=0)
        client = self.connect_client("c", 5)
        assert client.connack is not None
        self.assertEqual(client.connack.properties.maximum_qos, 0)

    def test_v311_connack_has_no_properties(self) -> None:
        """A 3.1.1 CONNACK is two bytes whatever is configured: no properties."""
        self.use_config(maximum_qos=0, wildcard_subscriptions=False, response_information="r/")
        client = self.open_connection(4)
        client.send(Connect("c", 4))
        self.assertEqual(client.transport.value(), b"\x20\x02\x00\x00")


class MaximumQoSTests(BrokerTestCase):
    """C{maximum_qos}: what clients may publish and are granted."""

    def setUp(self) -> None:
        super().setUp()
        self.use_config(maximum_qos=1)

    def test_publish_above_maximum_disconnects_v5(self) -> None:
        """
        A 5.0 client publishing above the Maximum QoS of its CONNACK gets
        DISCONNECT 0x9B (QoS not supported) [MQTT-3.2.2-11] (section
        3.3.1.2), and the message goes nowhere.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 1)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"1", 1)
        self.assertEqual(pub.received(), [PubAck(1, 0)])
        pub.publish("t", b"2", 2)
        self.assertClosedWith(pub, ReasonCode.QOS_NOT_SUPPORTED)
        self.assertEqual([p.payload for p in sub.publishes()], [b"1"])

    def test_publish_above_maximum_closes_v311(self) -> None:
        """
        A 3.1.1 client cannot be told the maximum nor sent DISCONNECT: a
        PUBLISH above it closes the connection, as Mosquitto's C{max_qos}
        does, without PUBREC.
        """
        sub = self.connect_client("sub", 4)
        sub.subscribe("t", 1)
        pub = self.connect_client("pub", 4)
        pub.publish("t", b"2", 2)
        self.assertClosedWith(pub, None)
        self.assertEqual(sub.received(), [])

    def test_maximum_qos_0_refuses_qos1(self) -> None:
        """With C{maximum_qos: 0} a QoS 1 PUBLISH is refused too (0x9B)."""
        self.use_config(maximum_qos=0)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"x", 0)
        pub.publish("t", b"x", 1)
        self.assertClosedWith(pub, ReasonCode.QOS_NOT_SUPPORTED)

    def test_subscribe_granted_at_the_maximum(self) -> None:
        """
        SUBSCRIBE at any QoS is accepted [MQTT-3.2.2-10] and granted at most
        the Maximum QoS, which SUBACK shows, for every protocol version;
        messages then arrive at the granted QoS.
        """
        for level in (3, 4, 5):
            client = self.connect_client(f"c{level}", level)
            client.send(Subscribe(1, (Subscription("a", 0), Subscription("b", 1), Subscription("c", 2))))
            self.assertEqual(client.received(), [SubAck(1, (0, 1, 1))])
            self.assertEqual(client.session.subscriptions["c"].qos, 1)  # type: ignore[union-attr]
        pub = self.connect_client("pub", 5)
        pub.publish_acked("c", b"x", 1)
        got = self.connect_client("c5", 5, clean_start=False)
        self.assertEqual(got.publishes(), [])

    def test_delivery_at_granted_qos(self) -> None:
        """
        A subscriber that asked for QoS 2 under Maximum QoS 1 gets QoS 1
        messages at QoS 1 (min(published, granted) [MQTT-3.8.4-8]).
        """
        sub = self.connect_client("sub", 5)
        self.assertEqual(sub.subscribe("t", 2), SubAck(1, (1,)))
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t", b"x", 1)
        [got] = sub.publishes()
        self.assertEqual((got.qos, got.payload), (1, b"x"))

    def test_will_above_maximum_refused_v5(self) -> None:
        """
        A CONNECT whose will QoS exceeds the maximum is refused with CONNACK
        0x9B (QoS not supported) and closed [MQTT-3.2.2-12]; no session is
        made.
        """
        client = self.connect_client("c", 5, will=Will("w", b"bye", 2))
        self.assertEqual(plain(client.connack), ConnAck(False, ReasonCode.QOS_NOT_SUPPORTED))
        self.assertTrue(client.disconnecting)
        self.assertNotIn("c", self.broker.sessions)

    def test_will_above_maximum_refused_v311(self) -> None:
        """
        3.1.1 has no return code for it: CONNACK 0x03 (Server unavailable),
        the nearest, as 3.1.1 section 3.1.4 asks an appropriate CONNACK,
        then the connection is closed.
        """
        for level in (3, 4):
            client = self.connect_client(f"c{level}", level, will=Will("w", b"bye", 2))
            self.assertEqual(client.connack, ConnAck(False, 0x03))
            self.assertTrue(client.disconnecting)

    def test_will_at_maximum_accepted(self) -> None:
        """A will at the maximum QoS is fine."""
        client = self.connect_client("c", 5, will=Will("w", b"bye", 1))
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0)


class WildcardSubscriptionTests(BrokerTestCase):
    """C{wildcard_subscriptions: false}."""

    def setUp(self) -> None:
        super().setUp()
        self.use_config(wildcard_subscriptions=False)

    def test_wildcard_filters_refused_v5(self) -> None:
        """
        Filters with C{+} or C{#} get SUBACK 0xA2 (Wildcard Subscriptions not
        supported, section 3.2.2.3.11), the others in the same SUBSCRIBE are
        granted, and the connection stays open.
        """
        client = self.connect_client("c", 5)
        client.send(
            Subscribe(1, (Subscription("a/+", 1), Subscription("a/b", 1), Subscription("#", 0), Subscription("x/#", 2)))
        )
        self.assertEqual([plain(p) for p in client.received()], [SubAck(1, (0xA2, 1, 0xA2, 0xA2))])
        self.assertFalse(client.disconnecting)
        self.assertEqual(sorted(client.session.subscriptions), ["a/b"])  # type: ignore[union-attr]
        pub = self.connect_client("pub", 5)
        pub.publish("a/b", b"x")
        self.assertEqual([p.topic for p in client.publishes()], ["a/b"])

    def test_wildcard_filters_refused_v311(self) -> None:
        """3.1.1 clients get the only failure code they have: 0x80."""
        client = self.connect_client("c", 4)
        client.send(Subscribe(1, (Subscription("a/+", 1), Subscription("a/b", 1))))
        self.assertEqual(client.received(), [SubAck(1, (0x80, 1))])


class SubscriptionIdentifierTests(BrokerTestCase):
    """C{subscription_identifiers: false}."""

    def test_subscription_identifier_disconnects(self) -> None:
        """
        A SUBSCRIBE with a Subscription Identifier after CONNACK said
        Subscription Identifier Available 0 is a protocol error: DISCONNECT
        0xA1 (section 3.2.2.3.12), and the subscription is not made.
        """
        self.use_config(subscription_identifiers=False)
        client = self.connect_client("c", 5)
        client.send(Subscribe(1, (Subscription("t", 0),), Properties(subscription_identifier=(3,))))
        self.assertClosedWith(client, ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED)
        self.assertNotIn("t", self.broker.sessions["c"].subscriptions)

    def test_subscribe_without_identifier_still_works(self) -> None:
        """Subscriptions without an identifier are unaffected."""
        self.use_config(subscription_identifiers=False)
        client = self.connect_client("c", 5)
        self.assertEqual(client.subscribe("t", 1), SubAck(1, (1,)))

    def test_identifiers_accepted_when_available(self) -> None:
        """By default a Subscription Identifier is accepted and used (section 3.8.2.1.2)."""
        client = self.connect_client("c", 5)
        self.assertEqual(client.subscribe("t", 0, subscription_id=3), SubAck(1, (0,)))
        self.connect_client("pub", 5).publish("t", b"x")
        [got] = client.publishes()
        self.assertEqual(got.properties.subscription_identifier, (3,))


class ResponseInformationTests(BrokerTestCase):
    """C{response_information}: the root of a client's response topics."""

    def test_given_when_asked_for(self) -> None:
        """
        If the client's CONNECT has Request Response Information 1 and a
        prefix is configured, CONNACK carries Response Information = prefix
        + client identifier (section 3.2.2.3.15).
        """
        self.use_config(response_information="responses/")
        client = self.connect_client("c1", 5, properties=Properties(request_response_information=1))
        assert client.connack is not None
        self.assertEqual(client.connack.properties.response_information, "responses/c1")

    def test_uses_the_assigned_client_identifier(self) -> None:
        """A client without an identifier gets the prefix + its assigned one."""
        self.use_config(response_information="r/")
        client = self.connect_client("", 5, properties=Properties(request_response_information=1))
        assert client.connack is not None
        assigned = client.connack.properties.assigned_client_identifier
        assert assigned is not None
        self.assertEqual(client.connack.properties.response_information, "r/" + assigned)

    def test_never_unasked(self) -> None:
        """
        Without Request Response Information, or with 0, no Response
        Information is returned [MQTT-3.1.2-28]; nor without a prefix.
        """
        self.use_config(response_information="responses/")
        for props in (NO_PROPERTIES, Properties(request_response_information=0)):
            client = self.connect_client("c1", 5, properties=props)
            self.assertEqual(client.connack, ConnAck(False, 0, DEFAULT_CONNACK))
        self.use_config(response_information=None)
        client = self.connect_client("c1", 5, properties=Properties(request_response_information=1))
        self.assertEqual(client.connack, ConnAck(False, 0, DEFAULT_CONNACK))


class ServerReferenceTests(BrokerTestCase):
    """C{server_reference}: redirection (section 4.11)."""

    def test_use_another_server(self) -> None:
        """
        MQTT 5 clients get CONNACK 0x9C (Use another server) with the
        Server Reference, and are closed [MQTT-3.2.2-7]; the refusal is
        logged once, at info.
        """
        self.use_config(server_reference="other.example:1883")
        with capturedLogs() as events:
            client = self.connect_client("c", 5)
        self.assertEqual(
            plain(client.connack),
            ConnAck(False, ReasonCode.USE_ANOTHER_SERVER, Properties(server_reference="other.example:1883")),
        )
        self.assertTrue(client.disconnecting)
        self.assertEqual(client.received(), [])
        self.assertNotIn("c", self.broker.sessions)
        refused = [e for e in events if e.get("event_id") == "connect.refused"]
        self.assertEqual(len(refused), 1)
        self.assertEqual(refused[0]["log_level"].name, "info")

    def test_server_moved(self) -> None:
        """With C{server_moved}, the code is 0x9D (Server moved)."""
        self.use_config(server_reference="new.example", server_moved=True)
        client = self.connect_client("c", 5)
        self.assertEqual(
            plain(client.connack), ConnAck(False, ReasonCode.SERVER_MOVED, Properties(server_reference="new.example"))
        )
        self.assertTrue(client.disconnecting)

    def test_v311_clients_get_server_unavailable(self) -> None:
        """
        3.1/3.1.1 clients cannot be redirected: CONNACK 0x03 (Server
        unavailable), then the connection is closed.
        """
        self.use_config(server_reference="other.example")
        for level in (3, 4):
            client = self.connect_client(f"c{level}", level)
            self.assertEqual(client.connack, ConnAck(False, 0x03))
            self.assertTrue(client.disconnecting)

    def test_packets_after_a_redirected_connect_are_ignored(self) -> None:
        """
        Packets sent behind a CONNECT that is redirected are not processed
        [MQTT-3.1.4-6]: a PUBLISH right after it is not delivered.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t")
        self.use_config(server_reference="other.example")
        client = self.open_connection(5)
        client.send(Connect("c", 5), Publish("t", b"lost"))
        self.assertEqual(codes(client), [("ConnAck", ReasonCode.USE_ANOTHER_SERVER)])
        self.assertNotIn("c", self.broker.sessions)


class ConnAckSizeTests(BrokerTestCase):
    """A CONNACK always fits the client's Maximum Packet Size."""

    def test_response_information_dropped_to_fit(self) -> None:
        """
        If Response Information would make the CONNACK larger than the
        client's Maximum Packet Size [MQTT-3.1.2-24], it is left out (it is
        optional, section 3.2.2.3.15) and the client still gets its CONNACK
        with the limits it must know.
        """
        self.use_config(response_information="a/rather/long/response/topic/prefix/")
        props = Properties(request_response_information=1, maximum_packet_size=30)
        client = self.connect_client("c1", 5, properties=props)
        self.assertEqual(client.connack, ConnAck(False, 0, DEFAULT_CONNACK))
        self.assertEqual(client.transport.value(), encode(ConnAck(False, 0, DEFAULT_CONNACK), 5))
        self.assertFalse(client.disconnecting)

    def test_topic_alias_maximum_dropped_to_fit(self) -> None:
        """
        Smaller still, the CONNACK goes without Topic Alias Maximum too (the
        client then sends no aliases [MQTT-3.2.2-18], which is safe), but
        keeps the Maximum Packet Size and the features the client must
        respect.
        """
        self.use_config(maximum_qos=1)
        client = self.connect_client("c1", 5, properties=Properties(maximum_packet_size=13))
        self.assertEqual(client.connack, ConnAck(False, 0, Properties(maximum_packet_size=1_048_576, maximum_qos=1)))
        self.assertEqual(len(client.transport.value()), 12)

    def test_response_information_kept_when_it_fits(self) -> None:
        """When it fits, nothing is left out."""
        self.use_config(response_information="r/")
        props = Properties(request_response_information=1, maximum_packet_size=30)
        client = self.connect_client("c1", 5, properties=props)
        self.assertEqual(
            client.connack,
            ConnAck(
                False,
                0,
                Properties(maximum_packet_size=1_048_576, topic_alias_maximum=64, response_information="r/c1"),
            ),
        )
        self.assertLessEqual(len(client.transport.value()), 30)

    def test_server_reference_dropped_to_fit(self) -> None:
        """A redirection too large for the client keeps its reason code."""
        self.use_config(server_reference="x" * 100)
        client = self.connect_client("c", 5, properties=Properties(maximum_packet_size=20))
        self.assertEqual(plain(client.connack), ConnAck(False, ReasonCode.USE_ANOTHER_SERVER))
        self.assertLessEqual(len(client.transport.value()), 20)
        self.assertTrue(client.disconnecting)

    def test_qos_refused_publish_after_small_connack(self) -> None:
        """
        A client with a small Maximum Packet Size that publishes above the
        Maximum QoS is still disconnected with 0x9B, the DISCONNECT too
        losing its Reason String to fit [MQTT-3.1.2-24].
        """
        self.use_config(maximum_qos=0)
        client = self.connect_client("c", 5, properties=Properties(maximum_packet_size=16))
        assert client.connack is not None
        self.assertEqual(client.connack.properties.maximum_qos, 0)
        client.send(Publish("t", b"x", 2, packet_id=1))
        self.assertClosedWith(client, ReasonCode.QOS_NOT_SUPPORTED)
