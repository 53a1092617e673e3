# -*- test-case-name: tests.broker.test_router -*-
"""
The subscription trie: which sessions want a message published to a topic.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqttx.mqtt.topics import SHARE_PREFIX, parse_shared

from .shared import SharedGroup
from .state import SubscriptionEntry


@dataclass(frozen=True, slots=True)
class Route:
    """
    Where one published topic goes for one session: overlapping
    subscriptions of that session merged into one delivery
    ([MQTT-3.3.4-2]: at the highest granted QoS; MQTT 5 section 3.3.4: with
    every matching subscription identifier).

    @ivar no_local: true only if every matching subscription has No Local,
        so the publisher itself gets the message if any of them lacks it.
    @ivar retain_as_published: true if any matching subscription asks for it.
    """

    client_id: str
    qos: int
    subscription_ids: tuple[int, ...]
    no_local: bool
    retain_as_published: bool


class _Node:
    __slots__ = ("children", "entries")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.entries: dict[str, SubscriptionEntry] = {}


class _GroupNode:
    """A node of the trie of shared subscriptions, by their inner filters."""

    __slots__ = ("children", "groups")

    def __init__(self) -> None:
        self.children: dict[str, _GroupNode] = {}
        self.groups: dict[str, SharedGroup] = {}


class Router:
    """
    A trie of topic filters, one level per node, with C{+} and C{#} as
    ordinary child keys, and a cache of C{topic -> routes} that every
    (un)subscription clears.

    Shared subscriptions (C{$share/{group}/{filter}}) live apart, in a
    second trie of L{SharedGroup}s by their inner filters, with a cache of
    C{topic -> groups} that only the creation or end of a group clears:
    which groups match a topic, never which member gets a message. With
    no group at all (L{group_count} 0), routing never looks at them.

    @param cache_size: how many topics' routes to remember before the
        cache starts over.

    @ivar subscription_count: subscriptions, shared memberships included.
    @ivar group_count: shared subscriptions with at least one member.
    """

    def __init__(self, cache_size: int = 65536) -> None:
        self._root = _Node()
        self._cache: dict[str, tuple[Route, ...]] = {}
        self._cache_size = cache_size
        self.subscription_count = 0
        self._group_root = _GroupNode()
        self._groups: dict[str, SharedGroup] = {}
        self._group_cache: dict[str, tuple[SharedGroup, ...]] = {}
        self.group_count = 0

    def subscribe(self, client_id: str, entry: SubscriptionEntry) -> bool:
        """
        Add or replace C{client_id}'s subscription to C{entry.topic_filter}.

        @return: C{True} if the session already had a subscription to that
            filter, which C{entry} replaces ([MQTT-3.8.4-3]).
        @raise ValueError: for a C{$share/} filter whose share is invalid
            (see L{parse_shared}).
        """
        if entry.topic_filter.startswith(SHARE_PREFIX):
            return self._join(client_id, entry)
        node = self._root
        for level in entry.topic_filter.split("/"):
            child = node.children.get(level)
            if child is None:
                child = node.children[level] = _Node()
            node = child
        existed = client_id in node.entries
        node.entries[client_id] = entry
        if not existed:
            self.subscription_count += 1
        self._cache.clear()
        return existed

    def unsubscribe(self, client_id: str, topic_filter: str) -> bool:
        """
        Remove C{client_id}'s subscription to C{topic_filter}.

        @return: whether there was one.
        """
        if topic_filter.startswith(SHARE_PREFIX):
            return self._leave(client_id, topic_filter)
        path = [self._root]
        levels = topic_filter.split("/")
        for level in levels:
            child = path[-1].children.get(level)
            if child is None:
                return False
            path.append(child)
        if path[-1].entries.pop(client_id, None) is None:
            return False
        self.subscription_count -= 1
        # Prune nodes left with neither entries nor children.
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.entries or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        self._cache.clear()
        return True

    def match(self, topic: str) -> tuple[Route, ...]:
        """
        The routes of a message published to C{topic}: one per session with
        a matching subscription.
        """
        routes = self._cache.get(topic)
        if routes is None:
            routes = self._match(topic)
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            self._cache[topic] = routes
        return routes

    def _match(self, topic: str) -> tuple[Route, ...]:
        levels = topic.split("/")
        last = len(levels)
        found: list[SubscriptionEntry] = []
        owners: list[str] = []
        stack: list[tuple[_Node, int]] = [(self._root, 0)]
        # [MQTT-4.7.2-1] A filter starting with a wildcard does not match a
        # topic starting with "$".
        dollar = topic.startswith("$")
        while stack:
            node, depth = stack.pop()
            children = node.children
            wild = not (dollar and depth == 0)
            if wild:
                multi = children.get("#")
                if multi is not None:
                    # "sport/#" also matches "sport" [MQTT-4.7.1-2].
                    for owner, entry in multi.entries.items():
                        owners.append(owner)
                        found.append(entry)
            if depth == last:
                for owner, entry in node.entries.items():
                    owners.append(owner)
                    found.append(entry)
                continue
            exact = children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
            if wild:
                single = children.get("+")
                if single is not None:
                    stack.append((single, depth + 1))
        if not found:
            return ()
        return _merge(owners, found)

    def subscriptions(self) -> list[tuple[str, SubscriptionEntry]]:
        """Every (client id, subscription), for administration and tests."""
        out: list[tuple[str, SubscriptionEntry]] = []
        stack = [self._root]
        while stack:
            node = stack.pop()
            out.extend(node.entries.items())
            stack.extend(node.children.values())
        for group in self._groups.values():
            out.extend((m.client_id, m.entry) for m in group.members)
        return out

    # Shared subscriptions.

    def group(self, share_filter: str) -> SharedGroup | None:
        """The shared subscription C{$share/{group}/{filter}}, while it has members."""
        return self._groups.get(share_filter)

    def match_shared(self, topic: str) -> tuple[SharedGroup, ...]:
        """The shared subscriptions whose filters match C{topic}."""
        groups = self._group_cache.get(topic)
        if groups is None:
            groups = self._match_shared(topic)
            if len(self._group_cache) >= self._cache_size:
                self._group_cache.clear()
            self._group_cache[topic] = groups
        return groups

    def _join(self, client_id: str, entry: SubscriptionEntry) -> bool:
        share_filter = entry.topic_filter
        group = self._groups.get(share_filter)
        if group is None:
            shared = parse_shared(share_filter)
            assert shared is not None
            group = SharedGroup(share_filter, shared.group, shared.filter)
            node = self._group_root
            for level in shared.filter.split("/"):
                child = node.children.get(level)
                if child is None:
                    child = node.children[level] = _GroupNode()
                node = child
            node.groups[share_filter] = group
            self._groups[share_filter] = group
            self.group_count += 1
            self._group_cache.clear()
        existed = group.add(client_id, entry)
        if not existed:
            self.subscription_count += 1
        return existed

    def _leave(self, client_id: str, share_filter: str) -> bool:
        group = self._groups.get(share_filter)
        if group is None or not group.remove(client_id):
            return False
        self.subscription_count -= 1
        if group.members:
            return True
        # The last member left: the shared subscription ends (section 4.8.2).
        del self._groups[share_filter]
        self.group_count -= 1
        self._group_cache.clear()
        path = [self._group_root]
        levels = group.topic_filter.split("/")
        for level in levels:
            path.append(path[-1].children[level])
        del path[-1].groups[share_filter]
        for depth in range(len(levels), 0, -1):
            node = path[depth]
            if node.groups or node.children:
                break
            del path[depth - 1].children[levels[depth - 1]]
        return True

    def _match_shared(self, topic: str) -> tuple[SharedGroup, ...]:
        levels = topic.split("/")
        last = len(levels)
        found: list[SharedGroup] = []
        stack: list[tuple[_GroupNode, int]] = [(self._group_root, 0)]
        # [MQTT-4.7.2-1] also holds for the filter inside a share.
        dollar = topic.startswith("$")
        while stack:
            node, depth = stack.pop()
            children = node.children
            wild = not (dollar and depth == 0)
            if wild:
                multi = children.get("#")
                if multi is not None:
                    found.extend(multi.groups.values())
            if depth == last:
                found.extend(node.groups.values())
                continue
            exact = children.get(levels[depth])
            if exact is not None:
                stack.append((exact, depth + 1))
            if wild:
                single = children.get("+")
                if single is not None:
                    stack.append((single, depth + 1))
        return tuple(found)


def _merge(owners: list[str], entries: list[SubscriptionEntry]) -> tuple[Route, ...]:
    by_client: dict[str, list[SubscriptionEntry]] = {}
    for owner, entry in zip(owners, entries, strict=True):
        by_client.setdefault(owner, []).append(entry)
    routes = []
    for client_id, subs in by_client.items():
        if len(subs) == 1:
            s = subs[0]
            ids: tuple[int, ...] = () if s.subscription_id is None else (s.subscription_id,)
            routes.append(Route(client_id, s.qos, ids, s.no_local, s.retain_as_published))
        else:
            routes.append(
                Route(
                    client_id,
                    max(s.qos for s in subs),
                    tuple(sorted({s.subscription_id for s in subs if s.subscription_id is not None})),
                    all(s.no_local for s in subs),
                    any(s.retain_as_published for s in subs),
                )
            )
    return tuple(routes)
