# -*- test-case-name: tests.test_metrics -*-
"""
Tests for L{mqttx.metrics}: the collector against a broker driven through
real server protocols, and the C{metrics} listener scraped over loopback
HTTP after real clients' traffic.
"""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import REGISTRY
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import serverFromString
from twisted.internet.interfaces import IListeningPort
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from mqttx import __version__
from mqttx.broker.broker import Broker
from mqttx.config import MQTTConfig
from mqttx.interfaces import IAuthenticator
from mqttx.metrics import BrokerCollector, make_registry, metrics_site
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.store.memory import MemoryStore
from mqttx.transports.mqtt import MQTTServerFactory
from tests.helpers import BrokerTestCase
from tests.integration.helpers import HOST, PahoClient, start_broker

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, by name and labels."""
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, frozenset(labels.items()))]


async def http_get(port: int, path: bytes) -> tuple[int, bytes, Any]:
    """GET C{path} from the loopback HTTP server on C{port}: code, body, headers."""
    agent = Agent(_reactor)
    response = await agent.request(b"GET", b"http://%s:%d%s" % (HOST.encode(), port, path))
    body = await readBody(response)
    return response.code, body, response.headers


class _Writer:
    commits = 7
    commit_seconds = 0.35


class _Store:
    writer = _Writer()


class CollectorTests(BrokerTestCase):
    """
    L{BrokerCollector} reads the broker's counters and state when scraped.
    """

    def scrape(self, store: object = None) -> Samples:
        from prometheus_client.exposition import generate_latest

        return parse(generate_latest(make_registry(self.broker, store)).decode("utf-8"))

    def test_own_registry(self) -> None:
        """The collector is not registered in prometheus_client's global registry."""
        make_registry(self.broker)
        self.assertFalse(
            [c for c in REGISTRY._collector_to_names if isinstance(c, BrokerCollector)]
        )

    def test_empty_broker(self) -> None:
        """A new broker: every family is there, at zero."""
        samples = self.scrape()
        self.assertEqual(value(samples, "mqttx_messages_received_total", qos="0"), 0)
        self.assertEqual(value(samples, "mqttx_messages_sent_total", qos="2"), 0)
        self.assertEqual(value(samples, "mqttx_sessions", state="online"), 0)
        self.assertEqual(value(samples, "mqttx_retained_messages"), 0)
        self.assertEqual(value(samples, "mqttx_auth_failures_total"), 0)
        self.assertEqual(value(samples, "mqttx_messages_dropped_total", reason="queue_full"), 0)
        self.assertNotIn(("mqttx_store_commit_seconds_count", frozenset()), samples)

    def test_traffic(self) -> None:
        """
        Connections, messages by QoS, bytes, subscriptions, sessions and
        retained messages are counted.
        """
        sub = self.connect_client("sub")
        sub.subscribe("t/#", qos=2)
        pub = self.connect_client("pub")
        pub.publish("t/a", b"hello", qos=0)
        pub.publish_acked("t/b", b"abc", qos=1)
        pub.publish_acked("t/r", b"kept", qos=1, retain=True)
        samples = self.scrape()
        self.assertEqual(value(samples, "mqttx_messages_received_total", qos="0"), 1)
        self.assertEqual(value(samples, "mqttx_messages_received_total", qos="1"), 2)
        self.assertEqual(value(samples, "mqttx_message_bytes_received_total", qos="1"), 7)
        self.assertEqual(value(samples, "mqttx_messages_sent_total", qos="0"), 1)
        self.assertEqual(value(samples, "mqttx_messages_sent_total", qos="1"), 2)
        self.assertGreater(value(samples, "mqttx_message_bytes_sent_total", qos="1"), 7)
        self.assertEqual(value(samples, "mqttx_connections_open", listener="mqtt"), 2)
        self.assertEqual(value(samples, "mqttx_connects_total", listener="mqtt", reason="success"), 2)
        self.assertEqual(value(samples, "mqttx_sessions", state="online"), 2)
        self.assertEqual(value(samples, "mqttx_subscriptions"), 1)
        self.assertEqual(value(samples, "mqttx_retained_messages"), 1)
        self.assertEqual(value(samples, "mqttx_inflight_messages"), 2)  # sub did not ack
        received = value(samples, "mqttx_bytes_received_total", listener="mqtt")
        sent = value(samples, "mqttx_bytes_sent_total", listener="mqtt")
        written = len(sub.transport.value()) + len(pub.transport.value())
        self.assertGreater(received, 0)
        self.assertEqual(sent, written)

    def test_tls_handshake_failures(self) -> None:
        """Failed TLS handshakes are counted per listener."""
        self.broker.stats_for("mqtts").tls_handshake_failures += 3
        samples = self.scrape()
        self.assertEqual(value(samples, "mqttx_tls_handshake_failures_total", listener="mqtts"), 3)

    def test_disconnects_by_reason(self) -> None:
        """Each end of an admitted connection is counted under its reason."""
        a = self.connect_client("a")
        a.disconnect()
        b = self.connect_client("b")
        b.drop()
        first = self.connect_client("c")
        self.connect_client("c")  # takes the session over
        first.finish_close()
        samples = self.scrape()
        for reason in ("client_disconnect", "connection_lost", "session_taken_over"):
            self.assertEqual(value(samples, "mqttx_disconnects_total", listener="mqtt", reason=reason), 1)
        self.assertEqual(value(samples, "mqttx_sessions", state="online"), 1)
        self.assertEqual(value(samples, "mqttx_clients_maximum"), 1)  # one at a time

    def test_offline_sessions_and_queued(self) -> None:
        """A persistent session whose client left is offline and queues QoS 1."""
        sub = self.connect_client("sub", clean_start=False)
        sub.subscribe("q", qos=1)
        sub.disconnect()
        pub = self.connect_client("pub")
        pub.publish_acked("q", b"1", qos=1)
        pub.publish("q", b"0", qos=0)
        samples = self.scrape()
        self.assertEqual(value(samples, "mqttx_sessions", state="offline"), 1)
        self.assertEqual(value(samples, "mqttx_queued_messages"), 1)
        self.assertEqual(value(samples, "mqttx_messages_dropped_total", reason="slow_consumer"), 1)

    def test_auth_failures(self) -> None:
        """A CONNECT refused for its credentials is an auth failure and a refused connect."""
        self.broker = Broker(self.config, clock=self.clock, store=self.store, authenticator=_Refuse())
        self.factory = MQTTServerFactory(self.broker, self.clock)
        client = self.connect_client("x", username="u", password=b"p")
        assert client.connack is not None
        self.assertEqual(client.connack.reason_code, 0x04)
        samples = self.scrape()
        self.assertEqual(value(samples, "mqttx_auth_failures_total"), 1)
        self.assertEqual(
            value(samples, "mqttx_connects_total", listener="mqtt", reason="bad_user_name_or_password"), 1
        )

    def test_store_commits(self) -> None:
        """The store writer's commits and their time make a summary."""
        samples = self.scrape(_Store())
        self.assertEqual(value(samples, "mqttx_store_commit_seconds_count"), 7)
        self.assertEqual(value(samples, "mqttx_store_commit_seconds_sum"), 0.35)

    def test_memory_store_has_no_commits(self) -> None:
        """A store without a writer gives no commit summary."""
        samples = self.scrape(MemoryStore())
        self.assertNotIn(("mqttx_store_commit_seconds_count", frozenset()), samples)


