# -*- test-case-name: tests.broker.test_router -*-
"""
Tests for L{mqttx.broker.router}.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.router import Route, Router
from mqttx.broker.state import SubscriptionEntry
from mqttx.mqtt.topics import matches


def routes(router: Router, topic: str) -> dict[str, Route]:
    return {r.client_id: r for r in router.match(topic)}


class RouterTests(SynchronousTestCase):
    """Tests for L{Router}."""

    def test_exact_and_wildcards(self) -> None:
        """
        [MQTT-4.7.1-2] [MQTT-4.7.1-3] Exact filters, C{+} for one level and
        C{#} for any number, including the parent level.
        """
        router = Router()
        for client, topic_filter in [
            ("exact", "sport/tennis"),
            ("plus", "sport/+"),
            ("hash", "sport/#"),
            ("other", "news/#"),
            ("deep", "+/+/+"),
        ]:
            router.subscribe(client, SubscriptionEntry(topic_filter, 0))
        self.assertEqual(set(routes(router, "sport/tennis")), {"exact", "plus", "hash"})
        self.assertEqual(set(routes(router, "sport")), {"hash"})
        self.assertEqual(set(routes(router, "sport/tennis/x")), {"hash", "deep"})
        self.assertEqual(routes(router, "weather"), {})

    def test_dollar_topics_not_matched_by_leading_wildcards(self) -> None:
        """[MQTT-4.7.2-1] C{#} and C{+/...} do not match topics starting with C{$}."""
        router = Router()
        router.subscribe("all", SubscriptionEntry("#", 0))
        router.subscribe("plus", SubscriptionEntry("+/monitor/Clients", 0))
        router.subscribe("sys", SubscriptionEntry("$SYS/#", 0))
        self.assertEqual(set(routes(router, "$SYS/monitor/Clients")), {"sys"})
        self.assertEqual(set(routes(router, "a/monitor/Clients")), {"all", "plus"})

    def test_overlapping_subscriptions_merge(self) -> None:
        """
        [MQTT-3.3.4-2] Overlapping subscriptions of one session give one
        route at the highest QoS, with every subscription identifier.
        """
        router = Router()
        router.subscribe("c", SubscriptionEntry("a/+", 0, subscription_id=1))
        router.subscribe("c", SubscriptionEntry("a/#", 2, subscription_id=2))
        router.subscribe("c", SubscriptionEntry("a/b", 1, no_local=True))
        [route] = router.match("a/b")
        self.assertEqual((route.qos, route.subscription_ids, route.no_local), (2, (1, 2), False))

    def test_resubscribe_replaces(self) -> None:
        """[MQTT-3.8.4-3] A new subscription to the same filter replaces the old one."""
        router = Router()
        self.assertFalse(router.subscribe("c", SubscriptionEntry("t", 0)))
        self.assertEqual(router.match("t")[0].qos, 0)
        self.assertTrue(router.subscribe("c", SubscriptionEntry("t", 2)))
        self.assertEqual(router.match("t")[0].qos, 2)
        self.assertEqual(router.subscription_count, 1)

    def test_unsubscribe_invalidates_cache_and_prunes(self) -> None:
        """Unsubscribing takes effect at once and leaves no empty nodes behind."""
        router = Router()
        router.subscribe("c", SubscriptionEntry("a/b/c", 0))
        self.assertEqual(len(router.match("a/b/c")), 1)
        self.assertTrue(router.unsubscribe("c", "a/b/c"))
        self.assertEqual(router.match("a/b/c"), ())
        self.assertFalse(router.unsubscribe("c", "a/b/c"))
        self.assertEqual(router._root.children, {})
        self.assertEqual(router.subscription_count, 0)

    def test_cache_is_bounded(self) -> None:
        """The match cache starts over when full instead of growing without bound."""
        router = Router(cache_size=4)
        router.subscribe("c", SubscriptionEntry("#", 0))
        for i in range(10):
            router.match(f"t/{i}")
        self.assertLessEqual(len(router._cache), 4)

    @settings(max_examples=200, deadline=None)
    @given(
        st.lists(
            st.tuples(
                st.sampled_from("abc"),
                st.lists(st.sampled_from(["a", "b", "", "$s", "+"]), min_size=1, max_size=3).map("/".join),
                st.booleans(),
            ),
            max_size=12,
        ),
        st.lists(st.sampled_from(["a", "b", "", "$s"]), min_size=1, max_size=4).map("/".join),
    )
    def test_match_agrees_with_reference(self, subs: list[tuple[str, str, bool]], topic: str) -> None:
        """The trie routes exactly the sessions the reference matcher says match."""
        router = Router()
        expected: set[str] = set()
        for client, topic_filter, hashed in subs:
            if hashed:
                topic_filter += "/#"
            router.subscribe(client, SubscriptionEntry(topic_filter, 0))
            if matches(topic_filter, topic):
                expected.add(client)
        self.assertEqual(set(routes(router, topic)), expected)
