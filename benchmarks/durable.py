# -*- test-case-name: tests.benchmarks.test_durable -*-
"""
Durable QoS 1 throughput (issue 5): C{python -m benchmarks.durable --help}.

For every durability mode (C{sync}, C{batch}), number of publishers and
round, start mqttx afresh with the SQLite store in a directory of its own,
and:

  1. connect the persistent subscribers (MQTT 3.1.1, clean session 0),
     subscribe each to C{durable/#} at QoS 1, and disconnect them, so that
     every message published afterwards is queued durably for each of them
     (with C{--online} they stay connected and acknowledge what they get,
     so that in-flight rows are written and deleted instead);
  2. connect the publishers (clean sessions), each publishing QoS 1 to its
     own topic with at most C{--window} messages unacknowledged;
  3. after the warm-up, count for C{--duration} seconds the PUBACKs the
     publishers receive, the broker's CPU time (C{/proc/PID/stat}, all
     threads, and the reactor thread alone) and this generator's own;
  4. stop publishing, wait for the outstanding PUBACKs, disconnect, take
     the database's size (file and WAL), stop the broker (SIGTERM) and take
     it again;
  5. with C{--verify} (on in smoke mode): start the broker again on the same
     database and check that every subscriber gets back its session and
     every acknowledged message, once, in order per publisher.

Each run prints ONE JSON line on stdout; after the last, a Markdown summary
(median and min–max over the rounds). The load generator is this process
(asyncio, raw MQTT 3.1.1), pinned to another CPU than the broker.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import struct
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from benchmarks.brokers import (
    CHECKOUT,
    CONFIGS,
    BrokerError,
    BrokerSpec,
    RunningBroker,
    start_broker,
)
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
    format_stats,
    json_objects,
    load_range,
    progress_line,
    stats,
)

__all__ = [
    "Case",
    "DurableOptions",
    "check",
    "check_verified",
    "connect_packet",
    "db_bytes",
    "load_durable_records",
    "main",
    "make_payload",
    "parse_args",
    "parse_payload",
    "parse_publish",
    "render_config",
    "split_packets",
    "subscribe_packet",
    "summary_table",
]

#: The configuration template (see its comments).
TEMPLATE = CONFIGS / "mqttx-durable.yaml"
MODES = ("sync", "batch")
#: A baseline on request (C{-d memory}): the same load, the memory store.
BASELINE = "memory"
#: Issue 5's publisher counts.
FULL_PUBLISHERS = (1, 10, 100)
#: Smoke mode: one case per durability mode, two subscribers (so that the
#: shared payload copies are exercised), verified after a restart.
SMOKE_CASES = (("sync", 10), ("batch", 100))
FILTER = "durable/#"
#: Payload header: publisher index and sequence number.
PAYLOAD_HEADER = struct.Struct(">IQ")
#: Leaves room for every message of a long run in an offline session.
MAX_QUEUED = 10_000_000
DISCONNECT = b"\xe0\x00"


@dataclass(frozen=True, slots=True)
class Case:
    """
    One measured configuration: a durability mode and a publisher count.
    """

    durability: str
    publishers: int

    @property
    def name(self) -> str:
        return f"{self.durability}/{self.publishers}"


@dataclass(frozen=True, slots=True)
class DurableOptions(RunOptions):
    """
    The command line, checked.
    """

    cases: tuple[Case, ...]
    rounds: int
    subscribers: int
    online: bool
    window: int
    size: int
    duration: float
    warmup: float
    drain: float
    commit_interval: float
    verify: bool
    smoke: bool


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected numbers separated by commas, got {text!r}"
        ) from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive numbers, got {text!r}")
    return values


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.durable",
        description=(
            "Durable QoS 1 throughput of mqttx with the SQLite store (issue 5): acknowledged "
            "publishes per second to offline persistent subscribers, per durability mode and "
            "number of publishers. One JSON line per run on stdout, then a summary table."
        ),
        epilog="See benchmarks/README.md.",
    )
    p.add_argument(
        "-d",
        "--durability",
        action="append",
        choices=(*MODES, BASELINE),
        default=[],
        help="durability modes to run (repeatable; default sync and batch; "
        "'memory': the memory store, as a baseline)",
    )
    p.add_argument(
        "-p",
        "--publishers",
        type=_int_list,
        default=None,
        metavar="N[,N]",
        help="numbers of concurrent publishers (default 1,10,100)",
    )
    p.add_argument("-n", "--rounds", type=int, default=None, help="rounds (default 3; smoke 1)")
    p.add_argument(
        "-S",
        "--subscribers",
        type=int,
        default=None,
        help="persistent subscribers (default 1; smoke 2)",
    )
    p.add_argument(
        "--online",
        action="store_true",
        help="keep the persistent subscribers connected, acknowledging (default: offline)",
    )
    p.add_argument(
        "--window", type=int, default=20, help="unacknowledged messages per publisher (default 20)"
    )
    p.add_argument("--size", type=int, default=64, help="payload bytes (default 64, at least 12)")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 10; smoke 1)")
    p.add_argument("--warmup", type=float, help="warm-up seconds (default 2; smoke 0.2)")
    p.add_argument(
        "--drain", type=float, help="longest wait for outstanding PUBACKs (default 10; smoke 5)"
    )
    p.add_argument(
        "--commit-interval",
        type=float,
        default=1.0,
        help="persistence.commit_interval for batch (default 1.0, the broker's default)",
    )
    p.add_argument(
        "--verify",
        action="store_true",
        help="restart the broker after each run and check every subscriber gets every message",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="sync with 10 and batch with 100 publishers for 1 s, verified; exit 1 on any problem",
    )
    add_run_options(p)
    return p


def parse_args(argv: Sequence[str] | None = None) -> DurableOptions:
    """
    Parse and check the command line.

    @raise SystemExit: (status 2, via argparse) on a bad command line.
    """
    parser = _parser()
    a = parser.parse_args(argv)
    smoke = bool(a.smoke)
    modes = tuple(dict.fromkeys(a.durability)) or MODES
    if smoke and a.publishers is None and not a.durability:
        cases = tuple(Case(m, n) for m, n in SMOKE_CASES)
    else:
        counts = a.publishers or ((10,) if smoke else FULL_PUBLISHERS)
        cases = tuple(Case(m, n) for m in modes for n in counts)
    rounds = a.rounds if a.rounds is not None else (1 if smoke else 3)
    subscribers = a.subscribers if a.subscribers is not None else (2 if smoke else 1)
    duration = a.duration if a.duration is not None else (1.0 if smoke else 10.0)
    warmup = a.warmup if a.warmup is not None else (0.2 if smoke else 2.0)
    drain = a.drain if a.drain is not None else (5.0 if smoke else 10.0)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    if subscribers < 1:
        parser.error("--subscribers must be at least 1")
    if not 1 <= a.window <= 65_000:
        parser.error("--window must be between 1 and 65000")
    if a.size < PAYLOAD_HEADER.size:
        parser.error(f"--size must be at least {PAYLOAD_HEADER.size}")
    if duration <= 0 or warmup < 0 or drain < 0 or a.commit_interval <= 0:
        parser.error(
            "--duration and --commit-interval must be positive, --warmup and --drain not negative"
        )
    return DurableOptions(
        cases=cases,
        rounds=rounds,
        subscribers=subscribers,
        online=a.online,
        window=a.window,
        size=a.size,
        duration=duration,
        warmup=warmup,
        drain=drain,
        commit_interval=a.commit_interval,
        verify=a.verify or smoke,
        smoke=smoke,
        **run_options(a),
    )


def render_config(
    template: str,
    *,
    durability: str,
    db: Path,
    commit_interval: float,
    max_queued: int = MAX_QUEUED,
) -> str:
    """
    Fill this benchmark's placeholders into the broker's configuration
    template; C{{port}} and C{{host}} are left for the runner. The
    durability L{BASELINE} asks for the memory store.
    """
    backend = "memory" if durability == BASELINE else "sqlite"
    return (
        template.replace("{backend}", backend)
        .replace("{durability}", "sync" if durability == BASELINE else durability)
        .replace("{db}", str(db))
        .replace("{commit_interval}", repr(float(commit_interval)))
        .replace("{max_queued}", str(max_queued))
    )


def db_bytes(path: Path) -> int:
    """
    The bytes of an SQLite database in WAL mode: the file and its WAL (the
    C{-shm} index is not data).
    """
    total = 0
    for p in (path, path.with_name(path.name + "-wal")):
        try:
            total += p.stat().st_size
        except FileNotFoundError:
            pass
    return total


def thread_cpu_s(pid: int) -> tuple[float, float]:
    """
    CPU seconds (user + system) of a process's main thread (for mqttx, the
    reactor) and of all its other threads (the store writer), or C{(-1, -1)}.
    """
    main_s = other_s = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return (-1.0, -1.0)
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        if int(tid) == pid:
            main_s += seconds
        else:
            other_s += seconds
    return (main_s, other_s)


# --- MQTT 3.1.1, as much as the benchmark needs ---------------------------


def connect_packet(client_id: str, clean: bool, keepalive: int = 60) -> bytes:
    """
    An MQTT 3.1.1 CONNECT.
    """
    body = utf8("MQTT") + bytes([4, 0x02 if clean else 0x00]) + keepalive.to_bytes(2, "big")
    body += utf8(client_id)
    return b"\x10" + varint(len(body)) + body


def subscribe_packet(topic_filter: str, qos: int, packet_id: int = 1) -> bytes:
    """
    An MQTT 3.1.1 SUBSCRIBE of one filter.
    """
    body = packet_id.to_bytes(2, "big") + utf8(topic_filter) + bytes([qos])
    return b"\x82" + varint(len(body)) + body


def split_packets(buf: bytearray) -> list[tuple[int, bytes]]:
    """
    Take the complete MQTT packets off the front of C{buf}.

    @return: each packet's first byte and body, in order; an incomplete
        packet stays in C{buf}.
    @raise ValueError: on a remaining length longer than four bytes.
    """
    out: list[tuple[int, bytes]] = []
    pos, n = 0, len(buf)
    while n - pos >= 2:
        length, i = remaining_length(buf, pos + 1, n)
        if length < 0 or i + length > n:
            break
        out.append((buf[pos], bytes(buf[i : i + length])))
        pos = i + length
    del buf[:pos]
    return out


def parse_publish(first: int, body: bytes) -> tuple[str, int, bytes]:
    """
    A PUBLISH's topic, packet identifier (0 at QoS 0) and payload.
    """
    tlen = int.from_bytes(body[:2], "big")
    topic = body[2 : 2 + tlen].decode()
    pos = 2 + tlen
    packet_id = 0
    if first & 0x06:
        packet_id = int.from_bytes(body[pos : pos + 2], "big")
        pos += 2
    return topic, packet_id, body[pos:]


def make_payload(publisher: int, seq: int, size: int) -> bytes:
    """
    A payload of C{size} bytes that names its publisher and sequence number.
    """
    return PAYLOAD_HEADER.pack(publisher, seq) + bytes(size - PAYLOAD_HEADER.size)


def parse_payload(payload: bytes) -> tuple[int, int]:
    """
    The publisher and sequence number of a L{make_payload} payload.

    @raise struct.error: if it is too short.
    """
    publisher, seq = PAYLOAD_HEADER.unpack_from(payload)
    return publisher, seq


# --- the load generator ---------------------------------------------------


class _Load:
    """
    What the clients of one run share: phase flags and counters.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, window: int, size: int) -> None:
        self.loop = loop
        self.window = window
        self.size = size
        self.sending = False
        self.measuring = False
        self.acks = 0
        self.latencies_ns: list[int] = []
        self.errors: list[str] = []
        self.unexpected_closes = 0
        self.closing = False


