# -*- test-case-name: tests.transports.test_websocket -*-
"""
A WebSocket client end for deterministic tests of
L{mqttx.transports.websocket}: masked client frames built by hand, the
server's frames parsed, and a broker test case with an
L{MQTTWebSocketFactory} whose protocols run on L{StringTransport}s.
"""

from __future__ import annotations

import base64
import os
import struct
import zlib
from dataclasses import replace
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from mqttx.config import WebSocketConfig
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import ConnAck, Connect, Packet
from mqttx.transports.mqtt import MQTTServerFactory, MQTTServerProtocol
from mqttx.transports.websocket import MQTTWebSocketFactory, MQTTWebSocketProtocol
from tests.helpers import PROTOCOL_NAMES, BrokerTestCase

#: Frame opcodes (RFC 6455 section 5.2).
BINARY, TEXT, CONTINUATION, CLOSE, PING, PONG = 2, 1, 0, 8, 9, 10


def frame(payload: bytes, opcode: int = BINARY, fin: bool = True, rsv: int = 0, length: int | None = None) -> bytes:
    """
    A masked client frame (RFC 6455 section 5.2). C{length} announces
    another payload length than C{len(payload)} (a frame whose rest never
    comes).
    """
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse_frames(data: bytes, inflater: Any = None) -> list[tuple[int, bytes]]:
    """
    The (opcode, payload) of each unmasked server frame in C{data};
    compressed payloads are inflated with C{inflater}.
    """
    frames = []
    while data:
        compressed, opcode, n = data[0] & 0x40, data[0] & 0x0F, data[1] & 0x7F
        at = 2
        if n == 126:
            n, at = struct.unpack("!H", data[2:4])[0], 4
        elif n == 127:
            n, at = struct.unpack("!Q", data[2:10])[0], 10
        payload = data[at : at + n]
        if compressed:
            payload = inflater.decompress(payload + b"\x00\x00\xff\xff")
        frames.append((opcode, payload))
        data = data[at + n :]
    return frames


def connect(client_id: str = "c", level: int = 4, keep_alive: int = 0) -> bytes:
    return encode(Connect(client_id, level, PROTOCOL_NAMES[level], True, keep_alive), level)


class TCPTransport(StringTransport):
    """A TCP transport as Autobahn uses it: unregistering no producer is fine."""

    def unregisterProducer(self) -> None:
        self.producer = None

    def pauseProducing(self) -> None:
        self.producerState = "paused"

    def resumeProducing(self) -> None:
        self.producerState = "producing"


class WSClient:
    """
    The client end of one WebSocket connection to the server protocol.

    @ivar status: the status code of the handshake's response.
    @ivar headers: its headers, names in lower case.
    """

    def __init__(self, ws: MQTTWebSocketProtocol, transport: TCPTransport, level: int) -> None:
        self.ws = ws
        self.transport = transport
        self.level = level
        self.status = 0
        self.headers: dict[str, str] = {}
        self._read = 0
        self._decoder = Decoder(protocol_level=level)
        self._inflater: Any = None

    def handshake(self, path: str, protocols: str | None, headers: dict[str, str]) -> None:
        lines = [
            f"GET {path} HTTP/1.1",
            "Host: broker.example:8083",
            "Upgrade: websocket",
            "Connection: Upgrade",
            "Sec-WebSocket-Version: 13",
            "Sec-WebSocket-Key: " + base64.b64encode(os.urandom(16)).decode(),
        ]
        if protocols is not None:
            lines.append(f"Sec-WebSocket-Protocol: {protocols}")
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.ws.dataReceived(("\r\n".join(lines) + "\r\n\r\n").encode())
        self._read_response()

    def _read_response(self) -> None:
        data = self.transport.value()
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return
        status, *rest = data[:end].decode().split("\r\n")
        self.status = int(status.split()[1])
        self.headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in rest)}
        self._read = end + 4
        if self.headers.get("sec-websocket-extensions", "").startswith("permessage-deflate"):
            self._inflater = zlib.decompressobj(-15)

    @property
    def mqtt(self) -> MQTTServerProtocol:
        assert self.ws.mqtt is not None
        return self.ws.mqtt

    def send(self, data: bytes) -> None:
        """Send raw bytes: frames built with L{frame}."""
        self.ws.dataReceived(data)

    def send_packets(self, *packets: Packet) -> None:
        """Send each packet in a binary message of its own."""
        for packet in packets:
            self.send(frame(encode(packet, self.level)))

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames the server wrote since the last call."""
        data = self.transport.value()
        chunk, self._read = data[self._read :], len(data)
        return parse_frames(chunk, self._inflater)

    def received(self) -> list[Packet]:
        """The MQTT packets in the binary frames the server wrote since the last call."""
        frames = self.frames()
        assert all(opcode == BINARY for opcode, _ in frames), frames
        return self._decoder.feed(b"".join(payload for _, payload in frames))

    def lose(self) -> None:
        """The TCP connection is gone."""
        self.ws.connectionLost(Failure(ConnectionDone()))


class WebSocketTestCase(BrokerTestCase):
    """A broker and an L{MQTTWebSocketFactory} for its C{ws} listener."""

    websocket = WebSocketConfig()
    max_connections = 0

    def _build(self) -> None:
        super()._build()
        self.mqtt_factory = MQTTServerFactory(self.broker, self.clock, "ws", max_connections=self.max_connections)
        self.ws_factory = MQTTWebSocketFactory(self.mqtt_factory, self.websocket)

    def use_websocket(self, **changes: Any) -> None:
        self.websocket = replace(self.websocket, **changes)
        self._build()

    def open_ws(
        self,
        path: str = "/mqtt",
        protocols: str | None = "mqtt",
        headers: dict[str, str] | None = None,
        level: int = 4,
    ) -> WSClient:
        """A connection that has sent its opening handshake."""
        self._ports += 1
        addr = IPv4Address("TCP", "192.0.2.1", self._ports)
        ws = self.ws_factory.buildProtocol(addr)
        assert ws is not None, "refused by the connection limits"
        transport = TCPTransport(peerAddress=addr)
        ws.makeConnection(transport)
        client = WSClient(ws, transport, level)
        client.handshake(path, protocols, headers or {})
        return client

    def connected(self, level: int = 4, keep_alive: int = 0, **kwargs: Any) -> WSClient:
        """A WebSocket client that has sent CONNECT and read CONNACK."""
        client = self.open_ws(level=level, **kwargs)
        self.assertEqual(client.status, 101)
        client.send(frame(connect(level=level, keep_alive=keep_alive)))
        packets = client.received()
        self.assertIsInstance(packets[0], ConnAck)
        return client


def deflate(data: bytes) -> bytes:
    """C{data} compressed as one permessage-deflate message (RFC 7692)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]
