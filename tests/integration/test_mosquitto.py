# -*- test-case-name: tests.integration.test_mosquitto -*-
"""
Eclipse Mosquitto's command-line clients (Debian's mosquitto-clients)
against the broker: a second, independent MQTT implementation.
"""

from __future__ import annotations

from typing import ClassVar

from .helpers import V5, V311, IntegrationTestCase, MixinBase, RunningProcess, run_process, spawn

MOSQUITTO_PUB = "/usr/bin/mosquitto_pub"
MOSQUITTO_SUB = "/usr/bin/mosquitto_sub"
#: mosquitto_sub's stdout is a pipe here: make it line-buffered, so that
#: its debug lines (C{-d}) are seen as they happen.
STDBUF = ["/usr/bin/stdbuf", "-oL", "-eL"]
#: One line per message: topic, QoS, retain flag, payload.
FORMAT = "MSG|%t|%q|%r|%p"


class MosquittoTestsMixin(MixinBase):
    """mosquitto_pub and mosquitto_sub round trips."""

    #: The C{-V} argument of the mosquitto clients.
    cli_version: ClassVar[str]

    def _common(self, client_id: str) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-V", self.cli_version, "-i", client_id]

    async def _pub(self, client_id: str, *args: str) -> None:
        out, err, code = await run_process(self, MOSQUITTO_PUB, [*self._common(client_id), *args])
        self.assertEqual(code, 0, f"mosquitto_pub {args}: {err}")

    async def _sub(self, client_id: str, *args: str) -> RunningProcess:
        """Start mosquitto_sub (-d) and wait until its subscription is acknowledged."""
        argv = [*STDBUF[1:], MOSQUITTO_SUB, "-d", "-F", FORMAT, *self._common(client_id), *args]
        process = spawn(self, STDBUF[0], argv)
        await process.wait_for_output(b"received SUBACK")
        return process

    async def _messages(self, process: RunningProcess) -> list[str]:
        out, err, code = await process.finish()
        self.assertEqual(code, 0, f"mosquitto_sub: {out} {err}")
        return [line[4:] for line in out.splitlines() if line.startswith("MSG|")]

    async def test_messages_at_each_qos(self) -> None:
        """
        mosquitto_pub at QoS 0, 1 and 2 to mosquitto_sub subscribed at QoS 1:
        each message arrives once at min(publish, subscription) QoS
        [MQTT-3.8.4-6] (5.0 [MQTT-3.8.4-8]), RETAIN 0.
        """
        sub = await self._sub("mosq-sub", "-q", "1", "-t", "mosq/#", "-C", "3", "-W", "5")
        for qos in ("0", "1", "2"):
            await self._pub("mosq-pub", "-q", qos, "-t", f"mosq/{qos}", "-m", f"at qos {qos}")
        self.assertEqual(
            sorted(await self._messages(sub)),
            ["mosq/0|0|0|at qos 0", "mosq/1|1|0|at qos 1", "mosq/2|1|0|at qos 2"],
        )

    async def test_retained_message(self) -> None:
        """
        A message published with C{-r} is retained [MQTT-3.3.1-5] and given
        to a later mosquitto_sub with the retain flag set [MQTT-3.3.1-8]; a
        null retained message (C{-n -r}) clears it [MQTT-3.3.1-10].
        """
        await self._pub("mosq-pub", "-q", "2", "-r", "-t", "mosq/kept", "-m", "retained value")
        sub = await self._sub("mosq-sub", "-q", "2", "-t", "mosq/kept", "-C", "1", "-W", "5")
        self.assertEqual(await self._messages(sub), ["mosq/kept|2|1|retained value"])
        await self._pub("mosq-pub", "-q", "1", "-r", "-n", "-t", "mosq/kept")
        watcher = await self.subscriber("after-clear", "mosq/kept", 1)
        await watcher.messages.expect_nothing()

    async def test_persistent_session(self) -> None:
        """
        mosquitto_sub C{-c} (CleanSession 0 / no session expiry) subscribes
        and leaves; a QoS 1 message published meanwhile is delivered when it
        comes back [MQTT-3.1.2-5] (5.0 [MQTT-3.1.2-23]).
        """
        args = ["-c", "-q", "1", "-t", "mosq/persist"]
        first = await self._sub("mosq-persist", *args, "-E")
        self.assertEqual(await self._messages(first), [])
        await self._pub("mosq-pub", "-q", "1", "-t", "mosq/persist", "-m", "while away")
        again = spawn(
            self, MOSQUITTO_SUB, ["-F", FORMAT, *self._common("mosq-persist"), *args, "-C", "1", "-W", "5"]
        )
        self.assertEqual(await self._messages(again), ["mosq/persist|1|0|while away"])

    async def test_will_of_a_killed_client(self) -> None:
        """
        mosquitto_sub with C{--will-*} killed with SIGKILL (the kernel closes
        its socket, no DISCONNECT) has its will published with its QoS and
        retain flag [MQTT-3.1.2-8] [MQTT-3.1.2-17].
        """
        watcher = await self.subscriber("will-watcher", "mosq/will", 2)
        sub = await self._sub(
            "mosq-doomed",
            "-t", "mosq/unused", "-W", "10",
            "--will-topic", "mosq/will", "--will-payload", "killed", "--will-qos", "1", "--will-retain",
        )
        sub.kill()
        _, _, code = await sub.finish()
        self.assertNotEqual(code, 0)
        [got] = await watcher.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos, got.retain), ("mosq/will", b"killed", 1, False))
        late = await self._sub("mosq-late", "-q", "1", "-t", "mosq/will", "-C", "1", "-W", "5")
        self.assertEqual(await self._messages(late), ["mosq/will|1|1|killed"])

    async def test_paho_and_mosquitto_interoperate(self) -> None:
        """
        A paho publisher and mosquitto_sub, and mosquitto_pub and a paho
        subscriber, exchange messages exactly [MQTT-4.5.0-1].
        """
        sub = await self._sub("mosq-sub", "-q", "2", "-t", "mix/to-mosquitto", "-C", "1", "-W", "5")
        paho = await self.subscriber("paho-sub", "mix/to-paho", 2)
        pub = await self.connected("paho-pub")
        await pub.publish("mix/to-mosquitto", b"from paho", 2)
        await self._pub("mosq-pub", "-q", "2", "-t", "mix/to-paho", "-m", "from mosquitto")
        self.assertEqual(await self._messages(sub), ["mix/to-mosquitto|2|0|from paho"])
        [got] = await paho.messages.get()
        self.assertEqual((got.topic, got.payload, got.qos, got.retain), ("mix/to-paho", b"from mosquitto", 2, False))


class MosquittoV311Tests(MosquittoTestsMixin, IntegrationTestCase):
    cli_version = "mqttv311"


class MosquittoV31Tests(MosquittoTestsMixin, IntegrationTestCase):
    cli_version = "mqttv31"


class MosquittoV5Tests(MosquittoTestsMixin, IntegrationTestCase):
    cli_version = "mqttv5"
    version = V311  # the paho side stays 3.1.1; mosquitto speaks 5.0

    async def test_user_properties_from_mosquitto_pub(self) -> None:
        """
        User properties set with mosquitto_pub C{-D publish user-property}
        reach an MQTT 5 subscriber unaltered [MQTT-3.3.2-17].
        """
        paho = await self.subscriber("paho-v5", "mosq/props", 1, version=V5)
        await self._pub(
            "mosq-pub", "-q", "1", "-t", "mosq/props", "-m", "with props",
            "-D", "publish", "user-property", "origin", "mosquitto",
        )
        [got] = await paho.messages.get()
        self.assertEqual((got.payload, got.user_properties()), (b"with props", [("origin", "mosquitto")]))

