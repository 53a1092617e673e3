# -*- test-case-name: tests.benchmarks.test_transports -*-
"""
MQTT over TCP, TLS, WebSocket and WebSocket over TLS, mqttx against
Mosquitto: C{python -m benchmarks.transports --help}.

For every round, transport and broker (brokers alternate within a round),
start the broker afresh with one listener per transport
(C{configs/mqttx-transports.yaml}, C{configs/mosquitto-transports.conf},
a server certificate from a throwaway CA made for the whole session), and
drive it on that transport's listener through each load case:

  - B{fan-in}: C{--fan} publishers (10), each on its own topic
    C{bench/N}, to one subscriber of C{bench/#};
  - B{fan-out}: one publisher on C{bench/0} to C{--fan} subscribers of it;

at QoS 0 and QoS 1 (publish and subscription), 64-byte payloads, MQTT
3.1.1, closed loop: at most C{--window} (1000) messages published and not
yet received by every subscriber, shared evenly by the publishers (100 for
each fan-in publisher, 1000 for the fan-out one), and at QoS 1 at most
C{--inflight} (20) unacknowledged per publisher; a window that stays full
for half a second is written off, so that a loss is counted and does not
stall the run. After C{--warmup} seconds it measures
for C{--duration} seconds the messages delivered (received by the
subscribers), the broker's CPU time (C{/proc/PID/stat}, utime + stime, all
threads) per delivered message, and its RSS; then it stops publishing,
waits up to C{--drain} seconds until everything published has arrived,
and counts what was lost or duplicated (per publisher sequence numbers in
the payloads, per subscriber).

The load generator is this process: asyncio, stdlib C{ssl} for TLS and a
minimal RFC 6455 client (L{benchmarks.wsclient}) for WebSocket, one MQTT
packet per masked binary frame as MQTT client libraries send them, each
connection's packets of one loop turn written together. It is pinned to
another CPU than the broker.

Each run prints ONE JSON line on stdout; after the last a Markdown summary
(median and min–max over the rounds). C{--smoke}: mqttx only (unless
C{--brokers} says otherwise), every case for about a second (0.2 s warm-up,
0.8 s measured), exit 1 on any loss, duplication or failure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import os
import platform
import random
import ssl
import struct
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TextIO

from benchmarks.brokers import (
    CHECKOUT,
    CONFIGS,
    BrokerError,
    BrokerSpec,
    RunningBroker,
    parse_broker,
    start_broker,
)
from benchmarks.certs import ServerFiles, make_server_files
from benchmarks.common import (
    Affinity,
    MQTTClient,
    RunOptions,
    add_run_options,
    cpu_set,
    finish,
    make_workdir,
    read_records,
    run_options,
    write_record,
)
from benchmarks.durable import connect_packet, subscribe_packet
from benchmarks.pyload import (
    cpu_busy,
    cpu_stat,
    proc_cpu_s,
    proc_rss_kb,
    remaining_length,
    self_cpu_s,
    utf8,
    varint,
)
from benchmarks.run import contention_note, git_commit, pin_prefix, raise_fd_limit
from benchmarks.summary import (
    disturbed_text,
    figure_text,
    format_ratio,
    format_stats,
    json_objects,
    load_range,
    progress_line,
    ratio,
    stats,
)
from benchmarks.wsclient import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONTINUATION,
    OP_PING,
    OP_PONG,
    FrameDecoder,
    WebSocketError,
    check_handshake,
    encode_frame,
    handshake_request,
    new_key,
)

__all__ = [
    "BENCH",
    "SHAPES",
    "TRANSPORTS",
    "Case",
    "TransportOptions",
    "check",
    "load_transport_records",
    "main",
    "parse_args",
    "relative_table",
    "render_certificates",
    "resolve_broker",
    "summary_table",
]

BENCH = "transports"
TRANSPORTS = ("tcp", "tls", "ws", "wss")
SHAPES = ("fan-in", "fan-out")
QOS_LEVELS = (0, 1)
DEFAULT_BROKERS = ("mqttx", "mosquitto")
#: Each transport's listener: the broker's main port (tcp) or an extra one.
EXTRA_PORTS = ("tls", "ws", "wss")
TEMPLATES = {
    "mqttx": CONFIGS / "mqttx-transports.yaml",
    "mosquitto": CONFIGS / "mosquitto-transports.conf",
}
WS_PATH = "/mqtt"
#: Payload header: publisher index and sequence number.
PAYLOAD_HEADER = struct.Struct(">IQ")
DISCONNECT = b"\xe0\x00"
#: A WebSocket close frame's payload: 1000, normal closure.
_CLOSE_NORMAL = b"\x03\xe8"
#: The longest HTTP answer to the opening handshake read.
_MAX_HANDSHAKE = 65536
#: A publisher whose window stayed full this long writes it off (what it
#: waits for was lost), as mqload and pyload do, so that a loss shows as a
#: loss and does not stall the publisher for the rest of the run.
WRITE_OFF_S = 0.5
#: How often the publishers are refilled without a read to prompt it.
_TICK_S = 0.05
#: Generator CPU (percent of one CPU) from which a run is noted as bound
#: by the generator: its rate is then the generator's, not the broker's
#: (the broker's CPU per message still holds).
GENERATOR_BOUND_PCT = 90.0


@dataclass(frozen=True, slots=True)
class Case:
    """
    One load on one transport.
    """

    transport: str
    shape: str
    qos: int

    @property
    def name(self) -> str:
        return f"{self.transport}/{self.shape}/q{self.qos}"


@dataclass(frozen=True, slots=True)
class TransportOptions(RunOptions):
    """
    The command line, checked.
    """

    brokers: tuple[BrokerSpec, ...]
    transports: tuple[str, ...]
    shapes: tuple[str, ...]
    qos: tuple[int, ...]
    rounds: int
    fan: int
    window: int
    inflight: int
    size: int
    duration: float
    warmup: float
    drain: float
    smoke: bool

    def cases(self, transport: str) -> list[Case]:
        """The load cases run on one broker start, in order."""
        return [Case(transport, s, q) for q in self.qos for s in self.shapes]


def _choices(allowed: Sequence[str]) -> Any:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
        bad = [v for v in values if v not in allowed]
        if not values or bad:
            raise argparse.ArgumentTypeError(
                f"expected some of {', '.join(allowed)} separated by commas, got {text!r}"
            )
        return values

    return parse


def _qos_list(text: str) -> tuple[int, ...]:
    values = _choices(("0", "1"))(text)
    return tuple(int(v) for v in values)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.transports",
        description=(
            "MQTT over TCP, TLS, WebSocket and WSS: delivered messages per second and broker CPU "
            "microseconds per delivered message, fan-in and fan-out at QoS 0 and 1, mqttx "
            "against Mosquitto. One JSON line per run on stdout, then a summary table."
        ),
        epilog="See benchmarks/README.md.",
    )
    p.add_argument(
        "-b",
        "--brokers",
        action="append",
        default=[],
        metavar="B[,B]",
        help="brokers: mqttx, mqttx:PATH (another checkout; name it NAME=mqttx:PATH), mosquitto "
        "(repeatable or comma-separated; default mqttx,mosquitto; smoke: mqttx)",
    )
    p.add_argument(
        "-t",
        "--transports",
        type=_choices(TRANSPORTS),
        default=TRANSPORTS,
        metavar="T[,T]",
        help="transports (default tcp,tls,ws,wss)",
    )
    p.add_argument(
        "-s",
        "--shapes",
        type=_choices(SHAPES),
        default=SHAPES,
        metavar="S[,S]",
        help="load shapes (default fan-in,fan-out)",
    )
    p.add_argument(
        "-q", "--qos", type=_qos_list, default=QOS_LEVELS, metavar="Q[,Q]", help="QoS (default 0,1)"
    )
    p.add_argument("-n", "--rounds", type=int, default=None, help="rounds (default 3; smoke 1)")
    p.add_argument(
        "--fan",
        type=int,
        default=10,
        help="publishers of fan-in, subscribers of fan-out (default 10)",
    )
    p.add_argument(
        "--window",
        type=int,
        default=1000,
        help="messages published and not yet received by every subscriber, at most, shared "
        "evenly by the publishers (default 1000: 100 per fan-in publisher)",
    )
    p.add_argument(
        "--inflight",
        type=int,
        default=20,
        help="unacknowledged QoS 1 messages per publisher (default 20, Mosquitto's Receive Maximum)",
    )
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64, at least 12)")
    p.add_argument(
        "--duration", type=float, help="measured seconds per case (default 5; smoke 0.8)"
    )
    p.add_argument("--warmup", type=float, help="warm-up seconds (default 1; smoke 0.2)")
    p.add_argument(
        "--drain", type=float, help="longest wait for what is in flight (default 5; smoke 3)"
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="every case about a second, mqttx only unless --brokers; exit 1 on any problem",
    )
    add_run_options(p)
    return p


def resolve_broker(text: str) -> BrokerSpec:
    """
    A broker of this benchmark: mqttx (this or another checkout) or
    Mosquitto, with its transports template.

    @raise BrokerError: for anything else (an external broker or another
        command has no listener per transport that this benchmark knows).
    """
    spec = parse_broker(text)
    if spec.kind == "mqttx":
        return replace(spec, config=TEMPLATES["mqttx"])
    if spec.kind == "command" and spec.command[:1] == ("mosquitto",):
        return replace(spec, config=TEMPLATES["mosquitto"])
    raise BrokerError(
        f"{text!r}: this benchmark runs mqttx (mqttx, mqttx:PATH) and mosquitto, "
        "whose listeners it configures"
    )


def parse_args(argv: Sequence[str] | None = None) -> TransportOptions:
    """
    Parse and check the command line.

    @raise SystemExit: (status 2, via argparse) on a bad command line.
    """
    parser = _parser()
    a = parser.parse_args(argv)
    smoke = bool(a.smoke)
    names = [n.strip() for value in a.brokers for n in value.split(",") if n.strip()]
    if not names:
        names = ["mqttx"] if smoke else list(DEFAULT_BROKERS)
    brokers: list[BrokerSpec] = []
    for name in names:
        try:
            spec = resolve_broker(name)
        except BrokerError as e:
            parser.error(str(e))
        if any(b.name == spec.name for b in brokers):
            parser.error(f"broker {spec.name!r} given twice; name one NAME=...")
        brokers.append(spec)
    rounds = a.rounds if a.rounds is not None else (1 if smoke else 3)
    duration = a.duration if a.duration is not None else (0.8 if smoke else 5.0)
    warmup = a.warmup if a.warmup is not None else (0.2 if smoke else 1.0)
    drain = a.drain if a.drain is not None else (3.0 if smoke else 5.0)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if not 1 <= a.fan <= 1000:
        parser.error("--fan must be between 1 and 1000")
    if not a.fan <= a.window <= 1_000_000:
        parser.error("--window must be between --fan and 1000000")
    if not 1 <= a.inflight <= 65_535:
        parser.error("--inflight must be between 1 and 65535")
    if not PAYLOAD_HEADER.size <= a.size <= 65_536:
        parser.error(f"--size must be between {PAYLOAD_HEADER.size} and 65536")
    if duration <= 0 or warmup < 0 or drain < 0:
        parser.error("--duration must be positive, --warmup and --drain not negative")
    return TransportOptions(
        brokers=tuple(brokers),
        transports=tuple(a.transports),
        shapes=tuple(a.shapes),
        qos=tuple(a.qos),
        rounds=rounds,
        fan=a.fan,
        window=a.window,
        inflight=a.inflight,
        size=a.size,
        duration=duration,
        warmup=warmup,
        drain=drain,
        smoke=smoke,
        **run_options(a),
    )


def render_certificates(template: str, files: ServerFiles) -> str:
    """
    Fill C{{certfile}}, C{{keyfile}} and C{{cafile}} into a broker's
    template; the ports and the host are left for the runner.
    """
    return (
        template.replace("{certfile}", str(files.cert))
        .replace("{keyfile}", str(files.key))
        .replace("{cafile}", str(files.ca))
    )


# --- the load generator ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    host: str
    port: int
    websocket: bool
    tls: ssl.SSLContext | None


class _Load:
    """
    What the connections of one case share: settings, phase flags, the
    publishers and subscribers, and the refill scheduled once per loop
    turn.
    """

    def __init__(
        self, loop: asyncio.AbstractEventLoop, target: _Target, opts: TransportOptions, qos: int
    ) -> None:
        self.loop = loop
        self.target = target
        self.qos = qos
        self.window = opts.window  # per publisher: set by drive()
        self.inflight = opts.inflight
        self.size = opts.size
        self.rng = random.Random()
        self.run_id = f"{self.rng.getrandbits(32):08x}"
        self.sending = False
        self.closing = False
        self.fill_scheduled = False
        self.publishers: list[_Publisher] = []
        self.subscribers: list[_Subscriber] = []
        self.errors: list[str] = []
        self.unexpected_closes = 0
        self.cipher: str | None = None

    def kick(self) -> None:
        """Refill the publishers once this loop turn's reads are handled."""
        if self.sending and not self.fill_scheduled:
            self.fill_scheduled = True
            self.loop.call_soon(self.fill_all)

    def fill_all(self) -> None:
        self.fill_scheduled = False
        for p in self.publishers:
            p.fill()

    def tick(self) -> None:
        """Refill now and then, for the write-off of a window nothing answers."""
        if self.sending:
            self.fill_all()
            self.loop.call_later(_TICK_S, self.tick)


