# -*- test-case-name: tests.transports.coap.test_messages -*-
"""
The sans-IO CoAP message layer (RFC 7252 section 4) of one local endpoint.

L{MessageLayer} sits between the datagrams and the request/response logic.
Received datagrams go in through L{MessageLayer.receive}, which returns
events; answers and new messages go out through L{MessageLayer.respond},
L{MessageLayer.acknowledge}, L{MessageLayer.reject} and L{MessageLayer.send},
which return the datagram to write. The layer keeps, per remote address:

  - the message IDs it received, for EXCHANGE_LIFETIME (CON) or
    NON_LIFETIME (NON), so a duplicate is not processed twice and a
    duplicate CON gets the same ACK (piggybacked response or empty ACK) or
    RST as the first copy (section 4.5). Memory is capped per remote and
    overall; the oldest records go first;
  - its outstanding CONs, retransmitted with exponential back-off
    (section 4.2) until an ACK or RST matches them or MAX_RETRANSMIT
    retransmissions went unanswered;
  - the NONs it sent recently, so an RST to a notification is matched;
  - a message ID counter (random start, section 4.4).

It has no clock: every call takes C{now}; L{MessageLayer.next_deadline}
says when the caller must call L{MessageLayer.tick}, which returns the
retransmissions and give-ups that are due.
"""

from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from .codec import CoAPFormatError, Code, Message, MessageType, Option, decode, encode

__all__ = [
    "ACK_RANDOM_FACTOR",
    "ACK_TIMEOUT",
    "EXCHANGE_LIFETIME",
    "MAX_RETRANSMIT",
    "NON_LIFETIME",
    "Acknowledged",
    "Duplicate",
    "Event",
    "Ignored",
    "Malformed",
    "MessageLayer",
    "Received",
    "Remote",
    "Reset",
    "TimedOut",
    "Transmit",
]

#: Transmission parameters (section 4.8) and derived times (4.8.2), seconds.
ACK_TIMEOUT = 2.0
ACK_RANDOM_FACTOR = 1.5
MAX_RETRANSMIT = 4
EXCHANGE_LIFETIME = 247.0
NON_LIFETIME = 145.0

#: A remote endpoint: whatever the transport uses as an address, e.g. the
#: C{(host, port)} tuple Twisted passes to C{datagramReceived}.
Remote = Hashable

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST


