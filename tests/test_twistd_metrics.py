# -*- test-case-name: tests.test_twistd_metrics -*-
"""
A real C{twistd mqttx} process with a C{metrics} listener: scraped over
loopback HTTP after known traffic, and its connection log.
"""

from __future__ import annotations

import socket
import urllib.request

from prometheus_client.parser import text_string_to_metric_families
from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import Connect, Disconnect, Publish
from tests.test_twistd import (
    STOP_TIMEOUT,
    free_port,
    make_directory,
    read_packet,
    start_mqttx,
    stop_mqttx,
    wait_until,
    write_config,
)

PASSWORD = b"twistd-Secret-9q"
PAYLOAD = b"twistd-Payload-77"


class TwistdMetricsTests(SynchronousTestCase):
    """
    C{twistd mqttx} with C{protocol: metrics} serves the broker's metrics.
    """

    def test_scrape_after_traffic(self) -> None:
        """
        After a client connects and publishes five QoS 1 messages, the
        scrape counts them, the connect, and the SQLite store's commits;
        the JSON log has the connect and the disconnect with their reason,
        and neither the password nor the payload.
        """
        mqtt_port, metrics_port = free_port(), free_port()
        while metrics_port == mqtt_port:
            metrics_port = free_port()
        directory = make_directory(self)
        config = write_config(
            directory,
            "listeners:\n"
            f'  - {{name: m, protocol: mqtt, endpoint: "tcp:{mqtt_port}:interface=127.0.0.1"}}\n'
            f'  - {{name: prom, protocol: metrics, endpoint: "tcp:{metrics_port}:interface=127.0.0.1"}}\n'
            f"persistence: {{backend: sqlite, path: '{directory.child('mqttx.db').path}'}}\n"
            "logging: {format: json}\n",
        )
        twistd = start_mqttx(self, config)
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=STOP_TIMEOUT) as sock:
            sock.sendall(encode(Connect("pub", 4, "MQTT", True, 60, "alice", PASSWORD), 4))
            self.assertEqual(read_packet(sock), b"\x20\x02\x00\x00")
            for pid in range(1, 6):
                sock.sendall(encode(Publish("t", PAYLOAD, 1, False, False, pid), 4))
                self.assertEqual(read_packet(sock), bytes([0x40, 2, 0, pid]))
            with urllib.request.urlopen(
                f"http://127.0.0.1:{metrics_port}/metrics", timeout=STOP_TIMEOUT
            ) as response:
                body = response.read().decode("utf-8")
            sock.sendall(encode(Disconnect(), 4))
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body)
            for s in family.samples
        }
        self.assertEqual(samples[("mqttx_messages_received_total", (("qos", "1"),))], 5)
        self.assertEqual(
            samples[("mqttx_message_bytes_received_total", (("qos", "1"),))], 5 * len(PAYLOAD)
        )
        self.assertEqual(
            samples[("mqttx_connects_total", (("listener", "m"), ("reason", "success")))], 1
        )
        self.assertEqual(samples[("mqttx_connections_open", (("listener", "m"),))], 1)
        self.assertGreater(samples[("mqttx_bytes_received_total", (("listener", "m"),))], 0)
        self.assertIn(("mqttx_store_commit_seconds_count", ()), samples)
        self.assertTrue(
            wait_until(lambda: twistd.event("client.disconnected") is not None, STOP_TIMEOUT),
            twistd.stdout,
        )
        stop_mqttx(self, twistd)
        connected = twistd.event("client.connected")
        disconnected = twistd.event("client.disconnected")
        assert connected is not None and disconnected is not None
        self.assertEqual(
            (connected["client_id"], connected["listener"], connected["username"], connected["protocol_level"]),
            ("pub", "m", "alice", 4),
        )
        self.assertEqual(disconnected["reason"], "client_disconnect")
        output = twistd.stdout + twistd.stderr
        self.assertNotIn(PASSWORD.decode(), output)
        self.assertNotIn(PAYLOAD.decode(), output)
