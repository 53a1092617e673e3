# -*- test-case-name: tests.test_service -*-
"""
Tests for L{mqttx.service}.
"""

from __future__ import annotations

import gc
import io
import json
import os
import random
import signal
import sys
from collections.abc import Callable
from typing import Any, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import Application, IServiceCollection
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IProtocolFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import ILogObserver, LogLevel, capturedLogs
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python import usage
from twisted.python.filepath import FilePath
from twisted.python.logfile import LogFile
from twisted.trial.unittest import SynchronousTestCase

from mqttx import __version__
from mqttx.auth.passwords import format_line, hash_password
from mqttx.broker.broker import Broker
from mqttx.config import Config, ListenerConfig, LoggingConfig, parse_config
from mqttx.service import (
    Components,
    MQTTXService,
    Options,
    _format_address,
    _twistd_log_file,
    build_components,
    make_log_observer,
    makeService,
    tune_gc,
)
from mqttx.store.memory import MemoryStore
from mqttx.store.sqlite import SQLiteStore
from mqttx.store.writer import GroupCommitWriter
from mqttx.transports.mqtt import MQTTServerFactory
from tests.tlscerts import make_authority

EXAMPLE = FilePath(__file__).parent().parent().descendant(["etc", "mqttx.yaml"])

TWO_LISTENERS = """
node: {name: node-a}
listeners:
  - {name: first, protocol: mqtt, endpoint: "tcp:18830:interface=127.0.0.1"}
  - {name: second, protocol: mqtt, endpoint: "tcp:18831:interface=127.0.0.1"}
"""

# Without it, the real components would make a SQLite database in the
# working directory.
IN_MEMORY = "persistence: {backend: memory}\n"


def two_listeners(extra: str = "") -> Config:
    return parse_config(TWO_LISTENERS + extra, "test.yaml")


class FakeStore:
    """A store whose close the test completes."""

    def __init__(self, events: list[str]) -> None:
        self.events = events
        self.closing: Deferred[None] = Deferred()

    def close(self) -> Deferred[None]:
        self.events.append("store.close")
        return self.closing


class FakeBroker:
    """A broker whose start and shutdown the test completes."""

    def __init__(self, events: list[str], service: list[MQTTXService]) -> None:
        self.events = events
        self._service = service
        self.starting: Deferred[None] = Deferred()
        self.stopping: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        self.events.append("broker.start")
        return self.starting

    def shutdown(self) -> Deferred[None]:
        listening = [s.name for s in self._service[0] if s.running]
        self.events.append(f"broker.shutdown listening={listening}")
        return self.stopping


