# -*- test-case-name: tests.test_service -*-
"""
Composition: the twistd plugin's options and the service tree of a broker.

C{twistd -n mqttx --config etc/mqttx.yaml} parses L{Options} (which loads and
checks the configuration, so a bad file stops twistd before any port opens),
then calls L{makeService}, which builds one L{MQTTXService}: the store, the
broker, and one L{StreamServerEndpointService} per configured listener.
"""

from __future__ import annotations

import gc
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import FrameType
from typing import IO, Any, Protocol, cast

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import CancelledError, Deferred, DeferredList, maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProtocolFactory,
    IStreamServerEndpoint,
)
from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    Logger,
    LogLevel,
    LogLevelFilterPredicate,
    jsonFileLogObserver,
    textFileLogObserver,
)
from twisted.python import usage
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.python.logfile import LogFile
from zope.interface import implementer

from mqttx import __version__
from mqttx.auth.acl import ACLAuthorizer, ACLError, build_authorizer
from mqttx.auth.passwords import PasswordFileAuthenticator, PasswordFileError
from mqttx.auth.scram import build_authentication_methods
from mqttx.auth.setup import build_auth_limiter, build_authenticator
from mqttx.broker.bridge import Bridge
from mqttx.broker.broker import Broker
from mqttx.config import (
    Config,
    ConfigError,
    ListenerConfig,
    LoggingConfig,
    load_config,
    udp_address,
)
from mqttx.interfaces import IStore
from mqttx.metrics import metrics_site
from mqttx.store.memory import MemoryStore
from mqttx.store.sqlite import SQLiteStore, StoreError
from mqttx.systemd import notify
from mqttx.transports.coap.listener import UDPListenerService
from mqttx.transports.coap.protocol import CoAPDatagramProtocol
from mqttx.transports.http import HTTPContext, build_site
from mqttx.transports.limits import ConnectionLimits
from mqttx.transports.mqtt import MQTTServerFactory
from mqttx.transports.proxy import ProxyHeaderFactory, proxied_endpoint
from mqttx.transports.tls import ServerTLS, TLSSetupError
from mqttx.transports.websocket import MQTTWebSocketFactory

_log = Logger()

__all__ = [
    "Components",
    "MQTTXService",
    "Options",
    "build_components",
    "makeService",
    "make_log_observer",
]


class Options(usage.Options):
    """
    The options of C{twistd mqttx}.

    After parsing, C{self.config} holds the checked L{Config}.
    """

    synopsis = "[--config PATH]"
    longdesc = (
        "Run the mqttx MQTT broker with the listeners, limits and storage that "
        "the YAML configuration file describes."
    )
    optParameters = [["config", "c", "etc/mqttx.yaml", "YAML configuration file."]]

    config: Config

    def postOptions(self) -> None:
        """
        Load and check the configuration file.

        @raise SystemExit: if it cannot be read or is not valid, with
            L{ConfigError}'s one line, naming the file and key, as its
            message. (A L{usage.UsageError} would make twistd print its
            usage text around the line that matters.)
        """
        try:
            self.config = load_config(FilePath(self["config"]))
        except ConfigError as e:
            raise SystemExit(f"mqttx: {e}") from e


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the broker's service tree for twistd.

    Once the reactor runs, SIGTERM stops it without the process then killing
    itself with the signal, so an orderly shutdown exits 0.

    @param options: parsed L{Options}.
    @param reactor: the reactor to run on; twistd passes none, and the
        global reactor is used.
    @return: an L{MQTTXService}.
    """
    if reactor is None:
        # twistd installs the reactor chosen with --reactor only after it has
        # imported plugins and parsed options: import it now, not at module
        # level.
        from twisted.internet import reactor
        # Run by twistd: this process is the broker's alone.
        tune_gc()
    reactor.callWhenRunning(_stop_cleanly_on_sigterm, reactor)
    try:
        service = MQTTXService(options.config, reactor, log_file=_twistd_log_file(options))
    except (StoreError, PasswordFileError, ACLError, TLSSetupError) as e:
        # A database, password, ACL or TLS file that cannot be used: one
        # line, not a traceback.
        raise SystemExit(f"mqttx: {e}") from e
    reactor.callWhenRunning(_reload_on_sighup, reactor, service)
    return service


def tune_gc() -> None:
    """
    Tune the garbage collector for a broker: every message allocates
    short-lived objects that reference counting frees and almost none form
    cycles, so the youngest generation is collected less often; and the
    objects of start-up (modules, configuration) are frozen out of every
    collection.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def _stop_cleanly_on_sigterm(reactor: Any) -> None:
    """
    Make SIGTERM stop the reactor like Twisted's own handler, which this
    replaces, but without recording the signal: twistd re-raises a recorded
    signal after shutting down, so the process would end killed by SIGTERM.
    A completed orderly shutdown is a success and exits 0, which service
    managers and scripts can tell apart from a crash.

    Called once the reactor runs, because it installs its handlers as it
    starts.
    """

    def stop() -> None:
        _log.info("received SIGTERM, shutting down", event_id="service.sigterm")
        reactor.stop()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(stop)

    signal.signal(signal.SIGTERM, on_sigterm)


