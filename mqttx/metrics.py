# -*- test-case-name: tests.test_metrics -*-
"""
Prometheus metrics: a collector that reads the broker's plain counters at
scrape time, and the C{metrics} listener that serves them at C{/metrics}.

Nothing here runs per message. The broker, its sessions, its transports and
the store's writer keep plain integers (DESIGN.md, the hot path); a scrape
reads them, and walks the sessions for the gauges (sessions, subscriptions,
queued and in-flight messages), on the reactor thread like everything else
that touches the broker, so no lock is needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    SummaryMetricFamily,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector, CollectorRegistry
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

from mqttx import __version__
from mqttx.broker.broker import Broker
from mqttx.broker.stats import DROP_REASONS, session_figures

__all__ = ["BrokerCollector", "MetricsResource", "make_registry", "metrics_site"]


class BrokerCollector(Collector):
    """
    Collects the metrics of one broker (and its store, if it has a writer
    that counts commits) each time it is scraped.

    @param broker: the broker.
    @param store: the broker's store; its C{writer} (the SQLite store's),
        if any, gives C{commits} and C{commit_seconds}.
    """

    def __init__(self, broker: Broker, store: object = None) -> None:
        self._broker = broker
        self._store = store

    def collect(self) -> Iterator[Metric]:
        broker = self._broker
        yield from self._listeners(broker)
        yield from self._messages(broker)
        yield from self._state(broker)
        auth = CounterMetricFamily(
            "mqttx_auth_failures",
            "CONNECTs refused for bad credentials, no authorization or an unknown authentication method.",
        )
        auth.add_metric([], broker.auth_failures)
        yield auth
        writer: Any = getattr(self._store, "writer", None)
        if writer is not None:
            commits = SummaryMetricFamily(
                "mqttx_store_commit_seconds",
                "Time the store's writer spent per commit (count: commits, sum: seconds).",
                count_value=writer.commits,
                sum_value=writer.commit_seconds,
            )
            yield commits
        info = GaugeMetricFamily(
            "mqttx_info", "This broker: version and node name.", labels=["version", "node"]
        )
        info.add_metric([__version__, broker.node_name], 1)
        yield info

    def _listeners(self, broker: Broker) -> Iterator[Metric]:
        open_ = GaugeMetricFamily(
            "mqttx_connections_open", "Connections open now, by listener.", labels=["listener"]
        )
        connects = CounterMetricFamily(
            "mqttx_connects",
            "CONNECTs answered, by listener and outcome (success, or the refusal's reason code).",
            labels=["listener", "reason"],
        )
        disconnects = CounterMetricFamily(
            "mqttx_disconnects",
            "Admitted connections that ended, by listener and reason.",
            labels=["listener", "reason"],
        )
        received = CounterMetricFamily(
            "mqttx_bytes_received", "Bytes read from clients, by listener.", labels=["listener"]
        )
        sent = CounterMetricFamily(
            "mqttx_bytes_sent", "Bytes written to clients, by listener.", labels=["listener"]
        )
        handshakes = CounterMetricFamily(
            "mqttx_tls_handshake_failures",
            "TLS handshakes that failed, by listener.",
            labels=["listener"],
        )
        for name, stats in sorted(broker.listener_stats.items()):
            open_.add_metric([name], stats.connections_open)
            handshakes.add_metric([name], stats.tls_handshake_failures)
            received.add_metric([name], stats.bytes_received)
            sent.add_metric([name], stats.bytes_sent)
            for reason, count in sorted(stats.connects.items()):
                connects.add_metric([name, reason], count)
            for reason, count in sorted(stats.disconnects.items()):
                disconnects.add_metric([name, reason], count)
        yield from (open_, connects, disconnects, received, sent, handshakes)

    def _messages(self, broker: Broker) -> Iterator[Metric]:
        counters = broker.counters
        received = CounterMetricFamily(
            "mqttx_messages_received", "PUBLISH received from clients, by QoS.", labels=["qos"]
        )
        received_bytes = CounterMetricFamily(
            "mqttx_message_bytes_received",
            "Payload bytes of the PUBLISH received from clients, by QoS.",
            labels=["qos"],
        )
        sent = CounterMetricFamily(
            "mqttx_messages_sent", "PUBLISH sent to clients (not counting resends), by QoS.", labels=["qos"]
        )
        sent_bytes = CounterMetricFamily(
            "mqttx_message_bytes_sent", "Bytes of the PUBLISH sent to clients, by QoS.", labels=["qos"]
        )
        sent_counts = (counters.sent_qos0, counters.sent_qos1, counters.sent_qos2)
        sent_sizes = (counters.sent_bytes_qos0, counters.sent_bytes_qos1, counters.sent_bytes_qos2)
        for qos in range(3):
            label = [str(qos)]
            received.add_metric(label, broker.received_qos[qos])
            received_bytes.add_metric(label, broker.received_bytes_qos[qos])
            sent.add_metric(label, sent_counts[qos])
            sent_bytes.add_metric(label, sent_sizes[qos])
        dropped = CounterMetricFamily(
            "mqttx_messages_dropped",
            "Messages not delivered to a session, by reason: slow_consumer (QoS 0 to an offline "
            "or congested client), queue_full, too_large (above the client's Maximum Packet Size), "
            "expired.",
            labels=["reason"],
        )
        for reason, attribute in DROP_REASONS:
            dropped.add_metric([reason], getattr(counters, attribute))
        yield from (received, received_bytes, sent, sent_bytes, dropped)

    def _state(self, broker: Broker) -> Iterator[Metric]:
        figures = session_figures(broker.sessions.values())
        states = GaugeMetricFamily("mqttx_sessions", "Sessions, by state.", labels=["state"])
        states.add_metric(["online"], figures.online)
        states.add_metric(["offline"], figures.offline)
        yield states
        maximum = GaugeMetricFamily(
            "mqttx_clients_maximum", "The most clients connected at once since the broker started."
        )
        maximum.add_metric([], broker.clients_maximum)
        yield maximum
        yield GaugeMetricFamily("mqttx_subscriptions", "Subscriptions of all sessions.", value=figures.subscriptions)
        yield GaugeMetricFamily("mqttx_retained_messages", "Retained messages.", value=len(broker.retained))
        yield GaugeMetricFamily(
            "mqttx_queued_messages",
            "Messages queued for sessions (offline, or window full).",
            value=figures.queued,
        )
        yield GaugeMetricFamily(
            "mqttx_inflight_messages", "QoS 1/2 messages sent and not yet acknowledged.", value=figures.inflight
        )


def make_registry(broker: Broker, store: object = None) -> CollectorRegistry:
    """
    A registry of its own (never the process-wide default one) holding a
    L{BrokerCollector}.
    """
    registry = CollectorRegistry(auto_describe=False)
    registry.register(BrokerCollector(broker, store))
    return registry


class MetricsResource(Resource):
    """
    C{GET} renders the registry in Prometheus' text exposition format.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self._registry = registry

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return generate_latest(self._registry)


def metrics_site(broker: Broker, store: object = None) -> Site:
    """
    The factory of a C{metrics} listener: HTTP, with the metrics at
    C{/metrics} (other paths are 404).
    """
    root = Resource()
    root.putChild(b"metrics", MetricsResource(make_registry(broker, store)))
    site = Site(root)
    site.noisy = False
    return site
