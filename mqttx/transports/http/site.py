# -*- test-case-name: tests.transports.test_http_site -*-
"""
The HTTP bridge's site: the factory of a C{protocol: http} listener, its
resource tree and what every request gets.

  - Routing: L{build_site} puts each resource at its path (L{mount}); a
    path nothing is mounted at gets a JSON 404, a method a resource does
    not render a JSON 405 with C{Allow}. The admin API and the status page
    (L{mqttx.transports.http.admin}) are mounted by L{build_site} too.
  - Every answer has the C{Server: mqttx/VERSION} header; errors have the
    body C{{"error": "...", "reason_code": N}} (L{errors}); a resource that
    raises gets a JSON 500 and the failure is logged.
  - Requests are logged at debug (method, path, status, bytes, peer; never
    the query string, which may name topics a log should not hold, nor
    credentials).
  - Limits, applied before anything is buffered: the connection limits the
    MQTT listeners share (C{mqtt.max_connections}, the listener's
    C{max_connections}, C{max_connection_rate}); a request line of at most
    L{MAX_LINE} bytes, headers of at most L{MAX_HEADERS_SIZE} bytes and
    L{MAX_HEADERS} lines (else 400 and the connection closes); a body of at
    most C{mqtt.max_packet_size} bytes, refused with 413 from its
    C{Content-Length} before it is read, or as soon as a chunked body goes
    over (the connection closes: the rest is not read) — twisted.web reads
    a whole body before the resource sees it, in memory under 100 kB and
    in a temporary file above, so this cap is what bounds it; and an idle
    timeout of L{IDLE_TIMEOUT} seconds between requests or while a request
    is being received (not while a response is being produced, so a
    server-sent-events stream is not cut).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IAddress, IReactorTime, ITransport
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from mqttx import __version__
from mqttx.config import ListenerConfig
from mqttx.transports.address import describe_address
from mqttx.transports.limits import ConnectionLimits

from .errors import json_body, send_error

if TYPE_CHECKING:
    from mqttx.broker.bridge import Bridge
    from mqttx.broker.broker import Broker

__all__ = [
    "IDLE_TIMEOUT",
    "MAX_HEADERS",
    "MAX_HEADERS_SIZE",
    "MAX_LINE",
    "SERVER",
    "answer_later",
    "BridgeRequest",
    "HTTPContext",
    "HTTPSite",
    "JSONResource",
    "build_site",
    "mount",
]

#: The C{Server} header of every answer.
SERVER = f"mqttx/{__version__}".encode("ascii")

#: Seconds a connection may stay idle between requests, or while sending one.
IDLE_TIMEOUT = 60.0
#: The longest request line or header line, in bytes.
MAX_LINE = 8192
#: The most bytes of request line and headers together.
MAX_HEADERS_SIZE = 16384
#: The most header lines in a request.
MAX_HEADERS = 100


@dataclass(frozen=True)
class HTTPContext:
    """
    What the resources of one HTTP listener work with.

    @ivar broker: the broker.
    @ivar bridge: the way into the broker for publishers and subscribers
        (L{mqttx.broker.bridge}).
    @ivar listener: the listener's configuration; C{listener.http} is set.
    @ivar clock: the reactor's time (heartbeats, timeouts).
    @ivar admins: the user names allowed the admin API (C{auth.admins}).
    @ivar store: the broker's store, for the metrics of its writer.
    @ivar ready: whether the broker has started and is not stopping
        (C{/readyz}); by default, whether it is not stopping (the listeners
        start only once the broker has loaded its state).
    """

    broker: Broker
    bridge: Bridge
    listener: ListenerConfig
    clock: IReactorTime
    admins: frozenset[str] = frozenset()
    store: object = None
    ready: Callable[[], bool] | None = None

    @property
    def max_body(self) -> int:
        """The largest request body accepted: C{mqtt.max_packet_size}."""
        return self.broker.config.max_packet_size

    def is_ready(self) -> bool:
        """Whether C{/readyz} answers 200."""
        if self.ready is not None:
            return self.ready()
        return not self.broker.stopping


class JSONResource(Resource):
    """
    A resource whose refusals are JSON: an unknown child is a 404, an
    unsupported method a 405 with C{Allow}.
    """

    def getChild(self, path: bytes, request: Request) -> IResource:
        return ErrorResource(404, "not found")

    def render(self, request: Request) -> bytes | int:
        methods = {name[len("render_") :] for name in dir(self) if name.startswith("render_")}
        # Resource has render_HEAD, which renders GET.
        methods.discard("HEAD")
        if not methods or (self.isLeaf and request.postpath):
            # An intermediate node, or a path below a leaf.
            send_error(request, 404, "not found")
            return NOT_DONE_YET
        if "GET" in methods:
            methods.add("HEAD")
        allowed = sorted(methods)
        method = request.method.decode("ascii", "replace")
        if method not in allowed:
            request.setHeader(b"allow", ", ".join(allowed).encode("ascii"))
            send_error(request, 405, f"method {method} not allowed")
            return NOT_DONE_YET
        return cast("bytes | int", super().render(request))


class ErrorResource(Resource):
    """Answers every request with one JSON error."""

    isLeaf = True

    def __init__(self, status: int, error: str) -> None:
        super().__init__()
        self._status = status
        self._error = error

    def render(self, request: Request) -> int:
        send_error(request, self._status, self._error)
        return NOT_DONE_YET


def mount(root: Resource, path: str, resource: IResource) -> None:
    """
    Put C{resource} at C{path} under C{root}, making the intermediate
    nodes (L{JSONResource}s) it needs.

    @param path: such as C{"api/v1/clients"}; C{""} is the root URL C{/}
        itself (the status page).
    """
    node = root
    *parents, leaf = path.split("/") if path else [""]
    for name in parents:
        key = name.encode("ascii")
        child = node.children.get(key)
        if child is None:
            child = JSONResource()
            node.putChild(key, child)
        assert isinstance(child, Resource), f"{path}: {name} is a leaf"
        node = child
    node.putChild(leaf.encode("ascii"), resource)


class BridgeRequest(Request):
    """
    A request of the HTTP bridge: the C{Server} header, a JSON 500 when a
    resource fails, and the body cap (see the module docstring).
    """

    log = Logger()
    #: Set when the body was refused as too large: nothing more is done.
    refused = False
    _received = 0

    def _max_body(self) -> int:
        site = getattr(self.channel, "site", None)
        return site.max_body if isinstance(site, HTTPSite) else 0

    def _transport(self) -> ITransport:
        transport = self.channel.transport
        assert transport is not None
        return transport

    def gotLength(self, length: int | None) -> None:
        limit = self._max_body()
        if limit and length is not None and length > limit:
            self._refuse_body(length, limit)
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return
        self._received += len(data)
        limit = self._max_body()
        if limit and self._received > limit:
            # A chunked body (no Content-Length) went over.
            self._refuse_body(self._received, limit)
            return
        super().handleContentChunk(data)

    def _refuse_body(self, size: int, limit: int) -> None:
        self.refused = True
        # No "100 Continue" after the answer: the client is to send nothing.
        self.requestHeaders.removeHeader(b"expect")
        self.log.info(
            "request body from {peer} refused: {size} bytes, at most {limit}",
            peer=describe_address(self.getClientAddress()),
            size=size,
            limit=limit,
            event_id="http.body_too_large",
        )
        body = json_body({"error": f"body larger than {limit} bytes", "reason_code": 0x95})
        head = (
            b"HTTP/1.1 413 Content Too Large\r\nServer: %s\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n" % (SERVER, len(body))
        )
        transport = self._transport()
        transport.write(head + body)
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self.refused:
            # The 413 is sent and the connection is closing.
            return
        super().requestReceived(command, path, version)

    def render(self, resrc: IResource) -> None:
        self.setHeader(b"server", SERVER)
        super().render(resrc)

    def processingFailed(self, reason: Failure) -> None:
        self.log.failure(
            "HTTP {method} {path} failed",
            reason,
            method=self.method.decode("ascii", "replace"),
            path=self.path.decode("ascii", "replace"),
            event_id="http.failed",
        )
        if self.startedWriting:
            # Headers are out: all that is left is to end the response.
            self._transport().loseConnection()
            return
        self.setHeader(b"server", SERVER)
        send_error(self, 500, "internal error", 0x83)


def answer_later(request: Request, work: Coroutine[Any, Any, None]) -> None:
    """
    Run C{work}, which answers C{request}; if it raises, the failure is
    logged and the request answered with a JSON 500 (or its connection
    closed, if the answer has begun), as when a resource raises.
    """
    d = Deferred.fromCoroutine(work)
    if isinstance(request, BridgeRequest):
        d.addErrback(request.processingFailed)


class _BridgeChannel(HTTPChannel):
    """
    An HTTP/1.1 connection of an HTTP listener, counted by the connection
    limits while it is open.
    """

    MAX_LENGTH = MAX_LINE
    totalHeadersSize = MAX_HEADERS_SIZE
    maxHeaders = MAX_HEADERS
    admission: ConnectionLimits | None = None
    listener = ""

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.admission is not None:
            self.admission.closed(self.listener)
            self.admission = None
        super().connectionLost(reason)

    def lineLengthExceeded(self, line: bytes) -> None:
        # A request line or header over MAX_LINE: as for too many headers.
        self._respondToBadRequestAndDisconnect()


class HTTPSite(Site):
    """
    The protocol factory of an HTTP listener: HTTP/1.1 (not HTTP/2), with
    the limits of the module docstring.

    @ivar context: what the resources work with.
    @ivar max_body: the largest request body accepted.
    """

    _logger = Logger()
    protocol = _BridgeChannel  # type: ignore[assignment]
    requestFactory = BridgeRequest
    noisy = False
    displayTracebacks = False

    def __init__(
        self,
        resource: IResource,
        context: HTTPContext,
        *,
        limits: ConnectionLimits | None = None,
        timeout: float = IDLE_TIMEOUT,
    ) -> None:
        """
        @param resource: the root resource.
        @param context: the listener's context.
        @param limits: the connection limits every listener shares; by
            default this site's own.
        @param timeout: the idle timeout, in seconds.
        """
        super().__init__(resource, timeout=timeout, reactor=context.clock)
        self.context = context
        self.max_body = context.max_body
        self.limits = (
            limits if limits is not None else ConnectionLimits(context.broker.config, context.clock)
        )

    def buildProtocol(self, addr: IAddress | None) -> Any:
        """
        A channel for a new connection, or C{None} (which closes it at once)
        when the connection limits refuse it.
        """
        listener = self.context.listener
        if not self.limits.admit(listener.name, listener.max_connections, getattr(addr, "host", None)):
            return None
        channel = super().buildProtocol(addr)
        channel.admission = self.limits
        channel.listener = listener.name
        return channel

    def acceptableProtocols(self) -> list[bytes]:
        # The channel speaks HTTP/1.1 only (no h2 in TLS ALPN).
        return [b"http/1.1"]

    def startFactory(self) -> None:
        # Requests are logged by log(), not to Twisted's legacy log file.
        pass

    def stopFactory(self) -> None:
        pass

    def log(self, request: Request) -> None:  # type: ignore[override]
        """Log a finished request at debug."""
        self.log_request(request)

    def log_request(self, request: Request) -> None:
        self._logger.debug(
            "{method} {path} {code} {length} bytes from {peer}",
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace"),
            code=request.code,
            length=request.sentLength,
            peer=describe_address(request.getClientAddress()),
            listener=self.context.listener.name,
            event_id="http.request",
        )


@dataclass
class SiteBuilder:
    """
    The resource tree of an HTTP listener being built: L{build_site}
    makes one, mounts the bridge's resources, then hands it to the admin
    API's C{mount_admin} (which calls L{mount} for its own).

    @ivar context: the listener's context.
    @ivar root: the root resource.
    """

    context: HTTPContext
    root: JSONResource = field(default_factory=JSONResource)

    def mount(self, path: str, resource: IResource) -> None:
        """Put C{resource} at C{path} (see L{mount})."""
        mount(self.root, path, resource)


def build_site(context: HTTPContext, *, limits: ConnectionLimits | None = None) -> HTTPSite:
    """
    The factory of a C{protocol: http} listener.

    @param context: the listener's context.
    @param limits: the connection limits every listener shares.
    """
    from .admin import mount_admin
    from .health import HealthResource, ReadyResource, metrics_resource
    from .publish import PublishResource
    from .subscribe import SubscribeResource

    tree = SiteBuilder(context)
    tree.mount("healthz", HealthResource())
    tree.mount("readyz", ReadyResource(context))
    http = context.listener.http
    if http is not None and http.metrics:
        tree.mount("metrics", metrics_resource(context))
    tree.mount("api/v1/publish", PublishResource(context))
    tree.mount("api/v1/subscribe", SubscribeResource(context))
    # The admin API (/api/v1/clients, subscriptions, retained, stats) and
    # the status page (/).
    mount_admin(tree)
    return HTTPSite(tree.root, context, limits=limits)
