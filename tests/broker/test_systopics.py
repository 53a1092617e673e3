# -*- test-case-name: tests.broker.test_systopics -*-
"""
Tests for L{mqttx.broker.systopics}: the C{$SYS} topics, on a L{Clock}.
"""

from __future__ import annotations

import math

from mqttx import __version__
from mqttx.broker.broker import Broker
from mqttx.mqtt.packets import Publish
from tests.helpers import BrokerTestCase, FakeClient


class SysTopicsTests(BrokerTestCase):
    """
    A broker built with C{sys_topics=True} publishes its figures under
    C{$SYS/broker/}, retained, every C{sys_interval} seconds from start.
    """

    def make_broker(self) -> Broker:
        return Broker(self.config, clock=self.clock, store=self.store, sys_topics=True)

    def sys_values(self, client: FakeClient) -> dict[str, bytes]:
        values: dict[str, bytes] = {}
        for p in client.publishes():
            self.assertTrue(p.topic.startswith("$SYS/broker/"), p.topic)
            values[p.topic.removeprefix("$SYS/broker/")] = p.payload
        return values

    def test_retained_at_start(self) -> None:
        """
        The topics are published as the broker starts and kept retained:
        a later C{$SYS/#} subscriber gets every one with RETAIN=1.
        """
        client = self.connect_client("admin")
        client.subscribe("$SYS/#")
        publishes = client.publishes()
        self.assertTrue(all(isinstance(p, Publish) and p.retain for p in publishes))
        topics = {p.topic.removeprefix("$SYS/broker/"): p.payload for p in publishes}
        self.assertEqual(topics["version"], f"mqttx version {__version__}".encode())
        self.assertEqual(topics["uptime"], b"0 seconds")
        expected = {
            "version", "uptime", "clients/connected", "clients/disconnected", "clients/total",
            "clients/maximum", "messages/received", "messages/sent", "bytes/received", "bytes/sent",
            "subscriptions/count", "retained messages/count",
        }
        for kind in ("messages/received", "messages/sent", "bytes/received", "bytes/sent"):
            for window in ("1min", "5min", "15min"):
                expected.add(f"load/{kind}/{window}")
        self.assertEqual(set(topics), expected)

    def test_not_matched_by_hash(self) -> None:
        """[MQTT-4.7.2-1] A C{#} subscriber does not get C{$SYS} topics."""
        client = self.connect_client("c")
        client.subscribe("#")
        self.clock.advance(10)
        self.assertEqual(client.publishes(), [])

    def test_figures_after_interval(self) -> None:
        """
        After C{sys_interval} seconds, the changed figures are published:
        uptime, clients, messages and subscriptions.
        """
        watcher = self.connect_client("watcher")
        watcher.subscribe("$SYS/#")
        watcher.publishes()
        pub = self.connect_client("pub")
        for _ in range(3):
            pub.publish("t", b"x")
        self.clock.advance(10)
        values = self.sys_values(watcher)
        self.assertEqual(values["uptime"], b"10 seconds")
        self.assertEqual(values["clients/connected"], b"2")
        self.assertEqual(values["clients/total"], b"2")
        self.assertEqual(values["clients/maximum"], b"2")
        self.assertEqual(values["messages/received"], b"3")
        self.assertEqual(values["subscriptions/count"], b"1")
        self.assertNotIn("version", values)  # unchanged: not sent again
        self.assertGreater(int(values["bytes/received"]), 0)

    def test_only_changes_published(self) -> None:
        """A tick where nothing but the uptime changed publishes the uptime alone."""
        watcher = self.connect_client("watcher")
        # (Not $SYS/#: what the watcher is sent changes messages/sent.)
        for topic_filter in ("$SYS/broker/clients/+", "$SYS/broker/uptime", "$SYS/broker/version"):
            watcher.subscribe(topic_filter)
            watcher.publishes()
        self.clock.advance(10)
        watcher.publishes()
        self.clock.advance(10)
        self.assertEqual(list(self.sys_values(watcher)), ["uptime"])

    def test_load_average(self) -> None:
        """
        The load is messages per minute, averaged as Mosquitto does: after
        one 10 s interval with 60 messages (360/min), the 1 minute average
        is 360 * (1 - e^(-10/60)).
        """
        pub = self.connect_client("pub")
        for _ in range(60):
            pub.publish("t", b"x")
        self.clock.advance(10)
        sys_topics = self.broker.sys_topics
        assert sys_topics is not None
        values = sys_topics.values()
        self.assertEqual(
            values["load/messages/received/1min"], f"{360 * (1 - math.exp(-10 / 60)):.2f}"
        )
        self.assertEqual(
            values["load/messages/received/15min"], f"{360 * (1 - math.exp(-10 / 900)):.2f}"
        )

    def test_interval_setting(self) -> None:
        """C{sys_interval} sets the period."""
        self.use_config(sys_interval=3)
        watcher = self.connect_client("watcher")
        watcher.subscribe("$SYS/broker/uptime")
        watcher.publishes()
        self.clock.advance(3)
        self.assertEqual(self.sys_values(watcher), {"uptime": b"3 seconds"})

    def test_off(self) -> None:
        """C{sys_interval: 0} publishes nothing and schedules nothing."""
        self.use_config(sys_interval=0)
        self.assertIsNone(self.broker.sys_topics)
        self.assertEqual(len(self.broker.retained), 0)

    def test_not_stored(self) -> None:
        """$SYS retained messages are not written to the store."""
        snapshot = self.successResultOf(self.store.load())
        self.assertEqual(list(snapshot.retained), [])
        self.assertGreater(len(self.broker.retained), 0)

    def test_stops_at_shutdown(self) -> None:
        """Shutdown stops the timer."""
        self.successResultOf(self.broker.shutdown())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_off_by_default(self) -> None:
        """A broker built without C{sys_topics} publishes none."""
        broker = Broker(self.config, clock=self.clock, store=self.store)
        self.assertIsNone(broker.sys_topics)
