"""
PROXY protocol headers as a load balancer sends them (HAProxy's
C{send-proxy} and C{send-proxy-v2}), built here from the specification
(U{https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt}), not with
the parser under test.
"""

from __future__ import annotations

import ipaddress
import struct

__all__ = ["V2_SIGNATURE", "v1_header", "v2_header", "v2_local"]

#: The twelve bytes every version 2 header starts with.
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1_header(source: str, source_port: int, destination: str = "127.0.0.1", destination_port: int = 1883) -> bytes:
    """A version 1 (text) header: C{PROXY TCP4|TCP6 SRC DST SPORT DPORT\\r\\n}."""
    family = "TCP6" if ipaddress.ip_address(source).version == 6 else "TCP4"
    return f"PROXY {family} {source} {destination} {source_port} {destination_port}\r\n".encode()


def v2_header(
    source: str,
    source_port: int,
    destination: str = "127.0.0.1",
    destination_port: int = 1883,
    tlvs: bytes = b"",
) -> bytes:
    """
    A version 2 (binary) header of the PROXY command over TCP, IPv4 or
    IPv6 after the source's family, with C{tlvs} after the addresses.
    """
    src, dst = ipaddress.ip_address(source), ipaddress.ip_address(destination)
    family = 0x21 if src.version == 6 else 0x11
    body = src.packed + dst.packed + struct.pack("!HH", source_port, destination_port) + tlvs
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def v2_local() -> bytes:
    """A version 2 header of the LOCAL command (the balancer's own health check)."""
    return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
