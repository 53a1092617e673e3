# -*- test-case-name: tests.broker.test_shared -*-
"""
Shared subscriptions (MQTT 5.0 section 4.8.2): the members of one
C{$share/{group}/{filter}} subscription, and how a message picks the one
member that gets it.

Every strategy prefers a member that can take the message now: online, its
transport not paused and, for QoS 1/2, nothing queued and its in-flight
window not full. Failing that, an online member (the message waits in its
queue), failing that an offline one (a persistent session keeps it).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from random import Random
from typing import TYPE_CHECKING

from .state import SubscriptionEntry

if TYPE_CHECKING:
    from .session import Session

#: Publishers a C{sticky} group remembers before it starts over.
MAX_STICKY = 65536


class Member:
    """
    One session's membership of a shared subscription.

    @ivar subscription_ids: the subscription identifier to attach to each
        delivery, as a tuple made once.
    """

    __slots__ = ("client_id", "entry", "subscription_ids")

    def __init__(self, client_id: str, entry: SubscriptionEntry) -> None:
        self.client_id = client_id
        self.entry = entry
        self.subscription_ids: tuple[int, ...] = (
            () if entry.subscription_id is None else (entry.subscription_id,)
        )


class SharedGroup:
    """
    One shared subscription: its filter and its members, in the order they
    joined, with the state its strategies keep between messages.

    @ivar share_filter: the full filter, C{$share/{group}/{filter}}: what
        identifies the shared subscription, and what a L{Delivery} records.
    @ivar topic_filter: the filter messages are matched against.
    @ivar cursor: where the next round-robin scan starts.
    @ivar sticky: for the C{sticky} strategy, publisher client id -> the
        client id of the member its messages go to.
    """

    __slots__ = ("share_filter", "name", "topic_filter", "members", "by_client", "cursor", "sticky")

    def __init__(self, share_filter: str, name: str, topic_filter: str) -> None:
        self.share_filter = share_filter
        self.name = name
        self.topic_filter = topic_filter
        self.members: list[Member] = []
        self.by_client: dict[str, Member] = {}
        self.cursor = 0
        self.sticky: dict[str, str] = {}

    def add(self, client_id: str, entry: SubscriptionEntry) -> bool:
        """
        Add a member, or replace its subscription options in place.

        @return: whether C{client_id} was a member already.
        """
        member = Member(client_id, entry)
        old = self.by_client.get(client_id)
        self.by_client[client_id] = member
        if old is None:
            self.members.append(member)
            return False
        self.members[self.members.index(old)] = member
        return True

    def remove(self, client_id: str) -> bool:
        """
        Remove a member; publishers stuck to it pick again.

        @return: whether C{client_id} was a member.
        """
        member = self.by_client.pop(client_id, None)
        if member is None:
            return False
        index = self.members.index(member)
        del self.members[index]
        if index < self.cursor:
            self.cursor -= 1
        if self.sticky:
            for publisher in [p for p, c in self.sticky.items() if c == client_id]:
                del self.sticky[publisher]
        return True

    def _scan(self, sessions: Mapping[str, Session], qos: int, start: int, exclude: str | None) -> int:
        """
        The index of the first member from C{start} on (wrapping) that can
        take a message of C{qos} now; else the first online one; else the
        first other one; -1 if there is none but C{exclude}.
        """
        members = self.members
        count = len(members)
        online = offline = -1
        index = start
        for _ in range(count):
            if index >= count:
                index = 0
            member = members[index]
            client_id = member.client_id
            if client_id != exclude:
                session = sessions[client_id]
                link = session.link
                if link is None:
                    if offline < 0:
                        offline = index
                elif not link.paused and (
                    qos == 0
                    or member.entry.qos == 0
                    or (not session.queue and len(session.inflight) < session.send_quota)
                ):
                    return index
                elif online < 0:
                    online = index
            index += 1
        return online if online >= 0 else offline

    def pick_round_robin(
        self, sessions: Mapping[str, Session], qos: int, origin: str, rand: Random, exclude: str | None = None
    ) -> Member | None:
        """
        The next member in turn that can take the message now (see
        L{_scan}); the turn moves past it.

        @param qos: the QoS the message was published with.
        @param origin: the publisher's client id (for L{pick_sticky}).
        @param exclude: a member not to pick (one whose messages move on).
        """
        index = self._scan(sessions, qos, self.cursor, exclude)
        if index < 0:
            return None
        self.cursor = index + 1
        return self.members[index]

    def pick_random(
        self, sessions: Mapping[str, Session], qos: int, origin: str, rand: Random, exclude: str | None = None
    ) -> Member | None:
        """A member at random, among those that can take the message now if any."""
        if not self.members:
            return None
        index = self._scan(sessions, qos, rand.randrange(len(self.members)), exclude)
        return None if index < 0 else self.members[index]

    def pick_sticky(
        self, sessions: Mapping[str, Session], qos: int, origin: str, rand: Random, exclude: str | None = None
    ) -> Member | None:
        """
        The member this publisher's messages went to before, while it is in
        the group and online (a slow member keeps them, in order); otherwise
        one picked as by L{pick_round_robin}, which the publisher then sticks to.
        """
        sticky = self.sticky
        client_id = sticky.get(origin)
        if client_id is not None and client_id != exclude:
            member = self.by_client.get(client_id)
            if member is not None and sessions[client_id].link is not None:
                return member
        member = self.pick_round_robin(sessions, qos, origin, rand, exclude)
        if member is not None:
            if len(sticky) >= MAX_STICKY:
                sticky.clear()
            sticky[origin] = member.client_id
        return member


#: How a strategy is called: (group, sessions, QoS, origin, random source, excluded member).
Pick = Callable[[SharedGroup, Mapping[str, "Session"], int, str, Random, "str | None"], "Member | None"]

#: The strategies of C{mqtt.shared_subscription_strategy}.
STRATEGIES: dict[str, Pick] = {
    "round_robin": SharedGroup.pick_round_robin,
    "random": SharedGroup.pick_random,
    "sticky": SharedGroup.pick_sticky,
}
