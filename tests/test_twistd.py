# -*- test-case-name: tests.test_twistd -*-
"""
Run C{twistd mqttx} as a real process, the way operators and systemd do.

These tests use real time and real loopback ports: each wait is bounded and
marked. The process runs this checkout's plugin through C{PYTHONPATH}, so
nothing needs to be installed.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.passwords import format_line, hash_password
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import Connect

CHECKOUT = FilePath(__file__).parent().parent()

# twistd has no `python -m` entry point (`python -m twisted` is the newer
# `twist` runner); this runs exactly what the `twistd` script runs.
TWISTD = [sys.executable, "-c", "from twisted.scripts.twistd import run; run()"]
TWIST = [sys.executable, "-m", "twisted"]

# real-time: starting an interpreter and scanning plugins takes about a
# second; a loaded CI machine may take several.
START_TIMEOUT = 30.0
# real-time: an orderly shutdown of a broker with two clients.
STOP_TIMEOUT = 10.0

# MQTT 5 CONNECT, client id "c", clean start, keep alive 60, no properties.
CONNECT_V5 = bytes([0x10, 14, 0, 4]) + b"MQTT" + bytes([5, 0x02, 0, 60, 0, 0, 1]) + b"c"
# MQTT 3.1.1 CONNECT, client id "d", clean session, keep alive 60.
CONNECT_V311 = bytes([0x10, 13, 0, 4]) + b"MQTT" + bytes([4, 0x02, 0, 60, 0, 1]) + b"d"


def free_port() -> int:
    """
    A TCP port in 18000-18999 that nothing listens on right now on
    127.0.0.1.
    """
    candidates = list(range(18000, 19000))
    random.shuffle(candidates)
    for port in candidates:
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 18000-18999")


def wait_until(condition: Callable[[], bool], timeout: float) -> bool:
    """
    Poll C{condition} until it holds or C{timeout} seconds have passed.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)  # real-time: polling a child process's output
    return condition()


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {data.hex()}")
        data += chunk
    return data


def read_packet(sock: socket.socket) -> bytes:
    """
    One MQTT packet shorter than 128 bytes (a one-byte Remaining Length).
    """
    header = read_exactly(sock, 2)
    if header[1] & 0x80:
        raise ValueError(f"unexpectedly long packet: {header.hex()}")
    return header + read_exactly(sock, header[1])


def read_until_closed(sock: socket.socket, timeout: float) -> bytes:
    """
    Everything C{sock} receives until the peer closes, within C{timeout}.
    """
    sock.settimeout(timeout)
    chunks = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


class TwistdProcess:
    """
    One C{twistd} (or C{twist}) process, with its output in files.
    """

    def __init__(self, case: SynchronousTestCase, argv: Sequence[str]) -> None:
        self.directory = FilePath(case.mktemp())
        self.directory.makedirs()
        self._stdout = self.directory.child("stdout")
        self._stderr = self.directory.child("stderr")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in [CHECKOUT.path, env.get("PYTHONPATH", "")] if p
        )
        with self._stdout.open("w") as out, self._stderr.open("w") as err:
            self.process = subprocess.Popen(
                list(argv),
                cwd=self.directory.path,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
            )
        case.addCleanup(self.kill)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(STOP_TIMEOUT)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    @property
    def stdout(self) -> str:
        return self._stdout.getContent().decode("utf-8", "replace")

    @property
    def stderr(self) -> str:
        return self._stderr.getContent().decode("utf-8", "replace")

    def events(self) -> list[dict[str, Any]]:
        """
        The JSON log events written so far (with C{logging: {format: json}}).
        """
        events = []
        for line in self.stdout.splitlines():
            try:
                events.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return events

    def event(self, event_id: str) -> dict[str, Any] | None:
        for event in self.events():
            if event.get("event_id") == event_id:
                return event
        return None


def mqttx_argv(config: FilePath[str] | str) -> list[str]:
    """The command line of C{twistd mqttx} in the foreground, without a pid file."""
    path = config if isinstance(config, str) else config.path
    return [*TWISTD, "-n", "--pidfile=", "mqttx", "--config", path]