def _reload_on_sighup(reactor: Any, service: MQTTXService) -> None:
    """Make SIGHUP reload the service's files (L{MQTTXService.reload}), in the reactor thread."""

    def on_sighup(signum: int, frame: FrameType | None) -> None:
        reactor.callFromThread(service.reload)

    signal.signal(signal.SIGHUP, on_sighup)


def _twistd_log_file(options: Options) -> IO[str] | None:
    """
    Where twistd itself would write its log, so that the observer
    L{MQTTXService} hands twistd writes there too: standard output with
    C{-n} (or C{--logfile=-}), the C{--logfile} file, or C{twistd.log} when
    daemonized. L{None} (leave twistd's observer in place) with C{--syslog}
    or C{--logger}, which then do their own formatting and level filtering.
    """
    parent = options.parent
    if parent is None or "nodaemon" not in parent:
        # Not twistd's ServerOptions (built directly, or `twist`, which takes
        # its log settings from its own options).
        return sys.stdout
    if parent.get("syslog") or parent.get("logger"):
        return None
    logfile: str | None = parent.get("logfile")
    if logfile == "-" or (not logfile and parent.get("nodaemon")):
        return sys.stdout
    # LogFile has the write and flush the observers use; it is not typed.
    return cast("IO[str]", LogFile.fromFullPath(logfile or "twistd.log"))


def make_log_observer(logging: LoggingConfig, out: IO[str]) -> ILogObserver:
    """
    Build the observer for the C{logging} settings.

    @param logging: the C{logging} section of the configuration.
    @param out: where to write.
    @return: an observer writing events of C{logging.level} or more severe
        to C{out}, as one JSON object per line (C{format: json}) or one text
        line per event (C{format: text}).
    """
    if logging.format == "json":
        writer = jsonFileLogObserver(out, recordSeparator="")
    else:
        writer = textFileLogObserver(out)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(logging.level))
    return FilteringLogObserver(writer, [predicate])


class _Closable(Protocol):
    def close(self) -> Deferred[None]: ...


class _Lifecycle(Protocol):
    def start(self) -> Deferred[None]: ...

    def shutdown(self) -> Deferred[None]: ...


@dataclass(frozen=True, slots=True)
class Components:
    """
    What L{MQTTXService} starts and stops, built from the configuration.

    @ivar store: closed last, once the broker has stopped.
    @ivar broker: started first, shut down after the listeners stop.
    @ivar factory_for: the protocol factory serving one listener.
    @ivar password_file: the password file authenticator, if one is
        configured; its C{reload()} re-reads the file.
    """

    store: _Closable
    broker: _Lifecycle
    factory_for: Callable[[ListenerConfig], IProtocolFactory]
    password_file: PasswordFileAuthenticator | None = None
    #: The ACL authorizer, if an ACL file or admins are configured; its
    #: C{reload()} re-reads the file, keeping the old rules on errors.
    acl: ACLAuthorizer | None = None
    #: The TLS of each TLS listener; C{reload()} re-reads its files.
    tls: tuple[ServerTLS, ...] = ()
    #: The service of one datagram (C{coap}) listener, which
    #: C{factory_for} does not serve.
    udp_service_for: Callable[[ListenerConfig], UDPListenerService] | None = None


