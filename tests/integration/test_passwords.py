# -*- test-case-name: tests.integration.test_passwords -*-
"""
Password file authentication end to end: a real C{twistd mqttx} with
C{auth.password_file} written by C{mqttx passwd}, and real clients
(paho-mqtt 3.1.1 and 5.0, mosquitto_pub, and a raw client for the exact
CONNACK bytes) over loopback.
"""

from __future__ import annotations

import io
import json
from dataclasses import replace
from typing import Any, ClassVar

from twisted.trial.unittest import FailTest, TestCase

from mqttx.cli import main
from mqttx.mqtt.packets import ConnAck
from mqttx.mqtt.reason_codes import ConnackReturnCode, ReasonCode

from .helpers import V5, V311, PahoClient, connect_packet, open_raw, run_process
from .test_durability import BrokerProcess
from .test_mosquitto import MOSQUITTO_PUB

PASSWORD = "correct horse battery staple"
WRONG = "Tr0ub4dor&3"


class PasswordFileTestCase(TestCase):
    """
    A broker process whose password file has user C{alice}; anonymous
    clients are refused.
    """

    timeout = 60
    auth: ClassVar[dict[str, Any]] = {"allow_anonymous": False}

    async def setUp(self) -> None:  # type: ignore[override]
        self.process = BrokerProcess(self)
        passwd = self.process.directory.child("passwd").path
        status = main(["passwd", "-c", "-b", passwd, "alice", PASSWORD], out=io.StringIO())
        self.assertEqual(status, 0)
        config = json.loads(self.process.config.getContent())
        config["persistence"] = {"backend": "memory"}
        config["auth"] = {**self.auth, "password_file": passwd}
        self.process.config.setContent(json.dumps(config).encode())
        self.port = await self.process.start()

    async def paho_connack(
        self, version: Any, username: str | None = None, password: str | None = None
    ) -> int:
        client = PahoClient(self, self.port, f"paho-{version}", version)
        if username is not None:
            client.client.username_pw_set(username, password)
        ack = await client.connect()
        return ack.reason_code

    async def raw_connack(
        self, level: int, username: str | None = None, password: bytes | None = None
    ) -> int:
        raw = await open_raw(self, self.port, level)
        packet = connect_packet(level, f"raw-{level}")
        raw.send(replace(packet, username=username, password=password))
        ack = await raw.expect(ConnAck)
        if ack.reason_code:
            await raw.expect_closed()
        return ack.reason_code

    async def mosquitto_pub(self, version: str, *credentials: str) -> tuple[int, str]:
        args = ["-h", "127.0.0.1", "-p", str(self.port), "-V", version, "-i", "mosq"]
        args += [*credentials, "-t", "auth/test", "-m", "hello"]
        out, err, code = await run_process(self, MOSQUITTO_PUB, args)
        return code, out + err


