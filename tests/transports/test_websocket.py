# -*- test-case-name: tests.transports.test_websocket -*-
"""
Tests for L{mqttx.transports.websocket}: the opening handshake (path,
subprotocols, X-Forwarded-For, admission), the MQTT byte stream in binary
frames, closes, pings, permessage-deflate and back-pressure.

Deterministic: a real handshake and masked client frames
(L{tests.transports.websocket_client}) are fed to the server protocol on a L{StringTransport}; time is a L{Clock}.
"""

from __future__ import annotations

import struct

from twisted.internet.address import IPv4Address
from twisted.logger import capturedLogs

from mqttx.config import WebSocketConfig
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.packets import (
    ConnAck,
    Disconnect,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.mqtt import ABORT_TIMEOUT
from mqttx.transports.proxy import ProxyHeaderFactory
from mqttx.transports.websocket import (
    _SMALL_FRAME,
    MAX_REQUEST_BYTES,
    MQTTWebSocketProtocol,
    _Unmasker,
    forwarded_address,
)

from .websocket_client import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    TEXT,
    TCPTransport,
    WebSocketTestCase,
    WSClient,
    connect,
    deflate,
    frame,
)


class HandshakeTests(WebSocketTestCase):
    """The opening handshake: subprotocols, path, size."""

    def test_mqtt_selected(self) -> None:
        """[MQTT-6.0.0-4] A client offering C{mqtt} among others gets C{mqtt}."""
        client = self.open_ws(protocols="wamp.2.json, mqttv3.1, mqtt")
        self.assertEqual(client.status, 101)
        self.assertEqual(client.headers["sec-websocket-protocol"], "mqtt")

    def test_mqttv31_selected(self) -> None:
        """A client offering C{mqttv3.1} (old MQTT 3.1 clients) but not C{mqtt} gets it."""
        client = self.open_ws(protocols="mqttv3.1")
        self.assertEqual(client.status, 101)
        self.assertEqual(client.headers["sec-websocket-protocol"], "mqttv3.1")

    def test_no_subprotocol_served(self) -> None:
        """A client offering no subprotocol is served without one."""
        client = self.connected(protocols=None)
        self.assertNotIn("sec-websocket-protocol", client.headers)

    def test_other_subprotocols_refused(self) -> None:
        """
        [MQTT-6.0.0-3] A client offering only other subprotocols is refused
        with 400, and counts no more as an open connection.
        """
        client = self.open_ws(protocols="wamp.2.json")
        self.assertEqual(client.status, 400)
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertEqual(self.mqtt_factory.limits.open, 0)

    def test_other_path_not_found(self) -> None:
        """Only the configured path is served: others get 404."""
        self.assertEqual(self.open_ws(path="/").status, 404)
        self.assertEqual(self.open_ws(path="/mqtt/x").status, 404)
        self.assertEqual(self.open_ws(path="/mqtt?client=1").status, 101)
        self.use_websocket(path="/ws")
        self.assertEqual(self.open_ws(path="/mqtt").status, 404)
        self.assertEqual(self.open_ws(path="/ws").status, 101)

    def test_plain_http_request(self) -> None:
        """A request without Upgrade gets 426, not a status page."""
        client = self.open_ws()
        ws = self.ws_factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        assert ws is not None
        transport = TCPTransport()
        ws.makeConnection(transport)
        ws.dataReceived(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 426 "), transport.value())
        self.assertEqual(client.status, 101)

    def test_request_too_large(self) -> None:
        """A request that does not end within L{MAX_REQUEST_BYTES} gets 431 and is not read further."""
        ws = self.ws_factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        assert ws is not None
        transport = TCPTransport()
        ws.makeConnection(transport)
        ws.dataReceived(b"GET /mqtt HTTP/1.1\r\n")
        for _ in range(MAX_REQUEST_BYTES // 1000 + 1):
            ws.dataReceived(b"X-Filler: " + b"a" * 990 + b"\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 431 "), transport.value()[:50])
        self.assertTrue(transport.disconnecting)

    def test_handshake_timeout(self) -> None:
        """A handshake not completed within the CONNECT timeout is aborted."""
        ws = self.ws_factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        assert ws is not None
        transport = TCPTransport()
        ws.makeConnection(transport)
        ws.dataReceived(b"GET /mqtt HTTP/1.1\r\n")
        self.clock.advance(self.config.connect_timeout - 0.5)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(1)
        self.assertTrue(transport.disconnecting)

    def test_one_log_line_for_a_refusal(self) -> None:
        """A refused handshake is logged once, by mqttx, not by Autobahn."""
        with capturedLogs() as events:
            self.open_ws(protocols="other")
        self.assertEqual([e.get("event_id") for e in events], ["websocket.refused"])
        self.assertEqual(events[0]["peer"], f"192.0.2.1:{self._ports}")
        self.assertEqual((events[0]["code"], events[0]["reason"]), (400, "subprotocols 'other' offered, not mqtt"))
        with capturedLogs() as events:
            self.open_ws(path="/elsewhere")
        self.assertEqual([(e["code"], e["reason"]) for e in events], [(404, "path '/elsewhere'")])


class ForwardedForTests(WebSocketTestCase):
    """C{trust_x_forwarded_for}: the client address a reverse proxy gives."""

    websocket = WebSocketConfig(trust_x_forwarded_for=True)

    def test_address(self) -> None:
        """The last entry of the header is the client's address, with or without a port."""
        cases = {
            "203.0.113.7": "203.0.113.7",
            "10.0.0.1, 203.0.113.7": "203.0.113.7",
            "203.0.113.7:4711": "203.0.113.7",
            "2001:db8::1": "2001:db8::1",
            "[2001:db8::1]:4711": "2001:db8::1",
        }
        for header, host in cases.items():
            address = forwarded_address(header)
            assert address is not None, header
            self.assertEqual((address.host, address.port), (host, 0))
        self.assertIsNone(forwarded_address("unknown"))
        self.assertIsNone(forwarded_address("203.0.113.7, _hidden"))

    def test_trusted(self) -> None:
        """A trusting listener takes the peer address (logs, auth limits) from the header."""
        client = self.connected(headers={"X-Forwarded-For": "198.51.100.1, 203.0.113.7"})
        self.assertEqual(client.mqtt.peer, "203.0.113.7:0")
        self.assertEqual(client.mqtt.transport.getPeer().host, "203.0.113.7")  # type: ignore[union-attr]

    def test_admitted_by_forwarded_address(self) -> None:
        """
        The per-address connection rate counts the forwarded address, not
        the proxy's: another client behind the same proxy is let in.
        """
        self.use_config(max_connection_rate=0.001, connection_burst=1)
        first = self.open_ws(headers={"X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(first.status, 101)
        self.assertEqual(self.open_ws(headers={"X-Forwarded-For": "203.0.113.8"}).status, 101)
        again = self.open_ws(headers={"X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(again.status, 503)
        again.lose()
        self.assertEqual(self.mqtt_factory.limits.open, 2)

    def test_bad_header(self) -> None:
        """A header whose last entry is no address is refused with 400."""
        self.assertEqual(self.open_ws(headers={"X-Forwarded-For": "unknown"}).status, 400)
        self.assertEqual(self.mqtt_factory.limits.open, 0)

    def test_no_header(self) -> None:
        """Without the header, the TCP peer (the proxy) is the address."""
        client = self.connected()
        self.assertEqual(client.mqtt.peer, f"192.0.2.1:{self._ports}")

    def test_untrusted(self) -> None:
        """A listener that does not trust the header ignores it."""
        self.use_websocket(trust_x_forwarded_for=False)
        client = self.connected(headers={"X-Forwarded-For": "203.0.113.7"})
        self.assertEqual(client.mqtt.peer, f"192.0.2.1:{self._ports}")


class ProxyProtocolTests(WebSocketTestCase):
    """An C{mqtt-ws} listener behind C{haproxy:} (PROXY protocol)."""

    def test_client_address(self) -> None:
        """
        The MQTT protocol is built with the address of the PROXY header, and
        its reading pauses reach the TCP transport under the header reader.
        """
        proxy = ProxyHeaderFactory(self.ws_factory, self.clock, "ws").buildProtocol(None)
        transport = TCPTransport()
        proxy.makeConnection(transport)
        request = (
            "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        )
        proxy.dataReceived(b"PROXY TCP4 203.0.113.9 10.0.0.1 5555 8083\r\n" + request.encode())
        ws = proxy.wrappedProtocol
        assert isinstance(ws, MQTTWebSocketProtocol)
        client = WSClient(ws, transport, 4)
        client._read_response()
        self.assertEqual(client.status, 101)
        client.send(frame(connect()))
        self.assertIsInstance(client.received()[0], ConnAck)
        self.assertEqual(client.mqtt.peer, "203.0.113.9:5555")
        client.mqtt.hold_reading(True)
        self.assertEqual(transport.producerState, "paused")


class LimitTests(WebSocketTestCase):
    """The listener's connection limits apply to WebSocket connections."""

    max_connections = 1

    def test_refused_at_accept(self) -> None:
        """Over the listener's limit, a connection is closed as accepted (no protocol)."""
        self.connected()
        self.assertIsNone(self.ws_factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1)))

    def test_refused_at_handshake(self) -> None:
        """Trusting X-Forwarded-For, the limit answers the handshake with 503."""
        self.use_websocket(trust_x_forwarded_for=True)
        self.connected()
        self.assertEqual(self.open_ws().status, 503)


class StreamTests(WebSocketTestCase):
    """[MQTT-6.0.0-2] Frames and messages carry a byte stream: their boundaries mean nothing."""

    def test_one_byte_per_message(self) -> None:
        """A CONNECT sent one byte per binary message is answered."""
        client = self.open_ws()
        for byte in connect():
            client.send(frame(bytes([byte])))
        self.assertIsInstance(client.received()[0], ConnAck)

    def test_one_byte_per_frame(self) -> None:
        """A CONNECT in a fragmented message, one byte per frame, is answered."""
        client = self.open_ws()
        data = connect()
        client.send(frame(data[:1], fin=False))
        for byte in data[1:-1]:
            client.send(frame(bytes([byte]), opcode=CONTINUATION, fin=False))
        self.assertEqual(client.received(), [])
        client.send(frame(data[-1:], opcode=CONTINUATION))
        self.assertIsInstance(client.received()[0], ConnAck)

    def test_frame_read_byte_by_byte(self) -> None:
        """The payload of a frame is handed on as it arrives, before the frame is complete."""
        client = self.open_ws()
        data = frame(connect() + encode(PingReq(), 4) + b"\x30")
        for byte in data[:-1]:
            client.send(bytes([byte]))
        self.assertEqual([type(p) for p in client.received()], [ConnAck, PingResp])

    def test_frame_with_the_request(self) -> None:
        """A CONNECT frame in the same TCP read as the opening handshake is read once it is open."""
        ws = self.ws_factory.buildProtocol(IPv4Address("TCP", "192.0.2.1", 1))
        assert ws is not None
        transport = TCPTransport()
        ws.makeConnection(transport)
        client = WSClient(ws, transport, 4)
        request = (
            "GET /mqtt HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        )
        ws.dataReceived(request.encode() + frame(connect()))
        client._read_response()
        self.assertEqual(client.status, 101)
        self.assertIsInstance(client.received()[0], ConnAck)

    def test_many_packets_in_one_frame(self) -> None:
        """CONNECT, SUBSCRIBE, PUBLISH and PINGREQ in one frame are all answered."""
        client = self.open_ws()
        stream = (
            connect()
            + encode(Subscribe(1, (Subscription("t", 0),)), 4)
            + encode(Publish("t", b"hello"), 4)
            + encode(PingReq(), 4)
        )
        client.send(frame(stream))
        packets = client.received()
        self.assertEqual([type(p) for p in packets], [ConnAck, SubAck, Publish, PingResp])
        self.assertEqual(packets[2], Publish("t", b"hello"))

    def test_packet_split_across_messages(self) -> None:
        """A PUBLISH whose bytes are split over two messages is delivered once whole."""
        client = self.connected()
        client.send_packets(Subscribe(1, (Subscription("t", 0),)))
        client.received()
        data = encode(Publish("t", b"x" * 300), 4)
        client.send(frame(data[:100]))
        self.assertEqual(client.received(), [])
        client.send(frame(data[100:]))
        self.assertEqual(client.received(), [Publish("t", b"x" * 300)])

    def test_each_read_is_a_binary_message(self) -> None:
        """What the MQTT protocol writes while handling a read goes out as one binary message."""
        client = self.connected()
        client.send_packets(PingReq(), PingReq())
        self.assertEqual(client.frames(), [(BINARY, b"\xd0\x00"), (BINARY, b"\xd0\x00")])
        client.send(frame(encode(PingReq(), 4)) + frame(encode(PingReq(), 4)))
        self.assertEqual(client.frames(), [(BINARY, b"\xd0\x00\xd0\x00")])

    def test_text_message_refused(self) -> None:
        """
        [MQTT-6.0.0-1] A text message closes the connection with 1003; its
        bytes are not read as MQTT.
        """
        client = self.open_ws()
        with capturedLogs() as events:
            client.send(frame(connect(), opcode=TEXT))
        frames = client.frames()
        self.assertEqual(frames, [(CLOSE, struct.pack("!H", 1003) + b"MQTT over WebSocket uses binary messages")])
        self.assertEqual([e.get("event_id") for e in events], ["websocket.failed"])
        # The client answers the close: the TCP connection closes.
        client.send(frame(struct.pack("!H", 1003), opcode=CLOSE))
        self.assertTrue(client.transport.disconnecting)

    def test_packet_over_max_packet_size(self) -> None:
        """
        A frame announcing more than C{max_packet_size} is not buffered: the
        codec refuses the PUBLISH in it from its fixed header, before the
        rest of the frame has arrived.
        """
        self.use_config(max_packet_size=1024)
        client = self.connected(level=5)
        # A PUBLISH of 5 MB in a 10 MB frame, of which 20 bytes are sent.
        header = b"\x30" + bytes([0x80, 0x80, 0xC0, 0x02])
        client.send(frame(header + b"\x00\x01t" + b"x" * 12, length=10_000_000))
        [(opcode, payload), close] = client.frames()
        [disconnect] = Decoder(protocol_level=5).feed(payload)
        assert isinstance(disconnect, Disconnect)
        self.assertEqual(disconnect.reason_code, ReasonCode.PACKET_TOO_LARGE)
        self.assertEqual(close, (CLOSE, struct.pack("!H", 1000)))
        self.assertLess(len(client.ws.data), 100)


class UnmaskTests(WebSocketTestCase):
    """
    Client frames are unmasked by the masker C{onFrameBegin} picks
    (Autobahn's C{applyMask} is off): these fail if Autobahn stops
    calling it, or reads its masker elsewhere.
    """

    def test_maskers(self) -> None:
        """A small frame gets an L{_Unmasker}, a larger one Autobahn's masker."""
        client = self.connected()
        for size, small in [(10, True), (_SMALL_FRAME - 1, True), (_SMALL_FRAME, False), (100_000, False)]:
            data = frame(b"\x00" * size)
            client.send(data[:20])
            masker = client.ws.current_frame_masker
            self.assertEqual(isinstance(masker, _Unmasker), small, size)
            self.assertNotEqual(type(masker).__name__, "XorMaskerNull")
            self.assertEqual(masker.pointer(), min(size, 20 - (len(data) - size)))
            client.lose()
            client = self.connected()

    def test_payloads(self) -> None:
        """
        PUBLISHes in small and large frames, read in pieces that start and
        end anywhere in the mask's four bytes, arrive whole.
        """
        client = self.connected()
        client.send_packets(Subscribe(1, (Subscription("t", 0),)))
        client.received()
        for size in (0, 1, 5, 77, _SMALL_FRAME - 10, _SMALL_FRAME, 5000, 200_000):
            payload = bytes(i * 7 % 251 for i in range(size))
            data = frame(encode(Publish("t", payload), 4))
            for cut in range(0, len(data), 997):
                client.send(data[cut : cut + 997])
            self.assertEqual(client.received(), [Publish("t", payload)], size)

    def test_unmasker(self) -> None:
        """L{_Unmasker} unmasks as RFC 6455 says, over any split of the payload."""
        mask = b"\x01\x80\xfe\x37"
        data = bytes(range(256)) * 3
        expected = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
        for cuts in ([], [1], [2, 3], [5, 6, 7, 100], [767]):
            unmasker = _Unmasker(mask)
            pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
            self.assertEqual(b"".join(unmasker.process(piece) for piece in pieces), expected)
            self.assertEqual(unmasker.pointer(), len(data))
        unmasker.reset()
        self.assertEqual(unmasker.pointer(), 0)

    def test_control_frames(self) -> None:
        """A ping's masked payload comes back unmasked in the pong; a close's code and reason are read."""
        client = self.connected()
        client.send(frame(b"ping payload", opcode=PING))
        self.assertEqual(client.frames(), [(PONG, b"ping payload")])
        client.send(frame(struct.pack("!H", 4000) + b"bye", opcode=CLOSE))
        self.assertEqual(client.ws.remoteCloseCode, 4000)
        self.assertEqual(client.ws.remoteCloseReason, "bye")


class JoinedWriteTests(WebSocketTestCase):
    """
    [MQTT-6.0.0-2] What one read causes to be written to a WebSocket
    connection is one binary message, sent when the read is done.
    """

    def subscriber(self, client_id: str) -> WSClient:
        client = self.open_ws()
        client.send(frame(connect(client_id)))
        client.send_packets(Subscribe(1, (Subscription("t", 0),)))
        self.assertEqual([type(p) for p in client.received()], [ConnAck, SubAck])
        return client

    def test_answers_of_one_read(self) -> None:
        """The answers to the packets in the frames of one read are one message, in order."""
        client = self.subscriber("c")
        client.send(
            frame(encode(PingReq(), 4) + encode(Publish("t", b"1"), 4))
            + frame(encode(Publish("t", b"2"), 4))
            + frame(encode(PingReq(), 4))
        )
        [(opcode, payload)] = client.frames()
        self.assertEqual(opcode, BINARY)
        packets = Decoder(protocol_level=4).feed(payload)
        self.assertEqual(packets, [PingResp(), Publish("t", b"1"), Publish("t", b"2"), PingResp()])

    def test_fan_out_of_a_websocket_read(self) -> None:
        """Each subscriber gets what one WebSocket publisher's read delivers as one message."""
        subscribers = [self.subscriber(f"s{i}") for i in range(3)]
        publisher = self.open_ws()
        publisher.send(frame(connect("p")))
        publisher.received()
        publisher.send(b"".join(frame(encode(Publish("t", bytes([i])), 4)) for i in range(5)))
        for client in subscribers:
            [(opcode, payload)] = client.frames()
            self.assertEqual(opcode, BINARY)
            expected = [Publish("t", bytes([i])) for i in range(5)]
            self.assertEqual(Decoder(protocol_level=4).feed(payload), expected)

    def test_fan_out_of_a_tcp_read(self) -> None:
        """A TCP publisher's read is one message to a WebSocket subscriber too."""
        subscriber = self.subscriber("s")
        publisher = self.connect_client("p")
        publisher.protocol.dataReceived(b"".join(encode(Publish("t", bytes([i])), 4) for i in range(5)))
        [(opcode, payload)] = subscriber.frames()
        self.assertEqual(opcode, BINARY)
        self.assertEqual(Decoder(protocol_level=4).feed(payload), [Publish("t", bytes([i])) for i in range(5)])

    def test_write_outside_a_read(self) -> None:
        """A write outside a read (a timer, a callback) is sent at once."""
        client = self.connected()
        client.mqtt.write(b"\xd0\x00")
        self.assertEqual(client.frames(), [(BINARY, b"\xd0\x00")])

    def test_close_in_the_same_read(self) -> None:
        """
        A close frame behind packets in the same read is answered after
        them: the answers are sent, then the close.
        """
        client = self.connected()
        client.send(frame(encode(PingReq(), 4)) + frame(struct.pack("!H", 1000), opcode=CLOSE))
        self.assertEqual(client.frames(), [(BINARY, b"\xd0\x00"), (CLOSE, struct.pack("!H", 1000))])

    def test_text_message_in_the_same_read(self) -> None:
        """A text message behind packets in the same read closes after their answers."""
        client = self.connected()
        client.send(frame(encode(PingReq(), 4)) + frame(b"x", opcode=TEXT))
        [pong, (opcode, _)] = client.frames()
        self.assertEqual((pong, opcode), ((BINARY, b"\xd0\x00"), CLOSE))

    def test_paused_subscriber(self) -> None:
        """
        A subscriber whose TCP transport is paused still counts what it is
        written while a read is handled, as on TCP: QoS 0 messages beyond
        the slow-consumer allowance (2 MB) are dropped.
        """
        subscriber = self.subscriber("s")
        producer = subscriber.transport.producer
        assert producer is not None
        producer.pauseProducing()
        publisher = self.connect_client("p")
        publisher.protocol.dataReceived(encode(Publish("t", b"x" * 1000), 4) * 3000)
        received = subscriber.received()
        self.assertGreater(len(received), 1000)
        self.assertLess(len(received), 2500)
        self.assertEqual(subscriber.transport.producerState, "paused")


class CloseTests(WebSocketTestCase):
    """MQTT closes are WebSocket closes, and the other way round."""

    def test_mqtt_close_sends_websocket_close(self) -> None:
        """
        The server's close (a keep-alive timeout) is DISCONNECT in a binary
        message then a WebSocket close 1000; the TCP connection closes once
        the client answers.
        """
        client = self.connected(level=5, keep_alive=10)
        self.clock.advance(15)
        frames = client.frames()
        self.assertEqual([opcode for opcode, _ in frames], [BINARY, CLOSE])
        [disconnect] = Decoder(protocol_level=5).feed(frames[0][1])
        assert isinstance(disconnect, Disconnect)
        self.assertEqual(disconnect.reason_code, ReasonCode.KEEP_ALIVE_TIMEOUT)
        self.assertEqual(frames[1][1], struct.pack("!H", 1000))
        self.assertFalse(client.transport.disconnecting)
        client.send(frame(struct.pack("!H", 1000), opcode=CLOSE))
        self.assertTrue(client.transport.disconnecting)

    def test_close_not_answered(self) -> None:
        """A client that does not answer the close is aborted after L{ABORT_TIMEOUT}."""
        client = self.connected(level=5, keep_alive=10)
        self.clock.advance(15)
        self.clock.advance(ABORT_TIMEOUT - 0.1)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(client.transport.disconnecting)

    def test_disconnect(self) -> None:
        """A client's DISCONNECT is answered with a WebSocket close."""
        client = self.connected()
        client.send_packets(Disconnect())
        self.assertEqual(client.frames(), [(CLOSE, struct.pack("!H", 1000))])

    def test_tcp_closed_instead_of_close(self) -> None:
        """
        A client that closes the TCP connection instead of answering the
        close leaves no timer behind.
        """
        client = self.connected()
        client.send_packets(Disconnect())
        self.assertEqual(client.frames(), [(CLOSE, struct.pack("!H", 1000))])
        client.lose()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_websocket_close_ends_the_session(self) -> None:
        """The client's WebSocket close ends its MQTT connection: the session is gone."""
        client = self.connected()
        mqtt = client.mqtt
        self.assertIn("c", self.broker.sessions)
        client.send(frame(struct.pack("!H", 1000), opcode=CLOSE))
        self.assertEqual(client.frames(), [(CLOSE, struct.pack("!H", 1000))])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertNotIn("c", self.broker.sessions)
        self.assertIsNone(mqtt._session)
        self.assertEqual(self.mqtt_factory.limits.open, 0)


class FlowTests(WebSocketTestCase):
    """Back-pressure reaches the TCP transport under the WebSocket."""

    def test_mqtt_protocol_is_the_producer(self) -> None:
        """The MQTT protocol is the push producer of the TCP transport."""
        client = self.connected()
        self.assertIs(client.transport.producer, client.mqtt)
        self.assertTrue(client.transport.streaming)

    def test_pause_and_resume_reading(self) -> None:
        """Holding a client's reading pauses the TCP transport, and resumes it."""
        client = self.connected()
        client.mqtt.hold_reading(True)
        self.assertEqual(client.transport.producerState, "paused")
        client.mqtt.hold_reading(False)
        self.assertEqual(client.transport.producerState, "producing")

    def test_full_transport_pauses(self) -> None:
        """A TCP transport that pauses its producer pauses the session and the reading."""
        client = self.connected()
        producer = client.transport.producer
        assert producer is not None
        producer.pauseProducing()
        self.assertTrue(client.mqtt.paused)
        self.assertEqual(client.transport.producerState, "paused")
        producer.resumeProducing()
        self.assertFalse(client.mqtt.paused)
        self.assertEqual(client.transport.producerState, "producing")


class PingTests(WebSocketTestCase):
    """WebSocket pings."""

    websocket = WebSocketConfig(ping_interval=10)

    def test_ping_unanswered(self) -> None:
        """The broker pings every C{ping_interval}; a client that does not answer is dropped."""
        client = self.connected()
        self.clock.advance(10)
        frames = client.frames()
        self.assertEqual([opcode for opcode, _ in frames], [PING])
        self.clock.advance(9.9)
        self.assertFalse(client.transport.disconnecting)
        self.clock.advance(0.2)
        self.assertTrue(client.transport.disconnecting)

    def test_ping_answered(self) -> None:
        """A client that answers with pong stays."""
        client = self.connected()
        for _ in range(3):
            self.clock.advance(10)
            [(opcode, payload)] = client.frames()
            self.assertEqual(opcode, PING)
            client.send(frame(payload, opcode=PONG))
        self.clock.advance(15)
        self.assertFalse(client.transport.disconnecting)

    def test_not_dropped_while_not_read(self) -> None:
        """While mqttx does not read the client, a missing pong does not drop it."""
        client = self.connected()
        client.mqtt.hold_reading(True)
        for _ in range(8):
            self.clock.advance(5)
        self.assertEqual([opcode for opcode, _ in client.frames()], [PING] * 2)
        self.assertFalse(client.transport.disconnecting)
        client.mqtt.hold_reading(False)
        for _ in range(4):
            self.clock.advance(5)
        self.assertTrue(client.transport.disconnecting)

    def test_client_ping(self) -> None:
        """A client's ping is answered with a pong."""
        self.use_websocket(ping_interval=0)
        client = self.connected()
        client.send(frame(b"hi", opcode=PING))
        self.assertEqual(client.frames(), [(PONG, b"hi")])
        self.clock.advance(100)
        self.assertEqual(client.frames(), [])


class DeflateTests(WebSocketTestCase):
    """permessage-deflate, when configured."""

    websocket = WebSocketConfig(permessage_deflate=True)
    offer = {"Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"}

    def test_accepted(self) -> None:
        """An offer is accepted; compressed packets are read."""
        client = self.open_ws(headers=self.offer)
        self.assertEqual(client.headers["sec-websocket-extensions"].split(";")[0], "permessage-deflate")
        client.send(frame(deflate(connect() + encode(PingReq(), 4)), rsv=4))
        # The server compresses too (RSV1 set on its first frame).
        self.assertTrue(client.transport.value()[client._read] & 0x40)
        self.assertEqual([type(p) for p in client.received()], [ConnAck, PingResp])

    def test_off(self) -> None:
        """Without C{permessage_deflate}, an offer is declined."""
        self.use_websocket(permessage_deflate=False)
        client = self.open_ws(headers=self.offer)
        self.assertEqual(client.status, 101)
        self.assertNotIn("sec-websocket-extensions", client.headers)

    def test_bomb(self) -> None:
        """
        A message that inflates beyond C{max_packet_size} is not inflated
        further: the connection is closed with 1009 (message too big).
        """
        self.use_config(max_packet_size=65536)
        client = self.connected(headers=self.offer)
        received: list[bytes] = []
        client.mqtt.dataReceived = received.append  # type: ignore[method-assign, assignment]
        bomb = deflate(b"\x00" * 50_000_000)
        self.assertLess(len(bomb), 100_000)
        client.send(frame(bomb, rsv=4))
        [(opcode, payload)] = client.frames()
        self.assertEqual((opcode, payload[:2]), (CLOSE, struct.pack("!H", 1009)))
        self.assertLessEqual(sum(map(len, received)), 65536)
