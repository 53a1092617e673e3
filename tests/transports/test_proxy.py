# -*- test-case-name: tests.transports.test_proxy -*-
"""
Tests for L{mqttx.transports.proxy}: the PROXY header is read before the
listener's protocol exists, which is then built with the client's address.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python.filepath import FilePath

from mqttx.config import ConfigError, parse_config
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import ConnAck, Connect
from mqttx.service import MQTTXService
from mqttx.transports.mqtt import MQTTServerFactory, MQTTServerProtocol
from mqttx.transports.proxy import (
    HEADER_TIMEOUT,
    ProxyHeaderFactory,
    ProxyHeaderProtocol,
    proxied_endpoint,
)

from ..helpers import PROTOCOL_NAMES, BrokerTestCase
from ..proxyheaders import v1_header, v2_header, v2_local

EXAMPLE = FilePath(__file__).parent().parent().parent().descendant(["etc", "mqttx.yaml"])

#: The load balancer, as the listener sees it.
BALANCER = IPv4Address("TCP", "10.0.0.2", 40000)
LISTENER = IPv4Address("TCP", "10.0.0.5", 1883)


def connect_bytes(client_id: str = "c") -> bytes:
    return encode(Connect(client_id, 4, PROTOCOL_NAMES[4], True, 0, None, None, None), 4)


class Recorder(Protocol):
    """The listener's protocol in the tests without a broker."""

    def __init__(self) -> None:
        self.received = b""
        self.made_with: tuple[IAddress, IAddress] | None = None
        self.lost = False

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.made_with = (self.transport.getPeer(), self.transport.getHost())

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: Any = None) -> None:
        self.lost = True


class RecordingFactory(Factory):
    """Builds L{Recorder}s and remembers the address each was built for."""

    def __init__(self) -> None:
        self.built: list[tuple[IAddress | None, Recorder]] = []

    def buildProtocol(self, addr: IAddress | None) -> Recorder:
        protocol = Recorder()
        self.built.append((addr, protocol))
        return protocol


