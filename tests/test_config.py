# -*- test-case-name: tests.test_config -*-
"""
Tests for L{mqttx.config}.
"""

from __future__ import annotations

import json
from dataclasses import FrozenInstanceError

from twisted.python.filepath import FilePath
from twisted.trial.unittest import SynchronousTestCase

from mqttx.config import (
    DEFAULT_LISTENERS,
    AuthConfig,
    CoAPConfig,
    CoAPRule,
    Config,
    ConfigError,
    HTTPConfig,
    ListenerConfig,
    LoggingConfig,
    MQTTConfig,
    NodeConfig,
    PersistenceConfig,
    TLSConfig,
    WebSocketConfig,
    load_config,
    parse_config,
    udp_address,
)

EXAMPLE = FilePath(__file__).parent().parent().descendant(["etc", "mqttx.yaml"])
SOURCE = "etc/x.yaml"


def listener(endpoint: str = "tcp:0:interface=127.0.0.1", **extra: str) -> str:
    """A one-listener C{listeners} section, in YAML."""
    fields = {"name": "mqtt", "protocol": "mqtt", "endpoint": endpoint, **extra}
    inner = ", ".join(f"{k}: {v!r}" for k, v in fields.items())
    return f"listeners:\n  - {{{inner}}}\n"


class ParseTests(SynchronousTestCase):
    """
    L{parse_config} turns a valid document into typed values.
    """

    def test_empty_document_gives_defaults(self) -> None:
        """
        An empty file configures one MQTT listener on 127.0.0.1:1883 and
        every default.
        """
        config = parse_config("", SOURCE)
        self.assertEqual(config, Config())
        self.assertEqual(
            config.listeners,
            (
                ListenerConfig(
                    name="mqtt", protocol="mqtt", endpoint="tcp:1883:interface=127.0.0.1"
                ),
            ),
        )
        self.assertEqual(config.listeners, DEFAULT_LISTENERS)
        self.assertEqual(config.node, NodeConfig(name="mqttx-1"))
        self.assertEqual(
            config.mqtt,
            MQTTConfig(
                max_packet_size=1048576,
                receive_maximum=65535,
                max_inflight=32,
                max_queued_messages=1000,
                max_session_expiry=86400,
                retain_available=True,
                shared_subscriptions=True,
                topic_alias_maximum=64,
                keepalive_max=0,
            ),
        )
        self.assertEqual(
            config.persistence,
            PersistenceConfig(
                backend="sqlite", path="var/mqttx.db", durability="sync", commit_interval=1.0
            ),
        )
        self.assertEqual(
            config.auth, AuthConfig(allow_anonymous=True, password_file=None, acl_file=None)
        )
        self.assertEqual(config.logging, LoggingConfig(level="info", format="text"))

    def test_comment_only_document_gives_defaults(self) -> None:
        """
        A document of comments is empty.
        """
        self.assertEqual(parse_config("# nothing here\n", SOURCE), Config())

    def test_empty_sections_give_defaults(self) -> None:
        """
        A section key with no value (YAML null) keeps that section's defaults.
        """
        text = "node:\nmqtt:\npersistence:\nauth:\nlogging:\n"
        self.assertEqual(parse_config(text, SOURCE), Config())

    def test_every_key(self) -> None:
        """
        Every key is read into its field.
        """
        text = """
node: {name: edge-7}
listeners:
  - {name: a, protocol: mqtt, endpoint: "tcp:0:interface=127.0.0.1"}
  - {name: b.2, protocol: mqtt, endpoint: "unix:/tmp/mqttx.sock"}
mqtt:
  max_packet_size: 2048
  receive_maximum: 10
  max_inflight: 5
  max_queued_messages: 0
  max_session_expiry: 4294967295
  retain_available: false
  shared_subscriptions: false
  topic_alias_maximum: 0
  keepalive_max: 600
  maximum_qos: 1
  wildcard_subscriptions: false
  subscription_identifiers: false
  shared_subscription_strategy: sticky
  response_information: "reply/"
  server_reference: "other.example:1883"
  server_moved: true
  validate_payload_format: false
  flow_control_timeout: 0.25
persistence:
  backend: memory
  path: /var/lib/mqttx/db
  durability: batch
  commit_interval: 0.25
auth: {allow_anonymous: false, password_file: null, acl_file: null}
logging: {level: debug, format: json}
"""
        self.assertEqual(
            parse_config(text, SOURCE),
            Config(
                node=NodeConfig(name="edge-7"),
                listeners=(
                    ListenerConfig("a", "mqtt", "tcp:0:interface=127.0.0.1"),
                    ListenerConfig("b.2", "mqtt", "unix:/tmp/mqttx.sock"),
                ),
                mqtt=MQTTConfig(
                    max_packet_size=2048,
                    receive_maximum=10,
                    max_inflight=5,
                    max_queued_messages=0,
                    max_session_expiry=4294967295,
                    retain_available=False,
                    shared_subscriptions=False,
                    topic_alias_maximum=0,
                    keepalive_max=600,
                    maximum_qos=1,
                    wildcard_subscriptions=False,
                    subscription_identifiers=False,
                    shared_subscription_strategy="sticky",
                    response_information="reply/",
                    server_reference="other.example:1883",
                    server_moved=True,
                    validate_payload_format=False,
                    flow_control_timeout=0.25,
                ),
                persistence=PersistenceConfig("memory", "/var/lib/mqttx/db", "batch", 0.25),
                auth=AuthConfig(allow_anonymous=False),
                logging=LoggingConfig(level="debug", format="json"),
            ),
        )

    def test_range_limits_accepted(self) -> None:
        """
        The ends of each range from the MQTT specification are accepted.
        """
        for key, value in [
            ("max_packet_size", 64),
            ("max_packet_size", 268435460),
            ("receive_maximum", 1),
            ("receive_maximum", 65535),
            ("max_inflight", 1),
            ("max_inflight", 65535),
            ("topic_alias_maximum", 65535),
            ("keepalive_max", 65535),
            ("max_session_expiry", 0),
        ]:
            config = parse_config(f"mqtt: {{{key}: {value}}}", SOURCE)
            self.assertEqual(getattr(config.mqtt, key), value)

    def test_frozen(self) -> None:
        """
        Configuration values cannot be changed after loading.
        """
        config = parse_config("", SOURCE)
        with self.assertRaises(FrozenInstanceError):
            config.mqtt.max_inflight = 1  # type: ignore[misc]
        self.assertIsInstance(config.listeners, tuple)


