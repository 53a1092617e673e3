# -*- test-case-name: tests.transports.test_address -*-
"""
How the transports name a peer in logs.
"""

from __future__ import annotations

from twisted.internet.interfaces import IAddress

__all__ = ["describe_address", "describe_host_port"]


def describe_address(address: IAddress | None) -> str:
    """
    Name C{address} for a log line: C{host:port}, with an IPv6 host in
    brackets (C{[::1]:1883}); an address without a host (a UNIX socket's,
    say) as C{str()} gives it.
    """
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is None:
        return str(address)
    return describe_host_port(host, port)


def describe_host_port(host: str, port: object) -> str:
    """Name a host and port for a log line: C{host:port}, an IPv6 host in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
