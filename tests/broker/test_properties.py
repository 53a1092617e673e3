# -*- test-case-name: tests.broker.test_properties -*-
"""
Tests for what the broker does with MQTT 5 message properties and problem
information: the Payload Format Indicator check, properties passed through
unchanged on every delivery path, reason strings and Request Problem
Information, and the reason codes of PUBLISH acknowledgements.
"""

from __future__ import annotations

from dataclasses import replace

from mqttx.broker.replies import is_utf8
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import (
    ConnAck,
    Disconnect,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Will,
)
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from tests.helpers import BrokerTestCase, FakeClient

#: Properties a publisher may give a message, all to be forwarded as sent.
MESSAGE_PROPERTIES = Properties(
    payload_format_indicator=1,
    content_type="application/json; charset=utf-8",
    response_topic="replies/for/me",
    correlation_data=b"\x00\xffid-1",
    user_property=(("b", "2"), ("a", "1"), ("b", "2"), ("a", "")),
)

#: Well-formed UTF-8 that is not ASCII: a 2-, 3- and 4-byte sequence.
UTF8_TEXT = "héllo ✓ 𝄞".encode()

#: Payloads that are not well-formed UTF-8 (RFC 3629).
NOT_UTF8 = (
    b"\xff",  # never in UTF-8
    b"abc\x80",  # a lone continuation byte
    b"\xe2\x82",  # a truncated sequence
    b"\xc0\xaf",  # an overlong form of "/"
    b"\xed\xa0\x80",  # an encoded surrogate, U+D800
    b"\xf4\x90\x80\x80",  # above U+10FFFF
)

NOT_UTF8_STRING = Properties(reason_string="payload is not valid UTF-8")
NOT_FOUND_STRING = Properties(reason_string="packet identifier not found")
UTF8 = Properties(payload_format_indicator=1)
SESSION = Properties(session_expiry_interval=300)
NO_PROBLEM_INFORMATION = Properties(request_problem_information=0)


class IsUTF8Tests(BrokerTestCase):
    """Tests for L{is_utf8}."""

    def test_well_formed(self) -> None:
        """ASCII, multi-byte sequences, U+0000 and the empty payload are UTF-8."""
        for data in (b"", b"plain", UTF8_TEXT, b"nul\x00inside", "\U0010ffff".encode()):
            self.assertTrue(is_utf8(data), data)

    def test_ill_formed(self) -> None:
        """Invalid bytes, truncation, overlong forms, surrogates and values above U+10FFFF are not."""
        for data in NOT_UTF8:
            self.assertFalse(is_utf8(data), data)


