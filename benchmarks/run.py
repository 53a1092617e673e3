# -*- test-case-name: tests.benchmarks.test_runner -*-
"""
The benchmark runner: C{python -m benchmarks.run --help}.

For every scenario, round and broker (brokers alternate A B A B within a
scenario), start the broker afresh, run the load generator against it, stop
the broker, and print ONE JSON line for the run on stdout. At the end print
the summary: a table of medians (min–max) with ratios between brokers, and
a table of correctness checks. Progress goes to stderr.

Smoke mode (C{--smoke}) runs every scenario once for about a second with
small counts and exits 1 if any run failed its checks: QoS 1/2 runs and
capped QoS 0 runs must lose and duplicate nothing.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from benchmarks.brokers import (
    BrokerError,
    BrokerSpec,
    RunningBroker,
    parse_broker,
    parse_broker_configs,
    start_broker,
)
from benchmarks.common import (
    RunOptions,
    add_summarize_option,
    finish,
    make_workdir,
    read_records,
    run_options,
    write_record,
)
from benchmarks.loadgen import (
    GeneratorError,
    LoadGenerator,
    find_generator,
    generator_argv,
    run_generator,
    timing_for,
)
from benchmarks.scenarios import (
    FULL_TIMING,
    SMOKE_TIMING,
    Finding,
    Scenario,
    Timing,
    check,
    extract_metrics,
    scenario_names,
    select,
)
from benchmarks.summary import (
    brokers_in,
    checks_table,
    default_ratios,
    format_value,
    load_records,
    metric_table,
    parse_ratio,
    progress_line,
)

__all__ = ["Options", "main", "parse_args"]

#: Version of the JSON lines' layout.
RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class Options(RunOptions):
    """
    The runner's command line, checked.
    """

    brokers: tuple[BrokerSpec, ...]
    scenarios: tuple[Scenario, ...]
    rounds: int
    smoke: bool
    strict: bool
    mqtt: int
    generator: str
    mqload: str | None
    timing: Timing | None
    ratios: tuple[tuple[str, str], ...]
    ratio_texts: tuple[str, ...]
    tolerate: frozenset[tuple[str, str]]
    list_scenarios: bool


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.run",
        description=(
            "Run the mqttx benchmark scenarios (issue 4) against one or more brokers. "
            "One JSON line per run on stdout, then a summary table."
        ),
        epilog=(
            "BROKER is [NAME=]TARGET: 'mqttx' (this checkout), 'mqttx:PATH' (another "
            "checkout), 'mosquitto' (mosquitto -c with benchmarks/configs/mosquitto.conf), "
            "HOST:PORT[/PID] (already running), or a command line with {port}, {host} and "
            "{config} placeholders, e.g. 'amqtt=/tmp/amqtt-venv/bin/amqtt -c {config}'. "
            f"Scenarios: {', '.join(scenario_names())}. See benchmarks/README.md."
        ),
    )
    p.add_argument(
        "-b",
        "--broker",
        action="append",
        default=[],
        metavar="BROKER",
        help="a broker under test; repeat for several (default: mqttx)",
    )
    p.add_argument(
        "--broker-config",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help="configuration template of broker NAME ({port}, {host} filled in)",
    )
    p.add_argument(
        "-s",
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help="scenarios to run (default: all)",
    )
    p.add_argument("-n", "--rounds", type=int, default=None, help="rounds (default 3; smoke 1)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="about a second per scenario, small counts; exit 1 unless every check passes",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="exit 1 if any run fails its checks (implied by --smoke)",
    )
    p.add_argument("-V", "--mqtt", type=int, choices=(4, 5), default=4, help="protocol level")
    p.add_argument(
        "--generator",
        choices=("auto", "mqload", "python"),
        default="auto",
        help="auto: mqload if MQLOAD (or --mqload) names its binary, else the Python fallback",
    )
    p.add_argument("--mqload", metavar="PATH", help="the mqload binary (overrides MQLOAD)")
    p.add_argument("--duration", type=float, help="measured seconds per run")
    p.add_argument("--warmup", type=float, help="warm-up seconds per run")
    p.add_argument("--drain", type=float, help="longest wait for messages in flight")
    p.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    p.add_argument("--broker-cpu", default="0", help="CPU list for the broker (default 0)")
    p.add_argument("--load-cpu", default="1", help="CPU list for the generator (default 1)")
    p.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that runs mqttx (default: this one)",
    )
    p.add_argument(
        "--out", type=Path, help="directory for broker logs (default: a new temporary one)"
    )
    p.add_argument("--jsonl", type=Path, help="also append the JSON lines to this file")
    p.add_argument(
        "--ratio",
        action="append",
        default=[],
        metavar="A/B",
        help="a ratio column A/B of medians (default: every broker / the first)",
    )
    p.add_argument(
        "--tolerate",
        action="append",
        default=[],
        metavar="SCENARIO:KIND",
        help="treat a problem of KIND (lost, dup, ...) in SCENARIO as a note, not a failure",
    )
    add_summarize_option(p)
    p.add_argument("--list", action="store_true", help="list the scenarios and exit")
    return p


def parse_args(argv: Sequence[str] | None = None) -> Options:
    """
    Parse and check the command line.

    @raise SystemExit: (status 2, via argparse) on a bad command line.
    """
    parser = _parser()
    a = parser.parse_args(argv)
    try:
        configs = parse_broker_configs(a.broker_config)
        brokers = tuple(parse_broker(b, configs) for b in (a.broker or ["mqttx"]))
    except BrokerError as e:
        parser.error(str(e))
    names = [b.name for b in brokers]
    if len(set(names)) != len(names):
        parser.error(f"broker names must differ (got {', '.join(names)}); use NAME=TARGET")
    unused = sorted(set(configs) - set(names))
    if unused:
        parser.error(f"--broker-config for no broker: {', '.join(unused)}")
    wanted = [n.strip() for v in a.scenario for n in v.split(",") if n.strip()]
    try:
        scenarios = tuple(select(wanted))
    except ValueError as e:
        parser.error(str(e))
    rounds = a.rounds if a.rounds is not None else (1 if a.smoke else 3)
    if rounds < 1:
        parser.error("--rounds must be at least 1")
    timing: Timing | None = None
    if a.duration is not None or a.warmup is not None or a.drain is not None:
        base = SMOKE_TIMING if a.smoke else FULL_TIMING
        timing = Timing(
            a.duration if a.duration is not None else base.duration,
            a.warmup if a.warmup is not None else base.warmup,
            a.drain if a.drain is not None else base.drain,
        )
        if timing.duration <= 0 or timing.warmup < 0 or timing.drain < 0:
            parser.error("--duration must be positive, --warmup and --drain not negative")
    ratios: tuple[tuple[str, str], ...] = ()
    if not a.summarize:
        # With --summarize the brokers come from the saved runs: checked then.
        try:
            ratios = tuple(parse_ratio(r, names) for r in a.ratio) or tuple(default_ratios(names))
        except ValueError as e:
            parser.error(str(e))
    tolerate = set()
    for t in a.tolerate:
        scen, sep, kind = t.partition(":")
        if not sep or not kind:
            parser.error(f"--tolerate wants SCENARIO:KIND, got {t!r}")
        try:
            (match,) = select([scen])
        except ValueError as e:
            parser.error(str(e))
        tolerate.add((match.name, kind))
    return Options(
        brokers=brokers,
        scenarios=scenarios,
        rounds=rounds,
        smoke=a.smoke,
        strict=a.strict or a.smoke,
        mqtt=a.mqtt,
        generator=a.generator,
        mqload=a.mqload,
        timing=timing,
        ratios=ratios,
        ratio_texts=tuple(a.ratio),
        tolerate=frozenset(tolerate),
        list_scenarios=a.list,
        **run_options(a),
    )


def pin_prefix(cpus: str, enabled: bool) -> list[str]:
    """
    C{taskset -c CPUS} if pinning is wanted, C{taskset} exists and the
    machine has more than one CPU; else nothing.
    """
    if not enabled or (os.cpu_count() or 1) < 2:
        return []
    taskset = shutil.which("taskset")
    return [taskset, "-c", cpus] if taskset else []


def raise_fd_limit() -> int:
    """
    Raise this process's open-file limit to its hard limit (children, the
    brokers and the generator, inherit it; S5 needs 10,000 sockets).

    @return: the soft limit now in force.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    return soft


