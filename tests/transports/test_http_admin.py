# -*- test-case-name: tests.transports.test_http_admin -*-
"""
The admin API and the status page of the HTTP bridge, on a real broker and
bridge over L{StringTransport}s (see L{tests.transports.http_helpers}):
C{root} is the admin, C{alice} a user who is not.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from twisted.logger import capturedLogs

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.broker.admin import MAX_LIMIT
from mqttx.broker.broker import Broker
from mqttx.broker.message import Message
from mqttx.config import HTTPConfig
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.http.status_page import STATUS_FILES

from .http_helpers import HTTPTestCase, Response

ROOT = ("root", b"toor")
ALICE = ("alice", b"secret")


class AdminTestCase(HTTPTestCase):
    """Requests as the admin, and the MQTT clients the tests look at."""

    def admin(self, method: str, target: str, **kwargs: Any) -> Response:
        response = self.request(method, target, auth=ROOT, **kwargs)
        self.assertTrue(response.complete, response)
        return response

    def own_clients(self, answer: dict[str, Any]) -> list[dict[str, Any]]:
        """The clients of a listing but the admin's own (the bridge's cached client)."""
        return [c for c in answer["clients"] if c["listener"] != "http"]


class AuthenticationTests(AdminTestCase):
    """Only admins get answers; the others are told why."""

    paths = ("/api/v1/clients", "/api/v1/clients/c", "/api/v1/subscriptions", "/api/v1/retained", "/api/v1/stats")

    def test_no_credentials_is_401_with_a_challenge(self) -> None:
        """Without credentials, every admin resource answers 401 with a Basic challenge (a browser asks)."""
        for path in (*self.paths, "/"):
            response = self.request("GET", path)
            self.assertEqual(response.status, 401, path)
            self.assertEqual(response.header("www-authenticate"), 'Basic realm="mqttx"', path)

    def test_wrong_password_is_401_then_429(self) -> None:
        """
        A wrong password is a 401 too; past the authentication failure limit
        (3 a minute here) the answer is 429 (0x9F), even for the right one.
        """
        for path in self.paths[:3]:
            response = self.request("GET", path, auth=("root", b"wrong"))
            self.assertEqual((response.status, response.json()["reason_code"]), (401, 0x86), path)
        response = self.request("GET", "/api/v1/stats", auth=ROOT)
        self.assertEqual((response.status, response.json()["reason_code"]), (429, 0x9F))
        self.assertEqual(response.header("retry-after"), "60")

    def test_user_who_is_not_an_admin_is_403(self) -> None:
        """A user whose password is right but who is not in auth.admins gets 403, and it is logged."""
        with capturedLogs() as events:
            for path in (*self.paths, "/", "/status/status.js"):
                response = self.request("GET", path, auth=ALICE)
                self.assertEqual(response.status, 403, path)
        refusals = [e for e in events if e.get("event_id") == "admin.forbidden"]
        self.assertEqual([e["user"] for e in refusals], ["alice"] * (len(self.paths) + 2))

    def test_delete_needs_an_admin_too(self) -> None:
        """A user who is not an admin cannot disconnect a client nor clear a retained message."""
        client = self.connect_client("victim", 5)
        self.broker.retained.set("r", Message("r", b"x", retain=True))
        self.assertEqual(self.request("DELETE", "/api/v1/clients/victim", auth=ALICE).status, 403)
        self.assertEqual(self.request("DELETE", "/api/v1/retained?topic=r", auth=ALICE).status, 403)
        self.assertFalse(client.disconnecting)
        self.assertIsNotNone(self.broker.retained.get("r"))

    def test_admin_answers_carry_security_headers(self) -> None:
        """Answers are not to be cached, sniffed or framed."""
        response = self.admin("GET", "/api/v1/stats")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("cache-control"), "no-store")
        self.assertEqual(response.header("x-content-type-options"), "nosniff")
        self.assertEqual(response.header("x-frame-options"), "DENY")
        self.assertEqual(response.header("content-type"), "application/json")


class NoUserDatabaseTests(AdminTestCase):
    """
    Without a password file or HTTP hook, the broker lets in any user name
    with any password: nobody can be known to be an admin.
    """

    def make_broker(self) -> Broker:
        broker = super().make_broker()
        broker.admission.authenticator = NoUserDatabase(True)
        return broker

    def test_every_request_is_refused(self) -> None:
        """Even with an admin's name (any password would do): 403, and the reason is logged once at start."""
        with capturedLogs() as events:
            self._build()
        [warning] = [e for e in events if e.get("event_id") == "admin.unverified"]
        self.assertEqual(warning["listener"], "http")
        victim = self.connect_client("victim", 5)
        for method, path in [("GET", "/api/v1/clients"), ("DELETE", "/api/v1/clients/victim"), ("GET", "/")]:
            response = self.request(method, path, auth=("root", b"anything"))
            self.assertEqual(response.status, 403, path)
            self.assertIn("password_file", response.json()["error"])
        self.assertFalse(victim.disconnecting)