@implementer(IAuthenticator)
class _Refuse:
    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        return succeed(int(ReasonCode.BAD_USER_NAME_OR_PASSWORD))


class MetricsSiteTests(TestCase):
    """
    The C{metrics} listener serves the exposition over HTTP at
    C{/metrics}, scraped here over loopback after real clients' traffic.
    """

    async def listen(self, site: Site) -> int:
        port: IListeningPort = await serverFromString(_reactor, f"tcp:0:interface={HOST}").listen(site)
        self.addCleanup(port.stopListening)
        return port.getHost().port  # type: ignore[attr-defined, no-any-return]

    async def test_scrape_after_traffic(self) -> None:
        """
        After a paho client connects and publishes five QoS 1 messages to
        a subscriber, a scrape says so.
        """
        running = await start_broker(self)
        port = await self.listen(metrics_site(running.broker))
        sub = PahoClient(self, running.port, "sub")
        await sub.connect()
        await sub.subscribe("m/#", qos=1)
        pub = PahoClient(self, running.port, "pub")
        await pub.connect()
        for i in range(5):
            await pub.publish("m/x", b"payload%d" % i, qos=1)
        await sub.messages.get(5)
        code, body, headers = await http_get(port, b"/metrics")
        self.assertEqual(code, 200)
        self.assertIn(b"text/plain", headers.getRawHeaders(b"content-type")[0])
        samples = parse(body.decode("utf-8"))
        self.assertEqual(value(samples, "mqttx_messages_received_total", qos="1"), 5)
        self.assertEqual(value(samples, "mqttx_message_bytes_received_total", qos="1"), 5 * 8)
        self.assertEqual(value(samples, "mqttx_messages_sent_total", qos="1"), 5)
        self.assertEqual(value(samples, "mqttx_connects_total", listener="mqtt", reason="success"), 2)
        self.assertEqual(value(samples, "mqttx_sessions", state="online"), 2)
        self.assertEqual(value(samples, "mqttx_subscriptions"), 1)
        self.assertGreater(value(samples, "mqttx_bytes_received_total", listener="mqtt"), 5 * 8)
        self.assertGreater(value(samples, "mqttx_bytes_sent_total", listener="mqtt"), 5 * 8)

    async def test_other_paths_not_found(self) -> None:
        """Only C{/metrics} is served."""
        running = await start_broker(self)
        port = await self.listen(metrics_site(running.broker))
        code, _, _ = await http_get(port, b"/")
        self.assertEqual(code, 404)

    def test_site_root(self) -> None:
        """The site's root has the metrics resource as its only child."""
        site = metrics_site(_broker_stub())
        root: Resource = site.resource
        self.assertEqual(list(root.children), [b"metrics"])


