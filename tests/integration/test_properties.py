# -*- test-case-name: tests.integration.test_properties -*-
"""
MQTT 5 message properties and problem information over real TCP: the
Payload Format Indicator check, properties passed through exactly as sent
(live, queued, retained, wills), the request/response pattern, reason codes
and reason strings of acknowledgements, and Request Problem Information.
"""

from __future__ import annotations

import os
from typing import Any

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties

from mqttx.mqtt.packets import ConnAck, Disconnect, PubAck, PubComp, Publish, PubRec, PubRel, Will
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode

from .helpers import (
    V5,
    V311,
    IntegrationTestCase,
    Received,
    RunningProcess,
    connect_packet,
    run_process,
    spawn,
)

MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"

#: The message properties a publisher sets, by their paho names; every one
#: must reach MQTT 5 subscribers unaltered. Duplicate user property names
#: and their order are kept [MQTT-3.3.2-17] [MQTT-3.3.2-18].
SENT: dict[str, Any] = {
    "PayloadFormatIndicator": 1,
    "ContentType": "application/json; charset=utf-8",
    "ResponseTopic": "props/replies/one",
    "CorrelationData": b"\x00\xffcorr",
    "UserProperty": [("b", "2"), ("a", "1"), ("b", "2"), ("a", "")],
}
PAYLOAD = '{"text": "héllo ✓"}'.encode()
NOT_UTF8 = b"caf\xe9"  # Latin-1, not UTF-8


def prop(message: Received, name: str) -> Any:
    """One MQTT 5 property of a message paho received, by its paho name, or C{None}."""
    return getattr(message.properties, name, None)


def seen(message: Received) -> dict[str, Any]:
    """The properties of C{SENT} as a paho subscriber got them."""
    return {name: prop(message, name) for name in SENT}


def paho_properties(packet_type: int, **values: Any) -> PahoProperties:
    props = PahoProperties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props


class PayloadFormatTests(IntegrationTestCase):
    """
    A payload declared UTF-8 (Payload Format Indicator 1) that is not is
    refused with reason code 0x99 (section 3.3.2.3.2, 3.1.3.2.3).
    """

    version = V5

    async def test_invalid_utf8_refused_valid_delivered(self) -> None:
        """
        With Payload Format Indicator 1, a Latin-1 payload gets PUBACK 0x99
        (Payload format invalid; paho at QoS 1) or PUBREC 0x99 (a raw client
        at QoS 2: paho 2.2 ignores PUBREC reason codes) and is not
        delivered; a UTF-8 one is delivered with its indicator [MQTT-3.3.2-4].
        """
        sub = await self.subscriber("pfi-sub", "pfi/#", 2)
        pub = await self.connected("pfi-pub")
        self.assertEqual(await pub.publish("pfi/t", NOT_UTF8, 1, PayloadFormatIndicator=1), 0x99)
        raw, _ = await self.raw_connected("pfi-raw", 5)
        raw.send(Publish("pfi/t", NOT_UTF8, 2, packet_id=3, properties=Properties(payload_format_indicator=1)))
        pubrec = await raw.expect(PubRec)
        self.assertEqual((pubrec.packet_id, pubrec.reason_code), (3, 0x99))
        self.assertEqual(await pub.publish("pfi/t", PAYLOAD, 1, PayloadFormatIndicator=1), 0x00)
        [got] = await sub.messages.get()
        self.assertEqual((got.payload, prop(got, "PayloadFormatIndicator")), (PAYLOAD, 1))
        await sub.messages.expect_nothing()

    async def test_invalid_utf8_at_qos0_disconnects(self) -> None:
        """
        A QoS 0 PUBLISH has no acknowledgement: paho gets DISCONNECT 0x99
        from the broker, and the message is not delivered.
        """
        sub = await self.subscriber("pfi0-sub", "pfi0/#", 0)
        pub = await self.connected("pfi0-pub")
        props = paho_properties(PacketTypes.PUBLISH, PayloadFormatIndicator=1)
        pub.client.publish("pfi0/t", NOT_UTF8, 0, properties=props)
        gone = await pub.disconnects.get_one()
        self.assertEqual((gone.reason_code, gone.from_server), (0x99, True))
        await sub.messages.expect_nothing()

    async def test_will_with_invalid_utf8_refused(self) -> None:
        """
        A will declared UTF-8 that is not gets CONNACK 0x99 with a Reason
        String, and the connection is closed (section 3.1.3.2.3).
        """
        raw = await self.raw(5)
        will = Will("pfi/will", NOT_UTF8, properties=Properties(payload_format_indicator=1))
        raw.send(connect_packet(5, "pfi-will", will=will))
        self.assertEqual(
            await raw.expect(ConnAck),
            ConnAck(False, 0x99, Properties(reason_string="will payload is not valid UTF-8")),
        )
        await raw.expect_closed()

    async def test_mosquitto_pub_is_told_the_payload_is_invalid(self) -> None:
        """
        mosquitto_pub C{-D publish payload-format-indicator 1} with a Latin-1
        file gets PUBACK 0x99 and reports it; the same file without the
        indicator is delivered as sent.
        """
        sub = await self.subscriber("pfi-mosq-sub", "pfi/mosq", 1)
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(NOT_UTF8)
        common = ["-h", "127.0.0.1", "-p", str(self.port), "-V", "mqttv5", "-q", "1", "-t", "pfi/mosq", "-f", path]
        out, err, code = await run_process(
            self, MOSQUITTO_PUB, [*common, "-D", "publish", "payload-format-indicator", "1"]
        )
        self.assertIn("Payload format invalid", out + err)
        await sub.messages.expect_nothing()
        out, err, code = await run_process(self, MOSQUITTO_PUB, common)
        self.assertEqual(code, 0, err)
        [got] = await sub.messages.get()
        self.assertEqual(got.payload, NOT_UTF8)
        os.remove(path)


