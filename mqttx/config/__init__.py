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
(the C{etcd} backend) are rejected with a message saying so rather than accepted and ignored.

The package is split by job:

  - L{mqttx.config.values}: what a configuration is: the frozen dataclasses,
    their defaults and limits, and L{ConfigError};
  - L{mqttx.config.parser}: how a document is read: L{load_config},
    L{parse_config}, YAML with unique keys, and every section but one;
  - L{mqttx.config.listeners}: the C{listeners} section (endpoints, TLS,
    WebSocket);
  - L{mqttx.config.checks}: the shape and scalar checks the sections share.

Import from C{mqttx.config} itself: the names below are its API, the
modules' layout is not.
"""

from mqttx.config.listeners import udp_address
from mqttx.config.parser import load_config, parse_config

# Public, importable, and (as before the split) not in __all__: re-exported
# explicitly so mypy's no-implicit-reexport accepts them.
from mqttx.config.values import DEFAULT_LISTENERS as DEFAULT_LISTENERS
from mqttx.config.values import MAX_PACKET_SIZE_LIMIT as MAX_PACKET_SIZE_LIMIT
from mqttx.config.values import MIN_PACKET_SIZE as MIN_PACKET_SIZE
from mqttx.config.values import SHARED_STRATEGIES as SHARED_STRATEGIES
from mqttx.config.values import (
    AuthConfig,
    CoAPConfig,
    CoAPRule,
    Config,
    ConfigError,
    HTTPAuthConfig,
    HTTPConfig,
    ListenerConfig,
    LoggingConfig,
    MQTTConfig,
    NodeConfig,
    PersistenceConfig,
    TLSConfig,
    WebSocketConfig,
)

__all__ = [
    "AuthConfig",
    "CoAPConfig",
    "CoAPRule",
    "Config",
    "ConfigError",
    "HTTPAuthConfig",
    "HTTPConfig",
    "ListenerConfig",
    "TLSConfig",
    "WebSocketConfig",
    "LoggingConfig",
    "MQTTConfig",
    "NodeConfig",
    "PersistenceConfig",
    "load_config",
    "parse_config",
    "udp_address",
]