def git_commit(checkout: Path) -> str | None:
    """
    The checkout's commit (short), with C{+dirty} if tracked files changed.
    """
    try:
        head = subprocess.run(
            ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(checkout), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("+dirty" if dirty else "")


#: Points of CPU busy time beyond the broker's and the generator's own
#: above which a run is noted as disturbed by other processes.
CONTENTION_POINTS = 15.0


def contention_note(raw: dict[str, Any], broker_cpu: str, load_cpu: str) -> str | None:
    """
    A note if other processes used the pinned CPUs during the measured
    window: the CPU's busy percentage (from C{/proc/stat}) minus the
    broker's (CPU 0) or the generator's (CPU 1) own.

    @param raw: the generator's result (needs C{cpus}, C{broker_cpu_pct},
        C{self_cpu_pct}).
    @param broker_cpu: the broker's CPU list, as given to taskset.
    @param load_cpu: the generator's.
    @return: the note, or C{None} if the run was undisturbed or this cannot
        be told (CPU lists other than a single CPU, figures missing).
    """
    cpus = raw.get("cpus")
    if not isinstance(cpus, list):
        return None
    busy_by = []
    for cpu, own_key, who in (
        (broker_cpu, "broker_cpu_pct", "broker"),
        (load_cpu, "self_cpu_pct", "generator"),
    ):
        own = raw.get(own_key)
        if (
            not cpu.isdigit()
            or int(cpu) >= len(cpus)
            or not isinstance(own, int | float)
            or own < 0
        ):
            continue
        busy = cpus[int(cpu)].get("busy_pct") if isinstance(cpus[int(cpu)], dict) else None
        if isinstance(busy, int | float) and busy - own > CONTENTION_POINTS:
            busy_by.append(f"CPU {cpu} {busy:.0f}% busy, {who} {own:.0f}%")
    if not busy_by:
        return None
    return "other processes competed for the CPUs: " + ", ".join(busy_by)


def describe(scenario: Scenario, record: dict[str, Any]) -> str:
    """
    A one-line progress report of a run.
    """
    metrics = record.get("metrics") or {}
    values = ((metrics.get(m.key), m) for m in scenario.metrics)
    return progress_line(
        record,
        (f"{format_value(v, m.digits) if v is not None else '–'} {m.label}" for v, m in values),
    )


def run_once(
    opts: Options,
    generator: LoadGenerator,
    scenario: Scenario,
    spec: BrokerSpec,
    round_: int,
    workdir: Path,
) -> dict[str, Any]:
    """
    One run: start the broker, run the generator, stop the broker.

    @return: the run's record (the JSON line).
    """
    timing = timing_for(scenario, opts.smoke, opts.timing)
    record: dict[str, Any] = {
        "bench": "mqttx-benchmarks",
        "v": RECORD_VERSION,
        "scenario": scenario.name,
        "title": scenario.title,
        "broker": spec.name,
        "round": round_,
        "rounds": opts.rounds,
        "generator": generator.name,
        "mqtt": opts.mqtt,
        "smoke": opts.smoke,
        "time": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "ok": False,
        "error": None,
        "problems": [],
        "notes": [],
        "note_kinds": [],
        "metrics": {},
    }
    if spec.kind == "mqttx" and spec.checkout is not None:
        record["commit"] = git_commit(spec.checkout)
    started = time.monotonic()
    rundir = workdir / f"{scenario.name}-{spec.name.replace(':', '-')}-r{round_}"
    try:
        broker: RunningBroker = start_broker(
            spec, rundir, python=opts.python, pin=pin_prefix(opts.broker_cpu, opts.pin)
        )
    except BrokerError as e:
        record["error"] = str(e)
        record["elapsed_s"] = round(time.monotonic() - started, 2)
        return record
    record.update(broker_argv=broker.argv, broker_port=broker.port, broker_pid=broker.pid)
    try:
        argv = generator_argv(
            generator,
            scenario,
            host=broker.host,
            port=broker.port,
            mqtt=opts.mqtt,
            timing=timing,
            smoke=opts.smoke,
            broker_pid=broker.pid,
            label=f"{scenario.name}/{spec.name}/{round_}",
            pin=pin_prefix(opts.load_cpu, opts.pin),
        )
        record["load_argv"] = argv
        limit = timing.warmup + timing.duration + timing.drain + 120
        if scenario.kind == "conn":
            limit = 300
        try:
            status, raw, stderr = run_generator(argv, limit)
        except GeneratorError as e:
            record["error"] = str(e)
            return record
        rundir.mkdir(parents=True, exist_ok=True)
        (rundir / "load.stderr").write_text(stderr)
        record["generator_status"] = status
        alive = broker.alive()
    finally:
        exit_status = broker.stop()
        record["elapsed_s"] = round(time.monotonic() - started, 2)
    record["broker_exit"] = exit_status
    problems, notes = check(scenario, raw)
    if not alive:
        problems.append(
            Finding("broker", f"the broker exited during the run (status {exit_status})")
        )
    kept = []
    for p in problems:
        if (scenario.name, p.kind) in opts.tolerate:
            notes.append(Finding(f"tolerated {p.kind}", f"tolerated: {p.text}"))
        else:
            kept.append(p)
    if opts.pin and pin_prefix(opts.broker_cpu, True):
        disturbed = contention_note(raw, opts.broker_cpu, opts.load_cpu)
        if disturbed:
            notes.append(Finding("contention", disturbed))
    record["problems"] = [p.text for p in kept]
    record["notes"] = [n.text for n in notes]
    record["note_kinds"] = [n.kind for n in notes]
    record["ok"] = not kept
    record["metrics"] = extract_metrics(scenario, raw)
    record["raw"] = raw
    return record


def summary_text(
    records: list[dict[str, Any]],
    brokers: Sequence[str] | None = None,
    ratios: Sequence[tuple[str, str]] | None = None,
) -> str:
    """
    The summary printed at the end: a heading, the figures and the checks.

    @param brokers: column order (default: as the records name them).
    @param ratios: ratio columns (default: every broker over the first).
    """
    generators = sorted({str(r.get("generator")) for r in records})
    levels = sorted({str(r.get("mqtt")) for r in records})
    rounds = max((int(r.get("round") or 0) for r in records), default=0)
    head = (
        f"## Summary: {len(records)} runs, {rounds} round(s), generator {', '.join(generators)}, "
        f"MQTT level {', '.join(levels)}"
    )
    return "\n".join(
        [
            "",
            head,
            "",
            metric_table(records, brokers, ratios),
            "",
            "Checks:",
            "",
            checks_table(records, brokers),
            "",
        ]
    )


def main(
    argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """
    Run the benchmarks.

    @return: 0; 1 if a run could not be made or, with C{--smoke} or
        C{--strict}, failed a check; 2 for a bad command line.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    opts = parse_args(argv)
    if opts.list_scenarios:
        for s in opts.scenarios:
            print(f"{s.name:8} {s.title}", file=out)
        return 0
    if opts.summarize:
        saved = read_records(opts.summarize, load_records)
        names = brokers_in(saved)
        try:
            ratios = [parse_ratio(r, names) for r in opts.ratio_texts] or None
        except ValueError as e:
            print(f"benchmarks: {e}", file=err)
            return 2
        print(summary_text(saved, names, ratios), file=out)
        return 0
    try:
        generator = find_generator(opts.generator, opts.mqload, python=sys.executable)
    except GeneratorError as e:
        print(f"benchmarks: {e}", file=err)
        return 2
    raise_fd_limit()
    logs = make_workdir(opts.out, "mqttx-bench-")
    listed = ", ".join(b.name for b in opts.brokers)
    print(
        f"benchmarks: generator {generator.name}, brokers {listed}, "
        f"{opts.rounds} round(s), MQTT level {opts.mqtt}, "
        f"pinning {'on' if pin_prefix('0', opts.pin) else 'off'}, "
        f"{platform.node()}, logs in {logs}",
        file=err,
        flush=True,
    )
    records: list[dict[str, Any]] = []
    started = time.monotonic()
    for scenario in opts.scenarios:
        for round_ in range(1, opts.rounds + 1):
            for spec in opts.brokers:
                record = run_once(opts, generator, scenario, spec, round_, logs)
                records.append(record)
                write_record(record, out, opts.jsonl)
                where = f"[{scenario.name} {round_}/{opts.rounds}] {spec.name}"
                print(f"{where}: {describe(scenario, record)}", file=err, flush=True)
    print(summary_text(records, [b.name for b in opts.brokers], opts.ratios), file=out, flush=True)
    return finish("benchmarks", records, opts.strict, started, err)


if __name__ == "__main__":
    sys.exit(main())
