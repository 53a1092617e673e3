# -*- test-case-name: tests.integration.test_acl -*-
"""
Topic access control end to end: a real C{twistd mqttx} with an ACL file,
and Eclipse Mosquitto's command-line clients over loopback TCP.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import TestCase

from .helpers import run_process, spawn
from .test_durability import BrokerProcess
from .test_mosquitto import FORMAT, MOSQUITTO_PUB, MOSQUITTO_SUB, STDBUF

ACL = b"""\
# Anonymous clients: nothing.
user alice
topic read public/#
topic write public/alice/#
user root
topic read #
"""


class ACLProcessTests(TestCase):
    """A twistd broker started with C{auth.acl_file}."""

    timeout = 60

    async def setUp(self) -> None:  # type: ignore[override]
        self.broker = BrokerProcess(self)
        acl = self.broker.directory.child("acl.conf")
        acl.setContent(ACL)
        config = json.loads(self.broker.config.getContent())
        config["auth"] = {"acl_file": acl.path, "admins": ["root"]}
        config["persistence"] = {"backend": "memory"}
        self.broker.config.setContent(json.dumps(config).encode())
        self.port = await self.broker.start()

    def _common(self, version: str, client_id: str, username: str) -> list[str]:
        return ["-h", "127.0.0.1", "-p", str(self.port), "-V", version, "-i", client_id, "-u", username]

    async def test_denied_subscribe(self) -> None:
        """
        mosquitto_sub subscribing to a filter alice may not read gets SUBACK
        0x87 (MQTT 5, section 3.9.3) / 0x80 (3.1.1) and reports every
        subscription denied; the denial is logged as C{acl.denied}.
        """
        for version, code in (("5", "135"), ("311", "128")):
            out, err, status = await run_process(
                self,
                MOSQUITTO_SUB,
                ["-d", *self._common(version, f"sub{version}", "alice"), "-t", "private/#", "-W", "5"],
            )
            self.assertIn("All subscription requests were denied", out + err)
            self.assertIn(f"Subscribed (mid: 1): {code}", out + err)
        denied = [e for e in self.broker.events() if e.get("event_id") == "acl.denied"]
        self.assertEqual({(e["action"], e["topic"]) for e in denied}, {("subscribe", "private/#")})

    async def test_denied_publish(self) -> None:
        """
        alice's QoS 1 PUBLISH to a topic she may not write gets PUBACK 0x87
        with MQTT 5; with 3.1.1 it is acknowledged and dropped
        [MQTT-3.3.5-2]. Either way root's subscriber gets only the message
        she may publish.
        """
        argv = [*STDBUF[1:], MOSQUITTO_SUB, "-d", "-F", FORMAT, *self._common("5", "root-sub", "root")]
        sub = spawn(self, STDBUF[0], [*argv, "-q", "1", "-t", "public/#", "-C", "1", "-W", "10"])
        await sub.wait_for_output(b"received SUBACK")
        out, err, status = await run_process(
            self, MOSQUITTO_PUB, [*self._common("5", "pub5", "alice"), "-q", "1", "-t", "public/bob/x", "-m", "no"]
        )
        self.assertIn("Not authorized", out + err)
        out, err, status = await run_process(
            self, MOSQUITTO_PUB, [*self._common("311", "pub3", "alice"), "-q", "1", "-t", "public/bob/y", "-m", "no"]
        )
        self.assertEqual(status, 0, err)
        out, err, status = await run_process(
            self, MOSQUITTO_PUB, [*self._common("5", "pub5", "alice"), "-q", "1", "-t", "public/alice/z", "-m", "yes"]
        )
        self.assertEqual(status, 0, err)
        out, err, status = await sub.finish()
        self.assertEqual(status, 0, err)
        self.assertEqual([line for line in out.splitlines() if line.startswith("MSG|")], ["MSG|public/alice/z|1|0|yes"])
