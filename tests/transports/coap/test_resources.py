"""
Tests for L{mqttx.transports.coap.resources} and
L{mqttx.transports.coap.observe}: the C{/ps/} resources without datagrams,
through a real bridge into a broker on a L{Clock}.
"""

from __future__ import annotations

from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.acl import ACLAuthorizer, parse_acl
from mqttx.broker.bridge import Bridge, Delivery
from mqttx.broker.broker import Broker
from mqttx.config import CoAPRule
from mqttx.mqtt.properties import Properties
from mqttx.transports.coap.codec import Code
from mqttx.transports.coap.observe import (
    CONFIRMABLE_INTERVAL,
    QUEUE_LIMIT,
    Notification,
    Observation,
    observe,
)
from mqttx.transports.coap.resources import (
    DELETE,
    GET,
    POST,
    PUT,
    BadRequest,
    PubSub,
    Request,
    Response,
    Source,
    content_format_of,
    content_type_of,
    publish_options,
    topic_of,
)
from tests.helpers import BrokerTestCase

ANYONE = Source("127.0.0.1", 5683, CoAPRule("127.0.0.0/8"))
ALICE = Source("10.0.0.1", 5683, CoAPRule("10.0.0.0/8", "alice"))
READ_ONLY = Source("10.9.0.1", 5683, CoAPRule("10.9.0.0/16", publish=False))


class FormatTests(SynchronousTestCase):
    def test_content_formats_both_ways(self) -> None:
        """Numeric Content-Formats map to media types and back."""
        for number, media in [(0, "text/plain;charset=utf-8"), (50, "application/json"), (60, "application/cbor"),
                              (42, "application/octet-stream"), (40, "application/link-format"),
                              (41, "application/xml"), (47, "application/exi")]:
            self.assertEqual(content_type_of(number), media)
            self.assertEqual(content_format_of(media), number)

    def test_unknown_format_as_number(self) -> None:
        """A number without a media type here travels as its decimal text, and comes back."""
        self.assertEqual(content_type_of(65000), "65000")
        self.assertEqual(content_format_of("65000"), 65000)
        self.assertIsNone(content_format_of("image/x-unknown"))
        self.assertEqual(content_format_of("text/plain"), 0)

    def test_topic_of(self) -> None:
        """Path segments after ps are topic levels; wildcards only where allowed."""
        self.assertEqual(topic_of(("ps", "a", "b"), wildcards=False), "a/b")
        self.assertEqual(topic_of(("ps", "a", "+", "#"), wildcards=True), "a/+/#")
        for path in [("ps", "a", "+"), ("ps",), ("x", "a"), ("ps", "$SYS", "x"), ("ps", "a/b")]:
            with self.assertRaises(BadRequest):
                topic_of(path, wildcards=False)

    def test_publish_options(self) -> None:
        """qos and retain from Uri-Query; anything else is 4.00."""
        self.assertEqual(publish_options(()), (0, False))
        self.assertEqual(publish_options(("qos=2", "retain=true")), (2, True))
        for bad in [("qos=3",), ("retain=yes",), ("topic=x",)]:
            with self.assertRaises(BadRequest):
                publish_options(bad)


ACL_TEXT = """
topic read open/#
user alice
topic readwrite open/#
"""


