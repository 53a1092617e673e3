# -*- test-case-name: tests.broker.test_broker -*-
"""
Shared fixtures for deterministic broker tests: a L{Broker} on a
L{Clock} with a L{MemoryStore}, and L{FakeClient}s that speak MQTT to it
through real L{MQTTServerProtocol}s on L{StringTransport}s.

No sockets, no sleeps: time moves only when a test calls
C{self.clock.advance}, and a connection ends only when a test says so
(L{FakeClient.drop} for a network failure, L{FakeClient.finish_close} for
the end of a close the server started).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, TypeVar

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.broker import Broker
from mqttx.broker.session import Session
from mqttx.config import MQTTConfig
from mqttx.interfaces import IStore
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import (
    ConnAck,
    Connect,
    Disconnect,
    Packet,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.store.memory import MemoryStore
from mqttx.transports.mqtt import MQTTServerFactory, MQTTServerProtocol

P = TypeVar("P")

#: The protocol name each protocol level puts in CONNECT.
PROTOCOL_NAMES = {3: "MQIsdp", 4: "MQTT", 5: "MQTT"}


class FakeClient:
    """
    The client end of one connection to the broker under test.

    Packets are encoded with our codec at the client's level and fed to the
    server protocol's C{dataReceived}; what the server wrote is decoded with
    a L{Decoder} at the same level.

    @ivar protocol: the server-side L{MQTTServerProtocol}.
    @ivar transport: the L{StringTransport} it writes to.
    @ivar level: the protocol level this client speaks (3, 4 or 5).
    @ivar connack: the CONNACK answering this client's CONNECT, once read.
    """

    def __init__(self, protocol: MQTTServerProtocol, transport: StringTransport, level: int) -> None:
        self.protocol = protocol
        self.transport = transport
        self.level = level
        self.connack: ConnAck | None = None
        self._decoder = Decoder(protocol_level=level)
        self._read = 0
        self._pending: list[Packet] = []
        self._next_pid = 1
        #: Whether the server protocol was told its connection is gone.
        self.lost = False

    # Sending.

    def send(self, *packets: Packet) -> None:
        """Send packets to the server, each in its own chunk."""
        for packet in packets:
            self.protocol.dataReceived(encode(packet, self.level))

    def send_bytes(self, data: bytes) -> None:
        """Send raw bytes to the server."""
        self.protocol.dataReceived(data)

    def next_pid(self) -> int:
        """A fresh packet identifier for a packet this client sends."""
        pid = self._next_pid
        self._next_pid += 1
        return pid

    def publish(
        self,
        topic: str,
        payload: bytes = b"x",
        qos: int = 0,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
        packet_id: int | None = None,
        dup: bool = False,
    ) -> int | None:
        """
        Send a PUBLISH (with a fresh packet identifier for QoS > 0) and
        leave the server's answer unread.

        @return: the packet identifier used, or C{None} for QoS 0.
        """
        if qos and packet_id is None:
            packet_id = self.next_pid()
        self.send(Publish(topic, payload, qos, retain, dup, packet_id if qos else None, properties))
        return packet_id if qos else None

    def publish_acked(
        self,
        topic: str,
        payload: bytes = b"x",
        qos: int = 1,
        retain: bool = False,
        properties: Properties = NO_PROPERTIES,
    ) -> None:
        """
        Publish and complete the QoS exchange (PUBACK, or PUBREC / PUBREL /
        PUBCOMP), leaving any other packets the server sent for L{received}.
        """
        pid = self.publish(topic, payload, qos, retain, properties)
        if qos == 1:
            self.expect(PubAck)
        elif qos == 2:
            assert pid is not None
            self.expect(PubRec)
            self.send(PubRel(pid))
            self.expect(PubComp)

    def subscribe(
        self,
        topic_filter: str,
        qos: int = 0,
        *,
        no_local: bool = False,
        retain_as_published: bool = False,
        retain_handling: int = 0,
        subscription_id: int | None = None,
    ) -> SubAck:
        """
        Subscribe to one filter and return the SUBACK; packets that follow
        it (retained messages) are kept for L{received}.
        """
        props = NO_PROPERTIES if subscription_id is None else Properties(subscription_identifier=(subscription_id,))
        option = Subscription(topic_filter, qos, no_local, retain_as_published, retain_handling)
        self.send(Subscribe(self.next_pid(), (option,), props))
        return self.expect(SubAck)

    def unsubscribe(self, *topic_filters: str) -> UnsubAck:
        """Unsubscribe and return the UNSUBACK."""
        self.send(Unsubscribe(self.next_pid(), topic_filters))
        return self.expect(UnsubAck)

    def disconnect(self, reason_code: int = 0, properties: Properties = NO_PROPERTIES) -> None:
        """Send DISCONNECT, then let the connection end as the server closes it."""
        self.send(Disconnect(reason_code, properties))
        self.finish_close()

    # Receiving.

    def received(self) -> list[Packet]:
        """Every packet the server wrote since the last call, decoded."""
        data = self.transport.value()
        chunk, self._read = data[self._read :], len(data)
        packets, self._pending = self._pending + self._decoder.feed(chunk), []
        return packets

    def has_unread(self) -> bool:
        """Whether the server wrote anything not yet returned by L{received}."""
        return bool(self._pending) or len(self.transport.value()) > self._read

    def expect(self, kind: type[P]) -> P:
        """
        Read the next packet the server wrote, which must be a C{kind};
        later packets stay for L{received}.
        """
        packets = self.received()
        if not packets or not isinstance(packets[0], kind):
            raise AssertionError(f"expected {kind.__name__}, got {packets!r}")
        self._pending = packets[1:]
        return packets[0]

    def publishes(self) -> list[Publish]:
        """The packets written since the last read, all of which must be PUBLISH."""
        packets = self.received()
        for packet in packets:
            if not isinstance(packet, Publish):
                raise AssertionError(f"expected only PUBLISH, got {packets!r}")
        return packets  # type: ignore[return-value]

    def ack(self, packets: list[Publish]) -> None:
        """Complete the QoS 1 and first half of the QoS 2 exchange for C{packets}."""
        for p in packets:
            if p.packet_id is None:
                continue
            if p.qos == 1:
                self.send(PubAck(p.packet_id))
            elif p.qos == 2:
                self.send(PubRec(p.packet_id))

    # The connection's end.

    def drop(self) -> None:
        """The network connection is lost abruptly (no DISCONNECT)."""
        self.lost = True
        self.protocol.connectionLost(Failure(ConnectionLost()))

    def finish_close(self) -> None:
        """
        The server asked its transport to close: the transport reports the
        connection gone, as a real one would once its buffer drained.
        """
        if self.transport.disconnecting and not self.lost:
            self.lost = True
            self.protocol.connectionLost(Failure(ConnectionDone()))

    @property
    def disconnecting(self) -> bool:
        """Whether the server closed (or began closing) the connection."""
        return bool(self.transport.disconnecting)

    @property
    def aborted(self) -> bool:
        """Whether the server aborted the connection."""
        return bool(self.transport.disconnected)

    @property
    def session(self) -> Session | None:
        """The broker's session for this connection, while it has one."""
        return self.protocol._session


