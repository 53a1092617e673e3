# -*- test-case-name: tests.auth.test_scram -*-
"""
Tests for L{mqttx.auth.scram}: SCRAM-SHA-256 against the password file's
SCRAM keys, step by step (the broker's side is in
L{tests.broker.test_scram}).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.auth.passwords import (
    DEFAULT_SCRAM_ITERATIONS,
    PasswordEntry,
    PasswordFileAuthenticator,
    format_line,
    hash_password,
    scram_keys,
    write_password_file,
)
from mqttx.auth.scram import METHOD, ScramSHA256, build_authentication_methods
from mqttx.broker.auth import AuthContinue, AuthFailure, AuthOutcome, AuthSuccess
from mqttx.config import AuthConfig
from mqttx.interfaces import IAuthenticationExchange, IAuthenticationMethod
from mqttx.mqtt.reason_codes import ReasonCode

from ..scram_client import ScramClient

# RFC 7677 section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
)
RFC_CLIENT_FINAL = (
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
)
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

BAD_CREDENTIALS = AuthFailure(ReasonCode.BAD_USER_NAME_OR_PASSWORD)
MALFORMED = AuthFailure(ReasonCode.NOT_AUTHORIZED)


def rfc_entry() -> PasswordEntry:
    """User "user"'s entry with RFC 7677's SCRAM keys for "pencil"."""
    entry = hash_password("pencil", 1000, scram=False)
    return PasswordEntry(
        entry.iterations, entry.salt, entry.digest, scram_keys("pencil", 4096, RFC_SALT)
    )


class ScramTestCase(SynchronousTestCase):
    """A method with RFC 7677's user and server nonce."""

    def setUp(self) -> None:
        self.users: dict[str, PasswordEntry] = {"user": rfc_entry()}
        self.method = ScramSHA256(self.users.get, b"k" * 32, lambda: RFC_SERVER_NONCE)

    def step(self, exchange: IAuthenticationExchange, data: bytes | None) -> AuthOutcome:
        outcome: AuthOutcome = self.successResultOf(exchange.step(data))
        return outcome

    def first(
        self, data: bytes = RFC_CLIENT_FIRST, user: str | None = "user"
    ) -> tuple[IAuthenticationExchange, AuthOutcome]:
        exchange = self.method.start("c1", user, "mqtt", False)
        return exchange, self.step(exchange, data)


class KeyDerivationTests(SynchronousTestCase):
    """RFC 7677's test vector for the keys and signatures."""

    def test_rfc7677_keys(self) -> None:
        """
        The stored and server keys are those of RFC 5802 section 3 for the
        password C{pencil}, RFC 7677's salt and 4096 iterations.
        """
        salted = hashlib.pbkdf2_hmac("sha256", b"pencil", RFC_SALT, 4096)
        keys = scram_keys("pencil", 4096, RFC_SALT)

        client_key = hmac.digest(salted, b"Client Key", "sha256")
        self.assertEqual(keys.stored_key, hashlib.sha256(client_key).digest())
        self.assertEqual(keys.server_key, hmac.digest(salted, b"Server Key", "sha256"))
        self.assertEqual((keys.iterations, keys.salt), (4096, RFC_SALT))

    def test_rfc7677_client_proof_and_signature(self) -> None:
        """
        A client with RFC 7677's nonce computes RFC 7677's client-final
        message and accepts its server-final message.
        """
        client = ScramClient("user", "pencil", RFC_CLIENT_NONCE)
        self.assertEqual(client.client_first(), RFC_CLIENT_FIRST)
        self.assertEqual(client.client_final(RFC_SERVER_FIRST), RFC_CLIENT_FINAL)
        self.assertTrue(client.server_final_ok(RFC_SERVER_FINAL))
        self.assertFalse(client.server_final_ok(b"v=AAAA"))

    def test_new_entries_have_scram_keys(self) -> None:
        """
        C{hash_password} derives SCRAM keys too, with their own random salt
        and 4096 iterations; neither the password nor SaltedPassword is in
        the entry.
        """
        entry = hash_password("pencil", 1000)
        assert entry.scram is not None
        self.assertEqual(entry.scram.iterations, DEFAULT_SCRAM_ITERATIONS)
        self.assertNotEqual(entry.scram.salt, entry.salt)
        salted = hashlib.pbkdf2_hmac("sha256", b"pencil", entry.scram.salt, 4096)
        self.assertNotIn(base64.b64encode(salted).decode().rstrip("="), entry.encode())
        self.assertEqual(entry.scram, scram_keys("pencil", 4096, entry.scram.salt))


