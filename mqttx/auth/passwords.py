# -*- test-case-name: tests.auth.test_passwords -*-
"""
The password file: users and their salted, slow password hashes, and the
L{IAuthenticator} that checks CONNECT credentials against it.

The file holds one user per line::

    NAME:$pbkdf2-sha512$ITERATIONS$SALT$HASH
    NAME:$pbkdf2-sha512$ITERATIONS$SALT$HASH$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY

C{NAME} is the MQTT user name (anything but C{:} and line breaks);
C{ITERATIONS} the PBKDF2 iteration count, in decimal; C{SALT} and C{HASH}
the salt (16 random bytes) and the 64-byte PBKDF2-HMAC-SHA512 output, in
standard base64 without padding. Empty lines and lines starting with C{#}
are ignored. The iteration count is stored with each entry, so the default
(L{DEFAULT_ITERATIONS}) can grow without invalidating existing entries.
C{mqttx passwd} writes the file (see L{mqttx.cli}).

The optional C{$scram-sha-256$...} part holds the keys SCRAM-SHA-256
(RFC 5802 / RFC 7677, L{mqttx.auth.scram}) verifies a client with, derived
from the same password: its PBKDF2-HMAC-SHA256 iteration count and salt,
and C{StoredKey} = SHA-256(HMAC(SaltedPassword, "Client Key")) and
C{ServerKey} = HMAC(SaltedPassword, "Server Key"), 32 bytes each, in the
same base64. Neither the password nor SaltedPassword is stored. Entries
without it (written before SCRAM) still verify CONNECT passwords; their
users cannot use SCRAM until their password is set again.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from zope.interface import implementer

from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode

__all__ = [
    "DEFAULT_ITERATIONS",
    "PasswordEntry",
    "PasswordFileAuthenticator",
    "PasswordFileError",
    "ScramKeys",
    "scram_keys",
    "format_line",
    "hash_password",
    "parse_password_file",
    "read_password_file",
    "verify_password",
    "write_password_file",
]

#: The scheme name in a hash.
SCHEME = "pbkdf2-sha512"
#: PBKDF2 iterations of new hashes (OWASP's 2023 figure for HMAC-SHA512).
DEFAULT_ITERATIONS = 210_000
#: Iterations accepted in a file: fewer is not a slow hash, more a
#: denial of service against the broker.
MIN_ITERATIONS = 1_000
MAX_ITERATIONS = 10_000_000
SALT_BYTES = 16
HASH_BYTES = 64
#: The scheme name of the SCRAM-SHA-256 keys.
SCRAM_SCHEME = "scram-sha-256"
#: PBKDF2-HMAC-SHA256 iterations of new SCRAM keys: RFC 7677's minimum,
#: as common clients (and small devices, which compute it too) expect.
DEFAULT_SCRAM_ITERATIONS = 4096
SCRAM_KEY_BYTES = 32

_T = TypeVar("_T")

#: Runs a function in a thread: C{run(f, *args)} returns a Deferred of its result.
ThreadRunner = Callable[..., "Deferred[Any]"]


class PasswordFileError(Exception):
    """
    A password file that cannot be read or has a bad line. The message
    names the file (and line number) and never contains a hash.
    """


@dataclass(frozen=True, slots=True)
class ScramKeys:
    """
    A user's SCRAM-SHA-256 verifier (RFC 5802 section 3).

    @ivar iterations: the PBKDF2-HMAC-SHA256 iteration count.
    @ivar salt: the salt.
    @ivar stored_key: C{H(HMAC(SaltedPassword, "Client Key"))}.
    @ivar server_key: C{HMAC(SaltedPassword, "Server Key")}.
    """

    iterations: int
    salt: bytes
    stored_key: bytes
    server_key: bytes

    def encode(self) -> str:
        """The C{$scram-sha-256$...} form of the file."""
        return (
            f"${SCRAM_SCHEME}${self.iterations}${_b64(self.salt)}"
            f"${_b64(self.stored_key)}${_b64(self.server_key)}"
        )


@dataclass(frozen=True, slots=True)
class PasswordEntry:
    """
    One user's hashed password.

    @ivar iterations: the PBKDF2 iteration count.
    @ivar salt: the salt.
    @ivar digest: the PBKDF2-HMAC-SHA512 output.
    @ivar scram: the user's SCRAM-SHA-256 keys, if the file has them.
    """

    iterations: int
    salt: bytes
    digest: bytes
    scram: ScramKeys | None = None

    def encode(self) -> str:
        """The C{$pbkdf2-sha512$...[$scram-sha-256$...]} form of the file."""
        text = f"${SCHEME}${self.iterations}${_b64(self.salt)}${_b64(self.digest)}"
        return text if self.scram is None else text + self.scram.encode()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _pbkdf2(password: bytes, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", password, salt, iterations, HASH_BYTES)


def scram_keys(
    password: bytes | str, iterations: int = DEFAULT_SCRAM_ITERATIONS, salt: bytes | None = None
) -> ScramKeys:
    """
    Derive a password's SCRAM-SHA-256 keys (RFC 5802 section 3).

    @param password: the password (a C{str} is encoded as UTF-8, as is; no
        SASLprep).
    @param iterations: the PBKDF2-HMAC-SHA256 iteration count.
    @param salt: the salt; random by default (tests pass one).
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    salted = hashlib.pbkdf2_hmac("sha256", password, salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    return ScramKeys(
        iterations,
        salt,
        hashlib.sha256(client_key).digest(),
        hmac.digest(salted, b"Server Key", "sha256"),
    )


def hash_password(
    password: bytes | str,
    iterations: int = DEFAULT_ITERATIONS,
    salt: bytes | None = None,
    scram: bool = True,
) -> PasswordEntry:
    """
    Hash a password with a new random salt.

    @param password: the password (a C{str} is encoded as UTF-8, as MQTT
        clients send it).
    @param iterations: the PBKDF2 iteration count.
    @param salt: the salt; random by default (tests pass one).
    @param scram: whether to derive SCRAM-SHA-256 keys too (with their own
        random salt and L{DEFAULT_SCRAM_ITERATIONS}).
    @return: the entry to store.
    """
    if isinstance(password, str):
        password = password.encode("utf-8")
    if salt is None:
        salt = secrets.token_bytes(SALT_BYTES)
    keys = scram_keys(password) if scram else None
    return PasswordEntry(iterations, salt, _pbkdf2(password, salt, iterations), keys)


def verify_password(entry: PasswordEntry, password: bytes) -> bool:
    """
    Whether C{password} hashes to C{entry}'s digest; compared in constant
    time.
    """
    return hmac.compare_digest(_pbkdf2(password, entry.salt, entry.iterations), entry.digest)


def _iterations(text: str, least: int) -> int:
    if not text.isdigit() or not text.isascii():
        raise ValueError("the iteration count is not a number")
    iterations = int(text)
    if not least <= iterations <= MAX_ITERATIONS:
        raise ValueError(f"the iteration count must be between {least} and {MAX_ITERATIONS}")
    return iterations


def _decode(parts: list[str], what: str) -> list[bytes]:
    try:
        decoded = [_unb64(part) for part in parts]
    except (binascii.Error, ValueError):
        raise ValueError(f"the {what} is not valid base64") from None
    if not decoded[0]:
        raise ValueError("the salt is empty")
    return decoded


def parse_hash(text: str) -> PasswordEntry:
    """
    Parse the C{$pbkdf2-sha512$ITERATIONS$SALT$HASH} form, optionally
    followed by C{$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY}.

    @raise ValueError: with a message that does not repeat C{text}.
    """
    parts = text.split("$")
    if len(parts) not in (5, 10) or parts[0] != "":
        raise ValueError(
            f"expected NAME:${SCHEME}$ITERATIONS$SALT$HASH"
            f"[${SCRAM_SCHEME}$ITERATIONS$SALT$STOREDKEY$SERVERKEY]"
        )
    if parts[1] != SCHEME:
        raise ValueError(f"unknown hash scheme (expected {SCHEME})")
    iterations = _iterations(parts[2], MIN_ITERATIONS)
    salt, digest = _decode(parts[3:5], "salt or hash")
    if len(digest) != HASH_BYTES:
        raise ValueError(f"the hash is not {HASH_BYTES} bytes long")
    keys = None
    if len(parts) == 10:
        if parts[5] != SCRAM_SCHEME:
            raise ValueError(f"unknown scheme after the hash (expected {SCRAM_SCHEME})")
        # RFC 7677 section 4: at least 4096.
        scram_iterations = _iterations(parts[6], DEFAULT_SCRAM_ITERATIONS)
        scram_salt, stored, server = _decode(parts[7:10], "SCRAM salt or key")
        if len(stored) != SCRAM_KEY_BYTES or len(server) != SCRAM_KEY_BYTES:
            raise ValueError(f"a SCRAM key is not {SCRAM_KEY_BYTES} bytes long")
        keys = ScramKeys(scram_iterations, scram_salt, stored, server)
    return PasswordEntry(iterations, salt, digest, keys)


def format_line(user: str, entry: PasswordEntry) -> str:
    """One line of the file, without its line break."""
    return f"{user}:{entry.encode()}"


def check_user_name(user: str) -> None:
    """
    @raise ValueError: if C{user} cannot be a name in the file.
    """
    if not user:
        raise ValueError("the user name is empty")
    if ":" in user or "\n" in user or "\r" in user or user.startswith("#"):
        raise ValueError("a user name cannot contain ':' or line breaks, nor start with '#'")
    if user != user.strip():
        raise ValueError("a user name cannot start or end with white space")


def parse_password_file(lines: Iterable[str], source: str) -> dict[str, PasswordEntry]:
    """
    Parse the lines of a password file.

    @param lines: its lines.
    @param source: the file's name, for error messages.
    @return: each user's entry.
    @raise PasswordFileError: naming C{source} and the line number of the
        first bad line (a missing C{:}, a bad hash, a repeated user).
    """
    users: dict[str, PasswordEntry] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\r\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        user, colon, rest = line.partition(":")
        try:
            if not colon:
                raise ValueError("expected NAME:HASH")
            check_user_name(user)
            if user in users:
                raise ValueError(f"user {user!r} appears twice")
            users[user] = parse_hash(rest)
        except ValueError as e:
            raise PasswordFileError(f"{source}, line {number}: {e}") from None
    return users


def read_password_file(path: str) -> dict[str, PasswordEntry]:
    """
    Read and parse the password file at C{path}.

    @raise PasswordFileError: if it cannot be read or has a bad line.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise PasswordFileError(f"{path}: cannot read the password file: {reason}") from None
    return parse_password_file(lines, path)


def write_password_file(path: str, lines: Iterable[str]) -> None:
    """
    Replace the file at C{path} with C{lines}, atomically: they are written
    to a temporary file (mode 0600) in the same folder, which then replaces
    it, so a reader sees the old file or the new one, never part of one.
    """
    folder = os.path.dirname(os.path.abspath(path))
    fd, temporary = tempfile.mkstemp(prefix=".mqttx-passwd-", dir=folder)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _dummy_entry(iterations: int) -> PasswordEntry:
    """
    An entry no password matches (its digest is random, not a hash), that
    costs C{iterations} to verify against: unknown users are checked
    against it.
    """
    return PasswordEntry(
        iterations, secrets.token_bytes(SALT_BYTES), secrets.token_bytes(HASH_BYTES)
    )


def _inline(f: Callable[..., _T], *args: object) -> Deferred[_T]:
    return succeed(f(*args))


@implementer(IAuthenticator)
class PasswordFileAuthenticator:
    """
    Checks CONNECT credentials against a password file.

      - No user name: the client is anonymous, let in if anonymous clients
        are allowed on its listener, else refused with 0x87 (not
        authorized; 3.1.1: 0x05).
      - A user name: its password is verified, in a thread so that the slow
        hash never stalls the reactor; a wrong or missing password or an
        unknown user gets 0x86 (bad user name or password; 3.1.1: 0x04).
        An unknown user is verified against a dummy entry with the same
        iteration count, so it takes as long as a wrong password and
        timing does not tell which user names exist.

    @param path: the password file.
    @param allow_anonymous: the C{auth.allow_anonymous} setting.
    @param listener_anonymous: per listener name, the listener's own
        C{allow_anonymous}, where it has one.
    @param run_in_thread: runs C{f(*args)} in a thread and returns a
        Deferred of its result, such as
        C{partial(deferToThreadPool, reactor, pool)}; by default C{f} runs
        at once (for tests).
    @raise PasswordFileError: if the file cannot be read or has errors.
    """

    log = Logger()

    def __init__(
        self,
        path: str,
        allow_anonymous: bool = False,
        listener_anonymous: Mapping[str, bool] | None = None,
        run_in_thread: ThreadRunner = _inline,
    ) -> None:
        self.path = path
        self._allow_anonymous = allow_anonymous
        self._listener_anonymous = dict(listener_anonymous or {})
        self._run = run_in_thread
        self._users: dict[str, PasswordEntry] = {}
        self._dummy = _dummy_entry(DEFAULT_ITERATIONS)
        self._load(read_password_file(path))

    @property
    def users(self) -> frozenset[str]:
        """The user names in the file."""
        return frozenset(self._users)

    def entry(self, user: str) -> PasswordEntry | None:
        """
        The entry of C{user} in the file as last (re)loaded, if any: how
        other authentication methods (SCRAM) share this user table.
        """
        return self._users.get(user)

    def _load(self, users: dict[str, PasswordEntry]) -> None:
        self._users = users
        if users:
            # The dummy costs what a typical entry costs.
            iterations = max(entry.iterations for entry in users.values())
            if iterations != self._dummy.iterations:
                self._dummy = _dummy_entry(iterations)

    def reload(self) -> bool:
        """
        Read the file again. If it has errors, keep the users read before
        and log why.

        @return: whether the new file was taken.
        """
        try:
            users = read_password_file(self.path)
        except PasswordFileError as e:
            self.log.error(
                "password file not reloaded, keeping {count} users: {error}",
                count=len(self._users),
                error=str(e),
                event_id="auth.reload_failed",
            )
            return False
        self._load(users)
        self.log.info(
            "password file {path} reloaded: {count} users",
            path=self.path,
            count=len(users),
            event_id="auth.reloaded",
        )
        return True

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
        entry = self._users.get(username)
        known = entry is not None
        d: Deferred[bool] = self._run(
            verify_password, entry if entry is not None else self._dummy, password or b""
        )
        return d.addCallback(self._verified, known and password is not None)

    @staticmethod
    def _verified(matches: bool, counts: bool) -> int:
        if matches and counts:
            return ReasonCode.SUCCESS
        return ReasonCode.BAD_USER_NAME_OR_PASSWORD
