# -*- test-case-name: tests.test_config_limits -*-
"""
The configuration keys of limits and overload: defaults, checks, and the
documented example.
"""

from __future__ import annotations

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.config import ConfigError, ListenerConfig, MQTTConfig, load_config, parse_config

SOURCE = "etc/x.yaml"
EXAMPLE = FilePath(__file__).parent().parent().child("etc").child("mqttx.yaml")

LIMIT_KEYS = (
    "connect_timeout",
    "max_connections",
    "max_connection_rate",
    "connection_burst",
    "max_client_id_length",
    "max_topic_length",
    "max_topic_levels",
    "max_subscriptions",
    "max_publish_rate",
    "max_publish_bytes_rate",
)


class LimitConfigTests(SynchronousTestCase):
    """Every limit is a key with a sane default, checked at load."""

    def test_defaults(self) -> None:
        """
        Defaults: connection count and subscriptions bounded, topic levels
        bounded, rates off (a NAT or proxy puts many clients behind one
        address), and the protocol's own maxima elsewhere.
        """
        config = MQTTConfig()
        self.assertEqual(
            [getattr(config, k) for k in LIMIT_KEYS],
            [10.0, 50_000, 0.0, 20, 65_535, 65_535, 128, 10_000, 0.0, 0],
        )
        self.assertEqual(ListenerConfig("m", "mqtt", "tcp:0").max_connections, 0)

    def test_parsed(self) -> None:
        """Each key is read from the C{mqtt} section; listeners take C{max_connections}."""
        config = parse_config(
            "mqtt: {connect_timeout: 2.5, max_connections: 10, max_connection_rate: 5,"
            " connection_burst: 7, max_client_id_length: 100, max_topic_length: 200,"
            " max_topic_levels: 0, max_subscriptions: 3, max_publish_rate: 50.5,"
            " max_publish_bytes_rate: 4096}\n"
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', max_connections: 4}]\n",
            SOURCE,
        )
        self.assertEqual(
            [getattr(config.mqtt, k) for k in LIMIT_KEYS],
            [2.5, 10, 5.0, 7, 100, 200, 0, 3, 50.5, 4096],
        )
        self.assertEqual(config.listeners[0].max_connections, 4)

    def assertRejected(self, text: str, key: str, fragment: str) -> None:
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, SOURCE)
        self.assertEqual(caught.exception.key, key)
        self.assertIn(fragment, str(caught.exception))

    def test_bad_values(self) -> None:
        """Out-of-range and wrongly typed values name their key."""
        self.assertRejected("mqtt: {connect_timeout: 0}", "mqtt.connect_timeout", "between 0.1 and 3600")
        self.assertRejected("mqtt: {max_connections: -1}", "mqtt.max_connections", "at least 0")
        self.assertRejected("mqtt: {max_connection_rate: fast}", "mqtt.max_connection_rate", "expected a number")
        self.assertRejected("mqtt: {connection_burst: 0}", "mqtt.connection_burst", "at least 1")
        self.assertRejected("mqtt: {max_client_id_length: 22}", "mqtt.max_client_id_length", "between 23")
        self.assertRejected("mqtt: {max_topic_length: 70000}", "mqtt.max_topic_length", "between 1 and 65535")
        self.assertRejected("mqtt: {max_publish_rate: true}", "mqtt.max_publish_rate", "expected a number")
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', max_connections: x}]",
            "listeners[0].max_connections",
            "expected an integer",
        )

    def test_example_documents_limits(self) -> None:
        """etc/mqttx.yaml spells out every limit key, with its default."""
        text = EXAMPLE.getContent().decode("utf-8")
        for key in LIMIT_KEYS:
            self.assertIn(f"\n  {key}: ", text)
        self.assertIn("\n    max_connections: 0\n", text)
        self.assertEqual(load_config(EXAMPLE).mqtt, MQTTConfig())
