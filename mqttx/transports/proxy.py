# -*- test-case-name: tests.transports.test_proxy -*-
"""
The PROXY protocol (versions 1 and 2) for listeners behind a load balancer.

A listener whose endpoint is C{haproxy:ENDPOINT} (Twisted's syntax, as in
C{haproxy:tcp:1883:interface=10.0.0.5}) listens on C{ENDPOINT} and expects
every connection to start with the header the balancer sends (HAProxy's
C{send-proxy} or C{send-proxy-v2}), which names the client's address.

Twisted's own C{haproxy:} wrapper hands the connection to the protocol
before the header is read, so everything that looks at the peer as the
connection starts (the per-address connection rate, the peer in logs, the
WebSocket handshake) would see the balancer. L{ProxyHeaderFactory} reads
the header first and only then builds the listener's protocol (with its
TLS, if any) with the client's address: C{buildProtocol(addr)},
C{transport.getPeer()} and C{getHost()} all give what the header says. The
header is parsed by Twisted's parsers; their results are checked here
(addresses and ports), so a bad header is one log line and a closed
connection, never a traceback.

The listener must be reachable only from the balancer: whoever can connect
to it chooses the address the broker believes.
"""

from __future__ import annotations

import ipaddress

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IProtocolFactory,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.haproxy._exceptions import (
    InvalidNetworkProtocol,
    InvalidProxyHeader,
    MissingAddressData,
)
from twisted.protocols.haproxy._info import ProxyInfo
from twisted.protocols.haproxy._v1parser import V1Parser
from twisted.protocols.haproxy._v2parser import V2Parser
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from zope.interface import directlyProvides, providedBy

from mqttx.transports.address import describe_address

__all__ = ["HEADER_TIMEOUT", "ProxyHeaderFactory", "ProxyHeaderProtocol", "proxied_endpoint"]

#: Seconds a connection has to send its complete PROXY header. A balancer
#: sends it at once, before anything of the client's.
HEADER_TIMEOUT = 5.0

_V1_START = V1Parser.PROXYSTR + b" "
_V2_SIGNATURE = V2Parser.PREFIX


def proxied_endpoint(description: str) -> str | None:
    """
    The endpoint a C{haproxy:} endpoint description wraps (C{"tcp:1883"}
    for C{"haproxy:tcp:1883"}), or L{None} if C{description} is not one.
    """
    kind, colon, wrapped = description.partition(":")
    return wrapped if colon and kind.lower() == "haproxy" else None


class _V1Parser(V1Parser):
    """Twisted's, which also takes C{PROXY UNKNOWN} with nothing after it (as HAProxy sends it)."""

    @classmethod
    def parse(cls, line: bytes) -> ProxyInfo:
        if line == b"PROXY UNKNOWN":
            return ProxyInfo(line, None, None)
        return super().parse(line)


def _parser_for(head: bytes) -> V1Parser | V2Parser | None:
    """
    The parser for a header starting with C{head}, or L{None} while too few
    bytes arrived to tell.

    @raises InvalidProxyHeader: C{head} starts neither version's header.
    """
    if head.startswith(_V2_SIGNATURE):
        if len(head) < 16:
            return None
        if head[12] & 0xF0 != 0x20:
            raise InvalidProxyHeader("unknown PROXY protocol version")
        return V2Parser()
    if head.startswith(_V1_START):
        return _V1Parser()
    if _V2_SIGNATURE.startswith(head) or _V1_START.startswith(head):
        return None
    raise InvalidProxyHeader("no PROXY header")


def _checked(info: ProxyInfo) -> ProxyInfo:
    """
    C{info} with its addresses checked and in their usual text form:
    version 1 headers carry them as text, which Twisted's parser takes as
    it comes, and its version 2 parser writes IPv6 addresses uncompressed
    (one client would have two names in logs and limits).

    @raises ValueError: an address or port is not one.
    """

    def checked(address: IAddress | None) -> IAddress | None:
        # (object: mypy takes an IAddress for no IPv4Address.)
        ip: object = address
        if isinstance(ip, IPv4Address | IPv6Address):
            parse = ipaddress.IPv4Address if isinstance(ip, IPv4Address) else ipaddress.IPv6Address
            if not 0 <= ip.port <= 0xFFFF:
                raise ValueError(f"port {ip.port} out of range")
            return type(ip)(ip.type, str(parse(ip.host)), ip.port)
        return address

    return ProxyInfo(info.header, checked(info.source), checked(info.destination))


