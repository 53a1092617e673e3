# -*- test-case-name: tests.integration.test_proxy -*-
"""
Listeners behind a load balancer speaking the PROXY protocol: a broker
started from YAML with C{haproxy:} endpoints, real PROXY v1 and v2 headers
over loopback sockets, and paho-mqtt through a small relay that plays the
balancer (it prepends the header, as HAProxy's C{send-proxy} does, then
copies bytes both ways).
"""

from __future__ import annotations

import socket
import ssl
from typing import ClassVar, cast

from twisted.internet import reactor as _reactor
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.logger import ILogObserver, LogEvent, globalLogPublisher
from twisted.protocols.portforward import ProxyClient, ProxyClientFactory, ProxyFactory, ProxyServer
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase

from mqttx.config import parse_config
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import ConnAck, Connect
from mqttx.service import MQTTXService, build_components
from tests.integration.helpers import (
    HOST,
    QUIET,
    TIMEOUT,
    V5,
    V311,
    PahoClient,
    RawClient,
    open_raw,
    pause,
)
from tests.proxyheaders import v1_header, v2_header
from tests.tlscerts import make_authority

CLIENT = "203.0.113.7"
OTHER_CLIENT = "198.51.100.9"


def connect_packet(client_id: str) -> Connect:
    return Connect(client_id, 4, "MQTT", True, 60)


class _RelayClient(ProxyClient):
    """The relay's connection to the broker: the PROXY header goes first."""

    def connectionMade(self) -> None:
        server = self.peer
        assert server is not None and server.transport is not None and self.transport is not None
        relay = cast(Relay, server.factory)
        client = server.transport.getPeer()
        header = relay.make_header(relay.source, client.port)  # type: ignore[attr-defined]
        self.transport.write(header)
        super().connectionMade()


class _RelayClientFactory(ProxyClientFactory):
    protocol = _RelayClient


class _RelayServer(ProxyServer):
    clientProtocolFactory = _RelayClientFactory


class Relay(ProxyFactory):
    """
    A load balancer: each connection to it is relayed to the broker behind
    a PROXY header that names C{source} (with the client's real port) as
    the client.
    """

    protocol = _RelayServer

    def __init__(self, port: int, source: str, version: int) -> None:
        super().__init__(HOST, port)
        self.source = source
        self.make_header = v1_header if version == 1 else v2_header


class ProxyListenerTestCase(TestCase):
    """
    A broker from YAML, as twistd would build it, with the listeners of
    L{listeners} (C{haproxy:tcp:0}); L{events} collects what it logs.
    """

    timeout = 30
    listeners: ClassVar[str] = '  - {name: lb, protocol: mqtt, endpoint: "haproxy:tcp:0:interface=127.0.0.1"}\n'
    mqtt: ClassVar[str] = "{}"

    async def setUp(self) -> None:  # type: ignore[override]
        self.events: list[LogEvent] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        text = f"listeners:\n{self.listeners_yaml()}mqtt: {self.mqtt}\npersistence: {{backend: memory}}\n"
        config = parse_config(text, "proxy.yaml")
        self.service = MQTTXService(config, _reactor, components=build_components)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        await self.logged("service.started")
        self.ports = {
            e["listener"]: int(e["address"].rpartition(":")[2])
            for e in self.events
            if e.get("event_id") == "listener.started"
        }

    def listeners_yaml(self) -> str:
        """The C{listeners} entries of the configuration."""
        return self.listeners

    async def logged(self, event_id: str, count: int = 1) -> list[LogEvent]:
        """Wait until C{count} events with C{event_id} were logged; return them."""
        for _ in range(int(TIMEOUT / 0.01)):
            found = [e for e in self.events if e.get("event_id") == event_id]
            if len(found) >= count:
                return found
            await pause(0.01)  # real-time: polling the broker's log, bounded by TIMEOUT
        self.fail(f"{event_id} not logged {count} times within {TIMEOUT}s")

    async def raw(self, listener: str = "lb") -> RawClient:
        return await open_raw(self, self.ports[listener], 4)

    async def relay(self, source: str = CLIENT, version: int = 2, listener: str = "lb") -> int:
        """Start a L{Relay} to C{listener}; its port."""
        port: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(
            Relay(self.ports[listener], source, version)
        )
        self.addCleanup(port.stopListening)
        return cast(int, port.getHost().port)  # type: ignore[attr-defined]


