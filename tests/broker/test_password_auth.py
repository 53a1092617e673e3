# -*- test-case-name: tests.broker.test_password_auth -*-
"""
The broker with a password file: CONNACK codes for good, bad and missing
credentials in MQTT 3.1.1 and 5.0, per-listener anonymous access, and the
rate limit on failed authentications per source address.
"""

from __future__ import annotations

from mqttx.auth.passwords import PasswordFileAuthenticator, format_line, hash_password
from mqttx.auth.ratelimit import AuthFailureLimiter
from mqttx.broker.broker import Broker
from mqttx.mqtt.packets import ConnAck, Connect
from mqttx.mqtt.reason_codes import ConnackReturnCode, ReasonCode
from tests.auth.test_passwords import RecordingRunner
from tests.helpers import BrokerTestCase, FakeClient

ITERATIONS = 1000


class PasswordFileBrokerTests(BrokerTestCase):
    """
    CONNECT against a password file, anonymous clients refused.
    """

    allow_anonymous = False

    def make_broker(self) -> Broker:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(format_line("alice", hash_password("wonderland", ITERATIONS)) + "\n")
        self.runner = RecordingRunner()
        self.authenticator = PasswordFileAuthenticator(
            path, self.allow_anonymous, {"open": True}, self.runner
        )
        self.limiter = AuthFailureLimiter(self.clock, 3, 60.0)
        return Broker(
            self.config,
            clock=self.clock,
            store=self.store,
            authenticator=self.authenticator,
            auth_limiter=self.limiter,
        )

    def assertConnack(self, client: FakeClient, code: int) -> None:
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, code)
        if code:
            self.assertTrue(client.disconnecting)
        else:
            self.assertFalse(client.disconnecting)

    def test_good_credentials(self) -> None:
        """
        A client with a user name and its password is admitted (3.1.1 and
        5.0).
        """
        for level in (4, 5):
            client = self.connect_client(
                f"c{level}", level, username="alice", password=b"wonderland"
            )
            self.assertConnack(client, 0)

    def test_bad_password(self) -> None:
        """
        [MQTT-3.1.4-2] [MQTT-3.2.2-6] A wrong password is refused with
        CONNACK 0x86 (5.0) / 0x04 (3.1.1), and the connection closes.
        """
        self.assertConnack(
            self.connect_client("c", 5, username="alice", password=b"x"),
            ReasonCode.BAD_USER_NAME_OR_PASSWORD,
        )
        self.assertConnack(
            self.connect_client("c", 4, username="alice", password=b"x"),
            ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
        )

    def test_anonymous_refused(self) -> None:
        """
        [MQTT-3.1.4-2] A client without a user name is refused with CONNACK
        0x87 (5.0) / 0x05 (3.1.1) when anonymous clients are not allowed.
        """
        self.assertConnack(self.connect_client("c", 5), ReasonCode.NOT_AUTHORIZED)
        self.assertConnack(self.connect_client("c", 4), ConnackReturnCode.NOT_AUTHORIZED)
        self.assertEqual(self.runner.calls, [])

    def test_anonymous_allowed_on_listener(self) -> None:
        """
        A listener whose own C{allow_anonymous} is true lets anonymous
        clients in.
        """
        self.factory.listener = "open"
        client = self.connect_client("c", 4)
        self.assertConnack(client, 0)

    def test_verification_pending(self) -> None:
        """
        While the password is being verified (in a thread) no CONNACK is
        sent; it follows the verification.
        """
        self.runner.hold = True
        client = self.open_connection(5)
        client.send(Connect("c", 5, "MQTT", True, 0, "alice", b"wonderland"))
        self.assertEqual(client.received(), [])
        self.runner.fire()
        self.assertEqual(client.expect(ConnAck).reason_code, 0)

    def test_failures_rate_limited(self) -> None:
        """
        After 3 failed authentications from one address within a minute,
        further CONNECTs from it, even with good credentials, are refused
        with 0x9F (Connection rate exceeded) / 0x03 (3.1.1: server
        unavailable) without being verified, until the minute is over.
        """
        for _ in range(3):
            self.connect_client("c", 5, username="alice", password=b"x")
        verified = len(self.runner.calls)
        self.assertConnack(
            self.connect_client("c", 5, username="alice", password=b"wonderland"),
            ReasonCode.CONNECTION_RATE_EXCEEDED,
        )
        self.assertConnack(
            self.connect_client("c", 4, username="alice", password=b"wonderland"),
            ConnackReturnCode.SERVER_UNAVAILABLE,
        )
        self.assertEqual(len(self.runner.calls), verified)
        self.clock.advance(60)
        self.assertConnack(self.connect_client("c", 5, username="alice", password=b"wonderland"), 0)

    def test_anonymous_refusals_not_counted(self) -> None:
        """
        Refused anonymous clients (0x87) cost no hash and are not counted
        as failed authentications.
        """
        for _ in range(5):
            self.connect_client("c", 5)
        self.assertConnack(self.connect_client("c", 5, username="alice", password=b"wonderland"), 0)


class NoRateLimitTests(BrokerTestCase):
    """
    Without a limiter, failures are never held against an address.
    """

    def make_broker(self) -> Broker:
        path = self.mktemp()
        with open(path, "w") as f:
            f.write(format_line("alice", hash_password("w", ITERATIONS)) + "\n")
        return Broker(
            self.config,
            clock=self.clock,
            store=self.store,
            authenticator=PasswordFileAuthenticator(path, False),
        )

    def test_not_limited(self) -> None:
        """
        Many failures, then good credentials: admitted.
        """
        for _ in range(20):
            self.connect_client("c", 5, username="alice", password=b"x")
        client = self.connect_client("c", 5, username="alice", password=b"w")
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0)
