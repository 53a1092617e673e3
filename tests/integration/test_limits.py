# -*- test-case-name: tests.integration.test_limits -*-
"""
Limits and negotiated settings over real TCP: outbound flow control, the
offline queue bound, packet sizes, keep-alive caps, retain availability.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.interfaces import IPushProducer

from mqttx.mqtt.packets import (
    ConnAck,
    Disconnect,
    PubAck,
    Publish,
    PubRec,
    SubAck,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.properties import Properties

from .helpers import V5, V311, IntegrationTestCase, connect_packet


class ReceiveMaximumTests(IntegrationTestCase):
    """The broker never has more unacknowledged QoS 1/2 messages out than the client allows."""

    version = V5

    async def test_receive_maximum_bounds_unacknowledged_deliveries(self) -> None:
        """
        With Receive Maximum 2 the broker sends at most 2 QoS 1 PUBLISH
        without PUBACK [MQTT-3.3.4-9]; each PUBACK lets the next one go, in
        order [MQTT-4.6.0-5].
        """
        raw, _ = await self.raw_connected("narrow", receive_maximum=2)
        raw.send(Subscribe(1, (Subscription("rm/t", 1),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (1,)))
        pub = await self.connected("rm-pub")
        await pub.publish_many("rm/t", [b"%d" % i for i in range(5)], 1)
        in_flight = [await raw.expect(Publish), await raw.expect(Publish)]
        self.assertEqual([p.payload for p in in_flight], [b"0", b"1"])
        await raw.packets.expect_nothing()
        for expected in (b"2", b"3", b"4"):
            raw.send(PubAck(in_flight.pop(0).packet_id or 0))
            following = await raw.expect(Publish)
            self.assertEqual(following.payload, expected)
            in_flight.append(following)
            # real-time: a short look that no third PUBLISH follows.
            await raw.packets.expect_nothing(0.05)


class MaxInflightTests(IntegrationTestCase):
    """C{max_inflight} is the outbound window of 3.1.1 clients."""

    version = V311
    broker_config = {"max_inflight": 2}

    async def test_max_inflight_bounds_unacknowledged_deliveries(self) -> None:
        """
        With C{max_inflight: 2}, a 3.1.1 client that does not acknowledge
        gets 2 QoS 1 messages; the rest wait, in order, and follow as it
        acknowledges.
        """
        raw, _ = await self.raw_connected("slow")
        raw.send(Subscribe(1, (Subscription("mi/t", 1),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (1,)))
        pub = await self.connected("mi-pub")
        await pub.publish_many("mi/t", [b"a", b"b", b"c"], 1)
        in_flight = [await raw.expect(Publish), await raw.expect(Publish)]
        self.assertEqual([p.payload for p in in_flight], [b"a", b"b"])
        await raw.packets.expect_nothing()
        raw.send(PubAck(in_flight[0].packet_id or 0))
        self.assertEqual((await raw.expect(Publish)).payload, b"c")


class OfflineQueueTests(IntegrationTestCase):
    """C{max_queued_messages} bounds what an offline session keeps."""

    version = V311
    broker_config = {"max_queued_messages": 3}

    async def test_offline_queue_keeps_the_first_messages_up_to_its_limit(self) -> None:
        """
        A persistent session offline with C{max_queued_messages: 3} keeps
        the first 3 QoS 1 messages and drops the rest, as Mosquitto does
        with C{max_queued_messages}.
        """
        sub = self.paho("queued", clean=False)
        await sub.connect()
        await sub.subscribe("q/t", 1)
        await sub.disconnect()
        pub = await self.connected("q-pub")
        await pub.publish_many("q/t", [b"%d" % i for i in range(6)], 1)
        again = self.paho("queued", clean=False)
        ack = await again.connect()
        self.assertTrue(ack.session_present)
        got = await again.messages.get(3)
        self.assertEqual([m.payload for m in got], [b"0", b"1", b"2"])
        await again.messages.expect_nothing()


class PacketSizeTests(IntegrationTestCase):
    """C{max_packet_size} and the client's Maximum Packet Size."""

    version = V5
    broker_config = {"max_packet_size": 1024}

    async def test_oversized_packet_is_refused(self) -> None:
        """
        A PUBLISH larger than the broker's maximum packet size closes the
        connection; an MQTT 5 client gets DISCONNECT 0x95 (Packet too large)
        first (section 3.2.2.3.6).
        """
        raw, ack = await self.raw_connected("big")
        self.assertEqual(ack.properties.maximum_packet_size, 1024)
        raw.send(Publish("big/t", b"x" * 2000, 0))
        await raw.expect_closed()
        self.assertEqual(
            [(type(p), getattr(p, "reason_code", None)) for p in raw.packets.take_all()],
            [(Disconnect, 0x95)],
        )

    async def test_message_too_large_for_the_client_is_skipped(self) -> None:
        """
        A message larger than the Maximum Packet Size the client announced is
        not sent to it [MQTT-3.1.2-24], and later messages still are
        [MQTT-3.1.2-25].
        """
        raw, _ = await self.raw_connected("small", maximum_packet_size=100)
        raw.send(Subscribe(1, (Subscription("size/t", 1),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (1,)))
        pub = await self.connected("size-pub")
        await pub.publish("size/t", b"y" * 500, 1)
        await pub.publish("size/t", b"fits", 1)
        got = await raw.expect(Publish)
        self.assertEqual(got.payload, b"fits")
        await raw.packets.expect_nothing()


class KeepAliveCapTests(IntegrationTestCase):
    """C{keepalive_max} caps the keep-alive clients may ask for."""

    broker_config = {"keepalive_max": 10}

    async def test_mqtt5_client_is_told_the_server_keep_alive(self) -> None:
        """
        An MQTT 5 client asking for more than C{keepalive_max} is accepted
        with Server Keep Alive set to the cap [MQTT-3.2.2-21].
        """
        raw, ack = await self.raw_connected("capped", 5, keep_alive=60)
        self.assertEqual(ack.properties.server_keep_alive, 10)

    async def test_mqtt311_client_over_the_cap_is_refused(self) -> None:
        """
        3.1.1 cannot tell a client another keep-alive: one asking for more
        than C{keepalive_max} gets CONNACK 0x02 and is disconnected, as
        Mosquitto does with C{max_keepalive}.
        """
        raw = await self.raw(4)
        raw.send(connect_packet(4, "too-long", keep_alive=60))
        self.assertEqual(await raw.expect(ConnAck), ConnAck(False, 0x02))
        await raw.expect_closed()


class RetainUnavailableTests(IntegrationTestCase):
    """C{retain_available: false}."""

    version = V5
    broker_config = {"retain_available": False}

    async def test_retain_is_refused_when_not_available(self) -> None:
        """
        The CONNACK says Retain Available 0; a retained PUBLISH then gets
        DISCONNECT 0x9A (Retain not supported) [MQTT-3.2.2-14] and is not
        delivered.
        """
        sub = await self.subscriber("no-retain-sub", "nr/#", 1)
        raw, ack = await self.raw_connected("no-retain")
        self.assertEqual(ack.properties.retain_available, 0)
        raw.send(Publish("nr/t", b"keep me", 1, retain=True, packet_id=1))
        await raw.expect_closed()
        self.assertEqual(
            [(type(p), getattr(p, "reason_code", None)) for p in raw.packets.take_all()],
            [(Disconnect, 0x9A)],
        )
        await sub.messages.expect_nothing()


class SlowConsumerTests(IntegrationTestCase):
    """A subscriber that does not keep up never stalls the others (DESIGN: slow consumers)."""

    version = V311
    broker_config = {"max_inflight": 32, "max_queued_messages": 50}

    async def test_unacknowledging_subscriber_gets_its_window_and_queue_only(self) -> None:
        """
        A subscriber that stops acknowledging has C{max_inflight} (32) QoS 1
        messages in flight and C{max_queued_messages} (50) queued in order;
        further messages to it are dropped. Meanwhile another subscriber gets
        every message. Once it acknowledges, the queue follows, in order.
        """
        slow, _ = await self.raw_connected("stuck")
        slow.send(Subscribe(1, (Subscription("flood/t", 1),)))
        self.assertEqual(await slow.expect(SubAck), SubAck(1, (1,)))
        fast = await self.subscriber("fast", "flood/t", 0)
        pub = await self.connected("flooder")
        payloads = [b"%03d" % i for i in range(200)]
        await pub.publish_many("flood/t", payloads, 1)
        got = await fast.messages.get(200)
        self.assertEqual([m.payload for m in got], payloads)

        window = [await slow.expect(Publish) for _ in range(32)]
        await slow.packets.expect_nothing()
        received = [p.payload for p in window]
        slow.send(*(PubAck(p.packet_id or 0) for p in window))
        while len(received) < 82:
            message = await slow.expect(Publish)
            slow.send(PubAck(message.packet_id or 0))
            received.append(message.payload)
        self.assertEqual(received, payloads[:82])
        await slow.packets.expect_nothing()

    async def test_subscriber_that_stops_reading_does_not_stall_others(self) -> None:
        """
        A subscriber whose socket is not read fills its TCP buffers; the
        broker then drops its QoS 0 messages instead of buffering without
        bound, while a reading subscriber gets every message and the
        publisher is not held up. Reading again, it gets new messages.
        """
        slow, _ = await self.raw_connected("not-reading")
        slow.send(Subscribe(1, (Subscription("burst/t", 0),)))
        self.assertEqual(await slow.expect(SubAck), SubAck(1, (0,)))
        link = self.broker.sessions["not-reading"].link
        assert link is not None
        transport = cast(IPushProducer, slow.transport)
        transport.pauseProducing()
        fast = await self.subscriber("reading", "burst/t", 0)
        pub = await self.connected("burster")
        # 16 MB: more than the kernel's socket buffers take for a client that
        # does not read (a few MB on loopback), and the broker's allowance.
        batches, size, chunk = 20, 50, b"z" * 16_000
        for batch in range(batches):
            payloads = [b"%02d%02d" % (batch, i) + chunk for i in range(size)]
            await pub.publish_many("burst/t", payloads, 0)
            got = await fast.messages.get(size)
            self.assertEqual([m.payload[:4] for m in got], [p[:4] for p in payloads])
        self.assertTrue(link.paused)
        self.assertGreater(self.broker.counters.dropped_qos0, 0)
        transport.resumeProducing()
        await self.wait_until(lambda: not link.paused, "the broker resumed the reading client")
        await pub.publish("burst/t", b"end", 0)
        seen = 0
        while (await slow.expect(Publish)).payload != b"end":
            seen += 1
        self.assertLess(seen, batches * size)


class InboundLimitsV5Tests(IntegrationTestCase):
    """Limits the broker announces to MQTT 5 clients in CONNACK, and enforces."""

    version = V5
    broker_config = {"receive_maximum": 2, "topic_alias_maximum": 4, "max_session_expiry": 30}

    async def test_receive_maximum_is_announced_and_enforced(self) -> None:
        """
        CONNACK announces Receive Maximum 2; a third QoS 2 PUBLISH while two
        await PUBREL exceeds it: DISCONNECT 0x93 (Receive Maximum exceeded)
        [MQTT-3.3.4-7] (section 3.3.4).
        """
        raw, ack = await self.raw_connected("eager")
        self.assertEqual(ack.properties.receive_maximum, 2)
        for pid in (1, 2):
            raw.send(Publish("in/t", b"x", 2, packet_id=pid))
            self.assertEqual((await raw.expect(PubRec)).packet_id, pid)
        raw.send(Publish("in/t", b"x", 2, packet_id=3))
        await raw.expect_closed()
        self.assertEqual([getattr(p, "reason_code", None) for p in raw.packets.take_all()], [0x93])

    async def test_topic_alias_above_the_maximum_is_refused(self) -> None:
        """
        CONNACK announces Topic Alias Maximum 4; alias 5 is a protocol
        violation [MQTT-3.3.2-9]: DISCONNECT 0x94 (Topic Alias invalid).
        """
        raw, ack = await self.raw_connected("aliaser")
        self.assertEqual(ack.properties.topic_alias_maximum, 4)
        raw.send(Publish("in/t", b"x", 0, properties=Properties(topic_alias=5)))
        await raw.expect_closed()
        self.assertEqual([getattr(p, "reason_code", None) for p in raw.packets.take_all()], [0x94])

    async def test_session_expiry_is_capped(self) -> None:
        """
        A Session Expiry Interval above C{max_session_expiry} is cut down,
        and CONNACK tells the client the value used (section 3.2.2.3.2).
        """
        _, ack = await self.raw_connected("long-lived", clean=False, session_expiry=3600)
        self.assertEqual(ack.properties.session_expiry_interval, 30)
