# -*- test-case-name: tests.benchmarks.test_common -*-
"""
Tests for L{benchmarks.common} and the shared helpers of L{benchmarks.summary}.
"""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from benchmarks.common import cpu_set, finish, make_workdir, read_records, write_record
from benchmarks.summary import json_objects, progress_line


class CommonTests(SynchronousTestCase):
    def test_cpu_set_reads_lists_and_ranges(self) -> None:
        """A CPU list names single CPUs and inclusive ranges."""
        self.assertEqual(cpu_set("0"), {0})
        self.assertEqual(cpu_set("0,2-4"), {0, 2, 3, 4})

    def test_json_objects_skips_other_lines(self) -> None:
        """Only the lines that are JSON objects come out, decoded, in order."""
        lines = ['{"a": 1}', "| table |", "{broken", "[1, 2]", '  {"b": 2}  ']
        self.assertEqual(list(json_objects(lines)), [{"a": 1}, {"b": 2}])

    def test_records_written_are_read_back(self) -> None:
        """A record written with --jsonl is read back from that file."""
        jsonl = Path(self.mktemp())
        out = io.StringIO()
        write_record({"bench": "x", "n": 1}, out, jsonl)
        write_record({"bench": "y", "n": 2}, out, jsonl)
        self.assertEqual(json.loads(out.getvalue().splitlines()[0]), {"bench": "x", "n": 1})
        found = read_records([jsonl], lambda lines: [v for v in json_objects(lines) if v["n"] > 1])
        self.assertEqual(found, [{"bench": "y", "n": 2}])

    def test_make_workdir_makes_the_directory(self) -> None:
        """The directory given is made if it is missing."""
        wanted = Path(self.mktemp()) / "runs"
        self.assertEqual(make_workdir(wanted, "unused-"), wanted)
        self.assertTrue(wanted.is_dir())

    def test_finish_counts_failures(self) -> None:
        """A run that could not be made fails; one that failed a check only if strict."""
        records: list[dict[str, object]] = [{"ok": True}, {"ok": False}, {"error": "no broker"}]
        err = io.StringIO()
        self.assertEqual(finish("bench", records[:2], False, time.monotonic(), err), 0)
        self.assertEqual(finish("bench", records[:2], True, time.monotonic(), err), 1)
        self.assertEqual(finish("bench", records, False, time.monotonic(), err), 1)
        self.assertTrue(err.getvalue().startswith("bench: 2 runs ok, 0 failed, "))

    def test_progress_line(self) -> None:
        """A progress line gives the error, or the figures, the verdict and the notes."""
        self.assertEqual(progress_line({"error": "boom\nmore"}, ["x"]), "ERROR: boom")
        self.assertEqual(progress_line({"ok": True}, ["a 1", "b 2"]), "a 1, b 2 — ok")
        self.assertEqual(
            progress_line({"ok": False, "problems": ["p"], "notes": ["n"]}, ["a 1"]),
            "a 1 — FAILED: p [n]",
        )
