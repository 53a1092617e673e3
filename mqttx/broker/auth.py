# -*- test-case-name: tests.broker.test_auth -*-
"""
MQTT 5 enhanced authentication (section 4.12), the broker's side: the
answers an L{IAuthenticationExchange} gives, and L{EnhancedAuthentication},
which runs a method's exchanges for one connection: the one its CONNECT
starts, then each re-authentication.

Which AUTH a client may send when (and that it repeats the CONNECT's
method) is checked before packets get here, by L{mqttx.mqtt.connection}.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from mqttx.mqtt._wire import REASON_CODES
from mqttx.mqtt.packet_type import PacketType
from mqttx.mqtt.packets import Auth, Packet
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from mqttx.interfaces import IAuthenticationExchange, IAuthenticationMethod


@dataclass(frozen=True, slots=True)
class AuthContinue:
    """
    The method needs more from the client: send it C{data} in AUTH 0x18
    (Continue authentication) and give its answer to the next step
    ([MQTT-4.12.0-2]).
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthSuccess:
    """
    The client is authenticated. C{data}, if any, is the method's last word
    to it, sent in the CONNACK (or, after a re-authentication, the AUTH
    0x00) that ends the exchange.
    """

    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class AuthFailure:
    """
    The client is refused with C{reason_code}, normally 0x87 (Not
    authorized) or 0x86 (Bad user name or password): in CONNACK during the
    CONNECT's exchange [MQTT-4.12.0-4], in DISCONNECT after a failed
    re-authentication [MQTT-4.12.1-2] (where codes DISCONNECT cannot carry,
    such as 0x86, become 0x87).

    @raise ValueError: for a code below 0x80, which is not a failure.
    """

    reason_code: int = ReasonCode.NOT_AUTHORIZED

    def __post_init__(self) -> None:
        if self.reason_code < 0x80:
            raise ValueError(
                f"an authentication failure needs a reason code >= 0x80, not {self.reason_code:#x}"
            )


#: What a step of an exchange answers.
AuthOutcome = AuthContinue | AuthSuccess | AuthFailure

_CONNACK_CODES = REASON_CODES[PacketType.CONNACK]
_DISCONNECT_CODES = REASON_CODES[PacketType.DISCONNECT]


def connack_code(outcome: AuthFailure) -> ReasonCode:
    """The CONNACK reason code for a failure: its own if CONNACK may carry it, else 0x87."""
    code = outcome.reason_code
    return ReasonCode(code) if code in _CONNACK_CODES else ReasonCode.NOT_AUTHORIZED


def _disconnect_code(outcome: AuthFailure) -> ReasonCode:
    code = outcome.reason_code
    return ReasonCode(code) if code in _DISCONNECT_CODES else ReasonCode.NOT_AUTHORIZED


class AuthLink(Protocol):
    """What an enhanced authentication needs of the client's connection."""

    #: The name of the listener the client came in on.
    listener: str
    #: The client's address, for logs.
    peer: str

    def send(self, packet: Packet) -> None:
        """Encode and write one packet."""

    def challenge(self, packet: Auth) -> None:
        """Send AUTH 0x18 and read the client's answer."""

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        """Close the connection (MQTT 5: with DISCONNECT); fires once it is gone."""


