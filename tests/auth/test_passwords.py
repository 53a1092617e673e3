# -*- test-case-name: tests.auth.test_passwords -*-
"""
Tests for L{mqttx.auth.passwords}: the password file's format, hashing,
verification, and the authenticator built on it.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mqttx.auth.passwords import (
    DEFAULT_ITERATIONS,
    PasswordEntry,
    PasswordFileAuthenticator,
    PasswordFileError,
    format_line,
    hash_password,
    parse_hash,
    parse_password_file,
    read_password_file,
    verify_password,
    write_password_file,
)
from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode

#: Fast hashes for tests; the format and code path are the same.
ITERATIONS = 1000


def entry_line(user: str, password: str, iterations: int = ITERATIONS) -> str:
    return format_line(user, hash_password(password, iterations))


class HashTests(SynchronousTestCase):
    """
    Hashing and verifying passwords.
    """

    def test_pbkdf2_sha512(self) -> None:
        """
        The digest is PBKDF2-HMAC-SHA512 of the UTF-8 password with the
        salt and iteration count of the entry, 64 bytes long.
        """
        entry = hash_password("sécret", 1234, salt=b"0123456789abcdef", scram=False)
        self.assertEqual(
            entry,
            PasswordEntry(
                1234,
                b"0123456789abcdef",
                hashlib.pbkdf2_hmac("sha512", "sécret".encode(), b"0123456789abcdef", 1234),
            ),
        )

    def test_default_iterations_and_random_salt(self) -> None:
        """
        New hashes use 210,000 iterations by default and a fresh 16-byte
        salt each, so equal passwords do not have equal hashes.
        """
        self.assertEqual(DEFAULT_ITERATIONS, 210_000)
        a, b = hash_password("x", ITERATIONS), hash_password("x", ITERATIONS)
        self.assertEqual(len(a.salt), 16)
        self.assertNotEqual(a.salt, b.salt)
        self.assertNotEqual(a.digest, b.digest)

    def test_verify(self) -> None:
        """
        The right password verifies; another, a prefix or an empty one
        does not.
        """
        entry = hash_password("right", ITERATIONS)
        self.assertTrue(verify_password(entry, b"right"))
        for wrong in (b"wrong", b"righ", b"", b"Right"):
            self.assertFalse(verify_password(entry, wrong))

    def test_verify_constant_time(self) -> None:
        """
        Digests are compared with L{hmac.compare_digest}.
        """
        calls: list[tuple[bytes, bytes]] = []

        def compare(a: bytes, b: bytes) -> bool:
            calls.append((a, b))
            return a == b

        self.patch(__import__("hmac"), "compare_digest", compare)
        entry = hash_password("p", ITERATIONS)
        self.assertTrue(verify_password(entry, b"p"))
        self.assertEqual(len(calls), 1)

    def test_encode_round_trip(self) -> None:
        """
        An entry's text form is C{$pbkdf2-sha512$ITERATIONS$SALT$HASH},
        base64 without padding, and parses back to the same entry.
        """
        entry = hash_password("p", 5000, salt=b"\x00" * 16)
        text = entry.encode()
        self.assertTrue(text.startswith("$pbkdf2-sha512$5000$AAAAAAAAAAAAAAAAAAAAAA$"))
        self.assertNotIn("=", text)
        self.assertEqual(parse_hash(text), entry)


class ParseTests(SynchronousTestCase):
    """
    Parsing the file: one C{NAME:HASH} per line; bad lines name the file
    and line number and never repeat the hash.
    """

    def test_parse(self) -> None:
        """
        Each line gives a user; blank lines and C{#} comments are skipped;
        each entry keeps its own iteration count.
        """
        lines = [
            "# users",
            entry_line("alice", "a"),
            "",
            entry_line("bob", "b", 2000),
        ]
        users = parse_password_file(lines, "passwd")
        self.assertEqual(sorted(users), ["alice", "bob"])
        self.assertEqual(users["bob"].iterations, 2000)
        self.assertTrue(verify_password(users["alice"], b"a"))

    def assertBadLine(self, line: str, *fragments: str) -> None:
        good = entry_line("ok", "p")
        with self.assertRaises(PasswordFileError) as caught:
            parse_password_file([good, line], "etc/passwd")
        message = str(caught.exception)
        self.assertTrue(message.startswith("etc/passwd, line 2: "), message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        secret = line.partition(":")[2]
        if len(secret) > 3:
            self.assertNotIn(secret, message)

    def test_bad_lines(self) -> None:
        """
        A line without C{:}, with a plain password, another scheme, a bad
        iteration count, bad base64, a short hash, or a user seen before is
        refused with the file name and line number.
        """
        good = hash_password("p", ITERATIONS).encode()
        _, scheme, iterations, salt, digest, *_ = good.split("$")
        self.assertBadLine("nocolon", "expected NAME:HASH")
        self.assertBadLine("alice:plainpassword", "expected NAME:$pbkdf2-sha512$")
        self.assertBadLine(f"alice:$bcrypt${iterations}${salt}${digest}", "unknown hash scheme")
        self.assertBadLine(f"alice:${scheme}$many${salt}${digest}", "not a number")
        self.assertBadLine(f"alice:${scheme}$10${salt}${digest}", "between 1000 and")
        self.assertBadLine(f"alice:${scheme}${iterations}$!!!${digest}", "base64")
        self.assertBadLine(f"alice:${scheme}${iterations}${salt}$AAAA", "not 64 bytes")
        self.assertBadLine(f":{good}", "user name is empty")
        self.assertBadLine(f"ok:{good}", "'ok' appears twice")

    def test_scram_keys(self) -> None:
        """
        An entry may go on with C{$scram-sha-256$ITERATIONS$SALT$STOREDKEY$SERVERKEY}
        (RFC 7677's minimum of 4096 iterations, 32-byte keys); it parses
        back to the same entry, and an entry without it still parses, with
        no SCRAM keys.
        """
        entry = hash_password("p", ITERATIONS)
        text = entry.encode()
        self.assertRegex(
            text,
            r"^\$pbkdf2-sha512\$[^$]+\$[^$]+\$[^$]+\$scram-sha-256\$4096\$[^$=]+\$[^$=]+\$[^$=]+$",
        )
        self.assertEqual(parse_hash(text), entry)
        old = hash_password("p", ITERATIONS, scram=False)
        self.assertIsNone(parse_hash(old.encode()).scram)
        self.assertEqual(parse_password_file([f"a:{old.encode()}"], "f")["a"], old)

    def test_bad_scram_keys(self) -> None:
        """
        A bad SCRAM part (another scheme, too few iterations, bad base64,
        a short key, a missing field) is refused as any bad hash is.
        """
        head = hash_password("p", ITERATIONS, scram=False).encode()
        _, _, iterations, salt, stored, server = (
            hash_password("p", ITERATIONS).encode().split("$")[4:]
        )
        scram = "scram-sha-256"
        self.assertBadLine(
            f"a:{head}$scram-sha-1${iterations}${salt}${stored}${server}", "unknown scheme"
        )
        self.assertBadLine(f"a:{head}${scram}$4095${salt}${stored}${server}", "between 4096 and")
        self.assertBadLine(f"a:{head}${scram}${iterations}${salt}$!!${server}", "base64")
        self.assertBadLine(f"a:{head}${scram}${iterations}${salt}${stored}$AAAA", "not 32 bytes")
        self.assertBadLine(f"a:{head}${scram}${iterations}${salt}${stored}", "expected NAME:")

    def test_read_missing_file(self) -> None:
        """
        A file that cannot be read is a L{PasswordFileError} naming it.
        """
        path = self.mktemp()
        with self.assertRaises(PasswordFileError) as caught:
            read_password_file(path)
        self.assertIn(path, str(caught.exception))
        self.assertIn("No such file", str(caught.exception))


class WriteTests(SynchronousTestCase):
    """
    L{write_password_file} replaces the file atomically, mode 0600.
    """

    def test_write(self) -> None:
        """
        The file gets the lines and mode 0600, even if it was readable by
        others before; no temporary file stays behind.
        """
        path = self.mktemp()
        os.mkdir(path)
        target = os.path.join(path, "passwd")
        with open(target, "w") as f:
            f.write("old\n")
        os.chmod(target, 0o644)
        write_password_file(target, ["a", "b"])
        with open(target) as f:
            self.assertEqual(f.read(), "a\nb\n")
        self.assertEqual(stat.S_IMODE(os.stat(target).st_mode), 0o600)
        self.assertEqual(os.listdir(path), ["passwd"])

    def test_write_fails_cleanly(self) -> None:
        """
        If writing fails, the old file stays and the temporary one is
        removed.
        """
        path = self.mktemp()
        os.mkdir(path)
        target = os.path.join(path, "passwd")
        with open(target, "w") as f:
            f.write("old\n")

        def fail(src: str, dst: str) -> None:
            raise OSError("disk full")

        self.patch(os, "replace", fail)
        self.assertRaises(OSError, write_password_file, target, ["new"])
        with open(target) as f:
            self.assertEqual(f.read(), "old\n")
        self.assertEqual(os.listdir(path), ["passwd"])


class RecordingRunner:
    """
    A thread runner that runs the function at once and records what ran,
    or holds the result until L{fire} when C{hold} is set.
    """

    def __init__(self, hold: bool = False) -> None:
        self.calls: list[tuple[Callable[..., Any], tuple[object, ...]]] = []
        self.hold = hold
        self.pending: list[tuple[Deferred[Any], Any]] = []

    def __call__(self, f: Callable[..., Any], *args: object) -> Deferred[Any]:
        self.calls.append((f, args))
        if not self.hold:
            return succeed(f(*args))
        d: Deferred[Any] = Deferred()
        self.pending.append((d, f(*args)))
        return d

    def fire(self) -> None:
        pending, self.pending = self.pending, []
        for d, result in pending:
            d.callback(result)


class AuthenticatorTests(SynchronousTestCase):
    """
    L{PasswordFileAuthenticator} checks CONNECT credentials against the
    file, verifying in a thread.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.write(entry_line("alice", "wonderland"), entry_line("bob", "builder", 2000))
        self.runner = RecordingRunner()

    def write(self, *lines: str) -> None:
        with open(self.path, "w") as f:
            f.write("".join(f"{line}\n" for line in lines))

    def make(self, **kwargs: Any) -> PasswordFileAuthenticator:
        kwargs.setdefault("run_in_thread", self.runner)
        return PasswordFileAuthenticator(self.path, **kwargs)

    def check(
        self,
        auth: PasswordFileAuthenticator,
        username: str | None,
        password: bytes | None,
        listener: str = "mqtt",
    ) -> int:
        return self.successResultOf(auth.authenticate("c1", username, password, listener))

    def test_interface(self) -> None:
        """
        It provides L{IAuthenticator}.
        """
        self.assertTrue(verifyObject(IAuthenticator, self.make()))

    def test_good_credentials(self) -> None:
        """
        A user with the right password is accepted (reason code 0).
        """
        auth = self.make()
        self.assertEqual(self.check(auth, "alice", b"wonderland"), ReasonCode.SUCCESS)
        self.assertEqual(self.check(auth, "bob", b"builder"), ReasonCode.SUCCESS)
        self.assertEqual(auth.users, frozenset({"alice", "bob"}))

    def test_bad_credentials(self) -> None:
        """
        [MQTT-3.1.4-2] A wrong password, no password, or an unknown user
        is refused with 0x86 (Bad User Name or Password; 3.1.1: 0x04).
        """
        auth = self.make()
        for username, password in [
            ("alice", b"builder"),
            ("alice", None),
            ("alice", b""),
            ("carol", b"wonderland"),
        ]:
            self.assertEqual(
                self.check(auth, username, password), ReasonCode.BAD_USER_NAME_OR_PASSWORD
            )

    def test_verified_in_thread(self) -> None:
        """
        Verification runs through the thread runner, and the answer waits
        for it: the reactor thread never hashes.
        """
        self.runner.hold = True
        auth = self.make()
        d = auth.authenticate("c1", "alice", b"wonderland", "mqtt")
        self.assertNoResult(d)
        self.assertEqual([f for f, _ in self.runner.calls], [verify_password])
        self.runner.fire()
        self.assertEqual(self.successResultOf(d), ReasonCode.SUCCESS)

    def test_unknown_user_same_path(self) -> None:
        """
        An unknown user is verified like a known one, in the thread runner
        against an entry with the iteration count of the file's entries,
        so it costs as long as a wrong password.
        """
        auth = self.make()
        self.check(auth, "carol", b"x")
        self.check(auth, "alice", b"x")
        (f1, (dummy, _)), (f2, (real, _)) = self.runner.calls
        self.assertIs(f1, verify_password)
        self.assertIs(f2, verify_password)
        assert isinstance(dummy, PasswordEntry)
        assert isinstance(real, PasswordEntry)
        self.assertEqual(dummy.iterations, 2000)
        self.assertEqual(len(dummy.digest), len(real.digest))

    def test_anonymous(self) -> None:
        """
        [MQTT-3.1.4-2] A client without a user name is refused with 0x87
        (Not authorized; 3.1.1: 0x05) unless anonymous clients are allowed,
        and is never verified.
        """
        self.assertEqual(self.check(self.make(), None, None), ReasonCode.NOT_AUTHORIZED)
        self.assertEqual(
            self.check(self.make(allow_anonymous=True), None, None), ReasonCode.SUCCESS
        )
        self.assertEqual(self.runner.calls, [])

    def test_anonymous_per_listener(self) -> None:
        """
        A listener's own C{allow_anonymous} overrides the global one.
        """
        auth = self.make(allow_anonymous=False, listener_anonymous={"local": True})
        self.assertEqual(self.check(auth, None, None, "local"), ReasonCode.SUCCESS)
        self.assertEqual(self.check(auth, None, None, "public"), ReasonCode.NOT_AUTHORIZED)
        auth = self.make(allow_anonymous=True, listener_anonymous={"public": False})
        self.assertEqual(self.check(auth, None, None, "local"), ReasonCode.SUCCESS)
        self.assertEqual(self.check(auth, None, None, "public"), ReasonCode.NOT_AUTHORIZED)

    def test_credentials_checked_when_anonymous_allowed(self) -> None:
        """
        With anonymous clients allowed, a client that sends a user name is
        still checked.
        """
        auth = self.make(allow_anonymous=True)
        self.assertEqual(self.check(auth, "alice", b"nope"), ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_bad_file(self) -> None:
        """
        A bad file at construction raises L{PasswordFileError}.
        """
        self.write("alice:secret")
        self.assertRaises(PasswordFileError, self.make)

    def test_reload(self) -> None:
        """
        L{PasswordFileAuthenticator.reload} takes the file as it is now.
        """
        auth = self.make()
        self.write(entry_line("carol", "c"))
        self.assertTrue(auth.reload())
        self.assertEqual(self.check(auth, "carol", b"c"), ReasonCode.SUCCESS)
        self.assertEqual(
            self.check(auth, "alice", b"wonderland"), ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )

    def test_reload_keeps_old_users_on_error(self) -> None:
        """
        If the file has errors, L{PasswordFileAuthenticator.reload} keeps
        the users read before and logs why.
        """
        auth = self.make()
        self.write("alice:plain")
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            self.assertFalse(auth.reload())
        self.assertEqual([e["event_id"] for e in events], ["auth.reload_failed"])
        self.assertNotIn("plain", str(events[0].get("error")))
        self.assertEqual(self.check(auth, "alice", b"wonderland"), ReasonCode.SUCCESS)
