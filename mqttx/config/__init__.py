# -*- test-case-name: tests.test_config -*-
"""
The mqttx configuration: YAML read once into frozen, typed values.

This package is being split; for now everything lives in
L{mqttx.config.parser} and is re-exported here unchanged.
"""

# Public, importable, and (as before the split) not in __all__: re-exported
# explicitly so mypy's no-implicit-reexport accepts them.
from mqttx.config.parser import DEFAULT_LISTENERS as DEFAULT_LISTENERS
from mqttx.config.parser import MAX_PACKET_SIZE_LIMIT as MAX_PACKET_SIZE_LIMIT
from mqttx.config.parser import MIN_PACKET_SIZE as MIN_PACKET_SIZE
from mqttx.config.parser import SHARED_STRATEGIES as SHARED_STRATEGIES
from mqttx.config.parser import (
    AuthConfig,
    Config,
    ConfigError,
    HTTPAuthConfig,
    ListenerConfig,
    LoggingConfig,
    MQTTConfig,
    NodeConfig,
    PersistenceConfig,
    TLSConfig,
    WebSocketConfig,
    load_config,
    parse_config,
)

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
