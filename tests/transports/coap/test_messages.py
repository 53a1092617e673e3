"""
Tests for L{mqttx.transports.coap.messages}: deduplication, answers to
duplicates, separate responses, the retransmission schedule with an injected
random source and explicit times, give-up, ACK/RST matching and message IDs.
"""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from mqttx.transports.coap.codec import (
    Action,
    Code,
    Message,
    MessageType,
    Option,
    OptionNumber,
    decode,
    encode,
)
from mqttx.transports.coap.messages import (
    EXCHANGE_LIFETIME,
    NON_LIFETIME,
    Acknowledged,
    Duplicate,
    Ignored,
    Malformed,
    MessageLayer,
    Received,
    Reset,
    TimedOut,
    Transmit,
)

CON, NON, ACK, RST = MessageType.CON, MessageType.NON, MessageType.ACK, MessageType.RST
A = ("192.0.2.1", 5683)
B = ("192.0.2.2", 5683)


class FixedRandom(random.Random):
    """
    A random source whose C{uniform} returns the point C{fraction} of the
    way through its range and whose C{getrandbits} returns C{bits}.
    """

    def __init__(self, fraction: float = 0.0, bits: int = 0x1000) -> None:
        super().__init__(0)
        self.fraction = fraction
        self.bits = bits

    def uniform(self, a: float, b: float) -> float:
        return a + (b - a) * self.fraction

    def getrandbits(self, k: int) -> int:
        return self.bits & ((1 << k) - 1)


def get(mid: int, mtype: MessageType = CON, token: bytes = b"tk") -> Message:
    return Message(mtype, Code.GET, mid, token, (Option.string(OptionNumber.URI_PATH, "ps"),))


def wire(m: Message) -> bytes:
    return encode(m)


class DeduplicationTests(SynchronousTestCase):
    """Section 4.5: duplicates are not processed twice."""

    def setUp(self) -> None:
        self.layer = MessageLayer(FixedRandom())

    def test_con_piggybacked_and_duplicate(self) -> None:
        """A duplicate CON gets the same piggybacked response again."""
        req = get(7)
        self.assertEqual(self.layer.receive(A, wire(req), 0), [Received(A, req)])
        # Before the response exists a duplicate is only reported.
        self.assertEqual(self.layer.receive(A, wire(req), 1), [Duplicate(A, req)])
        ack = self.layer.respond(A, req, Code.CONTENT, 1, payload=b"v")
        self.assertEqual(decode(ack), Message(ACK, Code.CONTENT, 7, b"tk", payload=b"v"))
        self.assertEqual(self.layer.receive(A, wire(req), 2), [Duplicate(A, req), Transmit(A, ack)])

    def test_exchange_lifetime(self) -> None:
        """CON message IDs are remembered for EXCHANGE_LIFETIME (247 s)."""
        req = get(7)
        self.layer.receive(A, wire(req), 10)
        self.assertEqual(self.layer.receive(A, wire(req), 10 + 246.9), [Duplicate(A, req)])
        self.assertEqual(
            self.layer.receive(A, wire(req), 10 + EXCHANGE_LIFETIME), [Received(A, req)]
        )

    def test_non_lifetime(self) -> None:
        """NON message IDs are remembered for NON_LIFETIME (145 s)."""
        req = get(8, NON)
        self.layer.receive(A, wire(req), 0)
        self.assertEqual(self.layer.receive(A, wire(req), 144.9), [Duplicate(A, req)])
        self.layer.tick(145)
        self.assertEqual(self.layer.receive(A, wire(req), NON_LIFETIME), [Received(A, req)])

    def test_per_remote(self) -> None:
        """The same message ID from another remote is another message."""
        req = get(7)
        self.layer.receive(A, wire(req), 0)
        self.assertEqual(self.layer.receive(B, wire(req), 0), [Received(B, req)])

    def test_cap_per_remote(self) -> None:
        """Over the per-remote cap the oldest record of that remote goes."""
        layer = MessageLayer(FixedRandom(), max_per_remote=2)
        for mid in (1, 2, 3):
            layer.receive(A, wire(get(mid)), 0)
        layer.receive(B, wire(get(1)), 0)
        self.assertEqual(layer.receive(A, wire(get(1)), 0), [Received(A, get(1))])
        self.assertEqual(layer.receive(A, wire(get(3)), 0), [Duplicate(A, get(3))])
        self.assertEqual(layer.receive(B, wire(get(1)), 0), [Duplicate(B, get(1))])

    def test_cap_total(self) -> None:
        """Over the overall cap the oldest record of any remote goes."""
        layer = MessageLayer(FixedRandom(), max_total=2)
        layer.receive(A, wire(get(1)), 0)
        layer.receive(B, wire(get(1)), 0)
        layer.receive(B, wire(get(2)), 0)
        self.assertEqual(layer.receive(A, wire(get(1)), 0), [Received(A, get(1))])
        self.assertEqual(layer.receive(B, wire(get(2)), 0), [Duplicate(B, get(2))])

    def test_expired_records_forgotten(self) -> None:
        """L{MessageLayer.tick} drops expired records from memory."""
        for mid in range(5):
            self.layer.receive(A, wire(get(mid)), 0)
        self.layer.tick(EXCHANGE_LIFETIME)
        self.assertEqual(self.layer._seen, {})
        self.assertEqual(len(self.layer._seen_order), 0)

    def test_reject(self) -> None:
        """A rejected CON gets an RST, again for its duplicates; a NON nothing."""
        req = get(9)
        self.layer.receive(A, wire(req), 0)
        rst = self.layer.reject(A, req, 0)
        assert rst is not None
        self.assertEqual(rst, wire(Message(RST, Code.EMPTY, 9)))
        self.assertEqual(self.layer.receive(A, wire(req), 1)[1:], [Transmit(A, rst)])
        self.assertIsNone(self.layer.reject(A, get(10, NON), 0))