class Fakes:
    """Builds L{Components} from fakes and keeps them for the test."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.service: list[MQTTXService] = []
        self.store = FakeStore(self.events)
        self.broker = FakeBroker(self.events, self.service)
        self.factories: dict[str, IProtocolFactory] = {}

    def __call__(self, config: Config, reactor: Any) -> Components:
        def factory_for(listener: ListenerConfig) -> IProtocolFactory:
            factory = Factory.forProtocol(Protocol)
            self.factories[listener.name] = factory
            return factory

        return Components(store=self.store, broker=self.broker, factory_for=factory_for)

    def make(self, config: Config, reactor: Any, **kwargs: Any) -> MQTTXService:
        service = MQTTXService(config, reactor, components=self, **kwargs)
        self.service.append(service)
        return service


class ThreadCallReactor(MemoryReactorClock):
    """A reactor that keeps C{callFromThread} calls for the test to run."""

    def __init__(self) -> None:
        super().__init__()
        self.thread_calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []

    def callFromThread(self, f: Callable[..., object], *args: object) -> None:
        self.thread_calls.append((f, args))

    def run_thread_calls(self) -> None:
        calls, self.thread_calls = self.thread_calls, []
        for f, args in calls:
            f(*args)


class FailingReactor(MemoryReactorClock):
    """A reactor where port 18831 is taken."""

    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        if port == 18831:
            raise CannotListenError(interface, port, OSError(98, "Address already in use"))
        return super().listenTCP(port, factory, backlog, interface)


class OptionsTests(SynchronousTestCase):
    """
    L{Options} loads and checks the configuration while options are parsed,
    so twistd stops before building anything.
    """

    def test_default_config_path(self) -> None:
        """
        Without C{--config}, the file is C{etc/mqttx.yaml}.
        """
        self.assertEqual(Options()["config"], "etc/mqttx.yaml")

    def test_good_config(self) -> None:
        """
        A valid file, given with C{--config} or C{-c}, is loaded into
        C{options.config}.
        """
        for flag in ("--config", "-c"):
            options = Options()
            options.parseOptions([flag, EXAMPLE.path])
            self.assertEqual(options.config, Config())

    def test_bad_config(self) -> None:
        """
        An invalid file ends the process with one line that names the file
        and the key.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"mqtt: {max_inflight: ten}\n")
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", path.path])
        self.assertEqual(
            caught.exception.code,
            f"mqttx: {path.path}: mqtt.max_inflight: expected an integer, got 'ten'",
        )

    def test_missing_config(self) -> None:
        """
        A missing file ends the process with one line naming it.
        """
        path = FilePath(self.mktemp())
        with self.assertRaises(SystemExit) as caught:
            Options().parseOptions(["--config", path.path])
        self.assertIn(path.path, str(caught.exception.code))
        self.assertIn("No such file", str(caught.exception.code))


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeService} builds the service tree twistd runs.
    """

    def options(self, text: str) -> Options:
        path = FilePath(self.mktemp())
        path.setContent(text.encode("utf-8"))
        options = Options()
        options.parseOptions(["--config", path.path])
        return options

    def test_one_listener_service_per_listener(self) -> None:
        """
        Each listener becomes a L{StreamServerEndpointService} named after
        it, serving MQTT with the real broker and store.
        """
        reactor = MemoryReactorClock()
        service = makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        self.assertIsInstance(service, MQTTXService)
        assert isinstance(service, MQTTXService)
        self.assertEqual([s.name for s in service], ["first", "second"])
        for name in ("first", "second"):
            child = service.getServiceNamed(name)
            self.assertIsInstance(child, StreamServerEndpointService)
            assert isinstance(child, StreamServerEndpointService)
            self.assertIsInstance(child.factory, MQTTServerFactory)
            self.assertEqual(child.factory.listener, name)
            self.assertIs(child.factory.broker, service.broker)
        self.assertIsInstance(service.broker, Broker)
        self.assertIsInstance(service.store, MemoryStore)

    def test_nothing_listens_before_start(self) -> None:
        """
        Building the service opens no port.
        """
        reactor = MemoryReactorClock()
        makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        self.assertEqual(reactor.tcpServers, [])

    def test_sigterm_handler_once_running(self) -> None:
        """
        The SIGTERM and SIGHUP handlers are set up for when the reactor
        runs, not before (the reactor installs its own as it starts).
        """
        reactor = MemoryReactorClock()
        makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        self.assertEqual(len(reactor.whenRunningHooks), 2)

    def test_sighup_reloads_from_the_reactor_thread(self) -> None:
        """
        Once the reactor runs, SIGHUP calls L{MQTTXService.reload} through
        C{callFromThread} (safe from a signal handler).
        """
        reactor = ThreadCallReactor()
        service = makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        assert isinstance(service, MQTTXService)
        self.addCleanup(signal.signal, signal.SIGHUP, signal.getsignal(signal.SIGHUP))
        reloads: list[None] = []
        self.patch(service, "reload", lambda: reloads.append(None))
        for hook, args, kwargs in reactor.whenRunningHooks[1:]:
            hook(*args, **kwargs)
        handler = signal.getsignal(signal.SIGHUP)
        assert callable(handler)
        handler(signal.SIGHUP, None)
        self.assertEqual(reloads, [])
        reactor.run_thread_calls()
        self.assertEqual(reloads, [None])

    def test_sigterm_stops_reactor(self) -> None:
        """
        Once the reactor runs, SIGTERM stops it through C{callFromThread}
        (safe from a signal handler), and is logged.
        """
        reactor = ThreadCallReactor()
        makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        self.addCleanup(signal.signal, signal.SIGTERM, signal.getsignal(signal.SIGTERM))
        hook, args, kwargs = reactor.whenRunningHooks[0]
        hook(*args, **kwargs)
        handler = signal.getsignal(signal.SIGTERM)
        assert callable(handler)
        handler(signal.SIGTERM, None)
        self.assertFalse(reactor.hasStopped)
        with capturedLogs() as events:
            reactor.run_thread_calls()
        self.assertTrue(reactor.hasStopped)
        self.assertEqual([e.get("event_id") for e in events], ["service.sigterm"])

    def test_unusable_database(self) -> None:
        """
        A database file that is not SQLite (random bytes, text) stops the
        start with L{SystemExit} and one line naming it, and is left as it
        was: never reset.
        """
        path = FilePath(self.mktemp())
        text = b"persistence: {backend: sqlite}\n" * 100
        for content in (random.Random(5).randbytes(8192), text):
            path.setContent(content)
            options = self.options(TWO_LISTENERS + f"persistence: {{path: '{path.path}'}}\n")
            with self.assertRaises(SystemExit) as caught:
                makeService(options, MemoryReactorClock())
            message = caught.exception.code
            assert isinstance(message, str)
            self.assertTrue(message.startswith(f"mqttx: {path.path}: "), message)
            self.assertIn("not a usable mqttx database", message)
            self.assertNotIn("\n", message)
            self.assertEqual(path.getContent(), content)

    def test_bad_acl_file(self) -> None:
        """
        An ACL file that is missing or has an invalid line stops the start
        with L{SystemExit} and one line naming the file (and the line).
        """
        path = FilePath(self.mktemp())
        path.setContent(b"topic read a/#\ntopic read a/#/b\n")
        missing = FilePath(self.mktemp()).path
        for acl, fragment in ((path.path, ", line 2: invalid topic filter"), (missing, "cannot read")):
            options = self.options(TWO_LISTENERS + IN_MEMORY + f"auth: {{acl_file: '{acl}'}}\n")
            with self.assertRaises(SystemExit) as caught:
                makeService(options, MemoryReactorClock())
            message = caught.exception.code
            assert isinstance(message, str)
            self.assertTrue(message.startswith(f"mqttx: {acl}"), message)
            self.assertIn(fragment, message)
            self.assertNotIn("\n", message)

    def test_acl_file_wired(self) -> None:
        """
        With C{auth.acl_file} the broker gets an L{ACLAuthorizer} of that
        file, which the service keeps for reloads; with admins alone, one
        that keeps C{$SYS} to them; with neither, none.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"topic read a/#\n")
        text = TWO_LISTENERS + IN_MEMORY
        service = makeService(
            self.options(text + f"auth: {{acl_file: '{path.path}', admins: [root]}}\n"), MemoryReactorClock()
        )
        assert isinstance(service, MQTTXService)
        acl = service.acl
        assert acl is not None
        self.assertIs(service.broker._authorizer, acl)  # type: ignore[attr-defined]
        self.assertEqual((acl.path, acl.admins), (path.path, frozenset({"root"})))
        self.assertTrue(acl.for_client("c", None).can_read("a/b"))
        only_admins = makeService(self.options(text + "auth: {admins: [root]}\n"), MemoryReactorClock())
        assert isinstance(only_admins, MQTTXService)
        self.assertIsNotNone(only_admins.acl)
        plain = makeService(self.options(text), MemoryReactorClock())
        assert isinstance(plain, MQTTXService)
        self.assertIsNone(plain.acl)
        self.assertIsNone(plain.broker._authorizer)  # type: ignore[attr-defined]

    def test_sighup_reloads_password_and_acl_files(self) -> None:
        """
        SIGHUP (L{MQTTXService.reload}) reads the password file and the ACL
        file again; a file with errors leaves the old contents in force and
        the reason is logged.
        """
        users = FilePath(self.mktemp())
        entry = hash_password(b"pw", iterations=1000)
        users.setContent(format_line("alice", entry).encode() + b"\n")
        rules = FilePath(self.mktemp())
        rules.setContent(b"topic read a/#\n")
        text = TWO_LISTENERS + IN_MEMORY + f"auth: {{password_file: '{users.path}', acl_file: '{rules.path}'}}\n"
        service = makeService(self.options(text), MemoryReactorClock())
        assert isinstance(service, MQTTXService)
        assert service.password_file is not None and service.acl is not None
        users.setContent((format_line("alice", entry) + "\n" + format_line("bob", entry) + "\n").encode())
        rules.setContent(b"topic read b/#\n")
        service.reload()
        self.assertEqual(service.password_file.users, frozenset({"alice", "bob"}))
        access = service.acl.for_client("c", None)
        self.assertEqual((access.can_read("a/x"), access.can_read("b/x")), (False, True))
        users.setContent(b"broken line without a hash\n")
        rules.setContent(b"frobnicate c/#\n")
        service.reload()
        self.assertEqual(service.password_file.users, frozenset({"alice", "bob"}))
        self.assertTrue(service.acl.for_client("c", None).can_read("b/x"))

    def test_tls_listener(self) -> None:
        """
        A listener with a C{tls:} block gets TLS under its MQTT factory (with
        C{use_identity_as_username} passed on); SIGHUP reloads its files,
        keeping the old ones if the new cannot be used; and files that
        cannot be used at start stop it with one line naming the listener
        and the file.
        """
        ca = make_authority(FilePath(self.mktemp()))
        cert, other = ca.issue("broker", server=True), ca.issue("other", server=True)
        tls = (
            "listeners:\n"
            '  - {name: mqtts, protocol: mqtt, endpoint: "tcp:18832:interface=127.0.0.1", tls: '
            f"{{cert: '{cert.cert}', key: 'KEY', ca: '{ca.cert}', require_client_cert: true,"
            " use_identity_as_username: true}}\n"
        ) + IN_MEMORY
        reactor = MemoryReactorClock()
        service = makeService(self.options(tls.replace("KEY", cert.key)), reactor)
        assert isinstance(service, MQTTXService)
        service.startService()
        [(port, factory, _, _)] = reactor.tcpServers
        self.assertIsInstance(factory, TLSMemoryBIOFactory)
        wrapped = cast(TLSMemoryBIOFactory, factory).wrappedFactory
        self.assertIsInstance(wrapped, MQTTServerFactory)
        self.assertTrue(cast(MQTTServerFactory, wrapped).certificate_username)
        with capturedLogs() as events:
            service.reload()
        self.assertIn("tls.reloaded", [e.get("event_id") for e in events])
        FilePath(cert.key).setContent(b"")
        with capturedLogs() as events:
            service.reload()
        [failed] = [e for e in events if e.get("event_id") == "tls.reload_failed"]
        self.assertIn(cert.key, failed["error"])
        self.successResultOf(service.stopService())
        with self.assertRaises(SystemExit) as caught:
            makeService(self.options(tls.replace("KEY", other.key)), MemoryReactorClock())
        message = caught.exception.code
        assert isinstance(message, str)
        self.assertTrue(message.startswith(f"mqttx: listener 'mqtts': tls.key {other.key}: "), message)
        self.assertNotIn("\n", message)

    def test_real_components_start_and_stop(self) -> None:
        """
        With the real broker and store, the service starts listening on each
        listener's address and stops cleanly.
        """
        reactor = MemoryReactorClock()
        service = makeService(self.options(TWO_LISTENERS + IN_MEMORY), reactor)
        with capturedLogs() as events:
            service.startService()
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(18830, "127.0.0.1"), (18831, "127.0.0.1")],
        )
        self.assertIn("service.started", [e.get("event_id") for e in events])
        with capturedLogs() as events:
            self.successResultOf(service.stopService())
        ids = [e.get("event_id") for e in events]
        self.assertIn("broker.stopped", ids)
        self.assertEqual(ids[-1], "service.stopped")

    def test_real_sqlite_start_and_stop(self) -> None:
        """
        With the SQLite store, the service starts and stops cleanly, and
        stopping closes the database: no write-ahead log is left beside it.
        """
        directory = FilePath(self.mktemp())
        path = directory.child("mqttx.db")
        options = self.options(TWO_LISTENERS + f"persistence: {{path: '{path.path}'}}\n")
        service = makeService(options, MemoryReactorClock())
        assert isinstance(service, MQTTXService)
        self.assertIsInstance(service.store, SQLiteStore)
        with capturedLogs():
            service.startService()
            self.successResultOf(service.stopService())
        self.assertEqual(directory.listdir(), ["mqttx.db"])