class BrokerTestCase(SynchronousTestCase):
    """
    A broker on a L{Clock} with a L{MemoryStore}, started, and a factory
    of server protocols for it. Override L{default_config} or
    L{make_broker} to change them for a whole class, or call L{use_config}
    at the start of one test.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.store: IStore = self.make_store()
        self.config = self.default_config()
        self._build()

    def _build(self) -> None:
        self.broker = self.make_broker()
        self.successResultOf(self.broker.start())
        self.factory = MQTTServerFactory(self.broker, self.clock)
        self._ports = 40000

    def default_config(self) -> MQTTConfig:
        """The broker's C{mqtt} configuration."""
        return MQTTConfig()

    def make_store(self) -> IStore:
        """The store the broker keeps sessions and retained messages in."""
        return MemoryStore()

    def make_broker(self) -> Broker:
        """The broker under test, on C{self.clock} and C{self.store}."""
        return Broker(self.config, clock=self.clock, store=self.store)

    def use_config(self, **changes: Any) -> None:
        """Rebuild the broker with some configuration changed; call before connecting."""
        self.config = replace(self.default_config(), **changes)
        self._build()

    def open_connection(self, level: int = 4) -> FakeClient:
        """A new connection that has sent nothing yet."""
        self._ports += 1
        addr = IPv4Address("TCP", "127.0.0.1", self._ports)
        proto = self.factory.buildProtocol(addr)
        assert proto is not None, "refused by the connection limits"
        transport = StringTransport(peerAddress=addr)
        proto.makeConnection(transport)
        return FakeClient(proto, transport, level)

    def connect_client(
        self,
        client_id: str = "c",
        level: int = 4,
        *,
        clean_start: bool = True,
        keep_alive: int = 0,
        will: Will | None = None,
        properties: Properties = NO_PROPERTIES,
        username: str | None = None,
        password: bytes | None = None,
    ) -> FakeClient:
        """
        Open a connection, send CONNECT and read the CONNACK into
        C{client.connack}; whatever the server sent after it stays for
        C{client.received()}.
        """
        client = self.open_connection(level)
        client.send(
            Connect(
                client_id,
                level,
                PROTOCOL_NAMES[level],
                clean_start,
                keep_alive,
                username,
                password,
                will,
                properties,
            )
        )
        client.connack = client.expect(ConnAck)
        return client

    def assertClosedWith(self, client: FakeClient, reason_code: int | None, msg: str | None = None) -> None:
        """
        Assert that the server closed C{client}'s connection after sending
        exactly one DISCONNECT with C{reason_code} (its reason string is not
        compared), or, for C{None}, without sending anything.
        """
        packets = client.received()
        if reason_code is None:
            self.assertEqual(packets, [], msg)
        else:
            codes = [(type(p).__name__, getattr(p, "reason_code", None)) for p in packets]
            self.assertEqual(codes, [("Disconnect", reason_code)], msg)
        self.assertTrue(client.disconnecting, msg)

    def assertReceived(self, client: FakeClient, expected: list[Packet]) -> None:
        """Assert that C{client} got exactly C{expected} since its last read."""
        self.assertEqual(client.received(), expected)