class PubSubTests(BrokerTestCase):
    def make_broker(self) -> Broker:
        return Broker(
            self.config, clock=self.clock, store=self.store, authorizer=ACLAuthorizer(parse_acl(ACL_TEXT), ())
        )

    def setUp(self) -> None:
        super().setUp()
        self.stopping = False
        self.pubsub = PubSub(Bridge(self.broker, self.clock), "coap", stopping=lambda: self.stopping)

    def handle(self, method: int, path: str, payload: bytes = b"", source: Source = ALICE, **kw: object) -> Response:
        request = Request(method, tuple(path.strip("/").split("/")), payload=payload, **kw)  # type: ignore[arg-type]
        return self.successResultOf(self.pubsub.handle(request, source))

    def test_publish_qos_retain_content_format(self) -> None:
        """A POST publishes with the query's QoS and retain flag and the format's content type."""
        sub = self.connect_client("sub", 5, username="alice")
        sub.subscribe("open/t", 2)
        response = self.handle(POST, "/ps/open/t", b"{}", query=("qos=2", "retain=true"), content_format=50)
        self.assertEqual(response.code, Code.CHANGED)
        [publish] = sub.publishes()
        self.assertEqual((publish.qos, publish.properties.content_type), (2, "application/json"))
        got = self.handle(GET, "/ps/open/t")
        self.assertEqual((got.code, got.payload, got.content_format), (Code.CONTENT, b"{}", 50))

    def test_put_is_changed_too(self) -> None:
        """PUT publishes like POST and answers 2.04, even for a new topic."""
        self.assertEqual(self.handle(PUT, "/ps/open/new", b"v").code, Code.CHANGED)

    def test_get_none_is_not_found(self) -> None:
        """GET of a topic without a retained message is 4.04."""
        self.assertEqual(self.handle(GET, "/ps/open/none").code, Code.NOT_FOUND)

    def test_max_age_from_expiry(self) -> None:
        """The Max-Age of a GET is the message's expiry left (60 without one)."""
        pub = self.connect_client("pub", 5, username="alice")
        pub.publish_acked("open/e", b"v", retain=True, properties=Properties(message_expiry_interval=30))
        self.clock.advance(10)
        self.assertEqual(self.handle(GET, "/ps/open/e").max_age, 20)
        self.handle(POST, "/ps/open/f", b"v", query=("retain=true",))
        self.assertEqual(self.handle(GET, "/ps/open/f").max_age, 60)

    def test_delete_clears_retained(self) -> None:
        """DELETE clears the retained message: 2.02, then GET is 4.04."""
        self.handle(POST, "/ps/open/d", b"v", query=("retain=true",))
        self.assertEqual(self.handle(DELETE, "/ps/open/d").code, Code.DELETED)
        self.assertEqual(self.handle(GET, "/ps/open/d").code, Code.NOT_FOUND)

    def test_acl_denial_forbidden(self) -> None:
        """The rule's user is subject to the ACL: a publish it may not make is 4.03."""
        self.assertEqual(self.handle(POST, "/ps/open/x", b"v", source=ANYONE).code, Code.FORBIDDEN)
        self.assertEqual(self.handle(POST, "/ps/closed", b"v", source=ALICE).code, Code.FORBIDDEN)

    def test_acl_applies_to_get(self) -> None:
        """GET reads the retained message only where the user may read."""
        self.handle(POST, "/ps/open/r", b"v", query=("retain=true",))
        self.assertEqual(self.handle(GET, "/ps/open/r", source=ANYONE).payload, b"v")
        self.assertEqual(self.handle(GET, "/ps/secret", source=ANYONE).code, Code.FORBIDDEN)

    def test_gets_share_one_client(self) -> None:
        """
        Polling GETs and the publishes of one rule's user share one cached
        bridge client: one admission, no connect or disconnect line per GET,
        closed once idle.
        """
        self.handle(POST, "/ps/open/p", b"v", query=("retain=true",))
        connects = self.broker.stats_for("coap").connects
        self.assertEqual(connects["success"], 1)
        with capturedLogs() as events:
            for _ in range(20):
                self.assertEqual(self.handle(GET, "/ps/open/p").payload, b"v")
                self.assertEqual(self.handle(GET, "/ps/open/none").code, Code.NOT_FOUND)
                self.handle(POST, "/ps/open/q", b"w")
        self.assertEqual(dict(connects), {"success": 1})
        self.assertEqual(self.broker.clients_connected, 1)
        ids = {e.get("event_id") for e in events}
        self.assertNotIn("client.connected", ids)
        self.assertNotIn("client.disconnected", ids)
        self.clock.advance(60)
        self.assertEqual(self.broker.clients_connected, 0)
        # The next GET admits the user's client again.
        self.assertEqual(self.handle(GET, "/ps/open/p").payload, b"v")
        self.assertEqual(dict(connects), {"success": 2})

    def test_rule_without_publish(self) -> None:
        """A rule with publish: false refuses POST, PUT and DELETE with 4.03."""
        for method in (POST, PUT, DELETE):
            self.assertEqual(self.handle(method, "/ps/open/x", source=READ_ONLY).code, Code.FORBIDDEN)

    def test_bad_topic_and_query(self) -> None:
        """A wildcard in a publish topic or an unknown query parameter is 4.00."""
        self.assertEqual(self.handle(POST, "/ps/open/+").code, Code.BAD_REQUEST)
        self.assertEqual(self.handle(POST, "/ps/open/x", query=("qos=5",)).code, Code.BAD_REQUEST)

    def test_stopping_unavailable(self) -> None:
        """While the broker stops, requests get 5.03."""
        self.stopping = True
        self.assertEqual(self.handle(POST, "/ps/open/x").code, Code.SERVICE_UNAVAILABLE)


