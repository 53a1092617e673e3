# -*- test-case-name: tests.test_config -*-
"""
How a configuration document is read: YAML loaded with unique keys, then
checked section by section into a L{Config} (see L{mqttx.config} for the
rules every error follows).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import fields
from typing import Any

import yaml
from twisted.python.filepath import FilePath

from mqttx.config.checks import _choices, _describe, _join
from mqttx.config.listeners import _ListenerSections
from mqttx.config.values import (
    MAX_PACKET_SIZE_LIMIT,
    MIN_PACKET_SIZE,
    SHARED_STRATEGIES,
    AuthConfig,
    Config,
    ConfigError,
    HTTPAuthConfig,
    LoggingConfig,
    MQTTConfig,
    NodeConfig,
    PersistenceConfig,
)

_UINT16 = 65_535
_UINT32 = 4_294_967_295

_BACKENDS = ("sqlite", "memory")
_LATER_BACKENDS = {
    "etcd": "the etcd cluster store",
}
_DURABILITY = ("sync", "batch")
_LOG_LEVELS = ("debug", "info", "warn", "error", "critical")
_LOG_FORMATS = ("text", "json")
#: The HTTP authentication hook's endpoint: printable ASCII (it is sent as
#: is), a scheme twisted.web.client.Agent speaks, and a host.
_HTTP_URL = re.compile(r"https?://[^/?#\s@]+(?:[/?#][\x21-\x7e]*)?\Z", re.ASCII)


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


class _Parser(_ListenerSections):
    """Checks one document; C{source} goes into every error."""

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

    # Sections (the listeners: mqttx.config.listeners)

    def _node(self, value: object) -> NodeConfig:
        section = self._section(value, "node")
        self._known(section, "node", ("name",))
        return NodeConfig(name=self._get(section, "node", "name", NodeConfig().name, self._str))

    def _mqtt(self, value: object) -> MQTTConfig:
        section = self._section(value, "mqtt")
        self._known(section, "mqtt", tuple(f.name for f in fields(MQTTConfig)))

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
        return self._fields(MQTTConfig, section, "mqtt", checks)

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
