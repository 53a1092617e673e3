"""
Brokers under test: what the command line names, and starting and stopping
them.

A broker is given as C{[NAME=]TARGET}:

  - C{mqttx}: this checkout, run as C{twistd -n mqttx --config FILE} with
    C{PYTHONPATH} set to the checkout and a generated configuration;
  - C{mqttx:PATH}: another mqttx checkout (for before/after comparisons);
  - C{mosquitto}: C{mosquitto -c {config}} with C{configs/mosquitto.conf};
  - C{HOST:PORT} or C{HOST:PORT/PID}: a broker that is already running (the
    PID lets the generator read its CPU time and RSS);
  - anything else: a command line, split like a shell would. C{{port}},
    C{{host}} and C{{config}} in it are replaced; C{{config}} is a copy of
    the broker's configuration template (C{--broker-config NAME=FILE}, else
    C{configs/NAME.*}) with C{{port}} and C{{host}} replaced.

Managed brokers (all but C{HOST:PORT}) are started afresh for every run on a
free port in 18000-18999 on 127.0.0.1, pinned to one CPU with C{taskset}
where it exists, and stopped with SIGTERM (SIGKILL after a grace period).
A broker with more listeners (C{benchmarks.transports}) asks for extra
ports by name: C{{port_NAME}} in its template gets another free port.
"""

from __future__ import annotations

import os
import random
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Literal

__all__ = [
    "CHECKOUT",
    "CONFIGS",
    "PORT_RANGE",
    "BrokerError",
    "BrokerSpec",
    "RunningBroker",
    "free_port",
    "parse_broker",
    "parse_broker_configs",
    "render_template",
    "start_broker",
]

#: The mqttx checkout these benchmarks belong to.
CHECKOUT = Path(__file__).resolve().parent.parent
#: Configuration templates of the preset brokers.
CONFIGS = Path(__file__).resolve().parent / "configs"
#: Ports tried for managed brokers.
PORT_RANGE = (18000, 18999)

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*\Z")
_EXTERNAL = re.compile(
    r"(?P<host>\d{1,3}(?:\.\d{1,3}){3}|localhost):(?P<port>\d+)(?:/(?P<pid>\d+))?\Z"
)
_TWISTD = "from twisted.scripts.twistd import run; run()"


class BrokerError(Exception):
    """
    A broker could not be named, configured or started.
    """


@dataclass(frozen=True, slots=True)
class BrokerSpec:
    """
    One broker under test, as given on the command line.

    @ivar name: unique label in the JSON lines and the summary.
    @ivar kind: C{"mqttx"}, C{"command"} or C{"external"}.
    @ivar command: for C{"command"}: the argument template.
    @ivar config: the configuration template file, if any.
    @ivar checkout: for C{"mqttx"}: the checkout to run.
    @ivar host: where the broker listens (external brokers).
    @ivar port: for C{"external"}: its port.
    @ivar pid: for C{"external"}: its process id, if given.
    """

    name: str
    kind: Literal["mqttx", "command", "external"]
    command: tuple[str, ...] = ()
    config: Path | None = None
    checkout: Path | None = None
    host: str = "127.0.0.1"
    port: int | None = None
    pid: int | None = None

    @property
    def managed(self) -> bool:
        """
        Whether the runner starts and stops this broker.
        """
        return self.kind != "external"