class SpecialMessageTests(SynchronousTestCase):
    """Pings, malformed datagrams and messages the layer drops."""

    def setUp(self) -> None:
        self.layer = MessageLayer(FixedRandom())

    def test_ping(self) -> None:
        """An empty CON is answered with RST (section 4.3)."""
        events = self.layer.receive(A, wire(Message(CON, Code.EMPTY, 0x55)), 0)
        self.assertEqual(events, [Transmit(A, wire(Message(RST, Code.EMPTY, 0x55)))])

    def test_malformed_con(self) -> None:
        """A malformed CON is rejected with RST, reported for the log."""
        events = self.layer.receive(A, bytes.fromhex("49010102"), 0)
        self.assertIsInstance(events[0], Malformed)
        assert isinstance(events[0], Malformed)
        self.assertIs(events[0].error.action, Action.RESET)
        self.assertEqual(events[1:], [Transmit(A, wire(Message(RST, Code.EMPTY, 0x0102)))])

    def test_malformed_ignored(self) -> None:
        """A malformed NON or a runt datagram is only reported."""
        for datagram in (bytes.fromhex("59010102"), b"\x40"):
            events = self.layer.receive(A, datagram, 0)
            self.assertEqual(len(events), 1)
            self.assertIsInstance(events[0], Malformed)

    def test_ignored(self) -> None:
        """Empty NON, non-empty RST, ACK with a request, stray ACK/RST."""
        cases = {
            "empty NON": Message(NON, Code.EMPTY, 1),
            "RST that is not empty": Message(RST, Code.CONTENT, 1, b"t"),
            "ACK carrying a request": Message(ACK, Code.GET, 1),
            "ACK matching no CON": Message(ACK, Code.EMPTY, 1),
            "RST matching no message": Message(RST, Code.EMPTY, 1),
        }
        for reason, m in cases.items():
            self.assertEqual(self.layer.receive(A, wire(m), 0), [Ignored(A, m, reason)])


