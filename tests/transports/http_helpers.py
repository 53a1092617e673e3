# -*- test-case-name: tests.transports.test_http_site -*-
"""
Fixtures for the HTTP bridge's unit tests: a real L{Broker} and L{Bridge}
on a L{Clock}, the listener's L{HTTPSite}, and requests written as bytes
to its channels over L{StringTransport}s. No sockets, no sleeps.
"""

from __future__ import annotations

import json
from base64 import b64encode
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import StringTransport
from zope.interface import implementer

from mqttx.auth.ratelimit import AuthFailureLimiter
from mqttx.broker.bridge import Bridge
from mqttx.broker.broker import Broker
from mqttx.config import HTTPConfig, ListenerConfig
from mqttx.interfaces import IAuthenticator, IAuthorizer, IClientAccess
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.http import HTTPContext, HTTPSite, build_site
from tests.helpers import BrokerTestCase

__all__ = ["USERS", "FakeAuthenticator", "FakeAuthorizer", "HTTPTestCase", "Response", "basic", "parse_response"]

#: The users of the fake authenticator, and their passwords.
USERS = {"alice": b"secret", "root": b"toor"}


def basic(username: str, password: bytes) -> bytes:
    """An C{Authorization} header value for Basic credentials."""
    return b"Basic " + b64encode(username.encode("utf-8") + b":" + password)


@implementer(IAuthenticator)
class FakeAuthenticator:
    """L{USERS}, and anonymous clients when C{anonymous} is true."""

    def __init__(self) -> None:
        self.anonymous = True
        self.calls = 0

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        self.calls += 1
        if username is None:
            return succeed(ReasonCode.SUCCESS if self.anonymous else ReasonCode.NOT_AUTHORIZED)
        if USERS.get(username) == password:
            return succeed(ReasonCode.SUCCESS)
        return succeed(ReasonCode.BAD_USER_NAME_OR_PASSWORD)


@implementer(IClientAccess)
class _Access:
    def can_publish(self, topic: str) -> bool:
        return not topic.startswith("secret/")

    def can_subscribe(self, filter: str) -> bool:
        return not filter.startswith("secret/")

    def can_read(self, topic: str) -> bool:
        return not topic.startswith("secret/")


@implementer(IAuthorizer)
class FakeAuthorizer:
    """Nobody may publish to, subscribe to or read C{secret/...}."""

    def for_client(self, client_id: str, username: str | None) -> IClientAccess:
        return _Access()


@dataclass
class Response:
    """An HTTP response read from a transport (its body de-chunked)."""

    status: int
    headers: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    complete: bool = True

    def header(self, name: str) -> str | None:
        values = self.headers.get(name.lower())
        return values[0] if values else None

    def json(self) -> Any:
        return json.loads(self.body)


def parse_response(data: bytes) -> Response:
    """
    The first response in C{data}: its status, headers and body; a chunked
    body is decoded as far as it goes (C{complete} false if it has not
    ended).
    """
    head, sep, rest = data.partition(b"\r\n\r\n")
    assert sep, f"no complete response head in {data[:200]!r}"
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    if headers.get("transfer-encoding") == ["chunked"]:
        body = b""
        complete = False
        while rest:
            size_line, sep, rest = rest.partition(b"\r\n")
            size = int(size_line, 16)
            if size == 0:
                complete = True
                break
            body += rest[:size]
            rest = rest[size + 2 :]
        return Response(status, headers, body, complete)
    length = int(headers.get("content-length", ["0"])[0])
    return Response(status, headers, rest[:length], len(rest) >= length)


class HTTPTestCase(BrokerTestCase):
    """
    A broker with a fake authenticator (L{USERS}; anonymous clients while
    C{self.authenticator.anonymous}), a fake authorizer (no C{secret/...}),
    an authentication failure limit of 3 a minute, its L{Bridge}, and the
    L{HTTPSite} of an C{http} listener named C{"http"}.
    """

    http_config = HTTPConfig(heartbeat_interval=15.0, metrics=True, session_expiry=600)
    admins: frozenset[str] = frozenset({"root"})

    def make_broker(self) -> Broker:
        self.authenticator = FakeAuthenticator()
        return Broker(
            self.config,
            clock=self.clock,
            store=self.store,
            authenticator=self.authenticator,
            authorizer=FakeAuthorizer(),
            auth_limiter=AuthFailureLimiter(self.clock, 3),
        )

    def _build(self) -> None:
        super()._build()
        self.bridge = Bridge(self.broker, self.clock)
        self.listener = ListenerConfig(name="http", protocol="http", endpoint="tcp:0", http=self.http_config)
        self.context = HTTPContext(self.broker, self.bridge, self.listener, self.clock, self.admins, self.store)
        self.site: HTTPSite = build_site(self.context)
        self._http_ports = 50000

    def open_http(self) -> tuple[Any, StringTransport]:
        """A new connection to the site: its channel and transport."""
        self._http_ports += 1
        addr = IPv4Address("TCP", "127.0.0.1", self._http_ports)
        channel = self.site.buildProtocol(addr)
        assert channel is not None, "refused by the connection limits"
        transport = StringTransport(peerAddress=addr, hostAddress=IPv4Address("TCP", "127.0.0.1", 8080))
        channel.makeConnection(transport)
        return channel, transport

    @staticmethod
    def request_bytes(
        method: str,
        target: str,
        body: bytes = b"",
        headers: Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]] = (),
        *,
        auth: tuple[str, bytes] | None = None,
    ) -> bytes:
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        if auth is not None:
            pairs.append(("Authorization", basic(*auth)))
        if body or method in ("POST", "PUT"):
            pairs.append(("Content-Length", str(len(body))))
        lines = [f"{method} {target} HTTP/1.1".encode(), b"Host: localhost"]
        for name, value in pairs:
            lines.append(name.encode() + b": " + (value if isinstance(value, bytes) else value.encode()))
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def request(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        headers: Mapping[str, str | bytes] | Sequence[tuple[str, str | bytes]] = (),
        *,
        auth: tuple[str, bytes] | None = None,
    ) -> Response:
        """Send one request on a new connection and read the response."""
        channel, transport = self.open_http()
        channel.dataReceived(self.request_bytes(method, target, body, headers, auth=auth))
        return parse_response(transport.value())
