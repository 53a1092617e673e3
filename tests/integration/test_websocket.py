# -*- test-case-name: tests.integration.test_websocket -*-
"""
MQTT over WebSocket (section 6) end to end: paho-mqtt with
C{transport="websockets"} (3.1.1 and 5.0, ws and wss), Autobahn's own
client (permessage-deflate, silent clients, refused connections), next to
paho over TCP on the same broker; and a real C{twistd mqttx} whose YAML
configuration has C{mqtt-ws} listeners.
"""

from __future__ import annotations

import json
import re
import ssl
from dataclasses import replace
from typing import Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateResponseAccept
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, DeferredQueue, gatherResults, maybeDeferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, serverFromString
from twisted.internet.interfaces import IAddress, IListeningPort, IProtocolFactory
from twisted.internet.protocol import connectionDone
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from txaio.tx import make_logger
from zope.interface import implementer

from mqttx.broker.broker import Broker
from mqttx.config import MQTTConfig, TLSConfig, WebSocketConfig
from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.store.memory import MemoryStore
from mqttx.transports.limits import ConnectionLimits
from mqttx.transports.mqtt import MQTTServerFactory
from mqttx.transports.tls import ServerTLS
from mqttx.transports.websocket import MQTTWebSocketFactory, MQTTWebSocketProtocol

from ..tlscerts import make_authority
from .helpers import HOST, TIMEOUT, V5, V311, PahoClient, reactor
from .test_durability import BrokerProcess

PASSWORD = b"s3cret"


@implementer(IAuthenticator)
class _Users:
    """Lets in user C{alice} with L{PASSWORD}, and anonymous clients; refuses other credentials (0x86)."""

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        if username is None or (username == "alice" and password == PASSWORD):
            return succeed(0)
        return succeed(int(ReasonCode.BAD_USER_NAME_OR_PASSWORD))


class _TrackedWebSocket(MQTTWebSocketProtocol):
    """An L{MQTTWebSocketProtocol} whose end the fixture can wait for."""

    def __init__(self) -> None:
        super().__init__()
        self.gone: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.gone.callback(None)


class _TrackingWebSocketFactory(MQTTWebSocketFactory):
    """Remembers its open connections, so teardown can close every one."""

    protocol = _TrackedWebSocket

    def __init__(self, mqtt: MQTTServerFactory, websocket: WebSocketConfig) -> None:
        super().__init__(mqtt, websocket)
        self.open: set[_TrackedWebSocket] = set()

    def buildProtocol(self, addr: IAddress | None) -> MQTTWebSocketProtocol | None:  # type: ignore[override]
        proto = super().buildProtocol(addr)
        if isinstance(proto, _TrackedWebSocket):
            self.open.add(proto)
            proto.gone.addCallback(lambda _: self.open.discard(proto))
        return proto


class Brokers:
    """
    A broker with a TCP listener (L{tcp}) and a WebSocket listener (L{ws},
    with TLS if given), sharing the connection limits like a configured
    broker's listeners.
    """

    def __init__(
        self, broker: Broker, tcp: IListeningPort, ws: IListeningPort, ws_factory: _TrackingWebSocketFactory
    ) -> None:
        self.broker = broker
        self.tcp = tcp.getHost().port  # type: ignore[attr-defined]
        self.ws = ws.getHost().port  # type: ignore[attr-defined]
        self._ports = (tcp, ws)
        self._ws_factory = ws_factory

    async def stop(self) -> None:
        for port in self._ports:
            await maybeDeferred(port.stopListening)
        await self.broker.shutdown()
        left = list(self._ws_factory.open)
        for proto in left:
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]
        gone: Deferred[list[None]] = gatherResults([p.gone for p in left])
        gone.addTimeout(TIMEOUT, reactor)
        await gone


_PLAIN = WebSocketConfig()