class PayloadFormatTests(BrokerTestCase):
    """
    A PUBLISH (or will) with Payload Format Indicator 1 must have a UTF-8
    payload; the broker checks it (section 3.3.2.3.2, 3.1.3.2.3) unless
    C{validate_payload_format} is off.
    """

    def subscriber(self) -> FakeClient:
        sub = self.connect_client("sub", 5)
        sub.subscribe("t/#", qos=2)
        return sub

    def test_qos1_refused_with_puback_0x99(self) -> None:
        """
        If a QoS 1 PUBLISH says its payload is UTF-8 and it is not, the
        broker answers PUBACK 0x99 (Payload format invalid) with a Reason
        String and does not deliver it (section 3.3.2.3.2).
        """
        sub = self.subscriber()
        pub = self.connect_client("pub", 5)
        for pid, payload in enumerate(NOT_UTF8, 1):
            pub.publish("t/a", payload, 1, properties=UTF8, packet_id=pid)
            self.assertEqual(pub.received(), [PubAck(pid, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING)])
        self.assertEqual(sub.received(), [])
        self.assertFalse(pub.disconnecting)

    def test_qos2_refused_with_pubrec_0x99(self) -> None:
        """
        If a QoS 2 PUBLISH says its payload is UTF-8 and it is not, the
        broker answers PUBREC 0x99, which ends the exchange (section 4.3.3):
        the message is not delivered, and the packet identifier is free again.
        """
        sub = self.subscriber()
        pub = self.connect_client("pub", 5)
        pub.publish("t/a", b"\xff", 2, properties=UTF8, packet_id=5)
        self.assertEqual(pub.received(), [PubRec(5, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING)])
        self.assertEqual(sub.received(), [])
        self.assertNotIn(5, self.broker.sessions["pub"].inbound_qos2)
        pub.publish("t/a", b"ok", 2, properties=UTF8, packet_id=5)
        self.assertEqual(pub.received(), [PubRec(5)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"ok"])

    def test_qos0_refused_with_disconnect_0x99(self) -> None:
        """
        A QoS 0 PUBLISH has no acknowledgement to refuse it with: a payload
        declared UTF-8 that is not gets DISCONNECT 0x99 with a Reason String
        (section 3.3.2.3.2), and neither it nor what the client sent after it
        is delivered.
        """
        sub = self.subscriber()
        pub = self.connect_client("pub", 5)
        pub.send_bytes(
            encode(Publish("t/a", b"\xc0\xaf", properties=UTF8), 5) + encode(Publish("t/b", b"after"), 5)
        )
        self.assertEqual(pub.received(), [Disconnect(ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING)])
        self.assertTrue(pub.disconnecting)
        self.assertEqual(sub.received(), [])

    def test_refused_retained_message_is_not_kept(self) -> None:
        """A refused retained message does not replace the topic's retained message."""
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/r", b"kept", 1, retain=True)
        pub.publish("t/r", b"\xff", 1, retain=True, properties=UTF8, packet_id=9)
        self.assertEqual(pub.received(), [PubAck(9, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING)])
        sub = self.connect_client("sub", 5)
        sub.subscribe("t/r")
        self.assertEqual([p.payload for p in sub.publishes()], [b"kept"])

    def test_utf8_payload_delivered(self) -> None:
        """
        A payload declared UTF-8 that is (non-ASCII included) is delivered
        with its indicator [MQTT-3.3.2-4]; without the indicator, or with 0,
        any bytes go through.
        """
        sub = self.subscriber()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/a", UTF8_TEXT, 1, properties=UTF8)
        pub.publish_acked("t/a", b"\xff", 1)
        pub.publish_acked("t/a", b"\xff", 1, properties=Properties(payload_format_indicator=0))
        got = sub.publishes()
        self.assertEqual(
            [(p.payload, p.properties.payload_format_indicator) for p in got],
            [(UTF8_TEXT, 1), (b"\xff", None), (b"\xff", 0)],
        )

    def test_validation_can_be_turned_off(self) -> None:
        """
        With C{validate_payload_format: false} (validation is a MAY), a
        payload declared UTF-8 that is not is delivered, the indicator
        unaltered [MQTT-3.3.2-4].
        """
        self.use_config(validate_payload_format=False)
        sub = self.subscriber()
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/a", b"\xff", 1, properties=UTF8)
        [got] = sub.publishes()
        self.assertEqual((got.payload, got.properties), (b"\xff", UTF8))

    def test_will_refused_with_connack_0x99(self) -> None:
        """
        If a will says its payload is UTF-8 and it is not, CONNACK refuses
        the connection with 0x99 and a Reason String (section 3.1.3.2.3); no
        session is made, so no will can ever be published.
        """
        client = self.connect_client("c1", 5, will=Will("w", b"\xed\xa0\x80", properties=UTF8))
        self.assertEqual(
            client.connack,
            ConnAck(
                False, ReasonCode.PAYLOAD_FORMAT_INVALID, Properties(reason_string="will payload is not valid UTF-8")
            ),
        )
        self.assertTrue(client.disconnecting)
        self.assertNotIn("c1", self.broker.sessions)

    def test_utf8_will_accepted(self) -> None:
        """A will declared UTF-8 that is, or one not checked, is accepted and published."""
        for config, payload in ((True, UTF8_TEXT), (False, b"\xff")):
            self.use_config(validate_payload_format=config)
            watcher = self.subscriber()
            client = self.connect_client("c1", 5, will=Will("t/will", payload, properties=UTF8))
            assert client.connack is not None
            self.assertEqual(client.connack.reason_code, 0)
            client.drop()
            [got] = watcher.publishes()
            self.assertEqual((got.payload, got.properties), (payload, UTF8))