def _preset_config(name: str) -> Path | None:
    for suffix in (".conf", ".yaml", ".yml", ".toml", ".json"):
        candidate = CONFIGS / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def parse_broker(text: str, configs: Mapping[str, Path] | None = None) -> BrokerSpec:
    """
    Parse one C{--broker} value.

    @param text: C{[NAME=]TARGET}, see the module docstring.
    @param configs: configuration templates by broker name
        (C{--broker-config}).
    @raise BrokerError: if the value cannot name a broker.
    """
    configs = configs or {}
    text = text.strip()
    if not text:
        raise BrokerError("empty broker specification")
    name: str | None = None
    head, sep, rest = text.partition("=")
    if sep and _NAME.match(head):
        name, text = head, rest.strip()
        if not text:
            raise BrokerError(f"broker {name!r}: nothing after '='")

    if text == "mqttx" or text.startswith("mqttx:"):
        checkout = Path(text[len("mqttx:") :]).expanduser() if ":" in text else CHECKOUT
        if not (checkout / "mqttx" / "__init__.py").is_file():
            raise BrokerError(f"{checkout}: not an mqttx checkout (no mqttx/__init__.py)")
        name = name or ("mqttx" if checkout == CHECKOUT else f"mqttx:{checkout.name}")
        config = configs.get(name) or _preset_config("mqttx")
        return BrokerSpec(name, "mqttx", config=config, checkout=checkout.resolve())

    external = _EXTERNAL.match(text)
    if external:
        host = external["host"]
        if host == "localhost":
            host = "127.0.0.1"
        pid = int(external["pid"]) if external["pid"] else None
        return BrokerSpec(
            name or f"{host}:{external['port']}",
            "external",
            host=host,
            port=int(external["port"]),
            pid=pid,
        )

    if text == "mosquitto":
        text = "mosquitto -c {config}"
    try:
        argv = tuple(shlex.split(text))
    except ValueError as e:
        raise BrokerError(f"cannot split broker command {text!r}: {e}") from e
    if not argv:
        raise BrokerError("empty broker command")
    name = name or Path(argv[0]).name
    if not _NAME.match(name):
        raise BrokerError(f"{name!r} is not a usable broker name; give one as NAME=COMMAND")
    config = configs.get(name)
    if config is None and any("{config}" in a for a in argv):
        config = _preset_config(name)
        if config is None:
            raise BrokerError(
                f"broker {name!r} uses {{config}} but has no template: "
                f"give --broker-config {name}=FILE"
            )
    if not any("{port}" in a for a in argv) and config is None:
        raise BrokerError(
            f"broker {name!r}: the command must contain {{port}} or {{config}}, "
            "or the broker cannot be put on a free port"
        )
    return BrokerSpec(name, "command", command=argv, config=config)


def parse_broker_configs(values: Sequence[str]) -> dict[str, Path]:
    """
    Parse C{--broker-config NAME=FILE} values.

    @raise BrokerError: on a malformed value or a missing file.
    """
    out: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not _NAME.match(name) or not path:
            raise BrokerError(f"--broker-config wants NAME=FILE, got {value!r}")
        file = Path(path).expanduser()
        if not file.is_file():
            raise BrokerError(f"--broker-config {name}: no such file {file}")
        out[name] = file
    return out


def render_template(
    text: str, port: int, host: str = "127.0.0.1", ports: Mapping[str, int] | None = None
) -> str:
    """
    Fill C{{port}} and C{{host}} into a configuration or command template,
    and C{{port_NAME}} for each extra port in C{ports}.

    Only these placeholders are replaced, so YAML flow mappings and other
    braces pass through untouched.
    """
    for name, extra in (ports or {}).items():
        text = text.replace(f"{{port_{name}}}", str(extra))
    return text.replace("{port}", str(port)).replace("{host}", host)


def free_port(
    host: str = "127.0.0.1", rng: random.Random | None = None, exclude: Collection[int] = ()
) -> int:
    """
    A TCP port in L{PORT_RANGE} that nothing listens on now, and not one of
    C{exclude} (ports already chosen for the same broker).

    @raise BrokerError: if none is free.
    """
    rng = rng or random.Random()
    ports = list(range(PORT_RANGE[0], PORT_RANGE[1] + 1))
    rng.shuffle(ports)
    for port in ports:
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise BrokerError(f"no free port in {PORT_RANGE[0]}-{PORT_RANGE[1]}")


def mqtt_ping(host: str, port: int, timeout: float = 1.0) -> bool:
    """
    Whether an MQTT 3.1.1 CONNECT to the address is answered by a
    successful CONNACK.
    """
    cid = b"mqttx-bench-probe"
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(bytes([0x10, len(body)]) + body)
            reply = b""
            while len(reply) < 4:
                chunk = s.recv(4 - len(reply))
                if not chunk:
                    return False
                reply += chunk
            s.sendall(b"\xe0\x00")
            return reply[0] == 0x20 and reply[3] == 0
    except OSError:
        return False