class _Connection(MQTTClient):
    """
    One MQTT connection over TCP or TLS, with WebSocket framing if the
    target wants it: buffers the MQTT byte stream into packets for
    L{packet}, and frames what L{send} is given.
    """

    load: _Load

    def __init__(self, load: _Load, client_id: str) -> None:
        self.load = load
        self.client_id = client_id
        self.transport: asyncio.Transport | None = None
        self.ws = load.target.websocket
        self.decoder = FrameDecoder() if self.ws else None
        self.ws_key = new_key(load.rng) if self.ws else ""
        self.handshaking = self.ws
        #: The handshake's HTTP answer, as far as it came.
        self.answer = b""
        self.rest = b""
        self.ready: asyncio.Future[None] = load.loop.create_future()
        self.closed: asyncio.Future[None] = load.loop.create_future()

    # asyncio's side

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.load.cipher is None:
            cipher = transport.get_extra_info("cipher")
            if cipher:
                self.load.cipher = f"{cipher[1]} {cipher[0]}"
        if self.ws:
            target = self.load.target
            transport.write(handshake_request(target.host, target.port, WS_PATH, self.ws_key))
        else:
            transport.write(connect_packet(self.client_id, clean=True))

    def closed_by_broker(self, exc: Exception | None) -> None:
        self.load.errors.append(f"{self.client_id}: connection closed by the broker ({exc})")

    def data_received(self, data: bytes) -> None:
        if self.decoder is not None:
            if self.handshaking:
                head = self.answer + data
                end = head.find(b"\r\n\r\n")
                if end < 0:
                    self.answer = head
                    if len(head) > _MAX_HANDSHAKE:
                        self.fail("no end to the WebSocket handshake's answer")
                    return
                try:
                    check_handshake(head[:end], self.ws_key)
                except WebSocketError as e:
                    self.fail(str(e))
                    return
                self.handshaking = False
                self.answer = b""
                self.send([connect_packet(self.client_id, clean=True)])
                data = head[end + 4 :]
                if not data:
                    return
            try:
                frames = self.decoder.feed(data)
            except WebSocketError as e:
                self.fail(str(e))
                return
            chunks = []
            for opcode, payload in frames:
                if opcode == OP_BINARY or opcode == OP_CONTINUATION:
                    chunks.append(payload)
                elif opcode == OP_PING:
                    self.send_frame(payload, OP_PONG)
                elif opcode == OP_CLOSE:
                    if not self.load.closing:
                        code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
                        self.fail(f"WebSocket closed by the broker, code {code}")
                    return
                elif opcode != OP_PONG:
                    self.fail(f"unexpected WebSocket opcode {opcode}")
                    return
            if not chunks:
                return
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.mqtt_received(data)

    # MQTT

    def mqtt_received(self, data: bytes) -> None:
        if self.rest:
            data = self.rest + data
        n = len(data)
        pos = 0
        packet = self.packet
        while n - pos >= 2:
            first = data[pos]
            b = data[pos + 1]
            if b < 0x80:
                length, header = b, 2
            else:
                try:
                    length, i = remaining_length(data, pos + 1, n)
                except ValueError as e:
                    self.fail(str(e))
                    return
                if length < 0:
                    break
                header = i - pos
            end = pos + header + length
            if end > n:
                break
            packet(first, data, pos + header, end)
            pos = end
        self.rest = data[pos:] if pos < n else b""
        self.after_read()

    def packet(self, first: int, data: bytes, start: int, end: int) -> None:
        raise NotImplementedError

    def after_read(self) -> None:
        pass

    def send(self, packets: list[bytes]) -> None:
        """
        Write packets, each in a masked binary frame on WebSocket, in one
        write.
        """
        t = self.transport
        if t is None:
            return
        if self.ws:
            bits = self.load.rng.getrandbits
            t.write(
                b"".join(
                    [encode_frame(p, OP_BINARY, bits(32).to_bytes(4, "little")) for p in packets]
                )
            )
        else:
            t.write(packets[0] if len(packets) == 1 else b"".join(packets))

    def send_frame(self, payload: bytes, opcode: int) -> None:
        if self.transport is not None:
            mask = self.load.rng.getrandbits(32).to_bytes(4, "little")
            self.transport.write(encode_frame(payload, opcode, mask))

    def disconnect(self) -> None:
        if self.transport is None:
            return
        self.send([DISCONNECT])
        if self.ws:
            self.send_frame(_CLOSE_NORMAL, OP_CLOSE)
        self.transport.close()


