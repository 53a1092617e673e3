# -*- test-case-name: tests.auth.test_scram -*-
"""
SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced authentication
method (section 4.12), against the SCRAM keys of the password file
(L{mqttx.auth.passwords}): the client proves it knows the password without
sending it, and the server proves it knows the user's keys.

The exchange, each message the Authentication Data of one packet::

    CONNECT (or AUTH 0x19)  client-first   n,,n=USER,r=CNONCE
    AUTH 0x18 (server)      server-first   r=CNONCE+SNONCE,s=SALT,i=ITERATIONS
    AUTH 0x18 (client)      client-final   c=biws,r=CNONCE+SNONCE,p=PROOF
    CONNACK (or AUTH 0x00)  server-final   v=SERVERSIGNATURE

Decisions:

  - The CONNECT must carry a User Name, and C{n=} must be that name: the
    broker's sessions and ACLs go by the CONNECT's User Name, so SCRAM
    proves that name and no other. Otherwise 0x86.
  - Only the GS2 headers C{n,,} and C{y,,} (no channel binding; RFC 5802
    section 6 lets C{y} in when the server offers none): C{p=} (channel
    binding) and C{a=} (authorization identity) are refused with 0x87, as
    is a mandatory extension (C{m=}) and any malformed message, missing
    data, or a client-final whose channel binding or nonce does not match.
  - A wrong proof gets 0x86 (bad user name or password). So do an unknown
    user and a user whose entry has no SCRAM keys (written before them):
    they are answered with a salt derived from a server secret and the
    name and the usual iteration count, and fail at the proof, so the
    answers do not tell which names exist. The secret is random per
    process, so the fake salt of a name changes when the broker restarts.
  - No SASLprep (RFC 4013): names and passwords are used as their UTF-8
    bytes, as is. ASCII passwords are unaffected; a client that normalises
    non-ASCII ones differently fails.

A failed re-authentication ends in DISCONNECT 0x87, which is what
DISCONNECT can carry for 0x86 ([MQTT-4.12.1-2]).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mqttx.auth.passwords import (
    DEFAULT_SCRAM_ITERATIONS,
    SALT_BYTES,
    PasswordEntry,
    PasswordFileAuthenticator,
    ScramKeys,
)
from mqttx.broker.auth import AuthContinue, AuthFailure, AuthOutcome, AuthSuccess
from mqttx.interfaces import IAuthenticationExchange, IAuthenticationMethod, IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode

if TYPE_CHECKING:
    from mqttx.config import AuthConfig

__all__ = [
    "METHOD",
    "ScramSHA256",
    "build_authentication_methods",
    "client_proof",
    "server_signature",
]

#: The MQTT Authentication Method name.
METHOD = "SCRAM-SHA-256"

#: Bytes of randomness in the server's part of the nonce.
NONCE_BYTES = 18

_MALFORMED = AuthFailure(ReasonCode.NOT_AUTHORIZED)
_BAD_CREDENTIALS = AuthFailure(ReasonCode.BAD_USER_NAME_OR_PASSWORD)


class _Malformed(Exception):
    """A SCRAM message that breaks RFC 5802's syntax or what we support."""


def _hmac(key: bytes, message: bytes) -> bytes:
    return hmac.digest(key, message, "sha256")


def client_proof(salted_password: bytes, auth_message: bytes) -> bytes:
    """
    The client's proof (RFC 5802 section 3): C{ClientKey XOR
    HMAC(StoredKey, AuthMessage)}. For clients and tests; the server only
    holds the stored key.
    """
    client_key = _hmac(salted_password, b"Client Key")
    signature = _hmac(hashlib.sha256(client_key).digest(), auth_message)
    return bytes(a ^ b for a, b in zip(client_key, signature, strict=True))


def server_signature(server_key: bytes, auth_message: bytes) -> bytes:
    """C{HMAC(ServerKey, AuthMessage)}, sent to the client as C{v=}."""
    return _hmac(server_key, auth_message)


def _attributes(message: str, names: str) -> list[str]:
    """
    The values of the comma-separated C{x=value} attributes of C{message},
    which must be exactly those named by C{names}, in that order.
    """
    fields = message.split(",")
    if len(fields) != len(names):
        if any(field.startswith("m=") for field in fields):
            raise _Malformed("mandatory extensions are not supported")
        raise _Malformed(f"expected the attributes {','.join(names)}")
    values = []
    for name, field in zip(names, fields, strict=True):
        if field[:2] != name + "=":
            raise _Malformed(f"expected the attribute {name}")
        values.append(field[2:])
    return values


def _unescape_name(text: str) -> str:
    """RFC 5802 C{saslname}: C{=2C} is C{,} and C{=3D} is C{=}; no other C{=}."""
    if not text:
        raise _Malformed("empty user name")
    parts = text.split("=")
    out = [parts[0]]
    for part in parts[1:]:
        if part[:2] == "2C":
            out.append("," + part[2:])
        elif part[:2] == "3D":
            out.append("=" + part[2:])
        else:
            raise _Malformed("bad escape in the user name")
    return "".join(out)


def _check_nonce(nonce: str) -> None:
    # printable = %x21-2B / %x2D-7E (no comma)
    if not nonce or not all("\x21" <= c <= "\x7e" and c != "," for c in nonce):
        raise _Malformed("bad nonce")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _random_nonce() -> str:
    return base64.b64encode(secrets.token_bytes(NONCE_BYTES)).decode("ascii")