class LogFileTests(SynchronousTestCase):
    """
    The observer handed to twistd writes where twistd itself would.
    """

    def options(self, **twistd: object) -> Options:
        parent = usage.Options()
        parent.update({"nodaemon": False, "logfile": None, "syslog": False, "logger": None})
        parent.update(twistd)
        options = Options()
        options.parent = parent
        return options

    def test_not_under_twistd(self) -> None:
        """
        Built without twistd's options, logs go to standard output.
        """
        self.assertIs(_twistd_log_file(Options()), sys.stdout)

    def test_nodaemon(self) -> None:
        """
        With C{-n} and no C{--logfile}, or C{--logfile=-}: standard output.
        """
        self.assertIs(_twistd_log_file(self.options(nodaemon=True)), sys.stdout)
        self.assertIs(_twistd_log_file(self.options(logfile="-")), sys.stdout)

    def test_logfile(self) -> None:
        """
        C{--logfile=PATH}: that file.
        """
        path = FilePath(self.mktemp())
        out = _twistd_log_file(self.options(nodaemon=True, logfile=path.path))
        self.assertIsInstance(out, LogFile)
        logfile = cast(LogFile, out)
        self.addCleanup(logfile.close)
        self.assertEqual(logfile.path, path.path)

    def test_syslog_and_logger_left_to_twistd(self) -> None:
        """
        With C{--syslog} or C{--logger}, twistd's own observer is kept.
        """
        self.assertIsNone(_twistd_log_file(self.options(syslog=True)))
        self.assertIsNone(_twistd_log_file(self.options(logger="mod.factory")))


