# -*- test-case-name: tests.test_systemd -*-
"""
systemd's notification protocol: L{mqttx.systemd.notify} on real AF_UNIX
datagram sockets, the service's READY=1 and STOPPING=1, and a real twistd
process under a NOTIFY_SOCKET.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import tempfile
import uuid

from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.config import parse_config
from mqttx.service import build_components
from mqttx.systemd import notify
from mqttx.transports.mqtt import MQTTServerFactory

from .test_service import IN_MEMORY, Fakes, two_listeners
from .test_twistd import START_TIMEOUT, STOP_TIMEOUT, TwistdProcess, free_port, mqttx_argv


class NotifySocket:
    """A datagram socket standing in for systemd's notification socket."""

    def __init__(self, case: SynchronousTestCase, abstract: bool = False) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        case.addCleanup(self.sock.close)
        if abstract:
            name = f"mqttx-test-{uuid.uuid4().hex}"
            self.sock.bind("\0" + name)
            self.address = "@" + name
        else:
            # A short path: sun_path holds about 108 bytes, more than
            # trial's temporary folders leave.
            directory = tempfile.mkdtemp(prefix="mqttx-notify-")
            case.addCleanup(shutil.rmtree, directory, True)
            self.address = os.path.join(directory, "notify")
            self.sock.bind(self.address)

    def received(self, timeout: float = 0.0) -> list[str]:
        """The notifications sent so far; waits up to C{timeout} for the first."""
        messages = []
        self.sock.settimeout(timeout or None)
        if not timeout:
            self.sock.setblocking(False)
        try:
            while True:
                messages.append(self.sock.recv(4096).decode("utf-8"))
                self.sock.setblocking(False)
        except (BlockingIOError, TimeoutError):
            pass
        return messages


class NotifyTests(SynchronousTestCase):
    """L{notify} sends one datagram to C{NOTIFY_SOCKET}, if there is one."""

    def test_path_socket(self) -> None:
        """A filesystem path gets the state as one datagram."""
        target = NotifySocket(self)
        self.assertTrue(notify("READY=1", {"NOTIFY_SOCKET": target.address}))
        self.assertEqual(target.received(), ["READY=1"])

    def test_abstract_socket(self) -> None:
        """An C{@} address names a socket in the abstract namespace."""
        target = NotifySocket(self, abstract=True)
        self.assertTrue(notify("STOPPING=1", {"NOTIFY_SOCKET": target.address}))
        self.assertEqual(target.received(), ["STOPPING=1"])

    def test_os_environ_by_default(self) -> None:
        """Without an explicit environment, C{os.environ} is read."""
        target = NotifySocket(self)
        self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": target.address})
        self.assertTrue(notify("READY=1"))
        self.assertEqual(target.received(), ["READY=1"])

    def test_no_socket(self) -> None:
        """Without C{NOTIFY_SOCKET} nothing is sent."""
        self.assertFalse(notify("READY=1", {}))
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": ""}))

    def test_unusable_socket(self) -> None:
        """A relative or missing socket is not an error: nothing is sent."""
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": "relative/notify"}))
        missing = os.path.join(tempfile.gettempdir(), f"mqttx-missing-{uuid.uuid4().hex}")
        self.assertFalse(notify("READY=1", {"NOTIFY_SOCKET": missing}))


class ServiceNotifyTests(SynchronousTestCase):
    """
    L{MQTTXService} sends READY=1 once the broker has loaded and every
    listener listens, and STOPPING=1 when it starts stopping.
    """

    def test_ready_then_stopping(self) -> None:
        """READY=1 once loaded, listening and running; STOPPING=1 on stop."""
        target = NotifySocket(self)
        self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": target.address})
        fakes = Fakes()
        reactor = MemoryReactorClock()
        service = fakes.make(two_listeners(), reactor)
        service.startService()
        self.assertEqual(target.received(), [])  # The broker is still loading.
        fakes.broker.starting.callback(None)
        # Listening, but SIGTERM is handled only once the reactor runs.
        self.assertEqual(target.received(), [])
        reactor.run()
        [ready] = target.received()
        self.assertEqual(
            ready.splitlines(), ["READY=1", "STATUS=listening on first=0.0.0.0:18830, second=0.0.0.0:18831"]
        )
        service.stopService()
        self.assertEqual(target.received(), ["STOPPING=1"])


class ComponentsLimitTests(SynchronousTestCase):
    """The real listener factories share one connection count."""

    def test_factories_share_limits(self) -> None:
        config = parse_config(
            "listeners:\n"
            "  - {name: a, protocol: mqtt, endpoint: 'tcp:0', max_connections: 3}\n"
            "  - {name: b, protocol: mqtt, endpoint: 'tcp:0'}\n"
            + IN_MEMORY
            + "mqtt: {max_connections: 9}\n",
            "test.yaml",
        )
        components = build_components(config, MemoryReactorClock())
        a = components.factory_for(config.listeners[0])
        b = components.factory_for(config.listeners[1])
        assert isinstance(a, MQTTServerFactory) and isinstance(b, MQTTServerFactory)
        self.assertIs(a.limits, b.limits)
        self.assertEqual((a.max_connections, b.max_connections), (3, 0))


class TwistdNotifyTests(SynchronousTestCase):
    """A real C{twistd mqttx} under a NOTIFY_SOCKET, as with C{Type=notify}."""

    def test_ready_and_stopping(self) -> None:
        """
        twistd's broker sends READY=1 once listening (a client can then
        connect) and STOPPING=1 on SIGTERM, then exits 0.
        """
        target = NotifySocket(self)
        port = free_port()
        directory = tempfile.mkdtemp(prefix="mqttx-twistd-")
        self.addCleanup(shutil.rmtree, directory, True)
        config = os.path.join(directory, "mqttx.yaml")
        with open(config, "w") as f:
            f.write(
                "listeners:\n"
                f"  - {{name: mqtt, protocol: mqtt, endpoint: 'tcp:{port}:interface=127.0.0.1'}}\n"
                "persistence: {backend: memory}\n"
                "logging: {format: json}\n"
            )
        self.patch(os, "environ", {**os.environ, "NOTIFY_SOCKET": target.address})
        twistd = TwistdProcess(self, mqttx_argv(config))
        # real-time: a child interpreter starting.
        ready = target.received(START_TIMEOUT)
        self.assertEqual([m.splitlines()[0] for m in ready], ["READY=1"], twistd.stdout + twistd.stderr)
        with socket.create_connection(("127.0.0.1", port), timeout=STOP_TIMEOUT):
            pass
        twistd.process.send_signal(signal.SIGTERM)
        # real-time: the shutdown of an idle broker.
        self.assertEqual(target.received(STOP_TIMEOUT), ["STOPPING=1"])
        self.assertEqual(twistd.wait(STOP_TIMEOUT), 0, twistd.stdout + twistd.stderr)


class UnitFileTests(SynchronousTestCase):
    """etc/mqttx.service waits for READY=1 and keeps its sandbox."""

    def test_type_notify_with_hardening(self) -> None:
        unit = FilePath(__file__).parent().parent().descendant(["etc", "mqttx.service"])
        lines = unit.getContent().decode("utf-8").splitlines()
        for setting in (
            "Type=notify",
            "NotifyAccess=main",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
            "CapabilityBoundingSet=",
        ):
            self.assertIn(setting, lines)
        self.assertNotIn("Type=simple", lines)