@implementer(IAuthenticationMethod)
class ScramSHA256:
    """
    The C{SCRAM-SHA-256} method, against a user table.

    @param lookup: the password file entry of a user name, or C{None};
        L{PasswordFileAuthenticator.entry
        <mqttx.auth.passwords.PasswordFileAuthenticator.entry>}, so that a
        reload of the file changes what SCRAM sees too. It is asked once per
        exchange, at the client-first message.
    @param secret: the key of the fake salts of unknown users; random by
        default.
    @param nonce: makes the server's part of each nonce (printable ASCII
        without commas); random by default (tests pass RFC 7677's).
    """

    name = METHOD

    def __init__(
        self,
        lookup: Callable[[str], PasswordEntry | None],
        secret: bytes | None = None,
        nonce: Callable[[], str] = _random_nonce,
    ) -> None:
        self._lookup = lookup
        self._secret = secrets.token_bytes(32) if secret is None else secret
        self._nonce = nonce

    def start(
        self, client_id: str, username: str | None, listener: str, reauthentication: bool
    ) -> IAuthenticationExchange:
        return _Exchange(self, username)

    def keys_for(self, user: str) -> tuple[ScramKeys, bool]:
        """
        The SCRAM keys to answer C{user} with, and whether they are real.
        A user without keys gets fake ones: a salt derived from the secret
        and the name (the same every time, as a real user's is), the
        default iteration count and random keys no proof matches.
        """
        entry = self._lookup(user)
        if entry is not None and entry.scram is not None:
            return entry.scram, True
        salt = _hmac(self._secret, b"fake salt\x00" + user.encode("utf-8"))[:SALT_BYTES]
        fake = ScramKeys(
            DEFAULT_SCRAM_ITERATIONS, salt, secrets.token_bytes(32), secrets.token_bytes(32)
        )
        return fake, False

    def server_nonce(self) -> str:
        """The server's part of a new nonce."""
        return self._nonce()


@implementer(IAuthenticationExchange)
class _Exchange:
    """One SCRAM exchange: client-first, then client-final."""

    def __init__(self, method: ScramSHA256, username: str | None) -> None:
        self._method = method
        self._username = username
        self._gs2_header = ""
        self._client_first_bare = ""
        self._server_first = ""
        self._nonce = ""
        self._keys: ScramKeys | None = None
        self._real = False

    def step(self, data: bytes | None) -> Deferred[AuthOutcome]:
        # Cheap (a few HMACs; the slow PBKDF2 is the client's): no thread.
        try:
            if data is None:
                raise _Malformed("no Authentication Data")
            try:
                message = data.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed("not UTF-8") from None
            if self._keys is None:
                return succeed(self._client_first(message))
            return succeed(self._client_final(message))
        except _Malformed:
            return succeed(_MALFORMED)

    def _client_first(self, message: str) -> AuthOutcome:
        cbind, comma, rest = message.partition(",")
        authzid, comma2, bare = rest.partition(",")
        if not comma or not comma2:
            raise _Malformed("no GS2 header")
        if cbind not in ("n", "y"):
            raise _Malformed("channel binding is not supported")
        if authzid:
            raise _Malformed("an authorization identity is not supported")
        if bare.startswith("m="):
            raise _Malformed("mandatory extensions are not supported")
        fields = bare.split(",")
        # Extensions after the nonce are allowed and ignored (RFC 5802 5.1).
        if len(fields) < 2:
            raise _Malformed("expected n= and r=")
        name_text, client_nonce = _attributes(",".join(fields[:2]), "nr")
        user = _unescape_name(name_text)
        _check_nonce(client_nonce)
        if self._username is None or user != self._username:
            # SCRAM proves the CONNECT's User Name, and only that.
            return _BAD_CREDENTIALS
        keys, real = self._method.keys_for(user)
        server_nonce = self._method.server_nonce()
        _check_nonce(server_nonce)
        self._gs2_header = f"{cbind},,"
        self._client_first_bare = bare
        self._nonce = client_nonce + server_nonce
        self._keys, self._real = keys, real
        self._server_first = f"r={self._nonce},s={_b64(keys.salt)},i={keys.iterations}"
        return AuthContinue(self._server_first.encode("utf-8"))

    def _client_final(self, message: str) -> AuthOutcome:
        keys = self._keys
        assert keys is not None
        without_proof, _, _ = message.rpartition(",")
        channel_binding, nonce, proof_text = _attributes(message, "crp")
        try:
            binding = base64.b64decode(channel_binding, validate=True)
            proof = base64.b64decode(proof_text, validate=True)
        except (binascii.Error, ValueError):
            raise _Malformed("bad base64") from None
        if binding != self._gs2_header.encode("ascii"):
            raise _Malformed("the channel binding differs from the GS2 header")
        if nonce != self._nonce:
            raise _Malformed("the nonce is not the one sent")
        if len(proof) != len(keys.stored_key):
            raise _Malformed("the proof has the wrong length")
        auth_message = ",".join(
            (self._client_first_bare, self._server_first, without_proof)
        ).encode("utf-8")
        signature = _hmac(keys.stored_key, auth_message)
        client_key = bytes(a ^ b for a, b in zip(proof, signature, strict=True))
        matches = hmac.compare_digest(hashlib.sha256(client_key).digest(), keys.stored_key)
        if not (matches and self._real):
            return _BAD_CREDENTIALS
        verifier = server_signature(keys.server_key, auth_message)
        return AuthSuccess(b"v=" + _b64(verifier).encode("ascii"))


def build_authentication_methods(
    auth: AuthConfig, authenticator: IAuthenticator
) -> list[IAuthenticationMethod]:
    """
    The enhanced authentication methods the C{auth} settings offer:
    C{SCRAM-SHA-256} when C{auth.scram} is true and C{authenticator} is the
    password file's, sharing its user table (a reload changes both).
    """
    if auth.scram and isinstance(authenticator, PasswordFileAuthenticator):
        return [ScramSHA256(authenticator.entry)]
    return []