class PlainProxyTests(ProxyListenerTestCase):
    """A plain TCP listener behind a balancer."""

    async def test_v1_header_raw_client(self) -> None:
        """
        After a PROXY v1 header, the client is admitted and the connect log
        line names the address from the header.
        """
        client = await self.raw()
        client.send_bytes(b"PROXY TCP4 203.0.113.7 127.0.0.1 56324 1883\r\n" + encode(connect_packet("v1"), 4))
        ack = await client.expect(ConnAck)
        self.assertEqual(ack.reason_code, 0)
        [event] = await self.logged("client.connected")
        self.assertEqual((event["peer"], event["listener"]), ("203.0.113.7:56324", "lb"))

    async def test_v2_header_raw_client_ipv6(self) -> None:
        """A binary v2 header naming an IPv6 client, in the same write as CONNECT."""
        client = await self.raw()
        client.send_bytes(v2_header("2001:db8::7", 40001, "::1", 1883) + encode(connect_packet("v2"), 4))
        ack = await client.expect(ConnAck)
        self.assertEqual(ack.reason_code, 0)
        [event] = await self.logged("client.connected")
        self.assertEqual(event["peer"], "[2001:db8::7]:40001")

    async def test_paho_through_the_balancer(self) -> None:
        """
        paho-mqtt (3.1.1 and 5) behind the relay: messages flow both ways
        and each client is logged with the address the balancer named.
        """
        relay_v1, relay_v2 = await self.relay(CLIENT, 1), await self.relay(OTHER_CLIENT, 2)
        subscriber = PahoClient(self, relay_v1, "sub", V5)
        self.assertEqual((await subscriber.connect()).reason_code, 0)
        self.assertEqual(await subscriber.subscribe("lb/t", 1), 1)
        publisher = PahoClient(self, relay_v2, "pub", V311)
        self.assertEqual((await publisher.connect()).reason_code, 0)
        await publisher.publish("lb/t", b"through the balancer", 1)
        received = await subscriber.messages.get_one()
        self.assertEqual((received.topic, received.payload), ("lb/t", b"through the balancer"))
        events = await self.logged("client.connected", 2)
        peers = {e["client_id"]: e["peer"].rpartition(":")[0] for e in events}
        self.assertEqual(peers, {"sub": CLIENT, "pub": OTHER_CLIENT})

    async def test_no_header_closed_and_logged(self) -> None:
        """
        A client that connects to the listener directly (no header) is
        closed without an answer, with one warning naming its address.
        """
        client = await self.raw()
        client.send(connect_packet("direct"))
        await client.expect_closed()
        self.assertEqual(client.packets.take_all(), [])
        [event] = await self.logged("proxy.bad_header")
        self.assertTrue(event["peer"].startswith("127.0.0.1:"), event["peer"])
        self.assertEqual(event["reason"], "no PROXY header")
        await pause(QUIET)  # real-time: nothing more is logged for it
        self.assertEqual(len([e for e in self.events if e.get("event_id") == "proxy.bad_header"]), 1)
        self.assertEqual([e for e in self.events if "log_failure" in e], [])

    async def test_malformed_header_closed_and_logged(self) -> None:
        """A v1 header with a port that is not a number: closed, one line, no traceback."""
        client = await self.raw()
        client.send_bytes(b"PROXY TCP4 203.0.113.7 127.0.0.1 http 1883\r\n" + encode(connect_packet("bad"), 4))
        await client.expect_closed()
        self.assertEqual(client.packets.take_all(), [])
        [event] = await self.logged("proxy.bad_header")
        self.assertIn("http", event["reason"])
        self.assertEqual([e for e in self.events if "log_failure" in e], [])


class RateBehindProxyTests(ProxyListenerTestCase):
    """C{max_connection_rate} behind a balancer counts the clients' addresses."""

    mqtt = "{max_connection_rate: 0.1, connection_burst: 1}"

    async def connect_as(self, source: str, port: int) -> RawClient:
        client = await self.raw()
        client.send_bytes(v1_header(source, port) + encode(connect_packet(f"{source}-{port}"), 4))
        return client

    async def test_one_client_limited_the_other_not(self) -> None:
        """
        Two clients behind one balancer: the second connection of the first
        is refused (closed, nothing sent), the second client is admitted.
        Counted by the balancer's address, the second client would be
        refused too.
        """
        first = await self.connect_as(CLIENT, 1)
        self.assertEqual((await first.expect(ConnAck)).reason_code, 0)
        again = await self.connect_as(CLIENT, 2)
        await again.expect_closed()
        self.assertEqual(again.packets.take_all(), [])
        other = await self.connect_as(OTHER_CLIENT, 1)
        self.assertEqual((await other.expect(ConnAck)).reason_code, 0)
        [limited] = await self.logged("connect.limited")
        self.assertEqual((limited["host"], limited["reason"]), (CLIENT, "rate"))