class _Publisher(_Connection):
    """
    Publishes to its own topic within the window (and at QoS 1 the
    in-flight limit), the payload naming its index and sequence number.
    """

    def __init__(self, load: _Load, index: int, topic: str) -> None:
        super().__init__(load, f"tb-{load.run_id}-p{index}")
        self.index = index
        name = utf8(topic)
        qos = load.qos
        self.head = bytes([0x30 | (qos << 1)]) + varint(len(name) + 2 * qos + load.size) + name
        self.pad = bytes(load.size - PAYLOAD_HEADER.size)
        self.seq = 0
        self.outstanding = 0
        self.acked = 0
        self.next_id = 1
        #: Sequence numbers below it no longer hold the window (written off).
        self.floor = 0
        self.written_off = 0
        self.blocked_since: float | None = None

    def packet(self, first: int, data: bytes, start: int, end: int) -> None:
        if first == 0x40:  # PUBACK
            self.outstanding -= 1
            self.acked += 1
        elif first == 0x20:
            if self.connack(data[start:end]) and not self.ready.done():
                self.ready.set_result(None)
        else:
            self.fail(f"unexpected packet {first:#04x}")

    def after_read(self) -> None:
        if self.load.qos:
            self.load.kick()

    def fill(self) -> None:
        load = self.load
        if not load.sending or self.transport is None:
            return
        index = self.index
        low = max(self.floor, min(s.expected[index] for s in load.subscribers))
        room = load.window - (self.seq - low)
        if room <= 0:
            now = time.monotonic()
            if self.blocked_since is None:
                self.blocked_since = now
                return
            if now - self.blocked_since < WRITE_OFF_S:
                return
            self.written_off += self.seq - low
            self.floor = self.seq
            room = load.window
        self.blocked_since = None
        if load.qos:
            room = min(room, load.inflight - self.outstanding)
        if room <= 0:
            return
        head, pad, pack = self.head, self.pad, PAYLOAD_HEADER.pack
        seq = self.seq
        if load.qos:
            packets = []
            packet_id = self.next_id
            for _ in range(room):
                packets.append(head + packet_id.to_bytes(2, "big") + pack(index, seq) + pad)
                packet_id = packet_id % 65535 + 1
                seq += 1
            self.next_id = packet_id
            self.outstanding += room
        else:
            packets = [head + pack(index, s) + pad for s in range(seq, seq + room)]
            seq += room
        self.seq = seq
        self.send(packets)