def _broker_stub() -> Broker:
    return Broker(MQTTConfig(), clock=Clock(), store=MemoryStore())


class ServiceTests(TestCase):
    """
    A configuration with a C{metrics} listener: the service, on the real
    reactor, serves the metrics of its broker there.
    """

    async def test_service_serves_metrics(self) -> None:
        """
        C{protocol: metrics} is accepted, and the running service answers
        a scrape on that listener with its broker's metrics, counting an
        MQTT client on the other listener.
        """
        from twisted.logger import capturedLogs

        from mqttx.config import parse_config
        from mqttx.service import MQTTXService

        config = parse_config(
            "listeners:\n"
            f"  - {{name: mqtt, protocol: mqtt, endpoint: 'tcp:0:interface={HOST}'}}\n"
            f"  - {{name: prom, protocol: metrics, endpoint: 'tcp:0:interface={HOST}'}}\n"
            "persistence: {backend: memory}\n",
            "test.yaml",
        )
        self.assertEqual([listener.protocol for listener in config.listeners], ["mqtt", "metrics"])
        service = MQTTXService(config, _reactor)
        with capturedLogs() as events:
            service.startService()
            self.addCleanup(service.stopService)
            assert service._starting is not None
            await service._starting
        ports = {
            e["listener"]: int(e["address"].rsplit(":", 1)[1])
            for e in events
            if e.get("event_id") == "listener.started"
        }
        client = PahoClient(self, ports["mqtt"], "c")
        await client.connect()
        await client.publish("a", b"1", qos=1)
        code, body, _ = await http_get(ports["prom"], b"/metrics")
        self.assertEqual(code, 200)
        samples = parse(body.decode("utf-8"))
        self.assertEqual(value(samples, "mqttx_connects_total", listener="mqtt", reason="success"), 1)
        self.assertEqual(value(samples, "mqttx_messages_received_total", qos="1"), 1)
        self.assertEqual(value(samples, "mqttx_info", version=__version__, node="mqttx-1"), 1)