class LogObserverTests(SynchronousTestCase):
    """
    The C{logging} settings choose the observer twistd uses.
    """

    def emit(self, observer: ILogObserver, level: LogLevel) -> None:
        observer(
            {
                "log_format": "hello {who}",
                "who": "world",
                "log_level": level,
                "log_namespace": "tests",
                "log_time": 0.0,
                "event_id": "test.hello",
            }
        )

    def service(self, logging: str, out: io.StringIO) -> MQTTXService:
        return Fakes().make(
            two_listeners(f"logging: {logging}\n"), MemoryReactorClock(), log_file=out
        )

    def test_json_observer_set_on_application(self) -> None:
        """
        With C{format: json}, the Application twistd runs gets an observer
        writing one JSON object per line.
        """
        out = io.StringIO()
        application = Application("mqttx")
        self.service("{format: json}", out).setServiceParent(application)
        observer = application.getComponent(ILogObserver)
        self.assertIsNotNone(observer)
        self.emit(observer, LogLevel.info)
        self.emit(observer, LogLevel.warn)
        lines = out.getvalue().splitlines()
        self.assertEqual(len(lines), 2)
        event = json.loads(lines[0])
        self.assertEqual(event["event_id"], "test.hello")
        self.assertEqual(event["who"], "world")

    def test_text_observer(self) -> None:
        """
        With C{format: text}, events are written as text lines.
        """
        out = io.StringIO()
        application = Application("mqttx")
        self.service("{format: text}", out).setServiceParent(application)
        self.emit(application.getComponent(ILogObserver), LogLevel.info)
        self.assertIn("hello world", out.getvalue())
        self.assertRaises(json.JSONDecodeError, json.loads, out.getvalue())

    def test_level_filters(self) -> None:
        """
        Events below C{level} are not written.
        """
        out = io.StringIO()
        observer = make_log_observer(LoggingConfig(level="warn", format="text"), out)
        self.emit(observer, LogLevel.info)
        self.assertEqual(out.getvalue(), "")
        self.emit(observer, LogLevel.error)
        self.assertIn("hello world", out.getvalue())
        out = io.StringIO()
        observer = make_log_observer(LoggingConfig(level="info", format="json"), out)
        self.emit(observer, LogLevel.debug)
        self.assertEqual(out.getvalue(), "")

    def test_no_observer_without_log_file(self) -> None:
        """
        Without a log file (twistd's C{--syslog}), twistd keeps its observer.
        """
        application = Application("mqttx")
        Fakes().make(two_listeners(), MemoryReactorClock()).setServiceParent(application)
        self.assertIsNone(application.getComponent(ILogObserver))
        self.assertIsInstance(
            IServiceCollection(application).getServiceNamed("mqttx"), MQTTXService
        )