def build_components(config: Config, reactor: Any) -> Components:
    """
    Build the real store, broker and listener factories.

    @param config: the checked configuration.
    @param reactor: the reactor the broker uses as its clock.
    @return: the components for L{MQTTXService}.
    """
    # First: a bad password file stops the start before the store opens.
    authenticator = build_authenticator(config.auth, config.listeners, reactor)
    # Likewise a bad ACL file, and bad TLS files.
    acl = build_authorizer(config.auth.acl_file, config.auth.admins)
    tls = {
        listener.name: ServerTLS(listener.tls, listener.name)
        for listener in config.listeners
        if listener.tls is not None
    }
    persistence = config.persistence
    store: IStore
    if persistence.backend == "sqlite":
        store = SQLiteStore(
            persistence.path,
            durability=persistence.durability,
            commit_interval=persistence.commit_interval,
            reactor=reactor,
        )
    else:
        store = MemoryStore()
    broker = Broker(
        config.mqtt,
        clock=reactor,
        store=store,
        node_name=config.node.name,
        sys_topics=True,
        authenticator=authenticator,
        auth_limiter=build_auth_limiter(config.auth, reactor),
        authorizer=acl,
        # SCRAM-SHA-256 shares the password file's users (a reload changes both).
        authentication_methods=build_authentication_methods(config.auth, authenticator),
    )

    # One count of open connections for every listener: mqtt.max_connections.
    limits = ConnectionLimits(config.mqtt, reactor)
    # The HTTP and CoAP bridges' way into the broker.
    bridge = Bridge(broker, reactor)

    def factory_for(listener: ListenerConfig) -> IProtocolFactory:
        factory = protocol_factory(listener)
        server_tls = tls.get(listener.name)
        if server_tls is None:
            return factory
        # TLS under whatever the listener speaks.
        return server_tls.wrap(factory, reactor, broker.stats_for(listener.name))

    def protocol_factory(listener: ListenerConfig) -> IProtocolFactory:
        if listener.protocol == "metrics":
            return metrics_site(broker, store)
        if listener.protocol == "http":
            context = HTTPContext(broker, bridge, listener, reactor, frozenset(config.auth.admins), store)
            return build_site(context, limits=limits)
        mqtt = MQTTServerFactory(
            broker,
            clock=reactor,
            listener=listener.name,
            max_connections=listener.max_connections,
            limits=limits,
            certificate_username=listener.tls is not None and listener.tls.use_identity_as_username,
        )
        if listener.websocket is not None:
            # mqtt-ws: the same MQTT protocol under WebSocket framing.
            return MQTTWebSocketFactory(mqtt, listener.websocket)
        return mqtt

    def udp_service_for(listener: ListenerConfig) -> UDPListenerService:
        assert listener.coap is not None
        port, interface = udp_address(listener.endpoint)
        protocol = CoAPDatagramProtocol(
            bridge, listener.name, listener.coap, reactor, stopping=lambda: broker.stopping
        )
        return UDPListenerService(reactor, port, interface, protocol)

    return Components(
        store=store,
        broker=broker,
        factory_for=factory_for,
        password_file=authenticator if isinstance(authenticator, PasswordFileAuthenticator) else None,
        acl=acl,
        tls=tuple(tls.values()),
        udp_service_for=udp_service_for,
    )


@implementer(IStreamServerEndpoint)
class _ObservedEndpoint:
    """
    An endpoint that reports the outcome of listening to the service.

    L{StreamServerEndpointService} keeps its listening port to itself and
    only logs a failure to listen. Wrapping its endpoint gives L{MQTTXService}
    the port, for the address it actually bound, and the failure, to stop the
    process instead of running without the listener.

    @ivar listening: fires with the port, or fails with why it could not
        listen.
    """

    def __init__(self, endpoint: IStreamServerEndpoint) -> None:
        self._endpoint = endpoint
        self.listening: Deferred[IListeningPort] = Deferred()

    def listen(self, factory: IProtocolFactory) -> Deferred[IListeningPort]:
        def listening(port: IListeningPort) -> IListeningPort:
            self.listening.callback(port)
            return port

        def failed(reason: Failure) -> None:
            # Reported through self.listening. StreamServerEndpointService
            # would log it again, as an unformatted traceback, if it got the
            # failure; given None it knows there is no port to stop.
            self.listening.errback(reason)

        d = self._endpoint.listen(factory).addCallbacks(listening, failed)
        return cast("Deferred[IListeningPort]", d)


class _Listening(Protocol):
    listening: Deferred[IListeningPort]


@dataclass(frozen=True, slots=True)
class _Listener:
    config: ListenerConfig
    service: Service
    #: Reports the port or the failure to listen: the stream listener's
    #: L{_ObservedEndpoint}, or the L{UDPListenerService} itself.
    endpoint: _Listening


