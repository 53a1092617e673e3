# -*- test-case-name: tests.auth.test_ratelimit -*-
"""
Tests for L{mqttx.auth.ratelimit}.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from mqttx.auth.ratelimit import AuthFailureLimiter, source_host


class SourceHostTests(SynchronousTestCase):
    def test_hosts(self) -> None:
        """
        The port is dropped from C{host:port}, IPv6 hosts included; other
        descriptions are kept whole.
        """
        self.assertEqual(source_host("10.0.0.1:5555"), "10.0.0.1")
        self.assertEqual(source_host("::1:5555"), "::1")
        self.assertEqual(source_host("UNIXAddress('/run/s')"), "UNIXAddress('/run/s')")


class LimiterTests(SynchronousTestCase):
    """
    L{AuthFailureLimiter} blocks an address after N failures within the
    window, until the oldest of them leaves it.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.limiter = AuthFailureLimiter(self.clock, 3, 60.0)

    def test_blocks_after_max_failures(self) -> None:
        """
        After 3 failures within a minute the address is blocked; others
        are not.
        """
        for _ in range(2):
            self.limiter.failed("a")
            self.clock.advance(1)
        self.assertFalse(self.limiter.blocked("a"))
        self.limiter.failed("a")
        self.assertTrue(self.limiter.blocked("a"))
        self.assertFalse(self.limiter.blocked("b"))

    def test_sliding_window(self) -> None:
        """
        The block lifts once the oldest counted failure is a window old.
        """
        for _ in range(3):
            self.limiter.failed("a")
            self.clock.advance(10)
        # Failures at 0, 10, 20; now 30.
        self.clock.advance(29.9)
        self.assertTrue(self.limiter.blocked("a"))
        self.clock.advance(0.1)
        self.assertFalse(self.limiter.blocked("a"))
        self.limiter.failed("a")
        self.assertTrue(self.limiter.blocked("a"))

    def test_forgets_old_addresses(self) -> None:
        """
        An address whose last failure is a window old is forgotten.
        """
        self.limiter.failed("a")
        self.clock.advance(30)
        self.limiter.failed("b")
        self.assertEqual(len(self.limiter), 2)
        self.clock.advance(30)
        self.assertFalse(self.limiter.blocked("x"))
        self.assertEqual(len(self.limiter), 1)

    def test_bounded(self) -> None:
        """
        At most C{max_addresses} are remembered: the one that failed
        longest ago goes first.
        """
        limiter = AuthFailureLimiter(self.clock, 1, 60.0, max_addresses=2)
        for address in ("a", "b", "c"):
            limiter.failed(address)
        self.assertEqual(len(limiter), 2)
        self.assertFalse(limiter.blocked("a"))
        self.assertTrue(limiter.blocked("c"))

    def test_off(self) -> None:
        """
        With 0 failures allowed the limiter never blocks.
        """
        limiter = AuthFailureLimiter(self.clock, 0)
        for _ in range(100):
            limiter.failed("a")
        self.assertFalse(limiter.blocked("a"))
        self.assertEqual(len(limiter), 0)