class PassThroughTests(BrokerTestCase):
    """
    Payload Format Indicator, Content Type, Response Topic, Correlation Data
    and User Properties reach 5.0 subscribers exactly as sent, on every path
    a message takes [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
    [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]; 3.1.1 subscribers get
    the payload alone.
    """

    def offline(self, client_id: str, level: int, topic_filter: str = "t/#", qos: int = 2) -> None:
        props = SESSION if level == 5 else NO_PROPERTIES
        sub = self.connect_client(client_id, level, clean_start=False, properties=props)
        sub.subscribe(topic_filter, qos)
        sub.disconnect()

    def resume(self, client_id: str, level: int) -> FakeClient:
        props = SESSION if level == 5 else NO_PROPERTIES
        client = self.connect_client(client_id, level, clean_start=False, properties=props)
        assert client.connack is not None
        self.assertTrue(client.connack.session_present)
        return client

    def test_live_delivery_at_each_qos(self) -> None:
        """Live deliveries at QoS 0, 1 and 2 carry the properties as sent."""
        sub5 = self.connect_client("sub5", 5)
        sub5.subscribe("t/#", 2)
        sub3 = self.connect_client("sub3", 4)
        sub3.subscribe("t/#", 2)
        pub = self.connect_client("pub", 5)
        for qos in (0, 1, 2):
            pub.publish_acked("t/a", b"%d" % qos, qos, properties=MESSAGE_PROPERTIES)
        got = sub5.publishes()
        self.assertEqual([(p.payload, p.qos, p.properties) for p in got], [
            (b"0", 0, MESSAGE_PROPERTIES), (b"1", 1, MESSAGE_PROPERTIES), (b"2", 2, MESSAGE_PROPERTIES)
        ])
        self.assertEqual([(p.payload, p.properties) for p in sub3.publishes()], [
            (b"0", NO_PROPERTIES), (b"1", NO_PROPERTIES), (b"2", NO_PROPERTIES)
        ])

    def test_queued_delivery(self) -> None:
        """
        Messages queued for an offline persistent session carry the
        properties as sent when the session resumes; a 3.1.1 session's get
        the payload alone.
        """
        self.offline("sub5", 5)
        self.offline("sub3", 4)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/a", b"one", 1, properties=MESSAGE_PROPERTIES)
        pub.publish_acked("t/b", b"two", 2, properties=MESSAGE_PROPERTIES)
        got = self.resume("sub5", 5).publishes()
        self.assertEqual(
            [(p.payload, p.qos, p.properties) for p in got],
            [(b"one", 1, MESSAGE_PROPERTIES), (b"two", 2, MESSAGE_PROPERTIES)],
        )
        got = self.resume("sub3", 4).publishes()
        self.assertEqual([(p.payload, p.properties) for p in got], [(b"one", NO_PROPERTIES), (b"two", NO_PROPERTIES)])

    def test_delivery_queued_behind_the_window(self) -> None:
        """
        A message that waited in the queue for the client's Receive Maximum
        goes out with its properties once the window opens.
        """
        sub = self.connect_client("sub", 5, properties=Properties(receive_maximum=1))
        sub.subscribe("t/#", 1)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/a", b"first", 1)
        pub.publish_acked("t/a", b"second", 1, properties=MESSAGE_PROPERTIES)
        [first] = sub.publishes()
        self.assertEqual(first.payload, b"first")
        sub.ack([first])
        [second] = sub.publishes()
        self.assertEqual((second.payload, second.properties), (b"second", MESSAGE_PROPERTIES))

    def test_resent_inflight_delivery(self) -> None:
        """
        An unacknowledged delivery sent again (DUP) on resumption carries the
        properties as sent [MQTT-4.4.0-1].
        """
        sub = self.connect_client("sub", 5, clean_start=False, properties=SESSION)
        sub.subscribe("t/#", 1)
        self.connect_client("pub", 5).publish_acked("t/a", b"m", 1, properties=MESSAGE_PROPERTIES)
        [first] = sub.publishes()
        sub.drop()
        [again] = self.resume("sub", 5).publishes()
        self.assertEqual((again.dup, again.payload, again.properties), (True, b"m", MESSAGE_PROPERTIES))
        self.assertEqual(first.properties, MESSAGE_PROPERTIES)

    def test_retained_delivery(self) -> None:
        """
        A retained message sent to a new subscription carries the properties
        as sent, with RETAIN set [MQTT-3.3.1-8].
        """
        pub = self.connect_client("pub", 5)
        pub.publish_acked("t/r", b"kept", 1, retain=True, properties=MESSAGE_PROPERTIES)
        sub5 = self.connect_client("sub5", 5)
        sub5.subscribe("t/#", 1)
        [got] = sub5.publishes()
        self.assertEqual((got.retain, got.payload, got.properties), (True, b"kept", MESSAGE_PROPERTIES))
        sub3 = self.connect_client("sub3", 4)
        sub3.subscribe("t/#", 1)
        [got] = sub3.publishes()
        self.assertEqual((got.retain, got.payload, got.properties), (True, b"kept", NO_PROPERTIES))

    def test_will(self) -> None:
        """
        A will's properties reach subscribers as sent (section 3.1.3.2),
        user properties in order [MQTT-3.1.3-10], without its Will Delay
        Interval, which is the will's and not the message's; live and queued.
        """
        self.offline("queued", 5)
        live = self.connect_client("live", 5)
        live.subscribe("t/#", 1)
        will_props = replace(MESSAGE_PROPERTIES, will_delay_interval=0)
        client = self.connect_client("c1", 5, will=Will("t/will", b"gone", 1, properties=will_props))
        client.drop()
        [got] = live.publishes()
        self.assertEqual((got.topic, got.payload, got.properties), ("t/will", b"gone", MESSAGE_PROPERTIES))
        [got] = self.resume("queued", 5).publishes()
        self.assertEqual((got.topic, got.payload, got.properties), ("t/will", b"gone", MESSAGE_PROPERTIES))

    def test_response_topic_with_wildcard_is_protocol_error(self) -> None:
        """
        A Response Topic is a Topic Name and so has no wildcards
        [MQTT-3.3.2-14]: a PUBLISH with one gets DISCONNECT 0x82 (Protocol
        Error) and is not delivered.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t/#")
        for topic in ("replies/+", "replies/#"):
            pub = self.connect_client("pub", 5)
            pub.publish("t/a", b"m", 1, properties=Properties(response_topic=topic))
            self.assertClosedWith(pub, ReasonCode.PROTOCOL_ERROR, topic)
            pub.finish_close()
        self.assertEqual(sub.received(), [])


class ProblemInformationTests(BrokerTestCase):
    """
    Error acknowledgements and server DISCONNECTs say why in a Reason
    String, unless the client set Request Problem Information to 0
    [MQTT-3.1.2-29].
    """

    def test_error_acknowledgements_have_reason_strings(self) -> None:
        """
        PUBACK, PUBREC, PUBCOMP, PUBREL and SUBACK with an error code carry a
        Reason String saying what went wrong.
        """
        self.use_config(shared_subscriptions=False)
        client = self.connect_client("c1", 5)
        client.publish("t", b"\xff", 1, properties=UTF8, packet_id=1)
        client.publish("t", b"\xff", 2, properties=UTF8, packet_id=2)
        client.send(PubRel(3), PubRec(4))
        self.assertEqual(
            client.received(),
            [
                PubAck(1, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING),
                PubRec(2, ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING),
                PubComp(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, NOT_FOUND_STRING),
                PubRel(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, NOT_FOUND_STRING),
            ],
        )
        client.send(Subscribe(5, (Subscription("ok"), Subscription("$share/g/t"))))
        self.assertEqual(
            client.expect(SubAck),
            SubAck(
                5,
                (0, ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED),
                Properties(reason_string="$share/g/t: shared subscriptions are not supported"),
            ),
        )

    def test_successful_acknowledgements_have_none(self) -> None:
        """Acknowledgements with success codes (0x10 and 0x11 included) carry no properties."""
        client = self.connect_client("c1", 5)
        client.publish("nobody", b"m", 1, packet_id=100)
        self.assertEqual(client.received(), [PubAck(100, ReasonCode.NO_MATCHING_SUBSCRIBERS)])
        self.assertEqual(client.subscribe("t", 1), SubAck(1, (1,)))
        self.assertEqual(client.unsubscribe("t", "u"), UnsubAck(2, (0, ReasonCode.NO_SUBSCRIPTION_EXISTED)))

    def test_no_reason_strings_on_acknowledgements_without_problem_information(self) -> None:
        """
        A client that set Request Problem Information to 0 gets the same
        reason codes, but no Reason String on PUBACK, PUBREC, PUBREL, PUBCOMP
        or SUBACK [MQTT-3.1.2-29].
        """
        self.use_config(shared_subscriptions=False)
        client = self.connect_client("c1", 5, properties=NO_PROBLEM_INFORMATION)
        client.publish("t", b"\xff", 1, properties=UTF8, packet_id=1)
        client.publish("t", b"\xff", 2, properties=UTF8, packet_id=2)
        client.send(PubRel(3), PubRec(4))
        self.assertEqual(
            client.received(),
            [
                PubAck(1, ReasonCode.PAYLOAD_FORMAT_INVALID),
                PubRec(2, ReasonCode.PAYLOAD_FORMAT_INVALID),
                PubComp(3, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
                PubRel(4, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND),
            ],
        )
        client.send(Subscribe(5, (Subscription("$share/g/t"),)))
        self.assertEqual(client.expect(SubAck), SubAck(5, (ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED,)))

    def test_disconnect_keeps_its_reason_string_without_problem_information(self) -> None:
        """
        DISCONNECT may carry a Reason String even with Request Problem
        Information 0 [MQTT-3.1.2-29], and does.
        """
        client = self.connect_client("c1", 5, properties=NO_PROBLEM_INFORMATION)
        client.publish("t", b"\xff", 0, properties=UTF8)
        self.assertEqual(client.received(), [Disconnect(ReasonCode.PAYLOAD_FORMAT_INVALID, NOT_UTF8_STRING)])

    def test_publish_keeps_its_user_properties_without_problem_information(self) -> None:
        """
        A PUBLISH to a client that set Request Problem Information to 0
        still carries the message's User Properties [MQTT-3.1.2-29]
        [MQTT-3.3.2-17].
        """
        sub = self.connect_client("sub", 5, properties=NO_PROBLEM_INFORMATION)
        sub.subscribe("t", 1)
        self.connect_client("pub", 5).publish_acked("t", b"m", 1, properties=MESSAGE_PROPERTIES)
        [got] = sub.publishes()
        self.assertEqual(got.properties, MESSAGE_PROPERTIES)

    def test_server_disconnects_have_reason_strings(self) -> None:
        """
        A DISCONNECT the server sends says why: taken over, shutting down
        (section 3.14.2.2.3).
        """
        first = self.connect_client("c1", 5)
        self.connect_client("c1", 5)
        taken_over = Properties(reason_string="session taken over by another connection")
        self.assertEqual(
            first.received(),
            [Disconnect(ReasonCode.SESSION_TAKEN_OVER, taken_over)],
        )
        other = self.connect_client("c2", 5)
        self.broker.shutdown()
        self.assertEqual(
            other.received(),
            [Disconnect(ReasonCode.SERVER_SHUTTING_DOWN, Properties(reason_string="server shutting down"))],
        )

    def test_connack_refusal_has_a_reason_string(self) -> None:
        """A CONNACK refusing a 5.0 client says why in its Reason String."""
        client = self.connect_client("c1", 5, will=Will("a/#", b"w"))
        self.assertEqual(
            client.connack,
            ConnAck(False, ReasonCode.TOPIC_NAME_INVALID, Properties(reason_string="topic name not accepted")),
        )

    def test_no_reason_strings_for_v311(self) -> None:
        """
        3.1.1 acknowledgements have no reason codes or strings: a PUBREL for
        an unknown identifier gets a bare PUBCOMP.
        """
        client = self.connect_client("c1", 4)
        client.send(PubRel(3))
        self.assertEqual(client.received(), [PubComp(3)])


class AcknowledgementCodeTests(BrokerTestCase):
    """The reason codes of PUBACK and PUBREC (MQTT 5 sections 3.4.2.1, 3.5.2.1)."""

    def test_packet_identifier_in_use(self) -> None:
        """
        If a 5.0 client sends a QoS 1 PUBLISH with the packet identifier of
        its QoS 2 message still awaiting PUBREL [MQTT-2.2.1-3], the broker
        answers PUBACK 0x91 (Packet Identifier in use) and does not deliver
        it; the QoS 2 exchange then completes as usual.
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 2)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"two", 2, packet_id=7)
        self.assertEqual(pub.received(), [PubRec(7)])
        pub.publish("t", b"one", 1, packet_id=7)
        self.assertEqual(
            pub.received(),
            [
                PubAck(
                    7,
                    ReasonCode.PACKET_IDENTIFIER_IN_USE,
                    Properties(reason_string="packet identifier in use by a QoS 2 message awaiting PUBREL"),
                )
            ],
        )
        self.assertEqual([p.payload for p in sub.publishes()], [b"two"])
        pub.send(PubRel(7))
        self.assertEqual(pub.received(), [PubComp(7)])
        pub.publish("t", b"one again", 1, packet_id=7)
        self.assertEqual(pub.received(), [PubAck(7)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"one again"])

    def test_packet_identifier_in_use_v311(self) -> None:
        """
        3.1.1 has no way to refuse a PUBLISH: a QoS 1 message reusing the
        identifier of a QoS 2 message awaiting PUBREL is delivered and
        acknowledged, and the QoS 2 exchange still completes.
        """
        sub = self.connect_client("sub", 4)
        sub.subscribe("t", 2)
        pub = self.connect_client("pub", 4)
        pub.publish("t", b"two", 2, packet_id=7)
        pub.publish("t", b"one", 1, packet_id=7)
        self.assertEqual(pub.received(), [PubRec(7), PubAck(7)])
        self.assertEqual([p.payload for p in sub.publishes()], [b"two", b"one"])
        pub.send(PubRel(7))
        self.assertEqual(pub.received(), [PubComp(7)])

    def test_repeated_qos2_publish_is_acknowledged_not_redelivered(self) -> None:
        """
        A QoS 2 PUBLISH repeating the identifier of one awaiting PUBREL gets
        PUBREC 0x00 and is not delivered again [MQTT-4.3.3-10].
        """
        sub = self.connect_client("sub", 5)
        sub.subscribe("t", 2)
        pub = self.connect_client("pub", 5)
        pub.publish("t", b"m", 2, packet_id=3)
        pub.publish("t", b"m", 2, packet_id=3, dup=True)
        self.assertEqual(pub.received(), [PubRec(3), PubRec(3)])
        self.assertEqual(len(sub.publishes()), 1)

    def _full_subscriber(self, client_id: str) -> None:
        """An offline persistent session whose queue (one message) is full."""
        sub = self.connect_client(client_id, 5, clean_start=False, properties=SESSION)
        sub.subscribe("t/#", 2)
        sub.disconnect()
        self.connect_client("filler", 4).publish_acked("t/fill", b"fill", 1)

    def test_quota_exceeded_when_every_queue_is_full(self) -> None:
        """
        If a QoS 1 or 2 message matched subscribers but every one of them
        dropped it, its queue full, the broker answers PUBACK or PUBREC 0x97
        (Quota exceeded) with a Reason String; PUBREC 0x97 ends the exchange.
        """
        self.use_config(max_queued_messages=1)
        self._full_subscriber("s1")
        self._full_subscriber("s2")
        pub = self.connect_client("pub", 5)
        dropped = self.broker.counters.dropped_queue_full
        full = Properties(reason_string="quota exceeded: the queues of all matching subscribers are full")
        pub.publish("t/a", b"m", 1, packet_id=1)
        pub.publish("t/a", b"m", 2, packet_id=2)
        self.assertEqual(
            pub.received(),
            [PubAck(1, ReasonCode.QUOTA_EXCEEDED, full), PubRec(2, ReasonCode.QUOTA_EXCEEDED, full)],
        )
        self.assertEqual(self.broker.sessions["pub"].inbound_qos2, set())
        self.assertEqual(self.broker.counters.dropped_queue_full - dropped, 4)

    def test_no_quota_exceeded_when_one_subscriber_takes_it(self) -> None:
        """
        If at least one matching session took the message (sent or queued),
        the acknowledgement is a success, though others dropped it.
        """
        self.use_config(max_queued_messages=1)
        self._full_subscriber("s1")
        live = self.connect_client("live", 5)
        live.subscribe("t/#", 1)
        pub = self.connect_client("pub", 5)
        pub.publish("t/a", b"m", 1, packet_id=1)
        self.assertEqual(pub.received(), [PubAck(1)])
        self.assertEqual(len(live.publishes()), 1)

    def test_no_quota_exceeded_for_a_retained_message(self) -> None:
        """
        A retained message is taken by the retained store even when every
        subscriber's queue is full: success, and new subscribers get it.
        """
        self.use_config(max_queued_messages=1)
        self._full_subscriber("s1")
        pub = self.connect_client("pub", 5)
        pub.publish("t/r", b"kept", 1, retain=True, packet_id=1)
        self.assertEqual(pub.received(), [PubAck(1)])
        late = self.connect_client("late", 5)
        late.subscribe("t/r")
        self.assertEqual([p.payload for p in late.publishes()], [b"kept"])

    def test_no_quota_exceeded_for_v311(self) -> None:
        """
        3.1.1 acknowledgements have no reason code: a full queue still gets
        a plain PUBACK or PUBREC.
        """
        self.use_config(max_queued_messages=1)
        self._full_subscriber("s1")
        pub = self.connect_client("pub", 4)
        pub.publish("t/a", b"m", 1, packet_id=1)
        pub.publish("t/a", b"m", 2, packet_id=2)
        self.assertEqual(pub.received(), [PubAck(1), PubRec(2)])

    def test_no_matching_subscribers_is_kept(self) -> None:
        """A message nobody subscribed to gets PUBACK / PUBREC 0x10 (a success code)."""
        pub = self.connect_client("pub", 5)
        pub.publish("nobody", b"m", 1, packet_id=1)
        pub.publish("nobody", b"m", 2, packet_id=2)
        self.assertEqual(
            pub.received(),
            [PubAck(1, ReasonCode.NO_MATCHING_SUBSCRIBERS), PubRec(2, ReasonCode.NO_MATCHING_SUBSCRIBERS)],
        )
        pub.send(PubRel(2))
        self.assertEqual(pub.received(), [PubComp(2)])

    def test_error_pubrec_for_unknown_identifier_gets_no_pubrel(self) -> None:
        """
        A subscriber's PUBREC with an error code ends the exchange (section
        4.3.3): for an unknown identifier nothing is answered, where a
        successful PUBREC gets PUBREL 0x92.
        """
        client = self.connect_client("c1", 5)
        client.send(PubRec(9, ReasonCode.UNSPECIFIED_ERROR))
        self.assertEqual(client.received(), [])
        client.send(PubRec(9))
        self.assertEqual(
            client.received(),
            [PubRel(9, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND, NOT_FOUND_STRING)],
        )