class ExampleTests(SynchronousTestCase):
    """
    The documented example C{etc/mqttx.yaml}.
    """

    def test_example_loads(self) -> None:
        """
        The example loads, listens on 127.0.0.1:1883 only, keeps state in
        SQLite under C{var/}, acknowledging only what is on disk, and lets
        anonymous clients in.
        """
        config = load_config(EXAMPLE)
        self.assertEqual(config.listeners, DEFAULT_LISTENERS)
        self.assertEqual(
            config.persistence,
            PersistenceConfig(backend="sqlite", path="var/mqttx.db", durability="sync"),
        )
        self.assertTrue(config.auth.allow_anonymous)

    def test_example_documents_every_key(self) -> None:
        """
        The example spells out every key, with the default values.
        """
        text = EXAMPLE.getContent().decode("utf-8")
        for section in (NodeConfig, MQTTConfig, PersistenceConfig, AuthConfig, LoggingConfig):
            for name in section.__dataclass_fields__:
                self.assertIn(f"  {name}:", text)
        self.assertEqual(load_config(EXAMPLE), Config())

    def test_example_tls_listener(self) -> None:
        """
        The commented-out TLS listener of the example spells out every key
        of a C{tls:} block, with the defaults, and is valid once its files
        exist.
        """
        lines = EXAMPLE.getContent().decode("utf-8").splitlines()
        start = lines.index("  # - name: mqtts")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #  "))
        block = "\n".join(line.replace("  # ", "  ", 1) for line in lines[start:end])
        folder = FilePath(self.mktemp())
        folder.makedirs()
        for name in ("server.crt", "server.key", "ca.crt"):
            folder.child(name).setContent(b"")
            block = block.replace(f"/etc/mqttx/tls/{name}", folder.child(name).path)
        [listener] = parse_config("listeners:\n" + block, "example").listeners
        self.assertEqual(
            listener.tls,
            TLSConfig(
                cert=folder.child("server.crt").path,
                key=folder.child("server.key").path,
                ca=folder.child("ca.crt").path,
            ),
        )
        for name in TLSConfig.__dataclass_fields__:
            self.assertIn(f"#     {name}:", "\n".join(lines[start:end]))

    def test_example_websocket_listener(self) -> None:
        """
        The commented-out WebSocket listener of the example spells out every
        WebSocket key, with the defaults, and is valid.
        """
        lines = EXAMPLE.getContent().decode("utf-8").splitlines()
        start = lines.index("  # - name: ws")
        end = next(i for i in range(start + 1, len(lines)) if not lines[i].startswith("  #  "))
        block = "\n".join(line.replace("  # ", "  ", 1) for line in lines[start:end])
        [listener] = parse_config("listeners:\n" + block, "example").listeners
        self.assertEqual((listener.protocol, listener.websocket), ("mqtt-ws", WebSocketConfig()))
        for name in WebSocketConfig.__dataclass_fields__:
            self.assertIn(f"#   {name}:", "\n".join(lines[start:end]))


