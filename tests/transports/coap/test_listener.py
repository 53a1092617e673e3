"""
Tests for L{mqttx.transports.coap.listener} and the C{coap} listeners of
L{mqttx.service.MQTTXService}: UDP listeners start and stop with the
stream ones, and a port that cannot be bound stops the start.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor as real_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import DatagramProtocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mqttx.config import parse_config
from mqttx.service import MQTTXService
from mqttx.transports.coap.listener import UDPListenerService
from mqttx.transports.coap.protocol import CoAPDatagramProtocol

CONFIG = """
persistence: {backend: memory}
listeners:
  - {name: mqtt, protocol: mqtt, endpoint: "tcp:1883:interface=127.0.0.1"}
  - {name: coap, protocol: coap, endpoint: "udp:%d:interface=127.0.0.1",
     coap: {confirmable_every: 3}}
"""


class _UDPPort:
    def __init__(self, port: int, interface: str) -> None:
        self.address = IPv4Address("UDP", interface, port or 47000)
        self.stopped = False

    def getHost(self) -> IPv4Address:
        return self.address

    def stopListening(self) -> Any:
        self.stopped = True
        return succeed(None)


class UDPReactor(MemoryReactorClock):
    """A memory reactor that also listens on UDP; port 5999 is taken."""

    def __init__(self) -> None:
        super().__init__()
        self.udp: list[tuple[int, Any, str, int, _UDPPort]] = []

    def listenUDP(self, port: int, protocol: Any, interface: str = "", maxPacketSize: int = 8192) -> _UDPPort:
        if port == 5999:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        listening = _UDPPort(port, interface)
        self.udp.append((port, protocol, interface, maxPacketSize, listening))
        return listening


class ServiceTests(SynchronousTestCase):
    def test_coap_listener_listens_and_stops(self) -> None:
        """
        A coap listener listens on its udp: port and interface with the CoAP
        protocol and its settings, logs where, and stops with the service.
        """
        reactor = UDPReactor()
        service = MQTTXService(parse_config(CONFIG % 5683, "test"), reactor)
        with capturedLogs() as events:
            service.startService()
        [(port, protocol, interface, size, listening)] = reactor.udp
        self.assertEqual((port, interface, size), (5683, "127.0.0.1", 65535))
        self.assertIsInstance(protocol, CoAPDatagramProtocol)
        self.assertEqual(protocol.config.confirmable_every, 3)
        started = {e["listener"]: e["address"] for e in events if e.get("event_id") == "listener.started"}
        self.assertEqual(started["coap"], "127.0.0.1:5683")
        self.successResultOf(service.stopService())
        self.assertTrue(listening.stopped)

    def test_port_in_use_exits(self) -> None:
        """A UDP port that cannot be bound: one critical line and SystemExit(1), as for stream listeners."""
        service = MQTTXService(parse_config(CONFIG % 5999, "test"), UDPReactor())
        with capturedLogs() as events:
            with self.assertRaises(SystemExit) as caught:
                service.startService()
        self.assertEqual(caught.exception.code, 1)
        [failed] = [e for e in events if e.get("event_id") == "listener.failed"]
        self.assertEqual((failed["listener"], failed["log_level"]), ("coap", LogLevel.critical))


class UDPListenerServiceTests(SynchronousTestCase):
    def test_bind_failure_fails_listening(self) -> None:
        """A port in use: listening fails with CannotListenError."""
        taken = real_reactor.listenUDP(0, DatagramProtocol(), interface="127.0.0.1")  # type: ignore[attr-defined]
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        service = UDPListenerService(real_reactor, port, "127.0.0.1", None)  # type: ignore[arg-type]
        service.startService()
        self.failureResultOf(service.listening, CannotListenError)


