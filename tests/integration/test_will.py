# -*- test-case-name: tests.integration.test_will -*-
"""
Will messages over real TCP: published when a client vanishes, not when it
says goodbye; MQTT 5 will delay.
"""

from __future__ import annotations

import time

from mqttx.mqtt.packets import Will

from .helpers import (
    QUIET,
    V5,
    V311,
    IntegrationTestCase,
    MixinBase,
    PahoClient,
    WillSpec,
    publish_with_qos_3,
)


class WillTestsMixin(MixinBase):
    """The will of a connection that ends abnormally is published."""

    async def _watcher(self) -> PahoClient:
        return await self.subscriber("will-watcher", "will/#", 2)

    async def test_will_is_published_when_the_connection_drops(self) -> None:
        """
        A client whose network connection closes without DISCONNECT has its
        will published [MQTT-3.1.2-8], as a non-retained message
        [MQTT-3.1.2-16] (5.0 [MQTT-3.1.2-8] [MQTT-3.1.2-14]).
        """
        watcher = await self._watcher()
        client = await self.connected("doomed", will=WillSpec("will/doomed", b"gone", qos=1))
        await client.drop()
        [got] = await watcher.messages.get()
        self.assertEqual(
            (got.topic, got.payload, got.qos, got.retain), ("will/doomed", b"gone", 1, False)
        )
        await watcher.messages.expect_nothing()

    async def test_will_is_not_published_after_disconnect(self) -> None:
        """
        DISCONNECT deletes the will [MQTT-3.1.2-10] [MQTT-3.14.4-3]
        (5.0 with reason 0x00 [MQTT-3.1.2-8] [MQTT-3.14.4-3]).
        """
        watcher = await self._watcher()
        client = await self.connected("polite", will=WillSpec("will/polite", b"unused", qos=1))
        await client.disconnect()
        await watcher.messages.expect_nothing()

    async def test_will_qos_is_honoured(self) -> None:
        """
        A will goes out at its Will QoS (section 3.1.2.6), downgraded to the
        subscription's QoS as any message [MQTT-3.8.4-6].
        """
        watcher = await self._watcher()
        low = await self.subscriber("will-low", "will/#", 1)
        for qos in (0, 1, 2):
            client = await self.connected(f"will-qos-{qos}", will=WillSpec(f"will/q{qos}", b"bye", qos=qos))
            await client.drop()
            [got] = await watcher.messages.get()
            self.assertEqual((got.topic, got.qos), (f"will/q{qos}", qos))
            [got] = await low.messages.get()
            self.assertEqual((got.topic, got.qos), (f"will/q{qos}", min(qos, 1)))

    async def test_will_retain_is_honoured(self) -> None:
        """
        A will with Will Retain 1 is published as a retained message
        [MQTT-3.1.2-17] (5.0 [MQTT-3.1.2-15]): live subscribers get it with
        RETAIN 0 [MQTT-3.3.1-9], later ones with RETAIN 1 [MQTT-3.3.1-8].
        """
        watcher = await self._watcher()
        client = await self.connected(
            "retained-will", will=WillSpec("will/status", b"offline", qos=2, retain=True)
        )
        await client.drop()
        [got] = await watcher.messages.get()
        self.assertEqual((got.payload, got.qos, got.retain), (b"offline", 2, False))
        late = await self.subscriber("late", "will/status", 2)
        [got] = await late.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos, got.retain), ("will/status", b"offline", 2, True))

    async def test_will_is_published_on_keep_alive_timeout(self) -> None:
        """
        A client silent for 1.5 keep-alive periods is disconnected "as if the
        network had failed" [MQTT-3.1.2-24] (5.0 [MQTT-3.1.2-22]): its will
        is published.
        """
        watcher = await self._watcher()
        start = time.monotonic()
        await self.raw_connected(
            "silent", keep_alive=1, will=Will("will/silent", b"timed out", qos=1)
        )
        [got] = await watcher.messages.get()
        elapsed = time.monotonic() - start
        self.assertEqual((got.topic, got.payload, got.qos), ("will/silent", b"timed out", 1))
        self.assertTrue(1.2 <= elapsed <= 2.5, f"will after {elapsed:.2f}s, not ~1.5s")

    async def test_will_is_published_on_protocol_error(self) -> None:
        """
        A connection closed by the broker for a protocol violation
        [MQTT-4.8.0-1] ends abnormally, so its will is published
        [MQTT-3.1.2-8].
        """
        watcher = await self._watcher()
        client, _ = await self.raw_connected("broken", will=Will("will/broken", b"violated"))
        client.send_bytes(publish_with_qos_3(self.level))
        await client.expect_closed()
        [got] = await watcher.messages.get()
        self.assertEqual((got.topic, got.payload), ("will/broken", b"violated"))

    async def test_will_is_published_on_takeover(self) -> None:
        """
        A connection closed because another took its session over did not
        end with DISCONNECT: its will is published (section 3.1.4, item 3;
        MQTT 5 with no Will Delay [MQTT-3.1.2-8]). The new connection's will
        is kept.
        """
        watcher = await self._watcher()
        first = await self.connected("taken", will=WillSpec("will/taken", b"first"))
        await self.connected("taken", will=WillSpec("will/taken", b"second"))
        await first.disconnects.get_one()
        [got] = await watcher.messages.get()
        self.assertEqual((got.topic, got.payload), ("will/taken", b"first"))
        await watcher.messages.expect_nothing()