async def start_brokers(
    case: TestCase,
    *,
    websocket: WebSocketConfig = _PLAIN,
    tls: TLSConfig | None = None,
    max_connections: int = 0,
    **overrides: Any,
) -> Brokers:
    config = replace(MQTTConfig(), **overrides)
    broker = Broker(config, clock=reactor, store=MemoryStore(), authenticator=_Users())
    await broker.start()
    limits = ConnectionLimits(config, reactor)
    tcp_factory = MQTTServerFactory(broker, reactor, "mqtt", limits=limits)
    mqtt = MQTTServerFactory(
        broker,
        reactor,
        "ws",
        max_connections=max_connections,
        limits=limits,
        certificate_username=tls is not None and tls.use_identity_as_username,
    )
    ws_factory = _TrackingWebSocketFactory(mqtt, websocket)
    served: IProtocolFactory = ws_factory if tls is None else ServerTLS(tls, "wss").wrap(ws_factory, reactor)
    endpoint = f"tcp:0:interface={HOST}"
    tcp = await serverFromString(_reactor, endpoint).listen(tcp_factory)
    ws = await serverFromString(_reactor, endpoint).listen(served)
    brokers = Brokers(broker, tcp, ws, ws_factory)
    case.addCleanup(brokers.stop)
    return brokers


class _AutobahnClient(WebSocketClientProtocol):
    """Autobahn's WebSocket client, carrying MQTT packets of our codec in binary messages."""

    log = make_logger(level="critical")

    def __init__(self) -> None:
        super().__init__()
        self.opened: Deferred[None] = Deferred()
        self.closed: Deferred[tuple[bool, int | None]] = Deferred()
        self.packets: DeferredQueue[Packet] = DeferredQueue()
        self.decoder = Decoder(protocol_level=5)

    def onOpen(self) -> None:
        self.opened.callback(None)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        for packet in self.decoder.feed(payload):
            self.packets.put(packet)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        if not self.closed.called:
            self.closed.callback((wasClean, code))

    def send(self, packet: Packet) -> None:
        self.sendMessage(encode(packet, 5), isBinary=True)

    async def expect(self, kind: type[Packet]) -> Any:
        d = self.packets.get()
        d.addTimeout(TIMEOUT, reactor)
        packet = await d
        assert isinstance(packet, kind), packet
        return packet


async def autobahn_client(case: TestCase, port: int, *, deflate: bool = False) -> _AutobahnClient:
    """An Autobahn client connected to C{port} (opening handshake not awaited), offering C{mqtt}."""
    factory = WebSocketClientFactory(f"ws://{HOST}:{port}/mqtt", protocols=["mqtt"], reactor=_reactor)
    factory.protocol = _AutobahnClient
    if deflate:
        factory.setProtocolOptions(
            perMessageCompressionOffers=[PerMessageDeflateOffer()],
            perMessageCompressionAccept=lambda response: PerMessageDeflateResponseAccept(response),
        )
    client = cast(_AutobahnClient, await TCP4ClientEndpoint(_reactor, HOST, port).connect(factory))

    async def close() -> None:
        if not client.closed.called:
            client.dropConnection(abort=True)
        await client.closed

    case.addCleanup(close)
    return client


def connect_v5(client_id: str, keep_alive: int = 60) -> Connect:
    return Connect(client_id, 5, "MQTT", True, keep_alive)