class EnhancedAuthentication:
    """
    The enhanced authentication of one MQTT 5 connection whose CONNECT
    named a method the broker offers.

    L{authenticate} runs the CONNECT's exchange: each L{AuthContinue} of the
    method goes to the client in AUTH 0x18, each AUTH 0x18 of the client
    (given to L{receive}) to the method's next step, until the method
    answers L{AuthSuccess} or L{AuthFailure}; the broker then sends
    CONNACK. After CONNACK the client may re-authenticate (AUTH 0x19, given
    to L{receive}) as often as it likes: a new exchange of the same method
    runs while the client's other traffic goes on, and ends with AUTH 0x00
    or DISCONNECT ([MQTT-4.12.1-1], [MQTT-4.12.1-2]).

    @ivar method_name: the Authentication Method, as the CONNECT named it.
    @ivar final_data: the Authentication Data of the CONNECT's successful
        exchange, for the CONNACK.
    """

    log = Logger()

    def __init__(
        self, method: IAuthenticationMethod, link: AuthLink, client_id: str, username: str | None
    ) -> None:
        self.method_name: str = method.name
        self.final_data: bytes | None = None
        self._method = method
        self._link = link
        self._client_id = client_id
        self._username = username
        self._exchange: IAuthenticationExchange | None = None
        self._step_result: Deferred[AuthOutcome] | None = None
        self._connecting: Deferred[AuthSuccess | AuthFailure | None] | None = None
        self._abandoned = False

    def authenticate(self, data: bytes | None) -> Deferred[AuthSuccess | AuthFailure | None]:
        """
        Run the exchange of the CONNECT.

        @param data: the CONNECT's Authentication Data.
        @return: a Deferred firing with the method's final answer, or with
            C{None} if the connection closed first (L{abandon}); it fails
            if the method failed.
        """
        connecting: Deferred[AuthSuccess | AuthFailure | None] = Deferred()
        self._connecting = connecting
        self._start(data, False)
        return connecting

    def receive(self, auth: Auth) -> None:
        """
        The client's AUTH, already checked by the connection: 0x18 answers
        the last L{AuthContinue}, 0x19 starts a re-authentication.
        """
        if self._abandoned:
            return
        data = auth.properties.authentication_data
        if auth.reason_code == ReasonCode.RE_AUTHENTICATE:
            self.log.info(
                "client {client_id!r} re-authenticating with {method}",
                client_id=self._client_id,
                method=self.method_name,
                event_id="auth.reauthenticate",
            )
            self._start(data, True)
        elif self._exchange is not None and self._step_result is None:
            self._step(self._exchange, data)

    def abandon(self) -> None:
        """
        The connection is closing: cancel the step in progress (the
        method's Deferred) and send nothing more. A CONNECT's exchange that
        has not ended fires with C{None}.
        """
        if self._abandoned:
            return
        self._abandoned = True
        self._exchange = None
        pending, self._step_result = self._step_result, None
        if pending is not None:
            pending.cancel()
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.callback(None)

    def _start(self, data: bytes | None, reauthentication: bool) -> None:
        try:
            exchange = self._method.start(
                self._client_id, self._username, self._link.listener, reauthentication
            )
        except Exception:
            self._failed(Failure())
            return
        self._exchange = exchange
        self._step(exchange, data)

    def _step(self, exchange: IAuthenticationExchange, data: bytes | None) -> None:
        d: Deferred[AuthOutcome] = maybeDeferred(exchange.step, data)
        self._step_result = d
        d.addCallbacks(self._stepped, self._failed, callbackArgs=(d,), errbackArgs=(d,))

    def _stepped(self, outcome: object, d: Deferred[AuthOutcome] | None = None) -> None:
        if self._abandoned:
            return
        if self._step_result is d:
            self._step_result = None
        name = self.method_name
        if isinstance(outcome, AuthContinue):
            # [MQTT-4.12.0-2] [MQTT-4.12.0-5]
            self._link.challenge(
                Auth(
                    ReasonCode.CONTINUE_AUTHENTICATION,
                    Properties(authentication_method=name, authentication_data=outcome.data),
                )
            )
            return
        self._exchange = None
        connecting, self._connecting = self._connecting, None
        if isinstance(outcome, AuthSuccess):
            if connecting is not None:
                self.final_data = outcome.data
                connecting.callback(outcome)
                return
            self.log.info(
                "client {client_id!r} re-authenticated",
                client_id=self._client_id,
                event_id="auth.reauthenticated",
            )
            self._link.send(
                Auth(
                    ReasonCode.SUCCESS,
                    Properties(authentication_method=name, authentication_data=outcome.data),
                )
            )
        elif isinstance(outcome, AuthFailure):
            if connecting is not None:
                connecting.callback(outcome)
                return
            code = _disconnect_code(outcome)
            self.log.info(
                "client {client_id!r} failed to re-authenticate: {code.name}",
                client_id=self._client_id,
                code=code,
                event_id="auth.reauthentication_failed",
            )
            # [MQTT-4.12.1-2] DISCONNECT with the reason, then close.
            self._link.close(code)
        else:
            self._connecting = connecting
            self._failed(
                Failure(TypeError(f"{self._method!r} answered {outcome!r}, not an AuthOutcome"))
            )

    def _failed(self, failure: Failure, d: Deferred[AuthOutcome] | None = None) -> None:
        if self._abandoned:
            return  # Cancelled, or too late for a connection that is gone.
        if self._step_result is d:
            self._step_result = None
        self._exchange = None
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            # The broker's caller logs it and answers CONNACK 0x80.
            connecting.errback(failure)
            return
        self.log.failure(
            "authentication method {method} failed for {client_id!r}",
            failure,
            method=self.method_name,
            client_id=self._client_id,
            event_id="auth.error",
        )
        self._link.close(ReasonCode.UNSPECIFIED_ERROR)
