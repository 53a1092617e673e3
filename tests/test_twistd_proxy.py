# -*- test-case-name: tests.test_twistd_proxy -*-
"""
A real C{twistd mqttx} process with a C{haproxy:} listener in its YAML: a
client behind a PROXY v1 header is admitted and logged with the header's
address; a connection without one is closed with one line.
"""

from __future__ import annotations

import socket

from twisted.trial.unittest import SynchronousTestCase

from tests.proxyheaders import v1_header
from tests.test_twistd import (
    CONNECT_V311,
    STOP_TIMEOUT,
    free_port,
    make_directory,
    read_packet,
    read_until_closed,
    start_mqttx,
    stop_mqttx,
    wait_until,
    write_config,
)


class ProxyListenerTests(SynchronousTestCase):
    def test_haproxy_endpoint_in_yaml(self) -> None:
        """
        twistd listens on what C{haproxy:} wraps; the client named by the
        header gets its CONNACK and is logged with that address; a client
        without a header is closed with C{proxy.bad_header}; SIGTERM exits 0.
        """
        port = free_port()
        config = write_config(
            make_directory(self),
            "listeners:\n"
            f'  - {{name: lb, protocol: mqtt, endpoint: "haproxy:tcp:{port}:interface=127.0.0.1"}}\n'
            "persistence: {backend: memory}\n"
            "logging: {format: json}\n",
        )
        twistd = start_mqttx(self, config)

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

        stop_mqttx(self, twistd)
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)