class LifecycleTests(SynchronousTestCase):
    """
    L{MQTTXService} starts the broker before its listeners, and stops the
    listeners, then the broker, then the store.
    """

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.fakes = Fakes()
        self.service = self.fakes.make(two_listeners(), self.reactor)

    def test_privileged_start_does_not_listen(self) -> None:
        """
        twistd's privileged start opens no port: the broker has not loaded
        its state yet.
        """
        self.service.privilegedStartService()
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertEqual(self.fakes.events, [])

    def test_broker_starts_before_listeners(self) -> None:
        """
        Listeners listen only once the broker has started.
        """
        self.service.startService()
        self.assertEqual(self.fakes.events, ["broker.start"])
        self.assertEqual(self.reactor.tcpServers, [])
        self.fakes.broker.starting.callback(None)
        self.assertEqual(
            [(port, factory, interface) for port, factory, _, interface in self.reactor.tcpServers],
            [
                (18830, self.fakes.factories["first"], "127.0.0.1"),
                (18831, self.fakes.factories["second"], "127.0.0.1"),
            ],
        )
        self.assertTrue(all(s.running for s in self.service))

    def test_startup_lines(self) -> None:
        """
        Each listener logs its bound address, then one line gives the node,
        version and every address.
        """
        self.service.startService()
        with capturedLogs() as events:
            self.fakes.broker.starting.callback(None)
        started = [e for e in events if e.get("event_id") == "listener.started"]
        self.assertEqual([e["listener"] for e in started], ["first", "second"])
        self.assertEqual([e["address"] for e in started], ["0.0.0.0:18830", "0.0.0.0:18831"])
        [summary] = [e for e in events if e.get("event_id") == "service.started"]
        self.assertEqual(summary["node"], "node-a")
        self.assertEqual(summary["version"], __version__)
        self.assertEqual(summary["addresses"], "first=0.0.0.0:18830, second=0.0.0.0:18831")

    def test_stop_order(self) -> None:
        """
        Stopping stops accepting first, then shuts the broker down, then
        closes the store; the returned Deferred fires once all are done.
        """
        self.service.startService()
        self.fakes.broker.starting.callback(None)
        d = self.service.stopService()
        self.assertEqual(self.fakes.events, ["broker.start", "broker.shutdown listening=[]"])
        self.assertNoResult(d)
        self.fakes.broker.stopping.callback(None)
        self.assertEqual(self.fakes.events[-1], "store.close")
        self.assertNoResult(d)
        with capturedLogs() as events:
            self.fakes.store.closing.callback(None)
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual([e.get("event_id") for e in events], ["service.stopped"])
        self.assertFalse(self.service.running)

    def test_stop_while_starting(self) -> None:
        """
        Stopping before the broker has started cancels the start: no
        listener ever listens, and the broker and store still stop.
        """
        self.service.startService()
        d = self.service.stopService()
        self.fakes.broker.stopping.callback(None)
        self.fakes.store.closing.callback(None)
        self.successResultOf(d)
        self.assertEqual(self.reactor.tcpServers, [])
        self.assertEqual(
            self.fakes.events,
            ["broker.start", "broker.shutdown listening=[]", "store.close"],
        )

    def test_broker_shutdown_failure_logged_and_store_closed(self) -> None:
        """
        If the broker's shutdown fails, the failure is logged and the store
        is closed all the same.
        """
        self.service.startService()
        self.fakes.broker.starting.callback(None)
        self.fakes.broker.stopping = fail(RuntimeError("stuck"))
        self.fakes.store.closing = succeed(None)
        with capturedLogs() as events:
            self.successResultOf(self.service.stopService())
        self.assertEqual(self.fakes.events[-1], "store.close")
        [failed] = [e for e in events if e.get("event_id") == "broker.shutdown_failed"]
        self.assertEqual(failed["log_level"], LogLevel.critical)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_listener_stop_failure_logged(self) -> None:
        """
        A listener that fails to stop is logged; the broker and store stop
        all the same.
        """
        self.service.startService()
        self.fakes.broker.starting.callback(None)
        first = self.service.getServiceNamed("first")
        self.patch(first, "stopService", lambda: fail(OSError("bad fd")))
        self.fakes.broker.stopping = succeed(None)
        self.fakes.store.closing = succeed(None)
        with capturedLogs() as events:
            self.successResultOf(self.service.stopService())
        [failed] = [e for e in events if e.get("event_id") == "listener.stop_failed"]
        self.assertEqual(failed["listener"], "first")
        self.assertEqual(
            self.fakes.events[-2:], ["broker.shutdown listening=['first']", "store.close"]
        )
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)

    def test_store_close_failure_logged(self) -> None:
        """
        If closing the store fails, the failure is logged.
        """
        self.service.startService()
        self.fakes.broker.starting.callback(None)
        self.fakes.broker.stopping = succeed(None)
        self.fakes.store.closing = fail(OSError("disk full"))
        with capturedLogs() as events:
            self.successResultOf(self.service.stopService())
        self.assertIn("store.close_failed", [e.get("event_id") for e in events])
        self.assertEqual(len(self.flushLoggedErrors(OSError)), 1)


