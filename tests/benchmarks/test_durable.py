# -*- test-case-name: tests.benchmarks.test_durable -*-
"""
Tests for the durable QoS 1 benchmark's pure parts: its command line, the
broker configuration it renders, the MQTT framing of its load generator,
its figures, checks and summary.

Nothing here starts a broker or opens a socket.
"""

from __future__ import annotations

import io
import json
import struct
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.brokers import render_template
from benchmarks.durable import (
    FULL_PUBLISHERS,
    MAX_QUEUED,
    TEMPLATE,
    Case,
    check,
    check_verified,
    connect_packet,
    db_bytes,
    load_durable_records,
    main,
    make_payload,
    metrics,
    parse_args,
    parse_payload,
    parse_publish,
    render_config,
    split_packets,
    subscribe_packet,
    summary_table,
)
from mqttx.config import parse_config


def raw_run(**changes: Any) -> dict[str, Any]:
    """
    A clean run's counts as L{benchmarks.durable.drive} reports them.
    """
    raw: dict[str, Any] = {
        "publishers": 10,
        "subscribers": 1,
        "window_s": 10.0,
        "acks_in_window": 50_000,
        "published": 62_000,
        "acked": 62_000,
        "outstanding_after_drain": 0,
        "broker_cpu_s": 5.0,
        "broker_reactor_cpu_s": 3.5,
        "broker_other_threads_cpu_s": 1.5,
        "self_cpu_s": 2.0,
        "ack_p50_ms": 3.0,
        "ack_p99_ms": 9.5,
        "errors": [],
        "unexpected_closes": 0,
    }
    raw.update(changes)
    return raw


def verified_run(expected: int = 100, **sub: int) -> dict[str, Any]:
    report = {"received": expected, "in_order": expected, "dup": 0, "gaps": 0, "bad_payload": 0}
    report.update(sub)
    return {
        "expected": expected,
        "session_present": [True],
        "subscribers": [report],
        "errors": [],
    }


class ParseArgsTests(SynchronousTestCase):
    """
    The command line.
    """

    def test_defaults(self) -> None:
        """
        Without options: both modes at 1, 10 and 100 publishers, 3 rounds of
        10 s, one offline subscriber, a window of 20, not verified.
        """
        o = parse_args([])
        self.assertEqual(
            o.cases, tuple(Case(m, n) for m in ("sync", "batch") for n in FULL_PUBLISHERS)
        )
        self.assertEqual((o.rounds, o.duration, o.warmup), (3, 10.0, 2.0))
        self.assertEqual((o.subscribers, o.online, o.window, o.size), (1, False, 20, 64))
        self.assertFalse(o.verify)
        self.assertFalse(o.smoke)

    def test_smoke(self) -> None:
        """
        Smoke mode: sync with 10 and batch with 100 publishers, once, for a
        second, two subscribers, verified after a restart.
        """
        o = parse_args(["--smoke"])
        self.assertEqual(o.cases, (Case("sync", 10), Case("batch", 100)))
        self.assertEqual((o.rounds, o.duration, o.subscribers), (1, 1.0, 2))
        self.assertTrue(o.verify)

    def test_selection(self) -> None:
        """
        C{-d} and C{-p} choose the cases, modes first.
        """
        o = parse_args(["-d", "batch", "-p", "1,100", "-n", "5"])
        self.assertEqual(o.cases, (Case("batch", 1), Case("batch", 100)))
        self.assertEqual(o.rounds, 5)

    def test_bad_values(self) -> None:
        """
        Counts, windows and sizes out of range are refused with status 2.
        """
        for argv in (
            ["-p", "0"],
            ["-p", "ten"],
            ["-n", "0"],
            ["-S", "0"],
            ["--window", "0"],
            ["--size", "4"],
            ["--duration", "0"],
            ["-d", "async"],
        ):
            err = io.StringIO()
            with redirect_stderr(err), self.assertRaises(SystemExit) as raised:
                parse_args(argv)
            self.assertEqual(raised.exception.code, 2, argv)