class PasswordFileTests(PasswordFileTestCase):
    async def test_good_credentials(self) -> None:
        """
        The user's name and password connect paho 3.1.1 and 5.0, a raw
        client, and mosquitto_pub -u/-P.
        """
        self.assertEqual(await self.paho_connack(V311, "alice", PASSWORD), 0)
        self.assertEqual(await self.paho_connack(V5, "alice", PASSWORD), 0)
        self.assertEqual(await self.raw_connack(4, "alice", PASSWORD.encode()), 0)
        for version in ("mqttv311", "mqttv5"):
            code, output = await self.mosquitto_pub(version, "-u", "alice", "-P", PASSWORD)
            self.assertEqual(code, 0, output)

    async def test_wrong_password(self) -> None:
        """
        [MQTT-3.1.4-2] A wrong password, or an unknown user, is refused
        with CONNACK 0x04 (3.1.1) / 0x86 (5.0) and the connection closed.
        """
        self.assertEqual(
            await self.raw_connack(4, "alice", WRONG.encode()),
            ConnackReturnCode.BAD_USER_NAME_OR_PASSWORD,
        )
        self.assertEqual(
            await self.raw_connack(5, "mallory", b"x"), ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )
        # paho reports 3.1.1 return code 4 as reason code 0x86.
        self.assertEqual(
            await self.paho_connack(V311, "alice", WRONG), ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )
        self.assertEqual(
            await self.paho_connack(V5, "alice", WRONG), ReasonCode.BAD_USER_NAME_OR_PASSWORD
        )
        code, output = await self.mosquitto_pub("mqttv311", "-u", "alice", "-P", WRONG)
        self.assertEqual(code, 4, output)
        self.assertIn("bad user name or password", output)
        code, output = await self.mosquitto_pub("mqttv5", "-u", "alice", "-P", WRONG)
        self.assertEqual(code, 0x86, output)
        # Logged (one line per refusal), but never the passwords.
        self.assertIn("BAD_USER_NAME_OR_PASSWORD", self.process.output)
        self.assertNotIn(WRONG, self.process.output)
        self.assertNotIn(PASSWORD, self.process.output)

    async def test_anonymous_refused(self) -> None:
        """
        [MQTT-3.1.4-2] With anonymous clients not allowed, a client without
        a user name is refused with CONNACK 0x05 (3.1.1) / 0x87 (5.0).
        """
        self.assertEqual(await self.raw_connack(4), ConnackReturnCode.NOT_AUTHORIZED)
        self.assertEqual(await self.raw_connack(5), ReasonCode.NOT_AUTHORIZED)
        self.assertEqual(await self.paho_connack(V311), ReasonCode.NOT_AUTHORIZED)
        self.assertEqual(await self.paho_connack(V5), ReasonCode.NOT_AUTHORIZED)
        code, output = await self.mosquitto_pub("mqttv311")
        self.assertEqual(code, 5, output)
        code, output = await self.mosquitto_pub("mqttv5")
        self.assertEqual(code, 0x87, output)


class RateLimitTests(PasswordFileTestCase):
    auth: ClassVar[dict[str, Any]] = {"allow_anonymous": False, "max_failures_per_minute": 2}

    async def test_failures_rate_limited(self) -> None:
        """
        After 2 failed authentications from 127.0.0.1, even the right
        password is refused at once: CONNACK 0x9F (5.0) / 0x03 (3.1.1).
        """
        for _ in range(2):
            self.assertEqual(
                await self.raw_connack(5, "alice", WRONG.encode()),
                ReasonCode.BAD_USER_NAME_OR_PASSWORD,
            )
        self.assertEqual(
            await self.raw_connack(5, "alice", PASSWORD.encode()),
            ReasonCode.CONNECTION_RATE_EXCEEDED,
        )
        self.assertEqual(
            await self.raw_connack(4, "alice", PASSWORD.encode()),
            ConnackReturnCode.SERVER_UNAVAILABLE,
        )


class BadPasswordFileTests(TestCase):
    timeout = 60

    async def test_bad_file_stops_start(self) -> None:
        """
        A password file with a bad line stops twistd before it listens:
        exit status 1 and one line naming the file and line, not the hash.
        """
        process = BrokerProcess(self)
        passwd = process.directory.child("passwd")
        passwd.setContent(b"alice:$pbkdf2-sha512$1000$c2FsdA$c2VjcmV0LWhhc2g\n")
        config = json.loads(process.config.getContent())
        config["auth"] = {"password_file": passwd.path}
        process.config.setContent(json.dumps(config).encode())
        with self.assertRaises(FailTest):
            await process.start()
        ended = process._output
        assert ended is not None
        self.assertEqual(ended.code, 1)
        self.assertEqual(
            process.output, f"mqttx: {passwd.path}, line 1: the hash is not 64 bytes long\n"
        )
        self.assertNotIn("c2VjcmV0LWhhc2g", process.output)
        self.assertNotIn("Traceback", process.output)
