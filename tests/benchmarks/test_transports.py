# -*- test-case-name: tests.benchmarks.test_transports -*-
"""
Tests for the transports benchmark's pure parts: its command line, the
broker configurations it renders (with its throwaway certificates), the
RFC 6455 client framing of its load generator, the generator's MQTT
bookkeeping (window, write-off, loss and duplicate counts) on fake
transports, its figures, checks and summary.

Nothing here starts a broker or opens a socket.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import struct
import tempfile
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from benchmarks import transports
from benchmarks.brokers import CHECKOUT, broker_argv, parse_broker, render_template
from benchmarks.certs import make_server_files
from benchmarks.transports import (
    EXTRA_PORTS,
    TEMPLATES,
    Case,
    check,
    figures,
    load_transport_records,
    main,
    parse_args,
    relative_table,
    render_certificates,
    resolve_broker,
    summary_table,
)
from benchmarks.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_TEXT,
    FrameDecoder,
    WebSocketError,
    accept_value,
    check_handshake,
    encode_frame,
    handshake_request,
    mask_payload,
)
from mqttx.config import parse_config
from mqttx.mqtt.codec import Decoder
from mqttx.mqtt.packets import Connect, Subscribe

# RFC 6455 section 1.3's example key and its accept value.
RFC_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def parse_quietly(argv: list[str]) -> int:
    """
    The exit status of L{parse_args} on a bad command line (argparse's
    message to stderr is swallowed).
    """
    with redirect_stderr(io.StringIO()):
        try:
            parse_args(argv)
        except SystemExit as e:
            return int(e.code or 0)
    return 0


class CommandLineTests(SynchronousTestCase):
    """
    C{python -m benchmarks.transports} options.
    """

    def test_defaults(self) -> None:
        """
        Without options: mqttx and Mosquitto, every transport, both shapes,
        QoS 0 and 1, 3 rounds of 5 s after 1 s of warm-up.
        """
        o = parse_args([])
        self.assertEqual([b.name for b in o.brokers], ["mqttx", "mosquitto"])
        self.assertEqual(o.transports, ("tcp", "tls", "ws", "wss"))
        self.assertEqual(o.shapes, ("fan-in", "fan-out"))
        self.assertEqual(o.qos, (0, 1))
        self.assertEqual((o.rounds, o.duration, o.warmup, o.drain), (3, 5.0, 1.0, 5.0))
        self.assertEqual((o.fan, o.window, o.inflight, o.size), (10, 1000, 20, 64))
        self.assertFalse(o.smoke)
        self.assertTrue(o.pin)

    def test_smoke(self) -> None:
        """
        C{--smoke} runs mqttx alone, one round, about a second per case.
        """
        o = parse_args(["--smoke"])
        self.assertEqual([b.name for b in o.brokers], ["mqttx"])
        self.assertEqual((o.rounds, o.duration, o.warmup, o.drain), (1, 0.8, 0.2, 3.0))
        self.assertTrue(o.smoke)

    def test_smoke_with_brokers(self) -> None:
        """
        C{--smoke} with C{--brokers} smokes the brokers named.
        """
        o = parse_args(["--smoke", "-b", "mosquitto"])
        self.assertEqual([b.name for b in o.brokers], ["mosquitto"])

    def test_selection(self) -> None:
        """
        Brokers, transports, shapes and QoS are comma-separated lists;
        brokers may also be repeated. Duplicates within a list collapse.
        """
        o = parse_args(
            ["-b", "mosquitto,mqttx", "-t", "wss,tcp,wss", "-s", "fan-out", "-q", "1", "-n", "2"]
        )
        self.assertEqual([b.name for b in o.brokers], ["mosquitto", "mqttx"])
        self.assertEqual(o.transports, ("wss", "tcp"))
        self.assertEqual(o.shapes, ("fan-out",))
        self.assertEqual(o.qos, (1,))
        self.assertEqual(o.rounds, 2)
        o = parse_args(["--brokers", "mqttx", "--brokers", "before=mqttx:" + str(CHECKOUT)])
        self.assertEqual([b.name for b in o.brokers], ["mqttx", "before"])

    def test_cases_per_transport(self) -> None:
        """
        One broker start runs QoS 0 before QoS 1, fan-in before fan-out.
        """
        o = parse_args(["-t", "ws"])
        self.assertEqual(
            o.cases("ws"),
            [
                Case("ws", "fan-in", 0),
                Case("ws", "fan-out", 0),
                Case("ws", "fan-in", 1),
                Case("ws", "fan-out", 1),
            ],
        )
        self.assertEqual(Case("wss", "fan-out", 1).name, "wss/fan-out/q1")

    def test_bad_values(self) -> None:
        """
        Unknown transports, shapes or QoS, brokers this benchmark cannot
        configure, a broker given twice and impossible numbers exit with
        status 2.
        """
        for argv in (
            ["-t", "quic"],
            ["-t", ""],
            ["-s", "fan-around"],
            ["-q", "2"],
            ["-b", "127.0.0.1:1883"],
            ["-b", "amqtt -c {config}"],
            ["-b", "mqttx,mqttx"],
            ["-n", "0"],
            ["--fan", "0"],
            ["--window", "5"],
            ["--inflight", "0"],
            ["--size", "11"],
            ["--duration", "0"],
            ["--warmup", "-1"],
        ):
            self.assertEqual(parse_quietly(argv), 2, argv)


class ConfigurationTests(SynchronousTestCase):
    """
    The brokers' templates, filled with the run's certificate and ports.
    """

    def setUp(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="mqttx-test-transports-"))
        self.addCleanup(shutil.rmtree, self.folder, True)
        self.files = make_server_files(self.folder / "tls")
        self.ports = {"tls": 18002, "ws": 18003, "wss": 18004}

    def render(self, broker: str) -> str:
        text = render_certificates(TEMPLATES[broker].read_text(), self.files)
        return render_template(text, 18001, ports=self.ports)

    def test_certificate_files(self) -> None:
        """
        The authority, certificate and key are PEM files anyone can read
        (Mosquitto reads them after dropping root).
        """
        for path in (self.files.ca, self.files.cert, self.files.key):
            self.assertTrue(path.read_bytes().startswith(b"-----BEGIN "), path)
            self.assertEqual(path.stat().st_mode & 0o777, 0o644, path)
        self.assertEqual(self.files.cert.parent.stat().st_mode & 0o777, 0o755)

    def test_mqttx_template(self) -> None:
        """
        mqttx's template is a valid configuration with a listener per
        transport, TLS on two of them, every placeholder filled.
        """
        text = self.render("mqttx")
        self.assertIsNone(re.search(r"\{[a-z_]+\}", text), text)
        config = parse_config(text, "mqttx-transports.yaml")
        by_name = {listener.name: listener for listener in config.listeners}
        self.assertEqual(
            {name: (lst.protocol, lst.tls is not None) for name, lst in by_name.items()},
            {
                "mqtt": ("mqtt", False),
                "mqtts": ("mqtt", True),
                "ws": ("mqtt-ws", False),
                "wss": ("mqtt-ws", True),
            },
        )
        self.assertIn("18004", by_name["wss"].endpoint)
        tls = by_name["mqtts"].tls
        assert tls is not None
        self.assertEqual((tls.cert, tls.key), (str(self.files.cert), str(self.files.key)))

    def test_mosquitto_template(self) -> None:
        """
        Mosquitto's template opens four listeners, two of them websockets,
        two with the certificate.
        """
        text = self.render("mosquitto")
        self.assertIsNone(re.search(r"\{[a-z_]+\}", text), text)
        lines = text.splitlines()
        self.assertEqual(
            [line for line in lines if line.startswith("listener ")],
            [f"listener {p} 127.0.0.1" for p in (18001, 18002, 18003, 18004)],
        )
        self.assertEqual(lines.count("protocol websockets"), 2)
        self.assertEqual(lines.count(f"certfile {self.files.cert}"), 2)

    def test_resolve_broker(self) -> None:
        """
        mqttx and Mosquitto get this benchmark's templates.
        """
        self.assertEqual(resolve_broker("mqttx").config, TEMPLATES["mqttx"])
        self.assertEqual(resolve_broker("mosquitto").config, TEMPLATES["mosquitto"])

    def test_extra_ports_in_commands(self) -> None:
        """
        C{{port_NAME}} in a command line gets the extra port of that name;
        without extra ports, templates render as before.
        """
        spec = parse_broker("b=broker --tcp {port} --ws {port_ws}")
        argv = broker_argv(spec, 18001, None, "python", {"ws": 18003})
        self.assertEqual(argv, ["broker", "--tcp", "18001", "--ws", "18003"])
        self.assertEqual(render_template("{port} {port_ws}", 18001), "18001 {port_ws}")
        self.assertEqual(EXTRA_PORTS, ("tls", "ws", "wss"))


class HandshakeTests(SynchronousTestCase):
    """
    The WebSocket opening handshake, client side.
    """

    def answer(self, **changes: str | None) -> bytes:
        headers = {
            "Upgrade": "websocket",
            "Connection": "Upgrade",
            "Sec-WebSocket-Accept": RFC_ACCEPT,
            "Sec-WebSocket-Protocol": "mqtt",
        }
        headers.update(changes)  # type: ignore[arg-type]
        status = headers.pop("status", None) or "HTTP/1.1 101 Switching Protocols"
        lines = [status] + [f"{k}: {v}" for k, v in headers.items() if v is not None]
        return "\r\n".join(lines).encode()

    def test_accept_value(self) -> None:
        """
        RFC 6455 section 1.3's example.
        """
        self.assertEqual(accept_value(RFC_KEY), RFC_ACCEPT)

    def test_request(self) -> None:
        """
        The request upgrades to WebSocket 13 and offers the mqtt
        subprotocol [MQTT-6.0.0-3].
        """
        request = handshake_request("127.0.0.1", 18003, "/mqtt", RFC_KEY)
        self.assertTrue(request.startswith(b"GET /mqtt HTTP/1.1\r\n"))
        self.assertTrue(request.endswith(b"\r\n\r\n"))
        for header in (
            b"Host: 127.0.0.1:18003",
            b"Upgrade: websocket",
            b"Connection: Upgrade",
            b"Sec-WebSocket-Key: " + RFC_KEY.encode(),
            b"Sec-WebSocket-Version: 13",
            b"Sec-WebSocket-Protocol: mqtt",
        ):
            self.assertIn(b"\r\n" + header + b"\r\n", request)

    def test_good_answer(self) -> None:
        """
        Header names and the Upgrade value are case-insensitive (Mosquitto
        answers C{Upgrade: WebSocket}).
        """
        check_handshake(self.answer(Upgrade="WebSocket"), RFC_KEY)
        check_handshake(
            self.answer().replace(b"Sec-WebSocket-Accept", b"sec-websocket-accept"), RFC_KEY
        )

    def test_bad_answers(self) -> None:
        """
        Another status, a missing upgrade, a wrong accept value or another
        subprotocol fail the handshake.
        """
        for changes in (
            {"status": "HTTP/1.1 400 Bad Request"},
            {"status": "garbage"},
            {"Upgrade": None},
            {"Connection": "close"},
            {"Sec-WebSocket-Accept": accept_value("other")},
            {"Sec-WebSocket-Protocol": "mqttv3.1"},
            {"Sec-WebSocket-Protocol": None},
        ):
            with self.assertRaises(WebSocketError, msg=str(changes)):
                check_handshake(self.answer(**changes), RFC_KEY)


class FrameTests(SynchronousTestCase):
    """
    RFC 6455 framing: the encoder's bytes against the RFC's examples
    (section 5.7), and the decoder on them and on chunked streams.
    """

    def test_rfc_examples(self) -> None:
        """
        Section 5.7: unmasked and masked "Hello", 256 and 65536 bytes.
        """
        self.assertEqual(encode_frame(b"Hello", OP_TEXT), bytes.fromhex("810548656c6c6f"))
        self.assertEqual(
            encode_frame(b"Hello", OP_TEXT, mask=bytes.fromhex("37fa213d")),
            bytes.fromhex("818537fa213d7f9f4d5158"),
        )
        self.assertEqual(encode_frame(bytes(256))[:4], bytes.fromhex("827e0100"))
        self.assertEqual(encode_frame(bytes(65536))[:10], bytes.fromhex("827f0000000000010000"))
        self.assertEqual(len(encode_frame(bytes(65536))), 65546)

    def test_mask(self) -> None:
        """
        Masking is an XOR with the key repeated; doing it twice undoes it.
        """
        key = bytes.fromhex("37fa213d")
        self.assertEqual(mask_payload(b"Hello", key), bytes.fromhex("7f9f4d5158"))
        self.assertEqual(mask_payload(mask_payload(b"Hello", key), key), b"Hello")
        self.assertEqual(mask_payload(b"", key), b"")
        with self.assertRaises(ValueError):
            encode_frame(b"x", mask=b"abc")

    def test_decode_examples(self) -> None:
        """
        The decoder reads the RFC's frames, masked or not, and a message
        fragmented into a first frame and a continuation.
        """
        stream = (
            bytes.fromhex("810548656c6c6f")
            + bytes.fromhex("818537fa213d7f9f4d5158")
            + bytes.fromhex("010348656c")
            + bytes.fromhex("80026c6f")
            + encode_frame(b"", OP_PING)
            + encode_frame(bytes(300), OP_BINARY)
        )
        self.assertEqual(
            FrameDecoder().feed(stream),
            [
                (OP_TEXT, b"Hello"),
                (OP_TEXT, b"Hello"),
                (OP_TEXT, b"Hel"),
                (OP_CONTINUATION, b"lo"),
                (OP_PING, b""),
                (OP_BINARY, bytes(300)),
            ],
        )

    def test_incomplete_frames_wait(self) -> None:
        """
        A frame is returned only once complete; what came of it is held.
        """
        decoder = FrameDecoder()
        frame = encode_frame(bytes(70000), mask=b"abcd")
        for cut in (1, 2, 5, 9, 13, 100):
            decoder = FrameDecoder()
            self.assertEqual(decoder.feed(frame[:cut]), [])
            self.assertEqual(decoder.pending, cut)
            self.assertEqual(decoder.feed(frame[cut:]), [(OP_BINARY, bytes(70000))])
            self.assertEqual(decoder.pending, 0)

    @given(
        st.lists(
            st.tuples(st.sampled_from([OP_BINARY, OP_CLOSE]), st.binary(max_size=125)), max_size=8
        ),
        st.booleans(),
        st.data(),
    )
    def test_chunking_is_invisible(
        self, frames: list[tuple[int, bytes]], masked: bool, data: st.DataObject
    ) -> None:
        """
        However the stream is cut, the same frames come out.
        """
        stream = b"".join(
            encode_frame(p, op, mask=b"\x01\x02\x03\x04" if masked else None) for op, p in frames
        )
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
        decoder = FrameDecoder()
        out = []
        for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
            out += decoder.feed(stream[a:b])
        self.assertEqual(out, frames)

    def test_protocol_errors(self) -> None:
        """
        Reserved bits, a control frame over 125 bytes or fragmented, and a
        frame over the limit are refused.
        """
        for frame in (
            b"\xc2\x00",  # RSV1 without an extension
            b"\x89\x7e\x00\x7e" + bytes(126),  # ping of 126 bytes
            b"\x09\x00",  # fragmented ping
        ):
            with self.assertRaises(WebSocketError, msg=frame[:4].hex()):
                FrameDecoder().feed(frame)
        with self.assertRaises(WebSocketError):
            FrameDecoder(max_frame=10).feed(encode_frame(bytes(11)))


class FakeTransport(asyncio.Transport):
    """
    Collects what is written.
    """

    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.aborted = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def publish(topic: str, publisher: int, seq: int, qos: int = 0, packet_id: int = 1) -> bytes:
    """
    A PUBLISH as a broker delivers it, with a benchmark payload.
    """
    body = len(topic).to_bytes(2, "big") + topic.encode()
    if qos:
        body += packet_id.to_bytes(2, "big")
    body += struct.pack(">IQ", publisher, seq) + bytes(52)
    return bytes([0x30 | qos << 1, len(body)]) + body


class GeneratorTests(SynchronousTestCase):
    """
    The load generator's connections on fake transports, without sockets
    (an event loop only for their futures).
    """

    def setUp(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.addCleanup(self.loop.close)

    def load(self, qos: int = 0, websocket: bool = False, **options: Any) -> Any:
        opts = parse_args([])
        target = transports._Target("127.0.0.1", 18001, websocket, None)
        load = transports._Load(self.loop, target, opts, qos)
        for key, value in options.items():
            setattr(load, key, value)
        return load

    def connect(self, connection: Any) -> FakeTransport:
        t = FakeTransport()
        connection.connection_made(t)
        return t

    def test_connect_and_subscribe(self) -> None:
        """
        A subscriber sends CONNECT, then after the CONNACK its SUBSCRIBE,
        and is ready at a SUBACK granting the QoS asked for.
        """
        load = self.load(qos=1)
        sub = transports._Subscriber(load, 0, "bench/#", 10)
        t = self.connect(sub)
        sub.data_received(b"\x20\x02\x00\x00")
        decoder = Decoder(protocol_level=4)
        connect, subscribe = decoder.feed(b"".join(t.written))
        assert isinstance(connect, Connect) and isinstance(subscribe, Subscribe)
        self.assertTrue(connect.clean_start)
        self.assertEqual(connect.client_id, f"tb-{load.run_id}-s0")
        self.assertEqual(
            [(s.topic_filter, s.qos) for s in subscribe.subscriptions], [("bench/#", 1)]
        )
        self.assertFalse(sub.ready.done())
        sub.data_received(b"\x90\x03\x00\x01\x01")
        self.assertTrue(sub.ready.done())

    def test_refused(self) -> None:
        """
        A refused CONNECT or a SUBACK granting less fails the connection.
        """
        load = self.load(qos=1)
        for answer in (b"\x20\x02\x00\x05", b"\x20\x02\x00\x00\x90\x03\x00\x01\x80"):
            sub = transports._Subscriber(load, 0, "bench/#", 1)
            t = self.connect(sub)
            sub.data_received(answer)
            self.assertTrue(t.aborted)
            self.assertIsInstance(sub.ready.exception(), ConnectionError)
        self.assertEqual(len(load.errors), 2)

    def test_sequence_bookkeeping(self) -> None:
        """
        The subscriber counts messages in order, gaps (lost) and numbers
        seen again (duplicated), per publisher, across split reads; at
        QoS 1 it acknowledges every PUBLISH once per read.
        """
        load = self.load(qos=1)
        sub = transports._Subscriber(load, 0, "bench/#", 2)
        t = self.connect(sub)
        t.written.clear()
        stream = b"".join(
            [
                publish("bench/0", 0, 0, 1, 7),
                publish("bench/1", 1, 0, 1, 8),
                publish("bench/0", 0, 1, 1, 9),
                publish("bench/0", 0, 4, 1, 10),  # 2 and 3 lost
                publish("bench/0", 0, 1, 1, 11),  # seen again
            ]
        )
        sub.data_received(stream[:30])
        sub.data_received(stream[30:])
        self.assertEqual(sub.expected, [5, 1])
        self.assertEqual((sub.received, sub.gaps, sub.dups, sub.bad), (5, 2, 1, 0))
        self.assertEqual(
            b"".join(t.written), b"".join(b"\x40\x02" + bytes([0, i]) for i in range(7, 12))
        )

    def test_window_and_inflight(self) -> None:
        """
        A publisher fills its window (here 10) at QoS 0, and at QoS 1 no
        more than its in-flight limit; what the subscriber receives and
        the PUBACKs open room again.
        """
        load = self.load(qos=0, window=10, sending=True)
        sub = transports._Subscriber(load, 0, "bench/#", 1)
        pub = transports._Publisher(load, 0, "bench/0")
        load.publishers, load.subscribers = [pub], [sub]
        t = self.connect(pub)
        t.written.clear()
        pub.fill()
        self.assertEqual(pub.seq, 10)
        self.assertEqual(len(Decoder(protocol_level=4).feed(b"".join(t.written))), 10)
        pub.fill()
        self.assertEqual(pub.seq, 10)
        sub.expected[0] = 4
        pub.fill()
        self.assertEqual(pub.seq, 14)

        load = self.load(qos=1, window=100, inflight=3, sending=True)
        sub = transports._Subscriber(load, 0, "bench/#", 1)
        pub = transports._Publisher(load, 0, "bench/0")
        load.publishers, load.subscribers = [pub], [sub]
        t = self.connect(pub)
        pub.data_received(b"\x20\x02\x00\x00")
        t.written.clear()
        pub.fill()
        self.assertEqual((pub.seq, pub.outstanding), (3, 3))
        packets = Decoder(protocol_level=4).feed(b"".join(t.written))
        self.assertEqual([p.packet_id for p in packets], [1, 2, 3])  # type: ignore[union-attr]
        pub.data_received(b"\x40\x02\x00\x01\x40\x02\x00\x02")
        self.assertEqual((pub.outstanding, pub.acked), (1, 2))
        pub.fill()
        self.assertEqual((pub.seq, pub.outstanding), (5, 3))

    def test_write_off(self) -> None:
        """
        A window that stays full for L{transports.WRITE_OFF_S} is written
        off and publishing goes on.
        """
        load = self.load(qos=0, window=5, sending=True)
        sub = transports._Subscriber(load, 0, "bench/#", 1)
        pub = transports._Publisher(load, 0, "bench/0")
        load.publishers, load.subscribers = [pub], [sub]
        self.connect(pub)
        pub.fill()
        pub.fill()
        blocked = pub.blocked_since
        assert blocked is not None
        pub.blocked_since = blocked - transports.WRITE_OFF_S
        pub.fill()
        self.assertEqual((pub.seq, pub.written_off, pub.floor), (10, 5, 5))

    def test_websocket(self) -> None:
        """
        Over WebSocket the connection sends the upgrade first, CONNECT
        once it is accepted (in a masked binary frame), reads MQTT from
        binary frames however they split packets, and answers pings.
        """
        load = self.load(qos=0, websocket=True)
        sub = transports._Subscriber(load, 0, "bench/0", 1)
        t = self.connect(sub)
        self.assertTrue(t.written[0].startswith(b"GET /mqtt HTTP/1.1\r\n"))
        answer = (
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Accept: {accept_value(sub.ws_key)}\r\n"
            "Sec-WebSocket-Protocol: mqtt\r\n\r\n"
        ).encode()
        sub.data_received(answer[:40])
        sub.data_received(answer[40:] + encode_frame(b"\x20\x02"))
        frames = FrameDecoder().feed(b"".join(t.written[1:]))
        self.assertEqual([op for op, _ in frames], [OP_BINARY])
        self.assertIsInstance(Decoder(protocol_level=4).feed(frames[0][1])[0], Connect)
        self.assertEqual(t.written[1][1] & 0x80, 0x80)  # masked
        stream = publish("bench/0", 0, 0) + publish("bench/0", 0, 1)
        sub.data_received(
            encode_frame(b"\x00\x00")  # the rest of the CONNACK
            + encode_frame(b"\x90\x03\x00\x01\x00")
            + encode_frame(stream[:50])
            + encode_frame(b"ping", OP_PING)
            + encode_frame(stream[50:])
        )
        self.assertEqual((sub.received, sub.gaps, sub.dups), (2, 0, 0))
        self.assertTrue(sub.ready.done())
        self.assertIn([(0xA, b"ping")], [FrameDecoder().feed(w) for w in t.written[1:]])

    def test_websocket_refused(self) -> None:
        """
        A handshake answered with anything but the upgrade fails.
        """
        load = self.load(websocket=True)
        sub = transports._Subscriber(load, 0, "bench/0", 1)
        t = self.connect(sub)
        sub.data_received(b"HTTP/1.1 404 Not Found\r\n\r\n")
        self.assertTrue(t.aborted)
        self.assertIsInstance(sub.ready.exception(), ConnectionError)
        self.assertIn("404", load.errors[0])


def raw_run(**changes: Any) -> dict[str, Any]:
    """
    A clean run's counts as L{transports.drive} reports them.
    """
    raw: dict[str, Any] = {
        "publishers": 10,
        "subscribers": 1,
        "window_s": 5.0,
        "delivered_in_window": 500_000,
        "published": 650_000,
        "delivered": 650_000,
        "lost": 0,
        "duplicated": 0,
        "bad_payload": 0,
        "outstanding_after_drain": 0,
        "written_off": 0,
        "broker_cpu_s": 2.5,
        "self_cpu_s": 1.0,
        "broker_rss_kb": 70_000,
        "errors": [],
        "unexpected_closes": 0,
    }
    raw.update(changes)
    return raw


def record(
    broker: str, transport: str, shape: str, qos: int, rate: float, cpu: float, **extra: Any
) -> dict[str, Any]:
    """
    A JSON line of this benchmark, with the fields the summary reads.
    """
    r: dict[str, Any] = {
        "bench": "transports",
        "broker": broker,
        "transport": transport,
        "shape": shape,
        "qos": qos,
        "round": 1,
        "ok": True,
        "error": None,
        "problems": [],
        "notes": [],
        "delivered_per_s": rate,
        "broker_cpu_us_per_msg": cpu,
        "broker_rss_kb": 20_480,
        "loadavg": [0.5, 0.5, 0.5],
        "fan": 10,
        "size": 64,
        "window": 1000,
        "inflight": 20,
        "duration_s": 5.0,
    }
    r.update(extra)
    return r


class FiguresTests(SynchronousTestCase):
    """
    Figures and checks of one run.
    """

    def test_figures(self) -> None:
        """
        Rate and CPU per message are over the measured window.
        """
        self.assertEqual(
            figures(raw_run()),
            {
                "delivered_per_s": 100_000.0,
                "broker_cpu_us_per_msg": 5.0,
                "broker_cpu_pct": 50.0,
                "broker_rss_kb": 70_000,
                "gen_cpu_pct": 20.0,
                "gen_cpu_us_per_msg": 2.0,
            },
        )
        self.assertIsNone(figures(raw_run(broker_cpu_s=None))["broker_cpu_us_per_msg"])
        self.assertIsNone(figures(raw_run(delivered_in_window=0))["broker_cpu_us_per_msg"])

    def test_checks(self) -> None:
        """
        A clean run passes; loss, duplicates, unreadable payloads, missing
        PUBACKs, client errors and an empty window do not.
        """
        self.assertEqual(check(raw_run()), [])
        self.assertEqual(check(raw_run(lost=3)), ["3 lost"])
        self.assertEqual(check(raw_run(duplicated=2)), ["2 duplicated or reordered"])
        self.assertEqual(check(raw_run(bad_payload=1)), ["1 with an unreadable payload"])
        self.assertEqual(
            check(raw_run(outstanding_after_drain=4)), ["4 publishes never acknowledged"]
        )
        self.assertEqual(
            check(raw_run(errors=["s0: boom"], unexpected_closes=1)), ["client error: s0: boom"]
        )
        self.assertEqual(
            check(raw_run(unexpected_closes=2)), ["2 connection(s) closed by the broker"]
        )
        self.assertEqual(
            check(raw_run(delivered_in_window=0)), ["nothing delivered in the measured window"]
        )


class SummaryTests(SynchronousTestCase):
    """
    The summary tables.
    """

    def records(self) -> list[dict[str, Any]]:
        out = []
        for rnd, (a, b) in enumerate(((10.0, 4.0), (12.0, 5.0), (11.0, 6.0)), 1):
            out += [
                record("mqttx", "tcp", "fan-in", 0, 200_000, a / 2, round=rnd),
                record("mosquitto", "tcp", "fan-in", 0, 250_000, b / 2, round=rnd),
                record("mqttx", "wss", "fan-in", 0, 50_000, a, round=rnd),
                record("mosquitto", "wss", "fan-in", 0, 150_000, b, round=rnd),
            ]
        return out

    def test_summary_table(self) -> None:
        """
        One row per transport, shape and QoS in a fixed order; per broker
        the median (min–max) of the rounds; the CPU ratio to the first
        broker; the checks.
        """
        table = summary_table(self.records()).splitlines()
        self.assertEqual(
            table[0],
            "| transport | shape | QoS | mqttx msg/s | mqttx CPU µs/msg | mqttx RSS MB | "
            "mosquitto msg/s | mosquitto CPU µs/msg | mosquitto RSS MB | "
            "µs/msg mosquitto/mqttx | checks |",
        )
        self.assertEqual(
            table[2:],
            [
                "| tcp | fan-in | 0 | 200,000 | 5.5 (5.0–6.0) | 20.0 | 250,000 | 2.5 (2.0–3.0) "
                "| 20.0 | 0.45 | ok |",
                "| wss | fan-in | 0 | 50,000 | 11.0 (10.0–12.0) | 20.0 | 150,000 | 5.0 (4.0–6.0) "
                "| 20.0 | 0.45 | ok |",
            ],
        )

    def test_failures_in_checks(self) -> None:
        """
        A run that failed a check still counts in the figures, and the
        checks say what failed; a run that could not be made counts in
        neither.
        """
        records = [
            record("mqttx", "tcp", "fan-in", 1, 30_000, 13.0),
            record("mosquitto", "tcp", "fan-in", 1, 20_000, 14.0, ok=False, problems=["450 lost"]),
            record(
                "mosquitto",
                "tcp",
                "fan-in",
                1,
                0,
                0,
                round=2,
                ok=False,
                error="no CONNACK",
            ),
        ]
        row = summary_table(records).splitlines()[2]
        self.assertIn("| 20,000 | 14.0 |", row)
        self.assertTrue(row.endswith("| mqttx: ok; mosquitto: 2 of 2 failed: 450 lost |"), row)

    def test_generator_bound(self) -> None:
        """
        Runs whose generator used a whole CPU are counted in the checks:
        their rate is the generator's.
        """
        records = [
            record("mqttx", "ws", "fan-out", 0, 90_000, 4.0),
            record(
                "mosquitto",
                "ws",
                "fan-out",
                0,
                300_000,
                1.0,
                notes=["generator-bound: 97% of a CPU"],
            ),
        ]
        row = summary_table(records).splitlines()[2]
        self.assertTrue(
            row.endswith("| mqttx: ok; mosquitto: ok, generator-bound in 1 of 1 |"), row
        )

    def test_relative_table(self) -> None:
        """
        Each transport's CPU per message over TCP's, per broker; nothing
        without TCP runs.
        """
        self.assertEqual(
            relative_table(self.records()).splitlines()[2:],
            ["| wss | fan-in | 0 | 2.00 | 2.00 |"],
        )
        self.assertEqual(relative_table([r for r in self.records() if r["transport"] != "tcp"]), "")

    def test_summarize_saved_lines(self) -> None:
        """
        C{--summarize FILE} prints the summary of this benchmark's lines
        in a file and ignores everything else in it.
        """
        folder = Path(tempfile.mkdtemp(prefix="mqttx-test-transports-"))
        self.addCleanup(shutil.rmtree, folder, True)
        saved = folder / "runs.jsonl"
        lines = [json.dumps(r) for r in self.records()]
        saved.write_text(
            "\n".join([*lines, '{"bench": "mqttx-durable"}', "| a table |", "{not json"]) + "\n"
        )
        self.assertEqual(len(load_transport_records(saved.read_text().splitlines())), 12)
        out = io.StringIO()
        self.assertEqual(main(["--summarize", str(saved)], out=out), 0)
        text = out.getvalue()
        self.assertIn("## Transports: 12 runs, 3 round(s), fan 10, 64 B payloads", text)
        self.assertIn("QoS 1 in flight 20,", text)
        self.assertIn("| wss | fan-in | 0 | 50,000 |", text)
        self.assertIn("relative to TCP", text)
