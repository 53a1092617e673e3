# -*- test-case-name: tests.test_config -*-
"""
The mqttx configuration: YAML read once into frozen, typed values.

L{load_config} (or L{parse_config}, for text already in memory) checks the
whole document and returns a L{Config}; nothing after it sees a raw mapping.
Every problem raises L{ConfigError}, whose one-line message names the file,
the key path and what is wrong, for example::

    /etc/mqttx/mqttx.yaml: mqtt.max_inflight: expected an integer, got 'ten'

Unknown keys are errors at every level, so a misspelt option is never
silently ignored. Settings that belong to features of a later release
(the C{http} and C{coap} listener protocols, the C{etcd} backend) are
rejected with a message saying so rather than accepted and ignored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

import yaml
from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath

__all__ = [
    "AuthConfig",
    "Config",
    "ConfigError",
    "HTTPAuthConfig",
    "ListenerConfig",
    "TLSConfig",
    "WebSocketConfig",
    "LoggingConfig",
    "MQTTConfig",
    "NodeConfig",
    "PersistenceConfig",
    "load_config",
    "parse_config",
]

#: The largest packet MQTT can frame: a 4-byte Remaining Length of
#: 268,435,455 plus the 5-byte fixed header.
MAX_PACKET_SIZE_LIMIT = 268_435_460

#: Below this no CONNECT with a client identifier, will or properties fits;
#: a smaller limit only produces a broker nobody can use.
MIN_PACKET_SIZE = 64

_UINT16 = 65_535
_UINT32 = 4_294_967_295

_LISTENER_PROTOCOLS = ("mqtt", "mqtt-ws", "metrics")
_LATER_LISTENER_PROTOCOLS = {
    "http": "the HTTP bridge",
    "coap": "the CoAP bridge",
}
_BACKENDS = ("sqlite", "memory")
_LATER_BACKENDS = {
    "etcd": "the etcd cluster store",
}
_DURABILITY = ("sync", "batch")
_TLS_VERSIONS = ("1.2", "1.3")
#: An absolute HTTP request path without query or fragment.
_WS_PATH = re.compile(r"/[\x21-\x7e]*\Z", re.ASCII)
_LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
_LOG_FORMATS = ("text", "json")
_LISTENER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
#: The HTTP authentication hook's endpoint: printable ASCII (it is sent as
#: is), a scheme twisted.web.client.Agent speaks, and a host.
_HTTP_URL = re.compile(r"https?://[^/?#\s@]+(?:[/?#][\x21-\x7e]*)?\Z", re.ASCII)


class ConfigError(Exception):
    """
    The configuration cannot be used.

    C{str(error)} is one line: C{"<source>: <key path>: <problem>"}, or
    C{"<source>: <problem>"} when the problem is not about one key.

    @ivar source: the file (or other source) the configuration came from.
    @ivar key: the dotted key path, such as C{"listeners[0].endpoint"}, or
        C{""} when the whole document is at fault.
    @ivar problem: what is wrong, without the source and key.
    """

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = " ".join(problem.split())
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {self.problem}")


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """
    This broker's identity.

    @ivar name: identifies the broker in logs, C{$SYS} topics and, later, the
        cluster.
    """

    name: str = "mqttx-1"


@dataclass(frozen=True, slots=True)
class TLSConfig:
    """
    A listener's C{tls:} block: TLS on its stream endpoint.

    @ivar cert: the PEM file with the server certificate, followed by any
        intermediate certificates.
    @ivar key: the PEM file with the certificate's private key.
    @ivar ca: the PEM bundle of the authorities whose client certificates
        are accepted; required for C{require_client_cert}.
    @ivar require_client_cert: mutual TLS: refuse clients without a
        certificate signed by C{ca}.
    @ivar use_identity_as_username: take the user name from the client
        certificate's subject common name instead of CONNECT, and trust the
        certificate in place of a password (needs C{require_client_cert}).
    @ivar min_version: the oldest TLS version accepted, C{"1.2"} or C{"1.3"}.
    @ivar ciphers: an OpenSSL cipher string for TLS 1.2 (TLS 1.3 suites
        are OpenSSL's); L{None} keeps Twisted's secure default.
    """

    cert: str
    key: str
    ca: str | None = None
    require_client_cert: bool = False
    use_identity_as_username: bool = False
    min_version: str = "1.2"
    ciphers: str | None = None


@dataclass(frozen=True, slots=True)
class WebSocketConfig:
    """
    The WebSocket settings of an C{mqtt-ws} listener.

    @ivar path: the request path clients connect to; others get 404.
    @ivar permessage_deflate: offer permessage-deflate compression to
        clients that ask for it.
    @ivar ping_interval: seconds between WebSocket pings from the broker
        (a peer that does not answer in as long is dropped); 0: none, the
        MQTT keep-alive alone watches the connection.
    @ivar trust_x_forwarded_for: take the client address from the last
        entry of C{X-Forwarded-For}, for listeners behind a reverse proxy
        that sets it (never on a listener clients reach directly).
    """

    path: str = "/mqtt"
    permessage_deflate: bool = False
    ping_interval: float = 0.0
    trust_x_forwarded_for: bool = False


@dataclass(frozen=True, slots=True)
class ListenerConfig:
    """
    One place where clients connect.

    @ivar name: unique among the listeners; names the listener's service,
        its log lines and metrics.
    @ivar protocol: what is spoken on it: C{"mqtt"}, C{"mqtt-ws"} (MQTT
        over WebSocket), or C{"metrics"} (Prometheus metrics over HTTP at
        C{/metrics}).
    @ivar endpoint: a Twisted stream server endpoint string, such as
        C{"tcp:1883:interface=127.0.0.1"}.
    @ivar max_connections: the most connections open on this listener at
        once; 0 leaves only the global C{mqtt.max_connections}.
    @ivar allow_anonymous: whether clients without a user name may connect
        on this listener; L{None} follows C{auth.allow_anonymous}.
    @ivar tls: TLS on the endpoint, or L{None} for plain text.
    @ivar websocket: the WebSocket settings of an C{mqtt-ws} listener;
        L{None} for the other protocols.
    """

    name: str
    protocol: str
    endpoint: str
    max_connections: int = 0
    allow_anonymous: bool | None = None
    tls: TLSConfig | None = None
    websocket: WebSocketConfig | None = None


#: The listeners used when the configuration has no C{listeners} key.
DEFAULT_LISTENERS: tuple[ListenerConfig, ...] = (
    ListenerConfig(name="mqtt", protocol="mqtt", endpoint="tcp:1883:interface=127.0.0.1"),
)


#: The ways a shared subscription group can pick a member.
SHARED_STRATEGIES = ("round_robin", "random", "sticky")


@dataclass(frozen=True, slots=True)
class MQTTConfig:
    """
    Protocol limits and defaults.

    @ivar max_packet_size: the largest packet accepted, in bytes.
    @ivar receive_maximum: the inbound QoS 1/2 window advertised to MQTT 5
        clients.
    @ivar max_inflight: the outbound QoS 1/2 window per session for clients
        that do not announce a Receive Maximum (3.1 and 3.1.1).
    @ivar max_queued_messages: the most messages kept for one offline or slow
        session; beyond it messages are dropped and counted.
    @ivar max_session_expiry: the cap, in seconds, on the session expiry a
        client may ask for.
    @ivar retain_available: whether retained messages are supported.
    @ivar shared_subscriptions: whether C{$share/...} filters are supported.
    @ivar topic_alias_maximum: the inbound topic aliases an MQTT 5 client may
        use, and the most the broker uses on the PUBLISH it sends a client
        (never more than the client's own Topic Alias Maximum); 0 disables
        them both ways.
    @ivar keepalive_max: the cap, in seconds, on a client's keep alive; 0
        accepts what the client asks for.
    @ivar sys_interval: seconds between publications of the C{$SYS} topics
        (retained); 0 turns them off.
    @ivar maximum_qos: the highest QoS clients may publish and subscribe
        with (MQTT 5 Maximum QoS); 3.1.1 subscriptions are granted at most it.
    @ivar wildcard_subscriptions: whether C{+} and C{#} filters are allowed.
    @ivar subscription_identifiers: whether MQTT 5 subscription identifiers
        are supported.
    @ivar shared_subscription_strategy: how a shared subscription's group
        picks the member for each message: C{round_robin}, C{random}, or
        C{sticky} (by publisher).
    @ivar response_information: when set, MQTT 5 clients that ask for
        Response Information get this prefix followed by their client
        identifier, as the root of their response topics.
    @ivar server_reference: when set, MQTT 5 clients are sent elsewhere:
        CONNACK 0x9C (use another server), or 0x9D (server moved) with
        C{server_moved}, carrying this Server Reference.
    @ivar server_moved: whether the redirection is permanent.
    @ivar validate_payload_format: whether a payload declared UTF-8 (Payload
        Format Indicator 1) must be valid UTF-8 (else 0x99).
    @ivar flow_control_timeout: seconds a subscriber whose transport is full
        may keep the publishers that feed it from being read; after that it
        is a slow consumer (see L{mqttx.broker.flow}). 0 turns it off.
    @ivar connect_timeout: seconds a new connection has to send CONNECT and
        be admitted.
    @ivar max_connections: the most client connections open at once, over
        every listener; 0: no limit. Connections beyond it (or beyond their
        listener's C{max_connections}) are closed as they are accepted.
    @ivar max_connection_rate: new connections per second allowed from one
        source address (a token bucket of C{connection_burst}); beyond it
        they are closed as they are accepted. 0 turns it off.
    @ivar connection_burst: the connections one source address may open at
        once before C{max_connection_rate} applies.
    @ivar max_client_id_length: the longest client identifier accepted, in
        characters; longer ones are refused with CONNACK 0x85 / 0x02.
    @ivar max_topic_length: the longest topic name or filter accepted, in
        characters.
    @ivar max_topic_levels: the most levels (C{/}-separated parts) of a
        topic name or filter; 0: no limit.
    @ivar max_subscriptions: the most subscriptions one session may hold;
        0: no limit.
    @ivar max_publish_rate: PUBLISH packets per second read from one
        client; a faster client is not read until it is back within it.
        0 turns it off.
    @ivar max_publish_bytes_rate: the same for the bytes of its PUBLISH
        packets' topics and payloads, per second; 0 turns it off.
    """

    max_packet_size: int = 1_048_576
    receive_maximum: int = 65_535
    max_inflight: int = 32
    max_queued_messages: int = 1000
    max_session_expiry: int = 86_400
    retain_available: bool = True
    shared_subscriptions: bool = True
    topic_alias_maximum: int = 64
    keepalive_max: int = 0
    sys_interval: int = 10
    maximum_qos: int = 2
    wildcard_subscriptions: bool = True
    subscription_identifiers: bool = True
    shared_subscription_strategy: str = "round_robin"
    response_information: str | None = None
    server_reference: str | None = None
    server_moved: bool = False
    validate_payload_format: bool = True
    flow_control_timeout: float = 1.0
    connect_timeout: float = 10.0
    max_connections: int = 50_000
    max_connection_rate: float = 0.0
    connection_burst: int = 20
    max_client_id_length: int = 65_535
    max_topic_length: int = 65_535
    max_topic_levels: int = 128
    max_subscriptions: int = 10_000
    max_publish_rate: float = 0.0
    max_publish_bytes_rate: int = 0


@dataclass(frozen=True, slots=True)
class PersistenceConfig:
    """
    Where sessions and retained messages are kept.

    @ivar backend: C{"sqlite"} (durable, in the file at C{path}) or
        C{"memory"} (as long as the process lives).
    @ivar path: the database file of durable backends; its folder is
        created on demand.
    @ivar durability: C{"sync"} (QoS 1/2 acknowledged only once written to
        disk) or C{"batch"} (acknowledged at once, committed at least every
        C{commit_interval} seconds: a crash may lose that much).
    @ivar commit_interval: seconds between commits with C{batch}.
    """

    backend: str = "sqlite"
    path: str = "var/mqttx.db"
    durability: str = "sync"
    commit_interval: float = 1.0


@dataclass(frozen=True, slots=True)
class HTTPAuthConfig:
    """
    The HTTP authentication hook (see L{mqttx.auth.http}).

    @ivar url: the endpoint asked about each client with a user name,
        C{http://} or C{https://}.
    @ivar timeout: seconds an answer may take; later, the client is
        refused with server unavailable.
    @ivar cache_seconds: how long an allow or deny answer is reused; 0: not.
    @ivar cache_size: the most answers cached; 0: none.
    """

    url: str
    timeout: float = 5.0
    cache_seconds: float = 60.0
    cache_size: int = 10_000


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """
    Who may connect.

    @ivar allow_anonymous: whether clients without a user name may connect
        (a listener's own C{allow_anonymous} overrides it). Without a
        password file, C{True} lets every client in, C{False} nobody.
    @ivar password_file: the user database written by C{mqttx passwd}
        (see L{mqttx.auth.passwords}); clients that send a user name must
        match an entry.
    @ivar max_failures_per_minute: failed authentications allowed per source
        address in a minute; further CONNECTs from it are refused (CONNACK
        0x9F / 0x03) until the minute is over. 0 turns the limit off.
    @ivar acl_file: topic access rules in Mosquitto's form (see
        L{mqttx.auth.acl}); once set, whatever it does not grant is denied.
        C{None}: every client may use every topic.
    @ivar admins: the usernames that may read C{$SYS} topics; nobody else
        may, whether or not an ACL file is set.
    @ivar scram: whether MQTT 5 clients may authenticate with SCRAM-SHA-256
        (see L{mqttx.auth.scram}) against the password file; offered only
        when C{password_file} is set.
    @ivar http: the HTTP authentication hook, instead of a password file;
        C{None}: none.
    """

    allow_anonymous: bool = True
    password_file: str | None = None
    http: HTTPAuthConfig | None = None
    acl_file: str | None = None
    max_failures_per_minute: int = 10
    admins: tuple[str, ...] = ()
    scram: bool = True


@dataclass(frozen=True, slots=True)
class LoggingConfig:
    """
    What is logged and how.

    @ivar level: the least severe level written: C{debug}, C{info}, C{warn},
        C{error} or C{critical}.
    @ivar format: C{text} (one human-readable line per event) or C{json}
        (one JSON object per line).
    """

    level: str = "info"
    format: str = "text"


@dataclass(frozen=True, slots=True)
class Config:
    """
    The whole configuration of one broker process.
    """

    node: NodeConfig = field(default_factory=NodeConfig)
    listeners: tuple[ListenerConfig, ...] = DEFAULT_LISTENERS
    mqtt: MQTTConfig = field(default_factory=MQTTConfig)
    persistence: PersistenceConfig = field(default_factory=PersistenceConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


def load_config(path: FilePath[str]) -> Config:
    """
    Read and check the configuration file at C{path}.

    @param path: the YAML file.
    @return: the checked configuration.
    @raise ConfigError: if the file cannot be read or the configuration is
        not valid; the message names C{path}.
    """
    source = path.path
    try:
        raw = path.getContent()
    except OSError as e:
        raise ConfigError(source, "", f"cannot read the file: {e.strerror or e}") from e
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(source, "", f"not UTF-8 text (byte {e.start})") from e
    return parse_config(text, source)


def parse_config(text: str, source: str) -> Config:
    """
    Check the YAML configuration C{text}.

    An empty document gives the defaults.

    @param text: the YAML document.
    @param source: where C{text} came from, for error messages.
    @return: the checked configuration.
    @raise ConfigError: if the configuration is not valid.
    """
    try:
        document = yaml.load(text, Loader=_UniqueKeySafeLoader)
    except yaml.MarkedYAMLError as e:
        raise ConfigError(
            source, _yaml_position(e), f"invalid YAML: {e.problem or e.context}"
        ) from e
    except yaml.YAMLError as e:
        raise ConfigError(source, "", f"invalid YAML: {e}") from e
    return _Parser(source).config(document)


class _UniqueKeySafeLoader(yaml.SafeLoader):
    """
    A safe loader that refuses equal keys in one mapping: PyYAML would keep
    the last, but a configuration saying one thing twice is a mistake to
    report, not to resolve silently.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                # "<<: *defaults" then overriding some keys is YAML's
                # intended use of merge keys, not a duplicate.
                continue
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, Hashable):
                # The base class reports unhashable keys with their position.
                break
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    problem=f"duplicate key {key!r}", problem_mark=key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_position(e: yaml.MarkedYAMLError) -> str:
    mark = e.problem_mark or e.context_mark
    if mark is None:
        return ""
    return f"line {mark.line + 1}, column {mark.column + 1}"


def _describe(value: object) -> str:
    """Name a YAML value in an error message the way the user wrote it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(values)


_T = TypeVar("_T")


class _Parser:
    """Checks one document; C{source} goes into every error."""

    def __init__(self, source: str) -> None:
        self._source = source

    def _error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self._source, key, problem)

    def config(self, document: object) -> Config:
        top = self._section(document, "", "top level")
        self._known(top, "", ("node", "listeners", "mqtt", "persistence", "auth", "logging"))
        return Config(
            node=self._node(top.get("node")),
            listeners=self._listeners(top),
            mqtt=self._mqtt(top.get("mqtt")),
            persistence=self._persistence(top.get("persistence")),
            auth=self._auth(top.get("auth")),
            logging=self._logging(top.get("logging")),
        )

    # Shapes

    def _section(self, value: object, key: str, what: str | None = None) -> Mapping[str, object]:
        """A mapping with string keys; an absent or empty section is C{{}}."""
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._error(key or (what or ""), f"expected a mapping, got {_describe(value)}")
        for k in value:
            if not isinstance(k, str):
                raise self._error(key or (what or ""), f"keys must be strings, got {_describe(k)}")
        return value

    def _known(self, section: Mapping[str, object], prefix: str, known: tuple[str, ...]) -> None:
        for k in section:
            if k not in known:
                raise self._error(
                    _join(prefix, k), f"unknown key (expected one of: {_choices(known)})"
                )

    def _get(
        self,
        section: Mapping[str, object],
        prefix: str,
        name: str,
        default: _T,
        check: Callable[[object, str], _T],
    ) -> _T:
        if name not in section:
            return default
        return check(section[name], _join(prefix, name))

    # Scalars

    def _int(self, value: object, key: str, low: int, high: int | None = None) -> int:
        # YAML's true/false are Python bools, which are ints: refuse them here.
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._error(key, f"expected an integer, got {_describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise self._error(key, f"must be {bounds}, got {value}")
        return value

    def _seconds(self, value: object, key: str) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"expected a number of seconds, got {_describe(value)}")
        if not 0 <= value <= 3600:
            raise self._error(key, f"must be between 0 and 3600, got {value}")
        return float(value)

    def _number(self, value: object, key: str, low: float, high: float) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"expected a number, got {_describe(value)}")
        if not low <= value <= high:
            raise self._error(key, f"must be between {low:g} and {high:g}, got {value}")
        return float(value)

    def _bool(self, value: object, key: str) -> bool:
        if not isinstance(value, bool):
            raise self._error(key, f"expected true or false, got {_describe(value)}")
        return value

    def _str(self, value: object, key: str) -> str:
        if not isinstance(value, str):
            raise self._error(key, f"expected a string, got {_describe(value)}")
        if not value.strip():
            raise self._error(key, "must not be empty")
        return value

    def _optional_str(self, value: object, key: str) -> str | None:
        return None if value is None else self._str(value, key)

    def _names(self, value: object, key: str) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self._error(key, f"expected a list of names, got {_describe(value)}")
        return tuple(self._str(item, f"{key}[{index}]") for index, item in enumerate(value))

    def _choice(self, value: object, key: str, choices: tuple[str, ...]) -> str:
        text = self._str(value, key)
        if text not in choices:
            raise self._error(key, f"expected one of: {_choices(choices)}, got {text!r}")
        return text

    # Sections

    def _node(self, value: object) -> NodeConfig:
        section = self._section(value, "node")
        self._known(section, "node", ("name",))
        return NodeConfig(name=self._get(section, "node", "name", NodeConfig().name, self._str))

    def _listeners(self, top: Mapping[str, object]) -> tuple[ListenerConfig, ...]:
        if "listeners" not in top:
            return DEFAULT_LISTENERS
        value = top["listeners"]
        if not isinstance(value, list):
            raise self._error("listeners", f"expected a list, got {_describe(value)}")
        if not value:
            raise self._error("listeners", "at least one listener is required")
        listeners: list[ListenerConfig] = []
        names: set[str] = set()
        for index, item in enumerate(value):
            listener = self._listener(item, f"listeners[{index}]")
            if listener.name in names:
                raise self._error(
                    f"listeners[{index}].name", f"duplicate listener name {listener.name!r}"
                )
            names.add(listener.name)
            listeners.append(listener)
        return tuple(listeners)

    def _listener(self, value: object, prefix: str) -> ListenerConfig:
        section = self._section(value, prefix)
        ws_keys = tuple(f.name for f in fields(WebSocketConfig))
        self._known(
            section,
            prefix,
            ("name", "protocol", "endpoint", "max_connections", "allow_anonymous", "tls", *ws_keys),
        )
        for required in ("name", "protocol", "endpoint"):
            if required not in section:
                raise self._error(_join(prefix, required), "missing (every listener needs it)")
        name = self._str(section["name"], _join(prefix, "name"))
        if not _LISTENER_NAME.match(name):
            raise self._error(
                _join(prefix, "name"),
                f"{name!r} is not a valid name (letters, digits, '_', '.', '-'; "
                "starting with a letter or digit)",
            )
        protocol = self._listener_protocol(section["protocol"], _join(prefix, "protocol"))
        endpoint = self._endpoint(section["endpoint"], _join(prefix, "endpoint"))
        max_connections = self._get(
            section, prefix, "max_connections", 0, lambda v, k: self._int(v, k, 0)
        )
        allow_anonymous = self._get(section, prefix, "allow_anonymous", None, self._bool)
        websocket = None
        if protocol == "mqtt-ws":
            websocket = self._websocket(section, prefix)
        else:
            for key in ws_keys:
                if key in section:
                    raise self._error(
                        _join(prefix, key), "only WebSocket (mqtt-ws) listeners take this key"
                    )
        return ListenerConfig(
            name=name,
            protocol=protocol,
            endpoint=endpoint,
            max_connections=max_connections,
            allow_anonymous=allow_anonymous,
            tls=self._get(section, prefix, "tls", None, self._tls),
            websocket=websocket,
        )

    def _websocket(self, section: Mapping[str, object], prefix: str) -> WebSocketConfig:
        d = WebSocketConfig()
        return WebSocketConfig(
            path=self._get(section, prefix, "path", d.path, self._ws_path),
            permessage_deflate=self._get(
                section, prefix, "permessage_deflate", d.permessage_deflate, self._bool
            ),
            ping_interval=self._get(section, prefix, "ping_interval", d.ping_interval, self._seconds),
            trust_x_forwarded_for=self._get(
                section, prefix, "trust_x_forwarded_for", d.trust_x_forwarded_for, self._bool
            ),
        )

    def _ws_path(self, value: object, key: str) -> str:
        path = self._str(value, key)
        if not _WS_PATH.match(path) or "?" in path or "#" in path:
            raise self._error(
                key, f"expected an absolute path such as '/mqtt' (no query), got {path!r}"
            )
        return path

    def _tls(self, value: object, key: str) -> TLSConfig | None:
        if value is None:
            return None
        section = self._section(value, key)
        self._known(section, key, tuple(f.name for f in fields(TLSConfig)))
        for required in ("cert", "key"):
            if required not in section:
                raise self._error(_join(key, required), "missing (a TLS listener needs it)")
        d = TLSConfig("", "")
        tls = TLSConfig(
            cert=self._file(section["cert"], _join(key, "cert")),
            key=self._file(section["key"], _join(key, "key")),
            ca=self._get(section, key, "ca", None, self._optional_file),
            require_client_cert=self._get(
                section, key, "require_client_cert", d.require_client_cert, self._bool
            ),
            use_identity_as_username=self._get(
                section, key, "use_identity_as_username", d.use_identity_as_username, self._bool
            ),
            min_version=self._get(
                section,
                key,
                "min_version",
                d.min_version,
                lambda v, k: self._choice(_version_text(v), k, _TLS_VERSIONS),
            ),
            ciphers=self._get(section, key, "ciphers", None, self._optional_str),
        )
        if tls.require_client_cert and tls.ca is None:
            raise self._error(
                _join(key, "ca"), "missing (require_client_cert checks client certificates against it)"
            )
        if tls.use_identity_as_username and not tls.require_client_cert:
            raise self._error(
                _join(key, "use_identity_as_username"),
                "needs require_client_cert: true (the user name comes from the client certificate)",
            )
        return tls

    def _file(self, value: object, key: str) -> str:
        path = self._str(value, key)
        if not FilePath(path).isfile():
            raise self._error(key, f"no such file: {path!r}")
        return path

    def _optional_file(self, value: object, key: str) -> str | None:
        return None if value is None else self._file(value, key)

    def _listener_protocol(self, value: object, key: str) -> str:
        protocol = self._str(value, key)
        if protocol in _LATER_LISTENER_PROTOCOLS:
            raise self._error(
                key,
                f"{protocol!r} ({_LATER_LISTENER_PROTOCOLS[protocol]}) is not available yet "
                f"in this release; available: {_choices(_LISTENER_PROTOCOLS)}",
            )
        if protocol not in _LISTENER_PROTOCOLS:
            raise self._error(
                key, f"unknown protocol {protocol!r}; available: {_choices(_LISTENER_PROTOCOLS)}"
            )
        return protocol

    def _endpoint(self, value: object, key: str) -> str:
        description = self._str(value, key)
        # serverFromString only builds an endpoint object: listening happens
        # later, in the service, against the real reactor. It still wants a
        # reactor, and the global one must not be imported here: twistd
        # imports plugins and parses options before it installs the reactor
        # chosen with --reactor, and importing twisted.internet.reactor now
        # would install the default one first. MemoryReactor provides every
        # reactor interface an endpoint parser may keep and never does I/O.
        try:
            serverFromString(MemoryReactor(), description)
        except Exception as e:
            # Parsers report bad descriptions as ValueError, TypeError
            # (unknown parameter), KeyError, OSError (ssl: certificate files)
            # or their own errors: all mean the same thing here.
            raise self._error(
                key, f"invalid endpoint {description!r}: {type(e).__name__}: {e}"
            ) from e
        return description

    def _mqtt(self, value: object) -> MQTTConfig:
        section = self._section(value, "mqtt")
        self._known(section, "mqtt", tuple(f.name for f in fields(MQTTConfig)))
        d = MQTTConfig()

        def integer(low: int, high: int | None = None) -> Callable[[object, str], int]:
            return lambda v, k: self._int(v, k, low, high)

        def number(low: float, high: float) -> Callable[[object, str], float]:
            return lambda v, k: self._number(v, k, low, high)

        # Each key's check, in the order errors are reported.
        checks: dict[str, Callable[[object, str], Any]] = {
            "max_packet_size": integer(MIN_PACKET_SIZE, MAX_PACKET_SIZE_LIMIT),
            "receive_maximum": integer(1, _UINT16),
            "max_inflight": integer(1, _UINT16),
            "max_queued_messages": integer(0),
            "max_session_expiry": integer(0, _UINT32),
            "retain_available": self._bool,
            "shared_subscriptions": self._bool,
            "topic_alias_maximum": integer(0, _UINT16),
            "keepalive_max": integer(0, _UINT16),
            "sys_interval": integer(0, 86_400),
            "maximum_qos": integer(0, 2),
            "wildcard_subscriptions": self._bool,
            "subscription_identifiers": self._bool,
            "shared_subscription_strategy": lambda v, k: self._choice(v, k, SHARED_STRATEGIES),
            "response_information": self._optional_str,
            "server_reference": self._optional_str,
            "server_moved": self._bool,
            "validate_payload_format": self._bool,
            "flow_control_timeout": self._seconds,
            "connect_timeout": number(0.1, 3600.0),
            "max_connections": integer(0),
            "max_connection_rate": number(0.0, 1e6),
            "connection_burst": integer(1),
            "max_client_id_length": integer(23, _UINT16),
            "max_topic_length": integer(1, _UINT16),
            "max_topic_levels": integer(0),
            "max_subscriptions": integer(0),
            "max_publish_rate": number(0.0, 1e9),
            "max_publish_bytes_rate": integer(0),
        }
        assert checks.keys() == {f.name for f in fields(MQTTConfig)}, "every mqtt key is checked"
        return MQTTConfig(
            **{key: self._get(section, "mqtt", key, getattr(d, key), check) for key, check in checks.items()}
        )

    def _persistence(self, value: object) -> PersistenceConfig:
        section = self._section(value, "persistence")
        self._known(section, "persistence", tuple(f.name for f in fields(PersistenceConfig)))
        d = PersistenceConfig()
        return PersistenceConfig(
            backend=self._get(section, "persistence", "backend", d.backend, self._backend),
            path=self._get(section, "persistence", "path", d.path, self._str),
            durability=self._get(
                section,
                "persistence",
                "durability",
                d.durability,
                lambda v, k: self._choice(v, k, _DURABILITY),
            ),
            commit_interval=self._get(
                section, "persistence", "commit_interval", d.commit_interval, self._commit_interval
            ),
        )

    def _commit_interval(self, value: object, key: str) -> float:
        # Not _seconds: its range (0 .. 3600) would be the one named for NaN,
        # infinity or more than an hour.
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._error(key, f"expected a number of seconds, got {_describe(value)}")
        if not 0 < value <= 60:
            raise self._error(key, f"must be more than 0 and at most 60, got {value}")
        return float(value)

    def _backend(self, value: object, key: str) -> str:
        backend = self._str(value, key)
        if backend in _LATER_BACKENDS:
            raise self._error(
                key,
                f"{backend!r} ({_LATER_BACKENDS[backend]}) is not available yet in this "
                f"release; available: {_choices(_BACKENDS)}",
            )
        if backend not in _BACKENDS:
            raise self._error(key, f"unknown backend {backend!r}; available: {_choices(_BACKENDS)}")
        return backend

    def _auth(self, value: object) -> AuthConfig:
        section = self._section(value, "auth")
        self._known(
            section,
            "auth",
            (
                "allow_anonymous",
                "password_file",
                "acl_file",
                "max_failures_per_minute",
                "admins",
                "scram",
                "http",
            ),
        )
        http = self._get(section, "auth", "http", None, self._http_auth)
        if http is not None and section.get("password_file") is not None:
            raise self._error(
                "auth.http",
                "cannot be used with auth.password_file: users are checked by one or the other",
            )
        return AuthConfig(
            http=http,
            acl_file=self._get(section, "auth", "acl_file", None, self._optional_str),
            admins=self._get(section, "auth", "admins", (), self._names),
            scram=self._get(section, "auth", "scram", AuthConfig().scram, self._bool),
            allow_anonymous=self._get(
                section, "auth", "allow_anonymous", AuthConfig().allow_anonymous, self._bool
            ),
            password_file=self._get(section, "auth", "password_file", None, self._optional_str),
            max_failures_per_minute=self._get(
                section,
                "auth",
                "max_failures_per_minute",
                AuthConfig().max_failures_per_minute,
                lambda v, k: self._int(v, k, 0, 1_000_000),
            ),
        )

    def _http_auth(self, value: object, key: str) -> HTTPAuthConfig | None:
        if value is None:
            return None
        section = self._section(value, key)
        self._known(section, key, tuple(f.name for f in fields(HTTPAuthConfig)))
        if "url" not in section:
            raise self._error(_join(key, "url"), "missing (the hook needs an endpoint)")
        url = self._str(section["url"], _join(key, "url"))
        if not _HTTP_URL.match(url):
            raise self._error(
                _join(key, "url"), f"expected an http:// or https:// URL, got {url!r}"
            )
        d = HTTPAuthConfig(url)
        return HTTPAuthConfig(
            url=url,
            timeout=self._get(
                section, key, "timeout", d.timeout, lambda v, k: self._number(v, k, 0.001, 600.0)
            ),
            cache_seconds=self._get(
                section,
                key,
                "cache_seconds",
                d.cache_seconds,
                lambda v, k: self._number(v, k, 0.0, 86_400.0),
            ),
            cache_size=self._get(
                section, key, "cache_size", d.cache_size, lambda v, k: self._int(v, k, 0, 10_000_000)
            ),
        )

    def _logging(self, value: object) -> LoggingConfig:
        section = self._section(value, "logging")
        self._known(section, "logging", ("level", "format"))
        d = LoggingConfig()
        return LoggingConfig(
            level=self._get(
                section, "logging", "level", d.level, lambda v, k: self._choice(v, k, _LOG_LEVELS)
            ),
            format=self._get(
                section,
                "logging",
                "format",
                d.format,
                lambda v, k: self._choice(v, k, _LOG_FORMATS),
            ),
        )


def _version_text(value: object) -> object:
    # YAML reads an unquoted 1.2 as a float.
    return str(value) if isinstance(value, float) else value


def _join(prefix: str, key: str) -> str:
    return f"{prefix}.{key}" if prefix else key
