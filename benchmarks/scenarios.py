"""
The benchmark scenarios of issue 4, as load-generator command lines.

Each L{Scenario} is a set of C{mqload} flags (the Python fallback generator
accepts the same ones), the figures read from its result, and what a run
must satisfy to count as correct. Host, port, protocol level, timing and the
broker PID are added by the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "FLOOD_DRAIN",
    "SCENARIOS",
    "Metric",
    "Scenario",
    "Finding",
    "Timing",
    "check",
    "extract_metrics",
    "scenario_names",
    "select",
]


@dataclass(frozen=True, slots=True)
class Metric:
    """
    One figure a scenario reports.

    @ivar key: the name in the run's C{metrics} object.
    @ivar label: the unit shown in the summary table.
    @ivar higher_is_better: which way a ratio above 1 points.
    @ivar digits: decimal places shown.
    """

    key: str
    label: str
    higher_is_better: bool
    digits: int = 0


@dataclass(frozen=True, slots=True)
class Timing:
    """
    How long each phase of a publish/subscribe run lasts, in seconds.
    """

    duration: float
    warmup: float
    drain: float


#: Full runs: the measured window, the warm-up before it, and the longest
#: wait for messages still in flight after it.
FULL_TIMING = Timing(duration=10.0, warmup=2.0, drain=5.0)
#: Smoke runs: about a second each.
SMOKE_TIMING = Timing(duration=1.0, warmup=0.2, drain=3.0)
#: The open-loop floods wait longer for the backlog (full runs).
FLOOD_DRAIN = 10.0

RATE = Metric("rate", "msg/s", True)
DELIVERIES = Metric("rate", "deliveries/s", True)
CPU = Metric("cpu_us", "broker CPU µs/msg", False, 2)
P99 = Metric("p99_ms", "p99 ms", False, 2)
P50 = Metric("p50_ms", "p50 ms", False, 2)
CONNECT = Metric("connect_s", "connect s", False, 2)
PER_CONN = Metric("bytes_per_conn", "RSS B/conn", False)
MBPS = Metric("mbps", "MB/s", True, 1)
DELIVERED = Metric("delivered_pct", "delivered %", True, 1)
RSS_GROWTH = Metric("rss_growth_mb", "RSS growth MB", False, 1)
ACK_AHEAD = Metric("ack_per_delivery", "acks/deliveries", False, 2)


@dataclass(frozen=True, slots=True)
class Scenario:
    """
    One benchmark scenario.

    @ivar name: short name used on the command line and in the JSON lines.
    @ivar title: what it measures, as in issue 4's table.
    @ivar kind: C{"pubsub"} (publishers and subscribers) or C{"conn"}
        (a storm of idle connections).
    @ivar flags: the generator's flags for a full run.
    @ivar smoke_flags: replacements for C{flags} in smoke mode, or C{None}
        to use C{flags}.
    @ivar qos: the QoS of publishing and subscribing.
    @ivar capped: whether the publishers are held back (a window of
        undelivered messages or a fixed rate), so that a correct broker
        delivers every QoS 0 message too.
    @ivar metrics: the figures shown in the summary table, the first being
        the headline one.
    @ivar drain: a longer drain for full runs than the default, or C{None}.
    """

    name: str
    title: str
    kind: Literal["pubsub", "conn"]
    flags: tuple[str, ...]
    smoke_flags: tuple[str, ...] | None
    qos: int
    capped: bool
    metrics: tuple[Metric, ...]
    drain: float | None = None

    def generator_flags(self, smoke: bool) -> tuple[str, ...]:
        """
        The scenario's own generator flags.

        @param smoke: whether this is a smoke run.
        """
        if smoke and self.smoke_flags is not None:
            return self.smoke_flags
        return self.flags


_FAN_IN = ("-P", "10", "-S", "1", "--sub-mode", "wild", "-s", "64")
_PAIRS = ("-P", "10", "-S", "10", "--sub-mode", "rr", "-s", "64")

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "S1",
        "fan-in QoS 0: 10 publishers -> 1 subscriber on #, 64 B, <= 100 undelivered per publisher",
        "pubsub",
        (*_FAN_IN, "-q", "0", "--window", "100"),
        None,
        qos=0,
        capped=True,
        metrics=(RATE, CPU),
    ),
    Scenario(
        "S2",
        "fan-out QoS 0: 1 publisher -> 100 subscribers of one topic, 64 B, <= 100 undelivered",
        "pubsub",
        ("-P", "1", "-S", "100", "-T", "1", "-s", "64", "-q", "0", "--window", "100"),
        ("-P", "1", "-S", "10", "-T", "1", "-s", "64", "-q", "0", "--window", "100"),
        qos=0,
        capped=True,
        metrics=(DELIVERIES, CPU),
    ),
    Scenario(
        "S3",
        "QoS 1 end to end: 10 -> 10 one-to-one topics, <= 100 undelivered per publisher",
        "pubsub",
        (*_PAIRS, "-q", "1", "--inflight", "20", "--window", "100"),
        None,
        qos=1,
        capped=True,
        metrics=(RATE, CPU),
    ),
    Scenario(
        "S4-q0",
        "latency QoS 0 at 1000 msg/s total, 10 -> 10",
        "pubsub",
        (*_PAIRS, "-q", "0", "-r", "1000"),
        None,
        qos=0,
        capped=True,
        metrics=(P99, P50),
    ),
    Scenario(
        "S4-q1",
        "latency QoS 1 at 1000 msg/s total, 10 -> 10",
        "pubsub",
        (*_PAIRS, "-q", "1", "-r", "1000"),
        None,
        qos=1,
        capped=True,
        metrics=(P99, P50),
    ),
    Scenario(
        "S5",
        "10,000 idle connections: time to connect, RSS per connection",
        "conn",
        ("-c", "10000", "--parallel", "64", "--hold", "2"),
        ("-c", "200", "--parallel", "64", "--hold", "0.5"),
        qos=0,
        capped=True,
        metrics=(CONNECT, PER_CONN),
    ),
    Scenario(
        "S6",
        "256 KiB payloads 1 -> 1, <= 8 undelivered",
        "pubsub",
        ("-P", "1", "-S", "1", "-s", "262144", "-q", "0", "--window", "8"),
        None,
        qos=0,
        capped=True,
        metrics=(MBPS, CPU),
    ),
    Scenario(
        "flood",
        "open-loop flood: S1 without the undelivered cap",
        "pubsub",
        (*_FAN_IN, "-q", "0"),
        None,
        qos=0,
        capped=False,
        metrics=(RATE, DELIVERED, RSS_GROWTH),
        drain=FLOOD_DRAIN,
    ),
    Scenario(
        "flood-q1",
        "open-loop flood at QoS 1 (<= 20 unacknowledged per publisher, no cap on undelivered)",
        "pubsub",
        (*_FAN_IN, "-q", "1", "--inflight", "20"),
        None,
        qos=1,
        capped=False,
        metrics=(RATE, ACK_AHEAD, DELIVERED, RSS_GROWTH),
        drain=FLOOD_DRAIN,
    ),
)


def scenario_names() -> list[str]:
    """
    The names of all scenarios, in the order they run.
    """
    return [s.name for s in SCENARIOS]


def select(names: list[str] | None) -> list[Scenario]:
    """
    The scenarios with the given names, in the standard order.

    @param names: scenario names (case-insensitive), or C{None} for all.
    @raise ValueError: if a name is unknown.
    """
    if not names:
        return list(SCENARIOS)
    wanted = {n.lower() for n in names}
    known = {s.name.lower() for s in SCENARIOS}
    unknown = sorted(wanted - known)
    if unknown:
        raise ValueError(
            f"unknown scenario {', '.join(unknown)} (known: {', '.join(scenario_names())})"
        )
    return [s for s in SCENARIOS if s.name.lower() in wanted]


def _num(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _nonneg(value: float | None) -> float | None:
    # mqload writes -1 for a figure it could not measure (no broker PID).
    return None if value is None or value < 0 else value


def extract_metrics(scenario: Scenario, raw: Mapping[str, Any]) -> dict[str, float | None]:
    """
    The scenario's figures from one generator result.

    Every key of every scenario metric is present; a figure the result does
    not allow (no broker PID, nothing delivered) is C{None}.

    @param scenario: the scenario that ran.
    @param raw: the generator's JSON object.
    """
    out: dict[str, float | None] = {}
    if scenario.kind == "conn":
        out["connect_s"] = _num(raw, "connect_time_s")
        out["bytes_per_conn"] = _nonneg(_num(raw, "bytes_per_conn"))
        return out
    rate = _num(raw, "recv_rate")
    out["rate"] = rate
    out["cpu_us"] = _nonneg(_num(raw, "broker_cpu_us_per_msg"))
    out["mbps"] = _num(raw, "recv_MBps")
    latency = raw.get("latency_us")
    for q in ("p50", "p99"):
        value = latency.get(q) if isinstance(latency, Mapping) else None
        out[f"{q}_ms"] = float(value) / 1000.0 if isinstance(value, int | float) else None
    expected = _num(raw, "expected")
    unique = _num(raw, "unique")
    out["delivered_pct"] = 100.0 * unique / expected if expected and unique is not None else None
    start = _nonneg(_num(raw, "broker_rss_kb_start"))
    peaks = [
        v
        for v in (
            _nonneg(_num(raw, "broker_rss_kb_window_end")),
            _nonneg(_num(raw, "broker_rss_kb_end")),
        )
        if v is not None
    ]
    out["rss_growth_mb"] = (max(peaks) - start) / 1024.0 if start is not None and peaks else None
    acks = _num(raw, "ack_rate")
    out["ack_per_delivery"] = acks / rate if acks is not None and rate else None
    return out


@dataclass(frozen=True, slots=True)
class Finding:
    """
    Something a run's result shows.

    @ivar kind: a short key (C{"lost"}, C{"dup"}, C{"aborted"}, ...), which
        C{--tolerate SCENARIO:KIND} names.
    @ivar text: a short sentence for people.
    """

    kind: str
    text: str


#: Issue 4's targets for the open-loop floods: at least this share of what
#: was published delivered by the end of the drain, at most this growth of
#: the broker's memory, and (QoS 1) at most this many PUBACKs per delivery.
FLOOD_MIN_DELIVERED_PCT = 90.0
FLOOD_MAX_RSS_GROWTH_MB = 64.0
FLOOD_MAX_ACKS_PER_DELIVERY = 1.1


def _flood_targets(figures: Mapping[str, float | None]) -> list[Finding]:
    problems = []
    delivered = figures.get("delivered_pct")
    if delivered is not None and delivered < FLOOD_MIN_DELIVERED_PCT:
        problems.append(
            Finding("flood-delivered", f"delivered {delivered:.1f} % < {FLOOD_MIN_DELIVERED_PCT:.0f} %")
        )
    growth = figures.get("rss_growth_mb")
    if growth is not None and growth > FLOOD_MAX_RSS_GROWTH_MB:
        problems.append(
            Finding("flood-memory", f"RSS grew {growth:.1f} MB > {FLOOD_MAX_RSS_GROWTH_MB:.0f} MB")
        )
    acks = figures.get("ack_per_delivery")
    if acks is not None and acks > FLOOD_MAX_ACKS_PER_DELIVERY:
        problems.append(
            Finding("ack-ahead", f"{acks:.2f} PUBACKs per delivery > {FLOOD_MAX_ACKS_PER_DELIVERY}")
        )
    return problems


def check(scenario: Scenario, raw: Mapping[str, Any]) -> tuple[list[Finding], list[Finding]]:
    """
    What is wrong with one run, and what is worth noting about it.

    Every run must finish (not aborted, every connection made and kept, no
    protocol errors, something delivered). Capped runs (a window or a fixed
    rate) must lose and duplicate nothing, whatever their QoS. The open-loop
    floods must not duplicate at QoS 1/2 and must meet issue 4's targets
    (C{FLOOD_*}); what they did not deliver by the end of the drain is also
    noted: it mixes the backlog still queued with messages the broker
    dropped by its queue limits (Mosquitto's and mqttx's
    C{max_queued_messages} apply to QoS 1 too).

    @param scenario: the scenario that ran.
    @param raw: the generator's JSON object.
    @return: the problems and the notes.
    """
    problems: list[Finding] = []
    notes: list[Finding] = []
    if raw.get("aborted"):
        problems.append(
            Finding("aborted", f"aborted ({raw.get('abort_reason') or 'no reason given'})")
        )
    if scenario.kind == "conn":
        target, connected = raw.get("target"), raw.get("connected")
        if connected != target:
            problems.append(Finding("connections", f"{connected} of {target} connections made"))
        for key in ("failed", "dropped_during_hold"):
            if raw.get(key):
                problems.append(Finding(key, f"{key.replace('_', ' ')}: {raw.get(key)}"))
        return problems, notes
    if raw.get("measured") is False:
        problems.append(Finding("unmeasured", "the measured window never ended"))
    for key in ("conn_fail", "disconnects", "proto_err", "bad_payload", "ack_err"):
        if raw.get(key):
            problems.append(Finding(key, f"{key}: {raw.get(key)}"))
    lost, dup, expected = raw.get("lost"), raw.get("dup"), raw.get("expected")
    if lost:
        text = f"lost {lost} of {expected}"
        if scenario.capped:
            problems.append(Finding("lost", text))
        else:
            notes.append(Finding("undelivered", f"{text} (open loop: backlog or dropped)"))
    if dup and (scenario.capped or scenario.qos > 0):
        problems.append(Finding("dup", f"{dup} duplicates"))
    if not raw.get("unique"):
        problems.append(Finding("nothing", "nothing delivered"))
    elif not scenario.capped:
        problems.extend(_flood_targets(extract_metrics(scenario, raw)))
    return problems, notes