class PahoWebSocketTests(TestCase):
    """paho-mqtt over WebSocket, next to paho over TCP."""

    timeout = 30

    async def setUp(self) -> None:  # type: ignore[override]
        self.brokers = await start_brokers(self)

    def ws_client(self, client_id: str, version: Any, **kwargs: Any) -> PahoClient:
        return PahoClient(self, self.brokers.ws, client_id, version, websocket_path="/mqtt", **kwargs)

    async def exchange(self, version: Any) -> None:
        client = self.ws_client(f"ws-{version}", version)
        self.assertEqual((await client.connect()).reason_code, 0)
        self.assertEqual(await client.subscribe("ws/#", 2), 2)
        for qos in (0, 1, 2):
            await client.publish(f"ws/{qos}", b"m" * (100 * qos + 1), qos)
        received = await client.messages.get(3)
        self.assertEqual(
            [(m.topic, m.payload, m.qos) for m in received],
            [(f"ws/{qos}", b"m" * (100 * qos + 1), qos) for qos in (0, 1, 2)],
        )
        await client.disconnect()

    async def test_v311(self) -> None:
        """A paho 3.1.1 WebSocket client connects, subscribes, publishes QoS 0/1/2 and receives."""
        await self.exchange(V311)

    async def test_v5(self) -> None:
        """The same with paho 5.0."""
        await self.exchange(V5)

    async def test_large_message(self) -> None:
        """A 300 kB message, many frames' worth of TCP reads, goes through whole."""
        client = self.ws_client("big", V5)
        await client.connect()
        await client.subscribe("big", 1)
        await client.publish("big", bytes(range(256)) * 1200, 1)
        [message] = await client.messages.get()
        self.assertEqual(message.payload, bytes(range(256)) * 1200)

    async def test_tcp_and_websocket_clients(self) -> None:
        """A TCP client and a WebSocket client exchange messages both ways."""
        tcp = PahoClient(self, self.brokers.tcp, "tcp", V311)
        ws = self.ws_client("ws", V5)
        await tcp.connect()
        await ws.connect()
        await tcp.subscribe("to/tcp", 1)
        await ws.subscribe("to/ws", 1)
        await tcp.publish("to/ws", b"from tcp", 1)
        await ws.publish("to/tcp", b"from ws", 1)
        self.assertEqual([(m.topic, m.payload) for m in await ws.messages.get()], [("to/ws", b"from tcp")])
        self.assertEqual([(m.topic, m.payload) for m in await tcp.messages.get()], [("to/tcp", b"from ws")])

    async def test_bad_password(self) -> None:
        """A wrong password gets the same CONNACK over WebSocket as over TCP."""
        for version in (V311, V5):
            codes = []
            for port, path in ((self.brokers.tcp, None), (self.brokers.ws, "/mqtt")):
                client = PahoClient(self, port, f"bad-{version}-{port}", version, websocket_path=path)
                client.client.username_pw_set("alice", "wrong")
                codes.append((await client.connect()).reason_code)
            # paho reports 3.1.1's 0x04 as 0x86, like 5.0's.
            self.assertEqual(codes, [ReasonCode.BAD_USER_NAME_OR_PASSWORD] * 2, version)
        good = self.ws_client("good", V5)
        good.client.username_pw_set("alice", PASSWORD.decode())
        self.assertEqual((await good.connect()).reason_code, 0)


