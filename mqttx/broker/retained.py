# -*- test-case-name: tests.broker.test_retained -*-
"""
The in-memory index of retained messages.

Retained messages live in a trie keyed by topic level, so a new subscription
finds its retained messages by walking only the branches its filter can
match, not by testing every retained topic.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Generic, TypeVar

__all__ = ["RetainedIndex"]

T = TypeVar("T")


class _Node(Generic[T]):
    """
    One topic level in the trie.

    @ivar children: the next levels, by name (empty levels are C{""}).
    @ivar entry: C{(topic, value)} if a message is retained at exactly this
        topic, else C{None}; kept as one tuple so that L{RetainedIndex.match}
        returns it without allocating.
    """

    __slots__ = ("children", "entry")

    def __init__(self) -> None:
        self.children: dict[str, _Node[T]] = {}
        self.entry: tuple[str, T] | None = None


class RetainedIndex(Generic[T]):
    """
    The retained message of every topic that has one, by topic name.

    The index stores whatever value the broker gives it and knows nothing of
    payloads: clearing a retained message with an empty payload
    [MQTT-3.3.1-10] is the broker's call to L{discard}.
    """

    def __init__(self) -> None:
        self._root: _Node[T] = _Node()
        # topic -> the node holding its entry, for O(1) get and replace.
        self._nodes: dict[str, _Node[T]] = {}

    def __len__(self) -> int:
        """
        @return: the number of topics with a retained value.
        """
        return len(self._nodes)

    def __iter__(self) -> Iterator[tuple[str, T]]:
        """
        @return: an iterator over the C{(topic, value)} pairs, in no
            particular order.
        """
        for node in self._nodes.values():
            if node.entry is not None:
                yield node.entry

    def set(self, topic: str, value: T) -> None:
        """
        Retain C{value} for C{topic}, replacing any value retained there.

        @param topic: a valid topic name.
        @param value: what to retain.
        """
        node = self._nodes.get(topic)
        if node is None:
            node = self._root
            for level in topic.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _Node()
                node = child
            self._nodes[topic] = node
        node.entry = (topic, value)

    def discard(self, topic: str) -> bool:
        """
        Forget the value retained for C{topic}, and the trie nodes that no
        other retained topic needs any more.

        @param topic: a topic name.
        @return: C{True} if a value was retained for C{topic}.
        """
        node = self._nodes.pop(topic, None)
        if node is None:
            return False
        node.entry = None
        path: list[tuple[_Node[T], str]] = []
        parent = self._root
        for level in topic.split("/"):
            path.append((parent, level))
            parent = parent.children[level]
        for parent, level in reversed(path):
            child = parent.children[level]
            if child.children or child.entry is not None:
                break
            del parent.children[level]
        return True

    def get(self, topic: str) -> T | None:
        """
        @param topic: a topic name.
        @return: the value retained for C{topic}, or C{None} if there is none.
        """
        node = self._nodes.get(topic)
        if node is None or node.entry is None:
            return None
        return node.entry[1]

    def match(self, filter: str) -> list[tuple[str, T]]:
        """
        Find the retained messages a new subscription receives.

        The walk visits only the branches C{filter} can match: a literal level
        follows one child, C{+} every child, and C{#} the whole subtree,
        including the level above it (C{a/#} matches C{a}) [MQTT-4.7.1-2]. A
        wildcard in the first level skips topics that start with C{$}
        [MQTT-4.7.2-1].

        @param filter: a valid topic filter, without any C{$share/group/}
            prefix.
        @return: the C{(topic, value)} pairs of every matching topic, in no
            particular order.
        """
        levels = filter.split("/")
        depth = len(levels)
        found: list[tuple[str, T]] = []
        stack: list[tuple[_Node[T], int]] = [(self._root, 0)]
        while stack:
            node, index = stack.pop()
            if index == depth:
                if node.entry is not None:
                    found.append(node.entry)
                continue
            level = levels[index]
            if level == "#":
                # The root (index 0) never holds an entry: "" is no topic name.
                if node.entry is not None:
                    found.append(node.entry)
                self._collect(node, index == 0, found)
            elif level == "+":
                for name, child in node.children.items():
                    if index == 0 and name[:1] == "$":
                        continue
                    stack.append((child, index + 1))
            else:
                next_node = node.children.get(level)
                if next_node is not None:
                    stack.append((next_node, index + 1))
        return found

    @staticmethod
    def _collect(node: _Node[T], skip_dollar: bool, found: list[tuple[str, T]]) -> None:
        """
        Add every entry strictly below C{node} to C{found}.

        @param node: the root of the subtree.
        @param skip_dollar: whether to leave out children whose level starts
            with C{$} (for C{#} at the top level, [MQTT-4.7.2-1]).
        @param found: the list to extend.
        """
        pending = [
            child
            for name, child in node.children.items()
            if not (skip_dollar and name[:1] == "$")
        ]
        while pending:
            current = pending.pop()
            if current.entry is not None:
                found.append(current.entry)
            pending.extend(current.children.values())
