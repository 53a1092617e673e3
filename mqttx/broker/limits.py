# -*- test-case-name: tests.broker.test_limits -*-
"""
Per-client limits the broker enforces on topics and subscriptions (the
C{mqtt} section's C{max_topic_length}, C{max_topic_levels} and
C{max_subscriptions}).

The checks are plain functions of the configuration, so the transport can
skip them entirely when they are off (see L{topic_checked}).
"""

from __future__ import annotations

from collections.abc import Mapping

from mqttx.config import MQTTConfig
from mqttx.mqtt.reason_codes import ReasonCode

#: The longest topic MQTT can carry: a limit this high is no limit.
_NO_LENGTH_LIMIT = 65_535


def topic_checked(config: MQTTConfig) -> bool:
    """
    Whether topic names must be checked against the limits at all.

    @param config: the broker's C{mqtt} settings.
    """
    return config.max_topic_length < _NO_LENGTH_LIMIT or config.max_topic_levels > 0


def topic_over_limits(config: MQTTConfig, topic: str) -> bool:
    """
    Whether C{topic} (a name or a filter) is longer, or has more levels,
    than the configuration allows.
    """
    levels = config.max_topic_levels
    return len(topic) > config.max_topic_length or (
        levels > 0 and topic.count("/") >= levels
    )


def filter_refusal(
    config: MQTTConfig, subscriptions: Mapping[str, object], topic_filter: str, v5: bool
) -> int:
    """
    The SUBACK failure code for a filter the limits refuse, or 0.

    A filter over C{max_topic_length} or C{max_topic_levels} gets 0x8F
    (topic filter invalid); a new filter once the session holds
    C{max_subscriptions} gets 0x97 (quota exceeded); 3.1.1 has only 0x80.
    Replacing an existing subscription is always allowed.

    @param subscriptions: the session's current subscriptions, by filter.
    """
    if topic_over_limits(config, topic_filter):
        return ReasonCode.TOPIC_FILTER_INVALID if v5 else 0x80
    limit = config.max_subscriptions
    if limit and len(subscriptions) >= limit and topic_filter not in subscriptions:
        return ReasonCode.QUOTA_EXCEEDED if v5 else 0x80
    return 0