class _Subscriber(_Connection):
    """
    Subscribes, acknowledges QoS 1 deliveries, and checks each publisher's
    sequence numbers: the next one expected, the ones skipped (lost) and
    the ones seen again (duplicated or reordered).
    """

    def __init__(self, load: _Load, index: int, topic_filter: str, publishers: int) -> None:
        super().__init__(load, f"tb-{load.run_id}-s{index}")
        self.topic_filter = topic_filter
        self.expected = [0] * publishers
        self.received = 0
        self.gaps = 0
        self.dups = 0
        self.bad = 0
        self.acks: list[bytes] = []

    def packet(self, first: int, data: bytes, start: int, end: int) -> None:
        if first >> 4 == 3:
            p = start + 2 + ((data[start] << 8) | data[start + 1])
            if first & 0x06:
                self.acks.append(b"\x40\x02" + data[p : p + 2])
                p += 2
            if end - p < 12:
                self.bad += 1
                return
            publisher, seq = PAYLOAD_HEADER.unpack_from(data, p)
            expected = self.expected
            if publisher >= len(expected):
                self.bad += 1
                return
            e = expected[publisher]
            if seq == e:
                expected[publisher] = e + 1
            elif seq > e:
                self.gaps += seq - e
                expected[publisher] = seq + 1
            else:
                self.dups += 1
            self.received += 1
        elif first == 0x20:
            if self.connack(data[start:end]):
                self.send([subscribe_packet(self.topic_filter, self.load.qos)])
        elif first == 0x90:
            granted = data[start + 2 : end]
            if granted != bytes([self.load.qos]):
                self.fail(f"SUBACK {granted.hex()}, wanted QoS {self.load.qos}")
            elif not self.ready.done():
                self.ready.set_result(None)
        else:
            self.fail(f"unexpected packet {first:#04x}")

    def after_read(self) -> None:
        if self.acks:
            self.send(self.acks)
            self.acks = []
        self.load.kick()