# --- events -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """
    A new CON or NON message (a request, or a response to one of ours) for
    the caller to handle. A CON request must be answered with
    L{MessageLayer.respond} (piggybacked), or L{MessageLayer.acknowledge}
    now and L{MessageLayer.respond} later (separate response).
    """

    remote: Remote
    message: Message


@dataclass(frozen=True, slots=True)
class Duplicate:
    """
    A copy of a message already received; not to be processed again. If a
    CON had been answered, the same answer is in a L{Transmit} event
    returned with this one.
    """

    remote: Remote
    message: Message


@dataclass(frozen=True, slots=True)
class Transmit:
    """A datagram to write to C{remote}: an answer or a retransmission."""

    remote: Remote
    datagram: bytes


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """
    An outgoing CON was acknowledged. C{ack} is the ACK: empty, or carrying
    a piggybacked response.
    """

    remote: Remote
    message: Message
    ack: Message
    context: object = None


@dataclass(frozen=True, slots=True)
class Reset:
    """
    The remote rejected an outgoing CON or a recent NON (e.g. a
    notification: RFC 7641 says to drop the observation).
    """

    remote: Remote
    message: Message
    context: object = None


@dataclass(frozen=True, slots=True)
class TimedOut:
    """An outgoing CON went unacknowledged after MAX_RETRANSMIT retransmissions."""

    remote: Remote
    message: Message
    context: object = None


@dataclass(frozen=True, slots=True)
class Malformed:
    """
    A datagram that is not a CoAP message. If C{error.action} is RESET the
    RST is in a L{Transmit} event returned with this one; log and go on.
    """

    remote: Remote
    error: CoAPFormatError


@dataclass(frozen=True, slots=True)
class Ignored:
    """
    A well-formed message that the layer dropped: an ACK or RST matching
    nothing outstanding, an empty NON, a non-empty RST, an ACK carrying a
    request. For logs at debug level.
    """

    remote: Remote
    message: Message
    reason: str


Event = Received | Duplicate | Transmit | Acknowledged | Reset | TimedOut | Malformed | Ignored


# --- state -------------------------------------------------------------------------


@dataclass(slots=True)
class _Seen:
    """One received message ID: until when, and the answer it got."""

    expires: float
    answer: bytes | None = None
    #: An empty ACK was sent: the response, when it comes, is separate.
    acked: bool = False


@dataclass(slots=True)
class _Pending:
    """An outgoing CON waiting for its ACK or RST."""

    remote: Remote
    message: Message
    datagram: bytes
    timeout: float
    retransmits: int
    deadline: float
    context: object = None


class MessageLayer:
    """
    The message layer of one CoAP endpoint; see the module docstring.

    @param rng: the random source for initial retransmission timeouts,
        message ID starts and tokens; tests pass a seeded or stub one.
    @param max_per_remote: received message IDs remembered per remote.
    @param max_total: received message IDs remembered overall, also the
        cap on remembered sent NONs and on remotes with a message ID counter.
    """

    def __init__(
        self,
        rng: random.Random | None = None,
        *,
        max_per_remote: int = 512,
        max_total: int = 65536,
        ack_timeout: float = ACK_TIMEOUT,
        ack_random_factor: float = ACK_RANDOM_FACTOR,
        max_retransmit: int = MAX_RETRANSMIT,
    ) -> None:
        self._rng = rng if rng is not None else random.SystemRandom()
        self._max_per_remote = max_per_remote
        self._max_total = max_total
        self._ack_timeout = ack_timeout
        self._ack_random_factor = ack_random_factor
        self._max_retransmit = max_retransmit
        self._seen: dict[Remote, OrderedDict[int, _Seen]] = {}
        self._seen_order: OrderedDict[tuple[Remote, int], None] = OrderedDict()
        self._pending: dict[tuple[Remote, int], _Pending] = {}
        self._timers: list[tuple[float, int, tuple[Remote, int]]] = []
        self._timer_seq = 0
        self._non_sent: OrderedDict[tuple[Remote, int], tuple[float, Message, object]] = (
            OrderedDict()
        )
        self._next_mid: OrderedDict[Remote, int] = OrderedDict()

    # --- receiving -------------------------------------------------------------------

    def receive(self, remote: Remote, datagram: bytes, now: float) -> list[Event]:
        """
        Handle one received datagram.

        @return: the events, in the order to act on them.
        """
        try:
            message = decode(datagram)
        except CoAPFormatError as e:
            events: list[Event] = [Malformed(remote, e)]
            rst = e.reset()
            if rst is not None:
                events.append(Transmit(remote, encode(rst)))
            return events
        return self.receive_message(remote, message, now)

    def receive_message(self, remote: Remote, message: Message, now: float) -> list[Event]:
        """L{receive} for a message the caller decoded itself."""
        if message.type == ACK or message.type == RST:
            return self._receive_answer(remote, message)
        if message.is_empty:
            if message.type == CON:
                # A "CoAP ping" (section 4.3): answered with RST, nothing to remember.
                return [Transmit(remote, encode(Message(RST, Code.EMPTY, message.message_id)))]
            return [Ignored(remote, message, "empty NON")]
        seen = self._lookup(remote, message.message_id, now)
        if seen is not None:
            events: list[Event] = [Duplicate(remote, message)]
            if message.type == CON and seen.answer is not None:
                events.append(Transmit(remote, seen.answer))
            return events
        lifetime = EXCHANGE_LIFETIME if message.type == CON else NON_LIFETIME
        self._remember(remote, message.message_id, _Seen(now + lifetime))
        return [Received(remote, message)]

    def _receive_answer(self, remote: Remote, message: Message) -> list[Event]:
        key = (remote, message.message_id)
        if message.type == RST:
            if not message.is_empty:
                return [Ignored(remote, message, "RST that is not empty")]
            pending = self._pending.pop(key, None)
            if pending is not None:
                return [Reset(remote, pending.message, pending.context)]
            sent = self._non_sent.pop(key, None)
            if sent is not None:
                return [Reset(remote, sent[1], sent[2])]
            return [Ignored(remote, message, "RST matching no message")]
        if message.is_request:
            return [Ignored(remote, message, "ACK carrying a request")]
        pending = self._pending.pop(key, None)
        if pending is None:
            return [Ignored(remote, message, "ACK matching no CON")]
        return [Acknowledged(remote, pending.message, message, pending.context)]

    def _lookup(self, remote: Remote, message_id: int, now: float) -> _Seen | None:
        per_remote = self._seen.get(remote)
        if per_remote is None:
            return None
        seen = per_remote.get(message_id)
        if seen is not None and seen.expires <= now:
            self._forget_seen(remote, message_id)
            return None
        return seen

    def _remember(self, remote: Remote, message_id: int, seen: _Seen) -> None:
        per_remote = self._seen.setdefault(remote, OrderedDict())
        per_remote[message_id] = seen
        self._seen_order[(remote, message_id)] = None
        if len(per_remote) > self._max_per_remote:
            self._forget_seen(remote, next(iter(per_remote)))
        if len(self._seen_order) > self._max_total:
            self._forget_seen(*next(iter(self._seen_order)))

    def _forget_seen(self, remote: Remote, message_id: int) -> None:
        self._seen_order.pop((remote, message_id), None)
        per_remote = self._seen.get(remote)
        if per_remote is not None:
            per_remote.pop(message_id, None)
            if not per_remote:
                del self._seen[remote]

    # --- answering -------------------------------------------------------------------

    def respond(
        self,
        remote: Remote,
        request: Message,
        code: int,
        now: float,
        options: Iterable[Option] = (),
        payload: bytes = b"",
        context: object = None,
    ) -> bytes:
        """
        The response to C{request}, with its token.

        For a CON request not yet acknowledged this is a piggybacked ACK,
        remembered so that a duplicate request gets it again. After
        L{acknowledge} it is a separate CON response with a new message ID,
        retransmitted until acknowledged (L{Acknowledged}, L{Reset} or
        L{TimedOut} follow). For a NON request it is a NON with a new
        message ID (section 5.2.3). C{context} is handed back in the events
        about a separate or NON response (see L{send}).
        """
        opts = tuple(options)
        seen = self._lookup(remote, request.message_id, now)
        if request.type == CON and not (seen is not None and seen.acked):
            answer = Message(ACK, code, request.message_id, request.token, opts, payload)
            datagram = encode(answer)
            self._record_answer(remote, request, seen, datagram, now)
            return datagram
        mtype = CON if request.type == CON else NON
        message = Message(mtype, code, self.new_message_id(remote), request.token, opts, payload)
        return self.send(remote, message, now, context=context)

    def acknowledge(self, remote: Remote, request: Message, now: float) -> bytes:
        """
        An empty ACK for the CON C{request}, whose response will be
        separate (section 5.2.2); duplicates of the request get it again.
        """
        datagram = encode(Message(ACK, Code.EMPTY, request.message_id))
        seen = self._record_answer(
            remote, request, self._lookup(remote, request.message_id, now), datagram, now
        )
        seen.acked = True
        return datagram

    def reject(self, remote: Remote, message: Message, now: float) -> bytes | None:
        """
        Reject a received message (section 4.2/4.3): the RST for a CON,
        remembered for its duplicates; C{None} for a NON, which is simply
        ignored.
        """
        if message.type != CON:
            return None
        datagram = encode(Message(RST, Code.EMPTY, message.message_id))
        self._record_answer(
            remote, message, self._lookup(remote, message.message_id, now), datagram, now
        )
        return datagram

    def _record_answer(
        self, remote: Remote, request: Message, seen: _Seen | None, datagram: bytes, now: float
    ) -> _Seen:
        if seen is None:
            seen = _Seen(now + EXCHANGE_LIFETIME)
            self._remember(remote, request.message_id, seen)
        seen.answer = datagram
        return seen

    # --- sending ---------------------------------------------------------------------

    def new_message_id(self, remote: Remote) -> int:
        """
        A message ID for a new message to C{remote}: counting up from a
        random start (section 4.4), skipping IDs still outstanding.
        """
        mid = self._next_mid.pop(remote, None)
        if mid is None:
            mid = self._rng.getrandbits(16)
        for _ in range(0x10000):
            if (remote, mid) not in self._pending and (remote, mid) not in self._non_sent:
                break
            mid = (mid + 1) & 0xFFFF
        else:
            raise RuntimeError("every message ID to this remote is in use")
        self._next_mid[remote] = (mid + 1) & 0xFFFF
        if len(self._next_mid) > self._max_total:
            self._next_mid.popitem(last=False)
        return mid

    def new_token(self, length: int = 8) -> bytes:
        """A random token of C{length} bytes (section 5.3.1)."""
        return self._rng.getrandbits(8 * length).to_bytes(length, "big") if length else b""

    def send(
        self,
        remote: Remote,
        message: Message,
        now: float,
        inherit: int | None = None,
        context: object = None,
    ) -> bytes:
        """
        The datagram for a new message the caller originates (a
        notification, a separate response). Its message ID should come from
        L{new_message_id}.

        A CON is retransmitted by L{tick} until an ACK or RST matches it;
        a NON is remembered for NON_LIFETIME so an RST to it is reported.

        @param inherit: the message ID of an outstanding CON to the same
            remote that this one replaces (RFC 7641 section 4.5.2: a newer
            notification takes over the older one's retransmission counter
            and timeout); the older one is forgotten.
        @param context: anything; handed back in the L{Acknowledged},
            L{Reset} or L{TimedOut} event about this message.
        @raise ValueError: if a CON with the same message ID is outstanding.
        """
        datagram = encode(message)
        key = (remote, message.message_id)
        if message.type == CON:
            if key in self._pending:
                raise ValueError(f"message ID {message.message_id} is outstanding")
            old = self._pending.pop((remote, inherit), None) if inherit is not None else None
            if old is not None:
                pending = _Pending(
                    remote, message, datagram, old.timeout, old.retransmits, old.deadline, context
                )
            else:
                timeout = self._rng.uniform(
                    self._ack_timeout, self._ack_timeout * self._ack_random_factor
                )
                pending = _Pending(remote, message, datagram, timeout, 0, now + timeout, context)
            self._pending[key] = pending
            self._schedule(pending.deadline, key)
        elif message.type == NON:
            self._non_sent.pop(key, None)
            self._non_sent[key] = (now + NON_LIFETIME, message, context)
            self._expire_non(now)
        return datagram

    def cancel(self, remote: Remote, message_id: int) -> Message | None:
        """
        Stop retransmitting an outstanding CON (e.g. the observation it
        notifies was cancelled); a later ACK or RST for it is ignored.

        @return: the message, or C{None} if it was not outstanding.
        """
        pending = self._pending.pop((remote, message_id), None)
        return None if pending is None else pending.message

    def outstanding(self, remote: Remote) -> int:
        """How many CONs to C{remote} await an ACK (for NSTART, section 4.7)."""
        return sum(1 for r, _ in self._pending if r == remote)

    def _expire_non(self, now: float) -> None:
        while self._non_sent:
            key, (expires, _, _) = next(iter(self._non_sent.items()))
            if expires > now and len(self._non_sent) <= self._max_total:
                break
            del self._non_sent[key]

    # --- timers ------------------------------------------------------------------------

    def _schedule(self, deadline: float, key: tuple[Remote, int]) -> None:
        self._timer_seq += 1
        heapq.heappush(self._timers, (deadline, self._timer_seq, key))

    def _drop_stale_timers(self) -> None:
        while self._timers:
            deadline, _, key = self._timers[0]
            pending = self._pending.get(key)
            if pending is not None and pending.deadline == deadline:
                return
            heapq.heappop(self._timers)

    def next_deadline(self) -> float | None:
        """When L{tick} has work next, or C{None} if no CON is outstanding."""
        self._drop_stale_timers()
        return self._timers[0][0] if self._timers else None

    def tick(self, now: float) -> list[Event]:
        """
        Retransmit the CONs whose timeout passed (the timeout doubles each
        time) and give up on those already retransmitted MAX_RETRANSMIT
        times; also forget expired records.

        @return: L{Transmit} and L{TimedOut} events.
        """
        events: list[Event] = []
        while True:
            self._drop_stale_timers()
            if not self._timers or self._timers[0][0] > now:
                break
            _, _, key = heapq.heappop(self._timers)
            pending = self._pending[key]
            if pending.retransmits >= self._max_retransmit:
                del self._pending[key]
                events.append(TimedOut(pending.remote, pending.message, pending.context))
                continue
            pending.retransmits += 1
            pending.timeout *= 2
            pending.deadline = now + pending.timeout
            self._schedule(pending.deadline, key)
            events.append(Transmit(pending.remote, pending.datagram))
        self._expire_seen(now)
        self._expire_non(now)
        return events

    def _expire_seen(self, now: float) -> None:
        # Records are in arrival order; a NON record may expire before an
        # older CON one, and then waits for it: lookups check expiry anyway.
        while self._seen_order:
            remote, mid = next(iter(self._seen_order))
            if self._seen[remote][mid].expires > now:
                return
            self._forget_seen(remote, mid)