class WillV311Tests(WillTestsMixin, IntegrationTestCase):
    version = V311


class WillV5Tests(WillTestsMixin, IntegrationTestCase):
    version = V5

    async def test_will_is_published_after_disconnect_with_will_message(self) -> None:
        """
        DISCONNECT with reason 0x04 (Disconnect with Will Message) ends the
        connection normally but asks for the will (section 3.14.2.1).
        """
        watcher = await self._watcher()
        client = await self.connected("wants-will", will=WillSpec("will/wanted", b"as asked", qos=1))
        await client.disconnect(0x04)
        [got] = await watcher.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos), ("will/wanted", b"as asked", 1))


    async def test_will_properties_are_forwarded(self) -> None:
        """
        A will's user properties reach subscribers in order [MQTT-3.1.3-10];
        its Will Delay Interval, a property of the will and not of the
        message, does not.
        """
        watcher = await self._watcher()
        props = (("reason", "crash"), ("host", "a"), ("reason", "again"))
        client = await self.connected(
            "propertied", will=WillSpec("will/props", b"bye", 1, delay=0, user_properties=props)
        )
        await client.drop()
        [got] = await watcher.messages.get()
        self.assertEqual(got.user_properties(), list(props))
        self.assertIsNone(getattr(got.properties, "WillDelayInterval", None))


class WillDelayTests(IntegrationTestCase):
    """The MQTT 5 Will Delay Interval."""

    version = V5

    async def _watcher(self) -> PahoClient:
        return await self.subscriber("will-watcher", "will/#", 1)

    async def test_will_is_published_after_the_will_delay(self) -> None:
        """
        With Will Delay Interval 1 s the will goes out 1 s after the
        connection drops, not before [MQTT-3.1.2-8].
        """
        watcher = await self._watcher()
        client = await self.connected(
            "delayed", clean=False, session_expiry=60, will=WillSpec("will/delayed", b"late", 1, delay=1)
        )
        await client.drop()
        start = time.monotonic()
        # real-time: the will must not come during most of its delay.
        await watcher.messages.expect_nothing(0.7)
        [got] = await watcher.messages.get()
        elapsed = time.monotonic() - start
        self.assertEqual((got.topic, got.payload), ("will/delayed", b"late"))
        self.assertTrue(0.9 <= elapsed <= 2.0, f"will after {elapsed:.2f}s, not ~1s")

    async def test_reconnecting_within_the_will_delay_cancels_the_will(self) -> None:
        """
        If the client reconnects to its session before the Will Delay
        Interval has passed, the will is not sent [MQTT-3.1.3-9].
        """
        watcher = await self._watcher()
        client = await self.connected(
            "comeback", clean=False, session_expiry=60, will=WillSpec("will/comeback", b"no", 1, delay=1)
        )
        await client.drop()
        again = self.paho("comeback", clean=False, session_expiry=60)
        ack = await again.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        # real-time: watch past the will delay (1 s) that was cancelled.
        await watcher.messages.expect_nothing(1.3)

    async def test_takeover_within_the_will_delay_cancels_the_will(self) -> None:
        """
        A takeover is a new network connection to the session: with Clean
        Start 0 before the Will Delay Interval passed, the old connection's
        will is not sent [MQTT-3.1.3-9].
        """
        watcher = await self._watcher()
        old = await self.connected(
            "taken-late", clean=False, session_expiry=60, will=WillSpec("will/taken-late", b"no", 1, delay=1)
        )
        new = self.paho("taken-late", clean=False, session_expiry=60)
        ack = await new.connect()
        self.assertEqual((ack.reason_code, ack.session_present), (0, True))
        await old.disconnects.get_one()
        # real-time: watch past the will delay (1 s).
        await watcher.messages.expect_nothing(1.0 + QUIET)

    async def test_will_is_published_when_the_session_ends_before_the_delay(self) -> None:
        """
        A will waits for its delay or the end of the session, whichever
        comes first [MQTT-3.1.2-8]: with Session Expiry 1 s and Will Delay
        60 s it goes out after about 1 s.
        """
        watcher = await self._watcher()
        client = await self.connected(
            "short-lived", clean=False, session_expiry=1, will=WillSpec("will/short", b"ended", 1, delay=60)
        )
        await client.drop()
        start = time.monotonic()
        [got] = await watcher.messages.get()
        elapsed = time.monotonic() - start
        self.assertEqual((got.topic, got.payload), ("will/short", b"ended"))
        self.assertTrue(0.8 <= elapsed <= 2.0, f"will after {elapsed:.2f}s, not ~1s")

    async def test_will_delay_does_not_outlive_a_normal_disconnect(self) -> None:
        """
        DISCONNECT 0x00 deletes a delayed will too [MQTT-3.1.2-10]: nothing
        is sent when its delay would have passed.
        """
        watcher = await self._watcher()
        client = await self.connected(
            "tidy", clean=False, session_expiry=60, will=WillSpec("will/tidy", b"no", 1, delay=1)
        )
        await client.disconnect()
        # real-time: watch past the will delay (1 s).
        await watcher.messages.expect_nothing(1.0 + QUIET)
