# -*- test-case-name: tests.mqtt.test_topics -*-
"""
Topic names, topic filters and shared subscriptions (MQTT 3.1.1 section 4.7,
MQTT 5.0 sections 4.7 and 4.8.2).

Everything here is pure string work: the codec and the broker call it to
validate what a client sends, and L{matches} is the reference matcher that the
retained index and the tests check themselves against.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_TOPIC_BYTES",
    "SHARE_PREFIX",
    "SharedFilter",
    "is_valid_topic_filter",
    "is_valid_topic_name",
    "matches",
    "parse_shared",
    "split",
]

MAX_TOPIC_BYTES = 65535
"""The longest topic name or filter, in UTF-8 bytes [MQTT-4.7.3-3]."""

SHARE_PREFIX = "$share/"
"""The prefix that marks a shared subscription's topic filter [MQTT-4.8.2-1]."""


def _is_valid_string(text: str) -> bool:
    """
    Check the rules common to topic names and filters.

    @param text: a topic name or filter.
    @return: C{True} if C{text} is non-empty [MQTT-4.7.3-1], contains no
        U+0000 [MQTT-4.7.3-2], encodes to UTF-8 (no lone surrogates,
        [MQTT-1.5.3-1], 5.0: [MQTT-1.5.4-1]) and fits in L{MAX_TOPIC_BYTES} [MQTT-4.7.3-3].
    """
    if not text or "\x00" in text:
        return False
    if text.isascii():
        # O(1) for str objects, and the common case: one byte per character.
        return len(text) <= MAX_TOPIC_BYTES
    if len(text) > MAX_TOPIC_BYTES:
        return False
    try:
        return len(text.encode("utf-8")) <= MAX_TOPIC_BYTES
    except UnicodeEncodeError:
        return False


def is_valid_topic_name(topic: str) -> bool:
    """
    Decide whether C{topic} may be published to.

    @param topic: the topic name of a PUBLISH (or a will).
    @return: C{True} if C{topic} is non-empty, has no wildcard characters
        [MQTT-4.7.1-1], no U+0000 and at most 65535 UTF-8 bytes.
    """
    return "+" not in topic and "#" not in topic and _is_valid_string(topic)


def is_valid_topic_filter(filter: str) -> bool:
    """
    Decide whether C{filter} may be subscribed to.

    A shared subscription (C{$share/group/filter}) is a syntactically valid
    filter too; use L{parse_shared} to check and take apart its share.

    @param filter: the topic filter of a SUBSCRIBE or UNSUBSCRIBE.
    @return: C{True} if C{filter} is non-empty, has no U+0000, at most 65535
        UTF-8 bytes, C{#} only as a whole last level [MQTT-4.7.1-2] and C{+}
        only as a whole level [MQTT-4.7.1-3].
    """
    if not _is_valid_string(filter):
        return False
    if "+" not in filter and "#" not in filter:
        return True
    levels = filter.split("/")
    last = len(levels) - 1
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != last):
            return False
        if "+" in level and level != "+":
            return False
    return True


@dataclass(frozen=True, slots=True)
class SharedFilter:
    """
    A shared subscription's filter, C{$share/{group}/{filter}}, taken apart.

    @ivar group: the ShareName: non-empty, without C{/}, C{+} or C{#}.
    @ivar filter: the topic filter that messages are matched against.
    """

    group: str
    filter: str


def parse_shared(filter: str) -> SharedFilter | None:
    """
    Take apart a shared subscription's topic filter.

    @param filter: a topic filter from SUBSCRIBE or UNSUBSCRIBE.
    @return: the share group and inner filter, or C{None} if C{filter} does
        not start with C{$share/} (an ordinary subscription).
    @raise ValueError: if the filter starts with C{$share/} but the ShareName
        is empty [MQTT-4.8.2-1], contains C{+} or C{#}, is not followed by
        C{/} and a topic filter [MQTT-4.8.2-2], or that filter is invalid.
    """
    if not filter.startswith(SHARE_PREFIX):
        return None
    group, separator, inner = filter[len(SHARE_PREFIX) :].partition("/")
    if not group:
        raise ValueError(f"{filter!r}: empty ShareName [MQTT-4.8.2-1]")
    if "+" in group or "#" in group:
        raise ValueError(
            f"{filter!r}: ShareName {group!r} contains a wildcard [MQTT-4.8.2-2]"
        )
    if not separator:
        raise ValueError(
            f"{filter!r}: ShareName must be followed by '/' and a topic filter [MQTT-4.8.2-2]"
        )
    if not is_valid_topic_filter(inner):
        raise ValueError(
            f"{filter!r}: invalid topic filter {inner!r} after the ShareName [MQTT-4.8.2-2]"
        )
    return SharedFilter(group, inner)


def split(topic: str) -> tuple[str, ...]:
    """
    Split a topic name or filter into its levels.

    @param topic: a topic name or filter.
    @return: the levels between C{/} separators; empty levels are kept, so
        C{"/a/"} gives C{("", "a", "")}.
    """
    return tuple(topic.split("/"))


def matches(filter: str, topic: str) -> bool:
    """
    Decide whether a topic filter matches a topic name.

    C{+} matches exactly one level, empty ones included (C{+/+} matches
    C{/x}); C{#} matches any number of levels, including the parent level
    (C{sport/#} matches C{sport}) [MQTT-4.7.1-2]. A filter that starts with a
    wildcard does not match a topic that starts with C{$} [MQTT-4.7.2-1].

    @param filter: a valid topic filter, without any C{$share/group/} prefix.
    @param topic: a valid topic name.
    @return: C{True} if C{filter} matches C{topic}.
    """
    if topic[:1] == "$" and filter[:1] in ("+", "#"):
        return False
    filter_levels = filter.split("/")
    topic_levels = topic.split("/")
    topic_depth = len(topic_levels)
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= topic_depth:
            return False
        if level != "+" and level != topic_levels[index]:
            return False
    return len(filter_levels) == topic_depth
