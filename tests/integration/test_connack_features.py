# -*- test-case-name: tests.integration.test_connack_features -*-
"""
MQTT 5 connection-level features over real TCP, with paho-mqtt 2.2, the
mosquitto 2.0 clients and raw connections: what the CONNACK announces
(Maximum QoS, Wildcard and Subscription Identifier availability, Response
Information, Server Reference) and how the broker then holds clients to it.
"""

from __future__ import annotations

from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from mqttx.mqtt.packets import ConnAck, Disconnect, Publish, Will

from .helpers import (
    V5,
    V311,
    Disconnected,
    IntegrationTestCase,
    WillSpec,
    connect_packet,
    run_process,
)
from .test_mosquitto import MOSQUITTO_PUB, MOSQUITTO_SUB


def connack_property(ack: Any, name: str) -> Any:
    """A CONNACK property as paho decoded it, or C{None} if absent."""
    return getattr(ack.properties, name, None)


class MosquittoMixin:
    """Runs the mosquitto 2.0 clients against the test's broker."""

    port: int

    async def mosquitto(self, executable: str, version: str, *args: str) -> tuple[str, int]:
        out, err, code = await run_process(
            self,  # type: ignore[arg-type]
            executable,
            ["-d", "-h", "127.0.0.1", "-p", str(self.port), "-V", version, *args],
        )
        return out + err, code


class MaximumQoSTests(MosquittoMixin, IntegrationTestCase):
    """C{maximum_qos: 1}."""

    version = V5
    broker_config = {"maximum_qos": 1}

    async def test_connack_announces_it_and_subscriptions_are_capped(self) -> None:
        """
        CONNACK carries Maximum QoS 1 [MQTT-3.2.2-9]; a QoS 2 subscription
        is accepted and granted QoS 1 [MQTT-3.2.2-10], for 5.0 and 3.1.1
        clients alike, and a QoS 1 message arrives at QoS 1.
        """
        sub = self.paho("maxqos-sub")
        ack = await sub.connect()
        self.assertEqual((ack.reason_code, connack_property(ack, "MaximumQoS")), (0, 1))
        self.assertEqual(await sub.subscribe("maxqos/t", 2), 1)
        old = await self.connected("maxqos-old", V311)
        self.assertEqual(await old.subscribe("maxqos/t", 2), 1)
        pub = await self.connected("maxqos-pub")
        await pub.publish("maxqos/t", b"x", 1)
        for client in (sub, old):
            [got] = await client.messages.get()
            self.assertEqual((got.topic, got.payload, got.qos), ("maxqos/t", b"x", 1))

    async def test_publish_above_it_gets_disconnect_0x9b(self) -> None:
        """
        A paho client publishing at QoS 2 anyway is disconnected with
        DISCONNECT 0x9B (QoS not supported) [MQTT-3.2.2-11] (section
        3.3.1.2), and the message is not delivered.
        """
        watcher = await self.subscriber("maxqos-watch", "maxqos/#", 1)
        pub = await self.connected("maxqos-rogue")
        pub.client.publish("maxqos/t", b"too high", 2)
        self.assertEqual(await pub.disconnects.get_one(), Disconnected(0x9B, True))
        await watcher.messages.expect_nothing()

    async def test_publish_above_it_closes_a_v311_client(self) -> None:
        """A 3.1.1 client publishing at QoS 2 is disconnected without a word."""
        pub = await self.connected("maxqos-rogue311", V311)
        pub.client.publish("maxqos/t", b"too high", 2)
        gone = await pub.disconnects.get_one()
        self.assertFalse(gone.from_server)

    async def test_will_above_it_is_refused(self) -> None:
        """
        A CONNECT with a QoS 2 will gets CONNACK 0x9B [MQTT-3.2.2-12]; a
        3.1.1 one CONNACK 0x03 (Server unavailable), the nearest code.
        """
        ack = await self.paho("maxqos-will", will=WillSpec("maxqos/will", b"bye", qos=2)).connect()
        self.assertEqual(ack.reason_code, 0x9B)
        raw = await self.raw(4)
        raw.send(connect_packet(4, "maxqos-will311", will=Will("maxqos/will", b"bye", 2)))
        self.assertEqual(await raw.expect(ConnAck), ConnAck(False, 0x03))
        await raw.expect_closed()

    async def test_mosquitto_clients_see_it(self) -> None:
        """
        mosquitto_sub C{-q 2} is granted QoS 1, and mosquitto_pub C{-q 2}
        reads the CONNACK's Maximum QoS and refuses to publish.
        """
        out, code = await self.mosquitto(MOSQUITTO_SUB, "mqttv5", "-q", "2", "-t", "maxqos/m", "-C", "1", "-W", "1")
        self.assertIn("Subscribed (mid: 1): 1\n", out)
        out, code = await self.mosquitto(MOSQUITTO_PUB, "mqttv5", "-q", "2", "-t", "maxqos/m", "-m", "x")
        self.assertIn("Message QoS not supported on broker", out)
        self.assertNotIn("sending PUBLISH", out)