class PassThroughTests(IntegrationTestCase):
    """
    Payload Format Indicator, Content Type, Response Topic, Correlation
    Data and User Properties reach MQTT 5 subscribers exactly as sent
    [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17]
    [MQTT-3.3.2-18] [MQTT-3.3.2-20]; MQTT 3.1.1 subscribers get the payload.
    """

    version = V5

    async def test_live_delivery(self) -> None:
        """Live deliveries at QoS 0, 1 and 2 carry every property as sent."""
        sub = await self.subscriber("pt-live", "pt/live", 2)
        old = await self.subscriber("pt-live-311", "pt/live", 2, version=V311)
        pub = await self.connected("pt-pub")
        for qos in (0, 1, 2):
            await pub.publish("pt/live", PAYLOAD, qos, **SENT)
        got = await sub.messages.get(3)
        self.assertEqual([(m.qos, m.payload, seen(m)) for m in got], [(q, PAYLOAD, SENT) for q in (0, 1, 2)])
        got = await old.messages.get(3)
        self.assertEqual([(m.payload, m.properties) for m in got], [(PAYLOAD, None)] * 3)

    async def test_queued_delivery(self) -> None:
        """
        Messages queued for an offline persistent session carry every
        property as sent when it comes back.
        """
        away = self.paho("pt-away", clean=False, session_expiry=60)
        await away.connect()
        await away.subscribe("pt/queued", 2)
        await away.disconnect()
        pub = await self.connected("pt-pub")
        await pub.publish("pt/queued", PAYLOAD, 1, **SENT)
        await pub.publish("pt/queued", PAYLOAD, 2, **SENT)
        back = self.paho("pt-away", clean=False, session_expiry=60)
        self.assertTrue((await back.connect()).session_present)
        got = await back.messages.get(2)
        self.assertEqual([(m.qos, m.payload, seen(m)) for m in got], [(1, PAYLOAD, SENT), (2, PAYLOAD, SENT)])

    async def test_retained_delivery(self) -> None:
        """A retained message reaches a later subscriber with every property as sent."""
        pub = await self.connected("pt-pub")
        await pub.publish("pt/retained", PAYLOAD, 1, retain=True, **SENT)
        late = await self.subscriber("pt-late", "pt/retained", 1)
        [got] = await late.messages.get()
        self.assertEqual((got.retain, got.payload, seen(got)), (True, PAYLOAD, SENT))

    async def test_will(self) -> None:
        """
        A will set by paho with every message property reaches subscribers
        with them as sent (section 3.1.3.2), without its Will Delay Interval.
        """
        watcher = await self.subscriber("pt-watcher", "pt/will", 1)
        doomed = self.paho("pt-doomed")
        doomed.client.will_set(
            "pt/will", PAYLOAD, 1, False, paho_properties(PacketTypes.WILLMESSAGE, WillDelayInterval=0, **SENT)
        )
        self.assertEqual((await doomed.connect()).reason_code, 0)
        await doomed.drop()
        [got] = await watcher.messages.get()
        self.assertEqual((got.payload, seen(got)), (PAYLOAD, SENT))
        self.assertIsNone(getattr(got.properties, "WillDelayInterval", None))

    async def test_from_mosquitto_pub_to_mosquitto_sub(self) -> None:
        """
        Properties set with mosquitto_pub C{-D publish ...} reach
        mosquitto_sub, which prints them: an independent client on each side.
        """
        fmt = "MSG|%F|%C|%R|%D|%P|%p"
        common = ["-h", "127.0.0.1", "-p", str(self.port), "-V", "mqttv5"]
        sub: RunningProcess = spawn(
            self,
            "/usr/bin/stdbuf",
            ["-oL", "-eL", MOSQUITTO_SUB, *common, "-d", "-q", "1", "-t", "pt/mosq", "-F", fmt, "-C", "1", "-W", "5"],
        )
        await sub.wait_for_output(b"received SUBACK")
        out, err, code = await run_process(
            self,
            MOSQUITTO_PUB,
            [
                *common, "-q", "1", "-t", "pt/mosq", "-m", "héllo",
                "-D", "publish", "payload-format-indicator", "1",
                "-D", "publish", "content-type", "text/plain",
                "-D", "publish", "response-topic", "pt/answers",
                "-D", "publish", "correlation-data", "req-7",
                "-D", "publish", "user-property", "k", "1",
                "-D", "publish", "user-property", "k", "2",
            ],
        )
        self.assertEqual(code, 0, err)
        out, err, code = await sub.finish()
        self.assertEqual(code, 0, err)
        [line] = [line for line in out.splitlines() if line.startswith("MSG|")]
        self.assertEqual(line, "MSG|1|text/plain|pt/answers|req-7|k:1 k:2|héllo")

    async def test_response_topic_with_wildcard_is_refused(self) -> None:
        """
        A Response Topic with a wildcard [MQTT-3.3.2-14] is a protocol error:
        DISCONNECT 0x82 and the connection closes, nothing is delivered.
        """
        sub = await self.subscriber("pt-rt-sub", "pt/rt", 1)
        raw, _ = await self.raw_connected("pt-rt-raw", 5)
        raw.send(Publish("pt/rt", b"m", 1, packet_id=1, properties=Properties(response_topic="pt/answers/+")))
        packet = await raw.expect(Disconnect)
        self.assertEqual(packet.reason_code, ReasonCode.PROTOCOL_ERROR)
        self.assertTrue(packet.properties.reason_string)
        await raw.expect_closed()
        await sub.messages.expect_nothing()