def _factory(connection: _Connection) -> Callable[[], _Connection]:
    return lambda: connection


async def _open(load: _Load, connections: Sequence[_Connection]) -> None:
    target = load.target
    for c in connections:
        await load.loop.create_connection(
            _factory(c),
            target.host,
            target.port,
            ssl=target.tls,
            server_hostname="localhost" if target.tls is not None else None,
        )
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in connections)), 30)


def _snapshot(pid: int, load: _Load) -> dict[str, Any]:
    return {
        "t": time.monotonic(),
        "self_cpu": self_cpu_s(),
        "broker_cpu": proc_cpu_s(pid),
        "received": sum(s.received for s in load.subscribers),
        "published": sum(p.seq for p in load.publishers),
        "cpus": cpu_stat(),
    }


def _all_delivered(load: _Load) -> bool:
    for p in load.publishers:
        if p.outstanding:
            return False
        for s in load.subscribers:
            if s.expected[p.index] < p.seq:
                return False
    return True


async def drive(target: _Target, pid: int, opts: TransportOptions, case: Case) -> dict[str, Any]:
    """
    Run one case against a ready broker: connect the subscribers, then the
    publishers; warm up, measure, drain, disconnect; report the counts.
    """
    loop = asyncio.get_running_loop()
    load = _Load(loop, target, opts, case.qos)
    fan_in = case.shape == "fan-in"
    publishers = opts.fan if fan_in else 1
    subscribers = 1 if fan_in else opts.fan
    topic_filter = "bench/#" if fan_in else "bench/0"
    load.subscribers = [_Subscriber(load, j, topic_filter, publishers) for j in range(subscribers)]
    await _open(load, load.subscribers)
    load.window = opts.window // publishers
    load.publishers = [_Publisher(load, i, f"bench/{i}") for i in range(publishers)]
    await _open(load, load.publishers)

    load.sending = True
    load.tick()
    await asyncio.sleep(opts.warmup)
    before = _snapshot(pid, load)
    await asyncio.sleep(opts.duration)
    after = _snapshot(pid, load)
    rss_kb = proc_rss_kb(pid) if pid else -1
    load.sending = False

    deadline = time.monotonic() + opts.drain
    while not _all_delivered(load) and time.monotonic() < deadline:
        if any(c.transport is None for c in (*load.publishers, *load.subscribers)):
            break
        await asyncio.sleep(0.01)
    drained = _all_delivered(load)
    lost = 0
    for s in load.subscribers:
        lost += s.gaps + sum(max(0, p.seq - s.expected[p.index]) for p in load.publishers)
    load.closing = True
    everyone: list[_Connection] = [*load.publishers, *load.subscribers]
    for c in everyone:
        c.disconnect()
    try:
        await asyncio.wait_for(asyncio.gather(*(c.closed for c in everyone)), 10)
    except TimeoutError:
        for c in everyone:
            if c.transport is not None:
                c.transport.abort()

    window = after["t"] - before["t"]
    broker_cpu = (
        after["broker_cpu"] - before["broker_cpu"] if pid and before["broker_cpu"] >= 0 else None
    )
    return {
        "publishers": publishers,
        "subscribers": subscribers,
        "window_s": round(window, 4),
        "delivered_in_window": after["received"] - before["received"],
        "published_in_window": after["published"] - before["published"],
        "published": sum(p.seq for p in load.publishers),
        "delivered": sum(s.received for s in load.subscribers),
        "expected_deliveries": sum(p.seq for p in load.publishers) * subscribers,
        "acked": sum(p.acked for p in load.publishers) if case.qos else None,
        "outstanding_after_drain": sum(p.outstanding for p in load.publishers),
        "written_off": sum(p.written_off for p in load.publishers),
        "drained": drained,
        "lost": lost,
        # Of those: skipped while later messages arrived (the rest never came).
        "lost_in_gaps": sum(s.gaps for s in load.subscribers),
        "duplicated": sum(s.dups for s in load.subscribers),
        "bad_payload": sum(s.bad for s in load.subscribers),
        "broker_cpu_s": round(broker_cpu, 4) if broker_cpu is not None else None,
        "self_cpu_s": round(after["self_cpu"] - before["self_cpu"], 4),
        "broker_rss_kb": rss_kb if rss_kb >= 0 else None,
        "cpus": cpu_busy(before["cpus"], after["cpus"]),
        "cipher": load.cipher,
        "errors": list(load.errors),
        "unexpected_closes": load.unexpected_closes,
    }


