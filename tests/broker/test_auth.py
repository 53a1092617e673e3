# -*- test-case-name: tests.broker.test_auth -*-
"""
Tests for MQTT 5 enhanced authentication (section 4.12): the exchange of a
CONNECT naming an Authentication Method, and re-authentication, through a
real L{MQTTServerProtocol} and L{Broker} with the test-only
C{TEST-CHALLENGE} method of L{tests.auth_method}.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from mqttx.broker.auth import AuthFailure, AuthOutcome, EnhancedAuthentication
from mqttx.broker.broker import Broker
from mqttx.interfaces import IAuthenticationExchange, IAuthenticationMethod, IAuthenticator
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    PingReq,
    PingResp,
    PubAck,
    Publish,
    SubAck,
    Subscribe,
    Subscription,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.mqtt import CONNECT_TIMEOUT

from ..auth_method import METHOD, ChallengeResponse, answer
from ..helpers import BrokerTestCase, FakeClient

SECRET = b"s3cret"
USERS = {b"alice": SECRET}


def auth(code: int, data: bytes | None = None, method: str | None = METHOD) -> Auth:
    """An AUTH packet of the client."""
    return Auth(code, Properties(authentication_method=method, authentication_data=data))


class EnhancedAuthenticationTestCase(BrokerTestCase):
    """
    A broker offering C{TEST-CHALLENGE}; set C{rounds} and C{held} for the
    whole class, or call L{use_method} before connecting.
    """

    rounds = 1
    held = False

    def make_broker(self) -> Broker:
        if not hasattr(self, "method"):
            self.method = ChallengeResponse(USERS, self.rounds, self.held)
        return Broker(
            self.config, clock=self.clock, store=self.store, authentication_methods=[self.method]
        )

    def use_method(self, rounds: int = 1, held: bool = False) -> None:
        """Rebuild the broker with another C{TEST-CHALLENGE} method."""
        self.method = ChallengeResponse(USERS, rounds, held)
        self._build()

    def begin(
        self, client_id: str = "c1", user: bytes | None = b"alice", **kwargs: Any
    ) -> FakeClient:
        """Open a connection and send a CONNECT naming C{TEST-CHALLENGE}."""
        client = self.open_connection(5)
        props = Properties(authentication_method=METHOD, authentication_data=user)
        client.send(Connect(client_id, 5, properties=props, **kwargs))
        return client

    def challenge(self, client: FakeClient) -> bytes:
        """Read the server's AUTH 0x18, check its method, return its data."""
        packet = client.expect(Auth)
        self.assertEqual(packet.reason_code, ReasonCode.CONTINUE_AUTHENTICATION)
        # [MQTT-4.12.0-5]
        self.assertEqual(packet.properties.authentication_method, METHOD)
        assert packet.properties.authentication_data is not None
        return packet.properties.authentication_data

    def respond(self, client: FakeClient, nonce: bytes, secret: bytes = SECRET) -> None:
        """Answer a challenge."""
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(secret, nonce)))

    def authenticated(self, client_id: str = "c1", **kwargs: Any) -> FakeClient:
        """A client connected through the whole one-round exchange."""
        client = self.begin(client_id, **kwargs)
        self.respond(client, self.challenge(client))
        client.connack = client.expect(ConnAck)
        self.assertEqual(client.connack.reason_code, 0)
        return client

    def assertRefused(self, client: FakeClient, code: int) -> None:
        """The server answered CONNACK C{code} (and nothing else) and closed."""
        packets = client.received()
        self.assertEqual(
            [(type(p).__name__, getattr(p, "reason_code", None)) for p in packets],
            [("ConnAck", code)],
        )
        self.assertTrue(client.disconnecting)