class TLSBehindProxyTests(ProxyListenerTestCase):
    """
    A TLS listener behind a balancer that does not terminate TLS: the
    header comes first, in the clear, then the client's TLS.
    """

    listeners = (
        '  - {name: lbs, protocol: mqtt, endpoint: "haproxy:tcp:0:interface=127.0.0.1",\n'
        "     tls: {cert: CERT, key: KEY}}\n"
    )

    async def setUp(self) -> None:  # type: ignore[override]
        # The certificates must exist before the service loads them.
        folder = FilePath(self.mktemp())
        authority = make_authority(folder)
        issued = authority.issue("broker", server=True)
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.context.load_verify_locations(authority.cert)
        self.issued = issued
        await super().setUp()

    def listeners_yaml(self) -> str:
        return self.listeners.replace("CERT", self.issued.cert).replace("KEY", self.issued.key)

    def exchange(self, first: bytes, then: bytes) -> bytes | Exception:
        """
        Send C{first} in the clear, then C{then} over TLS; what the broker
        answers over TLS, or the error. Blocking: run it in a thread.
        """
        try:
            with socket.create_connection((HOST, self.ports["lbs"]), timeout=TIMEOUT) as raw:
                raw.sendall(first)
                with self.context.wrap_socket(raw, server_hostname=HOST) as tls:
                    tls.sendall(then)
                    return tls.recv(4)
        except (OSError, ssl.SSLError) as e:
            return e

    async def test_header_then_tls(self) -> None:
        """The header is read before the TLS handshake; the client is named by it."""
        answer = await deferToThread(
            self.exchange, v1_header(CLIENT, 56324), encode(connect_packet("tls"), 4)
        )
        self.assertEqual(answer, b"\x20\x02\x00\x00")
        [event] = await self.logged("client.connected")
        self.assertEqual(event["peer"], f"{CLIENT}:56324")

    async def test_paho_over_tls_through_the_balancer(self) -> None:
        """paho-mqtt over TLS through the relay, which passes TLS through."""
        relay = await self.relay(CLIENT, 2, "lbs")
        client = PahoClient(self, relay, "paho-tls", V5, tls=self.context)
        self.assertEqual((await client.connect()).reason_code, 0)
        self.assertEqual(await client.subscribe("tls/t", 0), 0)
        await client.publish("tls/t", b"secret", 0)
        self.assertEqual((await client.messages.get_one()).payload, b"secret")
        [event] = await self.logged("client.connected")
        self.assertTrue(event["peer"].startswith(f"{CLIENT}:"), event["peer"])

    async def test_tls_without_header_refused(self) -> None:
        """
        A client that starts TLS at once (no balancer) is closed: its
        ClientHello is not a PROXY header.
        """
        answer = await deferToThread(self.exchange, b"", encode(connect_packet("direct"), 4))
        self.assertIsInstance(answer, Exception)
        [event] = await self.logged("proxy.bad_header")
        self.assertEqual(event["listener"], "lbs")



class WebSocketBehindProxyTests(ProxyListenerTestCase):
    """
    An C{mqtt-ws} listener behind a balancer: the WebSocket protocol too is
    built once the header is read, so it sees the client's address.
    """

    listeners = '  - {name: lbws, protocol: mqtt-ws, endpoint: "haproxy:tcp:0:interface=127.0.0.1"}\n'

    async def test_paho_over_websocket_through_the_balancer(self) -> None:
        relay = await self.relay(CLIENT, 1, "lbws")
        client = PahoClient(self, relay, "paho-ws", V311, websocket_path="/mqtt")
        self.assertEqual((await client.connect()).reason_code, 0)
        self.assertEqual(await client.subscribe("ws/t", 1), 1)
        await client.publish("ws/t", b"framed", 1)
        self.assertEqual((await client.messages.get_one()).payload, b"framed")
        [event] = await self.logged("client.connected")
        self.assertTrue(event["peer"].startswith(f"{CLIENT}:"), event["peer"])