class StartFailureTests(SynchronousTestCase):
    """
    A broker that cannot start ends the process instead of running without
    its listeners.
    """

    def test_port_in_use_before_reactor_runs(self) -> None:
        """
        A listener that cannot listen while twistd starts the application
        (before the reactor runs) is logged as critical and raises
        L{SystemExit}, so twistd exits non-zero.
        """
        fakes = Fakes()
        fakes.broker.starting = succeed(None)
        service = fakes.make(two_listeners(), FailingReactor())
        with capturedLogs() as events:
            with self.assertRaises(SystemExit) as caught:
                service.startService()
        self.assertEqual(caught.exception.code, 1)
        [failed] = [e for e in events if e.get("event_id") == "listener.failed"]
        self.assertEqual(failed["listener"], "second")
        self.assertEqual(failed["log_level"], LogLevel.critical)
        self.assertNotIn("service.started", [e.get("event_id") for e in events])

    def test_port_in_use_while_running(self) -> None:
        """
        If listening fails once the reactor runs (after a slow start), the
        reactor is stopped, which stops the service.
        """
        fakes = Fakes()
        reactor = FailingReactor()
        reactor.running = True
        service = fakes.make(two_listeners(), reactor)
        service.startService()
        with capturedLogs() as events:
            fakes.broker.starting.callback(None)
        self.assertIn("listener.failed", [e.get("event_id") for e in events])
        self.assertTrue(reactor.hasStopped)

    def test_broker_start_failure(self) -> None:
        """
        A broker that fails to start is logged with its traceback.
        """
        fakes = Fakes()
        fakes.broker.starting = fail(ValueError("corrupt store"))
        service = fakes.make(two_listeners(), MemoryReactorClock())
        with capturedLogs() as events:
            self.assertRaises(SystemExit, service.startService)
        self.assertIn("service.start_failed", [e.get("event_id") for e in events])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class AddressTests(SynchronousTestCase):
    """
    Listener addresses are logged the way they are written in URLs.
    """

    def test_addresses(self) -> None:
        self.assertEqual(_format_address(IPv4Address("TCP", "127.0.0.1", 1883)), "127.0.0.1:1883")
        self.assertEqual(_format_address(IPv6Address("TCP", "::1", 1883)), "[::1]:1883")
        self.assertEqual(_format_address(UNIXAddress(b"/run/mqttx.sock")), "/run/mqttx.sock")
        self.assertEqual(_format_address(UNIXAddress(None)), "UNIXAddress(None)")


