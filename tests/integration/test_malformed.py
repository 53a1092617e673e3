# -*- test-case-name: tests.integration.test_malformed -*-
"""
Protocol violations over real TCP: the offending connection is closed (MQTT
5: after DISCONNECT with the reason code), and nobody else notices.
"""

from __future__ import annotations

from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import Disconnect, PingReq, Publish, Subscribe, Subscription

from .helpers import (
    V5,
    V311,
    IntegrationTestCase,
    MixinBase,
    PahoClient,
    RawClient,
    connect_packet,
    publish_with_qos_3,
)


class MalformedPacketTestsMixin(MixinBase):
    """A client that breaks the rules is disconnected; the broker serves on."""

    async def _bystander(self) -> PahoClient:
        return await self.subscriber("bystander", "fine/#", 1)

    async def _still_serving(self, bystander: PahoClient) -> None:
        """The broker still routes between well-behaved clients."""
        pub = await self.connected("after-pub")
        await pub.publish("fine/t", b"business as usual", 1)
        [got] = await bystander.messages.get()
        self.assertEqual((got.topic, got.payload), ("fine/t", b"business as usual"))
        await bystander.disconnects.expect_nothing(0.0)

    async def _expect_disconnected(self, raw: RawClient, reason_code: int) -> None:
        """The raw client gets DISCONNECT C{reason_code} (MQTT 5 only), then the close."""
        await raw.expect_closed()
        packets = raw.packets.take_all()
        if self.version == V5:
            # The reason string is free text; the code is what counts.
            self.assertEqual([(type(p), getattr(p, "reason_code", None)) for p in packets], [(Disconnect, reason_code)])
        else:
            self.assertEqual(packets, [])
        self.assertIsNone(raw.garbage)

    async def test_publish_with_qos_3_closes_the_connection(self) -> None:
        """
        A PUBLISH with both QoS bits set is malformed [MQTT-3.3.1-4]: the
        broker closes the connection [MQTT-4.8.0-1]; an MQTT 5 client first
        gets DISCONNECT 0x81, Malformed Packet (section 4.13,
        [MQTT-4.13.1-1]).
        """
        bystander = await self._bystander()
        raw, _ = await self.raw_connected("qos3")
        raw.send_bytes(publish_with_qos_3(self.level))
        await self._expect_disconnected(raw, 0x81)
        await self._still_serving(bystander)

    async def test_reserved_flags_close_the_connection(self) -> None:
        """
        A SUBSCRIBE whose fixed-header flags are not 0010 breaks
        [MQTT-2.2.2-1] (5.0 [MQTT-3.8.1-1]): the broker closes the connection
        [MQTT-2.2.2-2]; MQTT 5 clients get DISCONNECT 0x81 first.
        """
        bystander = await self._bystander()
        raw, _ = await self.raw_connected("flags")
        data = bytearray(encode(Subscribe(1, (Subscription("fine/#", 1),)), self.level))
        data[0] = 0x80
        raw.send_bytes(bytes(data))
        await self._expect_disconnected(raw, 0x81)
        await self._still_serving(bystander)

    async def test_wildcard_in_publish_topic_closes_the_connection(self) -> None:
        """
        A topic name must not contain wildcards [MQTT-3.3.2-2]: the broker
        closes the connection; MQTT 5 clients get DISCONNECT 0x90 (Topic
        Name invalid) first.
        """
        bystander = await self._bystander()
        raw, _ = await self.raw_connected("wild-pub")
        raw.send_bytes(encode(Publish("fine/+", b"x", 0), self.level))
        await self._expect_disconnected(raw, 0x90)
        await bystander.messages.expect_nothing()
        await self._still_serving(bystander)

    async def test_subscribe_with_qos_3_closes_the_connection(self) -> None:
        """
        A SUBSCRIBE requesting QoS 3 is malformed [MQTT-3-8.3-4]: the
        connection is closed; in MQTT 5 it is a Protocol Error (section
        3.8.3.1), so the client gets DISCONNECT 0x82 first.
        """
        bystander = await self._bystander()
        raw, _ = await self.raw_connected("sub-qos3")
        data = bytearray(encode(Subscribe(1, (Subscription("fine/#", 2),)), self.level))
        data[-1] |= 0x03
        raw.send_bytes(bytes(data))
        await self._expect_disconnected(raw, 0x82)
        await self._still_serving(bystander)

    async def test_packet_before_connect_closes_the_connection(self) -> None:
        """
        The first packet must be CONNECT [MQTT-3.1.0-1]: a PINGREQ first
        gets no answer, just the close (section 4.8; 5.0 section 4.13).
        """
        raw = await self.raw()
        raw.send(PingReq())
        await raw.expect_closed()
        self.assertEqual(raw.packets.take_all(), [])

    async def test_second_connect_closes_the_connection(self) -> None:
        """
        A second CONNECT on one connection is a protocol violation: the
        broker closes the connection [MQTT-3.1.0-2]; MQTT 5 clients get
        DISCONNECT 0x82, Protocol Error, first.
        """
        bystander = await self._bystander()
        raw, _ = await self.raw_connected("twice")
        raw.send(connect_packet(self.level, "twice"))
        await self._expect_disconnected(raw, 0x82)
        await self._still_serving(bystander)

    async def test_garbage_before_connect_closes_the_connection(self) -> None:
        """
        The first packet must be CONNECT [MQTT-3.1.0-1]: bytes that are not
        one make the broker close the connection without a CONNACK or
        DISCONNECT (section 4.8, [MQTT-4.8.0-1]).
        """
        bystander = await self._bystander()
        raw = await self.raw()
        raw.send_bytes(b"GET / HTTP/1.1\r\nHost: mqtt\r\n\r\n")
        await raw.expect_closed()
        self.assertEqual(raw.packets.take_all(), [])
        await self._still_serving(bystander)


class MalformedPacketV311Tests(MalformedPacketTestsMixin, IntegrationTestCase):
    version = V311


class MalformedPacketV5Tests(MalformedPacketTestsMixin, IntegrationTestCase):
    version = V5
