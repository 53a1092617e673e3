# -*- test-case-name: tests.broker.test_admin -*-
"""
Tests for L{mqttx.broker.admin}: the admin queries and actions, on a real
L{Broker} with MQTT clients (L{FakeClient}) and bridge clients.
"""

from __future__ import annotations

import json

from twisted.logger import capturedLogs

from mqttx.broker.admin import MAX_LIMIT, Admin, properties_to_json, to_json
from mqttx.broker.bridge import Bridge, Origin
from mqttx.interfaces import IStore
from mqttx.mqtt.packets import Disconnect, Will
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode
from tests.helpers import BrokerTestCase
from tests.store.test_sqlite import open_store

V5_PERSISTENT = Properties(session_expiry_interval=3600)


class AdminTestCase(BrokerTestCase):
    """A broker and an L{Admin} over it."""

    def _build(self) -> None:
        super()._build()
        self.admin = Admin(self.broker)


class ClientTests(AdminTestCase):
    """Listing clients and one client's details."""

    def test_list(self) -> None:
        """
        Connected and offline clients are listed with who they are, where
        they came from and what their sessions hold.
        """
        self.clock.advance(1000)
        a = self.connect_client("a", 5, username="alice", properties=V5_PERSISTENT)
        a.subscribe("t/#", 1)
        b = self.connect_client("b", 4, clean_start=False)
        b.subscribe("x", 1)
        self.clock.advance(5)
        b.drop()
        self.connect_client("pub", 4).publish_acked("x", b"queued", 1)
        page = self.admin.clients()
        self.assertEqual(page.total, 3)
        self.assertIsNone(page.next_offset)
        by_id = {c.client_id: c for c in page.items}
        info = by_id["a"]
        self.assertEqual(
            (info.username, info.listener, info.protocol_level, info.connected, info.session_expiry),
            ("alice", "mqtt", 5, True, 3600),
        )
        self.assertEqual(info.subscriptions, 1)
        self.assertEqual(info.connected_since, 1000.0)
        assert info.peer is not None
        self.assertTrue(info.peer.startswith("127.0.0.1:"))
        offline = by_id["b"]
        self.assertFalse(offline.connected)
        self.assertEqual((offline.queued, offline.inflight, offline.disconnected_at), (1, 0, 1005.0))
        self.assertIsNone(offline.connected_since)
        # Ready for JSON.
        json.dumps(to_json(page))

    def test_paging(self) -> None:
        """Pages of C{limit} clients follow each other by C{next_offset}; the limit is capped."""
        for i in range(7):
            self.connect_client(f"c{i}", 4)
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = self.admin.clients(offset=offset, limit=3)
            self.assertLessEqual(len(page.items), 3)
            seen.extend(c.client_id for c in page.items)
            offset = page.next_offset
        self.assertEqual(seen, [f"c{i}" for i in range(7)])
        self.assertEqual(self.admin.clients(offset=100).items, ())
        self.assertEqual(len(self.admin.clients(limit=10 * MAX_LIMIT).items), 7)

    def test_filters(self) -> None:
        """Clients can be listed by client id prefix and by connected state."""
        self.connect_client("dev-1", 4)
        self.connect_client("dev-2", 4, clean_start=False).drop()
        self.connect_client("other", 4)
        self.assertEqual([c.client_id for c in self.admin.clients(prefix="dev-").items], ["dev-1", "dev-2"])
        self.assertEqual(self.admin.clients(prefix="dev-").total, 2)
        self.assertEqual([c.client_id for c in self.admin.clients(connected=False).items], ["dev-2"])
        self.assertEqual([c.client_id for c in self.admin.clients(connected=True).items], ["dev-1", "other"])

    def test_bridge_client(self) -> None:
        """A bridge client is listed under its listener with its peer and user name."""
        bridge = Bridge(self.broker)
        self.successResultOf(bridge.connect(Origin("http", "10.0.0.1:4000", "web", "bob")))
        details = self.admin.client("web")
        assert details is not None
        self.assertEqual(
            (details.client.listener, details.client.peer, details.client.username, details.client.protocol_level),
            ("http", "10.0.0.1:4000", "bob", 5),
        )

    def test_details(self) -> None:
        """One client's details list its subscriptions with their options and shared groups."""
        c = self.connect_client("c", 5, will=Will("w", b"bye"))
        c.subscribe("a/+", 2, no_local=True, retain_as_published=True, retain_handling=1, subscription_id=7)
        c.subscribe("$share/g1/jobs/#", 1)
        details = self.admin.client("c")
        assert details is not None
        self.assertTrue(details.will_pending)
        self.assertEqual(details.client.subscriptions, 2)
        first, shared = details.subscriptions
        self.assertEqual(
            (first.topic_filter, first.qos, first.no_local, first.retain_as_published, first.retain_handling),
            ("a/+", 2, True, True, 1),
        )
        self.assertEqual((first.subscription_id, first.share_group), (7, None))
        self.assertEqual((shared.topic_filter, shared.share_group), ("$share/g1/jobs/#", "g1"))
        self.assertIsNone(self.admin.client("nobody"))


