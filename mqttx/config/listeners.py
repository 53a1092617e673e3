# -*- test-case-name: tests.test_config -*-
"""
How the C{listeners} section is read: each listener's name, protocol and
endpoint, its C{tls:} block and, for C{mqtt-ws}, its WebSocket settings.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields

from twisted.internet.endpoints import serverFromString
from twisted.internet.testing import MemoryReactor
from twisted.python.filepath import FilePath

from mqttx.config.checks import _Checks, _choices, _describe, _join
from mqttx.config.values import DEFAULT_LISTENERS, ListenerConfig, TLSConfig, WebSocketConfig

_LISTENER_PROTOCOLS = ("mqtt", "mqtt-ws", "metrics")
_LATER_LISTENER_PROTOCOLS = {
    "http": "the HTTP bridge",
    "coap": "the CoAP bridge",
}
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


def _version_text(value: object) -> object:
    # YAML reads an unquoted 1.2 as a float.
    return str(value) if isinstance(value, float) else value
