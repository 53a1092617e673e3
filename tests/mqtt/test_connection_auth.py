# -*- test-case-name: tests.mqtt.test_connection_auth -*-
"""
Tests for the enhanced authentication rules of L{mqttx.mqtt.connection}
(MQTT 5 sections 3.1.2.11.9, 3.15 and 4.12): which AUTH a client may send
when, and what else it may send before CONNACK.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.codec import encode
from mqttx.mqtt.connection import AuthPhase, Connection, State
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packets import (
    Auth,
    Connect,
    Disconnect,
    Packet,
    PingReq,
    Publish,
    Subscribe,
    Subscription,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode

METHOD = "SCRAM-SHA-256"
CONTINUE = ReasonCode.CONTINUE_AUTHENTICATION


def auth(code: int, method: str | None = METHOD) -> Auth:
    return Auth(code, Properties(authentication_method=method, authentication_data=b"d"))


class AuthRulesTests(SynchronousTestCase):
    """Tests for the enhanced authentication rules of L{Connection}."""

    def feed(self, conn: Connection, *packets: Packet) -> list[Packet]:
        return conn.receive_data(b"".join(encode(p, 5) for p in packets), 0.0)

    def connection(self, method: str | None = METHOD) -> Connection:
        """A connection that received a 5.0 CONNECT naming C{method}."""
        conn = Connection()
        props = Properties(authentication_method=method) if method else NO_PROPERTIES
        self.feed(conn, Connect("c", 5, properties=props))
        return conn

    def assertProtocolError(self, conn: Connection, *packets: Packet) -> None:
        with self.assertRaises(MalformedPacket) as caught:
            self.feed(conn, *packets)
        self.assertEqual(caught.exception.reason_code, ReasonCode.PROTOCOL_ERROR)
        self.assertIs(conn.state, State.CLOSED)

    def test_connect_starts_exchange(self) -> None:
        """
        A CONNECT with an Authentication Method starts an exchange in which
        the server has the turn; one without starts none.
        """
        conn = self.connection()
        self.assertEqual((conn.authentication_method, conn.auth_phase), (METHOD, AuthPhase.SERVER))
        plain = self.connection(None)
        self.assertEqual((plain.authentication_method, plain.auth_phase), (None, AuthPhase.NONE))

    def test_auth_without_method_at_connect(self) -> None:
        """
        Section 3.15, [MQTT-4.12.0-7]: AUTH from a client whose CONNECT named
        no method is a protocol error, before and after CONNACK.
        """
        self.assertProtocolError(self.connection(None), auth(CONTINUE))
        conn = self.connection(None)
        conn.accepted()
        self.assertProtocolError(conn, auth(ReasonCode.RE_AUTHENTICATE))

    def test_method_must_match(self) -> None:
        """[MQTT-4.12.0-5] Every AUTH carries the CONNECT's method, exactly."""
        for method in ("OTHER", METHOD.lower(), None):
            conn = self.connection()
            conn.send(auth(CONTINUE))
            self.assertProtocolError(conn, auth(CONTINUE, method))

    def test_challenge_and_answer(self) -> None:
        """
        The server's AUTH 0x18 gives the client the turn; the client's AUTH
        0x18 hands it back [MQTT-4.12.0-2] [MQTT-4.12.0-3].
        """
        conn = self.connection()
        conn.send(auth(CONTINUE))
        self.assertIs(conn.auth_phase, AuthPhase.CLIENT)
        self.assertEqual(self.feed(conn, auth(CONTINUE)), [auth(CONTINUE)])
        self.assertIs(conn.auth_phase, AuthPhase.SERVER)
        conn.accepted()
        self.assertIs(conn.auth_phase, AuthPhase.NONE)

    def test_answer_without_challenge(self) -> None:
        """
        [MQTT-4.12.0-3] A client's AUTH 0x18 answers the server's: sent
        while the server has the turn, or a second time, it is a protocol
        error.
        """
        self.assertProtocolError(self.connection(), auth(CONTINUE))
        conn = self.connection()
        conn.send(auth(CONTINUE))
        self.assertProtocolError(conn, auth(CONTINUE), auth(CONTINUE))

    def test_client_never_sends_success(self) -> None:
        """Section 3.15.2.1: AUTH 0x00 is the server's alone."""
        conn = self.connection()
        conn.send(auth(CONTINUE))
        self.assertProtocolError(conn, auth(ReasonCode.SUCCESS))

    def test_reauthentication(self) -> None:
        """
        [MQTT-4.12.1-1] After CONNACK, AUTH 0x19 with the CONNECT's method
        starts a re-authentication; its challenges are answered with AUTH
        0x18, and the server's AUTH 0x00 ends it. Other packets go on.
        """
        conn = self.connection()
        conn.accepted()
        self.feed(conn, auth(ReasonCode.RE_AUTHENTICATE))
        self.assertIs(conn.auth_phase, AuthPhase.SERVER)
        self.assertEqual(len(self.feed(conn, PingReq(), Publish("t"))), 2)
        conn.send(auth(CONTINUE))
        self.feed(conn, Publish("t"), auth(CONTINUE))
        conn.send(auth(ReasonCode.SUCCESS))
        self.assertIs(conn.auth_phase, AuthPhase.NONE)
        self.feed(conn, auth(ReasonCode.RE_AUTHENTICATE))
        self.assertIs(conn.auth_phase, AuthPhase.SERVER)

    def test_reauthentication_before_connack(self) -> None:
        """[MQTT-4.12.1-1] Re-authentication begins after CONNACK."""
        conn = self.connection()
        conn.send(auth(CONTINUE))
        self.assertProtocolError(conn, auth(ReasonCode.RE_AUTHENTICATE))

    def test_reauthentication_during_reauthentication(self) -> None:
        """AUTH 0x19 while a re-authentication runs is a protocol error."""
        conn = self.connection()
        conn.accepted()
        self.feed(conn, auth(ReasonCode.RE_AUTHENTICATE))
        conn.send(auth(CONTINUE))
        self.assertProtocolError(conn, auth(ReasonCode.RE_AUTHENTICATE))

    def test_only_auth_or_disconnect_while_client_has_the_turn(self) -> None:
        """
        [MQTT-3.1.2-30] Until CONNACK, while the exchange waits for the
        client, anything but AUTH or DISCONNECT is a protocol error.
        """
        for packet in (Publish("t"), PingReq(), Subscribe(1, (Subscription("t"),))):
            conn = self.connection()
            conn.send(auth(CONTINUE))
            self.assertProtocolError(conn, packet)
        conn = self.connection()
        conn.send(auth(CONTINUE))
        self.assertEqual(self.feed(conn, Disconnect()), [Disconnect()])

    def test_packets_sent_ahead(self) -> None:
        """
        [MQTT-3.1.2-30] Packets sent while the server has the turn pass, to
        wait for CONNACK; if the server challenges instead, they break the
        rule: L{Connection.check_challenge} says so.
        """
        conn = self.connection()
        self.assertEqual(self.feed(conn, PingReq()), [PingReq()])
        with self.assertRaises(MalformedPacket) as caught:
            conn.check_challenge()
        self.assertEqual(caught.exception.reason_code, ReasonCode.PROTOCOL_ERROR)
        self.assertIs(conn.state, State.CLOSED)

    def test_packets_sent_ahead_of_connack(self) -> None:
        """Packets sent ahead that CONNACK follows break nothing."""
        conn = self.connection()
        self.feed(conn, PingReq())
        conn.accepted()
        conn.check_challenge()
        self.assertIs(conn.state, State.CONNECTED)

    def test_nothing_sent_ahead(self) -> None:
        """
        A challenge is fine when the client sent nothing ahead, or only
        DISCONNECT.
        """
        conn = self.connection()
        conn.check_challenge()
        self.feed(conn, Disconnect())
        conn.check_challenge()

    def test_no_rules_without_method(self) -> None:
        """Without a method, packets behind CONNECT are not restricted."""
        conn = self.connection(None)
        self.assertEqual(len(self.feed(conn, PingReq(), Publish("t"))), 2)
        conn.check_challenge()
