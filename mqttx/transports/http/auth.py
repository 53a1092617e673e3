# -*- test-case-name: tests.transports.test_http_auth -*-
"""
HTTP Basic authentication against the broker's users.

The HTTP bridge checks no password itself: a request's C{Authorization:
Basic} credentials become the user name and password of the
L{Origin<mqttx.broker.bridge.Origin>} it publishes or subscribes as, and
the broker's authenticator decides, as for an MQTT CONNECT on this
listener (the password file or HTTP hook, the listener's
C{allow_anonymous}, the authentication failure limit). A request without
credentials is an anonymous client.

Answers: 401 with C{WWW-Authenticate: Basic realm="mqttx"} for missing
credentials where anonymous clients are not allowed, and for wrong ones;
403 for a refusal by the ACLs (or of an admin request by a user who is not
an admin); 429 while the source address is over the authentication
failure limit (0x9F).
"""

from __future__ import annotations

import binascii
import secrets
from base64 import b64decode
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.server import Request

from mqttx.broker.bridge import BridgeClient, BridgeError, Origin
from mqttx.mqtt.reason_codes import ReasonCode, describe
from mqttx.transports.address import describe_address

from .errors import send_error, status_for
from .site import HTTPContext

__all__ = [
    "BadCredentials",
    "Credentials",
    "admin_origin",
    "basic_authenticator",
    "credentials",
    "bridge_credentials",
    "origin_for",
    "refuse",
]

_log = Logger()


class BadCredentials(Exception):
    """An C{Authorization} header that is not well-formed Basic credentials."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """
    The user name and password of a request; both L{None} without an
    C{Authorization} header.
    """

    username: str | None = None
    password: bytes | None = None

    @property
    def anonymous(self) -> bool:
        return self.username is None


def credentials(request: Request) -> Credentials:
    """
    The Basic credentials of C{request} (RFC 7617): C{user:password},
    base64, the user name UTF-8.

    @raise BadCredentials: if the header is there but is not that.
    """
    header = request.getHeader(b"authorization")
    if header is None:
        return Credentials()
    scheme, _, value = header.strip().partition(b" ")
    if scheme.lower() != b"basic":
        raise BadCredentials("only Basic authentication is supported")
    try:
        decoded = b64decode(value.strip(), validate=True)
        username, sep, password = decoded.partition(b":")
        if not sep:
            raise BadCredentials("Basic credentials without a colon")
        return Credentials(username.decode("utf-8"), password)
    except (binascii.Error, UnicodeDecodeError) as e:
        raise BadCredentials("Basic credentials that are not base64 of UTF-8") from e


def bridge_credentials(context: HTTPContext, request: Request) -> Credentials | None:
    """
    The credentials of a publish or subscribe request, or L{None} once it
    is answered: 503 while the broker stops (0x8B), 401 for an
    C{Authorization} header that is not Basic credentials (0x86).
    """
    if context.broker.stopping:
        send_error(request, 503, "the broker is shutting down", ReasonCode.SERVER_SHUTTING_DOWN)
        return None
    try:
        return credentials(request)
    except BadCredentials as e:
        send_error(request, 401, str(e), ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        return None


def peer_of(request: Request) -> str:
    """The client address of C{request}, as log lines name it."""
    return describe_address(request.getClientAddress())


def origin_for(context: HTTPContext, request: Request, creds: Credentials, client_id: str | None = None) -> Origin:
    """
    The origin C{request} acts as: its listener, address and credentials,
    and C{client_id} or a fresh C{http-...} identifier (C{""}: the bridge
    picks one, as for its cached clients).
    """
    return Origin(
        listener=context.listener.name,
        peer=peer_of(request),
        client_id=client_id if client_id is not None else "http-" + secrets.token_hex(8),
        username=creds.username,
        password=creds.password,
    )


def refuse(request: Request, error: BridgeError, creds: Credentials, action: str) -> None:
    """
    Answer C{request} with the HTTP status for the bridge's refusal (see
    L{status_for}), logged at debug: the broker itself logs the refused
    CONNECT (each, as for MQTT clients) or the ACL denial (once per client,
    action and topic), so a client retrying in a loop does not flood the
    log twice.

    @param action: what was refused, for the log (C{"publish"}...).
    """
    code = int(error.reason_code)
    status = status_for(code, anonymous=creds.anonymous)
    _log.debug(
        "HTTP {action} from {peer} as {username!r} refused: {status} ({reason})",
        action=action,
        peer=peer_of(request),
        username=creds.username,
        status=status,
        reason=describe(code),
        event_id="http.refused",
    )
    send_error(request, status, error.message or describe(code), code)


async def admin_origin(context: HTTPContext, request: Request) -> Origin | None:
    """
    Authenticate C{request} as an admin (a user of C{auth.admins}) for the
    admin API: check its credentials with the broker's authenticator and
    return its origin, or answer it (401 without or with wrong credentials,
    403 for a user who is not an admin, 429 over the failure limit, 503
    while the broker stops) and return L{None}.
    """
    try:
        creds = credentials(request)
    except BadCredentials as e:
        send_error(request, 401, str(e), 0x86)
        return None
    if creds.username is None:
        send_error(request, 401, "credentials required", 0x87)
        return None
    origin = origin_for(context, request, creds, "")
    try:
        await _check(context, origin)
    except BridgeError as e:
        refuse(request, e, creds, "admin request")
        return None
    if creds.username not in context.admins:
        _log.info(
            "admin request from {peer} by {username!r}, who is not an admin: 403",
            peer=origin.peer,
            username=creds.username,
            event_id="http.not_admin",
        )
        send_error(request, 403, "admins only", 0x87)
        return None
    return origin


def _check(context: HTTPContext, origin: Origin) -> Deferred[BridgeClient]:
    """
    Whether the broker admits C{origin}: fires with a client admitted for
    its credentials, the one L{Bridge.publish_once} keeps for a while after
    its last use (so a status page polling the admin API does not have its
    password hashed on every request); fails with L{BridgeError}.
    """
    return context.bridge.cached_client(origin)


def basic_authenticator(context: HTTPContext) -> Callable[[Request], Deferred[str | None]]:
    """
    A check of a request's Basic credentials against the broker's users,
    for the admin API (C{mqttx.transports.http.admin.Authenticate}).

    The returned callable fires with the user name, or L{None} for missing,
    malformed or wrong credentials (and a user not allowed in on this
    listener); it fails with L{BridgeError} for the other refusals (0x9F
    over the authentication failure limit: answer with L{status_for}, 429;
    0x8B while the broker stops: 503).
    """

    async def authenticate(request: Request) -> str | None:
        try:
            creds = credentials(request)
        except BadCredentials:
            return None
        if creds.username is None:
            return None
        try:
            await _check(context, origin_for(context, request, creds, ""))
        except BridgeError as e:
            if e.reason_code in _WRONG_CREDENTIALS:
                return None
            raise
        return creds.username

    def run(request: Request) -> Deferred[str | None]:
        return Deferred.fromCoroutine(authenticate(request))

    return run


#: Refusals at admission that mean "wrong credentials" to a user.
_WRONG_CREDENTIALS = frozenset({ReasonCode.BAD_USER_NAME_OR_PASSWORD, ReasonCode.NOT_AUTHORIZED})
