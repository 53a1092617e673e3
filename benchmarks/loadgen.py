"""
The load generator: which one, its command line, and its result.

C{mqload} (C, in the project's shared tools) is used when the C{MQLOAD}
environment variable (or C{--mqload}) names its binary; otherwise the
Python fallback L{benchmarks.pyload}, which takes the same flags and prints
the same JSON line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from benchmarks.scenarios import FULL_TIMING, SMOKE_TIMING, Scenario, Timing
from benchmarks.summary import json_objects

__all__ = [
    "PYLOAD",
    "GeneratorError",
    "LoadGenerator",
    "find_generator",
    "generator_argv",
    "parse_output",
    "run_generator",
    "timing_for",
]

PYLOAD = Path(__file__).resolve().parent / "pyload.py"
_TOOLS = ("mqload", "pyload")


class GeneratorError(Exception):
    """
    The load generator is missing, or its output is not a result.
    """


@dataclass(frozen=True, slots=True)
class LoadGenerator:
    """
    A load generator: its name and the command prefix that runs it.
    """

    name: Literal["mqload", "pyload"]
    argv: tuple[str, ...]


def find_generator(
    choice: str = "auto",
    mqload: str | None = None,
    environ: Mapping[str, str] | None = None,
    python: str = sys.executable,
) -> LoadGenerator:
    """
    Pick the load generator.

    @param choice: C{"auto"} (mqload if its binary is named and executable,
        else the fallback), C{"mqload"} or C{"python"}.
    @param mqload: an explicit mqload binary (C{--mqload}), before C{MQLOAD}.
    @param environ: the environment to read C{MQLOAD} from.
    @param python: the interpreter for the fallback.
    @raise GeneratorError: if mqload is required but not usable.
    """
    environ = os.environ if environ is None else environ
    binary = mqload or environ.get("MQLOAD") or ""
    usable = bool(binary) and os.path.isfile(binary) and os.access(binary, os.X_OK)
    if choice == "python" or (choice == "auto" and not usable):
        return LoadGenerator("pyload", (python, str(PYLOAD)))
    if not usable:
        raise GeneratorError(
            f"mqload not usable: {binary or 'MQLOAD is not set'} "
            "(build it: cp -r ../shared/tools/mqload /tmp/mqload && make -C /tmp/mqload)"
        )
    return LoadGenerator("mqload", (str(Path(binary).resolve()),))


def timing_for(scenario: Scenario, smoke: bool, override: Timing | None = None) -> Timing:
    """
    How long a run of the scenario lasts.

    @param override: C{--duration}/C{--warmup}/C{--drain} from the command
        line, replacing the defaults (the floods' longer drain included).
    """
    if override is not None:
        return override
    if smoke:
        return SMOKE_TIMING
    if scenario.drain is not None:
        return Timing(FULL_TIMING.duration, FULL_TIMING.warmup, scenario.drain)
    return FULL_TIMING


def generator_argv(
    generator: LoadGenerator,
    scenario: Scenario,
    *,
    host: str,
    port: int,
    mqtt: int,
    timing: Timing,
    smoke: bool,
    broker_pid: int | None,
    label: str = "",
    pin: Sequence[str] = (),
) -> list[str]:
    """
    The command line of one generator run.

    @param pin: a prefix pinning the generator to a CPU (C{taskset -c 1}).
    """
    argv = [*pin, *generator.argv, "-H", host, "-p", str(port), "-V", str(mqtt), "--quiet"]
    argv += scenario.generator_flags(smoke)
    if scenario.kind == "pubsub":
        argv += ["-d", f"{timing.duration:g}", "-w", f"{timing.warmup:g}"]
        argv += ["--drain", f"{timing.drain:g}"]
    if broker_pid:
        argv += ["--broker-pid", str(broker_pid)]
    if label:
        argv += ["--label", label]
    return argv


def parse_output(stdout: str) -> dict[str, Any]:
    """
    The result object from a generator's standard output.

    The result is the last line that is a JSON object with a C{tool} of
    C{mqload} or C{pyload}; anything else on stdout is ignored.

    @raise GeneratorError: if there is no such line.
    """
    for value in json_objects(reversed(stdout.splitlines())):
        if value.get("tool") in _TOOLS:
            return value
    tail = stdout.strip().splitlines()[-1:] or ["(nothing)"]
    raise GeneratorError(f"no result line in the generator's output; last line: {tail[0][:200]}")


def run_generator(argv: Sequence[str], timeout: float) -> tuple[int, dict[str, Any], str]:
    """
    Run the generator and return its exit status, result and stderr.

    mqload and pyload exit 0, or 3 for an aborted run whose result line is
    still printed.

    @raise GeneratorError: if it cannot be run, runs past C{timeout}, or
        prints no result.
    """
    try:
        done = subprocess.run(
            list(argv),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            text=True,
            errors="replace",
        )
    except subprocess.TimeoutExpired as e:
        raise GeneratorError(f"the generator ran past {timeout:.0f} s") from e
    except OSError as e:
        raise GeneratorError(f"cannot run {argv[0]}: {e}") from e
    try:
        result = parse_output(done.stdout)
    except GeneratorError as e:
        raise GeneratorError(
            f"{e} (exit status {done.returncode}; stderr: {done.stderr.strip()[-500:]})"
        ) from e
    return done.returncode, result, done.stderr