class ExchangeTests(ScramTestCase):
    """The server's steps, with RFC 7677's messages."""

    def test_interfaces(self) -> None:
        """The method and its exchanges provide their interfaces."""
        self.assertTrue(verifyObject(IAuthenticationMethod, self.method))
        self.assertEqual(self.method.name, METHOD)
        exchange = self.method.start("c1", "user", "mqtt", False)
        self.assertTrue(verifyObject(IAuthenticationExchange, exchange))

    def test_rfc7677_exchange(self) -> None:
        """
        RFC 7677's client-first gets its server-first (AUTH 0x18), and its
        client-final gets its server-final as the success's data.
        """
        exchange, outcome = self.first()
        self.assertEqual(outcome, AuthContinue(RFC_SERVER_FIRST))
        self.assertEqual(self.step(exchange, RFC_CLIENT_FINAL), AuthSuccess(RFC_SERVER_FINAL))

    def test_y_header(self) -> None:
        """
        The GS2 header C{y,,} (client supports channel binding, thinks the
        server does not) is accepted; its client-final must bind C{eSws}.
        """
        client = ScramClient("user", "pencil", "abc", header="y,,")
        exchange, outcome = self.first(client.client_first())
        assert isinstance(outcome, AuthContinue)
        final = client.client_final(outcome.data)
        self.assertIn(b"c=eSws,", final)
        success = self.step(exchange, final)
        assert isinstance(success, AuthSuccess)
        self.assertTrue(client.server_final_ok(success.data))

    def test_random_server_nonce(self) -> None:
        """
        By default the server's nonce part is 18 random bytes in base64,
        new for each exchange.
        """
        method = ScramSHA256(self.users.get)
        nonces = set()
        for _ in range(2):
            outcome = self.successResultOf(
                method.start("c", "user", "l", False).step(RFC_CLIENT_FIRST)
            )
            assert isinstance(outcome, AuthContinue)
            nonce = outcome.data.split(b",")[0][2:]
            self.assertTrue(nonce.startswith(RFC_CLIENT_NONCE.encode()))
            self.assertEqual(len(base64.b64decode(nonce[len(RFC_CLIENT_NONCE) :])), 18)
            nonces.add(nonce)
        self.assertEqual(len(nonces), 2)

    def test_wrong_password(self) -> None:
        """A proof made with another password gets 0x86."""
        exchange, outcome = self.first()
        assert isinstance(outcome, AuthContinue)
        final = ScramClient("user", "x", RFC_CLIENT_NONCE).client_final(outcome.data)
        self.assertEqual(self.step(exchange, final), BAD_CREDENTIALS)

    def test_tampered_proof(self) -> None:
        """A proof with one bit changed gets 0x86."""
        exchange, _ = self.first()
        proof = base64.b64decode(RFC_CLIENT_FINAL.rpartition(b"p=")[2])
        bad = bytes([proof[0] ^ 1]) + proof[1:]
        final = RFC_CLIENT_FINAL.rpartition(b"p=")[0] + b"p=" + base64.b64encode(bad)
        self.assertEqual(self.step(exchange, final), BAD_CREDENTIALS)

    def assertLooksReal(self, user: str, first: bytes) -> None:
        exchange, outcome = self.first(first, user)
        assert isinstance(outcome, AuthContinue)
        fields = dict(f.split(b"=", 1) for f in outcome.data.split(b","))
        self.assertEqual(fields[b"i"], b"4096")
        self.assertEqual(len(base64.b64decode(fields[b"s"])), 16)
        # The same salt every time, as a real user's.
        _, again = self.first(first, user)
        assert isinstance(again, AuthContinue)
        self.assertEqual(again.data.split(b",")[1], outcome.data.split(b",")[1])
        final = ScramClient(user, "pencil", RFC_CLIENT_NONCE).client_final(outcome.data)
        self.assertEqual(self.step(exchange, final), BAD_CREDENTIALS)

    def test_unknown_user(self) -> None:
        """
        An unknown user is answered like a known one (a salt of 16 bytes,
        the same for each try, derived from the server secret and the name;
        4096 iterations) and fails at the proof with 0x86, as a wrong
        password does.
        """
        self.assertLooksReal("nobody", b"n,,n=nobody,r=rOprNGfwEbeRWgbNEkqO")
        other = ScramSHA256(self.users.get, b"j" * 32, lambda: RFC_SERVER_NONCE)
        a = self.successResultOf(
            self.method.start("c", "nobody", "l", False).step(b"n,,n=nobody,r=x")
        )
        b = self.successResultOf(other.start("c", "nobody", "l", False).step(b"n,,n=nobody,r=x"))
        self.assertNotEqual(a, b)

    def test_user_without_scram_keys(self) -> None:
        """
        A user whose entry predates SCRAM (no keys) is treated as an
        unknown one: 0x86 at the proof, even with the right password.
        """
        self.users["old"] = hash_password("pencil", 1000, scram=False)
        self.assertLooksReal("old", b"n,,n=old,r=rOprNGfwEbeRWgbNEkqO")

    def test_name_must_be_the_connect_user_name(self) -> None:
        """
        C{n=} must be the CONNECT's User Name, and a CONNECT without one
        cannot use SCRAM: 0x86 at once.
        """
        self.assertEqual(self.first(user="other")[1], BAD_CREDENTIALS)
        self.assertEqual(self.first(user=None)[1], BAD_CREDENTIALS)

    def test_escaped_names(self) -> None:
        """C{=2C} and C{=3D} in C{n=} stand for C{,} and C{=}."""
        self.users["a,b=c"] = self.users["user"]
        _, outcome = self.first(b"n,,n=a=2Cb=3Dc,r=abc", "a,b=c")
        self.assertIsInstance(outcome, AuthContinue)

    def test_extensions_in_client_first_ignored(self) -> None:
        """Optional extensions after the nonce are ignored (RFC 5802 5.1)."""
        _, outcome = self.first(RFC_CLIENT_FIRST + b",x=1")
        self.assertIsInstance(outcome, AuthContinue)

    def test_malformed_client_first(self) -> None:
        """
        A client-first message that is missing, not UTF-8, asks for
        channel binding (C{p=}), an authorization identity (C{a=}) or a
        mandatory extension (C{m=}), or breaks the syntax, gets 0x87.
        """
        for data in [
            None,
            b"",
            b"\xff\xfe",
            b"p=tls-unique,,n=user,r=abc",
            b"n,a=admin,n=user,r=abc",
            b"n,,m=ext,n=user,r=abc",
            b"n=user,r=abc",
            b"x,,n=user,r=abc",
            b"n,,n=user",
            b"n,,r=abc,n=user",
            b"n,,n=,r=abc",
            b"n,,n=us=41er,r=abc",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
        ]:
            exchange = self.method.start("c1", "user", "mqtt", False)
            self.assertEqual(self.step(exchange, data), MALFORMED, data)

    def test_malformed_client_final(self) -> None:
        """
        A client-final message that is missing, has other attributes, a
        channel binding other than the GS2 header's, another nonce, bad
        base64 or a proof of the wrong length gets 0x87.
        """
        nonce = RFC_CLIENT_NONCE + RFC_SERVER_NONCE
        for data in [
            None,
            b"garbage",
            b"\xff",
            f"c=biws,r={nonce}".encode(),
            f"c=biws,r={nonce},x=1,p=AAAA".encode(),
            f"c=eSws,r={nonce},p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".encode(),
            f"c=biws,r={RFC_CLIENT_NONCE}other,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=".encode(),
            f"c=biws,r={nonce},p=!!".encode(),
            f"c=biws,r={nonce},p=AAAA".encode(),
        ]:
            exchange, _ = self.first()
            self.assertEqual(self.step(exchange, data), MALFORMED, data)


