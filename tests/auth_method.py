# -*- test-case-name: tests.broker.test_auth -*-
"""
A test-only MQTT 5 enhanced authentication method, for the unit and
integration tests of the AUTH exchange.

C{TEST-CHALLENGE}: the client proves it knows a shared secret without
sending it. Its CONNECT (or AUTH 0x19) carries its user name as
Authentication Data; the server answers each of C{rounds} challenges with a
fresh nonce in AUTH 0x18; the client answers each with
C{sha256(secret + nonce)} (L{answer}). After the last right answer the
server sends C{b"welcome " + user} as final Authentication Data. An unknown
user is refused with 0x86, a wrong answer with 0x87.
"""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mqttx.broker.auth import AuthContinue, AuthFailure, AuthOutcome, AuthSuccess
from mqttx.interfaces import IAuthenticationExchange, IAuthenticationMethod
from mqttx.mqtt.reason_codes import ReasonCode

METHOD = "TEST-CHALLENGE"


def answer(secret: bytes, nonce: bytes) -> bytes:
    """The client's answer to the challenge C{nonce}."""
    return hashlib.sha256(secret + nonce).digest()


@implementer(IAuthenticationMethod)
class ChallengeResponse:
    """
    The C{TEST-CHALLENGE} method.

    @param users: each user name's secret.
    @param rounds: how many challenges before success (0: the CONNECT's
        Authentication Data alone lets a known user in).
    @param held: whether each step waits until the test calls L{release}
        (a slow method, as one hashing passwords in a thread would be).
    @param name: the method's name, if not C{TEST-CHALLENGE}.

    @ivar started: the arguments of every exchange started, in order.
    @ivar waiting: the steps held back, oldest first.
    @ivar cancelled: how many held steps the broker cancelled.
    """

    def __init__(
        self, users: dict[bytes, bytes], rounds: int = 1, held: bool = False, name: str = METHOD
    ) -> None:
        self.name = name
        self.users = users
        self.rounds = rounds
        self.held = held
        self.started: list[tuple[str, str | None, str, bool]] = []
        self.waiting: list[tuple[Deferred[AuthOutcome], AuthOutcome]] = []
        self.cancelled = 0
        self._nonces = 0

    def start(
        self, client_id: str, username: str | None, listener: str, reauthentication: bool
    ) -> IAuthenticationExchange:
        self.started.append((client_id, username, listener, reauthentication))
        return _Exchange(self)

    def nonce(self) -> bytes:
        """A fresh challenge."""
        self._nonces += 1
        return b"nonce-%d" % self._nonces

    def answer_later(self, outcome: AuthOutcome) -> Deferred[AuthOutcome]:
        """The Deferred of a step, fired now or, if L{held}, by L{release}."""
        if not self.held:
            return succeed(outcome)

        def cancel(d: Deferred[AuthOutcome]) -> None:
            # Deferred then fails with CancelledError.
            self.cancelled += 1
            self.waiting = [(w, o) for w, o in self.waiting if w is not d]

        d: Deferred[AuthOutcome] = Deferred(cancel)
        self.waiting.append((d, outcome))
        return d

    def release(self) -> None:
        """Answer the oldest held step."""
        d, outcome = self.waiting.pop(0)
        d.callback(outcome)


@implementer(IAuthenticationExchange)
class _Exchange:
    def __init__(self, method: ChallengeResponse) -> None:
        self._method = method
        self._user: bytes | None = None
        self._nonce = b""
        self._answered = 0

    def step(self, data: bytes | None) -> Deferred[AuthOutcome]:
        method = self._method
        outcome: AuthOutcome
        if self._user is None:
            if data is None or data not in method.users:
                outcome = AuthFailure(ReasonCode.BAD_USER_NAME_OR_PASSWORD)
            else:
                self._user = data
                outcome = self._next()
        elif data != answer(method.users[self._user], self._nonce):
            outcome = AuthFailure(ReasonCode.NOT_AUTHORIZED)
        else:
            self._answered += 1
            outcome = self._next()
        return method.answer_later(outcome)

    def _next(self) -> AuthOutcome:
        assert self._user is not None
        if self._answered == self._method.rounds:
            return AuthSuccess(b"welcome " + self._user)
        self._nonce = self._method.nonce()
        return AuthContinue(self._nonce)