class InterfaceTests(EnhancedAuthenticationTestCase):
    """
    The interface methods implement, and the broker's checks of what they give.
    """

    def test_interfaces(self) -> None:
        """The test method and its exchanges provide the interfaces."""
        self.assertTrue(verifyObject(IAuthenticationMethod, self.method))
        exchange = self.method.start("c1", None, "mqtt", False)
        self.assertTrue(verifyObject(IAuthenticationExchange, exchange))

    def test_failure_needs_an_error_code(self) -> None:
        """An authentication failure with a code below 0x80 is refused."""
        self.assertRaises(ValueError, AuthFailure, 0)
        self.assertRaises(ValueError, AuthFailure, ReasonCode.CONTINUE_AUTHENTICATION)
        self.assertEqual(AuthFailure().reason_code, ReasonCode.NOT_AUTHORIZED)

    def test_two_methods_of_one_name(self) -> None:
        """A broker cannot offer two methods under one name."""
        other = ChallengeResponse({})
        with self.assertRaises(ValueError):
            Broker(
                self.config,
                clock=self.clock,
                store=self.store,
                authentication_methods=[self.method, other],
            )


class ConnectExchangeTests(EnhancedAuthenticationTestCase):
    """
    The exchange a CONNECT with an Authentication Method starts.
    """

    def test_method_not_offered(self) -> None:
        """
        If a CONNECT names a method the broker does not offer, the broker
        answers CONNACK 0x8C (Bad authentication method) and closes
        [MQTT-4.12.0-1]; the offered method is not started.
        """
        client = self.open_connection(5)
        client.send(Connect("c1", 5, properties=Properties(authentication_method="SCRAM-SHA-1")))
        self.assertRefused(client, ReasonCode.BAD_AUTHENTICATION_METHOD)
        self.assertNotIn("c1", self.broker.sessions)
        self.assertEqual(self.method.started, [])

    def test_method_names_are_case_sensitive(self) -> None:
        """A method is found by its exact name: another case gets 0x8C."""
        client = self.open_connection(5)
        client.send(Connect("c1", 5, properties=Properties(authentication_method=METHOD.lower())))
        self.assertRefused(client, ReasonCode.BAD_AUTHENTICATION_METHOD)

    def test_challenge_and_success(self) -> None:
        """
        The method's challenge goes to the client in AUTH 0x18 with the
        CONNECT's method [MQTT-4.12.0-2] [MQTT-4.12.0-5]; the client's
        answer in AUTH 0x18 [MQTT-4.12.0-3] goes to the method, and its
        success is a CONNACK 0x00 with the method and its final data
        [MQTT-4.12.0-5]. The method learns the client id, user name and
        listener.
        """
        client = self.begin("c1", username="u")
        nonce = self.challenge(client)
        self.assertNotIn("c1", self.broker.sessions)
        self.respond(client, nonce)
        connack = client.expect(ConnAck)
        self.assertEqual(connack.reason_code, ReasonCode.SUCCESS)
        self.assertEqual(connack.properties.authentication_method, METHOD)
        self.assertEqual(connack.properties.authentication_data, b"welcome alice")
        self.assertIn("c1", self.broker.sessions)
        self.assertEqual(self.method.started, [("c1", "u", "mqtt", False)])
        client.send(PingReq())
        self.assertEqual(client.received(), [PingResp()])

    def test_success_without_challenge(self) -> None:
        """
        A method that needs nothing but the CONNECT's Authentication Data
        lets the client in with CONNACK at once, naming the method.
        """
        self.use_method(rounds=0)
        client = self.begin()
        connack = client.expect(ConnAck)
        self.assertEqual(connack.reason_code, ReasonCode.SUCCESS)
        self.assertEqual(connack.properties.authentication_method, METHOD)
        self.assertEqual(connack.properties.authentication_data, b"welcome alice")

    def test_several_rounds(self) -> None:
        """
        The exchange goes on for as many AUTH round trips as the method
        asks for, each with a new challenge.
        """
        self.use_method(rounds=3)
        client = self.begin()
        nonces = []
        for _ in range(3):
            nonce = self.challenge(client)
            nonces.append(nonce)
            self.assertFalse(client.has_unread())
            self.respond(client, nonce)
        self.assertEqual(len(set(nonces)), 3)
        self.assertEqual(client.expect(ConnAck).reason_code, ReasonCode.SUCCESS)

    def test_assigned_client_identifier(self) -> None:
        """
        A client without an identifier is authenticated under the one the
        broker assigns it, which the CONNACK carries.
        """
        client = self.begin("")
        self.respond(client, self.challenge(client))
        connack = client.expect(ConnAck)
        assigned = connack.properties.assigned_client_identifier
        self.assertEqual(self.method.started, [(assigned, None, "mqtt", False)])

    def test_wrong_answer(self) -> None:
        """
        If the method refuses the client's answer, the broker sends CONNACK
        with its reason code (0x87) and closes [MQTT-4.12.0-4]; no session
        exists.
        """
        client = self.begin()
        self.respond(client, self.challenge(client), b"guess")
        self.assertRefused(client, ReasonCode.NOT_AUTHORIZED)
        self.assertNotIn("c1", self.broker.sessions)

    def test_refused_at_connect(self) -> None:
        """
        If the method refuses the CONNECT's data (an unknown user: 0x86),
        CONNACK carries that code, without a challenge.
        """
        client = self.begin(user=b"mallory")
        self.assertRefused(client, ReasonCode.BAD_USER_NAME_OR_PASSWORD)

    def test_not_admitted_until_success(self) -> None:
        """
        Nothing of the client is admitted before the method succeeds: while
        it answers challenges, and after it fails or goes away, there is no
        session, its will is not published, and a connected client with
        the same identifier is not taken over. Success takes it over.
        """
        watcher = self.connect_client("watcher", 5)
        watcher.subscribe("will")
        old = self.connect_client("c1", 5)
        will = Will("will", b"gone")

        failing = self.begin("c1", will=will)
        self.respond(failing, self.challenge(failing), b"guess")
        self.assertRefused(failing, ReasonCode.NOT_AUTHORIZED)
        failing.finish_close()

        dropped = self.begin("c1", will=will)
        self.challenge(dropped)
        self.assertIsNone(self.broker.sessions["c1"].will)
        dropped.drop()

        self.assertIs(self.broker.sessions["c1"].link, old.protocol)
        self.assertFalse(old.disconnecting)
        self.assertEqual(watcher.received(), [])

        self.authenticated("c1", will=will)
        self.assertClosedWith(old, ReasonCode.SESSION_TAKEN_OVER)
        self.assertEqual(watcher.received(), [])

    def test_password_authenticator_not_asked(self) -> None:
        """
        A client with an Authentication Method is authenticated by the
        method alone (as in Mosquitto); one without is still checked by the
        password authenticator.
        """

        @implementer(IAuthenticator)
        class RefuseAll:
            def __init__(self) -> None:
                self.asked: list[str] = []

            def authenticate(
                self, client_id: str, username: str | None, password: bytes | None, listener: str
            ) -> Deferred[int]:
                self.asked.append(client_id)
                return succeed(ReasonCode.BAD_USER_NAME_OR_PASSWORD)

        refuse_all = RefuseAll()
        self.broker = Broker(
            self.config,
            clock=self.clock,
            store=self.store,
            authenticator=refuse_all,
            authentication_methods=[self.method],
        )
        self.successResultOf(self.broker.start())
        self.factory.broker = self.broker
        self.authenticated("c1", username="u", password=b"p")
        plain = self.connect_client("c2", 5, username="u", password=b"p")
        assert plain.connack is not None
        self.assertEqual(plain.connack.reason_code, ReasonCode.BAD_USER_NAME_OR_PASSWORD)
        self.assertEqual(refuse_all.asked, ["c2"])

    def test_method_error(self) -> None:
        """
        If the method fails (its Deferred errs), the error is logged and
        the client gets CONNACK 0x80 (Unspecified error).
        """
        exchange = self.method.start("c1", None, "mqtt", False)
        self.patch(exchange.__class__, "step", lambda self, data: fail(RuntimeError("boom")))
        client = self.begin()
        self.assertRefused(client, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_method_answers_nonsense(self) -> None:
        """
        If the method answers with something other than an outcome, that
        is a failure of the method: logged, and CONNACK 0x80.
        """
        exchange = self.method.start("c1", None, "mqtt", False)
        self.patch(exchange.__class__, "step", lambda self, data: succeed(0))
        client = self.begin()
        self.assertRefused(client, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)

    def test_failure_code_not_for_connack(self) -> None:
        """
        A failure code CONNACK cannot carry (0x8E Session taken over) is
        sent as 0x87 (Not authorized).
        """
        exchange = self.method.start("c1", None, "mqtt", False)
        self.patch(
            exchange.__class__,
            "step",
            lambda self, data: succeed(AuthFailure(ReasonCode.SESSION_TAKEN_OVER)),
        )
        self.assertRefused(self.begin(), ReasonCode.NOT_AUTHORIZED)


class ExchangeRulesTests(EnhancedAuthenticationTestCase):
    """
    What a client may send during the CONNECT's exchange. A violation is a
    Protocol Error: CONNACK 0x82 (the server sends no DISCONNECT before a
    successful CONNACK [MQTT-3.14.0-1]), then the connection closes, with
    nothing admitted.
    """

    def assertProtocolError(self, client: FakeClient) -> None:
        self.assertRefused(client, ReasonCode.PROTOCOL_ERROR)
        self.assertNotIn("c1", self.broker.sessions)

    def test_auth_with_another_method(self) -> None:
        """[MQTT-4.12.0-5] The client's AUTH must repeat the CONNECT's method."""
        client = self.begin()
        nonce = self.challenge(client)
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce), "OTHER"))
        self.assertProtocolError(client)

    def test_auth_without_method(self) -> None:
        """[MQTT-4.12.0-5] An AUTH without Authentication Method is a protocol error."""
        client = self.begin()
        self.challenge(client)
        client.send(Auth(ReasonCode.CONTINUE_AUTHENTICATION, NO_PROPERTIES))
        self.assertProtocolError(client)

    def test_reauthenticate_before_connack(self) -> None:
        """
        [MQTT-4.12.1-1] Re-authentication (AUTH 0x19) begins only after
        CONNACK.
        """
        client = self.begin()
        self.challenge(client)
        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"alice"))
        self.assertProtocolError(client)

    def test_client_auth_success(self) -> None:
        """Only the server sends AUTH 0x00 (section 3.15.2.1)."""
        client = self.begin()
        self.challenge(client)
        client.send(auth(ReasonCode.SUCCESS, b"x"))
        self.assertProtocolError(client)

    def test_auth_before_challenge(self) -> None:
        """
        [MQTT-4.12.0-3] The client's AUTH answers a challenge: sent before
        one (right behind CONNECT), it is a protocol error.
        """
        client = self.open_connection(5)
        connect = Connect(
            "c1",
            5,
            properties=Properties(authentication_method=METHOD, authentication_data=b"alice"),
        )
        client.send_bytes(
            encode(connect, 5) + encode(auth(ReasonCode.CONTINUE_AUTHENTICATION, b"x"), 5)
        )
        self.assertProtocolError(client)

    def test_auth_while_method_works(self) -> None:
        """
        An AUTH while the method works on the last one is a protocol error
        too; the method's step is cancelled.
        """
        self.use_method(held=True)
        client = self.begin()
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, b"x"))
        self.assertProtocolError(client)
        self.assertEqual(self.method.cancelled, 1)

    def test_publish_during_exchange(self) -> None:
        """
        [MQTT-3.1.2-30] While the exchange waits for its AUTH, the client
        may send nothing but AUTH or DISCONNECT: a PUBLISH is a protocol
        error and is not routed.
        """
        watcher = self.connect_client("watcher", 5)
        watcher.subscribe("t")
        client = self.begin()
        self.challenge(client)
        client.send(Publish("t", b"x"))
        self.assertProtocolError(client)
        self.assertEqual(watcher.received(), [])

    def test_ping_during_exchange(self) -> None:
        """[MQTT-3.1.2-30] PINGREQ is no exception."""
        client = self.begin()
        self.challenge(client)
        client.send(PingReq())
        self.assertProtocolError(client)

    def test_packets_behind_final_auth_wait(self) -> None:
        """
        Packets the client sends right behind its last AUTH wait for the
        CONNACK, as packets behind a CONNECT do, and are handled after it
        in order.
        """
        client = self.begin()
        nonce = self.challenge(client)
        client.send_bytes(
            encode(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce)), 5)
            + encode(Subscribe(1, (Subscription("t"),)), 5)
            + encode(PingReq(), 5)
        )
        packets = client.received()
        self.assertEqual([type(p) for p in packets], [ConnAck, SubAck, PingResp])

    def test_packets_behind_slow_final_auth_wait(self) -> None:
        """
        Packets sent while the method works on the last AUTH wait too, and
        the connection is not read meanwhile.
        """
        self.use_method(held=True)
        client = self.begin()
        self.assertEqual(client.transport.producerState, "paused")
        self.method.release()
        nonce = self.challenge(client)
        self.assertEqual(client.transport.producerState, "producing")
        self.respond(client, nonce)
        self.assertEqual(client.transport.producerState, "paused")
        client.send(Publish("t", b"x", 1, packet_id=7))
        self.assertEqual(client.received(), [])
        self.method.release()
        packets = client.received()
        self.assertEqual([type(p) for p in packets], [ConnAck, PubAck])
        self.assertEqual(client.transport.producerState, "producing")

    def test_packets_behind_auth_that_is_not_final(self) -> None:
        """
        [MQTT-3.1.2-30] If the server challenges again, the packets the
        client sent behind its AUTH came before CONNACK in the middle of the
        exchange: a protocol error, and the new challenge is not sent.
        """
        self.use_method(rounds=2)
        client = self.begin()
        nonce = self.challenge(client)
        client.send_bytes(
            encode(auth(ReasonCode.CONTINUE_AUTHENTICATION, answer(SECRET, nonce)), 5)
            + encode(Publish("t", b"x"), 5)
        )
        self.assertProtocolError(client)

    def test_packets_behind_connect_before_challenge(self) -> None:
        """
        The same holds for packets behind the CONNECT when the method
        challenges it.
        """
        client = self.open_connection(5)
        connect = Connect(
            "c1",
            5,
            properties=Properties(authentication_method=METHOD, authentication_data=b"alice"),
        )
        client.send_bytes(encode(connect, 5) + encode(PingReq(), 5))
        self.assertProtocolError(client)

    def test_disconnect_during_exchange(self) -> None:
        """
        A client may give up with DISCONNECT while the exchange waits for
        it [MQTT-3.1.2-30]: the connection closes, nothing is sent, and
        nothing was admitted.
        """
        client = self.begin(will=Will("will", b"w"))
        self.challenge(client)
        client.send(Disconnect(ReasonCode.DISCONNECT_WITH_WILL_MESSAGE))
        self.assertClosedWith(client, None)
        client.finish_close()
        self.assertNotIn("c1", self.broker.sessions)

    def test_disconnect_while_method_works(self) -> None:
        """
        A DISCONNECT sent while the method works ends the connection once
        the method challenges again.
        """
        self.use_method(held=True)
        client = self.begin()
        client.send(Disconnect())
        self.assertFalse(client.disconnecting)
        self.method.release()
        self.assertClosedWith(client, None)
        self.assertNotIn("c1", self.broker.sessions)