class PasswordFileTests(SynchronousTestCase):
    """SCRAM sees the password file's users, and their reloads."""

    def test_reload_changes_scram_users(self) -> None:
        """
        With the password file authenticator's C{entry} as its lookup, SCRAM
        follows the file's reloads: a user added later may log in, and a
        changed password counts at once.
        """
        path = self.mktemp()
        write_password_file(path, [format_line("alice", hash_password("one", 1000))])
        authenticator = PasswordFileAuthenticator(path)
        method = ScramSHA256(authenticator.entry)

        def login(user: str, password: str) -> AuthOutcome:
            client = ScramClient(user, password)
            exchange = method.start("c", user, "mqtt", False)
            first = self.successResultOf(exchange.step(client.client_first()))
            assert isinstance(first, AuthContinue)
            outcome: AuthOutcome = self.successResultOf(
                exchange.step(client.client_final(first.data))
            )
            return outcome

        self.assertIsInstance(login("alice", "one"), AuthSuccess)
        self.assertEqual(login("bob", "two"), BAD_CREDENTIALS)
        write_password_file(
            path,
            [
                format_line("alice", hash_password("three", 1000)),
                format_line("bob", hash_password("two", 1000)),
            ],
        )
        self.assertTrue(authenticator.reload())
        self.assertIsInstance(login("bob", "two"), AuthSuccess)
        self.assertEqual(login("alice", "one"), BAD_CREDENTIALS)
        self.assertIsInstance(login("alice", "three"), AuthSuccess)
        os.unlink(path)

    def test_build_authentication_methods(self) -> None:
        """
        SCRAM is offered when the password file is the authenticator and
        C{auth.scram} is true (the default), and otherwise not.
        """
        path = self.mktemp()
        write_password_file(path, [format_line("alice", hash_password("one", 1000))])
        authenticator = PasswordFileAuthenticator(path)
        [method] = build_authentication_methods(AuthConfig(password_file=path), authenticator)
        self.assertIsInstance(method, ScramSHA256)
        self.assertEqual(
            build_authentication_methods(
                AuthConfig(password_file=path, scram=False), authenticator
            ),
            [],
        )
        self.assertEqual(build_authentication_methods(AuthConfig(), NoUserDatabase(True, {})), [])