class HeaderTests(BrokerTestCase):
    """Reading the header, without MQTT."""

    def setUp(self) -> None:
        super().setUp()
        self.wrapped = RecordingFactory()
        self.proxy = ProxyHeaderFactory(self.wrapped, self.clock, "lb")

    def accept(self) -> tuple[ProxyHeaderProtocol, StringTransport]:
        protocol = self.proxy.buildProtocol(BALANCER)
        transport = StringTransport(hostAddress=LISTENER, peerAddress=BALANCER)
        protocol.makeConnection(transport)
        return protocol, transport

    def test_v1(self) -> None:
        """
        After a version 1 header, the protocol is built for the client's
        address, and its transport names the client and the address it
        connected to; the bytes after the header reach it.
        """
        protocol, transport = self.accept()
        protocol.dataReceived(v1_header("203.0.113.7", 56324, "192.0.2.1", 1883) + b"after")
        [(addr, recorder)] = self.wrapped.built
        client = IPv4Address("TCP", "203.0.113.7", 56324)
        self.assertEqual(addr, client)
        self.assertEqual(recorder.made_with, (client, IPv4Address("TCP", "192.0.2.1", 1883)))
        self.assertEqual(recorder.received, b"after")
        protocol.dataReceived(b" more")
        self.assertEqual(recorder.received, b"after more")
        self.assertFalse(transport.disconnecting)

    def test_v2_ipv4_and_ipv6(self) -> None:
        """Version 2 headers, IPv4 and IPv6, with a TLV after the addresses."""
        for source, family in (("203.0.113.7", IPv4Address), ("2001:db8::7", IPv6Address)):
            destination = "::1" if family is IPv6Address else "127.0.0.1"
            protocol, _ = self.accept()
            # PP2_TYPE_ALPN, as HAProxy may send it.
            tlv = b"\x01\x00\x02h2"
            protocol.dataReceived(v2_header(source, 40001, destination, 8883, tlvs=tlv) + b"x")
            addr, recorder = self.wrapped.built[-1]
            self.assertEqual(addr, family("TCP", source, 40001))
            self.assertEqual(recorder.received, b"x")

    def test_one_byte_at_a_time(self) -> None:
        """
        A header may arrive in any number of reads; nothing is built until
        it is complete.
        """
        for header in (v1_header("203.0.113.7", 1), v2_header("203.0.113.7", 1)):
            protocol, transport = self.accept()
            built = len(self.wrapped.built)
            for i in range(len(header)):
                self.assertEqual(len(self.wrapped.built), built)
                protocol.dataReceived(header[i : i + 1])
            self.assertEqual(len(self.wrapped.built), built + 1)
            self.assertEqual(self.wrapped.built[-1][0], IPv4Address("TCP", "203.0.113.7", 1))
            self.assertFalse(transport.disconnecting)

    def test_unknown_and_local_keep_the_balancer(self) -> None:
        """
        C{PROXY UNKNOWN} and the version 2 LOCAL command (health checks)
        name no client: the connection is the balancer's.
        """
        for header in (b"PROXY UNKNOWN\r\n", b"PROXY UNKNOWN ff::1 ff::2 1 2\r\n", v2_local()):
            protocol, transport = self.accept()
            protocol.dataReceived(header)
            self.assertEqual(self.wrapped.built[-1][0], BALANCER)
            self.assertFalse(transport.disconnecting)

    def test_bad_headers_closed_with_one_line(self) -> None:
        """
        A connection that does not start with a valid header is closed,
        with one warning naming the balancer's address and why; no protocol
        is built and nothing is logged as a failure.
        """
        bad = {
            "no PROXY header": connect_bytes(),
            "TLS instead": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",
            "port not a number": b"PROXY TCP4 203.0.113.7 127.0.0.1 abc 1883\r\n",
            "port out of range": b"PROXY TCP4 203.0.113.7 127.0.0.1 70000 1883\r\n",
            "not an address": b"PROXY TCP4 client.example 127.0.0.1 1 1883\r\n",
            "IPv6 as TCP4": b"PROXY TCP4 2001:db8::7 127.0.0.1 1 1883\r\n",
            "not ASCII": b"PROXY TCP4 \xff.0.0.1 127.0.0.1 1 1883\r\n",
            "unknown network": b"PROXY UDP4 203.0.113.7 127.0.0.1 1 1883\r\n",
            "addresses missing": b"PROXY TCP4 203.0.113.7\r\n",
            "no end of line": b"PROXY TCP4 " + b"1" * 120,
            "v2 version 3": v2_header("203.0.113.7", 1)[:12] + b"\x31" + v2_header("203.0.113.7", 1)[13:],
            "v2 unknown command": v2_header("203.0.113.7", 1)[:12] + b"\x2f" + v2_header("203.0.113.7", 1)[13:],
        }
        for what, data in bad.items():
            protocol, transport = self.accept()
            with capturedLogs() as events:
                protocol.dataReceived(data)
                protocol.dataReceived(b"more after it")
            self.assertTrue(transport.disconnecting, what)
            self.assertEqual(self.wrapped.built, [], what)
            self.assertEqual([e.get("event_id") for e in events], ["proxy.bad_header"], what)
            self.assertEqual(events[0]["peer"], "10.0.0.2:40000", what)
            self.assertNotIn("log_failure", events[0], what)
            self.assertTrue(events[0]["reason"], what)

    def test_silent_connection_closed(self) -> None:
        """
        A connection that sends no complete header within L{HEADER_TIMEOUT}
        is closed, with one line; nothing was built for it.
        """
        for partial in (b"", b"PROXY TCP4 203.0"):
            protocol, transport = self.accept()
            if partial:
                protocol.dataReceived(partial)
            self.clock.advance(HEADER_TIMEOUT - 0.1)
            self.assertFalse(transport.disconnecting)
            with capturedLogs() as events:
                self.clock.advance(0.1)
            self.assertTrue(transport.disconnecting)
            self.assertEqual([e.get("event_id") for e in events], ["proxy.header_timeout"])
            self.assertEqual(self.wrapped.built, [])

    def test_no_timeout_after_the_header(self) -> None:
        """Once the header is read, the timer is gone (the protocol has its own)."""
        protocol, transport = self.accept()
        protocol.dataReceived(v1_header("203.0.113.7", 1))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        protocol.connectionLost()
        self.assertTrue(self.wrapped.built[0][1].lost)

    def test_lost_before_the_header(self) -> None:
        """A connection lost before its header stops its timer; nothing else happens."""
        protocol, _ = self.accept()
        protocol.dataReceived(b"PRO")
        protocol.connectionLost()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertEqual(self.wrapped.built, [])

    def test_refused_by_the_wrapped_factory(self) -> None:
        """A factory that builds no protocol (limits) has the connection closed."""
        self.wrapped.buildProtocol = lambda addr: None  # type: ignore[method-assign,assignment,return-value]
        protocol, transport = self.accept()
        protocol.dataReceived(v1_header("203.0.113.7", 1) + b"ignored")
        self.assertTrue(transport.disconnecting)