def make_directory(case: SynchronousTestCase) -> FilePath[str]:
    """A new temporary directory of C{case}, for a configuration and its files."""
    directory = FilePath(case.mktemp())
    directory.makedirs()
    return directory


def write_config(directory: FilePath[str], text: str, name: str = "mqttx.yaml") -> FilePath[str]:
    """Write C{text} as the YAML file C{name} in C{directory}."""
    config = directory.child(name)
    config.setContent(text.encode("utf-8"))
    return config


def start_mqttx(case: SynchronousTestCase, config: FilePath[str]) -> TwistdProcess:
    """
    Run C{twistd mqttx} with C{config} (which logs JSON) and wait until it
    has started (C{service.started}); C{case} fails with its output if it
    does not in L{START_TIMEOUT} seconds.
    """
    twistd = TwistdProcess(case, mqttx_argv(config))
    case.assertTrue(
        wait_until(lambda: twistd.event("service.started") is not None, START_TIMEOUT),
        twistd.stdout + twistd.stderr,
    )
    return twistd


def stop_mqttx(case: SynchronousTestCase, twistd: TwistdProcess) -> None:
    """Send C{twistd} SIGTERM: C{case} fails unless it exits 0 in L{STOP_TIMEOUT} seconds."""
    twistd.process.send_signal(signal.SIGTERM)
    case.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)


class BadConfigTests(SynchronousTestCase):
    """
    With a bad configuration, C{twistd mqttx} prints one line naming the
    problem and exits non-zero before opening any port.
    """

    def run_bad(self, text: str | None, *expected: str) -> None:
        port = free_port()
        config = make_directory(self).child("bad.yaml")
        if text is not None:
            config.setContent(text.replace("PORT", str(port)).encode("utf-8"))
        twistd = TwistdProcess(self, mqttx_argv(config))
        status = twistd.wait(START_TIMEOUT)
        output = twistd.stdout + twistd.stderr
        self.assertNotEqual(status, 0, output)
        self.assertNotIn("Traceback", output)
        self.assertNotIn("listening", output)
        # One line, naming the file, and nothing else.
        [problem] = output.strip().splitlines()
        self.assertIn(config.path, problem)
        for fragment in expected:
            self.assertIn(fragment, problem)
        # Nothing was left listening on the configured port either.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

    def test_unknown_key(self) -> None:
        """
        An unknown key is named.
        """
        self.run_bad(
            'listeners: [{name: m, protocol: mqtt, endpoint: "tcp:PORT:interface=127.0.0.1"}]\n'
            "mqtt: {max_inflihgt: 3}\n",
            "mqtt.max_inflihgt: unknown key",
        )

    def test_wrong_type(self) -> None:
        """
        A value of the wrong type is named with its key.
        """
        self.run_bad(
            'listeners: [{name: m, protocol: mqtt, endpoint: "tcp:PORT:interface=127.0.0.1"}]\n'
            "mqtt: {max_inflight: ten}\n",
            "mqtt.max_inflight: expected an integer, got 'ten'",
        )

    def test_bad_endpoint(self) -> None:
        """
        An endpoint string Twisted cannot parse is named.
        """
        self.run_bad(
            'listeners: [{name: m, protocol: mqtt, endpoint: "tcp:PORT:interfac=127.0.0.1"}]\n',
            "listeners[0].endpoint: invalid endpoint",
        )

    def test_missing_file(self) -> None:
        """
        A missing file is named.
        """
        self.run_bad(None, "cannot read the file: No such file or directory")

    def test_bad_acl_file(self) -> None:
        """
        An ACL file with an invalid line stops twistd with one line naming
        the ACL file and the line; no port is opened.
        """
        acl = FilePath(self.mktemp())
        acl.setContent(b"user alice\ntopic readwrite alice/#\nbogus line\n")
        port = free_port()
        config = write_config(
            make_directory(self),
            "listeners:\n"
            f'  - {{name: m, protocol: mqtt, endpoint: "tcp:{port}:interface=127.0.0.1"}}\n'
            "persistence: {backend: memory}\n"
            f"auth: {{acl_file: '{acl.path}'}}\n",
        )
        twistd = TwistdProcess(self, mqttx_argv(config))
        status = twistd.wait(START_TIMEOUT)
        self.assertEqual(status, 1, twistd.stdout + twistd.stderr)
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)
        [problem] = twistd.stderr.splitlines()
        self.assertEqual(
            problem, f"mqttx: {acl.path}, line 3: unknown keyword 'bogus'; expected user, topic or pattern"
        )
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

    def test_corrupt_database(self) -> None:
        """
        A database file that is not one stops the broker with status 1 and
        one line on standard error naming the file, which is left as it was;
        no port is opened.
        """
        port = free_port()
        directory = make_directory(self)
        database = directory.child("mqttx.db")
        content = random.Random(5).randbytes(8192)
        database.setContent(content)
        config = write_config(
            directory,
            "listeners:\n"
            f'  - {{name: m, protocol: mqtt, endpoint: "tcp:{port}:interface=127.0.0.1"}}\n'
            f"persistence: {{backend: sqlite, path: '{database.path}'}}\n",
        )
        twistd = TwistdProcess(self, mqttx_argv(config))
        status = twistd.wait(START_TIMEOUT)
        self.assertEqual(status, 1, twistd.stdout + twistd.stderr)
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)
        [problem] = twistd.stderr.splitlines()
        self.assertTrue(problem.startswith(f"mqttx: {database.path}: "), problem)
        self.assertIn("not a usable mqttx database", problem)
        self.assertEqual(database.getContent(), content)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))

    def test_port_in_use(self) -> None:
        """
        A port that cannot be bound stops the broker with a critical line
        naming the listener, and a non-zero status.
        """
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            config = write_config(
                make_directory(self),
                f'listeners: [{{name: busy, protocol: mqtt, endpoint: "tcp:{port}:interface=127.0.0.1"}}]\n'
                "logging: {format: json}\n",
                "taken.yaml",
            )
            twistd = TwistdProcess(self, mqttx_argv(config))
            status = twistd.wait(START_TIMEOUT)
        self.assertNotEqual(status, 0)
        failed = twistd.event("listener.failed")
        self.assertIsNotNone(failed, twistd.stdout)
        assert failed is not None
        self.assertEqual(failed["listener"], "busy")
        self.assertIsNone(twistd.event("service.started"))


