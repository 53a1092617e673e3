# -*- test-case-name: tests.test_systemd -*-
"""
The systemd notification protocol (C{sd_notify(3)}), without libsystemd.

Under C{Type=notify}, systemd passes a datagram socket's path in the
C{NOTIFY_SOCKET} environment variable and waits for C{READY=1} on it before
it considers the service started; C{STOPPING=1} tells it the service is
shutting down. A path that starts with C{@} names a socket in the abstract
namespace (Linux), written with a leading NUL byte.

Without C{NOTIFY_SOCKET} (not under systemd, or not C{Type=notify}),
L{notify} does nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

__all__ = ["notify"]


def notify(state: str, environ: Mapping[str, str] | None = None) -> bool:
    """
    Send C{state} (such as C{"READY=1"}) to the service manager.

    @param state: newline-separated C{KEY=VALUE} assignments.
    @param environ: where to look for C{NOTIFY_SOCKET}; L{os.environ} by
        default.
    @return: whether a notification was sent: C{False} when there is no
        C{NOTIFY_SOCKET}, or when it cannot be written to (systemd gone,
        a bad path), which must not stop the broker.
    """
    address = (os.environ if environ is None else environ).get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":
        # sd_notify also accepts only absolute and abstract paths (and
        # vsock addresses, which mqttx does not need).
        return False
    target = "\0" + address[1:] if address[0] == "@" else address
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(state.encode("utf-8"), target)
    except OSError:
        return False
    return True