class WildcardUnavailableTests(MosquittoMixin, IntegrationTestCase):
    """C{wildcard_subscriptions: false}."""

    version = V5
    broker_config = {"wildcard_subscriptions": False}

    async def test_wildcard_filters_get_suback_0xa2(self) -> None:
        """
        CONNACK says Wildcard Subscription Available 0; in one SUBSCRIBE,
        C{+} and C{#} filters get 0xA2 (section 3.2.2.3.11) and a plain one
        is granted; the plain one works.
        """
        sub = self.paho("wild-sub")
        ack = await sub.connect()
        self.assertEqual(connack_property(ack, "WildcardSubscriptionAvailable"), 0)
        codes = await sub.subscribe_many([("wild/+", 1), ("wild/t", 1), ("wild/#", 0)])
        self.assertEqual(codes, [0xA2, 1, 0xA2])
        pub = await self.connected("wild-pub")
        await pub.publish("wild/t", b"x", 1)
        [got] = await sub.messages.get()
        self.assertEqual((got.topic, got.payload), ("wild/t", b"x"))

    async def test_v311_wildcard_filters_get_0x80(self) -> None:
        """A 3.1.1 paho client gets the 3.1.1 failure code, 0x80."""
        sub = await self.connected("wild-old", V311)
        self.assertEqual(await sub.subscribe_many([("wild/#", 1), ("wild/t", 1)]), [0x80, 1])

    async def test_mosquitto_sub_is_refused(self) -> None:
        """mosquitto_sub C{-t 'wild/#'}: SUBACK 162 (0xA2), and it gives up."""
        out, code = await self.mosquitto(MOSQUITTO_SUB, "mqttv5", "-t", "wild/#", "-C", "1", "-W", "2")
        self.assertIn("Subscribed (mid: 1): 162\n", out)
        self.assertIn("All subscription requests were denied.", out)


class SubscriptionIdentifiersUnavailableTests(IntegrationTestCase):
    """C{subscription_identifiers: false}."""

    version = V5
    broker_config = {"subscription_identifiers": False}

    async def test_subscription_identifier_gets_disconnect_0xa1(self) -> None:
        """
        CONNACK says Subscription Identifier Available 0; a SUBSCRIBE with a
        Subscription Identifier gets DISCONNECT 0xA1 (section 3.2.2.3.12).
        """
        sub = self.paho("subid-sub")
        ack = await sub.connect()
        self.assertEqual(connack_property(ack, "SubscriptionIdentifierAvailable"), 0)
        props = PahoProperties(PacketTypes.SUBSCRIBE)
        props.SubscriptionIdentifier = 5
        sub.client.subscribe("subid/t", 1, properties=props)
        self.assertEqual(await sub.disconnects.get_one(), Disconnected(0xA1, True))

    async def test_subscribe_without_identifier_works(self) -> None:
        """Subscriptions without an identifier are served as usual."""
        sub = await self.subscriber("subid-plain", "subid/t", 1)
        pub = await self.connected("subid-pub")
        await pub.publish("subid/t", b"x", 1)
        [got] = await sub.messages.get()
        self.assertEqual(got.payload, b"x")