class AutobahnClientTests(TestCase):
    """Behaviour seen by Autobahn's WebSocket client."""

    timeout = 30

    async def test_keepalive_expiry(self) -> None:
        """
        [MQTT-3.1.2-24] A silent WebSocket client is closed after 1.5 times
        its keep-alive: DISCONNECT 0x8D, then a clean WebSocket close 1000.
        """
        brokers = await start_brokers(self)
        client = await autobahn_client(self, brokers.ws)
        await client.opened
        client.send(connect_v5("silent", keep_alive=1))
        await client.expect(ConnAck)
        # real-time: the broker's keep-alive timer (1.5 s) runs out meanwhile.
        disconnect = await client.expect(Disconnect)
        self.assertEqual(disconnect.reason_code, ReasonCode.KEEP_ALIVE_TIMEOUT)
        self.assertEqual(await client.closed, (True, 1000))

    async def test_listener_max_connections(self) -> None:
        """A WebSocket listener's max_connections closes the connection over it as it is accepted."""
        brokers = await start_brokers(self, max_connections=1)
        first = await autobahn_client(self, brokers.ws)
        await first.opened
        second = await autobahn_client(self, brokers.ws)
        was_clean, _ = await second.closed
        self.assertFalse(was_clean)
        self.assertFalse(second.opened.called)
        first.send(connect_v5("first"))
        self.assertEqual((await first.expect(ConnAck)).reason_code, 0)

    async def test_permessage_deflate(self) -> None:
        """A client offering permessage-deflate gets it, and compressed MQTT flows both ways."""
        brokers = await start_brokers(self, websocket=WebSocketConfig(permessage_deflate=True))
        client = await autobahn_client(self, brokers.ws, deflate=True)
        await client.opened
        self.assertIsNotNone(client._perMessageCompress)
        client.send(connect_v5("deflate"))
        await client.expect(ConnAck)
        client.send(Subscribe(1, (Subscription("z", 1),)))
        await client.expect(SubAck)
        payload = b"compressible " * 10_000
        client.send(Publish("z", payload, 0))
        self.assertEqual((await client.expect(Publish)).payload, payload)
        self.assertLess(client.trafficStats.incomingOctetsWireLevel, len(payload) // 10)

    async def test_permessage_deflate_off(self) -> None:
        """Without permessage_deflate, the offer is declined and MQTT flows uncompressed."""
        brokers = await start_brokers(self)
        client = await autobahn_client(self, brokers.ws, deflate=True)
        await client.opened
        self.assertIsNone(client._perMessageCompress)
        client.send(connect_v5("plain"))
        await client.expect(ConnAck)


class SecureWebSocketTests(TestCase):
    """WSS: the TLS of L{mqttx.transports.tls} under the WebSocket listener."""

    timeout = 30

    async def test_paho_wss(self) -> None:
        """paho over wss (trusting the test CA) exchanges messages with paho over TCP."""
        authority = make_authority(FilePath(self.mktemp()))
        issued = authority.issue("localhost", server=True)
        brokers = await start_brokers(self, tls=TLSConfig(cert=issued.cert, key=issued.key))
        context = ssl.create_default_context(cafile=authority.cert)
        wss = PahoClient(self, brokers.ws, "wss", V5, websocket_path="/mqtt", tls=context)
        tcp = PahoClient(self, brokers.tcp, "tcp", V311)
        self.assertEqual((await wss.connect()).reason_code, 0)
        await tcp.connect()
        await wss.subscribe("secure", 1)
        await tcp.publish("secure", b"over wss", 1)
        self.assertEqual([m.payload for m in await wss.messages.get()], [b"over wss"])

    async def test_certificate_identity(self) -> None:
        """
        Over wss with mutual TLS and C{use_identity_as_username}, the user
        name is the client certificate's common name, not CONNECT's.
        """
        authority = make_authority(FilePath(self.mktemp()))
        issued = authority.issue("localhost", server=True)
        tls = TLSConfig(
            cert=issued.cert,
            key=issued.key,
            ca=authority.cert,
            require_client_cert=True,
            use_identity_as_username=True,
        )
        brokers = await start_brokers(self, tls=tls)
        alice = authority.issue("alice")
        context = ssl.create_default_context(cafile=authority.cert)
        context.load_cert_chain(alice.cert, alice.key)
        client = PahoClient(self, brokers.ws, "cert", V5, websocket_path="/mqtt", tls=context)
        client.client.username_pw_set("mallory", "wrong")
        with capturedLogs() as events:
            self.assertEqual((await client.connect()).reason_code, 0)
        [connected] = [e for e in events if e.get("event_id") == "client.connected"]
        self.assertEqual(connected["username"], "alice")


_ADDRESS = re.compile(r"\b(\w+)=127\.0\.0\.1:(\d+)")


class ConfiguredListenerTests(TestCase):
    """C{protocol: mqtt-ws} listeners in the YAML configuration of a real C{twistd mqttx}."""

    timeout = 60

    async def test_ws_and_wss(self) -> None:
        """
        twistd serves MQTT over ws and wss (a C{tls:} block) on the
        configured path; a TCP client and both WebSocket clients share
        messages, and the plain listener's other paths are not served.
        """
        process = BrokerProcess(self)
        authority = make_authority(process.directory.child("tls"))
        issued = authority.issue("localhost", server=True)
        config = json.loads(process.config.getContent())
        config["persistence"] = {"backend": "memory"}
        endpoint = f"tcp:0:interface={HOST}"
        config["listeners"] += [
            {"name": "ws", "protocol": "mqtt-ws", "endpoint": endpoint, "path": "/broker", "ping_interval": 30},
            {
                "name": "wss",
                "protocol": "mqtt-ws",
                "endpoint": endpoint,
                "permessage_deflate": True,
                "tls": {"cert": issued.cert, "key": issued.key},
            },
        ]
        process.config.setContent(json.dumps(config).encode())
        await process.start()
        started = next(e for e in process.events() if e.get("event_id") == "service.started")
        ports = {name: int(port) for name, port in _ADDRESS.findall(started["addresses"])}

        tcp = PahoClient(self, ports["mqtt"], "tcp", V311)
        ws = PahoClient(self, ports["ws"], "ws", V5, websocket_path="/broker")
        context = ssl.create_default_context(cafile=authority.cert)
        wss = PahoClient(self, ports["wss"], "wss", V311, websocket_path="/mqtt", tls=context)
        for client in (tcp, ws, wss):
            self.assertEqual((await client.connect()).reason_code, 0)
            await client.subscribe("all", 1)
        await ws.publish("all", b"hello", 1)
        for client in (tcp, ws, wss):
            self.assertEqual([m.payload for m in await client.messages.get()], [b"hello"])

        wrong = await autobahn_client(self, ports["ws"])
        self.assertEqual(await wrong.closed, (False, 1006))
        self.assertFalse(wrong.opened.called)
        await process.stop()
        refused = [e for e in process.events() if e.get("event_id") == "websocket.refused"]
        self.assertEqual([e["code"] for e in refused], [404])
