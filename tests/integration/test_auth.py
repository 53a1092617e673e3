# -*- test-case-name: tests.integration.test_auth -*-
"""
MQTT 5 enhanced authentication (section 4.12) over real TCP, against a
broker offering the test-only methods of L{tests.auth_method}:
C{TEST-CHALLENGE} (one challenge) and C{TEST-DIRECT} (the CONNECT's data
suffices).

paho-mqtt 2.2 can name a method and send Authentication Data in CONNECT,
and reads them in CONNACK, but it has no AUTH packet at all: it neither
answers a challenge (an AUTH from the server is an unknown packet that
drops its connection) nor re-authenticates. The exchange itself is driven
by a raw MQTT 5 client speaking our codec.
"""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from twisted.internet.threads import deferToThread

from mqttx.mqtt.packets import (
    Auth,
    ConnAck,
    Disconnect,
    PingReq,
    PingResp,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode

from ..auth_method import METHOD, ChallengeResponse, answer
from .helpers import HOST, V5, Inbox, IntegrationTestCase, RawClient, connect_packet, start_broker

DIRECT = "TEST-DIRECT"
SECRET = b"s3cret"
USERS = {b"alice": SECRET}


def auth(code: int, data: bytes) -> Auth:
    return Auth(code, Properties(authentication_method=METHOD, authentication_data=data))


def paho_connect(
    port: int, client_id: str, method: str, data: bytes
) -> tuple[int, PahoProperties | None]:
    """
    Connect a paho MQTT 5 client naming C{method} with C{data} (blocking:
    run it in a thread), disconnect it, and return the CONNACK's reason
    code and properties.
    """
    connacks: Inbox[tuple[int, PahoProperties | None]] = Inbox("CONNACKs")
    client = paho.Client(
        CallbackAPIVersion.VERSION2, client_id=client_id, protocol=V5, reconnect_on_failure=False
    )
    client.on_connect = lambda c, userdata, flags, rc, props: connacks.put((rc.value, props))
    props = PahoProperties(PacketTypes.CONNECT)
    props.AuthenticationMethod = method
    props.AuthenticationData = data
    client.connect(HOST, port, 60, properties=props)
    client.loop_start()
    try:
        return connacks.wait()[0]
    finally:
        client.disconnect()
        client.loop_stop()


class EnhancedAuthenticationTests(IntegrationTestCase):
    """
    Real clients authenticate with a method, re-authenticate, and are
    refused, as section 4.12 says.
    """

    async def setUp(self) -> None:  # type: ignore[override]
        self.methods = [ChallengeResponse(USERS), ChallengeResponse(USERS, rounds=0, name=DIRECT)]
        self.server = await start_broker(self, authentication_methods=self.methods)

    async def begin(self, client_id: str, user: bytes = b"alice") -> tuple[RawClient, bytes]:
        """A raw MQTT 5 CONNECT naming C{TEST-CHALLENGE}; return the client and its challenge."""
        client = await self.raw(5)
        client.send(
            connect_packet(5, client_id, authentication_method=METHOD, authentication_data=user)
        )
        return client, await self.challenge(client)

    async def challenge(self, client: RawClient) -> bytes:
        """Read the server's AUTH 0x18 [MQTT-4.12.0-2] [MQTT-4.12.0-5]; return its data."""
        packet = await client.expect(Auth)
        self.assertEqual(packet.reason_code, ReasonCode.CONTINUE_AUTHENTICATION)
        self.assertEqual(packet.properties.authentication_method, METHOD)
        assert packet.properties.authentication_data is not None
        return packet.properties.authentication_data

    async def test_exchange_and_reauthentication(self) -> None:
        """
        A client naming a method gets its challenge in AUTH 0x18, answers in
        AUTH 0x18 [MQTT-4.12.0-3] and is let in with CONNACK 0x00 naming
        the method, with its final data [MQTT-4.12.0-5]; it then works as
        any client. It re-authenticates with AUTH 0x19 [MQTT-4.12.1-1]: a
        challenge, its answer, and AUTH 0x00; the connection goes on.
        """
        client, nonce = await self.begin("raw-auth")
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce)))
        connack = await client.expect(ConnAck)
        self.assertEqual(connack.reason_code, ReasonCode.SUCCESS)
        self.assertEqual(connack.properties.authentication_method, METHOD)
        self.assertEqual(connack.properties.authentication_data, b"welcome alice")
        client.send(Subscribe(1, (Subscription("auth/t"),)))
        await client.expect(SubAck)

        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"alice"))
        nonce = await self.challenge(client)
        client.send(Publish("auth/t", b"meanwhile"))
        self.assertEqual((await client.expect(Publish)).payload, b"meanwhile")
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce)))
        done = await client.expect(Auth)
        self.assertEqual(done.reason_code, ReasonCode.SUCCESS)
        self.assertEqual(done.properties.authentication_method, METHOD)
        self.assertEqual(done.properties.authentication_data, b"welcome alice")
        client.send(PingReq())
        await client.expect(PingResp)
        self.assertEqual([s[3] for s in self.methods[0].started], [False, True])

    async def test_wrong_answer_refused(self) -> None:
        """
        A wrong answer gets CONNACK 0x87 and the connection closes
        [MQTT-4.12.0-4]; no session was created.
        """
        client, nonce = await self.begin("raw-wrong")
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(b"guess", nonce)))
        connack = await client.expect(ConnAck)
        self.assertEqual(connack.reason_code, ReasonCode.NOT_AUTHORIZED)
        await client.expect_closed()
        self.assertNotIn("raw-wrong", self.broker.sessions)

    async def test_failed_reauthentication(self) -> None:
        """
        A failed re-authentication ends the connection with DISCONNECT and
        the method's reason code [MQTT-4.12.1-2].
        """
        client, nonce = await self.begin("raw-reauth")
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce)))
        await client.expect(ConnAck)
        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"alice"))
        nonce = await self.challenge(client)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(b"guess", nonce)))
        disconnect = await client.expect(Disconnect)
        self.assertEqual(disconnect.reason_code, ReasonCode.NOT_AUTHORIZED)
        await client.expect_closed()

    async def test_paho_with_method(self) -> None:
        """
        paho-mqtt, naming a method whose CONNECT data suffices, is let in
        with a CONNACK that names the method and carries its final data
        [MQTT-4.12.0-5].
        """
        code, props = await deferToThread(paho_connect, self.port, "paho-auth", DIRECT, b"alice")
        self.assertEqual(code, 0)
        self.assertEqual(getattr(props, "AuthenticationMethod", None), DIRECT)
        self.assertEqual(getattr(props, "AuthenticationData", None), b"welcome alice")

    async def test_paho_with_unknown_method(self) -> None:
        """
        paho-mqtt naming a method the broker does not offer gets CONNACK
        0x8C (Bad authentication method) [MQTT-4.12.0-1].
        """
        code, _ = await deferToThread(paho_connect, self.port, "paho-unknown", "SCRAM-SHA-1", b"x")
        self.assertEqual(code, ReasonCode.BAD_AUTHENTICATION_METHOD)
        self.assertNotIn("paho-unknown", self.broker.sessions)