class ConfigTests(SynchronousTestCase):
    """
    The broker configuration of a run.
    """

    def test_template_is_a_valid_mqttx_config(self) -> None:
        """
        The rendered template is accepted by mqttx's configuration parser and
        asks for the SQLite store with the run's durability, database and
        commit interval, and a queue limit that keeps every message.
        """
        text = render_config(
            TEMPLATE.read_text(), durability="batch", db=Path("/tmp/x/d.db"), commit_interval=0.5
        )
        config = parse_config(render_template(text, 18123), "durable.yaml")
        p = config.persistence
        self.assertEqual(
            (p.backend, p.path, p.durability, p.commit_interval),
            ("sqlite", "/tmp/x/d.db", "batch", 0.5),
        )
        self.assertEqual(config.mqtt.max_queued_messages, MAX_QUEUED)
        self.assertIn("18123", config.listeners[0].endpoint)

    def test_memory_baseline(self) -> None:
        """
        The C{memory} baseline renders the same configuration with the memory
        store.
        """
        text = render_config(
            TEMPLATE.read_text(), durability="memory", db=Path("/tmp/d.db"), commit_interval=1
        )
        config = parse_config(render_template(text, 18123), "durable.yaml")
        self.assertEqual(config.persistence.backend, "memory")
        self.assertEqual(parse_args(["-d", "memory", "-p", "10"]).cases, (Case("memory", 10),))

    def test_db_bytes(self) -> None:
        """
        The database's size is its file and its WAL; a missing file counts 0.
        """
        folder = Path(self.mktemp())
        folder.mkdir()
        db = folder / "d.db"
        self.assertEqual(db_bytes(db), 0)
        db.write_bytes(b"x" * 4096)
        (folder / "d.db-wal").write_bytes(b"y" * 1000)
        (folder / "d.db-shm").write_bytes(b"z" * 32768)
        self.assertEqual(db_bytes(db), 5096)


class FramingTests(SynchronousTestCase):
    """
    The generator's MQTT 3.1.1 packets.
    """

    def test_connect(self) -> None:
        """
        CONNECT carries the clean session flag only when asked.
        """
        persistent = connect_packet("s", clean=False, keepalive=60)
        self.assertEqual(persistent, b"\x10\x0d\x00\x04MQTT\x04\x00\x00\x3c\x00\x01s")
        self.assertEqual(connect_packet("s", clean=True)[9], 0x02)

    def test_subscribe(self) -> None:
        """
        SUBSCRIBE of one filter at a QoS.
        """
        self.assertEqual(subscribe_packet("a/#", 1), b"\x82\x08\x00\x01\x00\x03a/#\x01")

    def test_split_whole_and_partial(self) -> None:
        """
        Complete packets are taken off the buffer; a partial one stays,
        including one cut inside its remaining length.
        """
        big = b"\x30\x80\x01" + b"p" * 128
        buf = bytearray(b"\x40\x02\x00\x01" + big + b"\x40\x02\x00")
        self.assertEqual(split_packets(buf), [(0x40, b"\x00\x01"), (0x30, b"p" * 128)])
        self.assertEqual(buf, bytearray(b"\x40\x02\x00"))
        buf += b"\x02\x30\x80"
        self.assertEqual(split_packets(buf), [(0x40, b"\x00\x02")])
        self.assertEqual(buf, bytearray(b"\x30\x80"))
        self.assertEqual(split_packets(bytearray()), [])

    def test_split_byte_by_byte(self) -> None:
        """
        Feeding a stream a byte at a time gives the same packets.
        """
        stream = b"\x20\x02\x00\x00" + b"\x30\x80\x01" + b"q" * 128 + b"\x90\x03\x00\x01\x01"
        buf = bytearray()
        got = []
        for b in stream:
            buf.append(b)
            got += split_packets(buf)
        self.assertEqual([first for first, _ in got], [0x20, 0x30, 0x90])
        self.assertEqual(buf, bytearray())

    def test_split_malformed_length(self) -> None:
        """
        A remaining length of five bytes is malformed.
        """
        with self.assertRaises(ValueError):
            split_packets(bytearray(b"\x30\xff\xff\xff\xff\x01"))

    def test_publish_and_payload(self) -> None:
        """
        A QoS 1 PUBLISH gives back its topic, packet identifier and payload,
        and the payload its publisher and sequence number.
        """
        payload = make_payload(7, 123_456, 64)
        self.assertEqual(len(payload), 64)
        body = b"\x00\x09durable/7" + b"\x12\x34" + payload
        topic, packet_id, got = parse_publish(0x32, body)
        self.assertEqual((topic, packet_id, got), ("durable/7", 0x1234, payload))
        self.assertEqual(parse_payload(got), (7, 123_456))
        self.assertEqual(parse_publish(0x30, b"\x00\x01tab")[1:], (0, b"ab"))
        with self.assertRaises(struct.error):
            parse_payload(b"short")


