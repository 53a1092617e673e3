# -*- test-case-name: tests.transports.coap.test_protocol -*-
"""
Who may use a CoAP listener, and how much: the source-address rules
(L{CoAPRule}; CoAP carries no credentials without DTLS or OSCORE, which
mqttx does not offer, so the address is all there is) and the per-source
request rate limit (a token bucket; RFC 8516's 4.29 Too Many Requests).
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Sequence

from mqttx.config import CoAPRule

__all__ = ["RateLimiter", "Rules"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Rules:
    """The listener's rules, matched first to last against a source address."""

    def __init__(self, rules: Sequence[CoAPRule]) -> None:
        self._rules = [(ipaddress.ip_network(r.source, strict=False), r) for r in rules]

    def match(self, host: str) -> CoAPRule | None:
        """The first rule whose network holds C{host}, or L{None}."""
        try:
            address = ipaddress.ip_address(host.partition("%")[0])
        except ValueError:
            return None
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            # A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d.
            address = address.ipv4_mapped
        for network, rule in self._rules:
            if address.version == network.version and address in network:
                return rule
        return None


class RateLimiter:
    """
    A token bucket per source host: C{rate} requests a second, with a burst
    of one second's worth. Bounded: the least recently seen hosts are
    forgotten beyond C{max_sources} (a forgotten host starts with a full
    bucket, which only errs towards letting it in).
    """

    def __init__(self, rate: float, max_sources: int = 10_000) -> None:
        """
        @param rate: requests per second per host; 0 turns the limit off.
        """
        self.rate = rate
        self._burst = max(rate, 1.0)
        self._max = max_sources
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, host: str, now: float) -> int:
        """
        Take one token for a request from C{host}.

        @return: 0 if the request may go on, else the whole seconds after
            which it would (the Max-Age of the 4.29 answer, RFC 8516).
        """
        if self.rate <= 0:
            return 0
        tokens, last = self._buckets.pop(host, (self._burst, now))
        tokens = min(self._burst, tokens + (now - last) * self.rate)
        if tokens >= 1.0:
            self._remember(host, tokens - 1.0, now)
            return 0
        self._remember(host, tokens, now)
        return max(1, math.ceil((1.0 - tokens) / self.rate))

    def _remember(self, host: str, tokens: float, now: float) -> None:
        self._buckets[host] = (tokens, now)
        if len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
