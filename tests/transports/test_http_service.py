# -*- test-case-name: tests.transports.test_http_service -*-
"""
C{protocol: http} listeners in the service: an L{HTTPSite} sharing the
connection limits of every listener, under TLS with a C{tls:} block and
behind the PROXY header with C{haproxy:}.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.config import HTTPConfig, parse_config
from mqttx.service import MQTTXService, build_components
from mqttx.transports.http import HTTPSite
from mqttx.transports.mqtt import MQTTServerFactory
from mqttx.transports.proxy import ProxyHeaderFactory
from tests.tlscerts import make_authority

LISTENERS = (
    "listeners:\n"
    '  - {name: m, protocol: mqtt, endpoint: "tcp:18840:interface=127.0.0.1"}\n'
    '  - {name: web, protocol: http, endpoint: "tcp:18841:interface=127.0.0.1",'
    " max_connections: 7, http: {heartbeat_interval: 5, metrics: true}}\n"
)
TAIL = "persistence: {backend: memory}\nauth: {admins: [root]}\n"


class HTTPServiceTests(SynchronousTestCase):
    """How build_components and MQTTXService serve an http listener."""

    def test_http_listener_is_a_site_with_shared_limits(self) -> None:
        """An http listener gets an HTTPSite with its settings and the limits the MQTT listeners count in."""
        config = parse_config(LISTENERS + TAIL, "test.yaml")
        components = build_components(config, MemoryReactorClock())
        mqtt, web = (components.factory_for(listener) for listener in config.listeners)
        assert isinstance(web, HTTPSite) and isinstance(mqtt, MQTTServerFactory)
        self.assertIs(web.limits, mqtt.limits)
        context = web.context
        self.assertEqual(context.listener.name, "web")
        self.assertEqual(context.listener.max_connections, 7)
        self.assertEqual(context.listener.http, HTTPConfig(heartbeat_interval=5, metrics=True))
        self.assertEqual(context.admins, frozenset({"root"}))
        self.assertIs(context.broker, components.broker)

    def test_tls_and_haproxy(self) -> None:
        """A tls: block puts TLS under the site; a haproxy: endpoint the PROXY header before both."""
        ca = make_authority(FilePath(self.mktemp()))
        cert = ca.issue("broker", server=True)
        text = (
            "listeners:\n"
            '  - {name: web, protocol: http, endpoint: "haproxy:tcp:18842:interface=127.0.0.1",'
            f" tls: {{cert: '{cert.cert}', key: '{cert.key}'}}}}\n"
        ) + TAIL
        reactor = MemoryReactorClock()
        service = MQTTXService(parse_config(text, "test.yaml"), reactor)
        service.startService()
        [(port, factory, _, _)] = reactor.tcpServers
        self.assertEqual(port, 18842)
        assert isinstance(factory, ProxyHeaderFactory)
        tls = factory.wrappedFactory
        self.assertIsInstance(tls, TLSMemoryBIOFactory)
        self.assertIsInstance(cast(TLSMemoryBIOFactory, tls).wrappedFactory, HTTPSite)
        self.successResultOf(service.stopService())