class RunTests(SynchronousTestCase):
    """
    With a good configuration the broker serves clients, and SIGTERM shuts
    it down in order and exits 0.
    """

    def config(self, port: int) -> FilePath[str]:
        return write_config(
            make_directory(self),
            "node: {name: twistd-test}\n"
            "listeners:\n"
            f'  - {{name: mqtt, protocol: mqtt, endpoint: "tcp:{port}:interface=127.0.0.1"}}\n'
            "logging: {format: json}\n",
        )

    def start(self, argv: Sequence[str], port: int) -> TwistdProcess:
        twistd = TwistdProcess(self, argv)
        started = wait_until(
            lambda: (
                twistd.event("service.started") is not None or twistd.process.poll() is not None
            ),
            START_TIMEOUT,
        )
        self.assertTrue(started, "broker did not start in time")
        event = twistd.event("service.started")
        self.assertIsNotNone(event, twistd.stdout + twistd.stderr)
        assert event is not None
        self.assertEqual(event["node"], "twistd-test")
        self.assertEqual(event["addresses"], f"mqtt=127.0.0.1:{port}")
        return twistd

    def connect(self, port: int, connect: bytes) -> socket.socket:
        client = socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT)
        self.addCleanup(client.close)
        client.sendall(connect)
        connack = read_packet(client)
        # CONNACK: no session present (clean start), success. [MQTT-3.2.2-2]
        self.assertEqual(connack[:4], b"\x20" + connack[1:2] + b"\x00\x00", connack.hex())
        return client

    def test_serve_then_sigterm(self) -> None:
        """
        twistd runs the broker from the configuration: a client connects and
        gets a CONNACK. On SIGTERM, MQTT 5 clients get DISCONNECT 0x8B
        (server shutting down), 3.1.1 clients are closed, and twistd exits
        0.
        """
        port = free_port()
        twistd = self.start(mqttx_argv(self.config(port)), port)
        v5 = self.connect(port, CONNECT_V5)
        v311 = self.connect(port, CONNECT_V311)

        twistd.process.send_signal(signal.SIGTERM)

        to_v5 = read_until_closed(v5, STOP_TIMEOUT)
        self.assertEqual(to_v5[:1], b"\xe0", to_v5.hex())  # DISCONNECT
        self.assertEqual(to_v5[2:3], b"\x8b", to_v5.hex())  # Server shutting down
        self.assertEqual(read_until_closed(v311, STOP_TIMEOUT), b"")
        self.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)
        ids = [e.get("event_id") for e in twistd.events()]
        # Listeners stop, then the broker, then the whole service.
        self.assertEqual(
            [
                i
                for i in ids
                if i in ("service.sigterm", "service.stopping", "broker.stopped", "service.stopped")
            ],
            ["service.sigterm", "service.stopping", "broker.stopped", "service.stopped"],
        )
        self.assertNotIn("Traceback", twistd.stdout + twistd.stderr)

    def test_sighup_reloads_password_file(self) -> None:
        """
        SIGHUP makes a running broker read its password file again: a user
        added since can connect, and the client already connected stays
        (it still gets PINGRESP).
        """
        port = free_port()
        config = self.config(port)
        users = config.sibling("passwd")
        alice = format_line("alice", hash_password(b"a-secret", iterations=1000))
        users.setContent(alice.encode() + b"\n")
        config.setContent(config.getContent() + f"auth: {{password_file: '{users.path}'}}\n".encode())
        twistd = self.start(mqttx_argv(config), port)

        def connect(user: str, password: bytes) -> bytes:
            return encode(Connect(user, 5, "MQTT", True, 60, user, password), 5)

        first = self.connect(port, connect("alice", b"a-secret"))
        users.setContent(
            (alice + "\n" + format_line("bob", hash_password(b"b-secret", iterations=1000)) + "\n").encode()
        )
        twistd.process.send_signal(signal.SIGHUP)
        self.assertTrue(wait_until(lambda: twistd.event("auth.reloaded") is not None, START_TIMEOUT))
        self.connect(port, connect("bob", b"b-secret"))
        first.sendall(b"\xc0\x00")  # PINGREQ
        self.assertEqual(read_packet(first), b"\xd0\x00")  # PINGRESP
        stop_mqttx(self, twistd)

    def test_twist_runner(self) -> None:
        """
        C{python -m twisted mqttx} (the C{twist} runner) runs the broker too,
        and also exits 0 on SIGTERM.
        """
        port = free_port()
        config = self.config(port)
        twist = TwistdProcess(self, [*TWIST, "--log-format=json", "mqttx", "--config", config.path])
        started = wait_until(
            lambda: "service.started" in twist.stdout or twist.process.poll() is not None,
            START_TIMEOUT,
        )
        self.assertTrue(started and twist.process.poll() is None, twist.stdout + twist.stderr)
        self.connect(port, CONNECT_V311)
        twist.process.send_signal(signal.SIGTERM)
        self.assertEqual(twist.wait(STOP_TIMEOUT), 0, twist.stdout + twist.stderr)


class ReactorTests(SynchronousTestCase):
    """
    twistd installs the reactor chosen with C{--reactor} after it has parsed
    the plugin's options; parsing them must not install one first.
    """

    def test_options_leave_reactor_uninstalled(self) -> None:
        """
        Parsing L{mqttx.service.Options}, which loads the configuration and
        checks its endpoint strings, does not import the global reactor.
        """
        code = (
            "import sys\n"
            "from mqttx.service import Options\n"
            f"Options().parseOptions(['--config', {CHECKOUT.descendant(['etc', 'mqttx.yaml']).path!r}])\n"
            "print('twisted.internet.reactor' in sys.modules)\n"
        )
        env = dict(os.environ, PYTHONPATH=CHECKOUT.path)
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT,
            check=False,
        )
        self.assertEqual((result.returncode, result.stdout), (0, "False\n"), result.stderr)
