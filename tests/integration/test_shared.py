# -*- test-case-name: tests.integration.test_shared -*-
"""
Shared subscriptions (MQTT 5.0 section 4.8.2) with real clients: paho-mqtt
at 5.0 and 3.1.1, and mosquitto_sub at 5.0.
"""

from __future__ import annotations

from typing import ClassVar

from .helpers import V5, V311, IntegrationTestCase, MixinBase, PahoClient, RunningProcess, spawn

MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
STDBUF = ["/usr/bin/stdbuf", "-oL", "-eL"]


class SharedTestsMixin(MixinBase):
    """Two members of one shared subscription and a publisher."""

    async def _member(self, client_id: str, manual_ack: bool = False) -> PahoClient:
        client = self.paho(client_id)
        if manual_ack:
            # paho acknowledges nothing until told: a member that has the
            # message but has not acknowledged it.
            client.client.manual_ack_set(True)
        ack = await client.connect()
        self.assertEqual(ack.reason_code, 0)
        self.assertEqual(await client.subscribe("$share/workers/jobs", 1), 1)
        return client

    async def test_each_message_to_one_member(self) -> None:
        """
        Ten QoS 1 messages to C{jobs} reach the two members of
        C{$share/workers/jobs} once each, in turn (round robin: five each),
        at QoS 1 [MQTT-4.8.2-3].
        """
        a = await self._member("member-a")
        b = await self._member("member-b")
        pub = await self.connected("publisher")
        sent = [b"job %d" % i for i in range(10)]
        await pub.publish_many("jobs", sent, 1)
        got_a = await a.messages.get(5)
        got_b = await b.messages.get(5)
        await a.messages.expect_nothing()
        await b.messages.expect_nothing()
        self.assertEqual(sorted(m.payload for m in got_a + got_b), sorted(sent))
        self.assertEqual([m.payload for m in got_a], sent[0::2])
        self.assertEqual({(m.topic, m.qos, m.dup) for m in got_a + got_b}, {("jobs", 1, False)})

    async def test_unacknowledged_message_goes_to_other_member(self) -> None:
        """
        A member that drops its connection without acknowledging a QoS 1
        message has it given to the other member, once.
        """
        a = await self._member("member-a", manual_ack=True)
        b = await self._member("member-b")
        pub = await self.connected("publisher")
        await pub.publish("jobs", b"first", 1)
        [held] = await a.messages.get()
        self.assertEqual((held.payload, held.qos), (b"first", 1))
        await b.messages.expect_nothing()
        await a.drop()
        [got] = await b.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos), ("jobs", b"first", 1))
        await pub.publish("jobs", b"second", 1)
        [after] = await b.messages.get()
        self.assertEqual(after.payload, b"second")
        await b.messages.expect_nothing()


class SharedV5Tests(SharedTestsMixin, IntegrationTestCase):
    version = V5

    async def test_connack_says_available(self) -> None:
        """
        The 5.0 CONNACK carries no Shared Subscription Available property,
        which means available (section 3.2.2.3.14).
        """
        client = self.paho("probe")
        ack = await client.connect()
        self.assertFalse(hasattr(ack.properties, "SharedSubscriptionAvailable"))

    async def test_invalid_share_name(self) -> None:
        """
        paho subscribing to C{$share/+/jobs} (a wildcard in the ShareName)
        gets SUBACK 0x8F [MQTT-4.8.2-2]; its other filter is granted.
        """
        client = await self.connected("probe")
        codes = await client.subscribe_many([("$share/+/jobs", 1), ("$share/ok/jobs", 1)])
        self.assertEqual(codes, [0x8F, 1])


class SharedV311Tests(SharedTestsMixin, IntegrationTestCase):
    version = V311


class SharedMosquittoTests(IntegrationTestCase):
    """mosquitto_sub C{-V mqttv5} as members of a shared subscription."""

    version: ClassVar = V5

    async def _sub(self, client_id: str, count: int) -> RunningProcess:
        argv = [
            *STDBUF[1:], MOSQUITTO_SUB, "-d", "-V", "mqttv5", "-h", "127.0.0.1", "-p", str(self.port),
            "-i", client_id, "-q", "1", "-t", "$share/g/mosq/jobs", "-F", "MSG|%t|%q|%p", "-C", str(count), "-W", "5",
        ]
        process = spawn(self, STDBUF[0], argv)
        await process.wait_for_output(b"received SUBACK")
        return process

    async def test_mosquitto_sub_members(self) -> None:
        """
        Two mosquitto_sub members of C{$share/g/mosq/jobs} get two of four
        messages each, every message once.
        """
        first = await self._sub("mosq-a", 2)
        second = await self._sub("mosq-b", 2)
        pub = await self.connected("publisher")
        await pub.publish_many("mosq/jobs", [b"m%d" % i for i in range(4)], 1)
        lines = []
        for process in (first, second):
            out, err, code = await process.finish()
            self.assertEqual(code, 0, f"mosquitto_sub: {out} {err}")
            lines.append([line for line in out.splitlines() if line.startswith("MSG|")])
        self.assertEqual(
            lines,
            [["MSG|mosq/jobs|1|m0", "MSG|mosq/jobs|1|m2"], ["MSG|mosq/jobs|1|m1", "MSG|mosq/jobs|1|m3"]],
        )
