# -*- test-case-name: tests.mqtt.test_aliases -*-
"""
Tests for L{mqttx.mqtt.aliases}: the outbound topic alias table.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.mqtt.aliases import OutboundTopicAliases


def send(aliases: OutboundTopicAliases, topic: str) -> tuple[int, bool]:
    """Send C{topic} as the session does: C{(alias, topic name included)}."""
    alias = aliases.find(topic)
    if alias:
        return alias, False
    alias = aliases.candidate()
    aliases.bind(topic, alias)
    return alias, True


class OutboundTopicAliasesTests(SynchronousTestCase):
    """Tests for L{OutboundTopicAliases}."""

    def test_new_topics_take_the_lowest_unused_alias(self) -> None:
        """
        Topics get aliases 1, 2, 3 ... in the order they are first sent,
        never 0 [MQTT-3.3.2-8]; a topic sent again keeps its alias and needs
        no topic name.
        """
        aliases = OutboundTopicAliases(3)
        self.assertEqual(
            [send(aliases, t) for t in ("a", "b", "a", "c", "b")],
            [(1, True), (2, True), (1, False), (3, True), (2, False)],
        )
        self.assertEqual(len(aliases), 3)

    def test_least_recently_used_alias_is_replaced(self) -> None:
        """
        Once every alias up to the maximum is taken, a new topic gets the
        alias of the topic least recently sent, and that topic, sent again,
        needs its name and an alias once more.
        """
        aliases = OutboundTopicAliases(2)
        self.assertEqual(send(aliases, "a"), (1, True))
        self.assertEqual(send(aliases, "b"), (2, True))
        self.assertEqual(send(aliases, "a"), (1, False))
        # b is the least recently used: c replaces it.
        self.assertEqual(send(aliases, "c"), (2, True))
        self.assertEqual(aliases.find("b"), 0)
        # Now a is: b comes back on alias 1.
        self.assertEqual(send(aliases, "b"), (1, True))
        self.assertEqual(aliases.find("a"), 0)
        self.assertEqual(len(aliases), 2)

    def test_candidate_without_bind_changes_nothing(self) -> None:
        """
        Asking for the candidate alias of a topic that is then not sent
        leaves the table as it was: the next topic gets the same candidate,
        and the topic it would have replaced keeps its alias.
        """
        aliases = OutboundTopicAliases(1)
        send(aliases, "a")
        self.assertEqual(aliases.candidate(), 1)
        self.assertEqual(aliases.find("a"), 1)
        self.assertEqual(send(aliases, "b"), (1, True))
        self.assertEqual(aliases.find("a"), 0)

    def test_maximum_must_be_positive(self) -> None:
        """
        A table with no alias to give makes no sense: clients with a Topic
        Alias Maximum of 0 get none [MQTT-3.1.2-27].
        """
        self.assertRaises(ValueError, OutboundTopicAliases, 0)

    @given(st.integers(1, 5), st.lists(st.sampled_from("abcdefgh"), max_size=60))
    def test_a_receiver_always_resolves_the_right_topic(self, maximum: int, topics: list[str]) -> None:
        """
        A receiver that applies each PUBLISH as MQTT 5 section 3.3.2.3.4
        says (topic + alias sets the mapping, an empty topic uses it) always
        resolves the topic that was sent, and never sees an alias above the
        maximum [MQTT-3.3.2-11] or 0 [MQTT-3.3.2-8].
        """
        aliases = OutboundTopicAliases(maximum)
        receiver: dict[int, str] = {}
        for topic in topics:
            alias, with_name = send(aliases, topic)
            self.assertTrue(1 <= alias <= maximum)
            if with_name:
                receiver[alias] = topic
            self.assertEqual(receiver[alias], topic)
