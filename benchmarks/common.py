# -*- test-case-name: tests.benchmarks.test_common -*-
"""
What the benchmark commands share: the options of a run that pins its own
generator (C{benchmarks.durable}, C{benchmarks.transports}), that pinning,
and writing the records out as they come.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TextIO

__all__ = [
    "Affinity",
    "ClientLoad",
    "MQTTClient",
    "RunOptions",
    "add_run_options",
    "add_summarize_option",
    "cpu_set",
    "finish",
    "make_workdir",
    "read_records",
    "run_options",
    "write_record",
]


def add_run_options(p: argparse.ArgumentParser) -> None:
    """
    Add the options of a benchmark whose generator is this process:
    pinning (C{--no-pin}, C{--broker-cpu}, C{--load-cpu}), C{--python},
    C{--out}, C{--jsonl} and C{--summarize}.
    """
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--broker-cpu", default="0", help="CPU list for the broker (default 0)")
    p.add_argument("--load-cpu", default="1", help="CPU list for this generator (default 1)")
    p.add_argument("--python", default=sys.executable, help="interpreter that runs mqttx")
    p.add_argument("--out", type=Path, help="directory for the runs (default: a new temporary one)")
    p.add_argument("--jsonl", type=Path, help="also append the JSON lines to this file")
    add_summarize_option(p)


def add_summarize_option(p: argparse.ArgumentParser) -> None:
    """
    Add C{--summarize FILE} (repeatable): summarize saved runs instead.
    """
    p.add_argument(
        "--summarize",
        action="append",
        default=[],
        type=Path,
        metavar="FILE",
        help="print the summary of JSON lines saved earlier, and run nothing",
    )


@dataclass(frozen=True, slots=True)
class RunOptions:
    """
    What every benchmark command reads from its command line (with
    L{add_run_options}, or the runner's own texts of the same options),
    checked: each command's options extend it.
    """

    pin: bool
    broker_cpu: str
    load_cpu: str
    python: str
    out: Path | None
    jsonl: Path | None
    summarize: tuple[Path, ...]


def run_options(a: argparse.Namespace) -> dict[str, Any]:
    """
    The values of L{RunOptions}' fields from a command line parsed with
    L{add_run_options}.
    """
    return dict(
        pin=not a.no_pin,
        broker_cpu=a.broker_cpu,
        load_cpu=a.load_cpu,
        python=a.python,
        out=a.out,
        jsonl=a.jsonl,
        summarize=tuple(a.summarize),
    )


@dataclass
class Affinity:
    """
    Pins this process (the generator) to CPUs for the duration of a block.
    """

    cpus: set[int] | None
    saved: set[int] = field(default_factory=set)

    def __enter__(self) -> None:
        if self.cpus:
            self.saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, self.cpus)

    def __exit__(self, *exc: object) -> None:
        if self.cpus and self.saved:
            os.sched_setaffinity(0, self.saved)


def cpu_set(text: str) -> set[int]:
    """
    The CPUs of a C{taskset} CPU list such as C{0,2-3}.
    """
    out: set[int] = set()
    for part in text.split(","):
        low, _, high = part.partition("-")
        out.update(range(int(low), int(high or low) + 1))
    return out


def read_records(
    paths: Iterable[Path], select: Callable[[Iterable[str]], list[dict[str, Any]]]
) -> list[dict[str, Any]]:
    """
    The records that C{select} finds in each file, in order.
    """
    records: list[dict[str, Any]] = []
    for path in paths:
        records += select(path.read_text().splitlines())
    return records


def make_workdir(out: Path | None, prefix: str) -> Path:
    """
    The directory for the runs: C{out}, made if missing, or a new temporary
    one whose name starts with C{prefix}.
    """
    path = out or Path(tempfile.mkdtemp(prefix=prefix))
    path.mkdir(parents=True, exist_ok=True)
    return path


class ClientLoad(Protocol):
    """
    What the connections of a load generator share, as L{MQTTClient} uses
    it.
    """

    errors: list[str]
    unexpected_closes: int
    #: Set while the generator closes its connections itself.
    closing: bool


class MQTTClient(asyncio.Protocol):
    """
    One MQTT connection of a load generator that is this process: what
    happens when it fails, is refused or is closed. A subclass sets the
    attributes in its C{__init__} and handles what it receives.
    """

    load: ClientLoad
    client_id: str
    transport: asyncio.Transport | None
    #: Done when the connection is ready for the load (connected,
    #: subscribed); failed if it ends before.
    ready: asyncio.Future[Any]
    closed: asyncio.Future[None]

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(f"{self.client_id}: closed before ready"))
        elif not self.load.closing:
            self.load.unexpected_closes += 1
            self.closed_by_broker(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def closed_by_broker(self, exc: Exception | None) -> None:
        """
        The broker closed the connection once it was ready; it is counted.
        """

    def fail(self, why: str) -> None:
        """
        Note an error of this connection and abort it.
        """
        self.load.errors.append(f"{self.client_id}: {why}")
        if not self.ready.done():
            self.ready.set_exception(ConnectionError(why))
        if self.transport is not None:
            self.transport.abort()

    def connack(self, body: bytes) -> bool:
        """
        Whether a CONNACK's body accepts the connection; if not, fail.
        """
        if len(body) != 2 or body[1] != 0:
            self.fail(f"CONNACK refused: {body.hex()}")
            return False
        return True


def write_record(record: Mapping[str, Any], out: TextIO, jsonl: Path | None) -> None:
    """
    Print a run's record as one JSON line on C{out} and, if given, append
    it to C{jsonl}.
    """
    line = json.dumps(record, separators=(",", ":"))
    print(line, file=out, flush=True)
    if jsonl is not None:
        with jsonl.open("a") as f:
            f.write(line + "\n")


def finish(
    name: str, records: Sequence[Mapping[str, Any]], strict: bool, started: float, err: TextIO
) -> int:
    """
    Report how many runs failed: those that could not be made and, if
    C{strict}, those that failed a check.

    @return: the exit status, 1 if any failed, else 0.
    """
    failed = [r for r in records if r.get("error") or (strict and not r.get("ok"))]
    print(
        f"{name}: {len(records) - len(failed)} runs ok, {len(failed)} failed, "
        f"{time.monotonic() - started:.0f} s",
        file=err,
    )
    return 1 if failed else 0
