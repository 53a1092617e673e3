# -*- test-case-name: tests.test_config -*-
"""
How the C{listeners} section is read: each listener's name, protocol and
endpoint, its C{tls:} block and, for C{mqtt-ws}, C{http} and C{coap}, the
settings of that protocol.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import fields
from typing import Any

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath

from mqttx.config.checks import _Checks, _choices, _describe, _join
from mqttx.config.values import (
    DEFAULT_LISTENERS,
    CoAPConfig,
    CoAPRule,
    HTTPConfig,
    ListenerConfig,
    TLSConfig,
    WebSocketConfig,
)

_LISTENER_PROTOCOLS = ("mqtt", "mqtt-ws", "http", "coap", "metrics")
#: CoAP's endpoint, the one form mqttx parses itself: C{udp:PORT} with an
#: optional C{:interface=IP}.
_UDP_ENDPOINT = re.compile(r"udp:(?:port=)?(\d{1,5})(?::interface=(.+))?\Z")
_BLOCK_SIZES = (16, 32, 64, 128, 256, 512, 1024)
_TLS_VERSIONS = ("1.2", "1.3")
#: An absolute HTTP request path without query or fragment.
_WS_PATH = re.compile(r"/[\x21-\x7e]*\Z", re.ASCII)
_LISTENER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


class _ListenerSections(_Checks):
    """The C{listeners} section, for L{mqttx.config.parser._Parser}."""

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
            (
                "name",
                "protocol",
                "endpoint",
                "max_connections",
                "allow_anonymous",
                "tls",
                "http",
                "coap",
                *ws_keys,
            ),
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
        if protocol == "coap":
            endpoint = self._udp_endpoint(section["endpoint"], _join(prefix, "endpoint"))
            if "tls" in section:
                raise self._error(
                    _join(prefix, "tls"),
                    "CoAP listeners cannot take TLS (DTLS is not supported)",
                )
        else:
            endpoint = self._endpoint(section["endpoint"], _join(prefix, "endpoint"))
        for block in ("http", "coap"):
            if block in section and protocol != block:
                raise self._error(_join(prefix, block), f"only {block} listeners take this key")
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
            http=self._http(section.get("http"), _join(prefix, "http")) if protocol == "http" else None,
            coap=self._coap(section.get("coap"), _join(prefix, "coap")) if protocol == "coap" else None,
        )

    def _http(self, value: object, key: str) -> HTTPConfig:
        section = self._section(value, key)
        self._known(section, key, tuple(f.name for f in fields(HTTPConfig)))
        checks: dict[str, Callable[[object, str], Any]] = {
            "heartbeat_interval": lambda v, k: self._number(v, k, 1.0, 3600.0),
            "metrics": self._bool,
            "status_page": self._bool,
            "session_expiry": lambda v, k: self._int(v, k, 0, 4_294_967_295),
        }
        return self._fields(HTTPConfig, section, key, checks)

    def _coap(self, value: object, key: str) -> CoAPConfig:
        section = self._section(value, key)
        self._known(section, key, tuple(f.name for f in fields(CoAPConfig)))
        checks: dict[str, Callable[[object, str], Any]] = {
            "rules": self._coap_rules,
            "max_observers_per_source": lambda v, k: self._int(v, k, 0, 1_000_000),
            "max_payload": lambda v, k: self._int(v, k, 1, 16 * 1024 * 1024),
            "max_request_rate": lambda v, k: self._number(v, k, 0.0, 1e6),
            "block_size": self._block_size,
            "confirmable_every": lambda v, k: self._int(v, k, 1, 1000),
        }
        return self._fields(CoAPConfig, section, key, checks)

    def _coap_rules(self, value: object, key: str) -> tuple[CoAPRule, ...]:
        if not isinstance(value, list):
            raise self._error(key, f"expected a list of rules, got {_describe(value)}")
        rules = []
        for index, item in enumerate(value):
            rule_key = f"{key}[{index}]"
            section = self._section(item, rule_key)
            self._known(section, rule_key, tuple(f.name for f in fields(CoAPRule)))
            if "source" not in section:
                raise self._error(_join(rule_key, "source"), "missing (the network the rule is for)")
            source = self._str(section["source"], _join(rule_key, "source"))
            try:
                network = ipaddress.ip_network(source, strict=False)
            except ValueError as e:
                raise self._error(
                    _join(rule_key, "source"), f"expected a network such as '10.0.0.0/8', got {source!r}"
                ) from e
            d = CoAPRule(source)
            rules.append(
                CoAPRule(
                    source=str(network),
                    username=self._get(section, rule_key, "username", None, self._optional_str),
                    publish=self._get(section, rule_key, "publish", d.publish, self._bool),
                    subscribe=self._get(section, rule_key, "subscribe", d.subscribe, self._bool),
                )
            )
        return tuple(rules)

    def _block_size(self, value: object, key: str) -> int:
        size = self._int(value, key, 16, 1024)
        if size not in _BLOCK_SIZES:
            raise self._error(key, f"must be a power of two from 16 to 1024, got {size}")
        return size

    def _udp_endpoint(self, value: object, key: str) -> str:
        description = self._str(value, key)
        try:
            udp_address(description)
        except ValueError:
            raise self._error(
                key,
                f"invalid endpoint {description!r}: CoAP listens on 'udp:PORT' or "
                "'udp:PORT:interface=IP'",
            ) from None
        return description

    def _websocket(self, section: Mapping[str, object], prefix: str) -> WebSocketConfig:
        # The WebSocket keys sit on the listener itself, next to its others.
        checks: dict[str, Callable[[object, str], Any]] = {
            "path": self._ws_path,
            "permessage_deflate": self._bool,
            "ping_interval": self._seconds,
            "trust_x_forwarded_for": self._bool,
        }
        return self._fields(WebSocketConfig, section, prefix, checks)

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


def udp_address(description: str) -> tuple[int, str]:
    """
    The port and interface of a CoAP listener's C{udp:PORT[:interface=IP]}
    endpoint; the interface is C{""} (every address) when not given.

    @raise ValueError: if C{description} is not of that form.
    """
    match = _UDP_ENDPOINT.match(description)
    if match is None or int(match.group(1)) > 65535:
        raise ValueError(f"invalid UDP endpoint {description!r}")
    interface = match.group(2) or ""
    if interface:
        # Twisted's endpoint syntax escapes an IPv6 address's colons.
        interface = interface.replace("\\:", ":")
        ipaddress.ip_address(interface)
    return int(match.group(1)), interface


def _version_text(value: object) -> object:
    # YAML reads an unquoted 1.2 as a float.
    return str(value) if isinstance(value, float) else value