class RetransmissionTests(SynchronousTestCase):
    """Section 4.2: exponential back-off, give-up, ACK and RST matching."""

    def send_con(self, layer: MessageLayer, now: float = 0, remote: object = A) -> Message:
        m = Message(CON, Code.CONTENT, layer.new_message_id(remote), b"ob", payload=b"n")
        layer.send(remote, m, now)
        return m

    def schedule(self, fraction: float) -> list[float]:
        """Run one CON to its give-up; the deadlines L{MessageLayer.tick} was called at."""
        layer = MessageLayer(FixedRandom(fraction))
        m = self.send_con(layer)
        times, events = [], []
        while (deadline := layer.next_deadline()) is not None:
            times.append(deadline)
            events.append(layer.tick(deadline))
        self.assertEqual(events, [[Transmit(A, wire(m))]] * 4 + [[TimedOut(A, m)]])
        return times

    def test_schedule_shortest(self) -> None:
        """Initial timeout ACK_TIMEOUT (2 s), doubling; give up 62 s after sending."""
        self.assertEqual(self.schedule(0.0), [2, 6, 14, 30, 62])

    def test_schedule_longest(self) -> None:
        """Initial timeout ACK_TIMEOUT * ACK_RANDOM_FACTOR: give up at MAX_TRANSMIT_WAIT (93 s)."""
        self.assertEqual(self.schedule(1.0), [3, 9, 21, 45, 93])

    def test_random_in_range(self) -> None:
        """With a real random source the first timeout is in [2, 3]."""
        for seed in range(20):
            layer = MessageLayer(random.Random(seed))
            self.send_con(layer, now=100)
            deadline = layer.next_deadline()
            assert deadline is not None
            self.assertTrue(102 <= deadline <= 103, deadline)

    def test_nothing_early(self) -> None:
        """Nothing is due before the deadline."""
        layer = MessageLayer(FixedRandom())
        self.send_con(layer)
        self.assertEqual(layer.tick(1.999), [])
        self.assertEqual(layer.next_deadline(), 2)

    def test_ack_stops(self) -> None:
        """An ACK with the message ID ends the retransmissions."""
        layer = MessageLayer(FixedRandom())
        m = self.send_con(layer)
        layer.tick(2)
        ack = Message(ACK, Code.EMPTY, m.message_id)
        self.assertEqual(layer.receive(A, wire(ack), 3), [Acknowledged(A, m, ack)])
        self.assertIsNone(layer.next_deadline())
        self.assertEqual(layer.tick(100), [])
        self.assertEqual(layer.outstanding(A), 0)

    def test_ack_from_other_remote(self) -> None:
        """An ACK from another address does not match."""
        layer = MessageLayer(FixedRandom())
        m = self.send_con(layer)
        ack = Message(ACK, Code.EMPTY, m.message_id)
        self.assertIsInstance(layer.receive(B, wire(ack), 1)[0], Ignored)
        self.assertEqual(layer.outstanding(A), 1)

    def test_rst_con(self) -> None:
        """An RST to an outstanding CON is reported and ends it."""
        layer = MessageLayer(FixedRandom())
        m = self.send_con(layer)
        rst = Message(RST, Code.EMPTY, m.message_id)
        self.assertEqual(layer.receive(A, wire(rst), 1), [Reset(A, m)])
        self.assertIsNone(layer.next_deadline())

    def test_rst_non(self) -> None:
        """An RST to a NON sent recently (a notification) is reported."""
        layer = MessageLayer(FixedRandom())
        m = Message(NON, Code.CONTENT, layer.new_message_id(A), b"ob", payload=b"n")
        layer.send(A, m, 0)
        self.assertIsNone(layer.next_deadline())
        rst = wire(Message(RST, Code.EMPTY, m.message_id))
        self.assertEqual(layer.receive(A, rst, 1), [Reset(A, m)])
        self.assertIsInstance(layer.receive(A, rst, 1)[0], Ignored)

    def test_rst_non_expires(self) -> None:
        """After NON_LIFETIME an RST no longer matches the NON."""
        layer = MessageLayer(FixedRandom())
        m = Message(NON, Code.CONTENT, layer.new_message_id(A), b"ob", payload=b"n")
        layer.send(A, m, 0)
        layer.tick(NON_LIFETIME)
        rst = wire(Message(RST, Code.EMPTY, m.message_id))
        self.assertIsInstance(layer.receive(A, rst, NON_LIFETIME)[0], Ignored)

    def test_cancel(self) -> None:
        layer = MessageLayer(FixedRandom())
        m = self.send_con(layer)
        self.assertEqual(layer.cancel(A, m.message_id), m)
        self.assertIsNone(layer.cancel(A, m.message_id))
        self.assertEqual(layer.tick(10), [])

    def test_inherit(self) -> None:
        """
        A newer notification takes over the older one's counter and timeout
        (RFC 7641 section 4.5.2).
        """
        layer = MessageLayer(FixedRandom())
        old = self.send_con(layer)
        layer.tick(2)  # first retransmission; next at 6 after 4 s
        new = Message(CON, Code.CONTENT, layer.new_message_id(A), b"ob", payload=b"newer")
        layer.send(A, new, 3, inherit=old.message_id)
        self.assertEqual(layer.outstanding(A), 1)
        self.assertEqual(layer.next_deadline(), 6)
        self.assertEqual(layer.tick(6), [Transmit(A, wire(new))])
        self.assertEqual(layer.next_deadline(), 14)
        self.assertIsInstance(
            layer.receive(A, wire(Message(ACK, 0, old.message_id)), 7)[0], Ignored
        )
        layer.tick(14)
        layer.tick(30)
        self.assertEqual(layer.tick(62), [TimedOut(A, new)])

    def test_outstanding_mid_refused(self) -> None:
        layer = MessageLayer(FixedRandom())
        m = self.send_con(layer)
        self.assertRaises(ValueError, layer.send, A, m, 1)

    def test_many_remotes(self) -> None:
        """Retransmissions to several remotes are each on their own schedule."""
        layer = MessageLayer(FixedRandom())
        ma = self.send_con(layer, 0, A)
        mb = self.send_con(layer, 1, B)
        self.assertEqual(layer.tick(2), [Transmit(A, wire(ma))])
        self.assertEqual(layer.tick(3), [Transmit(B, wire(mb))])
        self.assertEqual(layer.next_deadline(), 6)