class BuildComponentsTests(SynchronousTestCase):
    """
    L{build_components} wires the real parts together.
    """

    def test_components(self) -> None:
        """
        The broker gets the C{mqtt} settings, node name and store; listener
        factories serve that broker under the listener's name.
        """
        reactor = MemoryReactorClock()
        config = two_listeners("mqtt: {max_inflight: 7}\n" + IN_MEMORY)
        components = build_components(config, reactor)
        self.assertIsInstance(components.store, MemoryStore)
        broker = components.broker
        assert isinstance(broker, Broker)
        self.assertEqual(broker.config.max_inflight, 7)
        self.assertEqual(broker.node_name, "node-a")
        factory = components.factory_for(config.listeners[1])
        assert isinstance(factory, MQTTServerFactory)
        self.assertIs(factory.broker, broker)
        self.assertEqual(factory.listener, "second")

    def test_sqlite_store(self) -> None:
        """
        With the sqlite backend, the store is a L{SQLiteStore} on the
        configured file, its folder created on demand, committing in a
        writer thread of the reactor.
        """
        path = FilePath(self.mktemp()).child("var").child("mqttx.db")
        config = two_listeners(
            f"persistence: {{backend: sqlite, path: '{path.path}', durability: batch}}\n"
        )
        components = build_components(config, MemoryReactorClock())
        store = components.store
        assert isinstance(store, SQLiteStore)
        self.addCleanup(store.close)
        self.assertEqual(str(store.path), path.path)
        self.assertTrue(path.isfile())
        self.assertIsInstance(store.writer, GroupCommitWriter)

    def test_sqlite_is_the_default(self) -> None:
        """
        Without a C{persistence} section, the store is SQLite at
        C{var/mqttx.db} under the working directory.
        """
        directory = FilePath(self.mktemp())
        directory.makedirs()
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(directory.path)
        store = build_components(two_listeners(), MemoryReactorClock()).store
        assert isinstance(store, SQLiteStore)
        self.addCleanup(store.close)
        self.assertTrue(directory.descendant(["var", "mqttx.db"]).isfile())


class GarbageCollectorTests(SynchronousTestCase):
    """
    L{tune_gc} sets the collector up for a broker's allocation pattern.
    """

    def test_tune_gc(self) -> None:
        """
        The youngest generation is collected less often and the objects that
        exist at start-up are frozen out of collections.
        """
        thresholds = gc.get_threshold()
        self.addCleanup(gc.set_threshold, *thresholds)
        self.addCleanup(gc.unfreeze)
        tune_gc()
        self.assertEqual(gc.get_threshold()[0], 50_000)
        self.assertGreater(gc.get_freeze_count(), 0)
