# -*- test-case-name: tests.mqtt.test_topics -*-
"""
Tests for L{mqttx.mqtt.topics}. Normative ids are MQTT 3.1.1's unless they say
otherwise; examples are the ones in section 4.7 of the 3.1.1 specification.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.topics import (
    MAX_TOPIC_BYTES,
    SharedFilter,
    is_valid_topic_filter,
    is_valid_topic_name,
    matches,
    parse_shared,
    split,
)

# Levels of topic names: small alphabets make matches frequent.
name_levels = st.sampled_from(["a", "b", "", "$s", "é"])
topic_names = st.lists(name_levels, min_size=1, max_size=5).map("/".join).filter(bool)


class TopicNameTests(SynchronousTestCase):
    """
    Tests for L{is_valid_topic_name}.
    """

    def test_plain_names_are_valid(self) -> None:
        """
        If a topic name has no wildcards, then it is valid, whatever its
        levels: empty levels, spaces, C{$} and non-ASCII included (4.7.3).
        """
        for topic in [
            "a",
            "/",
            "//",
            "/finance",
            "sport/",
            "Accounts payable",
            "$SYS/x",
            "ça/va",
            "a b/ c",
        ]:
            self.assertTrue(is_valid_topic_name(topic), topic)

    def test_wildcards_are_rejected(self) -> None:
        """
        If a topic name contains C{+} or C{#} anywhere, then it is invalid
        [MQTT-4.7.1-1].
        """
        for topic in ["+", "#", "a/+", "a/#", "sport+", "a#b", "+/x"]:
            self.assertFalse(is_valid_topic_name(topic), topic)

    def test_empty_name_is_rejected(self) -> None:
        """
        If a topic name is empty, then it is invalid [MQTT-4.7.3-1].
        """
        self.assertFalse(is_valid_topic_name(""))

    def test_null_character_is_rejected(self) -> None:
        """
        If a topic name contains U+0000, then it is invalid [MQTT-4.7.3-2].
        """
        self.assertFalse(is_valid_topic_name("a\x00b"))

    def test_lone_surrogate_is_rejected(self) -> None:
        """
        If a topic name holds a lone surrogate, which has no UTF-8 encoding,
        then it is invalid [MQTT-1.5.3-1] (MQTT 5.0: [MQTT-1.5.4-1]).
        """
        self.assertFalse(is_valid_topic_name("a\ud800"))

    def test_length_is_counted_in_utf8_bytes(self) -> None:
        """
        If a topic name encodes to more than 65535 UTF-8 bytes, then it is
        invalid, even when it has fewer characters [MQTT-4.7.3-3].
        """
        self.assertTrue(is_valid_topic_name("a" * MAX_TOPIC_BYTES))
        self.assertFalse(is_valid_topic_name("a" * (MAX_TOPIC_BYTES + 1)))
        # U+00E9 takes two bytes.
        self.assertTrue(is_valid_topic_name("\u00e9" * (MAX_TOPIC_BYTES // 2)))
        self.assertFalse(is_valid_topic_name("\u00e9" * (MAX_TOPIC_BYTES // 2 + 1)))


class TopicFilterTests(SynchronousTestCase):
    """
    Tests for L{is_valid_topic_filter}.
    """

    def test_spec_examples_of_valid_filters(self) -> None:
        """
        If a filter uses C{#} as its whole last level and C{+} as whole
        levels, then it is valid (4.7.1.2, 4.7.1.3).
        """
        for filter in [
            "#",
            "sport/tennis/#",
            "+",
            "+/tennis/#",
            "sport/+/player1",
            "+/+",
            "/+",
            "$SYS/#",
            "sport/",
        ]:
            self.assertTrue(is_valid_topic_filter(filter), filter)

    def test_multi_level_wildcard_must_be_whole_last_level(self) -> None:
        """
        If C{#} is not alone in its level or not in the last level, then the
        filter is invalid [MQTT-4.7.1-2].
        """
        for filter in [
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "#/a",
            "a/#b",
            "##",
            "a/##",
        ]:
            self.assertFalse(is_valid_topic_filter(filter), filter)

    def test_single_level_wildcard_must_be_whole_level(self) -> None:
        """
        If C{+} shares its level with other characters, then the filter is
        invalid [MQTT-4.7.1-3].
        """
        for filter in ["sport+", "a/+b", "++", "+a/b", "a/b+/#"]:
            self.assertFalse(is_valid_topic_filter(filter), filter)

    def test_empty_filter_is_rejected(self) -> None:
        """
        If a filter is empty, then it is invalid [MQTT-4.7.3-1].
        """
        self.assertFalse(is_valid_topic_filter(""))

    def test_null_character_is_rejected(self) -> None:
        """
        If a filter contains U+0000, then it is invalid [MQTT-4.7.3-2].
        """
        self.assertFalse(is_valid_topic_filter("a/\x00/#"))

    def test_length_is_limited(self) -> None:
        """
        If a filter encodes to more than 65535 UTF-8 bytes, then it is
        invalid [MQTT-4.7.3-3].
        """
        self.assertTrue(is_valid_topic_filter("a" * (MAX_TOPIC_BYTES - 2) + "/#"))
        self.assertFalse(is_valid_topic_filter("a" * (MAX_TOPIC_BYTES - 1) + "/#"))
        self.assertFalse(
            is_valid_topic_filter("\u00e9" * (MAX_TOPIC_BYTES // 2) + "/+")
        )

    def test_shared_filter_is_a_valid_filter(self) -> None:
        """
        If a filter is a shared subscription, then it is still a valid topic
        filter; its share is checked by L{parse_shared}.
        """
        self.assertTrue(is_valid_topic_filter("$share/group/a/+/#"))

    @given(topic_names)
    def test_every_topic_name_is_a_filter(self, topic: str) -> None:
        """
        If a string is a valid topic name, then it is a valid topic filter
        that matches exactly that topic.
        """
        self.assertTrue(is_valid_topic_filter(topic))
        self.assertTrue(matches(topic, topic))


class ParseSharedTests(SynchronousTestCase):
    """
    Tests for L{parse_shared}.
    """

    def test_non_shared_filter(self) -> None:
        """
        If a filter does not start with C{$share/}, then it is no shared
        subscription and the result is C{None}.
        """
        for filter in [
            "a/b",
            "#",
            "$SYS/#",
            "$share",
            "$shared/g/a",
            "$SHARE/g/a",
            "share/g/a",
        ]:
            self.assertIsNone(parse_shared(filter), filter)

    def test_group_and_filter(self) -> None:
        """
        If a filter is C{$share/group/filter}, then the group is the level after
        C{$share} and the filter is everything after it, wildcards and C{$}
        levels included (MQTT 5.0 4.8.2).
        """
        self.assertEqual(parse_shared("$share/g1/a/b"), SharedFilter("g1", "a/b"))
        self.assertEqual(
            parse_shared("$share/consumer1/sport/tennis/+"),
            SharedFilter("consumer1", "sport/tennis/+"),
        )
        self.assertEqual(parse_shared("$share/g/#"), SharedFilter("g", "#"))
        self.assertEqual(parse_shared("$share/g//"), SharedFilter("g", "/"))
        self.assertEqual(parse_shared("$share/g/$SYS/#"), SharedFilter("g", "$SYS/#"))

    def test_empty_group_is_rejected(self) -> None:
        """
        If the ShareName is empty, then the filter is rejected
        [MQTT-4.8.2-1] (MQTT 5.0).
        """
        for filter in ["$share//a", "$share/"]:
            self.assertRaises(ValueError, parse_shared, filter)

    def test_wildcard_in_group_is_rejected(self) -> None:
        """
        If the ShareName contains C{+} or C{#}, then the filter is rejected
        [MQTT-4.8.2-2] (MQTT 5.0).
        """
        for filter in [
            "$share/+/a",
            "$share/#/a",
            "$share/g+/a",
            "$share/#",
            "$share/a#b/c",
        ]:
            self.assertRaises(ValueError, parse_shared, filter)

    def test_missing_filter_is_rejected(self) -> None:
        """
        If the ShareName is not followed by C{/} and a topic filter, then the
        filter is rejected [MQTT-4.8.2-2] (MQTT 5.0).
        """
        for filter in ["$share/g", "$share/g/"]:
            self.assertRaises(ValueError, parse_shared, filter)

    def test_invalid_inner_filter_is_rejected(self) -> None:
        """
        If the filter after the ShareName is not a valid topic filter, then
        the shared filter is rejected.
        """
        for filter in ["$share/g/a/#/b", "$share/g/a+", "$share/g/a\x00"]:
            self.assertRaises(ValueError, parse_shared, filter)

    def test_error_message_names_the_filter(self) -> None:
        """
        If a shared filter is rejected, then the message quotes it, for the
        log and the MQTT 5 reason string.
        """
        error = self.assertRaises(ValueError, parse_shared, "$share/g+/a")
        self.assertIn("'$share/g+/a'", str(error))


class SplitTests(SynchronousTestCase):
    """
    Tests for L{split}.
    """

    def test_levels_including_empty_ones(self) -> None:
        """
        If a topic has leading, trailing or doubled separators, then its
        levels include the empty ones (4.7.1.1).
        """
        self.assertEqual(split("a/b"), ("a", "b"))
        self.assertEqual(split("/finance"), ("", "finance"))
        self.assertEqual(split("a//b/"), ("a", "", "b", ""))
        self.assertEqual(split("/"), ("", ""))


class MatchesTests(SynchronousTestCase):
    """
    Tests for L{matches}, with the examples of MQTT 3.1.1 section 4.7.
    """

    def assertMatches(self, filter: str, topics: list[str]) -> None:
        for topic in topics:
            self.assertTrue(
                matches(filter, topic), f"{filter!r} should match {topic!r}"
            )

    def assertNotMatches(self, filter: str, topics: list[str]) -> None:
        for topic in topics:
            self.assertFalse(
                matches(filter, topic), f"{filter!r} should not match {topic!r}"
            )

    def test_literal_filter_matches_only_equal_topic(self) -> None:
        """
        If a filter has no wildcards, then it matches only the identical
        topic: case, spaces and leading C{/} count (4.7.3).
        """
        self.assertMatches("Accounts payable", ["Accounts payable"])
        self.assertNotMatches("ACCOUNTS", ["Accounts", "ACCOUNTS/x", "ACCOUNT"])
        self.assertNotMatches("finance", ["/finance", "finance/"])

    def test_multi_level_wildcard_matches_descendants_and_parent(self) -> None:
        """
        If a filter ends in C{#}, then it matches the parent level and any
        number of levels below it [MQTT-4.7.1-2].
        """
        self.assertMatches(
            "sport/tennis/player1/#",
            [
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        )
        self.assertNotMatches(
            "sport/tennis/player1/#",
            ["sport/tennis", "sport/tennis/player2", "sport/tennis/player10"],
        )
        self.assertMatches("sport/#", ["sport", "sport/", "sport/tennis"])
        self.assertNotMatches("sport/#", ["sports", "/sport"])

    def test_lone_multi_level_wildcard_matches_everything(self) -> None:
        """
        If the filter is C{#}, then it matches every topic not starting with
        C{$}, including ones with empty levels.
        """
        self.assertMatches("#", ["a", "/", "/finance", "a/b/c", "sport/"])

    def test_single_level_wildcard_matches_one_level(self) -> None:
        """
        If a filter level is C{+}, then it matches exactly one level of the
        topic [MQTT-4.7.1-3].
        """
        self.assertMatches(
            "sport/tennis/+", ["sport/tennis/player1", "sport/tennis/player2"]
        )
        self.assertNotMatches(
            "sport/tennis/+", ["sport/tennis/player1/ranking", "sport/tennis"]
        )
        self.assertMatches("sport/+", ["sport/"])
        self.assertNotMatches("sport/+", ["sport"])
        self.assertMatches(
            "sport/+/player1", ["sport/tennis/player1", "sport//player1"]
        )

    def test_single_level_wildcard_matches_empty_levels(self) -> None:
        """
        If a topic has empty levels, then C{+} matches them: C{/finance}
        matches C{+/+} and C{/+} but not C{+} (4.7.1.3).
        """
        self.assertMatches("+/+", ["/finance", "a/", "/"])
        self.assertMatches("/+", ["/finance", "/"])
        self.assertNotMatches("+", ["/finance", "/"])
        self.assertMatches("a/+/b", ["a//b"])
        self.assertMatches("+", ["a"])

    def test_wildcards_combined(self) -> None:
        """
        If a filter combines C{+} and C{#}, then each keeps its meaning.
        """
        self.assertMatches(
            "+/tennis/#", ["sport/tennis", "sport/tennis/player1/score", "/tennis"]
        )
        self.assertNotMatches("+/tennis/#", ["sport/golf", "tennis"])

    def test_leading_wildcard_does_not_match_dollar_topics(self) -> None:
        """
        If a filter starts with a wildcard, then it does not match topics
        starting with C{$} [MQTT-4.7.2-1]: C{#} does not receive C{$SYS}
        messages, nor does C{+/monitor/Clients}.
        """
        self.assertNotMatches("#", ["$SYS", "$SYS/broker/uptime", "$", "$share/x"])
        self.assertNotMatches("+/monitor/Clients", ["$SYS/monitor/Clients"])
        self.assertNotMatches("+", ["$SYS"])
        self.assertNotMatches("+/#", ["$SYS/a"])

    def test_dollar_topics_match_explicit_filters(self) -> None:
        """
        If a filter spells out the C{$} level, then wildcards after it match
        as usual: C{$SYS/#} and C{$SYS/monitor/+} (4.7.2).
        """
        self.assertMatches("$SYS/#", ["$SYS", "$SYS/broker/uptime"])
        self.assertMatches("$SYS/monitor/+", ["$SYS/monitor/Clients"])
        self.assertNotMatches("$SYS/#", ["SYS/x", "$SYSTEM/x"])

    def test_dollar_inside_topic_is_ordinary(self) -> None:
        """
        If C{$} starts a later level, not the topic, then leading wildcards
        still match it.
        """
        self.assertMatches("#", ["a/$SYS"])
        self.assertMatches("+/+", ["a/$b"])

    @given(topic_names)
    def test_multi_level_wildcard_property(self, topic: str) -> None:
        """
        If a topic does not start with C{$}, then C{#} matches it; if it
        does, then C{#} does not [MQTT-4.7.2-1].
        """
        self.assertEqual(matches("#", topic), not topic.startswith("$"))

    @given(topic_names, st.data())
    def test_replacing_levels_with_wildcards_still_matches(
        self, topic: str, data: st.DataObject
    ) -> None:
        """
        If levels of a topic are replaced with C{+} and a tail with C{#}, then
        the filter still matches, unless its first level became a wildcard
        and the topic starts with C{$}.
        """
        levels = topic.split("/")
        plus = data.draw(
            st.lists(st.booleans(), min_size=len(levels), max_size=len(levels))
        )
        filter_levels = ["+" if p else level for p, level in zip(plus, levels, strict=True)]
        cut = data.draw(st.integers(0, len(levels)))
        if cut < len(levels):
            filter_levels = [*filter_levels[:cut], "#"]
        filter = "/".join(filter_levels)
        self.assertTrue(is_valid_topic_filter(filter), filter)
        leading_wildcard = filter_levels[0] in ("+", "#")
        self.assertEqual(
            matches(filter, topic), not (leading_wildcard and topic.startswith("$"))
        )
