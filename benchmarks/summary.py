"""
The summary of many runs: medians with min-max per scenario, figure and
broker, and ratios between brokers, as Markdown tables.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.scenarios import SCENARIOS, Metric, Scenario

__all__ = [
    "Stats",
    "brokers_in",
    "checks_table",
    "default_ratios",
    "disturbed_text",
    "figure_text",
    "format_ratio",
    "format_value",
    "json_objects",
    "load_range",
    "load_records",
    "metric_table",
    "parse_ratio",
    "progress_line",
    "ratio",
    "stats",
]


@dataclass(frozen=True, slots=True)
class Stats:
    """
    A figure over the rounds of one scenario on one broker.
    """

    median: float
    low: float
    high: float
    n: int


def stats(values: Iterable[float | None]) -> Stats | None:
    """
    Median, minimum and maximum of the values that are not C{None}, or
    C{None} if there are none.
    """
    present = [v for v in values if v is not None]
    if not present:
        return None
    return Stats(statistics.median(present), min(present), max(present), len(present))


def ratio(numerator: Stats | None, denominator: Stats | None) -> float | None:
    """
    The ratio of two medians, or C{None} if either is missing or the
    denominator is zero.
    """
    if numerator is None or denominator is None or denominator.median == 0:
        return None
    return numerator.median / denominator.median


def format_value(value: float, digits: int) -> str:
    """
    A figure with C{digits} decimals and thousands separators.
    """
    return f"{value:,.{digits}f}"


def format_stats(s: Stats | None, digits: int) -> str:
    """
    C{median (min–max)}, or just the median if the rounds agree or there is
    one; C{–} if there is nothing.
    """
    if s is None:
        return "–"
    median = format_value(s.median, digits)
    low, high = format_value(s.low, digits), format_value(s.high, digits)
    if s.n == 1 or low == high:
        return median
    return f"{median} ({low}–{high})"


def format_ratio(r: float | None) -> str:
    """
    A ratio with two decimals below 10 and one above; C{–} if missing.
    """
    if r is None:
        return "–"
    return f"{r:.2f}" if r < 10 else f"{r:,.1f}"


def parse_ratio(text: str, brokers: Sequence[str]) -> tuple[str, str]:
    """
    Parse C{NUMERATOR/DENOMINATOR}, two broker names.

    @raise ValueError: if the form is wrong or a name is not a broker.
    """
    num, sep, den = text.partition("/")
    if not sep or not num or not den:
        raise ValueError(f"a ratio is NAME/NAME, got {text!r}")
    for name in (num, den):
        if name not in brokers:
            raise ValueError(f"ratio {text!r}: {name!r} is not one of {', '.join(brokers)}")
    if num == den:
        raise ValueError(f"ratio {text!r} compares a broker with itself")
    return num, den


def default_ratios(brokers: Sequence[str]) -> list[tuple[str, str]]:
    """
    Without C{--ratio}: every other broker against the first (B/A, C/A).
    """
    return [(b, brokers[0]) for b in brokers[1:]]


def _group(records: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], list[Mapping[str, Any]]]:
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for r in records:
        groups.setdefault((str(r.get("scenario")), str(r.get("broker"))), []).append(r)
    return groups


def _scenarios_in(records: Sequence[Mapping[str, Any]]) -> list[Scenario]:
    names = {r.get("scenario") for r in records}
    return [s for s in SCENARIOS if s.name in names]


def brokers_in(records: Iterable[Mapping[str, Any]]) -> list[str]:
    """
    Broker names in the order they first appear.
    """
    seen: dict[str, None] = {}
    for r in records:
        seen.setdefault(str(r.get("broker")), None)
    return list(seen)


def _metric_value(record: Mapping[str, Any], metric: Metric) -> float | None:
    if record.get("error"):
        return None
    metrics = record.get("metrics")
    if not isinstance(metrics, Mapping):
        return None
    value = metrics.get(metric.key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def metric_table(
    records: Sequence[Mapping[str, Any]],
    brokers: Sequence[str] | None = None,
    ratios: Sequence[tuple[str, str]] | None = None,
) -> str:
    """
    The Markdown table of medians (min–max) and ratios.

    One row per scenario and figure; one column per broker, then one per
    ratio (the ratio of medians; whether higher is better is in the
    "better" column).

    @param records: the runs' JSON objects.
    @param brokers: column order (default: as they appear).
    @param ratios: (numerator, denominator) broker pairs (default: each
        broker against the first).
    """
    brokers = list(brokers) if brokers else brokers_in(records)
    ratios = list(ratios) if ratios is not None else default_ratios(brokers)
    groups = _group(records)
    head = ["scenario", "figure", "better", *brokers, *(f"{a}/{b}" for a, b in ratios)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for scenario in _scenarios_in(records):
        for metric in scenario.metrics:
            per = {
                b: stats(_metric_value(r, metric) for r in groups.get((scenario.name, b), []))
                for b in brokers
            }
            cells = [
                scenario.name,
                metric.label,
                "higher" if metric.higher_is_better else "lower",
                *(format_stats(per[b], metric.digits) for b in brokers),
                *(format_ratio(ratio(per[a], per[b])) for a, b in ratios),
            ]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _check_cell(runs: Sequence[Mapping[str, Any]]) -> str:
    if not runs:
        return "–"
    bad = [r for r in runs if r.get("error") or r.get("problems")]
    if not bad:
        cell = "ok" if len(runs) == 1 else f"ok ({len(runs)}/{len(runs)})"
    else:
        first = bad[0]
        why = str(first.get("error") or "; ".join(str(p) for p in first.get("problems") or []))
        cell = f"{len(bad)}/{len(runs)} failed: {why}"
    if len(runs) == 1:
        notes = [str(n) for n in runs[0].get("notes") or []]
    else:
        # Several runs: how many runs had each kind of note.
        counts: dict[str, int] = {}
        for r in runs:
            kinds = r.get("note_kinds") or ["note"] * len(r.get("notes") or [])
            for kind in dict.fromkeys(str(k) for k in kinds):
                counts[kind] = counts.get(kind, 0) + 1
        notes = [f"{kind} {n}/{len(runs)}" for kind, n in counts.items()]
    if notes:
        cell += "; notes: " + "; ".join(notes)
    return cell.replace("|", "/").replace("\n", " ")


def checks_table(records: Sequence[Mapping[str, Any]], brokers: Sequence[str] | None = None) -> str:
    """
    The Markdown table of correctness checks: per scenario and broker, how
    many runs failed and the first failure, plus notes (tolerated problems,
    open-loop losses, CPU contention): their text for a single run, else in
    how many runs each kind occurred.
    """
    brokers = list(brokers) if brokers else brokers_in(records)
    groups = _group(records)
    lines = ["| scenario | " + " | ".join(brokers) + " |", "|" + "---|" * (len(brokers) + 1)]
    for scenario in _scenarios_in(records):
        cells = [_check_cell(groups.get((scenario.name, b), [])) for b in brokers]
        lines.append(f"| {scenario.name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def load_records(lines: Iterable[str]) -> list[dict[str, Any]]:
    """
    The run records among lines of text: every line that is a JSON object
    with a C{scenario} and a C{broker}; other lines (a summary table, logs)
    are skipped.
    """
    return [v for v in json_objects(lines) if "scenario" in v and "broker" in v]


def json_objects(lines: Iterable[str]) -> Iterator[dict[str, Any]]:
    """
    The lines of text that are JSON objects, decoded, in order; other lines
    (a summary table, logs) are skipped.
    """
    for line in lines:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            yield value


def figure_text(head: str, value: float | None, digits: int) -> str:
    """
    A figure of a progress report: its heading and value, or a dash.
    """
    return f"{head} {'–' if value is None else f'{value:,.{digits}f}'}"


def progress_line(record: Mapping[str, Any], parts: Iterable[str]) -> str:
    """
    A one-line progress report of a run: its error, or the figures given,
    the verdict of its checks and its notes.
    """
    if record.get("error"):
        return f"ERROR: {record['error']}".splitlines()[0]
    text = ", ".join(parts)
    verdict = "ok" if record.get("ok") else "FAILED: " + "; ".join(record.get("problems") or [])
    notes = record.get("notes") or []
    return text + f" — {verdict}" + (f" [{'; '.join(notes)}]" if notes else "")


def load_range(records: Iterable[Mapping[str, Any]]) -> str:
    """
    The lowest and highest 1-minute load average at the runs' starts.
    """
    loads = [r["loadavg"][0] for r in records if r.get("loadavg")]
    return f"{min(loads):.2f}–{max(loads):.2f}" if loads else "–"


def disturbed_text(disturbed: int, runs: int) -> str:
    """
    The summary's note of the runs that other processes disturbed, if any.
    """
    if not disturbed:
        return ""
    return (
        f"\n\n{disturbed} of {runs} runs were disturbed: other processes kept the "
        "pinned CPUs busy (see each run's notes)"
    )