class FiguresAndChecksTests(SynchronousTestCase):
    """
    A run's figures and what makes it fail.
    """

    def test_metrics(self) -> None:
        """
        The rate is PUBACKs in the window per second; CPU figures are per
        acknowledged message and as a share of the window; the database's
        size per message counts every message acknowledged in the run.
        """
        m = metrics(raw_run(), db_live=9_000_000, db_after=6_200_000)
        self.assertEqual(m["rate"], 5000.0)
        self.assertEqual(m["cpu_us"], 100.0)
        self.assertEqual(m["reactor_cpu_us"], 70.0)
        self.assertEqual(m["writer_cpu_us"], 30.0)
        self.assertEqual(m["broker_cpu_pct"], 50.0)
        self.assertEqual((m["gen_cpu_pct"], m["gen_cpu_us"]), (20.0, 40.0))
        self.assertEqual((m["db_mb"], m["db_live_mb"], m["db_bytes_per_msg"]), (6.2, 9.0, 100.0))
        self.assertEqual((m["ack_p50_ms"], m["ack_p99_ms"]), (3.0, 9.5))

    def test_metrics_without_figures(self) -> None:
        """
        Figures that could not be taken are C{None}, not errors.
        """
        m = metrics(raw_run(acks_in_window=0, broker_cpu_s=None, acked=0), None, None)
        self.assertEqual(m["rate"], 0.0)
        self.assertIsNone(m["cpu_us"])
        self.assertIsNone(m["db_mb"])
        self.assertIsNone(m["db_bytes_per_msg"])

    def test_clean_run(self) -> None:
        """
        A clean run and a clean verification have no problems.
        """
        self.assertEqual(check(raw_run()), [])
        self.assertEqual(check_verified(verified_run()), [])

    def test_run_problems(self) -> None:
        """
        Client errors, lost connections, no PUBACK at all, PUBACKs missing
        after the drain, and online subscribers behind are problems.
        """
        problems = check(
            raw_run(
                errors=["durable-pub-1: CONNACK refused: 0005"],
                unexpected_closes=2,
                acks_in_window=0,
                outstanding_after_drain=20,
                online=[{"in_order": 5}],
            )
        )
        self.assertEqual(len(problems), 5, problems)

    def test_verify_problems(self) -> None:
        """
        After the restart every subscriber must find its session and get
        every acknowledged message exactly once, in order.
        """
        missing = verified_run(received=99, in_order=99)
        self.assertIn("got 99 messages", check_verified(missing)[0])
        dup = check_verified(verified_run(received=101, dup=1))
        self.assertEqual(len(dup), 2, dup)
        no_session = verified_run()
        no_session["session_present"] = [False]
        self.assertIn("not present", check_verified(no_session)[0])


class SummaryTests(SynchronousTestCase):
    """
    The JSON lines and the summary table.
    """

    def records(self) -> list[dict[str, Any]]:
        out = []
        for mode, pubs, rate, ok in (
            ("sync", 10, 4000.0, True),
            ("sync", 10, 5000.0, True),
            ("sync", 10, 4500.0, True),
            ("batch", 10, 20000.0, True),
            ("batch", 10, 1.0, False),
        ):
            m = metrics(raw_run(acks_in_window=int(rate * 10)), 1_000_000, 1_000_000)
            out.append(
                {
                    "bench": "mqttx-durable",
                    "durability": mode,
                    "publishers": pubs,
                    "round": 1,
                    "ok": ok,
                    "problems": [] if ok else ["no PUBACK"],
                    "metrics": m,
                    "loadavg": [1.5, 1.0, 0.5],
                    "subscribers": 1,
                    "window": 20,
                    "size": 64,
                    "duration_s": 10.0,
                }
            )
        return out

    def test_table(self) -> None:
        """
        One row per case in the order first seen, medians (min–max) of the
        runs that passed, and how many passed.
        """
        lines = summary_table(self.records()).splitlines()
        self.assertIn("acked msg/s", lines[0])
        self.assertTrue(lines[2].startswith("| sync | 10 | 3 | 4,500 (4,000–5,000) |"), lines[2])
        self.assertTrue(lines[3].startswith("| batch | 10 | 1 ok of 2 | 20,000 |"), lines[3])

    def test_load_and_summarize(self) -> None:
        """
        C{--summarize} reads this benchmark's lines from a file, skipping
        others, and prints the table without running anything.
        """
        lines = [json.dumps(r) for r in self.records()]
        lines += ["| a table |", '{"scenario": "S1", "broker": "mqttx"}']
        self.assertEqual(len(load_durable_records(lines)), 5)
        saved = Path(self.mktemp())
        saved.write_text("\n".join(lines) + "\n")
        out = io.StringIO()
        self.assertEqual(main(["--summarize", str(saved)], out=out), 0)
        self.assertIn("| sync | 10 | 3 | 4,500 (4,000–5,000) |", out.getvalue())
        self.assertIn("load average at the runs' starts 1.50–1.50", out.getvalue())