# --- figures, checks and the summary ------------------------------------


def figures(raw: Mapping[str, Any]) -> dict[str, float | None]:
    """
    The figures of one run from the generator's counts.
    """
    window = raw.get("window_s") or 0.0
    delivered = raw.get("delivered_in_window") or 0
    out: dict[str, float | None] = {
        "delivered_per_s": round(delivered / window, 1) if window > 0 else None,
        "broker_cpu_us_per_msg": None,
        "broker_cpu_pct": None,
        "broker_rss_kb": raw.get("broker_rss_kb"),
        "gen_cpu_pct": None,
        "gen_cpu_us_per_msg": None,
    }
    for key_us, key_pct, source in (
        ("broker_cpu_us_per_msg", "broker_cpu_pct", "broker_cpu_s"),
        ("gen_cpu_us_per_msg", "gen_cpu_pct", "self_cpu_s"),
    ):
        seconds = raw.get(source)
        if isinstance(seconds, int | float) and seconds >= 0:
            if delivered:
                out[key_us] = round(seconds * 1e6 / delivered, 2)
            if window > 0:
                out[key_pct] = round(100 * seconds / window, 1)
    return out


def check(raw: Mapping[str, Any]) -> list[str]:
    """
    What went wrong in a run: client errors, connections the broker
    closed, nothing delivered in the window, messages lost, duplicated or
    unreadable, QoS 1 publishes never acknowledged.
    """
    problems = [f"client error: {e}" for e in raw.get("errors") or []][:5]
    closes = raw.get("unexpected_closes") or 0
    if closes and not problems:
        problems.append(f"{closes} connection(s) closed by the broker")
    if not raw.get("delivered_in_window"):
        problems.append("nothing delivered in the measured window")
    for key, what in (
        ("lost", "lost"),
        ("duplicated", "duplicated or reordered"),
        ("bad_payload", "with an unreadable payload"),
        ("outstanding_after_drain", "publishes never acknowledged"),
    ):
        if raw.get(key):
            problems.append(f"{raw[key]} {what}")
    return problems


def load_transport_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """
    The records of this benchmark among lines of text (a summary or other
    benchmarks' records are skipped).
    """
    return [v for v in json_objects(lines) if v.get("bench") == BENCH]


def _in_order(values: Iterable[Any], order: Sequence[Any]) -> list[Any]:
    seen = list(dict.fromkeys(values))
    return sorted(seen, key=lambda v: order.index(v) if v in order else len(order))


def _value(record: Mapping[str, Any], key: str) -> float | None:
    # Runs that failed a check still count (the checks column says what
    # went wrong); runs that could not be made do not.
    if record.get("error"):
        return None
    value = record.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _groups(
    records: Sequence[Mapping[str, Any]],
) -> tuple[
    list[str], list[tuple[str, str, int]], dict[tuple[str, str, int, str], list[Mapping[str, Any]]]
]:
    brokers = list(dict.fromkeys(str(r.get("broker")) for r in records))
    rows: list[tuple[str, str, int]] = []
    groups: dict[tuple[str, str, int, str], list[Mapping[str, Any]]] = {}
    for t in _in_order((r.get("transport") for r in records), TRANSPORTS):
        for s in _in_order((r.get("shape") for r in records), SHAPES):
            for q in _in_order((r.get("qos") for r in records), QOS_LEVELS):
                row = (str(t), str(s), int(q))
                for r in records:
                    if (r.get("transport"), r.get("shape"), r.get("qos")) == row:
                        groups.setdefault((*row, str(r.get("broker"))), []).append(r)
                if any((*row, b) in groups for b in brokers):
                    rows.append(row)
    return brokers, rows, groups


def _checks_cell(runs: Sequence[Mapping[str, Any]]) -> str:
    bad = [r for r in runs if not r.get("ok")]
    bound = sum(
        1 for r in runs if any(str(n).startswith("generator-bound") for n in r.get("notes") or [])
    )
    if not bad:
        return f"ok, generator-bound in {bound} of {len(runs)}" if bound else "ok"
    first = bad[0]
    why = first.get("error") or "; ".join(first.get("problems") or []) or "failed"
    return f"{len(bad)} of {len(runs)} failed: {str(why).splitlines()[0][:80]}"