class RequestResponseTests(IntegrationTestCase):
    """
    The request/response pattern (section 4.10) between two paho MQTT 5
    clients through the broker.
    """

    version = V5

    async def test_request_and_response_matched_by_correlation_data(self) -> None:
        """
        The requester subscribes to its response topic and sends requests
        with a Response Topic and Correlation Data; the responder gets both
        unaltered [MQTT-3.3.2-15] [MQTT-3.3.2-16] and answers each on the
        Response Topic with its Correlation Data; the requester matches the
        answers, which come in another order than the requests, to them.
        """
        responder = await self.subscriber("rr-responder", "rr/service/+", 1)
        requester = await self.subscriber("rr-requester", "rr/replies/rr-requester", 1)
        requests = {b"id-%d" % i: b"%d" % i for i in range(3)}
        for correlation, question in requests.items():
            code = await requester.publish(
                "rr/service/square", question, 1,
                ResponseTopic="rr/replies/rr-requester", CorrelationData=correlation,
            )
            self.assertEqual(code, 0)
        received = await responder.messages.get(3)
        self.assertEqual(
            [(m.payload, prop(m, "ResponseTopic"), prop(m, "CorrelationData")) for m in received],
            [(q, "rr/replies/rr-requester", c) for c, q in requests.items()],
        )
        for request in reversed(received):
            answer = b"%d" % int(request.payload) ** 2
            await responder.publish(
                prop(request, "ResponseTopic"), answer, 1, CorrelationData=prop(request, "CorrelationData")
            )
        replies = await requester.messages.get(3)
        self.assertEqual(
            {prop(m, "CorrelationData"): m.payload for m in replies},
            {c: b"%d" % int(q) ** 2 for c, q in requests.items()},
        )
        self.assertEqual([prop(m, "CorrelationData") for m in replies], [b"id-2", b"id-1", b"id-0"])
        await responder.messages.expect_nothing()


