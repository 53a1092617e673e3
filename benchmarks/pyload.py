#!/usr/bin/env python3
# -*- test-case-name: tests.benchmarks.test_runner -*-
"""
pyload: the fallback MQTT load generator, in Python (asyncio, stdlib only).

The runner uses it when C{MQLOAD} does not name a built C{mqload}. It takes
the same flags as C{mqload} (those the scenarios use, see C{--help}) and
prints the same ONE JSON line on stdout, with C{"tool": "pyload"}: the same
payload header (magic, run id, publisher id, sequence number, monotonic
nanoseconds), the same closed-loop window, loss / duplicate / reorder
accounting, latency percentiles, broker CPU and RSS from C{/proc}.

It is one Python thread, so it saturates long before a C broker and before
an optimised Python one: see C{benchmarks/README.md} for its measured
ceiling. Use it to check that scenarios complete without loss, not to rank
brokers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import struct
import sys
import time
from collections.abc import Sequence
from typing import Any

MAGIC = 0x444C514D  # "MQLD" little endian, as mqload
HEADER = struct.Struct("<IIIIQ")  # magic, run id, publisher id, seq, t_ns
HEADER_LEN = HEADER.size
NSEC = 1_000_000_000
ROLE_PUB, ROLE_SUB, ROLE_IDLE = 0, 1, 2
WAITING, READY, CLOSED = 0, 1, 2

now_ns = time.monotonic_ns


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """
    Parse mqload-compatible flags.

    @param argv: the arguments, without the program name.
    """
    p = argparse.ArgumentParser(
        prog="pyload", description="MQTT load generator (Python fallback of mqload)"
    )
    p.add_argument("-H", "--host", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=1883)
    p.add_argument("-V", "--mqtt", type=int, choices=(4, 5), default=4)
    p.add_argument("-P", "--pubs", type=int, default=1)
    p.add_argument("-S", "--subs", type=int, default=1)
    p.add_argument("-T", "--topics", type=int, default=-1)
    p.add_argument("--sub-mode", choices=("rr", "wild", "all"), default="rr")
    p.add_argument("-q", "--qos", type=int, choices=(0, 1, 2), default=None)
    p.add_argument("--pub-qos", type=int, choices=(0, 1, 2), default=0)
    p.add_argument("--sub-qos", type=int, choices=(0, 1, 2), default=0)
    p.add_argument("-s", "--size", type=int, default=64)
    p.add_argument("-r", "--rate", type=float, default=0.0)
    p.add_argument("-d", "--duration", type=float, default=10.0)
    p.add_argument("-w", "--warmup", type=float, default=2.0)
    p.add_argument("--drain", type=float, default=5.0)
    p.add_argument("--inflight", type=int, default=20)
    p.add_argument("--window", type=int, default=0)
    p.add_argument("--batch-bytes", type=int, default=32768)
    p.add_argument("-k", "--keepalive", type=int, default=60)
    p.add_argument("-c", "--conns", type=int, default=0)
    p.add_argument("--parallel", type=int, default=64)
    p.add_argument("--hold", type=float, default=5.0)
    p.add_argument("--connect-timeout", type=float, default=30.0)
    p.add_argument("--max-time", type=float, default=0.0)
    p.add_argument("--broker-pid", type=int, default=0)
    p.add_argument("--label", default="")
    p.add_argument("--prefix", default="mqload")
    p.add_argument("--quiet", action="store_true")
    o = p.parse_args(argv)
    if o.qos is not None:
        o.pub_qos = o.sub_qos = o.qos
    if o.topics < 0:
        o.topics = o.pubs
    if o.size < HEADER_LEN:
        p.error(f"--size must be >= {HEADER_LEN}")
    if o.conns <= 0 and (o.pubs < 1 or o.subs < 0 or o.topics < 1):
        p.error("need at least one publisher and one topic")
    if o.duration <= 0 or o.warmup < 0 or o.drain < 0 or o.hold < 0:
        p.error("durations must be positive")
    o.inflight = min(max(o.inflight, 1), 65535)
    o.parallel = max(o.parallel, 1)
    if o.max_time <= 0:
        if o.conns > 0:
            o.max_time = o.connect_timeout + o.hold + 60 + o.conns / 100.0
        else:
            o.max_time = o.connect_timeout + o.warmup + o.duration + o.drain + 30
    return o


# --- /proc --------------------------------------------------------------


def proc_cpu_s(pid: int) -> float:
    """
    utime + stime of a process in seconds, or -1.
    """
    if pid <= 0:
        return -1.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return -1.0
    # fields[0] is the state (field 3); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_kb(pid: int) -> int:
    """
    VmRSS of a process in KiB, or -1.
    """
    if pid <= 0:
        return -1
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def self_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cpu_stat() -> list[tuple[int, int, int]]:
    """
    Per CPU (busy, steal, total) jiffies from /proc/stat.
    """
    out = []
    try:
        with open("/proc/stat") as f:
            for line in f:
                if line.startswith("cpu") and line[3:4].isdigit():
                    v = [int(x) for x in line.split()[1:]]
                    v += [0] * (8 - len(v))
                    total = sum(v[:8])
                    out.append((total - v[3] - v[4], v[7], total))
    except OSError:
        pass
    return out


def cpu_busy(
    before: Sequence[tuple[int, int, int]], after: Sequence[tuple[int, int, int]]
) -> list[float]:
    """
    Per CPU, the percentage of the time between two L{cpu_stat} readings
    that it was busy.
    """
    out = []
    for (b0, _, t0), (b1, _, t1) in zip(before, after, strict=False):
        out.append(round(100.0 * (b1 - b0) / (t1 - t0), 1) if t1 > t0 else 0.0)
    return out


def tcp_mem_pages() -> int:
    try:
        with open("/proc/net/sockstat") as f:
            for line in f:
                if line.startswith("TCP:"):
                    parts = line.split()
                    return int(parts[parts.index("mem") + 1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


# --- MQTT encoding ------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def remaining_length(buf: bytes | bytearray, i: int, n: int) -> tuple[int, int]:
    """
    Read an MQTT Remaining Length that starts at C{buf[i]}, the packet
    ending at C{n} at the latest.

    @return: the length, -1 if C{buf} ends before it does, and the index
        after it.
    @raise ValueError: if it is longer than four bytes.
    """
    length, shift = 0, 0
    while True:
        if i >= n:
            return -1, i
        b = buf[i]
        i += 1
        length |= (b & 0x7F) << shift
        if b < 0x80:
            return length, i
        shift += 7
        if shift > 21:
            raise ValueError("malformed remaining length")


def utf8(s: str) -> bytes:
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id: str, version: int, keepalive: int) -> bytes:
    body = utf8("MQTT") + bytes([version, 0x02]) + keepalive.to_bytes(2, "big")
    if version == 5:
        body += b"\x00"
    return packet(0x10, body + utf8(client_id))


def subscribe_packet(filters: list[str], qos: int, version: int) -> bytes:
    body = b"\x00\x01" + (b"\x00" if version == 5 else b"")
    for f in filters:
        body += utf8(f) + bytes([qos])
    return packet(0x82, body)


PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"


def pid_packet(first: int, pid: int) -> bytes:
    return bytes((first, 2, pid >> 8, pid & 0xFF))


def percentiles(samples_ns: list[int]) -> dict[str, float | int | None]:
    """
    mqload's latency object (microseconds) from samples in nanoseconds.
    """
    n = len(samples_ns)
    if not n:
        return {k: None for k in ("p50", "p90", "p99", "p999", "max", "mean")} | {"n": 0}
    s = sorted(samples_ns)

    def q(f: float) -> float:
        i = max(int(f * n + 0.999999), 1) - 1
        return round(s[min(i, n - 1)] / 1e3, 1)

    return {
        "n": n,
        "p50": q(0.5),
        "p90": q(0.9),
        "p99": q(0.99),
        "p999": q(0.999),
        "max": round(s[-1] / 1e3, 1),
        "mean": round(sum(s) / n / 1e3, 1),
    }


# --- connections ------------------------------------------------------------


class Client(asyncio.Protocol):
    """
    One MQTT connection of the generator: a publisher, a subscriber or an
    idle connection of a connect storm.
    """

    def __init__(self, gen: Generator, role: int, ident: int) -> None:
        self.gen = gen
        self.role = role
        self.id = ident
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = WAITING
        self.ready: asyncio.Future[None] = gen.loop.create_future()
        self.paused = False
        self.last_tx = 0
        self.t_start = now_ns()
        self.t_ready = 0
        # publisher state
        self.topic = 0
        self.seq = 0
        self.inflight = 0
        self.next_pid = 1
        self.pid_ts: dict[int, int] = {}
        self.recv_from = 0
        self.blocked_since = 0
        self.excused = 0
        self.fill_scheduled = False
        self.head = b""
        self.mid = b""
        self.pad = b""

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        role = "psc"[self.role]
        cid = f"mql{self.gen.run_id:08x}{role}{self.id}"
        self.write(connect_packet(cid, self.gen.o.mqtt, self.gen.o.keepalive))

    def connection_lost(self, exc: Exception | None) -> None:
        was = self.state
        self.state = CLOSED
        if was == WAITING:
            self.gen.conn_fail += 1
            if not self.ready.done():
                self.ready.set_exception(ConnectionError("lost before ready"))
        elif was == READY and self.gen.phase < 3:
            self.gen.disconnects += 1
        self.transport = None

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.role == ROLE_PUB:
            self.schedule_fill()

    def write(self, data: bytes) -> None:
        if self.transport is not None:
            self.transport.write(data)
            self.last_tx = now_ns()

    def close(self) -> None:
        if self.transport is not None:
            if self.state == READY:
                self.transport.write(DISCONNECT)
            if self.gen.phase < 3:
                self.transport.abort()
            else:
                self.transport.close()

    # publishing

    def build_template(self) -> None:
        o = self.gen.o
        topic = utf8(self.gen.topic_name(self.topic))
        props = b"\x00" if o.mqtt == 5 else b""
        rem = len(topic) + (2 if o.pub_qos else 0) + len(props) + o.size
        self.head = bytes([0x30 | (o.pub_qos << 1)]) + varint(rem) + topic
        self.mid = props
        self.pad = bytes(97 + i % 26 for i in range(HEADER_LEN, o.size))

    def schedule_fill(self) -> None:
        if not self.fill_scheduled and self.state == READY:
            self.fill_scheduled = True
            self.gen.loop.call_soon(self.fill)

    def allowance(self, now: int) -> int:
        gen = self.gen
        o = gen.o
        if gen.phase != 1 or self.state != READY:
            return 0
        allow = 1 << 62
        if gen.per_pub_rate > 0:
            target = int((now - gen.t0) / 1e9 * gen.per_pub_rate + 1.0)
            if target <= self.seq:
                return 0
            allow = target - self.seq
        if o.pub_qos:
            if self.inflight >= o.inflight:
                return 0
            allow = min(allow, o.inflight - self.inflight)
        if o.window > 0:
            fanout = gen.fanout[self.topic]
            if fanout > 0:
                done = self.recv_from // fanout + self.excused
                out = self.seq - done if self.seq > done else 0
                if out >= o.window:
                    if not self.blocked_since:
                        self.blocked_since = now
                    elif now - self.blocked_since > NSEC // 2:
                        # Lost messages: write them off, as mqload does.
                        self.excused += out
                        self.blocked_since = 0
                        gen.window_timeouts += 1
                    return 0
                self.blocked_since = 0
                allow = min(allow, o.window - out)
        return allow

    def fill(self) -> None:
        self.fill_scheduled = False
        gen = self.gen
        if self.paused or self.transport is None:
            return
        now = now_ns()
        allow = self.allowance(now)
        if allow <= 0:
            self.plan_next(now)
            return
        o = gen.o
        n = min(allow, max(1, o.batch_bytes // (len(self.head) + o.size + 2)))
        parts = []
        head, mid, pad = self.head, self.mid, self.pad
        pack = HEADER.pack
        run_id, ident = gen.run_id, self.id
        w_start, w_end = gen.w_start, gen.w_end
        qos = o.pub_qos
        in_window = 0
        seq = self.seq
        for _ in range(n):
            ts = now_ns()
            if qos:
                pid = self.next_pid
                self.next_pid = 1 if pid == 65535 else pid + 1
                self.pid_ts[pid] = ts
                parts.append(
                    head + pid.to_bytes(2, "big") + mid + pack(MAGIC, run_id, ident, seq, ts) + pad
                )
            else:
                parts.append(head + mid + pack(MAGIC, run_id, ident, seq, ts) + pad)
            seq += 1
            if w_start <= ts < w_end:
                in_window += 1
        if qos:
            self.inflight += n
        self.seq = seq
        gen.pub_total += n
        gen.pub_win += in_window
        self.write(b"".join(parts))
        self.plan_next(now_ns())

    def plan_next(self, now: int) -> None:
        """
        Arrange the next L{fill}: at the next message's due time under a
        fixed rate, at once if more may be sent now; otherwise an ack, a
        delivery, C{resume_writing} or the blocked-publisher sweep will.
        """
        gen = self.gen
        if gen.phase != 1 or self.paused or self.transport is None or self.fill_scheduled:
            return
        if gen.per_pub_rate > 0:
            due = gen.t0 + int(self.seq / gen.per_pub_rate * 1e9)
            if due > now:
                self.fill_scheduled = True
                gen.loop.call_later((due - now) / 1e9, self.fill)
                return
        if self.allowance(now) > 0:
            self.schedule_fill()

    def acked(self, pid: int, now: int) -> None:
        gen = self.gen
        if self.inflight == 0:
            gen.proto_err += 1
            return
        self.inflight -= 1
        gen.ack_total += 1
        if gen.w_start <= now < gen.w_end:
            gen.ack_win += 1
        ts = self.pid_ts.pop(pid, 0)
        if ts and gen.w_start <= ts < gen.w_end:
            gen.ack_lat.append(now - ts)
        self.schedule_fill()

    # receiving

    def data_received(self, data: bytes) -> None:  # noqa: C901 - the hot loop, kept in one piece
        buf = self.buf
        buf += data
        n = len(buf)
        off = 0
        gen = self.gen
        v5 = gen.o.mqtt == 5
        now = now_ns()
        replies: list[bytes] = []
        is_sub = self.role == ROLE_SUB
        while n - off >= 2:
            i = off + 1
            rl = 0
            shift = 0
            while True:
                if i >= n:
                    rl = -1
                    break
                b = buf[i]
                i += 1
                rl |= (b & 0x7F) << shift
                if b < 0x80:
                    break
                shift += 7
                if shift > 21:
                    gen.proto_err += 1
                    self.close()
                    return
            if rl < 0 or i + rl > n:
                break
            end = i + rl
            first = buf[off]
            kind = first >> 4
            if kind == 3:
                qos = (first >> 1) & 3
                o = i + 2 + ((buf[i] << 8) | buf[i + 1])
                if qos:
                    pid = (buf[o] << 8) | buf[o + 1]
                    o += 2
                    replies.append(pid_packet(0x40 if qos == 1 else 0x50, pid))
                if v5:
                    plen = 0
                    shift = 0
                    while o < end:
                        b = buf[o]
                        o += 1
                        plen |= (b & 0x7F) << shift
                        if b < 0x80:
                            break
                        shift += 7
                    o += plen
                if is_sub:
                    if end - o < HEADER_LEN:
                        gen.bad_payload += 1
                    else:
                        magic, run, pub, seq, ts = HEADER.unpack_from(buf, o)
                        if magic != MAGIC or run != gen.run_id or pub >= gen.o.pubs:
                            gen.bad_payload += 1
                        else:
                            gen.on_message(self.id, pub, seq, ts, end - o, now)
            else:
                self.control(kind, buf, i, end, now, replies)
                if self.transport is None:
                    return
            off = end
        if off:
            del buf[:off]
        if replies:
            self.write(b"".join(replies))

    def control(
        self, kind: int, buf: bytearray, i: int, end: int, now: int, replies: list[bytes]
    ) -> None:
        gen = self.gen
        v5 = gen.o.mqtt == 5
        rl = end - i
        if kind == 2:  # CONNACK
            if rl < 2 or self.state != WAITING:
                gen.proto_err += 1
            elif buf[i + 1] != 0:
                gen.connack_fail += 1
                self.close()
            elif self.role == ROLE_SUB:
                filters = gen.filters_for(self.id)
                replies.append(subscribe_packet(filters, gen.o.sub_qos, gen.o.mqtt))
            else:
                self.became_ready(now)
        elif kind == 9:  # SUBACK
            o = i + 2
            if v5:
                plen, shift = 0, 0
                while o < end:
                    b = buf[o]
                    o += 1
                    plen |= (b & 0x7F) << shift
                    if b < 0x80:
                        break
                    shift += 7
                o += plen
            if any(b >= 0x80 for b in buf[o:end]):
                gen.suback_fail += 1
                self.close()
            else:
                self.became_ready(now)
        elif kind in (4, 7):  # PUBACK, PUBCOMP
            if v5 and rl >= 3 and buf[i + 2] >= 0x80:
                gen.ack_err += 1
            if (kind == 4) == (gen.o.pub_qos == 1) and gen.o.pub_qos:
                self.acked((buf[i] << 8) | buf[i + 1], now)
            else:
                gen.proto_err += 1
        elif kind == 5:  # PUBREC
            pid = (buf[i] << 8) | buf[i + 1]
            if v5 and rl >= 3 and buf[i + 2] >= 0x80:
                gen.ack_err += 1
                self.acked(pid, now)
            else:
                replies.append(pid_packet(0x62, pid))
        elif kind == 6:  # PUBREL
            replies.append(pid_packet(0x70, (buf[i] << 8) | buf[i + 1]))
        elif kind == 13:  # PINGRESP
            pass
        elif kind == 14:  # DISCONNECT (5.0)
            self.close()
        else:
            gen.proto_err += 1

    def became_ready(self, now: int) -> None:
        self.state = READY
        self.t_ready = now
        if not self.ready.done():
            self.ready.set_result(None)


# --- the run ----------------------------------------------------------------


class Generator:
    """
    One run: the connections, the phases and the statistics.
    """

    def __init__(self, o: argparse.Namespace, loop: asyncio.AbstractEventLoop) -> None:
        self.o = o
        self.loop = loop
        self.run_id = (time.time_ns() ^ (os.getpid() << 8)) & 0xFFFFFFFF
        self.phase = 0
        self.t_begin = now_ns()
        self.t0 = 0
        self.w_start = self.w_end = 1 << 63
        self.per_pub_rate = o.rate / o.pubs if o.rate > 0 and o.pubs else 0.0
        self.pubs: list[Client] = []
        self.subs: list[Client] = []
        self.idle: list[Client] = []
        self.aborted = False
        self.abort_reason = ""
        #: Figures taken at phase changes (kept when a run is cut short).
        self.stats: dict[str, Any] = {}
        # statistics, named as mqload's
        self.pub_total = self.pub_win = self.ack_total = self.ack_win = 0
        self.recv_total = self.unique = self.recv_win = self.recv_bytes_win = 0
        self.bad_payload = self.proto_err = self.disconnects = self.conn_fail = 0
        self.connack_fail = self.suback_fail = self.ack_err = self.window_timeouts = 0
        self.latency: list[int] = []
        self.ack_lat: list[int] = []
        self.conn_lat: list[int] = []
        self.timeline: dict[int, int] = {}
        topics = max(o.topics, 1)
        self.fanout = [0] * topics
        for s in range(o.subs):
            for t in range(topics):
                if o.sub_mode != "rr" or s % topics == t:
                    self.fanout[t] += 1
        pairs = o.subs * o.pubs
        self.bitmaps = [bytearray(8192) for _ in range(pairs)]
        self.pair_last = [-1] * pairs
        self.pair_dup = [0] * pairs
        self.pair_reord = [0] * pairs

    def topic_name(self, t: int) -> str:
        return f"{self.o.prefix}/{self.run_id:08x}/t/{t}"

    def filters_for(self, sub: int) -> list[str]:
        o = self.o
        if o.sub_mode == "wild":
            return [f"{o.prefix}/{self.run_id:08x}/t/#"]
        if o.sub_mode == "all":
            return [self.topic_name(t) for t in range(o.topics)]
        return [self.topic_name(sub % o.topics)]

    def on_message(self, sub: int, pub: int, seq: int, ts: int, length: int, now: int) -> None:
        pair = sub * self.o.pubs + pub
        bm = self.bitmaps[pair]
        byte = seq >> 3
        if byte >= len(bm):
            bm.extend(bytes(max(byte + 1 - len(bm), len(bm))))
        bit = 1 << (seq & 7)
        if bm[byte] & bit:
            self.pair_dup[pair] += 1
        else:
            bm[byte] |= bit
            self.unique += 1
        if seq < self.pair_last[pair]:
            self.pair_reord[pair] += 1
        self.pair_last[pair] = seq
        publisher = self.pubs[pub]
        publisher.recv_from += 1
        if self.o.window and not publisher.fill_scheduled:
            publisher.schedule_fill()
        self.recv_total += 1
        if self.w_start <= now < self.w_end:
            self.recv_win += 1
            self.recv_bytes_win += length
        if self.w_start <= ts < self.w_end and now >= ts:
            self.latency.append(now - ts)
        if now >= self.t0:
            sec = (now - self.t0) // NSEC
            self.timeline[sec] = self.timeline.get(sec, 0) + 1

    async def open(self, role: int, ident: int) -> Client:
        client = Client(self, role, ident)
        try:
            await self.loop.create_connection(lambda: client, self.o.host, self.o.port)
        except OSError:
            self.conn_fail += 1
            client.state = CLOSED
            if not client.ready.done():
                client.ready.set_exception(ConnectionError("connect failed"))
        return client

    async def keepalive(self) -> None:
        if self.o.keepalive <= 0:
            return
        limit = self.o.keepalive * NSEC // 2
        while True:
            await asyncio.sleep(1.0)
            now = now_ns()
            for c in (*self.pubs, *self.subs, *self.idle):
                if c.state == READY and now - c.last_tx >= limit:
                    c.write(PINGREQ)

    async def run_pubsub(self) -> dict[str, Any]:
        o = self.o
        loop = self.loop
        rss0 = proc_rss_kb(o.broker_pid)
        self.pubs = [await self.open(ROLE_PUB, i) for i in range(o.pubs)]
        self.subs = [await self.open(ROLE_SUB, i) for i in range(o.subs)]
        for i, p in enumerate(self.pubs):
            p.topic = i % o.topics
            p.build_template()
        everyone = [*self.pubs, *self.subs]
        try:
            await asyncio.wait_for(asyncio.gather(*(c.ready for c in everyone)), o.connect_timeout)
        except (TimeoutError, ConnectionError):
            self.aborted = True
            self.abort_reason = "connect-failed" if self.conn_fail else "connect-timeout"
        stats = self.stats
        stats["rss0"] = rss0
        if self.aborted:
            return stats
        self.t0 = now_ns()
        self.w_start = self.t0 + int(o.warmup * NSEC)
        self.w_end = self.w_start + int(o.duration * NSEC)
        self.phase = 1
        stats["rss_ready"] = proc_rss_kb(o.broker_pid)
        pinger = loop.create_task(self.keepalive())
        for p in self.pubs:
            p.schedule_fill()

        async def sweep_blocked() -> None:
            while self.phase == 1:
                await asyncio.sleep(0.1)
                for p in self.pubs:
                    if p.blocked_since:
                        p.schedule_fill()

        sweeper = loop.create_task(sweep_blocked())
        await asyncio.sleep(max(self.w_start - now_ns(), 0) / NSEC)
        stats["bcpu_ws"], stats["scpu_ws"], stats["cs_ws"] = (
            proc_cpu_s(o.broker_pid),
            self_cpu_s(),
            cpu_stat(),
        )
        await asyncio.sleep(max(self.w_end - now_ns(), 0) / NSEC)
        stats["bcpu_we"], stats["scpu_we"], stats["cs_we"] = (
            proc_cpu_s(o.broker_pid),
            self_cpu_s(),
            cpu_stat(),
        )
        stats["measured"] = True
        stats["rss_win_end"] = proc_rss_kb(o.broker_pid)
        self.phase = 2
        drain_end = now_ns() + int(o.drain * NSEC)
        while now_ns() < drain_end:
            expected = sum(p.seq * self.fanout[p.topic] for p in self.pubs)
            out = sum(p.inflight for p in self.pubs if p.transport is not None)
            unsent = any(
                p.transport is not None and p.transport.get_write_buffer_size() for p in self.pubs
            )
            if self.unique >= expected and out == 0 and not unsent:
                break
            await asyncio.sleep(0.01)
        stats["t_stop"] = now_ns()
        pinger.cancel()
        sweeper.cancel()
        return stats

    async def run_storm(self) -> dict[str, Any]:
        o = self.o
        stats = self.stats
        stats.update(rss0=proc_rss_kb(o.broker_pid), tcp0=tcp_mem_pages())
        gate = asyncio.Semaphore(o.parallel)
        deadline = self.t_begin + int(o.connect_timeout * NSEC)

        async def one(i: int) -> None:
            async with gate:
                c = await self.open(ROLE_IDLE, i)
                self.idle.append(c)
                try:
                    left = max(deadline - now_ns(), 0) / NSEC
                    await asyncio.wait_for(asyncio.shield(c.ready), left)
                except (TimeoutError, ConnectionError):
                    if c.state == WAITING:
                        self.conn_fail += 1
                        c.state = CLOSED
                        if c.transport is not None:
                            c.transport.abort()
                    return
                self.conn_lat.append(c.t_ready - c.t_start)
                sec = (c.t_ready - self.t_begin) // NSEC
                self.timeline[sec] = self.timeline.get(sec, 0) + 1

        await asyncio.gather(*(one(i) for i in range(o.conns)))
        stats["t_all"] = now_ns()
        stats["rss_ready"] = proc_rss_kb(o.broker_pid)
        stats["tcp_ready"] = tcp_mem_pages()
        self.phase = 1
        pinger = self.loop.create_task(self.keepalive())
        await asyncio.sleep(o.hold)
        pinger.cancel()
        stats["rss_end"] = proc_rss_kb(o.broker_pid)
        stats["t_stop"] = now_ns()
        return stats

    def teardown(self) -> None:
        self.phase = 3
        for c in (*self.pubs, *self.subs, *self.idle):
            c.close()

    # --- output ---------------------------------------------------------

    def timeline_list(self) -> list[int]:
        if not self.timeline:
            return []
        return [self.timeline.get(s, 0) for s in range(max(self.timeline) + 1)]

    def storm_report(self, st: dict[str, Any]) -> dict[str, Any]:
        o = self.o
        ready = [c for c in self.idle if c.t_ready]
        last = max((c.t_ready for c in ready), default=0)
        ct = (last - self.t_begin) / 1e9 if last > self.t_begin else 0.0
        rss0, rss_ready = st.get("rss0", -1), st.get("rss_ready", -1)
        dr = rss_ready - rss0 if rss0 >= 0 and rss_ready >= 0 else -1
        still_open = sum(1 for c in self.idle if c.state == READY and c.transport is not None)
        t_all, t_stop = st.get("t_all", 0), st.get("t_stop", now_ns())
        return {
            "tool": "pyload",
            "v": 1,
            "mode": "conn",
            "label": o.label,
            "broker": f"{o.host}:{o.port}",
            "mqtt": o.mqtt,
            "target": o.conns,
            "parallel": o.parallel,
            "keepalive": o.keepalive,
            "connected": len(ready),
            "failed": self.conn_fail,
            "connect_time_s": round(ct, 3),
            "connect_rate": round(len(ready) / ct, 1) if ct > 0 else 0.0,
            "held_s": round((t_stop - t_all) / 1e9, 2) if t_all else 0.0,
            "still_open_end": still_open,
            "dropped_during_hold": self.disconnects,
            "connack_latency_us": percentiles(self.conn_lat),
            "broker_pid": o.broker_pid,
            "rss_kb_before": rss0,
            "rss_kb_connected": rss_ready,
            "rss_kb_end": st.get("rss_end", -1),
            "bytes_per_conn": round(dr * 1024.0 / len(ready)) if dr >= 0 and ready else -1.0,
            "kernel_tcp_mem_pages_before": st.get("tcp0", -1),
            "kernel_tcp_mem_pages_connected": st.get("tcp_ready", -1),
            "aborted": self.aborted,
            "abort_reason": self.abort_reason,
            "self_cpu_s": round(self_cpu_s(), 2),
            "timeline_conn_per_s": self.timeline_list(),
        }

    def pubsub_report(self, st: dict[str, Any]) -> dict[str, Any]:
        o = self.o
        el = o.duration
        measured = bool(st.get("measured"))
        published = sum(p.seq for p in self.pubs)
        expected = sum(p.seq * self.fanout[p.topic] for p in self.pubs)
        unacked = sum(p.inflight for p in self.pubs)
        lost = max(expected - self.unique, 0)
        bcpu = (
            st["bcpu_we"] - st["bcpu_ws"]
            if measured and st["bcpu_ws"] >= 0 and st["bcpu_we"] >= 0
            else -1.0
        )
        scpu = st["scpu_we"] - st["scpu_ws"] if measured else -1.0
        cpus = []
        for a, b in zip(st.get("cs_ws", []), st.get("cs_we", []), strict=False):
            total = (b[2] - a[2]) or 1
            cpus.append(
                {
                    "busy_pct": round(100.0 * (b[0] - a[0]) / total, 1),
                    "steal_pct": round(100.0 * (b[1] - a[1]) / total, 1),
                }
            )
        t_stop = st.get("t_stop", now_ns())
        rss_end = proc_rss_kb(o.broker_pid)
        return {
            "tool": "pyload",
            "v": 1,
            "mode": "pubsub",
            "label": o.label,
            "broker": f"{o.host}:{o.port}",
            "mqtt": o.mqtt,
            "pubs": o.pubs,
            "subs": o.subs,
            "topics": o.topics,
            "sub_mode": o.sub_mode,
            "pub_qos": o.pub_qos,
            "sub_qos": o.sub_qos,
            "size": o.size,
            "rate_target": o.rate,
            "inflight": o.inflight,
            "window": o.window,
            "duration_s": o.duration,
            "warmup_s": o.warmup,
            "measured": measured,
            "pub_rate": round(self.pub_win / el, 1) if measured else 0.0,
            "recv_rate": round(self.recv_win / el, 1) if measured else 0.0,
            "recv_MBps": round(self.recv_bytes_win / el / 1e6, 3) if measured else 0.0,
            "ack_rate": round(self.ack_win / el, 1) if measured else 0.0,
            "latency_us": percentiles(self.latency),
            "ack_latency_us": percentiles(self.ack_lat),
            "published": published,
            "expected": expected,
            "received": self.recv_total,
            "unique": self.unique,
            "lost": lost,
            "dup": sum(self.pair_dup),
            "reordered": sum(self.pair_reord),
            "acks": self.ack_total,
            "unacked": unacked,
            "bad_payload": self.bad_payload,
            "proto_err": self.proto_err,
            "disconnects": self.disconnects,
            "conn_fail": self.conn_fail,
            "ack_err": self.ack_err,
            "window_timeouts": self.window_timeouts,
            "aborted": self.aborted,
            "abort_reason": self.abort_reason,
            "drain_s": round((t_stop - self.w_end) / 1e9, 2) if measured else 0.0,
            "broker_pid": o.broker_pid,
            "broker_cpu_pct": round(100.0 * bcpu / el, 1) if bcpu >= 0 else -1.0,
            "broker_rss_kb_start": st.get("rss0", -1),
            "broker_rss_kb_ready": st.get("rss_ready", -1),
            "broker_rss_kb_window_end": st.get("rss_win_end", -1),
            "broker_rss_kb_end": rss_end,
            "self_cpu_pct": round(100.0 * scpu / el, 1) if scpu >= 0 else -1.0,
            "broker_cpu_us_per_msg": round(bcpu * 1e6 / self.recv_win, 3)
            if bcpu >= 0 and self.recv_win
            else -1.0,
            "self_cpu_us_per_msg": round(scpu * 1e6 / self.recv_win, 3)
            if scpu >= 0 and self.recv_win
            else -1.0,
            "cpus": cpus,
            "timeline_recv_per_s": self.timeline_list(),
        }


async def amain(o: argparse.Namespace) -> tuple[dict[str, Any], int]:
    loop = asyncio.get_running_loop()
    gen = Generator(o, loop)
    main = loop.create_task(gen.run_storm() if o.conns > 0 else gen.run_pubsub())
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, main.cancel)
    stats = gen.stats
    try:
        await asyncio.wait_for(main, o.max_time)
    except TimeoutError:
        gen.aborted, gen.abort_reason = True, "max-time"
    except asyncio.CancelledError:
        gen.aborted, gen.abort_reason = True, "signal"
    if o.conns > 0:
        stats.setdefault("rss_end", proc_rss_kb(o.broker_pid))
        report = gen.storm_report(stats)
    else:
        stats.setdefault("t_stop", now_ns())
        report = gen.pubsub_report(stats)
    gen.teardown()
    await asyncio.sleep(0.05)
    return report, 3 if gen.aborted else 0


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run one load-generator run and print its JSON line.

    @return: 0, or 3 if the run was aborted (as mqload).
    """
    o = parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    report, status = asyncio.run(amain(o))
    sys.stdout.write(json.dumps(report, separators=(",", ":")) + "\n")
    sys.stdout.flush()
    if not o.quiet:
        if report["mode"] == "conn":
            summary = (
                f"conn: {report['connected']}/{report['target']} connected in "
                f"{report['connect_time_s']}s, failed {report['failed']}, "
                f"{report['bytes_per_conn']} B/conn"
            )
        else:
            summary = (
                f"pubsub: pub {report['pub_rate']:.0f}/s recv {report['recv_rate']:.0f}/s "
                f"acks {report['ack_rate']:.0f}/s | p99 {report['latency_us']['p99']}us | "
                f"expected {report['expected']} unique {report['unique']} lost {report['lost']} "
                f"dup {report['dup']} | broker cpu {report['broker_cpu_pct']}% "
                f"self cpu {report['self_cpu_pct']}%"
            )
        if report["aborted"]:
            summary += f" ABORTED: {report['abort_reason']}"
        print(summary, file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