def summary_table(records: Sequence[Mapping[str, Any]]) -> str:
    """
    A Markdown table, one row per transport, shape and QoS: for each broker
    the delivered messages per second, the broker's CPU microseconds per
    delivered message and its RSS (MB, at the end of the window), each the
    median (min–max) over the rounds; then the ratio of every other
    broker's CPU per message to the first's, and the checks.
    """
    brokers, rows, groups = _groups(records)
    head = ["transport", "shape", "QoS"]
    for b in brokers:
        head += [f"{b} msg/s", f"{b} CPU µs/msg", f"{b} RSS MB"]
    head += [f"µs/msg {b}/{brokers[0]}" for b in brokers[1:]]
    head.append("checks")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row[0], row[1], str(row[2])]
        cpu: dict[str, Any] = {}
        for b in brokers:
            runs = groups.get((*row, b), [])
            rate = stats(_value(r, "delivered_per_s") for r in runs)
            cpu[b] = stats(_value(r, "broker_cpu_us_per_msg") for r in runs)
            rss = stats(
                None if v is None else v / 1024 for v in (_value(r, "broker_rss_kb") for r in runs)
            )
            cells += [format_stats(rate, 0), format_stats(cpu[b], 1), format_stats(rss, 1)]
        cells += [format_ratio(ratio(cpu[b], cpu[brokers[0]])) for b in brokers[1:]]
        checks = [f"{b}: {_checks_cell(groups[(*row, b)])}" for b in brokers if (*row, b) in groups]
        verdicts = {c.split(": ", 1)[1] for c in checks}
        cells.append("ok" if verdicts == {"ok"} else "; ".join(checks))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_table(records: Sequence[Mapping[str, Any]]) -> str:
    """
    A Markdown table of what each transport costs over plain TCP: for each
    broker, the median CPU per delivered message on the transport divided
    by the median on TCP for the same shape and QoS. Empty if TCP was not
    run.
    """
    brokers, rows, groups = _groups(records)
    if not any(t == "tcp" for t, _, _ in rows):
        return ""
    head = ["transport", "shape", "QoS", *(f"{b} CPU/msg ÷ TCP" for b in brokers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for t, s, q in rows:
        if t == "tcp":
            continue
        cells = [t, s, str(q)]
        for b in brokers:
            here = stats(_value(r, "broker_cpu_us_per_msg") for r in groups.get((t, s, q, b), []))
            tcp = stats(
                _value(r, "broker_cpu_us_per_msg") for r in groups.get(("tcp", s, q, b), [])
            )
            cells.append(format_ratio(ratio(here, tcp)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) if len(lines) > 2 else ""


def describe(record: Mapping[str, Any]) -> str:
    """
    A one-line progress report of a run.
    """
    parts = [
        figure_text(head, record.get(key), digits)
        for key, head, digits in (
            ("delivered_per_s", "msg/s", 0),
            ("broker_cpu_us_per_msg", "broker µs/msg", 2),
            ("broker_cpu_pct", "broker CPU %", 0),
            ("gen_cpu_pct", "generator CPU %", 0),
        )
    ]
    rss = record.get("broker_rss_kb")
    parts.append(f"RSS {'–' if rss is None else f'{rss / 1024:.1f} MB'}")
    return progress_line(record, parts)


def summary_text(records: Sequence[Mapping[str, Any]]) -> str:
    """
    The summary printed at the end: a heading with the conditions, the
    table, the cost over TCP, the load averages seen and the failures.
    """
    first = records[0] if records else {}
    rounds = max((int(r.get("round") or 0) for r in records), default=0)
    ciphers = sorted({str(r["cipher"]) for r in records if r.get("cipher")})
    inflight = next((r["inflight"] for r in records if r.get("inflight")), None)
    head = (
        f"## Transports: {len(records)} runs, {rounds} round(s), fan {first.get('fan')}, "
        f"{first.get('size')} B payloads, window {first.get('window')}, QoS 1 in flight "
        f"{inflight}, {first.get('duration_s')} s measured; 1-minute load average "
        f"at the runs' starts {load_range(records)}"
    )
    if ciphers:
        head += f"; TLS: {', '.join(ciphers)}"
    disturbed = sum(
        1
        for r in records
        if any(str(n).startswith("other processes") for n in r.get("notes") or [])
    )
    head += disturbed_text(disturbed, len(records))
    parts = ["", head, "", summary_table(records)]
    relative = relative_table(records)
    if relative:
        parts += ["", "Broker CPU per delivered message relative to TCP:", "", relative]
    failed = [r for r in records if not r.get("ok")]
    if failed:
        parts += ["", "Failed runs:", ""]
        parts += [
            f"- {r.get('broker')} {r.get('transport')}/{r.get('shape')}/q{r.get('qos')} "
            f"round {r.get('round')}: {describe(r)}"
            for r in failed
        ]
    return "\n".join(parts)


# --- running ------------------------------------------------------------


def _client_tls(files: ServerFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _wait_listening(host: str, ports: Iterable[int], timeout: float = 10.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    for port in ports:
        while True:
            try:
                with socket.create_connection((host, port), timeout=1.0):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise BrokerError(f"nothing listens on {host}:{port}") from None
                time.sleep(0.05)


@functools.cache
def _commit() -> str | None:
    return git_commit(CHECKOUT)


def _record(opts: TransportOptions, spec: BrokerSpec, case: Case, round_: int) -> dict[str, Any]:
    return {
        "bench": BENCH,
        "v": 1,
        "broker": spec.name,
        "transport": case.transport,
        "qos": case.qos,
        "shape": case.shape,
        "fan": opts.fan,
        "size": opts.size,
        "window": opts.window,
        "inflight": opts.inflight if case.qos else None,
        "duration_s": opts.duration,
        "round": round_,
        "rounds": opts.rounds,
        "smoke": opts.smoke,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "commit": _commit(),
        "ok": False,
        "error": None,
        "problems": [],
        "notes": [],
        "delivered_per_s": None,
        "broker_cpu_us_per_msg": None,
    }


def run_transport(
    opts: TransportOptions,
    spec: BrokerSpec,
    transport: str,
    round_: int,
    workdir: Path,
    files: ServerFiles,
) -> list[dict[str, Any]]:
    """
    Start the broker, run every case of one transport against it, stop it.

    @return: one record (JSON line) per case.
    """
    cases = opts.cases(transport)
    records = [_record(opts, spec, c, round_) for c in cases]
    rundir = workdir / f"{spec.name.replace(':', '-')}-{transport}-r{round_}"
    rundir.mkdir(parents=True, exist_ok=True)
    assert spec.config is not None
    template = rundir / f"template{spec.config.suffix}"
    template.write_text(render_certificates(spec.config.read_text(), files))
    pin = pin_prefix(opts.broker_cpu, opts.pin)
    load_cpus = cpu_set(opts.load_cpu) if pin else None
    try:
        broker: RunningBroker = start_broker(
            replace(spec, config=template),
            rundir,
            python=opts.python,
            pin=pin,
            extra_ports=EXTRA_PORTS,
        )
    except BrokerError as e:
        for r in records:
            r["error"] = str(e)
        return records
    try:
        _wait_listening(broker.host, broker.ports.values())
        port = broker.port if transport == "tcp" else broker.ports[transport]
        target = _Target(
            broker.host,
            port,
            websocket=transport in ("ws", "wss"),
            tls=_client_tls(files) if transport in ("tls", "wss") else None,
        )
        rss_start = proc_rss_kb(broker.pid) if broker.pid else -1
        for case, record in zip(cases, records, strict=True):
            started = time.monotonic()
            record.update(
                broker_pid=broker.pid,
                broker_port=port,
                broker_argv=broker.argv,
                broker_rss_start_kb=rss_start if rss_start >= 0 else None,
            )
            if not broker.alive():
                record["error"] = "the broker exited:\n" + broker.log_tail()
                continue
            try:
                with Affinity(load_cpus):
                    raw = asyncio.run(drive(target, broker.pid or 0, opts, case))
            except (OSError, TimeoutError, ssl.SSLError) as e:
                record["error"] = f"{type(e).__name__}: {e}"
                continue
            problems = check(raw)
            if not broker.alive():
                problems.append("the broker exited during the run")
            record.update(figures(raw))
            record.update(
                {
                    "ok": not problems,
                    "problems": problems,
                    "published": raw["published"],
                    "delivered": raw["delivered"],
                    "lost": raw["lost"],
                    "duplicated": raw["duplicated"],
                    "cipher": raw["cipher"],
                    "raw": raw,
                    "elapsed_s": round(time.monotonic() - started, 2),
                }
            )
            gen_pct = record.get("gen_cpu_pct")
            if isinstance(gen_pct, int | float) and gen_pct >= GENERATOR_BOUND_PCT:
                record["notes"].append(f"generator-bound: {gen_pct:.0f}% of a CPU")
            if pin:
                window = raw.get("window_s") or 0
                note = contention_note(
                    {
                        "cpus": [{"busy_pct": b} for b in raw.get("cpus") or []],
                        "broker_cpu_pct": record.get("broker_cpu_pct"),
                        "self_cpu_pct": 100 * raw["self_cpu_s"] / window if window else None,
                    },
                    opts.broker_cpu,
                    opts.load_cpu,
                )
                if note:
                    record["notes"].append(note)
    except BrokerError as e:
        for r in records:
            if not r.get("raw"):
                r["error"] = str(e)
    finally:
        status = broker.stop()
        for r in records:
            r["broker_exit"] = status
    return records


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """
    Run the transports benchmark.

    @return: 0; 1 if a run could not be made or, in smoke mode, failed a
        check; 2 for a bad command line.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    opts = parse_args(argv)
    if opts.summarize:
        print(summary_text(read_records(opts.summarize, load_transport_records)), file=out)
        return 0
    raise_fd_limit()
    runs = make_workdir(opts.out, "mqttx-transports-")
    files = make_server_files(Path(tempfile.mkdtemp(prefix="mqttx-transports-tls-")))
    print(
        f"transports: brokers {', '.join(b.name for b in opts.brokers)}, "
        f"transports {','.join(opts.transports)}, {opts.rounds} round(s) × "
        f"{len(opts.cases(opts.transports[0]))} case(s) per transport, "
        f"pinning {'on' if pin_prefix('0', opts.pin) else 'off'}, {platform.node()}, "
        f"runs in {runs}",
        file=err,
        flush=True,
    )
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    for round_ in range(1, opts.rounds + 1):
        for transport in opts.transports:
            for spec in opts.brokers:
                for record in run_transport(opts, spec, transport, round_, runs, files):
                    records.append(record)
                    write_record(record, out, opts.jsonl)
                    where = (
                        f"[{round_}/{opts.rounds}] {spec.name} {transport}/{record['shape']}"
                        f"/q{record['qos']}"
                    )
                    print(f"{where}: {describe(record)}", file=err, flush=True)
    print(summary_text(records), file=out, flush=True)
    return finish("transports", records, opts.smoke, started, err)


if __name__ == "__main__":
    sys.exit(main())