class ErrorTests(SynchronousTestCase):
    """
    Every problem raises L{ConfigError} with a one-line message naming the
    file and the key.
    """

    def assertRejected(self, text: str, key: str, *fragments: str) -> ConfigError:
        """
        Assert that C{text} is rejected at C{key}, with a message containing
        C{fragments}.
        """
        with self.assertRaises(ConfigError) as caught:
            parse_config(text, SOURCE)
        error: ConfigError = caught.exception
        message = str(error)
        self.assertEqual(error.source, SOURCE)
        self.assertEqual(error.key, key)
        self.assertTrue(message.startswith(f"{SOURCE}: {key}: " if key else f"{SOURCE}: "), message)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return error

    def test_message_format(self) -> None:
        """
        The message reads C{<file>: <key path>: <problem>}.
        """
        error = self.assertRejected("mqtt: {max_inflight: ten}", "mqtt.max_inflight")
        self.assertEqual(
            str(error), "etc/x.yaml: mqtt.max_inflight: expected an integer, got 'ten'"
        )

    # Unknown keys, at every level.

    def test_unknown_top_level_key(self) -> None:
        """
        An unknown top-level key is named, with the known ones.
        """
        self.assertRejected("mqqt: {}", "mqqt", "unknown key", "mqtt")

    def test_unknown_keys_in_sections(self) -> None:
        """
        An unknown key inside any section is named with its section.
        """
        for text, key in [
            ("node: {nmae: x}", "node.nmae"),
            ("mqtt: {max_inflght: 3}", "mqtt.max_inflght"),
            ("persistence: {bakend: memory}", "persistence.bakend"),
            ("auth: {anonymous: true}", "auth.anonymous"),
            ("logging: {lvl: info}", "logging.lvl"),
            (listener(port="1883"), "listeners[0].port"),
        ]:
            self.assertRejected(text, key, "unknown key")

    def test_duplicate_key(self) -> None:
        """
        A key given twice in one mapping is an error at its line, not a
        silent override.
        """
        self.assertRejected(
            "mqtt:\n  max_inflight: 3\n  max_inflight: 4\n", "line 3, column 3", "duplicate key"
        )

    # Types.

    def test_wrong_integer_types(self) -> None:
        """
        Integers must be integers: not strings, floats, nulls, lists, and not
        booleans (which YAML and Python would otherwise pass as 1 and 0).
        """
        for value, shown in [
            ("'10'", "'10'"),
            ("ten", "'ten'"),
            ("1.5", "1.5"),
            ("null", "null"),
            ("[1]", "a list"),
            ("true", "true"),
            ("false", "false"),
        ]:
            self.assertRejected(
                f"mqtt: {{max_queued_messages: {value}}}",
                "mqtt.max_queued_messages",
                f"expected an integer, got {shown}",
            )

    def test_wrong_boolean_types(self) -> None:
        """
        Booleans must be YAML true or false, not 1, "yes" in quotes or null.
        """
        for text, key in [
            ("mqtt: {retain_available: 1}", "mqtt.retain_available"),
            ("mqtt: {shared_subscriptions: 'yes'}", "mqtt.shared_subscriptions"),
            ("auth: {allow_anonymous: null}", "auth.allow_anonymous"),
            ("mqtt: {server_moved: 0}", "mqtt.server_moved"),
        ]:
            self.assertRejected(text, key, "expected true or false")

    def test_mqtt5_feature_values(self) -> None:
        """
        Maximum QoS is 0, 1 or 2; the shared subscription strategy is one of
        the known ones; optional strings are strings or null.
        """
        self.assertRejected("mqtt: {maximum_qos: 3}", "mqtt.maximum_qos", "between 0 and 2")
        self.assertRejected(
            "mqtt: {shared_subscription_strategy: first}",
            "mqtt.shared_subscription_strategy",
            "expected one of",
        )
        self.assertRejected("mqtt: {server_reference: 7}", "mqtt.server_reference", "expected a string")
        self.assertRejected("mqtt: {response_information: ''}", "mqtt.response_information", "must not be empty")

    def test_wrong_string_types(self) -> None:
        """
        Strings must be non-empty strings.
        """
        self.assertRejected("node: {name: 12}", "node.name", "expected a string, got 12")
        self.assertRejected("node: {name: ''}", "node.name", "must not be empty")
        self.assertRejected(
            "persistence: {path: [a]}", "persistence.path", "expected a string, got a list"
        )

    def test_wrong_section_types(self) -> None:
        """
        Sections must be mappings, C{listeners} a list, the document a
        mapping.
        """
        self.assertRejected("mqtt: 3", "mqtt", "expected a mapping, got 3")
        self.assertRejected("node: [a]", "node", "expected a mapping, got a list")
        self.assertRejected("listeners: {name: a}", "listeners", "expected a list, got a mapping")
        self.assertRejected("listeners: [3]", "listeners[0]", "expected a mapping, got 3")
        self.assertRejected("- a\n- b\n", "top level", "expected a mapping, got a list")
        self.assertRejected("just text", "top level", "expected a mapping, got 'just text'")
        self.assertRejected("1: a", "top level", "keys must be strings, got 1")

    # Ranges.

    def test_flow_control_timeout(self) -> None:
        """
        C{mqtt.flow_control_timeout} takes whole or fractional seconds from 0
        to an hour; anything else, NaN and infinity included, is refused.
        """
        self.assertEqual(parse_config("mqtt: {flow_control_timeout: 2}", SOURCE).mqtt.flow_control_timeout, 2.0)
        self.assertEqual(parse_config("mqtt: {flow_control_timeout: 0}", SOURCE).mqtt.flow_control_timeout, 0.0)
        for value, message in [
            ("'1'", "expected a number of seconds, got '1'"),
            ("true", "expected a number of seconds, got true"),
            ("-0.5", "must be between 0 and 3600, got -0.5"),
            ("3601", "must be between 0 and 3600, got 3601"),
            (".nan", "must be between 0 and 3600, got nan"),
            (".inf", "must be between 0 and 3600, got inf"),
        ]:
            self.assertRejected(
                f"mqtt: {{flow_control_timeout: {value}}}", "mqtt.flow_control_timeout", message
            )

    def test_out_of_range(self) -> None:
        """
        Values outside the ranges the MQTT specification allows are
        rejected, with the range.
        """
        for key, value, bounds in [
            ("max_packet_size", 0, "between 64 and 268435460"),
            ("max_packet_size", 63, "between 64 and 268435460"),
            ("max_packet_size", 268435461, "between 64 and 268435460"),
            ("receive_maximum", 0, "between 1 and 65535"),
            ("receive_maximum", 65536, "between 1 and 65535"),
            ("max_inflight", 0, "between 1 and 65535"),
            ("max_inflight", 65536, "between 1 and 65535"),
            ("topic_alias_maximum", -1, "between 0 and 65535"),
            ("topic_alias_maximum", 65536, "between 0 and 65535"),
            ("keepalive_max", -1, "between 0 and 65535"),
            ("keepalive_max", 65536, "between 0 and 65535"),
            ("max_session_expiry", -1, "between 0 and 4294967295"),
            ("max_session_expiry", 4294967296, "between 0 and 4294967295"),
            ("max_queued_messages", -1, "at least 0"),
        ]:
            self.assertRejected(
                f"mqtt: {{{key}: {value}}}", f"mqtt.{key}", f"must be {bounds}, got {value}"
            )

    # Listeners.

    def test_duplicate_listener_names(self) -> None:
        """
        Two listeners may not share a name: it names their services.
        """
        text = """
listeners:
  - {name: mqtt, protocol: mqtt, endpoint: "tcp:0"}
  - {name: mqtt, protocol: mqtt, endpoint: "tcp:0"}
"""
        self.assertRejected(text, "listeners[1].name", "duplicate listener name 'mqtt'")

    def test_no_listeners(self) -> None:
        """
        An empty listener list would start a broker nobody can reach.
        """
        self.assertRejected("listeners: []", "listeners", "at least one listener")

    def test_listener_missing_keys(self) -> None:
        """
        A listener needs a name, a protocol and an endpoint.
        """
        self.assertRejected(
            "listeners: [{protocol: mqtt, endpoint: 'tcp:0'}]", "listeners[0].name", "missing"
        )
        self.assertRejected(
            "listeners: [{name: a, endpoint: 'tcp:0'}]", "listeners[0].protocol", "missing"
        )
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt}]", "listeners[0].endpoint", "missing"
        )

    def test_listener_bad_name(self) -> None:
        """
        Listener names are plain identifiers, fit for logs and metric labels.
        """
        self.assertRejected(
            "listeners: [{name: 'a b', protocol: mqtt, endpoint: 'tcp:0'}]",
            "listeners[0].name",
            "not a valid name",
        )

    def test_bad_endpoints(self) -> None:
        """
        Endpoint strings that L{serverFromString} cannot parse are rejected
        at load time, with Twisted's reason.
        """
        for endpoint, reason in [
            ("tcp:abc", "invalid literal for int()"),
            ("tcpp:1883", "Unknown endpoint type: 'tcpp'"),
            ("tcp:1883:interfce=127.0.0.1", "unexpected keyword argument 'interfce'"),
            ("", "must not be empty"),
            ("udp:5683", "Unknown endpoint type: 'udp'"),
        ]:
            self.assertRejected(listener(endpoint), "listeners[0].endpoint", reason)

    def test_endpoint_files_checked(self) -> None:
        """
        An C{ssl:} endpoint naming a missing key file fails at load time,
        not when the broker starts listening.
        """
        missing = self.mktemp()
        self.assertRejected(
            listener(f"ssl:8883:privateKey={missing}"),
            "listeners[0].endpoint",
            "invalid endpoint",
            "No such file",
        )

    def test_http_listener(self) -> None:
        """
        An C{http} listener gets L{HTTPConfig} defaults or its own C{http:}
        block; other listeners take no C{http:} block.
        """
        text = "listeners: [{name: web, protocol: http, endpoint: 'tcp:0'%s}]"
        self.assertEqual(parse_config(text % "", SOURCE).listeners[0].http, HTTPConfig())
        config = parse_config(
            text % ", http: {heartbeat_interval: 5, metrics: true, status_page: false, session_expiry: 60}",
            SOURCE,
        )
        self.assertEqual(
            config.listeners[0].http,
            HTTPConfig(heartbeat_interval=5.0, metrics=True, status_page=False, session_expiry=60),
        )
        self.assertIsNone(parse_config(listener(), SOURCE).listeners[0].http)
        self.assertRejected(text % ", http: {heartbeat_interval: 0}", "listeners[0].http.heartbeat_interval")
        self.assertRejected(text % ", http: {sse: true}", "listeners[0].http.sse", "unknown key")
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', http: {}}]",
            "listeners[0].http",
            "only http listeners",
        )

    def test_coap_listener(self) -> None:
        """
        A C{coap} listener listens on C{udp:PORT[:interface=IP]}; by default
        only this host may use it, as an anonymous client.
        """
        text = "listeners: [{name: coap, protocol: coap, endpoint: 'udp:5683:interface=127.0.0.1'%s}]"
        coap = parse_config(text % "", SOURCE).listeners[0].coap
        self.assertEqual(coap, CoAPConfig())
        self.assertEqual(CoAPConfig().rules, (CoAPRule("127.0.0.0/8"), CoAPRule("::1/128")))
        config = parse_config(
            text
            % (
                ", coap: {rules: [{source: 10.1.2.3/8, username: sensors, subscribe: false}, {source: '::1'}],"
                " max_observers_per_source: 4, max_payload: 1000, max_request_rate: 0, block_size: 64,"
                " confirmable_every: 3}"
            ),
            SOURCE,
        )
        self.assertEqual(
            config.listeners[0].coap,
            CoAPConfig(
                rules=(
                    CoAPRule("10.0.0.0/8", username="sensors", subscribe=False),
                    CoAPRule("::1/128"),
                ),
                max_observers_per_source=4,
                max_payload=1000,
                max_request_rate=0.0,
                block_size=64,
                confirmable_every=3,
            ),
        )
        for endpoint in ("udp:0", "udp:port=5683", "udp:5683:interface=\\:\\:1"):
            parse_config(f"listeners: [{{name: c, protocol: coap, endpoint: '{endpoint}'}}]", SOURCE)
        self.assertEqual(udp_address("udp:5683:interface=127.0.0.1"), (5683, "127.0.0.1"))
        self.assertEqual(udp_address("udp:0"), (0, ""))
        self.assertEqual(udp_address("udp:5683:interface=\\:\\:1"), (5683, "::1"))

    def test_coap_errors(self) -> None:
        """
        A CoAP listener needs a UDP endpoint, takes no TLS, and its rules
        name networks.
        """
        text = "listeners: [{name: coap, protocol: coap, endpoint: 'udp:5683'%s}]"
        for endpoint in ("tcp:5683", "udp:70000", "udp:5683:interface=example.com", "udp:"):
            self.assertRejected(
                f"listeners: [{{name: c, protocol: coap, endpoint: '{endpoint}'}}]",
                "listeners[0].endpoint",
                "CoAP listens on 'udp:PORT'",
            )
        self.assertRejected(text % ", tls: {cert: a, key: b}", "listeners[0].tls", "DTLS")
        self.assertRejected(text % ", coap: {rules: [{source: nowhere}]}", "listeners[0].coap.rules[0].source")
        self.assertRejected(text % ", coap: {rules: [{username: a}]}", "listeners[0].coap.rules[0].source", "missing")
        self.assertRejected(text % ", coap: {rules: {}}", "listeners[0].coap.rules", "list")
        self.assertRejected(text % ", coap: {block_size: 100}", "listeners[0].coap.block_size", "power of two")
        self.assertRejected(text % ", coap: {dtls: true}", "listeners[0].coap.dtls", "unknown key")
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', coap: {}}]",
            "listeners[0].coap",
            "only coap listeners",
        )

    def test_unknown_listener_protocol(self) -> None:
        """
        A protocol nobody plans is unknown.
        """
        self.assertRejected(
            "listeners: [{name: a, protocol: amqp, endpoint: 'tcp:0'}]",
            "listeners[0].protocol",
            "unknown protocol 'amqp'",
            "available: mqtt",
        )

    def tls_text(self, **tls: object) -> str:
        """A TLS listener whose certificate and key files exist."""
        folder = FilePath(self.mktemp())
        folder.makedirs()
        for name in ("server.crt", "server.key", "ca.crt"):
            folder.child(name).setContent(b"PEM")
        block: dict[str, object] = {
            "cert": folder.child("server.crt").path,
            "key": folder.child("server.key").path,
        }
        block.update(tls)
        if block.get("ca") == "ca.crt":
            block["ca"] = folder.child("ca.crt").path
        # JSON is YAML's flow style.
        listener = {"name": "mqtts", "protocol": "mqtt", "endpoint": "tcp:0", "tls": block}
        return f"listeners: [{json.dumps(listener)}]"

    def test_tls_block(self) -> None:
        """
        A C{tls:} block becomes a L{TLSConfig}; TLS 1.2 is the default floor
        and the version may be written as a YAML number.
        """
        config = parse_config(
            self.tls_text(ca="ca.crt", require_client_cert=True, min_version=1.3, ciphers="ECDHE+AESGCM"),
            SOURCE,
        )
        tls = config.listeners[0].tls
        assert tls is not None
        self.assertTrue(tls.cert.endswith("server.crt"))
        self.assertTrue(tls.key.endswith("server.key"))
        self.assertTrue(tls.ca is not None and tls.ca.endswith("ca.crt"))
        self.assertTrue(tls.require_client_cert)
        self.assertFalse(tls.use_identity_as_username)
        self.assertEqual(tls.min_version, "1.3")
        self.assertEqual(tls.ciphers, "ECDHE+AESGCM")
        defaults = parse_config(self.tls_text(), SOURCE).listeners[0].tls
        assert defaults is not None
        self.assertEqual(defaults, TLSConfig(cert=defaults.cert, key=defaults.key))
        self.assertEqual((defaults.min_version, defaults.ca, defaults.ciphers), ("1.2", None, None))
        self.assertIsNone(parse_config(listener(), SOURCE).listeners[0].tls)

    def test_tls_errors(self) -> None:
        """
        A TLS block names files that exist, asks for a CA to check client
        certificates against, and takes identities only from required
        certificates; old TLS versions are refused.
        """
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', tls: {key: k}}]",
            "listeners[0].tls.cert",
            "missing",
        )
        self.assertRejected(
            "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', tls: {cert: /nonexistent.crt, key: k}}]",
            "listeners[0].tls.cert",
            "no such file: '/nonexistent.crt'",
        )
        self.assertRejected(self.tls_text(require_client_cert=True), "listeners[0].tls.ca", "missing")
        self.assertRejected(
            self.tls_text(ca="ca.crt", use_identity_as_username=True),
            "listeners[0].tls.use_identity_as_username",
            "require_client_cert",
        )
        self.assertRejected(self.tls_text(min_version=1.1), "listeners[0].tls.min_version", "'1.1'")
        self.assertRejected(self.tls_text(verify=True), "listeners[0].tls.verify", "unknown key")
        self.assertRejected(self.tls_text(ca="/nonexistent"), "listeners[0].tls.ca", "no such file")

    def test_websocket_listener(self) -> None:
        """
        An C{mqtt-ws} listener gets L{WebSocketConfig} defaults (path
        C{/mqtt}) or its own settings.
        """
        ws = "listeners: [{name: ws, protocol: mqtt-ws, endpoint: 'tcp:0'%s}]"
        self.assertEqual(parse_config(ws % "", SOURCE).listeners[0].websocket, WebSocketConfig())
        config = parse_config(
            ws % ", path: /ws/mqtt, permessage_deflate: true, ping_interval: 20, trust_x_forwarded_for: true",
            SOURCE,
        )
        self.assertEqual(
            config.listeners[0].websocket,
            WebSocketConfig(path="/ws/mqtt", permessage_deflate=True, ping_interval=20.0, trust_x_forwarded_for=True),
        )
        self.assertIsNone(parse_config(listener(), SOURCE).listeners[0].websocket)

    def test_websocket_errors(self) -> None:
        """
        WebSocket keys belong to C{mqtt-ws} listeners, and the path is an
        absolute path without a query.
        """
        self.assertRejected(listener(path="/mqtt"), "listeners[0].path", "only WebSocket (mqtt-ws)")
        self.assertRejected(listener(ping_interval="5"), "listeners[0].ping_interval", "only WebSocket")
        ws = "listeners: [{name: ws, protocol: mqtt-ws, endpoint: 'tcp:0', %s}]"
        self.assertRejected(ws % "path: mqtt", "listeners[0].path", "absolute path")
        self.assertRejected(ws % "path: '/mqtt?x=1'", "listeners[0].path", "absolute path")
        self.assertRejected(ws % "path: '/a b'", "listeners[0].path", "absolute path")
        self.assertRejected(ws % "ping_interval: -1", "listeners[0].ping_interval", "between 0 and 3600")

    # Persistence, auth, logging.

    def test_backends(self) -> None:
        """
        The sqlite and memory backends are available.
        """
        for backend in ("sqlite", "memory"):
            config = parse_config(f"persistence: {{backend: {backend}}}", SOURCE)
            self.assertEqual(config.persistence.backend, backend)

    def test_later_backends(self) -> None:
        """
        The etcd backend is refused as not available yet, naming those that
        are.
        """
        self.assertRejected(
            "persistence: {backend: etcd}",
            "persistence.backend",
            "'etcd'",
            "not available yet",
            "available: sqlite, memory",
        )

    def test_unknown_backend(self) -> None:
        """
        Other backends are unknown.
        """
        self.assertRejected(
            "persistence: {backend: redis}", "persistence.backend", "unknown backend 'redis'"
        )

    def test_durability_values(self) -> None:
        """
        Durability is C{sync} or C{batch}.
        """
        self.assertRejected(
            "persistence: {durability: async}",
            "persistence.durability",
            "expected one of: sync, batch, got 'async'",
        )

    def test_commit_interval(self) -> None:
        """
        C{persistence.commit_interval} takes whole or fractional seconds,
        more than 0 and at most 60.
        """
        for value, seconds in [("1", 1.0), ("0.005", 0.005), ("60", 60.0), ("2.5", 2.5)]:
            config = parse_config(f"persistence: {{commit_interval: {value}}}", SOURCE)
            self.assertEqual(config.persistence.commit_interval, seconds)
            self.assertIsInstance(config.persistence.commit_interval, float)

    def test_commit_interval_rejected(self) -> None:
        """
        Anything but a number of seconds in (0, 60] is refused, naming the
        key: strings, booleans, nulls, lists, 0, negatives, more than 60,
        NaN and infinity.
        """
        for value, message in [
            ("'1'", "expected a number of seconds, got '1'"),
            ("true", "expected a number of seconds, got true"),
            ("null", "expected a number of seconds, got null"),
            ("[1]", "expected a number of seconds, got a list"),
            ("0", "must be more than 0 and at most 60, got 0"),
            ("0.0", "must be more than 0 and at most 60, got 0.0"),
            ("-1", "must be more than 0 and at most 60, got -1"),
            ("61", "must be more than 0 and at most 60, got 61"),
            ("60.001", "must be more than 0 and at most 60, got 60.001"),
            ("3601", "must be more than 0 and at most 60, got 3601"),
            (".nan", "must be more than 0 and at most 60, got nan"),
            (".inf", "must be more than 0 and at most 60, got inf"),
            ("-.inf", "must be more than 0 and at most 60, got -inf"),
        ]:
            self.assertRejected(
                f"persistence: {{commit_interval: {value}}}",
                "persistence.commit_interval",
                message,
            )

    def test_auth_acl_file_and_admins(self) -> None:
        """
        C{auth.acl_file} is a path (its content is checked when the broker
        is built); C{auth.admins} a list of usernames.
        """
        config = parse_config("auth: {acl_file: etc/acl, admins: [root, ops]}", SOURCE)
        self.assertEqual(config.auth.acl_file, "etc/acl")
        self.assertEqual(config.auth.admins, ("root", "ops"))
        self.assertEqual(parse_config("auth: {}", SOURCE).auth.admins, ())
        self.assertRejected("auth: {acl_file: 3}", "auth.acl_file", "expected a string")
        self.assertRejected("auth: {admins: root}", "auth.admins", "expected a list")
        self.assertRejected("auth: {admins: [root, 3]}", "auth.admins[1]", "expected a string")

    def test_auth_password_file_and_failures(self) -> None:
        """
        C{auth.password_file} is a path; C{auth.max_failures_per_minute} an
        integer of at least 0.
        """
        config = parse_config(
            "auth: {password_file: etc/passwd, max_failures_per_minute: 3}", SOURCE
        )
        self.assertEqual(config.auth.password_file, "etc/passwd")
        self.assertEqual(config.auth.max_failures_per_minute, 3)
        self.assertRejected("auth: {password_file: 3}", "auth.password_file", "expected a string")
        self.assertRejected(
            "auth: {max_failures_per_minute: -1}", "auth.max_failures_per_minute", "between 0"
        )

    def test_listener_allow_anonymous(self) -> None:
        """
        A listener's C{allow_anonymous} is true, false, or absent (L{None}:
        C{auth.allow_anonymous} applies).
        """
        text = "listeners: [{name: a, protocol: mqtt, endpoint: 'tcp:0', allow_anonymous: %s}]"
        self.assertIs(parse_config(text % "false", SOURCE).listeners[0].allow_anonymous, False)
        self.assertIs(
            parse_config(text.replace(", allow_anonymous: %s", ""), SOURCE)
            .listeners[0]
            .allow_anonymous,
            None,
        )
        self.assertRejected(text % "1", "listeners[0].allow_anonymous", "expected true or false")

    def test_logging_values(self) -> None:
        """
        Levels and formats are checked against the ones supported.
        """
        self.assertRejected(
            "logging: {level: verbose}",
            "logging.level",
            "expected one of: debug, info, warn, error, critical, got 'verbose'",
        )
        self.assertRejected(
            "logging: {format: xml}", "logging.format", "expected one of: text, json, got 'xml'"
        )

    # YAML and files.

    def test_invalid_yaml(self) -> None:
        """
        Invalid YAML is reported on one line with its line number.
        """
        error = self.assertRejected(
            "mqtt:\n  max_inflight: [1, 2\n", "line 3, column 1", "invalid YAML"
        )
        self.assertNotIn("\n", str(error))

    def test_merge_keys_override(self) -> None:
        """
        YAML merge keys may be overridden: that is not a duplicate.
        """
        text = """
mqtt:
  <<: {max_inflight: 3, receive_maximum: 5}
  max_inflight: 4
"""
        mqtt = parse_config(text, SOURCE).mqtt
        self.assertEqual((mqtt.max_inflight, mqtt.receive_maximum), (4, 5))

    def test_unhashable_key(self) -> None:
        """
        A list used as a mapping key is invalid YAML for a configuration.
        """
        self.assertRejected("{[1]: 2}", "line 1, column 2", "invalid YAML", "unhashable key")

    def test_invalid_yaml_tab(self) -> None:
        """
        A tab in indentation (a frequent YAML mistake) is located.
        """
        self.assertRejected("mqtt:\n\tmax_inflight: 3\n", "line 2, column 1", "invalid YAML")

    def test_unsafe_yaml_tags_refused(self) -> None:
        """
        Only plain YAML is read: tags that would build Python objects are
        errors.
        """
        self.assertRejected(
            "node: !!python/object:os.system {}", "line 1, column 7", "invalid YAML"
        )

    def test_missing_file(self) -> None:
        """
        A missing file is named.
        """
        path = FilePath(self.mktemp())
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(
            str(caught.exception), f"{path.path}: cannot read the file: No such file or directory"
        )

    def test_directory(self) -> None:
        """
        A directory is not a configuration file.
        """
        path = FilePath(self.mktemp())
        path.makedirs()
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertIn(path.path, str(caught.exception))
        self.assertIn("cannot read the file", str(caught.exception))

    def test_not_utf8(self) -> None:
        """
        A file that is not UTF-8 is refused by name.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"node: {name: \xff}\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(str(caught.exception), f"{path.path}: not UTF-8 text (byte 13)")

    def test_file_errors_name_the_file(self) -> None:
        """
        Errors in a loaded file name that file.
        """
        path = FilePath(self.mktemp())
        path.setContent(b"mqtt:\n  max_inflight: ten\n")
        with self.assertRaises(ConfigError) as caught:
            load_config(path)
        self.assertEqual(
            str(caught.exception), f"{path.path}: mqtt.max_inflight: expected an integer, got 'ten'"
        )