class MethodTests(AdminTestCase):
    """A method a resource does not have: 405 with Allow."""

    def test_405_with_allow(self) -> None:
        for method, path, allow in [
            ("POST", "/api/v1/clients", "GET, HEAD"),
            ("DELETE", "/api/v1/clients", "GET, HEAD"),
            ("PUT", "/api/v1/clients/c", "DELETE, GET, HEAD"),
            ("POST", "/api/v1/subscriptions", "GET, HEAD"),
            ("PUT", "/api/v1/retained", "DELETE, GET, HEAD"),
            ("DELETE", "/api/v1/stats", "GET, HEAD"),
            ("POST", "/", "GET, HEAD"),
        ]:
            response = self.admin(method, path)
            self.assertEqual((response.status, response.header("allow")), (405, allow), f"{method} {path}")

    def test_head_is_get_without_body(self) -> None:
        response = self.request("HEAD", "/api/v1/stats", auth=ROOT)
        self.assertEqual((response.status, response.body), (200, b""))
        self.assertEqual(response.header("content-type"), "application/json")


class ClientsTests(AdminTestCase):
    """C{/api/v1/clients} and C{/api/v1/clients/{id}}."""

    def test_list_online_and_offline_sessions(self) -> None:
        """Every session is listed, online or offline, with what the broker knows of it."""
        self.connect_client("b-v311", 4, username="alice", password=b"secret")
        v5 = self.connect_client("a-v5", 5, clean_start=False, properties=Properties(session_expiry_interval=60))
        v5.subscribe("x/#", 1)
        v5.disconnect()
        answer = self.admin("GET", "/api/v1/clients").json()
        self.assertIsNone(answer["next_cursor"])
        clients = {c["client_id"]: c for c in self.own_clients(answer)}
        self.assertEqual(list(clients), ["b-v311", "a-v5"])
        self.assertEqual(answer["total"], len(answer["clients"]))
        online, offline = clients["b-v311"], clients["a-v5"]
        self.assertEqual(
            (online["connected"], online["protocol_level"], online["listener"], online["username"]),
            (True, 4, "mqtt", "alice"),
        )
        self.assertRegex(online["peer"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(
            (offline["connected"], offline["protocol_level"], offline["session_expiry"], offline["subscriptions"]),
            (False, 5, 60, 1),
        )

    def test_pages(self) -> None:
        """C{limit} cuts the listing; C{next_cursor} gets the next page, until it is null."""
        for n in range(5):
            self.connect_client(f"c{n}")
        seen: list[str] = []
        target = "/api/v1/clients?limit=2"
        while target:
            answer = self.admin("GET", target).json()
            self.assertLessEqual(len(answer["clients"]), 2)
            seen += [c["client_id"] for c in answer["clients"]]
            cursor = answer["next_cursor"]
            target = f"/api/v1/clients?limit=2&cursor={quote(cursor, safe='')}" if cursor else ""
        self.assertEqual([s for s in seen if s.startswith("c")], [f"c{n}" for n in range(5)])
        self.assertEqual(len(seen), len(set(seen)))

    def test_bad_paging_is_400(self) -> None:
        for query in ("limit=0", "limit=-1", "limit=abc", f"limit={MAX_LIMIT + 1}", "limit=1.5", "cursor=x",
                      "cursor=-1", "limit=1&limit=2", "limit=%C2%B2", "cursor=%C2%B2", "limit=%FF"):
            response = self.admin("GET", f"/api/v1/clients?{query}")
            self.assertEqual(response.status, 400, query)

    def test_details_with_subscriptions(self) -> None:
        """One client: its subscriptions one by one, with their MQTT 5 options."""
        client = self.connect_client("d", 5)
        client.subscribe("a/+", 1, no_local=True, retain_handling=2, subscription_id=7)
        client.subscribe("$share/g/b", 0)
        answer = self.admin("GET", "/api/v1/clients/d").json()
        self.assertEqual((answer["client"]["client_id"], answer["client"]["connected"]), ("d", True))
        self.assertEqual(
            [(s["topic_filter"], s["qos"], s["no_local"], s["retain_handling"], s["subscription_id"], s["share_group"])
             for s in answer["subscriptions"]],
            [("a/+", 1, True, 2, 7, None), ("$share/g/b", 0, False, 0, None, "g")],
        )

    def test_ids_are_url_decoded_utf8(self) -> None:
        """A client id with a slash, spaces, non-ASCII letters and a percent sign is found URL-encoded."""
        odd = "caf\u00e9/\u6f22 100%?#"
        self.connect_client(odd, 5)
        response = self.admin("GET", "/api/v1/clients/" + quote(odd, safe=""))
        self.assertEqual((response.status, response.json()["client"]["client_id"]), (200, odd))
        self.assertIn(odd, [c["client_id"] for c in self.admin("GET", "/api/v1/clients").json()["clients"]])

    def test_unknown_id_is_404(self) -> None:
        """An id no session has is 404; one that is not UTF-8, 400."""
        self.assertEqual(self.admin("GET", "/api/v1/clients/nobody").status, 404)
        self.assertEqual(self.admin("DELETE", "/api/v1/clients/nobody").status, 404)
        self.assertEqual(self.admin("GET", "/api/v1/clients/%FF").status, 400)

    def test_delete_disconnects_with_0x98(self) -> None:
        """
        DELETE closes the connection of an MQTT 5 client with DISCONNECT 0x98
        (administrative action); its session stays for its expiry; the
        admin's name is logged.
        """
        client = self.connect_client("kicked", 5, properties=Properties(session_expiry_interval=300))
        client.subscribe("k/#", 1)
        with capturedLogs() as events:
            response = self.admin("DELETE", "/api/v1/clients/kicked")
        self.assertEqual(
            (response.status, response.json()),
            (200, {"client_id": "kicked", "disconnected": True, "session_discarded": False}),
        )
        self.assertClosedWith(client, ReasonCode.ADMINISTRATIVE_ACTION)
        client.finish_close()
        self.assertIn("kicked", self.broker.sessions)
        self.assertFalse(self.admin("GET", "/api/v1/clients/kicked").json()["client"]["connected"])
        [logged] = [e for e in events if e.get("event_id") == "admin.disconnect"]
        self.assertEqual((logged["requested_by"], logged["client_id"]), ("root", "kicked"))

    def test_delete_discarding_the_session(self) -> None:
        """With C{discard_session=true} the session ends with the connection: subscriptions and all."""
        client = self.connect_client("gone", 5, properties=Properties(session_expiry_interval=300))
        client.subscribe("g/#", 1)
        response = self.admin("DELETE", "/api/v1/clients/gone?discard_session=true")
        self.assertEqual(response.json()["session_discarded"], True)
        self.assertClosedWith(client, ReasonCode.ADMINISTRATIVE_ACTION)
        client.finish_close()
        self.assertNotIn("gone", self.broker.sessions)
        self.assertEqual(self.broker.router.match("g/1"), ())
        self.assertEqual(self.admin("GET", "/api/v1/clients/gone").status, 404)

    def test_delete_of_a_311_client_closes_without_disconnect(self) -> None:
        """A 3.1.1 client has no DISCONNECT from the server: the connection just closes."""
        client = self.connect_client("old", 4)
        self.assertEqual(self.admin("DELETE", "/api/v1/clients/old").status, 200)
        self.assertClosedWith(client, None)

    def test_delete_offline_session(self) -> None:
        """
        An offline session: nothing to disconnect (409) unless the session
        is to be discarded; then it ends, in the store too.
        """
        client = self.connect_client("away", 5, clean_start=False, properties=Properties(session_expiry_interval=300))
        client.disconnect()
        self.assertEqual(self.admin("DELETE", "/api/v1/clients/away").status, 409)
        self.assertIn("away", self.broker.sessions)
        self.assertEqual(self.admin("DELETE", "/api/v1/clients/away?discard_session=maybe").status, 400)
        response = self.admin("DELETE", "/api/v1/clients/away?discard_session=true")
        self.assertEqual(
            (response.status, response.json()),
            (200, {"client_id": "away", "disconnected": False, "session_discarded": True}),
        )
        self.assertNotIn("away", self.broker.sessions)
        snapshot = self.successResultOf(self.store.load())
        self.assertNotIn("away", [s.record.client_id for s in snapshot.sessions])


class SubscriptionsTests(AdminTestCase):
    """C{/api/v1/subscriptions}."""

    def test_every_subscription(self) -> None:
        a = self.connect_client("a", 5)
        a.subscribe("z", 1)
        a.subscribe("$share/g/t/#", 0)
        self.connect_client("b", 4).subscribe("b/+", 2)
        answer = self.admin("GET", "/api/v1/subscriptions").json()
        rows = [(s["client_id"], s["topic_filter"], s["qos"]) for s in answer["subscriptions"]]
        self.assertEqual(rows, [("a", "z", 1), ("a", "$share/g/t/#", 0), ("b", "b/+", 2)])
        self.assertEqual((answer["total"], answer["next_cursor"]), (3, None))

    def test_pages(self) -> None:
        for n in range(3):
            client = self.connect_client(f"s{n}")
            client.subscribe("one")
            client.subscribe("two")
        rows: list[tuple[str, str]] = []
        target = "/api/v1/subscriptions?limit=4"
        while target:
            answer = self.admin("GET", target).json()
            rows += [(s["client_id"], s["topic_filter"]) for s in answer["subscriptions"]]
            cursor = answer["next_cursor"]
            target = f"/api/v1/subscriptions?limit=4&cursor={quote(cursor, safe='')}" if cursor else ""
        self.assertEqual(rows, [(f"s{n}", f) for n in range(3) for f in ("one", "two")])


class RetainedTests(AdminTestCase):
    """C{/api/v1/retained}."""

    def setUp(self) -> None:
        super().setUp()
        publisher = self.connect_client("pub", 5)
        publisher.publish_acked("t/text", b"21.5", 1, retain=True,
                                properties=Properties(content_type="text/plain", user_property=(("k", "v"),)))
        publisher.publish_acked("t/binary", b"\xff\x00", 0, retain=True)
        publisher.publish_acked("other", b"o", 1, retain=True, properties=Properties(message_expiry_interval=100))
        self.clock.advance(30)

    def test_list_all_by_topic(self) -> None:
        """Without a filter: C{#}, every retained message, by topic, previewed."""
        answer = self.admin("GET", "/api/v1/retained").json()
        items = {m["topic"]: m for m in answer["retained"]}
        self.assertEqual(list(items), ["other", "t/binary", "t/text"])
        text = items["t/text"]
        self.assertEqual(
            (text["payload_size"], text["qos"], text["payload_preview"], text["preview_encoding"]),
            (4, 1, "21.5", "utf-8"),
        )
        self.assertEqual(text["properties"]["content_type"], "text/plain")
        binary = items["t/binary"]
        self.assertEqual((binary["payload_preview"], binary["preview_encoding"]), ("/wA=", "base64"))
        # The time left, as a subscriber would get it now.
        self.assertEqual(items["other"]["expires_in"], 70)

    def test_filter(self) -> None:
        answer = self.admin("GET", "/api/v1/retained?filter=" + quote("t/+")).json()
        self.assertEqual([m["topic"] for m in answer["retained"]], ["t/binary", "t/text"])

    def test_bad_filter_is_400(self) -> None:
        for bad in ("a/#/b", "a+"):
            response = self.admin("GET", "/api/v1/retained?filter=" + quote(bad))
            self.assertEqual((response.status, response.json()["reason_code"]), (400, 0x8F), bad)

    def test_expired_are_left_out(self) -> None:
        self.clock.advance(71)
        topics = [m["topic"] for m in self.admin("GET", "/api/v1/retained").json()["retained"]]
        self.assertNotIn("other", topics)

    def test_pages(self) -> None:
        first = self.admin("GET", "/api/v1/retained?limit=2").json()
        self.assertEqual(len(first["retained"]), 2)
        rest = self.admin("GET", "/api/v1/retained?limit=2&cursor=" + quote(first["next_cursor"])).json()
        self.assertEqual([m["topic"] for m in rest["retained"]], ["t/text"])
        self.assertIsNone(rest["next_cursor"])

    def test_delete_clears_it_durably_without_telling_subscribers(self) -> None:
        """
        DELETE clears the retained message in the broker and the store (204);
        a subscriber is sent nothing, and a new one gets no retained message.
        """
        watcher = self.connect_client("watcher", 5)
        watcher.subscribe("t/#")
        watcher.received()
        with capturedLogs() as events:
            response = self.admin("DELETE", "/api/v1/retained?topic=t/text")
        self.assertEqual((response.status, response.body), (204, b""))
        self.assertIsNone(self.broker.retained.get("t/text"))
        retained = [m.topic for m in self.successResultOf(self.store.load()).retained]
        self.assertNotIn("t/text", retained)
        self.assertIn("t/binary", retained)
        self.assertEqual(watcher.received(), [])
        late = self.connect_client("late", 5)
        late.subscribe("t/text")
        self.assertEqual(late.received(), [])
        [logged] = [e for e in events if e.get("event_id") == "admin.retained_deleted"]
        self.assertEqual((logged["requested_by"], logged["topic"]), ("root", "t/text"))

    def test_delete_errors(self) -> None:
        self.assertEqual(self.admin("DELETE", "/api/v1/retained?topic=none").status, 404)
        self.assertEqual(self.admin("DELETE", "/api/v1/retained").status, 400)
        self.assertEqual(self.admin("DELETE", "/api/v1/retained?topic=t/%23").status, 400)
        self.assertEqual(self.admin("DELETE", "/api/v1/retained?topic=a&topic=b").status, 400)


class StatsTests(AdminTestCase):
    """C{/api/v1/stats}."""

    def test_counters_and_clock(self) -> None:
        """The broker's figures, and its clock, from which two samples give rates."""
        self.clock.advance(12.5)
        subscriber = self.connect_client("s")
        subscriber.subscribe("m")
        publisher = self.connect_client("p")
        for _ in range(3):
            publisher.publish_acked("m", b"x", 1)
        publisher.publish_acked("m", b"r", 1, retain=True)
        stats = self.admin("GET", "/api/v1/stats").json()
        self.assertEqual(stats["time"], 12.5)
        self.assertEqual((stats["messages"]["received"], stats["messages"]["sent"]), (4, 4))
        self.assertEqual((stats["retained_messages"], stats["subscriptions"]), (1, 1))
        # The two MQTT clients, and the admin's own client of the bridge.
        self.assertEqual((stats["clients"]["connected"], stats["clients"]["sessions"]), (3, 3))


class StatusPageTests(AdminTestCase):
    """The status page's files, for admins."""

    def test_files_with_their_types_and_security_headers(self) -> None:
        files = [("/", "index.html"), ("/status/status.js", "status.js"), ("/status/status.css", "status.css")]
        for path, name in files:
            response = self.admin("GET", path)
            self.assertEqual(response.status, 200, path)
            self.assertEqual(response.header("content-type"), STATUS_FILES[name].decode(), path)
            self.assertIn("default-src 'self'", response.header("content-security-policy") or "", path)
            self.assertEqual(response.header("x-content-type-options"), "nosniff", path)
            self.assertEqual(response.header("x-frame-options"), "DENY", path)
        page = self.admin("GET", "/").body.decode()
        self.assertIn('<script src="/status/status.js" defer></script>', page)
        self.assertNotIn("http", page.replace("http-equiv", ""), "nothing from other sites")

    def test_other_paths_are_404(self) -> None:
        for path in ("/status/", "/status/nope.js", "/status/../admin.py", "/index.html/x"):
            self.assertEqual(self.admin("GET", path).status, 404, path)


class NoStatusPageTests(AdminTestCase):
    """C{http.status_page: false}: no page, the admin API stays."""

    http_config = HTTPConfig(status_page=False)

    def test_no_page(self) -> None:
        self.assertEqual(self.admin("GET", "/").status, 404)
        self.assertEqual(self.admin("GET", "/status/status.js").status, 404)
        self.assertEqual(self.admin("GET", "/api/v1/stats").status, 200)