class MQTTBehindProxyTests(BrokerTestCase):
    """An MQTT listener behind the header reader."""

    def setUp(self) -> None:
        super().setUp()
        self.proxy = ProxyHeaderFactory(self.factory, self.clock, "mqtt")

    def use_config(self, **changes: Any) -> None:
        super().use_config(**changes)
        self.proxy = ProxyHeaderFactory(self.factory, self.clock, "mqtt")

    def connect_via(self, source: str, port: int = 50000) -> tuple[StringTransport, ProxyHeaderProtocol]:
        protocol = self.proxy.buildProtocol(BALANCER)
        transport = StringTransport(hostAddress=LISTENER, peerAddress=BALANCER)
        protocol.makeConnection(transport)
        protocol.dataReceived(v1_header(source, port) + connect_bytes(f"{source}-{port}"))
        return transport, protocol

    def test_client_address_in_logs_and_peer(self) -> None:
        """
        The MQTT protocol's peer, used by the connect log line and the
        failed-authentication limiter, is the client's address.
        """
        with capturedLogs() as events:
            transport, protocol = self.connect_via("203.0.113.7", 56324)
        [ack] = Decoder(protocol_level=4).feed(transport.value())
        assert isinstance(ack, ConnAck)
        self.assertEqual(ack.reason_code, 0)
        mqtt = protocol.wrappedProtocol
        assert isinstance(mqtt, MQTTServerProtocol)
        self.assertEqual(mqtt.peer, "203.0.113.7:56324")
        [connected] = [e for e in events if e.get("event_id") == "client.connected"]
        self.assertEqual(connected["peer"], "203.0.113.7:56324")

    def test_rate_counts_each_client(self) -> None:
        """
        C{max_connection_rate} counts the clients' addresses, not the
        balancer's: a second connection of one client is refused (closed,
        nothing sent), another client's is not.
        """
        self.use_config(max_connection_rate=1.0, connection_burst=1)
        first, _ = self.connect_via("203.0.113.7", 1)
        second, _ = self.connect_via("203.0.113.7", 2)
        other, _ = self.connect_via("198.51.100.9", 1)
        self.assertTrue(first.value())
        self.assertFalse(first.disconnecting)
        self.assertEqual(second.value(), b"")
        self.assertTrue(second.disconnecting)
        self.assertTrue(other.value())
        self.assertFalse(other.disconnecting)
        self.assertEqual(self.factory.limits.refused["rate"], 1)

    def test_counts_released(self) -> None:
        """
        An admitted connection is counted until it is lost; one lost before
        its header never was.
        """
        limits = self.factory.limits
        _, protocol = self.connect_via("203.0.113.7")
        self.assertEqual(limits.open, 1)
        protocol.connectionLost()
        self.assertEqual(limits.open, 0)
        silent = self.proxy.buildProtocol(BALANCER)
        silent.makeConnection(StringTransport())
        self.assertEqual(limits.open, 0)
        silent.connectionLost()
        self.assertEqual(limits.open, 0)


class EndpointTests(BrokerTestCase):
    """C{haproxy:} endpoint descriptions in the configuration and the service."""

    def test_proxied_endpoint(self) -> None:
        self.assertEqual(proxied_endpoint("haproxy:tcp:0:interface=127.0.0.1"), "tcp:0:interface=127.0.0.1")
        self.assertEqual(proxied_endpoint("HAProxy:unix:/run/mqttx\\:1.sock"), "unix:/run/mqttx\\:1.sock")
        self.assertEqual(
            proxied_endpoint("haproxy:tcp:port=0:interface=127.0.0.1"), "tcp:port=0:interface=127.0.0.1"
        )
        self.assertIsNone(proxied_endpoint("tcp:1883"))
        self.assertIsNone(proxied_endpoint("haproxy"))

    def test_service_wraps_the_listener(self) -> None:
        """
        A listener on C{haproxy:tcp:...} listens on the TCP endpoint with
        the header reader outermost; its MQTT factory is inside.
        """
        config = parse_config(
            """
listeners:
  - {name: lb, protocol: mqtt, endpoint: "haproxy:tcp:18990:interface=127.0.0.1"}
  - {name: direct, protocol: mqtt, endpoint: "tcp:18991:interface=127.0.0.1"}
  - {name: keywords, protocol: mqtt, endpoint: "haproxy:tcp:port=18992:interface=127.0.0.1"}
persistence: {backend: memory}
""",
            "test.yaml",
        )
        reactor = MemoryReactorClock()
        service = MQTTXService(config, reactor)
        with capturedLogs():
            service.startService()
        (port, proxied, _, interface), (_, direct, _, _), (keyword_port, keywords, _, _) = reactor.tcpServers
        self.assertEqual(keyword_port, 18992)
        self.assertIsInstance(keywords, ProxyHeaderFactory)
        self.assertEqual((port, interface), (18990, "127.0.0.1"))
        assert isinstance(proxied, ProxyHeaderFactory)
        self.assertEqual(proxied.listener, "lb")
        self.assertIsInstance(proxied.wrappedFactory, MQTTServerFactory)
        self.assertIsInstance(direct, MQTTServerFactory)
        with capturedLogs():
            self.successResultOf(service.stopService())

    def test_bad_wrapped_endpoint_rejected(self) -> None:
        """The configuration check parses what C{haproxy:} wraps too."""
        with self.assertRaises(ConfigError) as caught:
            parse_config(
                'listeners:\n  - {name: lb, protocol: mqtt, endpoint: "haproxy:tcp:notaport"}\n',
                "test.yaml",
            )
        self.assertIn("haproxy:tcp:notaport", str(caught.exception))


    def test_example_listener(self) -> None:
        """The commented-out C{haproxy:} listener of the example is valid."""
        lines = EXAMPLE.getContent().decode("utf-8").splitlines()
        start = lines.index("  # - name: lb")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #  "))
        block = "\n".join(line.replace("  # ", "  ", 1) for line in lines[start:end])
        [listener] = parse_config("listeners:\n" + block, "example").listeners
        self.assertEqual(proxied_endpoint(listener.endpoint), "tcp:1884:interface=10.0.0.5")
