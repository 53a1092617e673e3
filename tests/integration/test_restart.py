# -*- test-case-name: tests.integration.test_restart -*-
"""
A broker stopped and started again on the same store: what clients had
in persistent sessions and retained messages is still there.
"""

from __future__ import annotations

import time

from mqttx.mqtt.packets import ConnAck, Disconnect, PubAck, Publish, SubAck, Subscribe, Subscription

from .helpers import V5, V311, IntegrationTestCase, WillSpec, connect_packet, start_broker


class RestartTests(IntegrationTestCase):
    """C{Broker.shutdown} keeps state in the store; C{Broker.start} loads it."""

    async def _restart(self) -> None:
        """Stop the broker and start another on its store (and a new port)."""
        store = self.server.store
        await self.server.stop()
        self.server = await start_broker(self, store=store, **self.broker_config)

    async def test_persistent_session_and_retained_messages_survive_a_restart(self) -> None:
        """
        A persistent session's subscriptions and queued QoS 1/2 messages
        [MQTT-3.1.2-4] [MQTT-3.1.2-5], and retained messages [MQTT-3.3.1-5],
        outlive the broker process's restart: the client resumes with
        Session Present 1 [MQTT-3.2.2-2] and gets them.
        """
        sub = self.paho("durable", V311, clean=False)
        await sub.connect()
        await sub.subscribe("dur/#", 2)
        await sub.disconnect()
        pub = await self.connected("dur-pub", V311)
        await pub.publish("dur/a", b"first", 1)
        await pub.publish("dur/a", b"second", 2)
        await pub.publish("kept/r", b"retained", 1, retain=True)
        await pub.disconnect()

        await self._restart()
        again = self.paho("durable", V311, clean=False)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        got = await again.messages.get(2)
        self.assertEqual([(m.topic, m.payload, m.qos) for m in got], [("dur/a", b"first", 1), ("dur/a", b"second", 2)])
        await again.messages.expect_nothing()
        late = await self.subscriber("late", "kept/r", 1, V311)
        [retained] = await late.messages.get()
        self.assertEqual((retained.payload, retained.retain), (b"retained", True))

    async def test_unacknowledged_message_is_resent_after_a_restart(self) -> None:
        """
        A QoS 1 message sent but not acknowledged when the broker stopped
        (MQTT 5 clients are told DISCONNECT 0x8B) is sent again with DUP 1
        and its packet identifier after the restart [MQTT-4.4.0-1].
        """
        raw, _ = await self.raw_connected("unacked", 5, clean=False, session_expiry=60)
        raw.send(Subscribe(1, (Subscription("dur/t", 1),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (1,)))
        pub = await self.connected("dur-pub", V5)
        await pub.publish("dur/t", b"in flight", 1)
        sent = await raw.expect(Publish)

        await self._restart()
        await raw.expect_closed()
        self.assertEqual([getattr(p, "reason_code", None) for p in raw.packets.take_all()], [0x8B])
        again = await self.raw(5)
        again.send(connect_packet(5, "unacked", clean=False, session_expiry=60))
        ack = await again.expect(ConnAck)
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        resent = await again.expect(Publish)
        self.assertEqual(resent, Publish("dur/t", b"in flight", 1, False, True, sent.packet_id))
        again.send(PubAck(resent.packet_id or 0), Disconnect())
        await again.expect_closed()

    async def test_pending_delayed_will_is_sent_after_a_restart(self) -> None:
        """
        A will waiting for its Will Delay Interval when the broker stopped is
        published by the restarted broker when the delay is over (the Server
        "MAY defer publication of Will Messages until a subsequent restart",
        section 3.1.2.5).
        """
        client = await self.connected(
            "doomed", V5, clean=False, session_expiry=60, will=WillSpec("dur/will", b"late", 1, delay=1)
        )
        await client.drop()
        dropped = time.monotonic()
        await self.wait_until(lambda: self.broker.sessions["doomed"].link is None, "the broker saw the drop")
        await self._restart()
        watcher = await self.subscriber("watcher", "dur/will", 1, V5)
        [got] = await watcher.messages.get()
        elapsed = time.monotonic() - dropped
        self.assertEqual((got.topic, got.payload), ("dur/will", b"late"))
        self.assertTrue(0.8 <= elapsed <= 2.5, f"will {elapsed:.2f}s after the drop, not ~1s")