class ExchangeTimeTests(EnhancedAuthenticationTestCase):
    """
    The CONNECT timeout bounds the whole exchange, and a connection that
    goes away ends it.
    """

    def test_unanswered_challenge(self) -> None:
        """
        A client that never answers the challenge is closed when the CONNECT
        timeout passes, without CONNACK; an answer after that is ignored.
        """
        client = self.begin()
        nonce = self.challenge(client)
        self.clock.advance(CONNECT_TIMEOUT - 0.5)
        self.assertFalse(client.disconnecting)
        self.clock.advance(0.5)
        self.assertClosedWith(client, None)
        self.respond(client, nonce)
        self.assertEqual(client.received(), [])
        client.finish_close()
        self.assertNotIn("c1", self.broker.sessions)

    def test_timeout_counts_from_connect(self) -> None:
        """
        The timeout bounds the whole exchange, not each step: a client
        answering each challenge in time is still closed when it runs out.
        """
        self.use_method(rounds=5)
        client = self.begin()
        for _ in range(3):
            nonce = self.challenge(client)
            self.clock.advance(CONNECT_TIMEOUT / 3)
            self.respond(client, nonce)
        self.assertClosedWith(client, None)

    def test_slow_method(self) -> None:
        """
        A method that does not answer within the CONNECT timeout has its
        step cancelled, and the connection closes without CONNACK.
        """
        self.use_method(held=True)
        client = self.begin()
        self.clock.advance(CONNECT_TIMEOUT)
        self.assertClosedWith(client, None)
        self.assertEqual(self.method.cancelled, 1)
        client.finish_close()
        self.assertNotIn("c1", self.broker.sessions)

    def test_connection_lost_during_exchange(self) -> None:
        """
        If the connection is lost while the method works, its step is
        cancelled; nothing is admitted and the CONNECT timer is gone.
        """
        self.use_method(held=True)
        client = self.begin(will=Will("will", b"w"))
        client.drop()
        self.assertEqual(self.method.cancelled, 1)
        self.assertNotIn("c1", self.broker.sessions)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_abandoned_exchange_sends_nothing(self) -> None:
        """
        Once abandoned, an exchange neither answers the client nor ends
        its CONNECT again.
        """
        sent: list[object] = []

        class Link:
            listener = "mqtt"
            peer = "?"

            def send(self, packet: object) -> None:
                sent.append(packet)

            def challenge(self, packet: object) -> None:
                sent.append(packet)

            def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
                sent.append(reason_code)
                return succeed(None)

        method = ChallengeResponse(USERS, held=True)
        authentication = EnhancedAuthentication(method, Link(), "c1", None)
        outcomes: list[AuthOutcome | None] = []
        authentication.authenticate(b"alice").addCallback(outcomes.append)
        authentication.abandon()
        authentication.abandon()
        authentication.receive(auth(ReasonCode.RE_AUTHENTICATE, b"alice"))
        self.assertEqual(outcomes, [None])
        self.assertEqual(sent, [])
        self.assertEqual(method.cancelled, 1)
        self.assertEqual(len(method.started), 1)


