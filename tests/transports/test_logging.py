# -*- test-case-name: tests.transports.test_logging -*-
"""
The connection log: one event per connect and per disconnect, with the
fields an operator needs, and never a password or a payload.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from twisted.logger import capturedLogs, eventAsJSON, formatEvent

from mqttx.config import LoggingConfig
from mqttx.service import make_log_observer
from tests.helpers import BrokerTestCase

PASSWORD = b"hunter2-Zq8#secret"
PAYLOAD = b"PAYLOAD-xyzzy-4711"


class ConnectionLogTests(BrokerTestCase):
    """
    C{client.connected} and C{client.disconnected} events carry the client
    id, peer address, listener, protocol version, user name and reason.
    """

    def events_for(self, event_id: str, events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        return [e for e in events if e.get("event_id") == event_id]

    def test_connected(self) -> None:
        """An admitted client is logged once with its details."""
        with capturedLogs() as events:
            self.connect_client("c1", level=5, username="alice", password=PASSWORD)
        [event] = self.events_for("client.connected", events)
        self.assertEqual(event["client_id"], "c1")
        self.assertEqual(event["listener"], "mqtt")
        self.assertEqual(event["protocol_level"], 5)
        self.assertEqual(event["username"], "alice")
        self.assertEqual(event["reason"], "success")
        self.assertTrue(event["peer"].startswith("127.0.0.1:"), event["peer"])

    def test_disconnected_reasons(self) -> None:
        """Each end of an admitted connection is logged once, with why."""
        with capturedLogs() as events:
            a = self.connect_client("a", username="bob")
            a.disconnect()
            b = self.connect_client("b", level=5)
            b.drop()
        ended = self.events_for("client.disconnected", events)
        self.assertEqual(
            [(e["client_id"], e["reason"], e["username"], e["protocol_level"]) for e in ended],
            [("a", "client_disconnect", "bob", 4), ("b", "connection_lost", None, 5)],
        )
        self.assertEqual({e["listener"] for e in ended}, {"mqtt"})
        self.assertTrue(all(e["peer"].startswith("127.0.0.1:") for e in ended))

    def test_keepalive_reason(self) -> None:
        """A keep-alive timeout is the reason of the disconnection."""
        with capturedLogs() as events:
            client = self.connect_client("k", keep_alive=10)
            self.clock.advance(15)
            client.finish_close()
        [event] = self.events_for("client.disconnected", events)
        self.assertEqual(event["reason"], "keep_alive_timeout")

    def test_refused_connect_logged(self) -> None:
        """A refused CONNECT is logged with the listener, user name and reason."""
        self.use_config(server_reference="other:1883")
        with capturedLogs() as events:
            self.connect_client("r", level=5, username="carol", password=PASSWORD)
        [event] = self.events_for("connect.refused", events)
        self.assertEqual(event["listener"], "mqtt")
        self.assertEqual(event["username"], "carol")
        self.assertEqual(event["reason"], "use_another_server")
        self.assertEqual(self.events_for("client.disconnected", events), [])

    def test_no_password_or_payload(self) -> None:
        """
        Neither the password nor a payload appears in any event, in its
        text or JSON form, or in the output of the configured observers.
        """
        text, as_json = io.StringIO(), io.StringIO()
        observers = [
            make_log_observer(LoggingConfig(level="debug", format="text"), text),
            make_log_observer(LoggingConfig(level="debug", format="json"), as_json),
        ]
        with capturedLogs() as events:
            sub = self.connect_client("sub", username="dave", password=PASSWORD)
            sub.subscribe("t/#", qos=1)
            client = self.connect_client("pub", level=5, username="erin", password=PASSWORD)
            client.publish_acked("t/secret", PAYLOAD, qos=1, retain=True)
            client.publish("t/secret", PAYLOAD, qos=0)
            client.disconnect()
            sub.drop()
        self.assertTrue(self.events_for("client.connected", events))
        self.assertTrue(self.events_for("client.disconnected", events))
        for event in events:
            for observer in observers:
                observer(event)
        outputs = [text.getvalue(), as_json.getvalue()]
        outputs += [formatEvent(e) for e in events] + [eventAsJSON(e) for e in events]
        for line in as_json.getvalue().splitlines():
            json.loads(line)
        for output in outputs:
            for secret in (PASSWORD, PAYLOAD):
                self.assertNotIn(secret.decode(), output)
                self.assertNotIn(repr(secret), output)
        self.assertIn("erin", text.getvalue())
