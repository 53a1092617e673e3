"""
Tests for L{mqttx.auth.http}: the HTTP authentication hook against a fake
agent and a L{Clock}, its configuration, and how it is built.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer
from zope.interface.verify import verifyObject

from mqttx.auth.http import MAX_ANSWER_BYTES, HTTPAuthenticator
from mqttx.auth.setup import build_authenticator
from mqttx.config import ConfigError, HTTPAuthConfig, ListenerConfig, parse_config
from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode

URL = "http://auth.example:8000/mqtt/auth"
SECRET = b"s3cret \xff"


class _Consumer:
    def __init__(self) -> None:
        self.data = b""

    def write(self, data: bytes) -> None:
        self.data += data


class FakeResponse:
    """An L{IResponse} with a status and a whole body."""

    def __init__(self, code: int, body: bytes) -> None:
        self.code = code
        self.phrase = b"OK" if code == 200 else b"Whatever"
        self._body = body

    def deliverBody(self, protocol: IProtocol) -> None:
        protocol.dataReceived(self._body)
        protocol.connectionLost(Failure(ResponseDone()))


class FakeAgent:
    """Records requests; each returns a Deferred the test fires."""

    def __init__(self) -> None:
        self.requests: list[tuple[bytes, bytes, dict[str, Any], Deferred[Any]]] = []

    def request(
        self,
        method: bytes,
        uri: bytes,
        headers: Headers | None = None,
        bodyProducer: IBodyProducer | None = None,
    ) -> Deferred[Any]:
        consumer = _Consumer()
        assert bodyProducer is not None
        bodyProducer.startProducing(consumer)
        assert headers is not None
        self.assertJSON(headers)
        d: Deferred[Any] = Deferred()
        self.requests.append((method, uri, json.loads(consumer.data), d))
        return d

    @staticmethod
    def assertJSON(headers: Headers) -> None:
        assert headers.getRawHeaders(b"Content-Type") == [b"application/json"]

    def answer(self, index: int, code: int, body: bytes) -> None:
        self.requests[index][3].callback(FakeResponse(code, body))


ALLOW = json.dumps({"result": "allow"}).encode()
DENY = json.dumps({"result": "deny"}).encode()


class HTTPAuthenticatorTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.agent = FakeAgent()
        self.auth = HTTPAuthenticator(
            self.agent,  # type: ignore[arg-type]
            self.clock,
            URL,
            timeout=5.0,
            cache_seconds=60.0,
            cache_size=2,
            allow_anonymous=False,
            listener_anonymous={"local": True},
        )

    def ask(
        self, client_id: str = "c1", username: str | None = "alice", password: bytes | None = SECRET
    ) -> Deferred[int]:
        return self.auth.authenticate(client_id, username, password, "mqtt")

    def test_interface(self) -> None:
        """It is an L{IAuthenticator}."""
        self.assertTrue(verifyObject(IAuthenticator, self.auth))

    def test_request(self) -> None:
        """
        It POSTs JSON with the client id, user name, base64 password and
        listener to the URL.
        """
        d = self.ask()
        self.assertNoResult(d)
        [(method, uri, body, _)] = self.agent.requests
        self.assertEqual((method, uri), (b"POST", URL.encode()))
        self.assertEqual(
            body,
            {
                "client_id": "c1",
                "username": "alice",
                "password": base64.b64encode(SECRET).decode(),
                "listener": "mqtt",
            },
        )

    def test_no_password_sent_as_null(self) -> None:
        """A user name without a password is asked about with C{null}."""
        self.ask(password=None)
        self.assertIsNone(self.agent.requests[0][2]["password"])

    def test_allow(self) -> None:
        """200 C{{"result": "allow"}} admits the client."""
        d = self.ask()
        self.agent.answer(0, 200, ALLOW)
        self.assertEqual(self.successResultOf(d), ReasonCode.SUCCESS)

    def test_deny(self) -> None:
        """200 C{{"result": "deny"}} is 0x86, bad user name or password."""
        d = self.ask()
        self.agent.answer(0, 200, DENY)
        self.assertEqual(self.successResultOf(d), ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_anonymous(self) -> None:
        """
        No user name: no request; admitted where anonymous clients are
        allowed, else 0x87.
        """
        self.assertEqual(
            self.successResultOf(self.auth.authenticate("c", None, None, "local")),
            ReasonCode.SUCCESS,
        )
        self.assertEqual(
            self.successResultOf(self.auth.authenticate("c", None, None, "mqtt")),
            ReasonCode.NOT_AUTHORIZED,
        )
        self.assertEqual(self.agent.requests, [])

    def test_bad_answers_unavailable(self) -> None:
        """
        Other statuses (4xx too), non-JSON bodies and other results refuse
        with 0x88 server unavailable, and are not cached.
        """
        for code, body in [
            (500, ALLOW),
            (404, DENY),
            (200, b"allow"),
            (200, b"[]"),
            (200, b'{"result": "maybe"}'),
            (204, b""),
        ]:
            d = self.ask()
            self.agent.answer(-1, code, body)
            self.assertEqual(self.successResultOf(d), ReasonCode.SERVER_UNAVAILABLE, (code, body))
        self.assertEqual(len(self.agent.requests), 6)

    def test_oversized_answer_unavailable(self) -> None:
        """
        An answer longer than C{MAX_ANSWER_BYTES} is not read to its end:
        0x88 server unavailable, as for any unusable answer; one at the
        limit is read.
        """
        padded = b'{"result": "allow"' + b" " * (MAX_ANSWER_BYTES - len(ALLOW)) + b"}"
        self.assertEqual(len(padded), MAX_ANSWER_BYTES)
        d = self.ask()
        self.agent.answer(-1, 200, padded)
        self.assertEqual(self.successResultOf(d), ReasonCode.SUCCESS)
        d = self.ask(client_id="other")
        self.agent.answer(-1, 200, padded + b" ")
        self.assertEqual(self.successResultOf(d), ReasonCode.SERVER_UNAVAILABLE)

    def test_connection_error(self) -> None:
        """A connection error refuses with 0x88."""
        d = self.ask()
        self.agent.requests[0][3].errback(ConnectionRefusedError())
        self.assertEqual(self.successResultOf(d), ReasonCode.SERVER_UNAVAILABLE)

    def test_timeout(self) -> None:
        """
        No answer within the timeout: the request is cancelled and the
        client refused with 0x88.
        """
        d = self.ask()
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), ReasonCode.SERVER_UNAVAILABLE)
        self.assertTrue(self.agent.requests[0][3].called)  # cancelled

    def test_logged_once_per_kind(self) -> None:
        """
        Each kind of failure is logged once, with the URL and never the
        password, until the endpoint answers properly again.
        """
        with capturedLogs() as events:
            for _ in range(3):
                d = self.ask()
                self.agent.answer(-1, 503, b"")
                self.successResultOf(d)
            d = self.ask()
            self.clock.advance(5)
            d = self.ask()
            self.agent.answer(-1, 200, DENY)
            d = self.ask(password=b"other")
            self.agent.answer(-1, 500, b"")
        failed = [e for e in events if e.get("event_id") == "auth.http_failed"]
        self.assertEqual([e["kind"] for e in failed], ["status", "timeout", "status"])
        self.assertEqual({e["url"] for e in failed}, {URL})
        self.assertEqual(len([e for e in events if e.get("event_id") == "auth.http_recovered"]), 1)
        text = repr(events)
        self.assertNotIn(repr(SECRET), text)
        self.assertNotIn(base64.b64encode(SECRET).decode(), text)

    def test_cache_hit(self) -> None:
        """
        An allow or deny answer is reused for the same client id, user
        name, password and listener for C{cache_seconds}.
        """
        d = self.ask()
        self.agent.answer(0, 200, ALLOW)
        self.successResultOf(d)
        self.clock.advance(59)
        self.assertEqual(self.successResultOf(self.ask()), ReasonCode.SUCCESS)
        self.assertEqual(len(self.agent.requests), 1)
        # Any difference asks again.
        self.ask(password=b"other")
        self.ask(client_id="c2")
        self.auth.authenticate("c1", "alice", SECRET, "local")
        self.assertEqual(len(self.agent.requests), 4)
        # Expired.
        self.clock.advance(1)
        self.assertNoResult(self.ask())
        self.assertEqual(len(self.agent.requests), 5)

    def test_deny_cached(self) -> None:
        """Deny answers are cached too."""
        self.ask()
        self.agent.answer(0, 200, DENY)
        self.assertEqual(self.successResultOf(self.ask()), ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertEqual(len(self.agent.requests), 1)

    def test_cache_bounded(self) -> None:
        """The cache keeps at most C{cache_size} answers, dropping the oldest."""
        for index, cid in enumerate(["a", "b", "c"]):
            self.ask(client_id=cid)
            self.agent.answer(index, 200, ALLOW)
        self.assertEqual(len(self.auth._cache), 2)
        self.ask(client_id="a")
        self.assertEqual(len(self.agent.requests), 4)
        self.successResultOf(self.ask(client_id="c"))

    def test_cache_holds_no_password(self) -> None:
        """The cache keys hold an HMAC of the password, not the password."""
        self.ask()
        self.agent.answer(0, 200, ALLOW)
        [key] = self.auth._cache
        self.assertNotIn(SECRET, key)
        self.assertNotIn(SECRET, repr(key).encode())

    def test_concurrent_share_one_request(self) -> None:
        """
        Identical requests while one is in flight share it; a caller that
        gives up does not disturb the others.
        """
        first, second, third = self.ask(), self.ask(), self.ask()
        self.assertEqual(len(self.agent.requests), 1)
        second.cancel()
        self.failureResultOf(second)
        self.agent.answer(0, 200, ALLOW)
        self.assertEqual(self.successResultOf(first), ReasonCode.SUCCESS)
        self.assertEqual(self.successResultOf(third), ReasonCode.SUCCESS)

    def test_no_cache(self) -> None:
        """With C{cache_seconds: 0} every CONNECT asks."""
        auth = HTTPAuthenticator(self.agent, self.clock, URL, cache_seconds=0)  # type: ignore[arg-type]
        for index in range(2):
            d = auth.authenticate("c", "u", b"p", "mqtt")
            self.agent.answer(index, 200, ALLOW)
            self.successResultOf(d)
        self.assertEqual(len(self.agent.requests), 2)


class BuildTests(SynchronousTestCase):
    def test_built_with_real_agent(self) -> None:
        """
        With C{auth.http}, L{build_authenticator} returns an
        L{HTTPAuthenticator} whose agent connects to the URL's host and port.
        """
        config = parse_config(
            "auth: {allow_anonymous: false, http: {url: 'http://127.0.0.1:8123/auth', timeout: 2}}",
            "x.yaml",
        )
        reactor = MemoryReactorClock()
        listeners = [ListenerConfig("mqtt", "mqtt", "tcp:1883", allow_anonymous=True)]
        auth = build_authenticator(config.auth, listeners, reactor)
        self.assertIsInstance(auth, HTTPAuthenticator)
        self.assertEqual(
            self.successResultOf(auth.authenticate("c", None, None, "mqtt")), ReasonCode.SUCCESS
        )
        d = auth.authenticate("c", "u", b"p", "mqtt")
        [(host, port, *_)] = reactor.tcpClients
        self.assertEqual((host, port), ("127.0.0.1", 8123))
        reactor.advance(2)
        self.assertEqual(self.successResultOf(d), ReasonCode.SERVER_UNAVAILABLE)


class ConfigTests(SynchronousTestCase):
    def test_defaults(self) -> None:
        """Only the URL is required; C{null} and absence mean no hook."""
        config = parse_config("auth: {http: {url: 'https://h/a'}}", "x.yaml")
        self.assertEqual(config.auth.http, HTTPAuthConfig("https://h/a", 5.0, 60.0, 10_000))
        self.assertIsNone(parse_config("auth: {http: null}", "x.yaml").auth.http)
        self.assertIsNone(parse_config("", "x.yaml").auth.http)

    def test_errors(self) -> None:
        """Bad hook settings are refused, naming the key."""
        for text, key in [
            ("auth: {http: {timeout: 1}}", "auth.http.url"),
            ("auth: {http: {url: 'ftp://h/'}}", "auth.http.url"),
            ("auth: {http: {url: 'http://h/a b'}}", "auth.http.url"),
            ("auth: {http: {url: 'http://h', timeout: 0}}", "auth.http.timeout"),
            ("auth: {http: {url: 'http://h', cache_seconds: -1}}", "auth.http.cache_seconds"),
            ("auth: {http: {url: 'http://h', cache_size: 1.5}}", "auth.http.cache_size"),
            ("auth: {http: {url: 'http://h', retries: 1}}", "auth.http.retries"),
            ("auth: {http: 'http://h'}", "auth.http"),
            ("auth: {http: {url: 'http://h'}, password_file: p}", "auth.http"),
        ]:
            with self.assertRaises(ConfigError, msg=text) as caught:
                parse_config(text, "x.yaml")
            self.assertEqual(caught.exception.key, key, text)

    def test_example_documents_every_key(self) -> None:
        """etc/mqttx.yaml names every key of the hook."""
        from tests.test_config import EXAMPLE

        text = EXAMPLE.getContent().decode("utf-8")
        for name in HTTPAuthConfig.__dataclass_fields__:
            self.assertIn(f"  {name}:", text)
        self.assertIn("  http: null", text)
