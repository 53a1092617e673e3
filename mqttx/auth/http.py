# -*- test-case-name: tests.auth.test_http -*-
"""
The HTTP authentication hook: an L{IAuthenticator} that asks a web service
whether a client may in, for sites that keep their users elsewhere.

For each CONNECT with a user name the broker POSTs a JSON object to the
configured URL::

    {"client_id": "c1", "username": "alice", "password": "cGFzc3dvcmQ=",
     "listener": "mqtt"}

C{password} is the CONNECT's password bytes in standard base64 (MQTT
passwords are binary data), or C{null} if the client sent none;
C{username} is never C{null} (clients without a user name are anonymous and
decided by C{allow_anonymous}, without a request).

The contract of the answer, and nothing else:

  - status 200 with a JSON object whose C{result} is C{"allow"}: admitted;
  - status 200 with C{{"result": "deny"}}: CONNACK 0x86 (3.1.1: 0x04, bad
    user name or password);
  - anything else (no answer within the timeout, a connection error, any
    other status, 4xx included, a body that is not such an object):
    CONNACK 0x88 (3.1.1: 0x03, server unavailable). A wrong URL then never
    looks like a wrong password, nor counts as a failed authentication.

Allow and deny answers are cached for C{cache_seconds}, keyed by
everything the request carried: client id, user name, listener, and an
HMAC-SHA256 of the password under a key drawn at random when the broker
starts (the plain password is never kept). Concurrent identical requests
share one HTTP call.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectError, ConnectionLost, DNSLookupError
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.protocol import Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode

__all__ = ["HTTPAuthenticator"]

#: A cache key: client id, user name, listener, password HMAC (or None).
_Key = tuple[str, str, str, bytes | None]

#: The largest answer read from the endpoint, in bytes.
MAX_ANSWER_BYTES = 64 * 1024

#: Failure kinds, each logged once until the endpoint answers properly again.
TIMEOUT = "timeout"
CONNECTION = "connection"
STATUS = "status"
MALFORMED = "malformed"


class _Unusable(Exception):
    """The endpoint answered, but not by the contract."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


@implementer(IBodyProducer)
class _BytesProducer:
    """A request body already in memory, written at once."""

    def __init__(self, body: bytes) -> None:
        self._body = body
        self.length = len(body)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._body)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAuthenticator)
