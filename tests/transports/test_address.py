# -*- test-case-name: tests.transports.test_address -*-
"""Tests for L{mqttx.transports.address}."""

from __future__ import annotations

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.trial.unittest import SynchronousTestCase

from mqttx.transports.address import describe_address, describe_host_port


class DescribeAddressTests(SynchronousTestCase):
    def test_ipv4(self) -> None:
        """An IPv4 address is C{host:port}."""
        self.assertEqual(describe_address(IPv4Address("TCP", "192.0.2.1", 1883)), "192.0.2.1:1883")

    def test_ipv6_in_brackets(self) -> None:
        """An IPv6 host is in brackets, so the port stands apart."""
        self.assertEqual(describe_address(IPv6Address("TCP", "2001:db8::7", 40001)), "[2001:db8::7]:40001")

    def test_no_host(self) -> None:
        """An address without a host is as C{str} gives it."""
        address = UNIXAddress(b"/run/mqttx.sock")
        self.assertEqual(describe_address(address), str(address))
        self.assertEqual(describe_address(None), "None")

    def test_host_and_port(self) -> None:
        """A bare host and port (a CoAP datagram's source) is named the same way."""
        self.assertEqual(describe_host_port("192.0.2.1", 5683), "192.0.2.1:5683")
        self.assertEqual(describe_host_port("::1", 5683), "[::1]:5683")
