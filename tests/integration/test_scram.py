# -*- test-case-name: tests.integration.test_scram -*-
"""
SCRAM-SHA-256 end to end: a real C{twistd mqttx} whose password file was
written by C{mqttx passwd} (which stores SCRAM keys), and a raw MQTT 5
client speaking our codec over loopback (paho-mqtt has no AUTH packet).
"""

from __future__ import annotations

from dataclasses import replace

from mqttx.auth.scram import METHOD
from mqttx.mqtt.packets import Auth, ConnAck, Disconnect, PingReq, PingResp
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode

from ..scram_client import ScramClient
from .helpers import V5, RawClient, connect_packet, open_raw
from .test_passwords import PASSWORD, WRONG, PasswordFileTestCase


def auth(code: int, data: bytes) -> Auth:
    return Auth(code, Properties(authentication_method=METHOD, authentication_data=data))


class ScramTests(PasswordFileTestCase):
    async def exchange(self, raw: RawClient, scram: ScramClient, reauthenticate: bool) -> None:
        """Send the client-first message, read server-first, send client-final."""
        if reauthenticate:
            raw.send(auth(ReasonCode.RE_AUTHENTICATE, scram.client_first()))
        else:
            props = Properties(
                authentication_method=METHOD, authentication_data=scram.client_first()
            )
            raw.send(replace(connect_packet(5, "scram"), username="alice", properties=props))
        challenge = await raw.expect(Auth)
        self.assertEqual(challenge.reason_code, ReasonCode.CONTINUE_AUTHENTICATION)
        assert challenge.properties.authentication_data is not None
        raw.send(
            auth(
                ReasonCode.CONTINUE_AUTHENTICATION,
                scram.client_final(challenge.properties.authentication_data),
            )
        )

    async def test_connect_and_reauthenticate(self) -> None:
        """
        A client that knows alice's password connects with SCRAM-SHA-256 and
        checks the server's signature in CONNACK; it re-authenticates (AUTH
        0x00, signature checked again) and keeps talking; a re-authentication
        with a wrong password ends in DISCONNECT 0x87.
        """
        raw = await open_raw(self, self.port, V5)
        scram = ScramClient("alice", PASSWORD)
        await self.exchange(raw, scram, False)
        ack = await raw.expect(ConnAck)
        self.assertEqual(ack.reason_code, ReasonCode.SUCCESS)
        self.assertTrue(scram.server_final_ok(ack.properties.authentication_data))
        scram = ScramClient("alice", PASSWORD, nonce="second-nonce")
        await self.exchange(raw, scram, True)
        done = await raw.expect(Auth)
        self.assertEqual(done.reason_code, ReasonCode.SUCCESS)
        self.assertTrue(scram.server_final_ok(done.properties.authentication_data))
        raw.send(PingReq())
        await raw.expect(PingResp)
        await self.exchange(raw, ScramClient("alice", WRONG, nonce="third"), True)
        bye = await raw.expect(Disconnect)
        self.assertEqual(bye.reason_code, ReasonCode.NOT_AUTHORIZED)
        await raw.expect_closed()

    async def test_wrong_password(self) -> None:
        """A wrong password gets CONNACK 0x86 and the connection is closed."""
        raw = await open_raw(self, self.port, V5)
        await self.exchange(raw, ScramClient("alice", WRONG), False)
        ack = await raw.expect(ConnAck)
        self.assertEqual(ack.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        await raw.expect_closed()