class ResponseTests(SynchronousTestCase):
    """Piggybacked, separate and NON responses (section 5.2)."""

    def setUp(self) -> None:
        self.layer = MessageLayer(FixedRandom(bits=500))

    def test_separate(self) -> None:
        """
        Empty ACK now (again for duplicates), then a CON response with the
        request's token and a new message ID, retransmitted until ACKed.
        """
        req = get(7)
        self.layer.receive(A, wire(req), 0)
        empty = self.layer.acknowledge(A, req, 0.5)
        self.assertEqual(decode(empty), Message(ACK, Code.EMPTY, 7))
        self.assertEqual(self.layer.receive(A, wire(req), 1)[1:], [Transmit(A, empty)])
        datagram = self.layer.respond(A, req, Code.CHANGED, 4)
        resp = decode(datagram)
        self.assertEqual(
            (resp.type, resp.code, resp.token, resp.message_id), (CON, Code.CHANGED, b"tk", 500)
        )
        self.assertEqual(self.layer.tick(6), [Transmit(A, datagram)])
        ack = Message(ACK, Code.EMPTY, 500)
        self.assertEqual(self.layer.receive(A, wire(ack), 7), [Acknowledged(A, resp, ack)])
        # Duplicates still get the empty ACK, not the response.
        self.assertEqual(self.layer.receive(A, wire(req), 8)[1:], [Transmit(A, empty)])

    def test_non_request(self) -> None:
        """A NON request gets a NON response with a new message ID."""
        req = get(7, NON, b"xy")
        self.layer.receive(A, wire(req), 0)
        resp = decode(self.layer.respond(A, req, Code.CONTENT, 0, payload=b"p"))
        self.assertEqual(resp, Message(NON, Code.CONTENT, 500, b"xy", payload=b"p"))
        self.assertIsNone(self.layer.next_deadline())

    def test_response_options(self) -> None:
        req = get(7)
        opts = [Option.uint(OptionNumber.OBSERVE, 3), Option.uint(OptionNumber.CONTENT_FORMAT, 0)]
        resp = decode(self.layer.respond(A, req, Code.CONTENT, 0, opts, b"x"))
        self.assertEqual((resp.observe, resp.content_format), (3, 0))