class DisconnectTests(AdminTestCase):
    """Disconnecting clients."""

    def test_v5_gets_administrative_action(self) -> None:
        """
        An MQTT 5 client gets DISCONNECT 0x98 (Administrative action) and is
        closed; its will is published; the action is logged with who asked.
        """
        watcher = self.connect_client("watcher", 5)
        watcher.subscribe("w", 0)
        c = self.connect_client("c", 5, will=Will("w", b"gone"))
        with capturedLogs() as events:
            self.assertTrue(self.admin.disconnect("c", "root"))
        self.assertClosedWith(c, ReasonCode.ADMINISTRATIVE_ACTION)
        [event] = [e for e in events if e.get("event_id") == "admin.disconnect"]
        self.assertEqual(event["requested_by"], "root")
        c.finish_close()
        self.assertEqual([p.payload for p in watcher.publishes()], [b"gone"])
        self.assertNotIn("c", self.broker.sessions)
        self.assertEqual(self.broker.stats_for("mqtt").disconnects["administrative_action"], 1)

    def test_v311_closed(self) -> None:
        """A 3.1.1 client's connection is closed without a DISCONNECT (3.1.1 servers send none)."""
        c = self.connect_client("c", 4)
        self.assertTrue(self.admin.disconnect("c", "root"))
        self.assertClosedWith(c, None)

    def test_persistent_session_kept(self) -> None:
        """The session of a disconnected client with an expiry stays, offline."""
        c = self.connect_client("c", 5, properties=V5_PERSISTENT)
        self.admin.disconnect("c", "root")
        c.finish_close()
        info = self.admin.client("c")
        assert info is not None
        self.assertFalse(info.client.connected)
        self.assertFalse(self.admin.disconnect("c", "root"), "nothing left to disconnect")

    def test_discard_session(self) -> None:
        """With C{discard_session}, the session ends too: online or offline."""
        c = self.connect_client("c", 5, properties=V5_PERSISTENT)
        self.assertTrue(self.admin.disconnect("c", "root", discard_session=True))
        c.finish_close()
        self.assertNotIn("c", self.broker.sessions)
        self.connect_client("d", 5, properties=V5_PERSISTENT).disconnect()
        self.assertIn("d", self.broker.sessions)
        self.assertTrue(self.admin.disconnect("d", "root", discard_session=True))
        self.assertNotIn("d", self.broker.sessions)

    def test_unknown(self) -> None:
        """An unknown client id: nothing to do."""
        self.assertFalse(self.admin.disconnect("nobody", "root"))

    def test_bridge_client(self) -> None:
        """A bridge client's C{closed} fires with 0x98."""
        client = self.successResultOf(Bridge(self.broker).connect(Origin("http", "p", "web")))
        self.assertTrue(self.admin.disconnect("web", "root"))
        self.assertEqual(self.successResultOf(client.closed), ReasonCode.ADMINISTRATIVE_ACTION)
        self.assertNotIn("web", self.broker.sessions)


class SubscriptionListTests(AdminTestCase):
    """Listing every subscription."""

    def test_all(self) -> None:
        """Every session's subscriptions, paged, with the total."""
        a = self.connect_client("a", 5)
        a.subscribe("x", 1)
        a.subscribe("y", 0)
        b = self.connect_client("b", 5)
        b.subscribe("$share/g/z", 2)
        page = self.admin.subscriptions(limit=2)
        self.assertEqual(page.total, 3)
        self.assertEqual([(s.client_id, s.topic_filter) for s in page.items], [("a", "x"), ("a", "y")])
        rest = self.admin.subscriptions(offset=2)
        self.assertEqual(
            [(s.client_id, s.topic_filter, s.qos, s.share_group) for s in rest.items], [("b", "$share/g/z", 2, "g")]
        )
        self.assertIsNone(rest.next_offset)
        self.assertEqual(self.admin.subscriptions(client_id="b").total, 1)
        self.assertEqual(self.admin.subscriptions(client_id="nobody").items, ())


