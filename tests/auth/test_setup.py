# -*- test-case-name: tests.auth.test_setup -*-
"""
Tests for L{mqttx.auth.setup}, and for the service built with a password
file.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.auth.passwords import PasswordFileAuthenticator, format_line, hash_password
from mqttx.auth.ratelimit import AuthFailureLimiter
from mqttx.auth.setup import build_auth_limiter, build_authenticator
from mqttx.config import AuthConfig, ListenerConfig
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.service import MQTTXService, Options, makeService

LISTENERS = (
    ListenerConfig("public", "mqtt", "tcp:0"),
    ListenerConfig("local", "mqtt", "tcp:0", allow_anonymous=True),
)


class InlinePool:
    """A thread pool that runs each call at once, and counts them."""

    def __init__(self) -> None:
        self.calls = 0

    def callInThreadWithCallback(
        self,
        on_result: Callable[[bool, object], None],
        f: Callable[..., Any],
        *args: Any,
        **kw: Any,
    ) -> None:
        self.calls += 1
        on_result(True, f(*args, **kw))


class PoolReactor(MemoryReactorClock):
    """A memory reactor with an inline thread pool."""

    def __init__(self) -> None:
        super().__init__()
        self.pool = InlinePool()

    def getThreadPool(self) -> InlinePool:
        return self.pool

    def callFromThread(self, f: Callable[..., Any], *args: Any, **kw: Any) -> None:
        f(*args, **kw)


def password_file(case: SynchronousTestCase, *lines: str) -> str:
    path: str = case.mktemp()
    with open(path, "w") as f:
        f.write("".join(f"{line}\n" for line in lines))
    return path


class BuildTests(SynchronousTestCase):
    """
    L{build_authenticator} and L{build_auth_limiter}.
    """

    def test_no_password_file(self) -> None:
        """
        Without a password file: L{NoUserDatabase}, with the listeners' own
        C{allow_anonymous}.
        """
        auth = build_authenticator(AuthConfig(allow_anonymous=False), LISTENERS, PoolReactor())
        self.assertIsInstance(auth, NoUserDatabase)
        for listener, code in [("public", ReasonCode.NOT_AUTHORIZED), ("local", 0)]:
            self.assertEqual(
                self.successResultOf(auth.authenticate("c", None, None, listener)), code
            )

    def test_password_file_hashes_in_thread_pool(self) -> None:
        """
        With a password file: a L{PasswordFileAuthenticator} that verifies
        in the reactor's thread pool.
        """
        path = password_file(self, format_line("alice", hash_password("w", 1000)))
        reactor = PoolReactor()
        auth = build_authenticator(
            AuthConfig(allow_anonymous=False, password_file=path), LISTENERS, reactor
        )
        assert isinstance(auth, PasswordFileAuthenticator)
        self.assertEqual(self.successResultOf(auth.authenticate("c", "alice", b"w", "public")), 0)
        self.assertEqual(reactor.pool.calls, 1)
        self.assertEqual(
            self.successResultOf(auth.authenticate("c", None, None, "local")), ReasonCode.SUCCESS
        )

    def test_limiter(self) -> None:
        """
        The limiter allows C{max_failures_per_minute} per minute; 0: none.
        """
        limiter = build_auth_limiter(AuthConfig(max_failures_per_minute=4), MemoryReactorClock())
        assert isinstance(limiter, AuthFailureLimiter)
        self.assertEqual((limiter.max_failures, limiter.window), (4, 60.0))
        self.assertIsNone(
            build_auth_limiter(AuthConfig(max_failures_per_minute=0), MemoryReactorClock())
        )


class ServiceTests(SynchronousTestCase):
    """
    The service with C{auth.password_file}.
    """

    def options(self, auth: str) -> Options:
        path = FilePath(self.mktemp())
        path.setContent(
            (
                "listeners: [{name: mqtt, protocol: mqtt, endpoint: 'tcp:0'}]\n"
                "persistence: {backend: memory}\n"
                f"auth: {auth}\n"
            ).encode()
        )
        options = Options()
        options.parseOptions(["--config", path.path])
        return options

    def test_password_file_used(self) -> None:
        """
        The broker checks clients against the file; the service keeps the
        authenticator for reloads.
        """
        path = password_file(self, format_line("alice", hash_password("w", 1000)))
        service = makeService(self.options(f"{{password_file: '{path}'}}"), MemoryReactorClock())
        assert isinstance(service, MQTTXService)
        assert isinstance(service.password_file, PasswordFileAuthenticator)
        self.assertEqual(service.password_file.users, frozenset({"alice"}))
        self.assertIs(service.broker.admission.authenticator, service.password_file)  # type: ignore[attr-defined]

    def test_bad_password_file(self) -> None:
        """
        A password file with a bad line, or none at the path, stops the
        start with L{SystemExit} and one line naming the file (and line),
        never the hash.
        """
        bad = password_file(self, "alice:$pbkdf2-sha512$1000$c2FsdA$c2VjcmV0LWhhc2g")
        for path, fragment in [(bad, f"{bad}, line 1: "), (self.mktemp(), "cannot read")]:
            with self.assertRaises(SystemExit) as caught:
                makeService(self.options(f"{{password_file: '{path}'}}"), MemoryReactorClock())
            message = caught.exception.code
            assert isinstance(message, str)
            self.assertTrue(message.startswith("mqttx: "), message)
            self.assertIn(fragment, message)
            self.assertNotIn("\n", message)
            self.assertNotIn("c2VjcmV0LWhhc2g", message)