class ReauthenticationTests(EnhancedAuthenticationTestCase):
    """
    Re-authentication after CONNACK (section 4.12.1).
    """

    def reauthenticate(self, client: FakeClient, user: bytes = b"alice") -> None:
        client.send(auth(ReasonCode.RE_AUTHENTICATE, user))

    def test_reauthentication(self) -> None:
        """
        A client that connected with a method may re-authenticate with AUTH
        0x19 and the same method [MQTT-4.12.1-1]: a new exchange of the
        method runs over AUTH 0x18 and ends with AUTH 0x00, with the method
        and its final data; the connection goes on.
        """
        client = self.authenticated()
        self.reauthenticate(client)
        self.respond(client, self.challenge(client))
        self.assertEqual(
            client.received(),
            [
                Auth(
                    ReasonCode.SUCCESS,
                    Properties(authentication_method=METHOD, authentication_data=b"welcome alice"),
                )
            ],
        )
        self.assertEqual(self.method.started[-1], ("c1", None, "mqtt", True))
        client.send(PingReq())
        self.assertEqual(client.received(), [PingResp()])
        self.reauthenticate(client)
        self.respond(client, self.challenge(client))
        self.assertEqual(client.expect(Auth).reason_code, ReasonCode.SUCCESS)

    def test_traffic_goes_on(self) -> None:
        """
        While a re-authentication runs, the client's other packets are
        handled as usual (section 4.12.1).
        """
        self.use_method(held=True)
        client = self.begin()
        self.method.release()
        self.respond(client, self.challenge(client))
        self.method.release()
        client.expect(ConnAck)
        sub = self.connect_client("sub", 5)
        sub.subscribe("t")
        self.reauthenticate(client)
        self.assertEqual(client.transport.producerState, "producing")
        client.publish("t", b"during", 1)
        self.assertEqual(client.received(), [PubAck(1)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"during"])
        self.method.release()
        nonce = self.challenge(client)
        client.publish("t", b"still", 0)
        self.respond(client, nonce)
        self.method.release()
        self.assertEqual(client.expect(Auth).reason_code, ReasonCode.SUCCESS)
        self.assertEqual([p.payload for p in sub.publishes()], [b"still"])

    def test_failure(self) -> None:
        """
        If re-authentication fails, the broker sends DISCONNECT with the
        method's reason code and closes [MQTT-4.12.1-2]; as for any close
        on an error, the will is published.
        """
        watcher = self.connect_client("watcher", 5)
        watcher.subscribe("will")
        client = self.authenticated(will=Will("will", b"w"))
        self.reauthenticate(client)
        self.respond(client, self.challenge(client), b"guess")
        self.assertClosedWith(client, ReasonCode.NOT_AUTHORIZED)
        client.finish_close()
        self.assertEqual([p.payload for p in watcher.publishes()], [b"w"])

    def test_failure_code_not_for_disconnect(self) -> None:
        """
        A failure code DISCONNECT cannot carry (0x86 Bad user name or
        password is for CONNACK only) becomes 0x87 (Not authorized).
        """
        client = self.authenticated()
        self.reauthenticate(client, b"mallory")
        self.assertClosedWith(client, ReasonCode.NOT_AUTHORIZED)

    def test_other_method(self) -> None:
        """
        [MQTT-4.12.1-1] A re-authentication must use the CONNECT's method:
        another is a protocol error (DISCONNECT 0x82).
        """
        client = self.authenticated()
        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"alice", "OTHER"))
        self.assertClosedWith(client, ReasonCode.PROTOCOL_ERROR)
        self.assertEqual(len(self.method.started), 1)

    def test_without_method_at_connect(self) -> None:
        """
        A client that connected without a method may not send AUTH, not
        even to re-authenticate (section 3.15, [MQTT-4.12.0-7]): DISCONNECT
        0x82.
        """
        client = self.connect_client("c1", 5)
        client.send(auth(ReasonCode.RE_AUTHENTICATE, b"alice"))
        self.assertClosedWith(client, ReasonCode.PROTOCOL_ERROR)
        self.assertEqual(self.method.started, [])

    def test_answer_without_challenge(self) -> None:
        """
        [MQTT-4.12.0-3] After CONNACK, AUTH 0x18 answers only a challenge of
        a re-authentication: otherwise DISCONNECT 0x82.
        """
        client = self.authenticated()
        client.send(auth(ReasonCode.CONTINUE_AUTHENTICATION, b"x"))
        self.assertClosedWith(client, ReasonCode.PROTOCOL_ERROR)

    def test_reauthenticate_during_reauthentication(self) -> None:
        """
        A second AUTH 0x19 while a re-authentication runs is a protocol
        error; the method's step is cancelled.
        """
        self.use_method(rounds=0, held=True)
        client = self.begin()
        self.method.release()
        client.expect(ConnAck)
        self.reauthenticate(client)
        self.reauthenticate(client)
        self.assertClosedWith(client, ReasonCode.PROTOCOL_ERROR)
        self.assertEqual(self.method.cancelled, 1)

    def test_connection_lost(self) -> None:
        """If the connection is lost during re-authentication, the method's step is cancelled."""
        self.use_method(rounds=0, held=True)
        client = self.begin()
        self.method.release()
        client.expect(ConnAck)
        self.reauthenticate(client)
        client.drop()
        self.assertEqual(self.method.cancelled, 1)
        self.assertEqual(self.method.waiting, [])

    def test_taken_over(self) -> None:
        """
        If the session is taken over during re-authentication, the old
        connection's exchange is cancelled.
        """
        self.use_method(rounds=0, held=True)
        client = self.begin()
        self.method.release()
        client.expect(ConnAck)
        self.reauthenticate(client)
        self.connect_client("c1", 5)
        self.assertClosedWith(client, ReasonCode.SESSION_TAKEN_OVER)
        self.assertEqual(self.method.cancelled, 1)

    def test_method_error(self) -> None:
        """
        If the method fails during re-authentication, the error is logged
        and the client gets DISCONNECT 0x80 (Unspecified error).
        """
        client = self.authenticated()
        exchange = self.method.start("c1", None, "mqtt", True)
        self.patch(exchange.__class__, "step", lambda self, data: fail(RuntimeError("boom")))
        self.reauthenticate(client)
        self.assertClosedWith(client, ReasonCode.UNSPECIFIED_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