class ProblemInformationTests(IntegrationTestCase):
    """
    Error acknowledgements carry a Reason String, except to a client that
    set Request Problem Information to 0 [MQTT-3.1.2-29].
    """

    version = V5

    async def _refusals(self, client_id: str, **props: Any) -> list[object]:
        raw, _ = await self.raw_connected(client_id, 5, **props)
        raw.send(
            Publish("pi/t", NOT_UTF8, 1, packet_id=1, properties=Properties(payload_format_indicator=1)),
            PubRel(2),
        )
        return [await raw.expect(PubAck), await raw.expect(PubComp)]

    async def test_reason_strings_by_default(self) -> None:
        """PUBACK 0x99 and PUBCOMP 0x92 say why in their Reason String."""
        self.assertEqual(
            await self._refusals("pi-default"),
            [
                PubAck(1, 0x99, Properties(reason_string="payload is not valid UTF-8")),
                PubComp(2, 0x92, Properties(reason_string="packet identifier not found")),
            ],
        )

    async def test_no_reason_strings_when_not_requested(self) -> None:
        """With Request Problem Information 0 the codes stay and the Reason Strings go."""
        self.assertEqual(
            await self._refusals("pi-off", request_problem_information=0),
            [PubAck(1, 0x99), PubComp(2, 0x92)],
        )

    async def test_disconnect_reason_string_even_when_not_requested(self) -> None:
        """A DISCONNECT may carry its Reason String regardless [MQTT-3.1.2-29]."""
        raw, _ = await self.raw_connected("pi-dis", 5, request_problem_information=0)
        raw.send(Publish("pi/t", NOT_UTF8, properties=Properties(payload_format_indicator=1)))
        self.assertEqual(
            await raw.expect(Disconnect), Disconnect(0x99, Properties(reason_string="payload is not valid UTF-8"))
        )
        await raw.expect_closed()


class AcknowledgementCodeTests(IntegrationTestCase):
    """The reason codes of PUBACK and PUBREC (sections 3.4.2.1, 3.5.2.1)."""

    version = V5
    broker_config = {"max_queued_messages": 1}

    async def test_packet_identifier_in_use(self) -> None:
        """
        A QoS 1 PUBLISH reusing the identifier of a QoS 2 message awaiting
        PUBREL [MQTT-2.2.1-3] gets PUBACK 0x91 and is not delivered; the
        QoS 2 exchange completes.
        """
        sub = await self.subscriber("ack-sub", "ack/t", 2)
        raw, _ = await self.raw_connected("ack-raw", 5)
        raw.send(Publish("ack/t", b"two", 2, packet_id=4))
        self.assertEqual(await raw.expect(PubRec), PubRec(4))
        raw.send(Publish("ack/t", b"one", 1, packet_id=4))
        ack = await raw.expect(PubAck)
        self.assertEqual((ack.packet_id, ack.reason_code), (4, 0x91))
        raw.send(PubRel(4))
        self.assertEqual(await raw.expect(PubComp), PubComp(4))
        [got] = await sub.messages.get()
        self.assertEqual(got.payload, b"two")
        await sub.messages.expect_nothing()

    async def test_quota_exceeded_when_the_subscriber_queue_is_full(self) -> None:
        """
        With C{max_queued_messages: 1}, a message for an offline subscriber
        whose queue is full gets PUBACK / PUBREC 0x97 (Quota exceeded); the
        first one was queued (0x00) and is delivered when it comes back
        (paho at QoS 1, a raw client at QoS 2).
        """
        away = self.paho("ack-away", clean=False, session_expiry=60)
        await away.connect()
        await away.subscribe("ack/q", 2)
        await away.disconnect()
        pub = await self.connected("ack-pub")
        self.assertEqual(await pub.publish("ack/q", b"queued", 1), 0x00)
        self.assertEqual(await pub.publish("ack/q", b"dropped", 1), 0x97)
        raw, _ = await self.raw_connected("ack-raw", 5)
        raw.send(Publish("ack/q", b"dropped", 2, packet_id=5))
        pubrec = await raw.expect(PubRec)
        self.assertEqual((pubrec.packet_id, pubrec.reason_code), (5, 0x97))
        back = self.paho("ack-away", clean=False, session_expiry=60)
        await back.connect()
        [got] = await back.messages.get()
        self.assertEqual(got.payload, b"queued")
        await back.messages.expect_nothing()