class MQTTXService(MultiService):
    """
    One broker process: its store, its broker and its listeners.

    Each listener is a child L{StreamServerEndpointService} (a
    L{UDPListenerService} for C{coap}) named after it, but this service
    orders their start and stop itself (L{MultiService} would start them
    before the broker and stop everything at once):

      - start: the broker loads its state from the store, then each listener
        listens, and one line logs the node, version and bound addresses;
        under systemd (C{NOTIFY_SOCKET}), READY=1 is sent then, and
        STOPPING=1 as stopping begins (L{mqttx.systemd});
      - stop: the listeners stop accepting, the broker disconnects every
        client (MQTT 5 ones with 0x8B, server shutting down), then the store
        is closed, which flushes it.

    If it cannot start (a port in use, a store that cannot load), the reason
    is logged as critical and the process ends: with L{SystemExit} (status
    1) when that happens before the reactor runs, as with the memory store
    and TCP listeners, or by stopping the reactor otherwise.

    @ivar config: the configuration it was built from.
    @ivar store: the store.
    @ivar broker: the broker.
    """

    log = Logger()

    def __init__(
        self,
        config: Config,
        reactor: Any,
        *,
        log_file: IO[str] | None = None,
        components: Callable[[Config, Any], Components] = build_components,
    ) -> None:
        """
        @param config: the checked configuration.
        @param reactor: the reactor to listen with and keep time by.
        @param log_file: where the log observer handed to twistd writes (see
            L{setServiceParent}); L{None} hands none.
        @param components: builds the store, broker and listener factories.
        """
        super().__init__()
        self.setName("mqttx")
        self.config = config
        self._reactor = reactor
        self._log_file = log_file
        built = components(config, reactor)
        self.store = built.store
        self.broker = built.broker
        #: The password file authenticator (C{reload()} on SIGHUP), or None.
        self.password_file = built.password_file
        #: The ACL authorizer, whose C{reload()} SIGHUP is to call, or None.
        self.acl = built.acl
        #: The TLS of the TLS listeners, whose files SIGHUP reloads.
        self.tls = built.tls
        self._listeners: list[_Listener] = []
        for listener in config.listeners:
            if listener.protocol == "coap" and built.udp_service_for is not None:
                udp = built.udp_service_for(listener)
                udp.setName(listener.name)
                udp.setServiceParent(self)
                self._listeners.append(_Listener(listener, udp, udp))
                continue
            factory = built.factory_for(listener)
            description = listener.endpoint
            behind = proxied_endpoint(description)
            if behind is not None:
                # haproxy:: the PROXY header is read first, before TLS, and
                # the listener's protocol is built with the client's address.
                description, factory = behind, ProxyHeaderFactory(factory, reactor, listener.name)
            endpoint = _ObservedEndpoint(serverFromString(reactor, description))
            service = StreamServerEndpointService(endpoint, factory)
            service.setName(listener.name)
            service.setServiceParent(self)
            self._listeners.append(_Listener(listener, service, endpoint))
        self._starting: Deferred[None] | None = None
        self._start_failed = False

    def setServiceParent(self, parent: Any) -> None:
        """
        Also give twistd's Application the log observer for the C{logging}
        settings, which twistd uses instead of its own (C{--logger} still
        overrides it).

        @param parent: twistd's Application, or any service collection.
        """
        super().setServiceParent(parent)
        if self._log_file is not None and isinstance(parent, Componentized):
            parent.setComponent(
                ILogObserver, make_log_observer(self.config.logging, self._log_file)
            )

    def privilegedStartService(self) -> None:
        # Listeners must not listen before the broker has loaded its state:
        # they start in startService.
        Service.privilegedStartService(self)

    def reload(self) -> None:
        """
        Read the password file, the ACL file and the TLS listeners'
        certificates, keys and CA bundles again (SIGHUP). Connections stay
        (TLS ones with the certificate they started with); a file with
        errors leaves its old contents in force and the reason is logged.
        """
        self.log.info("reloading on SIGHUP", event_id="service.reload")
        if self.password_file is not None:
            self.password_file.reload()
        if self.acl is not None:
            try:
                self.acl.reload()
            except ACLError as e:
                self.log.error(
                    "ACL file not reloaded, keeping the old rules: {error}",
                    error=str(e),
                    event_id="acl.reload_failed",
                )
            else:
                self.log.info("ACL file {path} reloaded", path=self.acl.path, event_id="acl.reloaded")
        for server_tls in self.tls:
            try:
                server_tls.reload()
            except TLSSetupError as e:
                self.log.error(
                    "TLS files not reloaded, keeping the old ones: {error}",
                    error=str(e),
                    listener=server_tls.listener,
                    event_id="tls.reload_failed",
                )
            else:
                self.log.info(
                    "TLS certificate {path} of listener {listener} reloaded",
                    path=server_tls.config.cert,
                    listener=server_tls.listener,
                    event_id="tls.reloaded",
                )

    def startService(self) -> None:
        """
        Start the broker, then the listeners.

        @raise SystemExit: if starting fails before the reactor runs.
        """
        Service.startService(self)
        self._starting = Deferred.fromCoroutine(self._start())
        self._starting.addErrback(self._failed_to_start)
        if self._start_failed and not self._reactor.running:
            raise SystemExit(1)

    async def _start(self) -> None:
        await self.broker.start()
        addresses = []
        for listener in self._listeners:
            listener.service.startService()
            try:
                port = await listener.endpoint.listening
            except CannotListenError as e:
                raise _ListenerFailed(listener.config, e) from e
            address = _format_address(port.getHost())
            addresses.append(f"{listener.config.name}={address}")
            self.log.info(
                "listener {listener} ({protocol}) listening on {address}",
                listener=listener.config.name,
                protocol=listener.config.protocol,
                address=address,
                event_id="listener.started",
            )
        self.log.info(
            "mqttx {version} node {node} started; listening on {addresses}",
            version=__version__,
            node=self.config.node.name,
            addresses=", ".join(addresses),
            event_id="service.started",
        )
        # Type=notify: systemd counts the service as started from here. With
        # the memory store, this runs before the reactor does, that is
        # before SIGTERM is handled: only a running reactor is ready.
        self._reactor.callWhenRunning(
            notify, "READY=1\nSTATUS=listening on " + ", ".join(addresses)
        )

    def _failed_to_start(self, reason: Failure) -> None:
        if reason.check(CancelledError):
            # stopService was called while starting.
            return
        self._start_failed = True
        failure = reason.value
        if isinstance(failure, _ListenerFailed):
            self.log.critical(
                "listener {listener} cannot listen on {endpoint}: {error}",
                listener=failure.listener.name,
                endpoint=failure.listener.endpoint,
                error=failure.error,
                event_id="listener.failed",
            )
        else:
            self.log.failure("mqttx could not start", reason, event_id="service.start_failed")
        if self._reactor.running:
            self._reactor.stop()

    def stopService(self) -> Deferred[None]:
        """
        Stop accepting connections, shut the broker down, close the store.

        Each step runs even if an earlier one failed; failures are logged.

        @return: fires when all three are done.
        """
        Service.stopService(self)
        notify("STOPPING=1")
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._starting is not None and not self._starting.called:
            self._starting.cancel()
        running = [listener for listener in self._listeners if listener.service.running]
        results = await DeferredList(
            [maybeDeferred(listener.service.stopService) for listener in running],
            consumeErrors=True,
        )
        for listener, (stopped, result) in zip(running, results, strict=True):
            if not stopped:
                self.log.failure(
                    "listener {listener} did not stop cleanly",
                    result,
                    listener=listener.config.name,
                    event_id="listener.stop_failed",
                )
        self.log.info(
            "stopped accepting connections; shutting down node {node}",
            node=self.config.node.name,
            event_id="service.stopping",
        )
        await self._step(self.broker.shutdown, "broker shutdown failed", "broker.shutdown_failed")
        await self._step(self.store.close, "closing the store failed", "store.close_failed")
        self.log.info(
            "mqttx node {node} stopped", node=self.config.node.name, event_id="service.stopped"
        )

    async def _step(self, step: Callable[[], Deferred[None]], message: str, event_id: str) -> None:
        try:
            await maybeDeferred(step)
        except Exception:
            self.log.failure(message, event_id=event_id)


class _ListenerFailed(Exception):
    def __init__(self, listener: ListenerConfig, error: CannotListenError) -> None:
        super().__init__(listener.name, error)
        self.listener = listener
        self.error = error


def _format_address(address: IAddress) -> str:
    host: str | None = getattr(address, "host", None)
    port: int | None = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name: bytes | str | None = getattr(address, "name", None)
    if isinstance(name, bytes):
        return name.decode("utf-8", "replace")
    if name is not None:
        return name
    return str(address)
