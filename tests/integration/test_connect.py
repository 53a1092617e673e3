# -*- test-case-name: tests.integration.test_connect -*-
"""
CONNECT over real TCP: every protocol version, client identifiers, session
takeover and keep-alive.
"""

from __future__ import annotations

import time

from mqttx.mqtt.packets import ConnAck, Disconnect, PingReq, PingResp
from mqttx.mqtt.properties import Properties

from .helpers import (
    V5,
    V31,
    V311,
    Disconnected,
    IntegrationTestCase,
    MixinBase,
    connect_packet,
    pause,
)


class ConnectTests(IntegrationTestCase):
    """
    Real clients of every protocol version connect, and client identifiers
    are assigned or refused as the specifications say.
    """

    async def test_mqtt31_client_connects(self) -> None:
        """
        An MQTT 3.1 client (protocol name C{MQIsdp}, level 3) is accepted
        with return code 0 and no session present (MQTT 3.1 section 3.2).
        """
        ack = await self.paho("v31-client", V31).connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))

    async def test_mqtt311_client_connects(self) -> None:
        """
        An MQTT 3.1.1 client with a clean session is accepted with return
        code 0 and Session Present 0 [MQTT-3.2.2-1].
        """
        ack = await self.paho("v311-client", V311).connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))

    async def test_mqtt5_client_connects(self) -> None:
        """
        An MQTT 5 client with Clean Start 1 is accepted with reason code 0x00
        and Session Present 0 [MQTT-3.2.2-2]; it is told no Assigned Client
        Identifier, having chosen its own.
        """
        ack = await self.paho("v5-client", V5).connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        self.assertIsNone(ack.assigned_client_id)

    async def test_mqtt5_empty_client_id_is_assigned(self) -> None:
        """
        An MQTT 5 client with an empty client identifier gets a unique one in
        the CONNACK's Assigned Client Identifier [MQTT-3.1.3-6]
        [MQTT-3.2.2-16], and the broker treats the connection as that client
        [MQTT-3.1.3-7]: a later CONNECT with that identifier takes it over.
        """
        first = self.paho("", V5)
        ack1 = await first.connect()
        ack2 = await self.paho("", V5).connect()
        self.assertEqual(ack1.reason_code, 0)
        assigned = ack1.assigned_client_id
        assert assigned is not None
        self.assertTrue(assigned)
        self.assertNotEqual(assigned, ack2.assigned_client_id)
        await self.connected(assigned, V5)
        gone = await first.disconnects.get_one()
        self.assertEqual(gone, Disconnected(0x8E, True))

    async def test_mqtt311_empty_client_id_with_clean_session_is_accepted(self) -> None:
        """
        A 3.1.1 client with an empty client identifier and CleanSession 1 is
        accepted [MQTT-3.1.3-6] and can publish and subscribe.
        """
        client = self.paho("", V311)
        ack = await client.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        self.assertEqual(await client.subscribe("anon/t", 1), 1)
        await client.publish("anon/t", b"hello", 1)
        [got] = await client.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos), ("anon/t", b"hello", 1))

    async def test_mqtt311_empty_client_id_with_persistent_session_is_refused(self) -> None:
        """
        A 3.1.1 CONNECT with an empty client identifier and CleanSession 0 is
        answered with CONNACK 0x02 (identifier rejected) and Session Present
        0, then the connection is closed [MQTT-3.1.3-8] [MQTT-3.2.2-4]
        [MQTT-3.2.2-5].
        """
        client = await self.raw(4)
        client.send(connect_packet(4, "", clean=False))
        ack = await client.expect(ConnAck)
        self.assertEqual(ack, ConnAck(False, 0x02))
        await client.expect_closed()
        self.assertEqual(client.packets.take_all(), [])

    async def test_mqtt31_empty_client_id_is_refused(self) -> None:
        """
        MQTT 3.1 client identifiers are 1 to 23 characters: an empty one is
        answered with CONNACK return code 2 (identifier rejected) and the
        connection closed (MQTT 3.1 section 3.1, Client Identifier).
        """
        client = await self.raw(3)
        client.send(connect_packet(3, "", clean=True))
        self.assertEqual(await client.expect(ConnAck), ConnAck(False, 0x02))
        await client.expect_closed()


class TakeoverTestsMixin(MixinBase):
    """A second connection with the same client identifier takes the session over."""

    async def test_second_connection_takes_the_session_over(self) -> None:
        """
        When a client connects with the identifier of a connected client,
        the broker closes the first connection [MQTT-3.1.4-2] (MQTT 5: after
        DISCONNECT 0x8E, Session taken over [MQTT-3.1.4-3]); the new
        connection resumes the session: Session Present 1 [MQTT-3.2.2-2]
        (5.0 [MQTT-3.2.2-3]) and the subscriptions carry on.
        """
        first = await self.connected("twin", clean=False, session_expiry=60)
        self.assertEqual(await first.subscribe("take/#", 1), 1)
        second = self.paho("twin", clean=False, session_expiry=60)
        ack = await second.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        gone = await first.disconnects.get_one()
        if self.version == V5:
            self.assertEqual(gone, Disconnected(0x8E, True))
        else:
            self.assertFalse(gone.from_server)
        publisher = await self.connected("take-pub")
        await publisher.publish("take/over", b"after", 1)
        [got] = await second.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos), ("take/over", b"after", 1))
        await first.messages.expect_nothing()

    async def test_takeover_keeps_the_new_connection_open(self) -> None:
        """
        The closing of the old connection does not end the new one: after a
        takeover the new connection still works [MQTT-3.1.4-2].
        """
        first = await self.connected("keeper")
        second = await self.connected("keeper")
        await first.disconnects.get_one()
        self.assertEqual(await second.subscribe("keep/t", 2), 2)
        await second.publish("keep/t", b"still here", 2)
        [got] = await second.messages.get()
        self.assertEqual((got.payload, got.qos), (b"still here", 2))
        await second.disconnects.expect_nothing()