@dataclass
class RunningBroker:
    """
    A broker ready for a run.

    @ivar spec: what was asked for.
    @ivar host: its address.
    @ivar port: its port.
    @ivar pid: the process to read CPU time and RSS from, if known.
    @ivar argv: the command that started it (empty if external).
    @ivar log: where its output goes (managed brokers).
    @ivar ports: the extra ports asked for, by name.
    """

    spec: BrokerSpec
    host: str
    port: int
    pid: int | None
    argv: list[str] = field(default_factory=list)
    log: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _log_file: IO[bytes] | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def log_tail(self, lines: int = 15) -> str:
        """
        The last lines of the broker's output.
        """
        if self.log is None or not self.log.exists():
            return ""
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])

    def alive(self) -> bool:
        """
        Whether the broker process is still running (external: assumed).
        """
        return self.process is None or self.process.poll() is None

    def stop(self, grace: float = 10.0) -> int | None:
        """
        Stop a managed broker: SIGTERM, then SIGKILL after C{grace} seconds.

        @return: its exit status, or C{None} for an external broker.
        """
        if self.process is None:
            return None
        status = self.process.poll()
        if status is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                status = self.process.wait(grace)
            except subprocess.TimeoutExpired:
                self.process.kill()
                status = self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return status


def broker_argv(
    spec: BrokerSpec,
    port: int,
    config_path: Path | None,
    python: str,
    ports: Mapping[str, int] | None = None,
) -> list[str]:
    """
    The command that starts a managed broker (without CPU pinning).

    @param spec: the broker.
    @param port: its port.
    @param config_path: its rendered configuration file, if it has one.
    @param python: the interpreter for mqttx.
    @param ports: its extra ports, by name.
    """
    if spec.kind == "mqttx":
        assert config_path is not None
        return [python, "-c", _TWISTD, "-n", "--pidfile=", "mqttx", "--config", str(config_path)]
    config = str(config_path) if config_path is not None else ""
    return [
        render_template(a, port, spec.host, ports).replace("{config}", config) for a in spec.command
    ]


def _environment(spec: BrokerSpec) -> dict[str, str]:
    env = dict(os.environ)
    if spec.kind == "mqttx":
        assert spec.checkout is not None
        old = env.get("PYTHONPATH")
        env["PYTHONPATH"] = str(spec.checkout) + (os.pathsep + old if old else "")
    return env


def start_broker(
    spec: BrokerSpec,
    workdir: Path,
    *,
    python: str = sys.executable,
    pin: Sequence[str] = (),
    ready_timeout: float = 30.0,
    extra_ports: Sequence[str] = (),
) -> RunningBroker:
    """
    Start (or, if external, check) a broker and wait until it answers MQTT.

    @param spec: the broker.
    @param workdir: an empty directory for its configuration and log; the
        broker runs in it.
    @param python: the interpreter for mqttx.
    @param pin: a command prefix that pins it to a CPU (C{taskset -c 0}).
    @param ready_timeout: how long to wait for its first CONNACK.
    @param extra_ports: names of more ports to choose (C{{port_NAME}} in
        the templates), for brokers with several listeners; readiness is
        still the first CONNACK on the main port.
    @raise BrokerError: if it exits or does not answer in time.
    """
    if not spec.managed:
        assert spec.port is not None
        if not mqtt_ping(spec.host, spec.port, timeout=5.0):
            raise BrokerError(f"{spec.name}: no MQTT broker answers at {spec.host}:{spec.port}")
        return RunningBroker(spec, spec.host, spec.port, spec.pid)
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port(spec.host)
    ports: dict[str, int] = {}
    for name in extra_ports:
        ports[name] = free_port(spec.host, exclude={port, *ports.values()})
    config_path: Path | None = None
    if spec.config is not None:
        suffix = spec.config.suffix or ".conf"
        config_path = workdir / f"{spec.name.replace(':', '-')}{suffix}"
        config_path.write_text(render_template(spec.config.read_text(), port, spec.host, ports))
    argv = [*pin, *broker_argv(spec, port, config_path, python, ports)]
    log = workdir / "broker.log"
    log_file = log.open("wb")
    try:
        process = subprocess.Popen(
            argv,
            cwd=workdir,
            env=_environment(spec),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    except OSError as e:
        log_file.close()
        raise BrokerError(f"{spec.name}: cannot start {argv[0]}: {e}") from e
    # taskset execs the broker, so this is the broker's own PID.
    running = RunningBroker(spec, spec.host, port, process.pid, argv, log, process, log_file, ports)
    deadline = time.monotonic() + ready_timeout
    while True:
        if not running.alive():
            status = running.stop()
            raise BrokerError(
                f"{spec.name}: exited with status {status} before accepting connections:\n"
                + running.log_tail()
            )
        if mqtt_ping(spec.host, port, timeout=1.0):
            return running
        if time.monotonic() > deadline:
            running.stop()
            raise BrokerError(
                f"{spec.name}: no CONNACK on port {port} after {ready_timeout:.0f} s:\n"
                + running.log_tail()
            )
        time.sleep(0.05)