class HTTPAuthenticator:
    """
    Asks an HTTP endpoint about each client that sends a user name (see the
    module's docstring for the request and the answers).

    @param agent: makes the requests, such as
        C{twisted.web.client.Agent(reactor)} (HTTPS checked against the
        system's trusted certificates).
    @param clock: times the requests out and the cache entries.
    @param url: the endpoint, C{http://} or C{https://}.
    @param timeout: seconds a request, body included, may take.
    @param cache_seconds: how long an allow or deny answer is reused; 0: never.
    @param cache_size: the most answers kept (the oldest go first); 0: none.
    @param allow_anonymous: the C{auth.allow_anonymous} setting.
    @param listener_anonymous: per listener name, the listener's own
        C{allow_anonymous}, where it has one.
    """

    log = Logger()

    def __init__(
        self,
        agent: IAgent,
        clock: IReactorTime,
        url: str,
        timeout: float = 5.0,
        cache_seconds: float = 60.0,
        cache_size: int = 10_000,
        allow_anonymous: bool = False,
        listener_anonymous: Mapping[str, bool] | None = None,
    ) -> None:
        self._agent = agent
        self._clock = clock
        self.url = url
        self._timeout = timeout
        self._cache_seconds = cache_seconds
        self._cache_size = cache_size
        self._allow_anonymous = allow_anonymous
        self._listener_anonymous = dict(listener_anonymous or {})
        self._secret = secrets.token_bytes(32)
        #: key -> (expiry time, reason code), oldest first.
        self._cache: OrderedDict[_Key, tuple[float, int]] = OrderedDict()
        #: key -> the callers waiting for the request in flight.
        self._pending: dict[_Key, list[Deferred[int]]] = {}
        #: Failure kinds logged since the endpoint last answered properly.
        self._logged: set[str] = set()
        #: HTTP requests made (for tests and curiosity).
        self.requests = 0

    def allows_anonymous(self, listener: str) -> bool:
        """Whether clients without a user name may in on C{listener}."""
        return self._listener_anonymous.get(listener, self._allow_anonymous)

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        if username is None:
            if self.allows_anonymous(listener):
                return succeed(ReasonCode.SUCCESS)
            return succeed(ReasonCode.NOT_AUTHORIZED)
        digest = (
            None if password is None else hmac.new(self._secret, password, hashlib.sha256).digest()
        )
        key: _Key = (client_id, username, listener, digest)
        cached = self._cache.get(key)
        if cached is not None:
            expiry, code = cached
            if self._clock.seconds() < expiry:
                return succeed(code)
            del self._cache[key]
        waiting = self._pending.get(key)
        mine: Deferred[int] = Deferred(lambda d: self._forget(key, d))
        if waiting is not None:
            waiting.append(mine)
            return mine
        self._pending[key] = [mine]
        body = json.dumps(
            {
                "client_id": client_id,
                "username": username,
                "password": None
                if password is None
                else base64.b64encode(password).decode("ascii"),
                "listener": listener,
            }
        ).encode("utf-8")
        self.requests += 1
        asked = Deferred.fromCoroutine(self._ask(body))
        asked.addTimeout(self._timeout, self._clock, onTimeoutCancel=self._timed_out)
        outcome: Deferred[tuple[int, bool]] = asked.addCallbacks(self._answered, self._failed)
        outcome.addCallback(self._settle, key)
        return mine

    def _timed_out(self, result: object, timeout: float) -> Failure:
        # Cancelling a request surfaces in many shapes (CancelledError,
        # ResponseNeverReceived...): whichever, it was the timeout.
        return Failure(_Unusable(TIMEOUT, f"no answer within {timeout:g} seconds"))

    def _forget(self, key: _Key, d: Deferred[int]) -> None:
        # A caller gave up (its connection closed): others may still wait,
        # and the request is bounded by its timeout anyway.
        waiting = self._pending.get(key)
        if waiting is not None and d in waiting:
            waiting.remove(d)

    async def _ask(self, body: bytes) -> bool:
        headers = Headers(
            {b"Content-Type": [b"application/json"], b"Accept": [b"application/json"]}
        )
        response: IResponse = await self._agent.request(
            b"POST", self.url.encode("ascii"), headers, _BytesProducer(body)
        )
        content = await _read_body(response, MAX_ANSWER_BYTES)
        if response.code != 200:
            raise _Unusable(STATUS, f"status {response.code}")
        try:
            answer = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            raise _Unusable(MALFORMED, "the body is not JSON") from None
        result = answer.get("result") if isinstance(answer, dict) else None
        if result == "allow":
            return True
        if result == "deny":
            return False
        raise _Unusable(MALFORMED, 'expected {"result": "allow"} or {"result": "deny"}')

    def _answered(self, allowed: bool) -> tuple[int, bool]:
        if self._logged:
            self._logged.clear()
            self.log.info(
                "authentication endpoint {url} answers again",
                url=self.url,
                event_id="auth.http_recovered",
            )
        code = ReasonCode.SUCCESS if allowed else ReasonCode.BAD_USER_NAME_OR_PASSWORD
        return code, True

    def _failed(self, failure: Failure) -> tuple[int, bool]:
        error = failure.value
        if isinstance(error, _Unusable):
            kind, detail = error.kind, str(error)
        elif isinstance(error, ConnectError | DNSLookupError | ConnectionLost):
            kind, detail = CONNECTION, str(error)
        else:
            kind, detail = CONNECTION, f"{type(error).__name__}: {error}"
        if kind not in self._logged:
            self._logged.add(kind)
            self.log.error(
                "authentication endpoint {url} unusable ({kind}): {detail}; "
                "refusing clients with server unavailable",
                url=self.url,
                kind=kind,
                detail=detail,
                event_id="auth.http_failed",
            )
        return ReasonCode.SERVER_UNAVAILABLE, False

    def _settle(self, outcome: tuple[int, bool], key: _Key) -> None:
        code, cacheable = outcome
        if cacheable and self._cache_seconds > 0 and self._cache_size > 0:
            self._cache[key] = (self._clock.seconds() + self._cache_seconds, code)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        for d in self._pending.pop(key, []):
            d.callback(code)


def build_agent(reactor: Any) -> IAgent:
    """
    The agent of the real broker: HTTP, and HTTPS checked against the
    system's trusted certificates (C{Agent}'s default policy).
    """
    from twisted.web.client import Agent, HTTPConnectionPool

    # Persistent: a busy broker reuses its connections to the endpoint
    # instead of opening one per CONNECT.
    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = 10
    agent: IAgent = Agent(reactor, pool=pool)
    return agent


class _BoundedBody(Protocol):
    """Collects a response body, failing once it passes C{limit} bytes."""

    def __init__(self, limit: int, done: Deferred[bytes]) -> None:
        self._limit = limit
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        if self._done.called:
            return
        self._size += len(data)
        if self._size > self._limit:
            self._done.errback(_Unusable(MALFORMED, f"the answer is over {self._limit} bytes"))
            if self.transport is not None:
                self.transport.stopProducing()  # type: ignore[attr-defined]
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._done.called:
            return
        if reason.check(ResponseDone):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


def _read_body(response: IResponse, limit: int) -> Deferred[bytes]:
    """The body of C{response}, or a failure if it is longer than C{limit} bytes."""
    done: Deferred[bytes] = Deferred()
    response.deliverBody(_BoundedBody(limit, done))
    return done
