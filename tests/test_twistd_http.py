# -*- test-case-name: tests.test_twistd_http -*-
"""
A real C{twistd mqttx} process with a C{protocol: http} listener from the
YAML: it serves the probes, takes a publish that an MQTT subscriber gets,
streams events, and stops cleanly with SIGTERM.
"""

from __future__ import annotations

import json
import socket
import urllib.request
from base64 import b64encode

from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.passwords import format_line, hash_password
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import ConnAck, Connect, Publish, SubAck, Subscribe, Subscription
from tests.test_twistd import (
    STOP_TIMEOUT,
    free_port,
    make_directory,
    read_exactly,
    read_packet,
    start_mqttx,
    stop_mqttx,
    write_config,
)

PASSWORD = "twistd-Http-4z"


def _post(url: str, body: bytes, authorization: str | None = None) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(url, data=body, method="POST")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=STOP_TIMEOUT) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


class TwistdHTTPTests(SynchronousTestCase):
    """C{twistd mqttx} with C{protocol: http} serves the HTTP bridge."""

    def test_http_listener_serves(self) -> None:
        """
        /healthz and /readyz answer, /metrics is on when configured; a POST
        with the password file's credentials is published to an MQTT
        subscriber, one without them is a 401; an event stream gets a
        message; SIGTERM ends the process with 0 and the password is in no
        log line.
        """
        mqtt_port, http_port = free_port(), free_port()
        while http_port == mqtt_port:
            http_port = free_port()
        directory = make_directory(self)
        passwd = directory.child("passwd")
        passwd.setContent((format_line("alice", hash_password(PASSWORD, iterations=1000)) + "\n").encode())
        config = write_config(
            directory,
            "listeners:\n"
            f'  - {{name: m, protocol: mqtt, endpoint: "tcp:{mqtt_port}:interface=127.0.0.1",'
            " allow_anonymous: true}\n"
            f'  - {{name: web, protocol: http, endpoint: "tcp:{http_port}:interface=127.0.0.1",'
            " http: {metrics: true, heartbeat_interval: 1}}\n"
            f"auth: {{allow_anonymous: false, password_file: '{passwd.path}'}}\n"
            "persistence: {backend: memory}\n"
            "logging: {format: json}\n",
        )
        twistd = start_mqttx(self, config)
        base = f"http://127.0.0.1:{http_port}"
        for path in ("/healthz", "/readyz"):
            with urllib.request.urlopen(base + path, timeout=STOP_TIMEOUT) as response:
                self.assertEqual(response.status, 200)
        with urllib.request.urlopen(base + "/metrics", timeout=STOP_TIMEOUT) as response:
            self.assertIn(b"mqttx_connections_open", response.read())

        auth = "Basic " + b64encode(f"alice:{PASSWORD}".encode()).decode()
        with socket.create_connection(("127.0.0.1", mqtt_port), timeout=STOP_TIMEOUT) as sub:
            sub.sendall(encode(Connect("sub", 5, "MQTT", True, 60), 5))
            decoder = Decoder(protocol_level=5)
            (connack,) = decoder.feed(read_packet(sub))
            assert isinstance(connack, ConnAck)
            self.assertEqual(connack.reason_code, 0)
            sub.sendall(encode(Subscribe(1, (Subscription("t", 1),)), 5))
            (suback,) = decoder.feed(read_packet(sub))
            self.assertIsInstance(suback, SubAck)

            status, body = _post(base + "/api/v1/publish?topic=t&qos=1", b"from-http")
            self.assertEqual((status, body["reason_code"]), (401, 0x87))
            status, body = _post(base + "/api/v1/publish?topic=t&qos=1", b"from-http", auth)
            self.assertEqual((status, body), (200, {"topic": "t", "qos": 1, "retain": False}))
            header = read_exactly(sub, 2)
            (publish,) = decoder.feed(header + read_exactly(sub, header[1]))
            assert isinstance(publish, Publish)
            self.assertEqual((publish.topic, publish.payload, publish.qos), ("t", b"from-http", 1))

        with socket.create_connection(("127.0.0.1", http_port), timeout=STOP_TIMEOUT) as stream:
            stream.sendall(
                f"GET /api/v1/subscribe?filter=s HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\n\r\n".encode()
            )
            received = b""
            while b"retry:" not in received:
                received += stream.recv(4096)
            self.assertTrue(received.startswith(b"HTTP/1.1 200 "), received)
            _post(base + "/api/v1/publish?topic=s", b"streamed", auth)
            while b"streamed" not in received:
                received += stream.recv(4096)
            self.assertIn(b"event: message\nid: 1\n", received)

        stop_mqttx(self, twistd)
        started = [e for e in twistd.events() if e.get("event_id") == "listener.started"]
        self.assertIn(("web", "http"), [(e["listener"], e["protocol"]) for e in started])
        self.assertNotIn(PASSWORD, twistd.stdout + twistd.stderr)