def _reason(error: Exception) -> str:
    """Why a header is refused, for the log (Twisted's errors have no message)."""
    if str(error):
        return str(error)
    if isinstance(error, InvalidNetworkProtocol):
        return "unknown network protocol"
    if isinstance(error, MissingAddressData):
        return "incomplete addresses"
    return "malformed header"


class ProxyHeaderProtocol(ProtocolWrapper):
    """
    Reads the PROXY header of one connection, then is the transport of the
    protocol the wrapped factory builds for it.

    Until the header is complete the wrapped protocol is a placeholder that
    does nothing: the listener's protocol does not exist yet.
    """

    log = Logger()
    factory: ProxyHeaderFactory

    def __init__(self, factory: ProxyHeaderFactory) -> None:
        super().__init__(factory, Protocol())
        self._info: ProxyInfo | None = None
        self._head = b""
        self._parser: V1Parser | V2Parser | None = None
        self._timer: IDelayedCall | None = None

    def makeConnection(self, transport: ITransport) -> None:
        directlyProvides(self, providedBy(transport))
        Protocol.makeConnection(self, transport)
        self.factory.registerProtocol(self)
        self._timer = self.factory.clock.callLater(self.factory.timeout, self._timed_out)

    def dataReceived(self, data: bytes) -> None:
        if self._info is not None:
            self.wrappedProtocol.dataReceived(data)
        elif not self.disconnecting:
            self._read_header(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_timer()
        super().connectionLost(reason)

    def getPeer(self) -> IAddress:
        """The client's address, as the header gives it (else the balancer's)."""
        info = self._info
        if info is not None and info.source is not None:
            return info.source
        assert self.transport is not None
        return self.transport.getPeer()

    def getHost(self) -> IAddress:
        """The address the client connected to, as the header gives it."""
        info = self._info
        if info is not None and info.destination is not None:
            return info.destination
        assert self.transport is not None
        return self.transport.getHost()

    def _read_header(self, data: bytes) -> None:
        try:
            remaining = self._parse(data)
        except (InvalidProxyHeader, ValueError) as e:
            # ValueError: Twisted's version 1 parser lets bad ports and
            # non-ASCII addresses through as such.
            self._stop_timer()
            self.log.warn(
                "bad PROXY header from {peer} on {listener}: {reason}; closed",
                peer=describe_address(self.getPeer()),
                listener=self.factory.listener,
                reason=_reason(e),
                event_id="proxy.bad_header",
            )
            self.loseConnection()
            return
        if remaining is None:
            return
        self._stop_timer()
        # Built now, with the client's address: the connection limits count
        # the client, not the balancer (PROXY UNKNOWN and the v2 LOCAL
        # command name none, and leave the balancer's).
        protocol = self.factory.wrappedFactory.buildProtocol(self.getPeer())
        if protocol is None:
            # Refused; the factory logged why.
            self.loseConnection()
            return
        self.wrappedProtocol = protocol
        protocol.makeConnection(self)
        if remaining and not self.disconnecting:
            protocol.dataReceived(remaining)

    def _parse(self, data: bytes) -> bytes | None:
        """
        Feed the header's parser; what follows the header once it is
        complete, else L{None}.
        """
        parser = self._parser
        if parser is None:
            head = self._head + data
            parser = _parser_for(head)
            if parser is None:
                self._head = head
                return None
            self._parser, self._head, data = parser, b"", head
        info, remaining = parser.feed(data)
        if info is None or remaining is None:
            return None
        self._info = _checked(info)
        return remaining

    def _timed_out(self) -> None:
        self._timer = None
        self.log.info(
            "no PROXY header from {peer} on {listener} within {seconds} s; closed",
            peer=describe_address(self.getPeer()),
            listener=self.factory.listener,
            seconds=self.factory.timeout,
            event_id="proxy.header_timeout",
        )
        self.loseConnection()

    def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()


class ProxyHeaderFactory(WrappingFactory[ProxyHeaderProtocol]):
    """
    Makes a listener read the PROXY header of each connection before its
    protocol (and its TLS, if it has any) is built.

    @ivar listener: the listener's name, for logs.
    @ivar clock: keeps L{timeout}.
    @ivar timeout: seconds a connection has to send its complete header.
    """

    noisy = False

    def __init__(
        self,
        wrappedFactory: IProtocolFactory,
        clock: IReactorTime,
        listener: str,
        timeout: float = HEADER_TIMEOUT,
    ) -> None:
        super().__init__(wrappedFactory)
        self.clock = clock
        self.listener = listener
        self.timeout = timeout

    def buildProtocol(self, addr: IAddress | None) -> ProxyHeaderProtocol:
        return ProxyHeaderProtocol(self)

    def logPrefix(self) -> str:
        return f"{super().logPrefix()} (PROXY)"