class RetainedTests(AdminTestCase):
    """Listing and deleting retained messages."""

    def test_list(self) -> None:
        """Retained messages matching a filter, by topic, with size, QoS, properties and a preview."""
        pub = self.connect_client("pub", 5)
        props = Properties(content_type="text/plain", user_property=(("a", "1"),), correlation_data=b"\x00\x01")
        pub.publish_acked("s/b", "héllo wörld".encode() * 10, 1, retain=True, properties=props)
        pub.publish_acked("s/a", b"\xff\xfe", 0, retain=True)
        pub.publish_acked("other", b"x", 1, retain=True)
        page = self.admin.retained("s/#", preview=8)
        self.assertEqual(page.total, 2)
        a, b = page.items
        self.assertEqual((a.topic, a.payload_size, a.payload_preview, a.preview_encoding), ("s/a", 2, "//4=", "base64"))
        self.assertEqual((b.topic, b.qos, b.payload_size), ("s/b", 1, 130))
        # Cut in the middle of "ö": the whole characters before it.
        self.assertEqual((b.payload_preview, b.preview_encoding), ("héllo w", "utf-8"))
        self.assertEqual(
            b.properties,
            {"content_type": "text/plain", "user_properties": [["a", "1"]], "correlation_data_base64": "AAE="},
        )
        self.assertEqual(len(self.admin.retained().items), 3)
        json.dumps(to_json(page))

    def test_expired_skipped(self) -> None:
        """An expired retained message is not listed; one that expires says when."""
        pub = self.connect_client("pub", 5)
        pub.publish_acked("e", b"x", 1, retain=True, properties=Properties(message_expiry_interval=10))
        [item] = self.admin.retained("e").items
        self.assertEqual(item.expires_in, 10)
        self.clock.advance(11)
        self.assertEqual(self.admin.retained("e").items, ())

    def test_bad_filter(self) -> None:
        """An invalid filter is a ValueError (a 400 for the HTTP API)."""
        self.assertRaises(ValueError, self.admin.retained, "a/#/b")
        self.assertRaises(ValueError, self.admin.delete_retained, "a/+", "root")

    def test_delete(self) -> None:
        """Deleting a retained message: a later subscriber gets nothing; logged."""
        pub = self.connect_client("pub", 5)
        pub.publish_acked("r", b"x", 1, retain=True)
        with capturedLogs() as events:
            self.assertTrue(self.successResultOf(self.admin.delete_retained("r", "root")))
        self.assertEqual([e["requested_by"] for e in events if e.get("event_id") == "admin.retained_deleted"], ["root"])
        self.assertFalse(self.successResultOf(self.admin.delete_retained("r", "root")))
        sub = self.connect_client("sub", 5)
        sub.subscribe("r", 1)
        self.assertEqual(sub.received(), [])


class RetainedRestartTests(AdminTestCase):
    """A deleted retained message stays deleted across a restart (SQLite store)."""

    def make_store(self) -> IStore:
        self.path = self.mktemp()
        return open_store(self, self.path)

    def test_delete_survives_restart(self) -> None:
        """
        A retained message deleted through the admin API is gone after the
        broker restarts on the same database; another one is still there.
        """
        pub = self.connect_client("pub", 5)
        pub.publish_acked("gone", b"x", 1, retain=True)
        pub.publish_acked("kept", b"y", 1, retain=True)
        self.assertTrue(self.successResultOf(self.admin.delete_retained("gone", "root")))
        pub.send(Disconnect())
        pub.finish_close()
        self.successResultOf(self.broker.shutdown())
        self.successResultOf(self.store.close())
        self.store = open_store(self, self.path)
        self._build()
        self.assertEqual([r.topic for r in self.admin.retained().items], ["kept"])


class StatsTests(AdminTestCase):
    """The broker's figures."""

    def test_stats(self) -> None:
        """The counters the metrics collector reads, in one JSON-ready dict."""
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 1)
        pub = self.connect_client("pub", 4, clean_start=False)
        pub.publish_acked("t", b"abc", 1)
        pub.publish("t", b"x", 0)
        self.clock.advance(3)
        stats = self.admin.stats()
        json.dumps(stats)
        self.assertEqual(stats["time"], 3.0)
        self.assertEqual(stats["clients"], {"connected": 2, "maximum": 2, "sessions": 2, "offline": 0})
        self.assertEqual(stats["subscriptions"], 1)
        self.assertEqual(stats["inflight_messages"], 1)
        messages = stats["messages"]
        self.assertEqual((messages["received"], messages["received_by_qos"]), (2, [1, 1, 0]))
        self.assertEqual(messages["sent_by_qos"], [1, 1, 0])
        self.assertEqual(messages["received_bytes_by_qos"], [1, 3, 0])
        self.assertEqual(messages["dropped"]["slow_consumer"], 0)
        listener = stats["listeners"]["mqtt"]
        self.assertEqual(listener["connections_open"], 2)
        self.assertEqual(listener["connects"], {"success": 2})
        self.assertGreater(stats["bytes"]["received"], 0)

    def test_properties_to_json(self) -> None:
        """
        Unset properties are left out; the others are named as in the HTTP
        API's publish form and event stream, binary ones in base64.
        """
        self.assertEqual(properties_to_json(Properties()), {})
        self.assertEqual(
            properties_to_json(
                Properties(
                    content_type="text/plain",
                    payload_format_indicator=1,
                    message_expiry_interval=5,
                    response_topic="r",
                    correlation_data=b"\x00",
                    user_property=(("a", "1"), ("a", "2")),
                    subscription_identifier=(1, 2),
                )
            ),
            {
                "content_type": "text/plain",
                "payload_format": 1,
                "message_expiry": 5,
                "response_topic": "r",
                "correlation_data_base64": "AA==",
                "user_properties": [["a", "1"], ["a", "2"]],
            },
        )
