# -*- test-case-name: tests.broker.test_scram -*-
"""
Tests for SCRAM-SHA-256 (L{mqttx.auth.scram}) through a real
L{MQTTServerProtocol} and L{Broker}: the exchange in CONNECT and AUTH,
refusals, and re-authentication.
"""

from __future__ import annotations

from mqttx.auth.passwords import PasswordEntry, hash_password
from mqttx.auth.scram import METHOD, ScramSHA256
from mqttx.broker.broker import Broker
from mqttx.mqtt.packets import Auth, ConnAck, Connect, PingReq, PingResp
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode

from ..helpers import BrokerTestCase, FakeClient
from ..scram_client import ScramClient

# A low PBKDF2 count for the password part: SCRAM's keys use 4096 anyway.
USERS: dict[str, PasswordEntry] = {"alice": hash_password("pencil", 1000)}


def auth(code: int, data: bytes | None) -> Auth:
    """An AUTH packet of the client, naming SCRAM-SHA-256."""
    return Auth(code, Properties(authentication_method=METHOD, authentication_data=data))


class ScramBrokerTests(BrokerTestCase):
    """A broker offering SCRAM-SHA-256 over a small user table."""

    def make_broker(self) -> Broker:
        self.users = dict(USERS)
        return Broker(
            self.config,
            clock=self.clock,
            store=self.store,
            authentication_methods=[ScramSHA256(self.users.get)],
        )

    def begin(self, scram: ScramClient, username: str | None = "alice") -> FakeClient:
        """Open a connection and send CONNECT with the client-first message."""
        client = self.open_connection(5)
        props = Properties(authentication_method=METHOD, authentication_data=scram.client_first())
        client.send(Connect("c1", 5, username=username, properties=props))
        return client

    def server_first(self, client: FakeClient) -> bytes:
        """Read the server's AUTH 0x18 (naming SCRAM-SHA-256) and return its data."""
        packet = client.expect(Auth)
        self.assertEqual(packet.reason_code, ReasonCode.CONTINUE_AUTHENTICATION)
        self.assertEqual(packet.properties.authentication_method, METHOD)
        assert packet.properties.authentication_data is not None
        return packet.properties.authentication_data

    def connect(self, password: str = "pencil") -> tuple[FakeClient, ScramClient, ConnAck]:
        """Run the whole exchange in CONNECT; return the client, its SCRAM state and CONNACK."""
        scram = ScramClient("alice", password)
        client = self.begin(scram)
        first = self.server_first(client)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, scram.client_final(first)))
        connack = client.expect(ConnAck)
        return client, scram, connack

    def assertRefused(self, client: FakeClient, code: int) -> None:
        """The server answered CONNACK C{code} (and nothing else) and closed."""
        packets = client.received()
        self.assertEqual(
            [(type(p).__name__, getattr(p, "reason_code", None)) for p in packets],
            [("ConnAck", code)],
        )
        self.assertTrue(client.disconnecting)

    def test_exchange(self) -> None:
        """
        The client-first message in CONNECT gets the server-first in AUTH
        0x18; the client-final in AUTH 0x18 gets CONNACK 0x00 with the
        server-final (the server's signature, which the client checks) as
        Authentication Data [MQTT-4.12.0-5].
        """
        client, scram, connack = self.connect()
        self.assertEqual(connack.reason_code, ReasonCode.SUCCESS)
        self.assertEqual(connack.properties.authentication_method, METHOD)
        self.assertTrue(scram.server_final_ok(connack.properties.authentication_data))
        self.assertIn("c1", self.broker.sessions)
        client.send(PingReq())
        self.assertEqual(client.received(), [PingResp()])

    def test_wrong_password(self) -> None:
        """
        A wrong password gets CONNACK 0x86 (bad user name or password) and
        the connection is closed [MQTT-4.12.0-4]; no session is made.
        """
        client, _, connack = self.connect("wrong")
        self.assertEqual(connack.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertTrue(client.disconnecting)
        self.assertNotIn("c1", self.broker.sessions)

    def test_unknown_user(self) -> None:
        """An unknown user gets a challenge like any other, then CONNACK 0x86."""
        scram = ScramClient("mallory", "pencil")
        client = self.begin(scram, "mallory")
        first = self.server_first(client)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, scram.client_final(first)))
        self.assertRefused(client, ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_without_user_name(self) -> None:
        """A CONNECT without a User Name gets CONNACK 0x86 at once."""
        client = self.begin(ScramClient("alice", "pencil"), None)
        self.assertRefused(client, ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_malformed_client_first(self) -> None:
        """
        A client-first message asking for channel binding gets CONNACK 0x87
        (not authorized); so does a CONNECT with no Authentication Data.
        """
        client = self.open_connection(5)
        props = Properties(
            authentication_method=METHOD, authentication_data=b"p=tls-unique,,n=alice,r=x"
        )
        client.send(Connect("c1", 5, username="alice", properties=props))
        self.assertRefused(client, ReasonCode.NOT_AUTHORIZED)
        client = self.open_connection(5)
        client.send(
            Connect("c2", 5, username="alice", properties=Properties(authentication_method=METHOD))
        )
        self.assertRefused(client, ReasonCode.NOT_AUTHORIZED)

    def test_malformed_client_final(self) -> None:
        """A client-final message with another nonce gets CONNACK 0x87."""
        scram = ScramClient("alice", "pencil")
        client = self.begin(scram)
        first = self.server_first(client)
        final = scram.client_final(first).replace(b",r=", b",r=x", 1)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, final))
        self.assertRefused(client, ReasonCode.NOT_AUTHORIZED)

    def reauthenticate(self, client: FakeClient, password: str) -> ScramClient:
        """Re-authenticate (AUTH 0x19) through the whole exchange."""
        scram = ScramClient("alice", password, nonce="another-nonce")
        client.send(auth(ReasonCode.RE_AUTHENTICATE, scram.client_first()))
        first = self.server_first(client)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, scram.client_final(first)))
        return scram

    def test_reauthentication(self) -> None:
        """
        A connected client may re-authenticate with AUTH 0x19 and the same
        method [MQTT-4.12.1-1]: the same exchange ends in AUTH 0x00 with the
        server-final message, and the connection goes on.
        """
        client, _, _ = self.connect()
        for _ in range(2):
            scram = self.reauthenticate(client, "pencil")
            done = client.expect(Auth)
            self.assertEqual(done.reason_code, ReasonCode.SUCCESS)
            self.assertEqual(done.properties.authentication_method, METHOD)
            self.assertTrue(scram.server_final_ok(done.properties.authentication_data))
            client.send(PingReq())
            self.assertEqual(client.received(), [PingResp()])

    def test_reauthentication_sees_new_password(self) -> None:
        """
        A re-authentication checks the user table as it is then: after the
        password changed, the old one no longer passes and the client gets
        DISCONNECT 0x87 (DISCONNECT cannot carry 0x86) [MQTT-4.12.1-2].
        """
        client, _, _ = self.connect()
        self.users["alice"] = hash_password("new", 1000)
        self.reauthenticate(client, "pencil")
        self.assertClosedWith(client, ReasonCode.NOT_AUTHORIZED)

    def test_reauthentication_malformed(self) -> None:
        """A malformed re-authentication also ends in DISCONNECT 0x87."""
        client, _, _ = self.connect()
        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"garbage"))
        self.assertClosedWith(client, ReasonCode.NOT_AUTHORIZED)
