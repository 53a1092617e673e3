# -*- test-case-name: tests.integration.test_session -*-
"""
Persistent sessions over real TCP: the offline queue, clean start, MQTT 5
session expiry, and redelivery of unacknowledged messages.
"""

from __future__ import annotations

from mqttx.mqtt.packets import (
    ConnAck,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.properties import Properties

from .helpers import (
    V5,
    V311,
    IntegrationTestCase,
    MixinBase,
    PahoClient,
    RawClient,
    connect_packet,
    pause,
)


class PersistentSessionTestsMixin(MixinBase):
    """
    A session that outlives its connection: 3.1.1 CleanSession 0, MQTT 5
    Clean Start 0 with a Session Expiry Interval above 0.
    """

    def _persistent(self, client_id: str) -> PahoClient:
        return self.paho(client_id, clean=False, session_expiry=60)

    async def test_messages_published_while_offline_are_delivered_on_reconnect(self) -> None:
        """
        QoS 1 and 2 messages matching the subscriptions of a disconnected
        persistent session are kept [MQTT-3.1.2-5] and delivered when the
        client resumes the session, with Session Present 1 [MQTT-3.2.2-2]
        (5.0 [MQTT-3.1.2-23] [MQTT-3.2.2-3]); the subscriptions carry on.
        QoS 0 messages are not kept for offline clients (Mosquitto's default,
        C{queue_qos0_messages false}).
        """
        first = self._persistent("away")
        ack = await first.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        self.assertEqual(await first.subscribe_many([("ps/#", 2)]), [2])
        await first.disconnect()

        pub = await self.connected("ps-pub")
        await pub.publish("ps/a", b"a1", 1)
        await pub.publish("ps/b", b"b1", 2)
        await pub.publish("ps/a", b"a2", 1)
        await pub.publish("ps/a", b"a0", 0)
        await pub.publish("ps/b", b"b2", 2)

        again = self._persistent("away")
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        got = await again.messages.get(4)
        self.assertEqual([(m.payload, m.qos) for m in got if m.topic == "ps/a"], [(b"a1", 1), (b"a2", 1)])
        self.assertEqual([(m.payload, m.qos) for m in got if m.topic == "ps/b"], [(b"b1", 2), (b"b2", 2)])
        await again.messages.expect_nothing()
        await pub.publish("ps/live", b"still subscribed", 1)
        [live] = await again.messages.get()
        self.assertEqual((live.topic, live.payload), ("ps/live", b"still subscribed"))

    async def test_clean_start_discards_the_session(self) -> None:
        """
        Connecting with CleanSession 1 (5.0: Clean Start 1) discards the
        stored session [MQTT-3.1.2-6] (5.0 [MQTT-3.1.2-4]): Session Present
        0 [MQTT-3.2.2-1] (5.0 [MQTT-3.2.2-2]), no queued messages, no
        subscriptions.
        """
        first = self._persistent("fresh")
        await first.connect()
        await first.subscribe("clean/#", 1)
        await first.disconnect()
        pub = await self.connected("clean-pub")
        await pub.publish("clean/queued", b"dropped with the session", 1)

        clean = self.paho("fresh", clean=True, session_expiry=60)
        ack = await clean.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        await pub.publish("clean/live", b"no subscription", 1)
        await clean.messages.expect_nothing()

    async def test_unacknowledged_qos1_message_is_resent_with_dup(self) -> None:
        """
        A QoS 1 message not acknowledged before the connection dropped is
        sent again, DUP 1, same packet identifier and payload, when the
        session resumes [MQTT-4.4.0-1] [MQTT-3.3.1-1], before messages queued
        later, which keep their order and DUP 0 [MQTT-4.6.0-6].
        """
        raw = await self._raw_subscriber("unacked-1", "redo/#", 1)
        pub = await self.connected("redo-pub")
        await pub.publish("redo/t", b"first", 1)
        sent = await raw.expect(Publish)
        self.assertEqual((sent.topic, sent.payload, sent.qos, sent.dup), ("redo/t", b"first", 1, False))
        await self._drop(raw)
        await pub.publish("redo/t", b"second", 1)

        again = await self._raw_resume("unacked-1")
        resent = await again.expect(Publish)
        self.assertEqual(resent, Publish("redo/t", b"first", 1, False, True, sent.packet_id))
        queued = await again.expect(Publish)
        self.assertEqual((queued.payload, queued.qos, queued.dup), (b"second", 1, False))
        self.assertNotEqual(queued.packet_id, sent.packet_id)
        again.send(PubAck(resent.packet_id or 0), PubAck(queued.packet_id or 0))
        await again.packets.expect_nothing()

    async def test_unacknowledged_qos2_message_is_resent_with_dup(self) -> None:
        """
        A QoS 2 PUBLISH with no PUBREC before the connection dropped is sent
        again with DUP 1 and the same packet identifier [MQTT-4.4.0-1]
        [MQTT-3.3.1-1]; the exchange then completes.
        """
        raw = await self._raw_subscriber("unacked-2", "redo2/#", 2)
        pub = await self.connected("redo2-pub")
        await pub.publish("redo2/t", b"exactly once", 2)
        sent = await raw.expect(Publish)
        self.assertEqual((sent.qos, sent.dup), (2, False))
        await self._drop(raw)

        again = await self._raw_resume("unacked-2")
        resent = await again.expect(Publish)
        self.assertEqual(resent, Publish("redo2/t", b"exactly once", 2, False, True, sent.packet_id))
        pid = resent.packet_id or 0
        again.send(PubRec(pid))
        self.assertEqual(await again.expect(PubRel), PubRel(pid))
        again.send(PubComp(pid))
        await again.packets.expect_nothing()

    async def test_unacknowledged_pubrel_is_resent(self) -> None:
        """
        A QoS 2 delivery that got PUBREC but no PUBCOMP resumes with PUBREL,
        same packet identifier, and the PUBLISH is not sent again
        [MQTT-4.4.0-1] [MQTT-4.3.3-1].
        """
        raw = await self._raw_subscriber("unacked-rel", "rel/#", 2)
        pub = await self.connected("rel-pub")
        await pub.publish("rel/t", b"released", 2)
        sent = await raw.expect(Publish)
        pid = sent.packet_id or 0
        raw.send(PubRec(pid))
        self.assertEqual(await raw.expect(PubRel), PubRel(pid))
        await self._drop(raw)

        again = await self._raw_resume("unacked-rel")
        self.assertEqual(await again.expect(PubRel), PubRel(pid))
        again.send(PubComp(pid))
        await again.packets.expect_nothing()

    async def test_takeover_resends_unacknowledged_messages_to_the_new_connection(self) -> None:
        """
        A connection that takes a session over (Clean Start 0) gets the
        unacknowledged QoS 1 messages of the old one again, DUP 1, same
        packet identifier [MQTT-4.4.0-1] [MQTT-3.3.1-1]; the old connection is
        closed [MQTT-3.1.4-2] (5.0 after DISCONNECT 0x8E [MQTT-3.1.4-3]).
        """
        old = await self._raw_subscriber("unacked-takeover", "over/#", 1)
        pub = await self.connected("over-pub")
        await pub.publish("over/t", b"unacked", 1)
        sent = await old.expect(Publish)
        new = await self._raw_resume("unacked-takeover")
        resent = await new.expect(Publish)
        self.assertEqual(resent, Publish("over/t", b"unacked", 1, False, True, sent.packet_id))
        await old.expect_closed()
        expected = [0x8E] if self.version == V5 else []
        self.assertEqual([getattr(p, "reason_code", None) for p in old.packets.take_all()], expected)

    async def _raw_subscriber(self, client_id: str, topic_filter: str, qos: int) -> RawClient:
        raw, ack = await self.raw_connected(client_id, clean=False, session_expiry=self._expiry())
        self.assertFalse(ack.session_present)
        raw.send(Subscribe(1, (Subscription(topic_filter, qos),)))
        self.assertEqual(await raw.expect(SubAck), SubAck(1, (qos,)))
        return raw

    async def _drop(self, raw: RawClient) -> None:
        """Drop the connection; wait until the broker has seen the session offline."""
        raw.abort()
        await raw.expect_closed()
        sessions = self.broker.sessions
        await self.wait_until(
            lambda: all(s.link is None for s in sessions.values() if s.client_id.startswith("unacked")),
            "broker noticed the dropped connection",
        )

    async def _raw_resume(self, client_id: str) -> RawClient:
        raw = await self.raw()
        raw.send(connect_packet(raw.level, client_id, clean=False, session_expiry=self._expiry()))
        ack = await raw.expect(ConnAck)
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        return raw

    def _expiry(self) -> int | None:
        return 60 if self.version == V5 else None


class PersistentSessionV311Tests(PersistentSessionTestsMixin, IntegrationTestCase):
    version = V311


class PersistentSessionV5Tests(PersistentSessionTestsMixin, IntegrationTestCase):
    version = V5


class SessionExpiryTests(IntegrationTestCase):
    """The MQTT 5 Session Expiry Interval."""

    version = V5

    async def test_session_ends_when_its_expiry_interval_passes(self) -> None:
        """
        A session with Session Expiry Interval 1 s is discarded 1 s after its
        connection closed [MQTT-4.1.0-2]: a later Clean Start 0 gets Session
        Present 0 [MQTT-3.2.2-3] and the old subscriptions are gone.
        """
        first = self.paho("brief", clean=False, session_expiry=1)
        await first.connect()
        await first.subscribe("brief/#", 1)
        await first.disconnect()
        # real-time: the session expiry (1 s) must pass.
        await pause(1.3)
        again = self.paho("brief", clean=False, session_expiry=1)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))
        pub = await self.connected("brief-pub")
        self.assertEqual(await pub.publish("brief/t", b"nobody", 1), 0x10)
        await again.messages.expect_nothing()

    async def test_session_within_its_expiry_interval_is_resumed(self) -> None:
        """
        Before the Session Expiry Interval passes, the session is kept
        [MQTT-3.1.2-23]: Clean Start 0 resumes it with Session Present 1
        [MQTT-3.2.2-3].
        """
        first = self.paho("kept", clean=False, session_expiry=5)
        await first.connect()
        await first.subscribe("kept/#", 1)
        await first.drop()
        again = self.paho("kept", clean=False, session_expiry=5)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))

    async def test_session_without_expiry_ends_with_the_connection(self) -> None:
        """
        Without a Session Expiry Interval (0), the session ends when the
        network connection closes (section 3.1.2.11.2), even with Clean
        Start 0: the next connection has Session Present 0.
        """
        first = self.paho("ephemeral", clean=False)
        await first.connect()
        await first.subscribe("eph/#", 1)
        await first.disconnect()
        again = self.paho("ephemeral", clean=False)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))

    async def test_disconnect_can_end_the_session(self) -> None:
        """
        A client may lower its Session Expiry Interval to 0 in DISCONNECT
        (section 3.14.2.2.2): the session then ends with the connection.
        """
        raw, _ = await self.raw_connected("changed-mind", 5, clean=False, session_expiry=60)
        raw.send(Disconnect(0, Properties(session_expiry_interval=0)))
        await raw.expect_closed()
        again = self.paho("changed-mind", clean=False, session_expiry=60)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, False))

    async def test_disconnect_can_extend_the_session(self) -> None:
        """
        A Session Expiry Interval set in DISCONNECT replaces the one of
        CONNECT (section 3.14.2.2.2): 1 s raised to 60 s keeps the session
        past the first second.
        """
        raw, _ = await self.raw_connected("stays", 5, clean=False, session_expiry=1)
        raw.send(Disconnect(0, Properties(session_expiry_interval=60)))
        await raw.expect_closed()
        # real-time: the session expiry given at CONNECT (1 s) must pass.
        await pause(1.3)
        again = self.paho("stays", clean=False, session_expiry=60)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
