# -*- test-case-name: tests.auth.test_setup -*-
"""
Building the authentication parts from the configuration.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.auth.passwords import PasswordFileAuthenticator
from mqttx.auth.ratelimit import AuthFailureLimiter
from mqttx.interfaces import IAuthenticator

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mqttx.config import AuthConfig, ListenerConfig

__all__ = ["build_authenticator", "build_auth_limiter"]


def build_authenticator(
    auth: AuthConfig, listeners: Iterable[ListenerConfig], reactor: Any
) -> IAuthenticator:
    """
    The authenticator the C{auth} settings ask for: an
    L{HTTPAuthenticator<mqttx.auth.http.HTTPAuthenticator>} when
    C{auth.http} is set, a L{PasswordFileAuthenticator} that hashes in the
    reactor's thread pool when C{auth.password_file} is, else
    L{NoUserDatabase}.

    @param auth: the C{auth} section.
    @param listeners: the listeners, for their own C{allow_anonymous}.
    @param reactor: the reactor whose thread pool runs the password hashes.
    @raise mqttx.auth.passwords.PasswordFileError: if the password file
        cannot be read or has errors.
    """
    per_listener = {
        listener.name: listener.allow_anonymous
        for listener in listeners
        if listener.allow_anonymous is not None
    }
    if auth.http is not None:
        # Imported here: twisted.web.client is only loaded when the hook is used.
        from mqttx.auth.http import HTTPAuthenticator, build_agent

        return HTTPAuthenticator(
            build_agent(reactor),
            reactor,
            auth.http.url,
            timeout=auth.http.timeout,
            cache_seconds=auth.http.cache_seconds,
            cache_size=auth.http.cache_size,
            allow_anonymous=auth.allow_anonymous,
            listener_anonymous=per_listener,
        )
    if auth.password_file is None:
        return NoUserDatabase(auth.allow_anonymous, per_listener)

    def run_in_thread(f: Callable[..., Any], *args: object) -> Deferred[Any]:
        # The reactor's pool (started and stopped with the reactor, at
        # most 10 threads): the hash releases the GIL, so verifications
        # run in parallel while the reactor serves other clients.
        return deferToThreadPool(reactor, reactor.getThreadPool(), f, *args)

    return PasswordFileAuthenticator(
        auth.password_file, auth.allow_anonymous, per_listener, run_in_thread
    )


def build_auth_limiter(auth: AuthConfig, clock: Any) -> AuthFailureLimiter | None:
    """
    The limiter of failed authentications per source address, or L{None}
    if C{auth.max_failures_per_minute} is 0.
    """
    if not auth.max_failures_per_minute:
        return None
    return AuthFailureLimiter(clock, auth.max_failures_per_minute, 60.0)