class ResponseInformationTests(IntegrationTestCase):
    """C{response_information: "reply/"}."""

    version = V5
    broker_config = {"response_information": "reply/"}

    async def test_given_only_when_asked_for(self) -> None:
        """
        A paho client with Request Response Information 1 gets Response
        Information C{reply/<client id>} (section 3.2.2.3.15); one that does
        not ask gets none [MQTT-3.1.2-28].
        """
        asking = self.paho("asker", connect_properties={"RequestResponseInformation": 1})
        ack = await asking.connect()
        self.assertEqual(connack_property(ack, "ResponseInformation"), "reply/asker")
        ack = await self.paho("silent").connect()
        self.assertIsNone(connack_property(ack, "ResponseInformation"))
        ack = await self.paho("declining", connect_properties={"RequestResponseInformation": 0}).connect()
        self.assertIsNone(connack_property(ack, "ResponseInformation"))

    async def test_request_response_under_the_response_information(self) -> None:
        """
        The requester uses its Response Information as the root of its
        Response Topic (section 4.10): a responder answers there, with the
        Correlation Data, and the requester gets the answer.
        """
        requester = self.paho("requester", connect_properties={"RequestResponseInformation": 1})
        root = connack_property(await requester.connect(), "ResponseInformation")
        self.assertEqual(root, "reply/requester")
        await requester.subscribe(f"{root}/#", 1)
        responder = await self.subscriber("responder", "service/time", 1)
        await requester.publish("service/time", b"what time?", 1, ResponseTopic=f"{root}/time", CorrelationData=b"42")
        [request] = await responder.messages.get()
        response_topic = str(getattr(request.properties, "ResponseTopic", None))
        correlation = getattr(request.properties, "CorrelationData", None)
        self.assertEqual((response_topic, correlation), ("reply/requester/time", b"42"))
        await responder.publish(response_topic, b"noon", 1, CorrelationData=correlation)
        [answer] = await requester.messages.get()
        self.assertEqual(
            (answer.topic, answer.payload, getattr(answer.properties, "CorrelationData", None)),
            ("reply/requester/time", b"noon", b"42"),
        )

    async def test_connack_still_fits_a_small_maximum_packet_size(self) -> None:
        """
        A client whose Maximum Packet Size has no room for the Response
        Information still gets its CONNACK, without it [MQTT-3.1.2-24].
        """
        raw = await self.raw(5)
        raw.send(connect_packet(5, "tiny", request_response_information=1, maximum_packet_size=20))
        ack = await raw.expect(ConnAck)
        self.assertEqual((ack.reason_code, ack.properties.response_information), (0, None))
        self.assertEqual(ack.properties.maximum_packet_size, self.server.config.max_packet_size)
        raw.send(Publish("tiny/t", b"x"))
        await raw.packets.expect_nothing()
        self.assertFalse(raw.is_closed)


class ServerReferenceTests(MosquittoMixin, IntegrationTestCase):
    """C{server_reference}: the broker sends every client elsewhere."""

    version = V5
    broker_config = {"server_reference": "mqtt2.example:1883"}

    async def test_use_another_server(self) -> None:
        """
        A paho MQTT 5 client gets CONNACK 0x9C (Use another server) with the
        Server Reference (section 4.11), and the connection is closed
        [MQTT-3.2.2-7].
        """
        client = self.paho("redirected")
        ack = await client.connect()
        self.assertEqual((ack.reason_code, connack_property(ack, "ServerReference")), (0x9C, "mqtt2.example:1883"))
        gone = await client.disconnects.get_one()
        self.assertFalse(gone.from_server)
        self.assertEqual(self.broker.sessions, {})

    async def test_v311_gets_server_unavailable(self) -> None:
        """A 3.1.1 client gets CONNACK 0x03 (Server unavailable), then the close."""
        raw = await self.raw(4)
        raw.send(connect_packet(4, "redirected311"))
        self.assertEqual(await raw.expect(ConnAck), ConnAck(False, 0x03))
        await raw.expect_closed()
        self.assertEqual(raw.packets.take_all(), [])

    async def test_mosquitto_sub_is_told(self) -> None:
        """mosquitto_sub (5.0) gets CONNACK 156 (0x9C) and exits with it."""
        out, code = await self.mosquitto(MOSQUITTO_SUB, "mqttv5", "-t", "x", "-C", "1", "-W", "2")
        self.assertIn("received CONNACK (156)", out)
        self.assertEqual(code, 156)


class ServerMovedTests(MosquittoMixin, IntegrationTestCase):
    """C{server_reference} with C{server_moved: true}."""

    version = V5
    broker_config = {"server_reference": "mqtt-new.example", "server_moved": True}

    async def test_server_moved(self) -> None:
        """CONNACK 0x9D (Server moved) with the Server Reference, for paho and raw clients."""
        ack = await self.paho("moved").connect()
        self.assertEqual((ack.reason_code, connack_property(ack, "ServerReference")), (0x9D, "mqtt-new.example"))
        raw = await self.raw(5)
        raw.send(connect_packet(5, "moved-raw"))
        got = await raw.expect(ConnAck)
        self.assertEqual(
            (got.session_present, got.reason_code, got.properties.server_reference), (False, 0x9D, "mqtt-new.example")
        )
        await raw.expect_closed()
        self.assertNotIn(Disconnect, [type(p) for p in raw.packets.take_all()])

    async def test_mosquitto_sub_is_told(self) -> None:
        """mosquitto_sub prints 'Server moved' and exits with 157 (0x9D); 3.1.1: 'broker unavailable'."""
        out, code = await self.mosquitto(MOSQUITTO_SUB, "mqttv5", "-t", "x", "-C", "1", "-W", "2")
        self.assertIn("Connection error: Server moved", out)
        self.assertEqual(code, 157)
        out, code = await self.mosquitto(MOSQUITTO_SUB, "mqttv311", "-t", "x", "-C", "1", "-W", "2")
        self.assertIn("Connection Refused: broker unavailable", out)
        self.assertEqual(code, 3)