class _Client(MQTTClient):
    """
    One connection: buffers bytes into packets for L{handle}.
    """

    load: _Load

    def __init__(self, load: _Load, client_id: str, clean: bool) -> None:
        self.load = load
        self.client_id = client_id
        self.clean = clean
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.ready: asyncio.Future[bool] = load.loop.create_future()
        self.closed: asyncio.Future[None] = load.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(connect_packet(self.client_id, self.clean))

    def data_received(self, data: bytes) -> None:
        self.buf += data
        try:
            packets = split_packets(self.buf)
        except ValueError as e:
            self.fail(str(e))
            return
        for first, body in packets:
            self.handle(first, body)
        self.after_read()

    def handle(self, first: int, body: bytes) -> None:
        raise NotImplementedError

    def after_read(self) -> None:
        pass

    def disconnect(self) -> None:
        if self.transport is not None:
            self.transport.write(DISCONNECT)
            self.transport.close()


class _Publisher(_Client):
    """
    Publishes QoS 1 to its own topic, keeping C{window} unacknowledged.
    """

    def __init__(self, load: _Load, index: int) -> None:
        super().__init__(load, f"durable-pub-{index}", clean=True)
        self.index = index
        topic = utf8(f"durable/{index}")
        self.head = b"\x32" + varint(len(topic) + 2 + load.size) + topic
        self.pad = bytes(load.size - PAYLOAD_HEADER.size)
        self.seq = 0
        self.outstanding = 0
        self.next_id = 1
        self.sent_ns = [0] * 65536
        self.acked = 0

    def handle(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == 4:  # PUBACK
            self.outstanding -= 1
            self.acked += 1
            load = self.load
            if load.measuring:
                load.acks += 1
                packet_id = (body[0] << 8) | body[1]
                load.latencies_ns.append(time.monotonic_ns() - self.sent_ns[packet_id])
        elif kind == 2:
            if self.connack(body) and not self.ready.done():
                self.ready.set_result(True)
        else:
            self.fail(f"unexpected packet type {kind}")

    def after_read(self) -> None:
        self.fill()

    def fill(self) -> None:
        load = self.load
        if not load.sending or self.transport is None or self.outstanding >= load.window:
            return
        now = time.monotonic_ns()
        chunks = []
        pack = PAYLOAD_HEADER.pack
        while self.outstanding < load.window:
            packet_id = self.next_id
            self.next_id = packet_id % 65535 + 1
            self.sent_ns[packet_id] = now
            chunks.append(
                self.head + packet_id.to_bytes(2, "big") + pack(self.index, self.seq) + self.pad
            )
            self.seq += 1
            self.outstanding += 1
        self.transport.write(b"".join(chunks))


class _Subscriber(_Client):
    """
    A persistent subscriber: subscribes (first connection) or resumes its
    session (verification), acknowledges what it gets, and checks the order
    of every publisher's sequence numbers.
    """

    def __init__(self, load: _Load, index: int, subscribe: bool) -> None:
        super().__init__(load, f"durable-sub-{index}", clean=False)
        self.subscribe = subscribe
        self.session_present = False
        self.next_seq: dict[int, int] = {}
        self.received = 0
        self.in_order = 0
        self.dup = 0
        self.gaps = 0
        self.bad = 0
        self.target = -1
        self.done: asyncio.Future[None] = load.loop.create_future()
        self.acks: list[bytes] = []

    def handle(self, first: int, body: bytes) -> None:
        kind = first >> 4
        if kind == 3:
            _, packet_id, payload = parse_publish(first, body)
            if packet_id:
                self.acks.append(b"\x40\x02" + packet_id.to_bytes(2, "big"))
            try:
                publisher, seq = parse_payload(payload)
            except struct.error:
                self.bad += 1
                return
            self.received += 1
            expected = self.next_seq.get(publisher, 0)
            if seq == expected:
                self.in_order += 1
                self.next_seq[publisher] = seq + 1
            elif seq < expected:
                self.dup += 1
            else:
                self.gaps += seq - expected
                self.next_seq[publisher] = seq + 1
            if self.target >= 0 and self.in_order >= self.target and not self.done.done():
                self.done.set_result(None)
        elif kind == 2:
            if not self.connack(body):
                return
            self.session_present = bool(body[0] & 1)
            if self.subscribe and self.transport is not None:
                self.transport.write(subscribe_packet(FILTER, 1))
            elif not self.ready.done():
                self.ready.set_result(self.session_present)
        elif kind == 9:  # SUBACK
            if body[2:] != b"\x01":
                self.fail(f"SUBACK {body[2:].hex()} (wanted QoS 1 granted)")
            elif not self.ready.done():
                self.ready.set_result(self.session_present)
        else:
            self.fail(f"unexpected packet type {kind}")

    def after_read(self) -> None:
        if self.acks and self.transport is not None:
            self.transport.write(b"".join(self.acks))
        self.acks.clear()

    def expect(self, count: int) -> None:
        self.target = count
        if self.in_order >= count and not self.done.done():
            self.done.set_result(None)

    def report(self) -> dict[str, int]:
        return {
            "received": self.received,
            "in_order": self.in_order,
            "dup": self.dup,
            "gaps": self.gaps,
            "bad_payload": self.bad,
        }


def _factory(client: _Client) -> Callable[[], _Client]:
    return lambda: client


async def _open(load: _Load, host: str, port: int, clients: Sequence[_Client]) -> None:
    loop = load.loop
    for c in clients:
        await loop.create_connection(_factory(c), host, port)
    await asyncio.wait_for(asyncio.gather(*(c.ready for c in clients)), 30)


def _percentile(sorted_values: Sequence[int], fraction: float) -> float | None:
    if not sorted_values:
        return None
    index = min(len(sorted_values) - 1, int(fraction * len(sorted_values)))
    return sorted_values[index] / 1e6


async def drive(
    host: str, port: int, broker_pid: int | None, opts: DurableOptions, publishers: int
) -> dict[str, Any]:
    """
    Set up the persistent subscribers, run the publishers through warm-up,
    measured window and drain, and report what was counted.
    """
    loop = asyncio.get_running_loop()
    load = _Load(loop, opts.window, opts.size)
    raw: dict[str, Any] = {"publishers": publishers, "subscribers": opts.subscribers}
    subs = [_Subscriber(load, j, subscribe=True) for j in range(opts.subscribers)]
    await _open(load, host, port, subs)
    if not opts.online:
        load.closing = True
        for s in subs:
            s.disconnect()
        await asyncio.wait_for(asyncio.gather(*(s.closed for s in subs)), 10)
        load.closing = False
    pubs = [_Publisher(load, i) for i in range(publishers)]
    await _open(load, host, port, pubs)

    load.sending = True
    for p in pubs:
        p.fill()
    await asyncio.sleep(opts.warmup)
    pid = broker_pid or 0
    cpus0 = cpu_stat()
    t0, self0, broker0 = time.monotonic(), self_cpu_s(), proc_cpu_s(pid)
    threads0 = thread_cpu_s(pid) if pid else (-1.0, -1.0)
    received0 = sum(s.received for s in subs)
    load.measuring = True
    await asyncio.sleep(opts.duration)
    load.measuring = False
    t1, self1, broker1 = time.monotonic(), self_cpu_s(), proc_cpu_s(pid)
    threads1 = thread_cpu_s(pid) if pid else (-1.0, -1.0)
    cpus1 = cpu_stat()
    received1 = sum(s.received for s in subs)
    acks = load.acks
    load.sending = False

    drain_deadline = time.monotonic() + opts.drain
    while any(p.outstanding for p in pubs) and time.monotonic() < drain_deadline:
        if all(p.transport is None for p in pubs):
            break
        await asyncio.sleep(0.01)
    raw["outstanding_after_drain"] = sum(p.outstanding for p in pubs if p.transport is not None)
    published = sum(p.seq for p in pubs)
    acked = sum(p.acked for p in pubs)
    if opts.online:
        for s in subs:
            s.expect(acked)
        try:
            await asyncio.wait_for(asyncio.gather(*(s.done for s in subs)), opts.drain)
        except TimeoutError:
            pass
        raw["online"] = [s.report() for s in subs]
    load.closing = True
    everyone: list[_Client] = [*pubs, *(subs if opts.online else [])]
    for c in everyone:
        c.disconnect()
    await asyncio.wait_for(asyncio.gather(*(c.closed for c in everyone)), 10)

    window_s = t1 - t0
    lat = sorted(load.latencies_ns)
    raw.update(
        window_s=round(window_s, 4),
        acks_in_window=acks,
        delivered_in_window=received1 - received0 if opts.online else None,
        published=published,
        acked=acked,
        per_publisher_acked=[p.acked for p in pubs],
        broker_cpu_s=round(broker1 - broker0, 4) if pid and broker0 >= 0 else None,
        broker_reactor_cpu_s=round(threads1[0] - threads0[0], 4) if threads0[0] >= 0 else None,
        broker_other_threads_cpu_s=round(threads1[1] - threads0[1], 4)
        if threads0[1] >= 0
        else None,
        broker_rss_kb=proc_rss_kb(pid) if pid else None,
        self_cpu_s=round(self1 - self0, 4),
        ack_p50_ms=_percentile(lat, 0.5),
        ack_p99_ms=_percentile(lat, 0.99),
        cpus=cpu_busy(cpus0, cpus1),
        errors=list(load.errors),
        unexpected_closes=load.unexpected_closes,
    )
    return raw


async def verify(
    host: str, port: int, subscribers: int, expected: int, timeout: float
) -> dict[str, Any]:
    """
    Resume every persistent subscriber's session and count what it gets
    back: C{expected} messages each, in order per publisher.
    """
    loop = asyncio.get_running_loop()
    load = _Load(loop, 0, PAYLOAD_HEADER.size)
    subs = [_Subscriber(load, j, subscribe=False) for j in range(subscribers)]
    started = time.monotonic()
    await _open(load, host, port, subs)
    for s in subs:
        s.expect(expected)
    timed_out = False
    try:
        await asyncio.wait_for(asyncio.gather(*(s.done for s in subs)), timeout)
    except TimeoutError:
        timed_out = True
    # A moment for duplicates or extras behind the last expected message.
    await asyncio.sleep(0.1)
    load.closing = True
    for s in subs:
        s.disconnect()
    await asyncio.wait_for(asyncio.gather(*(s.closed for s in subs)), 10)
    return {
        "expected": expected,
        "seconds": round(time.monotonic() - started, 3),
        "timed_out": timed_out,
        "session_present": [s.ready.result() for s in subs],
        "subscribers": [s.report() for s in subs],
        "errors": list(load.errors),
    }


# --- figures, checks and the summary ------------------------------------


def metrics(
    raw: Mapping[str, Any], db_live: int | None, db_after: int | None
) -> dict[str, float | None]:
    """
    The figures of one run from the generator's counts and the database's
    sizes.
    """
    window = raw.get("window_s") or 0.0
    acks = raw.get("acks_in_window") or 0
    out: dict[str, float | None] = {
        "rate": round(acks / window, 1) if window > 0 else None,
        "cpu_us": None,
        "reactor_cpu_us": None,
        "writer_cpu_us": None,
        "broker_cpu_pct": None,
        "gen_cpu_pct": None,
        "gen_cpu_us": None,
        "ack_p50_ms": raw.get("ack_p50_ms"),
        "ack_p99_ms": raw.get("ack_p99_ms"),
        "db_mb": round(db_after / 1e6, 2) if db_after is not None else None,
        "db_live_mb": round(db_live / 1e6, 2) if db_live is not None else None,
        "db_bytes_per_msg": None,
    }
    for key, source in (
        ("cpu_us", "broker_cpu_s"),
        ("reactor_cpu_us", "broker_reactor_cpu_s"),
        ("writer_cpu_us", "broker_other_threads_cpu_s"),
        ("gen_cpu_us", "self_cpu_s"),
    ):
        seconds = raw.get(source)
        if isinstance(seconds, int | float) and seconds >= 0 and acks:
            out[key] = round(seconds * 1e6 / acks, 2)
    for key, source in (("broker_cpu_pct", "broker_cpu_s"), ("gen_cpu_pct", "self_cpu_s")):
        seconds = raw.get(source)
        if isinstance(seconds, int | float) and seconds >= 0 and window > 0:
            out[key] = round(100 * seconds / window, 1)
    messages = raw.get("acked") or 0
    if db_after is not None and messages:
        out["db_bytes_per_msg"] = round(db_after / messages, 1)
    return out


def check(raw: Mapping[str, Any]) -> list[str]:
    """
    What went wrong in a run: errors of the clients, connections lost,
    nothing acknowledged, PUBACKs missing after the drain, online
    subscribers that did not get every acknowledged message in order.
    """
    problems = [f"client error: {e}" for e in raw.get("errors") or []]
    if raw.get("unexpected_closes"):
        problems.append(f"{raw['unexpected_closes']} connection(s) closed by the broker")
    if not raw.get("acks_in_window"):
        problems.append("no PUBACK in the measured window")
    if raw.get("outstanding_after_drain"):
        problems.append(f"{raw['outstanding_after_drain']} publishes never acknowledged")
    expected = raw.get("acked") or 0
    for j, s in enumerate(raw.get("online") or []):
        if s["in_order"] < expected:
            problems.append(
                f"online subscriber {j}: {s['in_order']} of {expected} delivered in order"
            )
    return problems


def check_verified(verified: Mapping[str, Any]) -> list[str]:
    """
    What went wrong when the subscribers resumed their sessions after the
    restart: a session missing, or a subscriber that did not get every
    acknowledged message back exactly once, in order per publisher.
    """
    problems = [f"verify: {e}" for e in verified.get("errors") or []]
    expected = verified.get("expected") or 0
    if not all(verified.get("session_present") or [False]):
        problems.append("verify: a subscriber's session was not present after the restart")
    for j, s in enumerate(verified.get("subscribers") or []):
        if s["in_order"] != expected or s["received"] != expected:
            problems.append(
                f"verify: subscriber {j} got {s['received']} messages, {s['in_order']} in order, "
                f"of {expected} acknowledged"
            )
        for kind in ("dup", "gaps", "bad_payload"):
            if s[kind]:
                problems.append(f"verify: subscriber {j}: {kind} {s[kind]}")
    return problems


#: The summary's columns: metric key, heading, decimals.
COLUMNS = (
    ("rate", "acked msg/s", 0),
    ("cpu_us", "broker CPU µs/msg", 1),
    ("writer_cpu_us", "of which writer thread", 1),
    ("ack_p99_ms", "PUBACK p99 ms", 1),
    ("db_mb", "DB MB after", 1),
    ("db_bytes_per_msg", "DB B/msg", 0),
    ("gen_cpu_pct", "generator CPU %", 0),
)


def summary_table(records: Iterable[Mapping[str, Any]]) -> str:
    """
    A Markdown table: one row per durability mode and publisher count (in
    the order first seen), each cell the median (min–max) over the rounds.
    """
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r.get("durability")), int(r.get("publishers") or 0)), []).append(r)
    head = "| durability | publishers | rounds | " + " | ".join(h for _, h, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (3 + len(COLUMNS))]
    for (mode, pubs), runs in groups.items():
        ok = sum(1 for r in runs if r.get("ok"))
        cells = []
        for key, _, digits in COLUMNS:
            values = [(r.get("metrics") or {}).get(key) for r in runs if r.get("ok")]
            cells.append(format_stats(stats(values), digits))
        rounds = f"{ok}" if ok == len(runs) else f"{ok} ok of {len(runs)}"
        lines.append(f"| {mode} | {pubs} | {rounds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- running ------------------------------------------------------------


def run_once(opts: DurableOptions, case: Case, round_: int, workdir: Path) -> dict[str, Any]:
    """
    One run: start the broker on a fresh database, drive it, stop it, and
    (with C{--verify}) restart it and check what it kept.

    @return: the run's record (the JSON line).
    """
    record: dict[str, Any] = {
        "bench": "mqttx-durable",
        "v": 1,
        "durability": case.durability,
        "publishers": case.publishers,
        "subscribers": opts.subscribers,
        "subscribers_online": opts.online,
        "window": opts.window,
        "size": opts.size,
        "duration_s": opts.duration,
        "commit_interval": opts.commit_interval if case.durability == "batch" else None,
        "round": round_,
        "rounds": opts.rounds,
        "smoke": opts.smoke,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "loadavg": [round(v, 2) for v in os.getloadavg()],
        "commit": git_commit(CHECKOUT),
        "ok": False,
        "error": None,
        "problems": [],
        "metrics": {},
    }
    started = time.monotonic()
    rundir = workdir / f"{case.durability}-p{case.publishers}-r{round_}"
    rundir.mkdir(parents=True, exist_ok=True)
    db = rundir / "var" / "durable.db"
    template = rundir / "template.yaml"
    template.write_text(
        render_config(
            TEMPLATE.read_text(),
            durability=case.durability,
            db=db,
            commit_interval=opts.commit_interval,
        )
    )
    spec = BrokerSpec("mqttx", "mqttx", config=template, checkout=CHECKOUT)
    pin = pin_prefix(opts.broker_cpu, opts.pin)
    load_cpus = cpu_set(opts.load_cpu) if pin else None
    try:
        broker: RunningBroker = start_broker(spec, rundir / "run", python=opts.python, pin=pin)
    except BrokerError as e:
        record["error"] = str(e)
        return record
    record.update(broker_argv=broker.argv, broker_pid=broker.pid)
    raw: dict[str, Any] = {}
    try:
        with Affinity(load_cpus):
            raw = asyncio.run(drive(broker.host, broker.port, broker.pid, opts, case.publishers))
        db_live: int | None = db_bytes(db)
        alive = broker.alive()
    except (OSError, TimeoutError) as e:
        record["error"] = f"{type(e).__name__}: {e}"
        return record
    finally:
        record["broker_exit"] = broker.stop()
    db_after: int | None = db_bytes(db)
    if case.durability == BASELINE:
        db_live = db_after = None
    problems = check(raw)
    if not alive:
        problems.append(f"the broker exited during the run (status {record['broker_exit']})")
    verified = None
    if opts.verify and not problems and case.durability != BASELINE:
        try:
            again = start_broker(spec, rundir / "verify", python=opts.python, pin=pin)
        except BrokerError as e:
            problems.append(f"verify: {e}")
        else:
            try:
                with Affinity(load_cpus):
                    verified = asyncio.run(
                        verify(
                            again.host, again.port, opts.subscribers, raw["acked"], 30 + opts.drain
                        )
                    )
            except (OSError, TimeoutError) as e:
                problems.append(f"verify: {type(e).__name__}: {e}")
            finally:
                again.stop()
        if verified is not None:
            problems += check_verified(verified)
            record["verify"] = verified
    record["problems"] = problems
    record["notes"] = []
    if pin:
        disturbed = contention_note(
            {
                "cpus": [{"busy_pct": b} for b in raw.get("cpus") or []],
                "broker_cpu_pct": 100 * raw["broker_cpu_s"] / raw["window_s"]
                if raw.get("broker_cpu_s") is not None and raw.get("window_s")
                else None,
                "self_cpu_pct": 100 * raw["self_cpu_s"] / raw["window_s"]
                if raw.get("window_s")
                else None,
            },
            opts.broker_cpu,
            opts.load_cpu,
        )
        if disturbed:
            record["notes"].append(disturbed)
    record["ok"] = not problems
    record["metrics"] = metrics(raw, db_live, db_after)
    record["raw"] = raw
    record["elapsed_s"] = round(time.monotonic() - started, 2)
    return record


def load_durable_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """
    The records of this benchmark among lines of text (other lines, a
    summary or the runner's records, are skipped).
    """
    return [v for v in json_objects(lines) if v.get("bench") == "mqttx-durable"]


def describe(record: Mapping[str, Any]) -> str:
    """
    A one-line progress report of a run.
    """
    m = record.get("metrics") or {}
    return progress_line(record, (figure_text(h, m.get(key), d) for key, h, d in COLUMNS))


def summary_text(records: Sequence[Mapping[str, Any]]) -> str:
    """
    The summary printed at the end: a heading with the conditions, the
    table, and the load averages seen.
    """
    first = records[0] if records else {}
    online = "online, acknowledging" if first.get("subscribers_online") else "offline"
    head = (
        f"## Durable QoS 1 throughput: {len(records)} runs, {first.get('subscribers')} persistent "
        f"subscriber(s) {online}, window {first.get('window')}, {first.get('size')} B payloads, "
        f"{first.get('duration_s')} s measured; 1-minute load average at the runs' starts "
        f"{load_range(records)}"
    )
    failed = [r for r in records if not r.get("ok")]
    head += disturbed_text(sum(1 for r in records if r.get("notes")), len(records))
    tail = [
        f"- {r['durability']}/{r['publishers']} round {r['round']}: " + describe(r) for r in failed
    ]
    return "\n".join(["", head, "", summary_table(records), "", *tail])


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """
    Run the durable benchmark.

    @return: 0; 1 if a run could not be made or, in smoke mode, failed a
        check; 2 for a bad command line.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    opts = parse_args(argv)
    if opts.summarize:
        print(summary_text(read_records(opts.summarize, load_durable_records)), file=out)
        return 0
    raise_fd_limit()
    runs = make_workdir(opts.out, "mqttx-durable-")
    print(
        f"durable: {len(opts.cases)} case(s) × {opts.rounds} round(s), "
        f"{opts.subscribers} subscriber(s) {'online' if opts.online else 'offline'}, "
        f"pinning {'on' if pin_prefix('0', opts.pin) else 'off'}, {platform.node()}, "
        f"runs in {runs}",
        file=err,
        flush=True,
    )
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    for case in opts.cases:
        for round_ in range(1, opts.rounds + 1):
            record = run_once(opts, case, round_, runs)
            records.append(record)
            write_record(record, out, opts.jsonl)
            print(f"[{case.name} {round_}/{opts.rounds}] {describe(record)}", file=err, flush=True)
    print(summary_text(records), file=out, flush=True)
    return finish("durable", records, opts.smoke, started, err)


if __name__ == "__main__":
    sys.exit(main())