class ObservationTests(BrokerTestCase):
    def setUp(self) -> None:
        super().setUp()
        self.pubsub = PubSub(Bridge(self.broker, self.clock), "coap")
        self.sent: list[Notification] = []
        self.ended: list[Observation] = []

    def start(self, path: str = "/ps/a", every: int = 100) -> tuple[Response, Observation]:
        request = Request(GET, tuple(path.strip("/").split("/")))
        d = observe(
            self.pubsub, request, ANYONE, "key", "coap-test", lambda o, n: self.sent.append(n), self.ended.append,
            confirmable_every=every,
            clock=self.clock,
        )
        response, observation = self.successResultOf(d)
        assert observation is not None
        observation.start()
        return response, observation

    def test_registration_answers_retained(self) -> None:
        """Observing an exact topic answers with its retained message, not notified again."""
        self.connect_client("pub", 5).publish_acked("a", b"state", retain=True)
        response, _ = self.start()
        self.assertEqual(response.payload, b"state")
        self.assertEqual(self.sent, [])

    def test_paused_while_confirmable_unacknowledged(self) -> None:
        """
        While a CON notification waits for its ACK the bridge client is
        paused (a slow consumer for the broker); the ACK resumes it and what
        waited is sent.
        """
        _, observation = self.start(every=1)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a", b"1")
        assert observation.client is not None
        self.assertTrue(observation.client.link.paused)
        pub.publish_acked("a", b"2", qos=1)
        self.assertEqual([n.response.payload for n in self.sent], [b"1"])
        observation.acknowledged()
        self.assertEqual([n.response.payload for n in self.sent], [b"1", b"2"])

    def test_confirmable_once_a_day(self) -> None:
        """A notification a day after the last confirmable one is confirmable (RFC 7641 4.5)."""
        self.start(every=100)
        pub = self.connect_client("pub", 5)
        pub.publish_acked("a", b"1")
        self.clock.advance(CONFIRMABLE_INTERVAL)
        pub.publish_acked("a", b"2")
        self.assertEqual([n.confirmable for n in self.sent], [False, True])

    def test_queue_bounded(self) -> None:
        """Messages waiting for an ACK are capped; the oldest are dropped and counted."""
        _, observation = self.start(every=1)
        for i in range(QUEUE_LIMIT + 5):
            observation.deliver(Delivery("a", b"%d" % i, 0, False))
        self.assertEqual(observation.dropped, 4)

    def test_broker_ending_client_ends_observation(self) -> None:
        """When the broker ends the bridge client (say, a takeover), the observation ends."""
        _, observation = self.start()
        self.connect_client("coap-test", 5)  # Takes the client identifier over.
        self.assertTrue(observation.closed)
        self.assertEqual(self.ended, [observation])
