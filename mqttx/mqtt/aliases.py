# -*- test-case-name: tests.mqtt.test_aliases -*-
"""
Outbound topic aliases (MQTT 5 section 3.3.2.3.4): the topic aliases a
server assigns to the topics it sends one client.

The table belongs to one network connection and dies with it: a receiver
never carries alias mappings from one connection to the next
[MQTT-3.3.2-7], so a sender must not either.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["OutboundTopicAliases"]


class OutboundTopicAliases:
    """
    The topic aliases in force towards one client, at most C{maximum} of
    them; once all are taken, the least recently used one is given to the
    next new topic.

    A send looks the topic up with L{find}; a topic without an alias takes
    L{candidate}, and only once the PUBLISH carrying the topic name and that
    alias is actually written does L{bind} record the mapping, so that a
    PUBLISH that was not sent (too large for the client, say) never leaves
    the server believing in a mapping the client does not have.

    @ivar maximum: the highest alias used: the Topic Alias Maximum the client
        announced, possibly capped by the server [MQTT-3.3.2-11].
    """

    __slots__ = ("_aliases", "_next", "maximum")

    def __init__(self, maximum: int) -> None:
        if maximum < 1:
            raise ValueError("a topic alias table needs a maximum of at least 1")
        self.maximum = maximum
        # topic -> alias, least recently used first.
        self._aliases: OrderedDict[str, int] = OrderedDict()
        self._next = 1

    def __len__(self) -> int:
        return len(self._aliases)

    def find(self, topic: str) -> int:
        """
        The alias the client knows C{topic} by, marking it as just used.

        @return: the alias, or 0 if C{topic} has none.
        """
        aliases = self._aliases
        alias = aliases.get(topic, 0)
        if alias:
            aliases.move_to_end(topic)
        return alias

    def candidate(self) -> int:
        """
        The alias a new topic would take: the lowest never used yet, or,
        once all are taken, the least recently used one.
        """
        if self._next <= self.maximum:
            return self._next
        return next(iter(self._aliases.values()))

    def bind(self, topic: str, alias: int) -> None:
        """
        Record that the client now knows C{topic} by C{alias}, which must be
        the L{candidate} for a topic L{find} did not know; the topic that
        had C{alias} before loses it.
        """
        aliases = self._aliases
        if alias == self._next:
            self._next += 1
        else:
            _, evicted = aliases.popitem(last=False)
            assert evicted == alias, "bind() takes the candidate alias"
        aliases[topic] = alias
