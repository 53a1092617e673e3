# -*- test-case-name: tests.integration.test_admin_api -*-
"""
A broker with a password file and an HTTP listener (the bridge's site, with
the admin API and the status page) on loopback, in-process, for the admin
API and status page integration tests.
"""

from __future__ import annotations

import time
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import maybeDeferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import deferLater
from twisted.trial.unittest import FailTest

from mqttx.auth.passwords import PasswordFileAuthenticator, format_line, hash_password
from mqttx.broker.bridge import Bridge
from mqttx.config import HTTPConfig, ListenerConfig
from mqttx.transports.http import HTTPContext, HTTPSite, build_site

from .helpers import HOST, TIMEOUT, IntegrationTestCase, reactor, start_broker

__all__ = ["ADMIN", "USER", "AdminHTTPTestCase"]

#: The admin's user name and password, and those of a user who is not one.
ADMIN = ("admin", "admin-pw")
USER = ("alice", "alice-pw")


class _TrackingSite(HTTPSite):
    """An L{HTTPSite} that remembers its connections, so cleanup can close them."""

    def buildProtocol(self, addr: IPv4Address | None) -> Any:  # type: ignore[override]
        channel = super().buildProtocol(addr)
        if channel is not None:
            self.channels.append(channel)
        return channel

    channels: list[Any]


class AdminHTTPTestCase(IntegrationTestCase):
    """
    A broker whose password file has L{ADMIN} (in C{auth.admins}) and
    L{USER}, anonymous MQTT clients allowed, and an C{http} listener
    (L{http_port}) with the status page.
    """

    http_port: int

    async def setUp(self) -> None:  # type: ignore[override]
        passwd = self.mktemp()
        with open(passwd, "w") as f:
            for user, password in (ADMIN, USER):
                f.write(format_line(user, hash_password(password, iterations=1000, scram=False)) + "\n")
        authenticator = PasswordFileAuthenticator(passwd, allow_anonymous=True)
        self.server = await start_broker(self, authenticator=authenticator)
        self.bridge = Bridge(self.broker)
        listener = ListenerConfig(name="http", protocol="http", endpoint="tcp:0", http=HTTPConfig())
        context = HTTPContext(self.broker, self.bridge, listener, reactor, frozenset({ADMIN[0]}), self.server.store)
        built = build_site(context)
        site = _TrackingSite(built.resource, context, limits=built.limits)
        site.channels = []
        listening: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(site)
        self.http_port = listening.getHost().port  # type: ignore[attr-defined]
        # Cleanups run last first: this one before the broker stops.
        self.addCleanup(self._stop_http, listening, site)

    async def _stop_http(self, listening: IListeningPort, site: _TrackingSite) -> None:
        await maybeDeferred(listening.stopListening)
        self.bridge.close_cached()
        for channel in site.channels:
            if channel.transport is not None and channel.transport.connected:
                channel.transport.abortConnection()
        deadline = time.monotonic() + TIMEOUT
        while any(c.transport is not None and c.transport.connected for c in site.channels):
            if time.monotonic() > deadline:
                raise FailTest("HTTP connections still open after abortConnection")
            await deferLater(reactor, 0.01, lambda: None)

    @property
    def base_url(self) -> str:
        """The HTTP listener's root URL."""
        return f"http://{HOST}:{self.http_port}"