class TakeoverV311Tests(TakeoverTestsMixin, IntegrationTestCase):
    version = V311


class TakeoverV5Tests(TakeoverTestsMixin, IntegrationTestCase):
    version = V5


class KeepAliveTestsMixin(MixinBase):
    """The broker drops clients that stay silent beyond their keep-alive."""

    async def test_silent_client_is_dropped_after_one_and_a_half_keep_alives(self) -> None:
        """
        A client with Keep Alive 1 s that sends nothing after CONNECT is
        disconnected after 1.5 s [MQTT-3.1.2-24] (5.0 [MQTT-3.1.2-22]); an
        MQTT 5 client first gets DISCONNECT 0x8D (Keep alive timeout).
        """
        client, _ = await self.raw_connected("silent", keep_alive=1)
        start = time.monotonic()
        await client.expect_closed(timeout=4)
        assert client.closed_at is not None
        elapsed = client.closed_at - start
        self.assertTrue(1.2 <= elapsed <= 2.5, f"dropped after {elapsed:.2f}s, not ~1.5s")
        packets = client.packets.take_all()
        if self.version == V5:
            self.assertEqual(packets, [Disconnect(0x8D, Properties(reason_string="keep alive timeout"))])
        else:
            self.assertEqual(packets, [])


class KeepAliveV311Tests(KeepAliveTestsMixin, IntegrationTestCase):
    version = V311


class KeepAliveV5Tests(KeepAliveTestsMixin, IntegrationTestCase):
    version = V5


class PingTests(IntegrationTestCase):
    """Clients that talk in time stay connected."""

    async def test_pinging_client_stays_connected(self) -> None:
        """
        A client with Keep Alive 1 s that sends PINGREQ every 0.5 s gets
        PINGRESP each time [MQTT-3.12.4-1] and is not disconnected.
        """
        client, _ = await self.raw_connected("pinger", 4, keep_alive=1)
        for _ in range(4):
            client.send(PingReq())
            self.assertEqual(await client.expect(PingResp), PingResp())
            # real-time: the keep-alive deadline is measured in wall-clock seconds.
            await pause(0.5)
        self.assertFalse(client.is_closed)

    async def test_paho_client_with_keep_alive_1_stays_connected(self) -> None:
        """
        A paho client with Keep Alive 1 s, otherwise idle, sends PINGREQ in
        time [MQTT-3.1.2-20] and is still connected and served 2 s later.
        """
        client = await self.connected("idle-paho", V5, keepalive=1)
        # real-time: more than 1.5 keep-alive periods must pass to prove the pings work.
        await pause(2.0)
        await client.disconnects.expect_nothing(0.0)
        self.assertEqual(await client.subscribe("idle/t", 1), 1)
        await client.publish("idle/t", b"awake", 1)
        [got] = await client.messages.get()
        self.assertEqual(got.payload, b"awake")


class DisconnectTests(IntegrationTestCase):
    """How connections end: client DISCONNECT, broker shutdown, bad CONNECT."""

    async def test_mqtt5_disconnect_is_not_answered(self) -> None:
        """
        DISCONNECT is the final packet on a connection (section 3.14): after
        a client's DISCONNECT the broker closes the connection (section
        3.14.4) without sending anything back, as Mosquitto does.
        """
        raw, _ = await self.raw_connected("leaving", 5)
        raw.send(Disconnect())
        await raw.expect_closed()
        self.assertEqual(raw.packets.take_all(), [])

    async def test_mqtt311_disconnect_closes_the_connection(self) -> None:
        """After a 3.1.1 DISCONNECT the broker closes the connection, sending nothing."""
        raw, _ = await self.raw_connected("leaving", 4)
        raw.send(Disconnect())
        await raw.expect_closed()
        self.assertEqual(raw.packets.take_all(), [])

    async def test_shutdown_tells_mqtt5_clients(self) -> None:
        """
        When the broker shuts down, MQTT 5 clients get DISCONNECT 0x8B
        (Server shutting down) and every connection is closed.
        """
        v5 = await self.connected("v5-at-shutdown", V5)
        v311 = await self.connected("v311-at-shutdown", V311)
        await self.broker.shutdown()
        self.assertEqual(await v5.disconnects.get_one(), Disconnected(0x8B, True))
        self.assertFalse((await v311.disconnects.get_one()).from_server)

    async def test_unsupported_protocol_level_is_refused(self) -> None:
        """
        A CONNECT with an unknown protocol level (6) gets a 3.1.1 CONNACK
        with return code 0x01 (unacceptable protocol version) and the
        connection is closed [MQTT-3.1.2-2].
        """
        raw = await self.raw(4)
        body = b"\x00\x04MQTT\x06\x02\x00\x3c\x00\x01x"
        raw.send_bytes(bytes((0x10, len(body))) + body)
        self.assertEqual(await raw.expect(ConnAck), ConnAck(False, 0x01))
        await raw.expect_closed()
