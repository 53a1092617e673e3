# -*- test-case-name: tests.test_twistd_proxy -*-
"""
A real C{twistd mqttx} process with a C{haproxy:} listener in its YAML: a
client behind a PROXY v1 header is admitted and logged with the header's
address; a connection without one is closed with one line.
"""

from __future__ import annotations

import signal
import socket

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from tests.proxyheaders import v1_header
from tests.test_twistd import (
    CONNECT_V311,
    START_TIMEOUT,
    STOP_TIMEOUT,
    TWISTD,
    TwistdProcess,
    free_port,
    read_packet,
    read_until_closed,
    wait_until,
)


class ProxyListenerTests(SynchronousTestCase):
    def test_haproxy_endpoint_in_yaml(self) -> None:
        """
        twistd listens on what C{haproxy:} wraps; the client named by the
        header gets its CONNACK and is logged with that address; a client
        without a header is closed with C{proxy.bad_header}; SIGTERM exits 0.
        """
        port = free_port()
        directory = FilePath(self.mktemp())
        directory.makedirs()
        config = directory.child("mqttx.yaml")
        config.setContent(
            (
                "listeners:\n"
                f'  - {{name: lb, protocol: mqtt, endpoint: "haproxy:tcp:{port}:interface=127.0.0.1"}}\n'
                "persistence: {backend: memory}\n"
                "logging: {format: json}\n"
            ).encode()
        )
        twistd = TwistdProcess(self, [*TWISTD, "-n", "--pidfile=", "mqttx", "--config", config.path])
        self.assertTrue(
            wait_until(lambda: twistd.event("service.started") is not None, START_TIMEOUT),
            twistd.stdout + twistd.stderr,
        )

        with socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT) as client:
            client.sendall(v1_header("203.0.113.7", 56324, "127.0.0.1", port) + CONNECT_V311)
            self.assertEqual(read_packet(client), b"\x20\x02\x00\x00")
            self.assertTrue(wait_until(lambda: twistd.event("client.connected") is not None, STOP_TIMEOUT))
            connected = twistd.event("client.connected")
            assert connected is not None
            self.assertEqual(connected["peer"], "203.0.113.7:56324")

        with socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT) as direct:
            direct.sendall(CONNECT_V311)
            self.assertEqual(read_until_closed(direct, STOP_TIMEOUT), b"")
        self.assertTrue(wait_until(lambda: twistd.event("proxy.bad_header") is not None, STOP_TIMEOUT))
        bad = twistd.event("proxy.bad_header")
        assert bad is not None
        self.assertEqual((bad["listener"], bad["reason"]), ("lb", "no PROXY header"))

        twistd.process.send_signal(signal.SIGTERM)
        self.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)
