# -*- test-case-name: tests.transports.test_http_admin -*-
"""
The built-in status page of the HTTP bridge: C{/} and its script and style
sheet under C{/status/}, static files from C{mqttx/transports/http/status/}
(package data; no build step, nothing from other sites). The page polls the
admin API, so it is for admins too: the browser asks for credentials on the
401 of C{/} (HTTP Basic) and sends them with the page's own requests.

Its answers forbid everything but this origin (C{Content-Security-Policy:
default-src 'self'}), type sniffing and framing.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from twisted.web.resource import Resource
from twisted.web.server import Request

from .admin import AdminGuard, AdminResource, Handler, HTTPError

__all__ = ["STATUS_FILES", "StatusFile", "status_resources"]

#: The page's files, by name, with their media types.
STATUS_FILES = {
    "index.html": b"text/html; charset=utf-8",
    "status.js": b"text/javascript; charset=utf-8",
    "status.css": b"text/css; charset=utf-8",
}

#: The headers of every file of the page.
PAGE_HEADERS = {
    b"content-security-policy": b"default-src 'self'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
    b"referrer-policy": b"no-referrer",
}


def _read(name: str) -> bytes:
    return files("mqttx.transports.http").joinpath("status", name).read_bytes()


class StatusFile(AdminResource):
    """One file of the status page, read once, served to admins."""

    def __init__(self, guard: AdminGuard, name: str) -> None:
        super().__init__(guard)
        self._body = _read(name)
        self._type = STATUS_FILES[name]

    def methods(self, request: Request) -> dict[bytes, Handler]:
        return {b"GET": self._get}

    async def _get(self, request: Request, admin: str) -> tuple[int, Any]:
        if request.postpath and any(request.postpath):
            raise HTTPError(404, "not found")
        request.setHeader(b"content-type", self._type)
        for name, value in PAGE_HEADERS.items():
            request.setHeader(name, value)
        return 200, self._body


class _StatusFolder(Resource):
    """C{/status/}: the page's script and style sheet; anything else is 404."""

    def __init__(self, guard: AdminGuard) -> None:
        super().__init__()
        for name in STATUS_FILES:
            if name != "index.html":
                self.putChild(name.encode(), StatusFile(guard, name))


def status_resources(guard: AdminGuard) -> tuple[Resource, Resource]:
    """
    The status page's resources.

    @param guard: lets admins through.
    @return: the page (for C{/}, the root's child C{b""}) and the folder of
        its script and style sheet (the root's child C{b"status"}).
    """
    return StatusFile(guard, "index.html"), _StatusFolder(guard)
