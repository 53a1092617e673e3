# -*- test-case-name: tests.broker.test_retained -*-
"""
Tests for L{mqttx.broker.retained}.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.retained import RetainedIndex
from mqttx.mqtt.topics import is_valid_topic_filter, matches

# Small alphabets so that filters match often; "$s" tests [MQTT-4.7.2-1] at the
# first level and is an ordinary level elsewhere, "" makes empty levels.
topic_levels = st.sampled_from(["a", "b", "", "$s"])
topic_names = st.lists(topic_levels, min_size=1, max_size=4).map("/".join).filter(bool)
filter_levels = st.sampled_from(["a", "b", "", "$s", "+"])


@st.composite
def topic_filters(draw: st.DrawFn) -> str:
    levels = draw(st.lists(filter_levels, min_size=0, max_size=4))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    filter = "/".join(levels)
    if not filter:
        filter = "#"
    return filter


def brute_force(topics: set[str], filter: str) -> list[str]:
    return sorted(t for t in topics if matches(filter, t))


def node_count(index: RetainedIndex[bytes]) -> int:
    """
    Count the trie's nodes below the root, to check that nothing leaks.
    """
    pending = list(index._root.children.values())
    count = 0
    while pending:
        node = pending.pop()
        count += 1
        pending.extend(node.children.values())
    return count


class RetainedIndexTests(SynchronousTestCase):
    """
    Tests for L{RetainedIndex} as a mapping of topic to value.
    """

    def setUp(self) -> None:
        self.index: RetainedIndex[bytes] = RetainedIndex()

    def test_set_then_get(self) -> None:
        """
        If a value is set for a topic, then C{get} returns it and other
        topics, including its parent and children, have none.
        """
        self.index.set("a/b", b"1")
        self.assertEqual(self.index.get("a/b"), b"1")
        self.assertIsNone(self.index.get("a"))
        self.assertIsNone(self.index.get("a/b/c"))
        self.assertIsNone(self.index.get("x"))

    def test_set_replaces(self) -> None:
        """
        If a topic already has a value, then C{set} replaces it: a topic
        retains at most one message [MQTT-3.3.1-5].
        """
        self.index.set("a", b"1")
        self.index.set("a", b"2")
        self.assertEqual(self.index.get("a"), b"2")
        self.assertEqual(len(self.index), 1)
        self.assertEqual(self.index.match("a"), [("a", b"2")])

    def test_len_and_iter(self) -> None:
        """
        If several topics have values, then C{len} counts them and iterating
        gives each C{(topic, value)} pair once.
        """
        self.assertEqual(len(self.index), 0)
        self.assertEqual(list(self.index), [])
        self.index.set("a", b"1")
        self.index.set("a/b", b"2")
        self.index.set("/", b"3")
        self.assertEqual(len(self.index), 3)
        self.assertEqual(sorted(self.index), [("/", b"3"), ("a", b"1"), ("a/b", b"2")])

    def test_discard(self) -> None:
        """
        If a topic's value is discarded, then C{discard} returns C{True}, the
        topic has no value and others keep theirs.
        """
        self.index.set("a", b"1")
        self.index.set("a/b", b"2")
        self.assertTrue(self.index.discard("a"))
        self.assertIsNone(self.index.get("a"))
        self.assertEqual(self.index.get("a/b"), b"2")
        self.assertEqual(len(self.index), 1)
        self.assertEqual(self.index.match("#"), [("a/b", b"2")])

    def test_discard_missing_topic(self) -> None:
        """
        If a topic has no value, whether or not it lies on the path of one
        that has, then C{discard} returns C{False} and changes nothing.
        """
        self.index.set("a/b", b"1")
        self.assertFalse(self.index.discard("a"))
        self.assertFalse(self.index.discard("a/b/c"))
        self.assertFalse(self.index.discard("x"))
        self.assertEqual(list(self.index), [("a/b", b"1")])

    def test_discard_prunes_empty_nodes(self) -> None:
        """
        If topics are discarded, then the trie nodes only they needed go
        too, while the nodes on the path to remaining topics stay.
        """
        self.index.set("a/b/c/d", b"1")
        self.index.set("a/b", b"2")
        self.index.set("a/x/y", b"3")
        self.assertEqual(node_count(self.index), 6)
        self.index.discard("a/b/c/d")
        self.assertEqual(node_count(self.index), 4)  # a, a/b, a/x, a/x/y
        self.index.discard("a/b")
        self.assertEqual(node_count(self.index), 3)
        self.index.discard("a/x/y")
        self.assertEqual(node_count(self.index), 0)

    def test_no_leak_when_topics_come_and_go(self) -> None:
        """
        If many topics are set and all discarded again, then the trie is
        left empty.
        """
        topics = [f"dev/{i % 7}/{i}/{'' if i % 2 else 'x'}" for i in range(500)]
        for topic in topics:
            self.index.set(topic, b"v")
        for topic in topics:
            self.assertTrue(self.index.discard(topic))
        self.assertEqual(len(self.index), 0)
        self.assertEqual(self.index._root.children, {})

    def test_generic_value(self) -> None:
        """
        If the values are arbitrary objects, then C{match} returns the very
        objects that were set.
        """
        index: RetainedIndex[object] = RetainedIndex()
        message = object()
        index.set("a", message)
        [(topic, value)] = index.match("+")
        self.assertEqual(topic, "a")
        self.assertIs(value, message)


class RetainedMatchTests(SynchronousTestCase):
    """
    Tests for L{RetainedIndex.match}: the retained messages a new
    subscription receives.
    """

    topics = (
        "sport",
        "sport/",
        "sport/tennis",
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
        "sport/tennis/player2",
        "/finance",
        "/",
        "finance",
        "a//b",
        "$SYS",
        "$SYS/broker/uptime",
        "$SYS/monitor/Clients",
        "x/$SYS",
    )

    def setUp(self) -> None:
        self.index: RetainedIndex[str] = RetainedIndex()
        for topic in self.topics:
            self.index.set(topic, topic.upper())

    def assertMatch(self, filter: str, expected: list[str]) -> None:
        found = self.index.match(filter)
        self.assertEqual(
            sorted(found), sorted((t, t.upper()) for t in expected), filter
        )
        self.assertEqual(
            sorted(t for t, _ in found), brute_force(set(self.topics), filter), filter
        )

    def test_literal_filter(self) -> None:
        """
        If a filter has no wildcards, then only the identical topic matches.
        """
        self.assertMatch("sport/tennis", ["sport/tennis"])
        self.assertMatch("finance", ["finance"])
        self.assertMatch("/finance", ["/finance"])
        self.assertMatch("sport/golf", [])

    def test_multi_level_wildcard_includes_parent(self) -> None:
        """
        If a filter ends in C{#}, then the parent level and all levels below
        it match [MQTT-4.7.1-2]: C{sport/tennis/player1/#} and C{sport/#}.
        """
        self.assertMatch(
            "sport/tennis/player1/#",
            [
                "sport/tennis/player1",
                "sport/tennis/player1/ranking",
                "sport/tennis/player1/score/wimbledon",
            ],
        )
        self.assertMatch(
            "sport/#",
            [t for t in self.topics if t == "sport" or t.startswith("sport/")],
        )

    def test_lone_multi_level_wildcard(self) -> None:
        """
        If the filter is C{#}, then every topic matches except those starting
        with C{$} [MQTT-4.7.2-1].
        """
        self.assertMatch("#", [t for t in self.topics if not t.startswith("$")])

    def test_single_level_wildcard(self) -> None:
        """
        If a filter level is C{+}, then it matches exactly one level,
        including an empty one [MQTT-4.7.1-3]: C{sport/+} matches C{sport/}
        but not C{sport}; C{/finance} matches C{+/+} and C{/+} but not C{+}.
        """
        self.assertMatch("sport/+", ["sport/", "sport/tennis"])
        self.assertMatch(
            "sport/tennis/+", ["sport/tennis/player1", "sport/tennis/player2"]
        )
        self.assertMatch("+/+", ["sport/", "sport/tennis", "/finance", "/", "x/$SYS"])
        self.assertMatch("/+", ["/finance", "/"])
        self.assertMatch("+", ["sport", "finance"])
        self.assertMatch("a/+/b", ["a//b"])

    def test_dollar_topics(self) -> None:
        """
        If a filter starts with a wildcard, then C{$} topics do not match
        [MQTT-4.7.2-1]; if it spells out C{$SYS}, then they do.
        """
        self.assertMatch("+/monitor/Clients", [])
        self.assertMatch(
            "$SYS/#", ["$SYS", "$SYS/broker/uptime", "$SYS/monitor/Clients"]
        )
        self.assertMatch("$SYS/monitor/+", ["$SYS/monitor/Clients"])
        self.assertMatch("+/#", [t for t in self.topics if not t.startswith("$")])
        self.assertMatch("x/+", ["x/$SYS"])

    def test_large_index_narrow_filter(self) -> None:
        """
        If 100,000 topics are retained, then a narrow wildcard filter finds
        exactly its matches and C{#} finds all of them.
        """
        index: RetainedIndex[int] = RetainedIndex()
        for i in range(100_000):
            index.set(f"{i % 100}/{i // 100 % 10}/{i}", i)
        found = index.match("7/+/1007")
        self.assertEqual(found, [("7/0/1007", 1007)])
        self.assertEqual(len(index.match("42/3/#")), 100)
        self.assertEqual(len(index.match("#")), 100_000)


class RetainedPropertyTests(SynchronousTestCase):
    """
    L{RetainedIndex.match} agrees with the reference matcher.
    """

    @given(
        st.sets(topic_names, max_size=30),
        st.lists(topic_filters(), min_size=1, max_size=5),
    )
    def test_match_equals_brute_force(
        self, topics: set[str], filters: list[str]
    ) -> None:
        """
        If any set of topics is retained, then for any filter C{match} finds
        exactly the topics that L{matches} accepts.
        """
        index: RetainedIndex[str] = RetainedIndex()
        for topic in topics:
            index.set(topic, topic)
        for filter in filters:
            self.assertTrue(is_valid_topic_filter(filter), filter)
            found = index.match(filter)
            self.assertEqual(
                sorted(t for t, _ in found), brute_force(topics, filter), filter
            )
            self.assertTrue(all(t == v for t, v in found))

    @given(
        st.lists(st.tuples(st.booleans(), topic_names), max_size=40), topic_filters()
    )
    def test_match_after_sets_and_discards(
        self, operations: list[tuple[bool, str]], filter: str
    ) -> None:
        """
        If topics are set and discarded in any order, then C{match}, C{get}
        and C{len} reflect the surviving topics, and discarding everything
        leaves an empty trie.
        """
        index: RetainedIndex[str] = RetainedIndex()
        alive: set[str] = set()
        for add, topic in operations:
            if add:
                index.set(topic, topic)
                alive.add(topic)
            else:
                self.assertEqual(index.discard(topic), topic in alive)
                alive.discard(topic)
        self.assertEqual(len(index), len(alive))
        self.assertEqual(
            sorted(t for t, _ in index.match(filter)), brute_force(alive, filter)
        )
        for _, topic in operations:
            self.assertEqual(index.get(topic), topic if topic in alive else None)
        for topic in alive:
            index.discard(topic)
        self.assertEqual(index._root.children, {})
