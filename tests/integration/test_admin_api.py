# -*- test-case-name: tests.integration.test_admin_api -*-
"""
The admin API over loopback against a broker with a password file: twisted.web's
L{Agent} and Debian's C{curl} as the admin, paho-mqtt as the clients it
looks at, disconnects and whose retained messages it clears.
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any
from urllib.parse import quote

from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers
from twisted.web.iweb import IResponse

from .admin_fixture import ADMIN, USER, AdminHTTPTestCase
from .helpers import TIMEOUT, V5, reactor, run_process

CURL = "/usr/bin/curl"


class AdminAPITests(AdminHTTPTestCase):
    """The admin API as an operator uses it."""

    async def request(self, method: bytes, path: str, auth: tuple[str, str] | None = ADMIN) -> tuple[int, Any]:
        """One request with Agent (no persistent connection); the status and JSON body."""
        headers = Headers()
        if auth is not None:
            token = b64encode(f"{auth[0]}:{auth[1]}".encode())
            headers.addRawHeader(b"authorization", b"Basic " + token)
        agent = Agent(_reactor, pool=HTTPConnectionPool(_reactor, persistent=False))
        d: Deferred[IResponse] = agent.request(method, (self.base_url + path).encode(), headers)
        d.addTimeout(TIMEOUT, reactor)
        response = await d
        body = await readBody(response)
        return response.code, json.loads(body) if body else None

    async def test_list_details_and_kick(self) -> None:
        """
        The admin lists the clients, reads one with its subscription, and
        disconnects it: paho (MQTT 5) gets DISCONNECT 0x98, administrative
        action, from the server.
        """
        client = await self.subscriber("api/kick me", "api/#", 1, V5)
        await self.connected("api-v311")
        status, listing = await self.request(b"GET", "/api/v1/clients?limit=1000")
        self.assertEqual(status, 200)
        clients = {c["client_id"]: c for c in listing["clients"]}
        self.assertEqual(clients["api/kick me"]["protocol_level"], 5)
        self.assertEqual(clients["api-v311"]["protocol_level"], 4)
        self.assertTrue(clients["api-v311"]["connected"])

        status, details = await self.request(b"GET", "/api/v1/clients/" + quote("api/kick me", safe=""))
        self.assertEqual(status, 200)
        self.assertEqual([(s["topic_filter"], s["qos"]) for s in details["subscriptions"]], [("api/#", 1)])

        status, answer = await self.request(b"DELETE", "/api/v1/clients/" + quote("api/kick me", safe=""))
        self.assertEqual((status, answer["disconnected"]), (200, True))
        gone = await client.disconnects.get_one()
        self.assertEqual((gone.reason_code, gone.from_server), (0x98, True))
        status, _ = await self.request(b"DELETE", "/api/v1/clients/nobody")
        self.assertEqual(status, 404)

    async def test_retained_list_and_delete(self) -> None:
        """
        A retained message paho published is listed with its preview; once
        the admin deletes it, a new subscriber gets no retained message and
        the store no longer holds it.
        """
        publisher = await self.connected("api-publisher", V5)
        await publisher.publish("api/retained", b"21.5", 1, retain=True, ContentType="text/plain")
        status, listing = await self.request(b"GET", "/api/v1/retained?filter=" + quote("api/#"))
        self.assertEqual(status, 200)
        [item] = listing["retained"]
        self.assertEqual(
            (item["topic"], item["payload_preview"], item["payload_size"], item["qos"]),
            ("api/retained", "21.5", 4, 1),
        )
        self.assertEqual(item["properties"]["content_type"], "text/plain")

        status, _ = await self.request(b"DELETE", "/api/v1/retained?topic=" + quote("api/retained"))
        self.assertEqual(status, 204)
        late = await self.subscriber("api-late", "api/#", 1, V5)
        await late.messages.expect_nothing()
        snapshot = await self.server.store.load()
        self.assertNotIn("api/retained", [m.topic for m in snapshot.retained])
        status, _ = await self.request(b"DELETE", "/api/v1/retained?topic=" + quote("api/retained"))
        self.assertEqual(status, 404)

    async def test_only_admins(self) -> None:
        """No credentials or a wrong password: 401; a user who is not an admin: 403."""
        self.assertEqual((await self.request(b"GET", "/api/v1/stats", auth=None))[0], 401)
        self.assertEqual((await self.request(b"GET", "/api/v1/stats", auth=(ADMIN[0], "nope")))[0], 401)
        self.assertEqual((await self.request(b"GET", "/api/v1/stats", auth=USER))[0], 403)

    async def test_readme_curl_examples(self) -> None:
        """The README's curl commands: stats, clients, a kick and a retained message cleared."""
        client = await self.subscriber("sensor-17", "cmd/#", 0, V5)
        publisher = await self.connected("curl-publisher", V5)
        await publisher.publish("sensors/17/temp", b"21.5", 1, retain=True)
        user = f"{ADMIN[0]}:{ADMIN[1]}"

        async def curl(*args: str) -> tuple[int, Any]:
            out, err, code = await run_process(self, CURL, ["-s", "-w", "\n%{http_code}", "-u", user, *args])
            self.assertEqual(code, 0, err)
            body, _, status = out.rpartition("\n")
            return int(status), json.loads(body) if body else None

        status, stats = await curl(f"{self.base_url}/api/v1/stats")
        self.assertEqual((status, stats["retained_messages"]), (200, 1))
        status, listing = await curl(f"{self.base_url}/api/v1/clients?limit=50")
        self.assertIn("sensor-17", [c["client_id"] for c in listing["clients"]])
        status, details = await curl(f"{self.base_url}/api/v1/clients/sensor-17")
        self.assertEqual([s["topic_filter"] for s in details["subscriptions"]], ["cmd/#"])
        status, retained = await curl(f"{self.base_url}/api/v1/retained?filter=sensors/%23")
        self.assertEqual([m["topic"] for m in retained["retained"]], ["sensors/17/temp"])
        status, _ = await curl("-X", "DELETE", f"{self.base_url}/api/v1/retained?topic=sensors/17/temp")
        self.assertEqual(status, 204)
        status, _ = await curl("-X", "DELETE", f"{self.base_url}/api/v1/clients/sensor-17")
        self.assertEqual(status, 200)
        gone = await client.disconnects.get_one()
        self.assertEqual(gone.reason_code, 0x98)