class IdentifierTests(SynchronousTestCase):
    """Message IDs (section 4.4) and tokens (section 5.3.1)."""

    def test_random_start_and_increment(self) -> None:
        layer = MessageLayer(FixedRandom(bits=0xFFFE))
        self.assertEqual([layer.new_message_id(A) for _ in range(3)], [0xFFFE, 0xFFFF, 0])
        self.assertEqual(layer.new_message_id(B), 0xFFFE)

    def test_skip_in_use(self) -> None:
        """IDs of outstanding CONs and recent NONs are skipped."""
        layer = MessageLayer(FixedRandom(bits=10))
        layer.send(A, Message(CON, Code.CONTENT, 10, b"t"), 0)
        layer.send(A, Message(NON, Code.CONTENT, 11, b"t"), 0)
        self.assertEqual(layer.new_message_id(A), 12)

    def test_tokens(self) -> None:
        layer = MessageLayer(random.Random(1))
        self.assertEqual(len(layer.new_token()), 8)
        self.assertEqual(len(layer.new_token(2)), 2)
        self.assertEqual(layer.new_token(0), b"")
        self.assertNotEqual(layer.new_token(), layer.new_token())


class ContextTests(SynchronousTestCase):
    """The caller's context comes back with the events about its message."""

    def test_context(self) -> None:
        layer = MessageLayer(FixedRandom(bits=1))
        ctx_a, ctx_b, ctx_c = object(), object(), object()
        a = Message(CON, Code.CONTENT, 1, b"t")
        b = Message(CON, Code.CONTENT, 2, b"t")
        c = Message(NON, Code.CONTENT, 3, b"t")
        layer.send(A, a, 0, context=ctx_a)
        layer.send(A, b, 0, context=ctx_b)
        layer.send(A, c, 0, context=ctx_c)
        ack = Message(ACK, Code.EMPTY, 1)
        self.assertEqual(layer.receive(A, wire(ack), 1), [Acknowledged(A, a, ack, ctx_a)])
        rst = wire(Message(RST, Code.EMPTY, 3))
        self.assertEqual(layer.receive(A, rst, 1), [Reset(A, c, ctx_c)])
        for t in (2, 6, 14, 30):
            layer.tick(t)
        self.assertEqual(layer.tick(62), [TimedOut(A, b, ctx_b)])

    def test_separate_response_context(self) -> None:
        layer = MessageLayer(FixedRandom(bits=40))
        req = get(7)
        layer.receive(A, wire(req), 0)
        layer.acknowledge(A, req, 0)
        ctx = object()
        layer.respond(A, req, Code.CONTENT, 1, context=ctx)
        rst = wire(Message(RST, Code.EMPTY, 40))
        separate = Message(CON, Code.CONTENT, 40, req.token)
        self.assertEqual(layer.receive(A, rst, 2), [Reset(A, separate, ctx)])

    def test_receive_message(self) -> None:
        """A caller that decoded the datagram itself can pass the message."""
        layer = MessageLayer(FixedRandom())
        self.assertEqual(layer.receive_message(A, get(1), 0), [Received(A, get(1))])
        self.assertEqual(layer.receive_message(A, get(1), 0), [Duplicate(A, get(1))])


class IdentifierLimitTests(SynchronousTestCase):
    """Message ID bookkeeping stays bounded."""

    def test_counters_capped(self) -> None:
        """At most max_total remotes keep a message ID counter."""
        layer = MessageLayer(FixedRandom(bits=7), max_total=2)
        for port in range(5):
            layer.new_message_id(("192.0.2.1", port))
        self.assertEqual(len(layer._next_mid), 2)

    def test_all_in_use(self) -> None:
        """With every message ID to a remote in use, allocation fails loudly."""
        layer = MessageLayer(FixedRandom())
        for mid in range(0x10000):
            layer._non_sent[(A, mid)] = (1000.0, Message(NON, Code.CONTENT, mid), None)
        self.assertRaises(RuntimeError, layer.new_message_id, A)
