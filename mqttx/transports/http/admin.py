# -*- test-case-name: tests.transports.test_http_admin -*-
"""
The admin API of the HTTP bridge, under C{/api/v1}, for admins only (the
user names in C{auth.admins}, authenticated with HTTP Basic):

  - C{GET /api/v1/clients?limit=&cursor=}: the sessions, a page at a time
    (C{next_cursor} of one page is the C{cursor} of the next);
  - C{GET /api/v1/clients/{id}}: one session with its subscriptions;
    C{DELETE /api/v1/clients/{id}}: disconnect the client (MQTT 5 clients
    get DISCONNECT 0x98, administrative action), with
    C{?discard_session=true} end its session too;
  - C{GET /api/v1/subscriptions?limit=&cursor=};
  - C{GET /api/v1/retained?filter=F} (default C{#}): payload preview,
    size, QoS, properties; C{DELETE /api/v1/retained?topic=T}: clear it
    (in the store too; subscribers are sent nothing);
  - C{GET /api/v1/stats}: the broker's figures, and its clock, so that two
    samples give rates.

Answers are JSON (errors as the rest of the bridge's:
C{{"error": ..., "reason_code": N}}). No credentials, or wrong ones: 401
with a Basic challenge (so that a browser asks for them); a user who is not
an admin: 403; over the authentication failure limit: 429; a method a
resource does not have: 405 with C{Allow}. Disconnections and deletions are
logged with the admin's user name (by L{mqttx.broker.admin}, which answers
the queries; this module only translates HTTP).
"""

from __future__ import annotations

from abc import ABCMeta, abstractmethod
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from mqttx.auth.anonymous import NoUserDatabase
from mqttx.broker.admin import MAX_LIMIT, Admin, Page, to_json
from mqttx.broker.bridge import BridgeError

from .errors import send_error, send_json, status_for

if TYPE_CHECKING:
    from .site import SiteBuilder

__all__ = [
    "AdminGuard",
    "AdminResource",
    "Authenticate",
    "ClientsResource",
    "HTTPError",
    "RetainedResource",
    "StatsResource",
    "SubscriptionsResource",
    "admin_resources",
    "mount_admin",
]

#: Why the admin API is closed when the broker has no user database.
UNVERIFIED = (
    "the admin API needs auth.password_file or auth.http: without a user database "
    "no password is verified, so nobody can be known to be an admin"
)

#: The page size without C{limit} (at most L{MAX_LIMIT}).
DEFAULT_LIMIT = 100

_log = Logger()

#: Headers every admin answer carries: nothing here is to be cached, sniffed
#: as another type or framed.
SECURITY_HEADERS = {
    b"cache-control": b"no-store",
    b"x-content-type-options": b"nosniff",
    b"x-frame-options": b"DENY",
}


#: Checks a request's HTTP Basic credentials against the broker's users
#: (L{mqttx.transports.http.auth.basic_authenticator}): fires with the
#: authenticated user name, or L{None} for missing or wrong credentials;
#: fails with L{BridgeError} for other refusals (over the authentication
#: failure limit, broker stopping).
Authenticate = Callable[[Request], "Deferred[str | None]"]


class HTTPError(Exception):
    """
    An answer other than success: its status, a message for the JSON body
    and the MQTT 5 reason code behind it (0: none).
    """

    def __init__(self, status: int, message: str, reason_code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason_code = reason_code


class AdminGuard:
    """
    Lets admins through: a request is authenticated (L{Authenticate}), then
    its user must be one of C{admins}.

    @param authenticate: checks Basic credentials.
    @param admins: the user names that are admins (C{auth.admins}).
    @param verified: whether the broker verifies passwords (a password file
        or the HTTP authentication hook). Without a user database any user
        name gets in with any password, so an admin's would prove nothing:
        then every request is refused (403).
    """

    log = Logger()

    def __init__(
        self, authenticate: Authenticate, admins: frozenset[str] | tuple[str, ...], *, verified: bool = True
    ) -> None:
        self._authenticate = authenticate
        self.admins = frozenset(admins)
        self.verified = verified

    async def admin(self, request: Request) -> str:
        """
        @return: the admin's user name.
        @raise HTTPError: 401 without credentials or with wrong ones (with
            the Basic challenge, so that a browser asks for them), 403 for
            a user who is not an admin, 429 over the authentication failure
            limit, 503 while the broker stops.
        """
        if not self.verified:
            raise HTTPError(403, UNVERIFIED, 0x87)
        if request.getHeader(b"authorization") is None:
            raise HTTPError(401, "credentials required", 0x87)
        try:
            user = await self._authenticate(request)
        except BridgeError as e:
            raise HTTPError(status_for(e.reason_code), e.message, e.reason_code) from None
        if user is None:
            raise HTTPError(401, "bad user name or password", 0x86)
        if user not in self.admins:
            self.log.info(
                "admin request {method} {path} by {user!r}, who is not an admin: 403",
                user=user,
                method=request.method.decode("ascii", "replace"),
                path=request.path.decode("ascii", "replace")[:200],
                event_id="admin.forbidden",
            )
            raise HTTPError(403, "admins only", 0x87)
        return user


Handler = Callable[[Request, str], Awaitable["tuple[int, Any]"]]


class AdminResource(Resource, metaclass=ABCMeta):
    """
    An admin resource: the methods it has for a request (L{methods}) run
    once the request is an admin's. A handler answers a status and a value,
    sent as JSON; a status 204 answer has no body, and C{bytes} are sent as
    they are (the handler sets their type). HEAD is GET without the body.
    """

    isLeaf = True
    log = Logger()

    def __init__(self, guard: AdminGuard) -> None:
        super().__init__()
        self.guard = guard

    @abstractmethod
    def methods(self, request: Request) -> dict[bytes, Handler]:
        """The handlers of the request's resource, by HTTP method."""

    def render(self, request: Request) -> int:
        for name, value in SECURITY_HEADERS.items():
            request.setHeader(name, value)
        handlers = self.methods(request)
        handler = handlers.get(b"GET" if request.method == b"HEAD" else request.method)
        if handler is None:
            allowed = sorted({*handlers, *([b"HEAD"] if b"GET" in handlers else [])})
            request.setHeader(b"allow", b", ".join(allowed))
            method = request.method.decode("ascii", "replace")
            send_error(request, 405, f"method {method} not allowed")
            return NOT_DONE_YET
        d = Deferred.fromCoroutine(self._answer(request, handler))
        d.addErrback(self._failed, request)
        return NOT_DONE_YET

    async def _answer(self, request: Request, handler: Handler) -> None:
        try:
            admin = await self.guard.admin(request)
            status, value = await handler(request, admin)
        except HTTPError as e:
            send_error(request, e.status, e.message, e.reason_code)
            return
        if request.finished or request._disconnected:
            return
        if status == 204 or isinstance(value, bytes):
            request.setResponseCode(status)
            if isinstance(value, bytes):
                request.setHeader(b"content-length", b"%d" % len(value))
                request.write(value)
            request.finish()
            return
        send_json(request, status, value)

    def _failed(self, reason: Failure, request: Request) -> None:
        self.log.failure(
            "admin request {method} {path} failed",
            reason,
            method=request.method.decode("ascii", "replace"),
            path=request.path.decode("ascii", "replace")[:200],
            event_id="admin.failed",
        )
        send_error(request, 500, "internal error", 0x83)


# Query arguments.


def _argument(request: Request, name: bytes) -> str | None:
    """The one value of query argument C{name}, decoded, or L{None} if absent."""
    values: list[bytes] | None = (request.args or {}).get(name)
    if not values:
        return None
    if len(values) > 1:
        raise HTTPError(400, f"{name.decode()} given more than once")
    try:
        return values[0].decode("utf-8")
    except UnicodeDecodeError:
        raise HTTPError(400, f"{name.decode()} is not UTF-8") from None


def _is_number(text: str) -> bool:
    """Whether C{text} is a whole number in ASCII digits (not C{"²"}, which C{isdigit} takes)."""
    return text.isascii() and text.isdigit()


def _page_arguments(request: Request) -> tuple[int, int]:
    """
    C{limit} (1 to L{MAX_LIMIT}, default L{DEFAULT_LIMIT}) and where to
    start: C{cursor}, as the previous page's C{next_cursor} gave it.
    """
    text = _argument(request, b"limit")
    limit = DEFAULT_LIMIT
    if text is not None:
        if not _is_number(text) or not 1 <= int(text) <= MAX_LIMIT:
            raise HTTPError(400, f"limit must be a whole number from 1 to {MAX_LIMIT}")
        limit = int(text)
    cursor = _argument(request, b"cursor")
    if cursor is None:
        return limit, 0
    if not _is_number(cursor) or len(cursor) > 18:
        raise HTTPError(400, "cursor must be a next_cursor from an earlier answer")
    return limit, int(cursor)


def _page_json(name: str, page: Page[Any]) -> dict[str, Any]:
    """
    A page of a listing: its items under C{name}, the C{total} the listing
    has, and the C{next_cursor} to pass for the next page (L{None} after the
    last). A cursor is an offset: a listing that changes between pages may
    show an item twice or skip one.
    """
    cursor = None if page.next_offset is None else str(page.next_offset)
    return {name: to_json(page.items), "total": page.total, "next_cursor": cursor}


# The resources.


class ClientsResource(AdminResource):
    """
    C{/api/v1/clients} (GET: a page of sessions, in the order they began)
    and C{/api/v1/clients/{id}} (GET: one session and its subscriptions;
    DELETE: disconnect its client, MQTT 5 ones with DISCONNECT 0x98, and
    with C{?discard_session=true} end the session too, which also works for
    an offline one). The id is the rest of the path, URL-decoded, so it may
    hold C{/}, encoded or not.
    """

    def __init__(self, guard: AdminGuard, admin: Admin) -> None:
        super().__init__(guard)
        self._admin = admin

    def methods(self, request: Request) -> dict[bytes, Handler]:
        if not any(request.postpath or []):
            return {b"GET": self._list}
        return {b"GET": self._get, b"DELETE": self._delete}

    @staticmethod
    def _client_id(request: Request) -> str:
        try:
            return "/".join(segment.decode("utf-8") for segment in request.postpath or [])
        except UnicodeDecodeError:
            raise HTTPError(400, "the client id is not UTF-8") from None

    async def _list(self, request: Request, admin: str) -> tuple[int, Any]:
        limit, offset = _page_arguments(request)
        return 200, _page_json("clients", self._admin.clients(offset=offset, limit=limit))

    async def _get(self, request: Request, admin: str) -> tuple[int, Any]:
        details = self._admin.client(self._client_id(request))
        if details is None:
            raise HTTPError(404, "no such client")
        return 200, to_json(details)

    async def _delete(self, request: Request, admin: str) -> tuple[int, Any]:
        client_id = self._client_id(request)
        discard = _argument(request, b"discard_session") or "false"
        if discard not in ("true", "false"):
            raise HTTPError(400, "discard_session must be true or false")
        details = self._admin.client(client_id)
        if details is None:
            raise HTTPError(404, "no such client")
        if not self._admin.disconnect(client_id, admin, discard_session=discard == "true"):
            raise HTTPError(409, "the client is not connected (discard_session=true ends its session)")
        return 200, {
            "client_id": client_id,
            "disconnected": details.client.connected,
            "session_discarded": discard == "true",
        }


class SubscriptionsResource(AdminResource):
    """C{/api/v1/subscriptions} (GET: a page of every session's subscriptions)."""

    def __init__(self, guard: AdminGuard, admin: Admin) -> None:
        super().__init__(guard)
        self._admin = admin

    def methods(self, request: Request) -> dict[bytes, Handler]:
        return {b"GET": self._list}

    async def _list(self, request: Request, admin: str) -> tuple[int, Any]:
        limit, offset = _page_arguments(request)
        return 200, _page_json("subscriptions", self._admin.subscriptions(offset=offset, limit=limit))


class RetainedResource(AdminResource):
    """
    C{/api/v1/retained} (GET C{?filter=F}: a page of the retained messages
    it matches, C{#} by default, by topic; DELETE C{?topic=T}: clear one, in
    the store too, without sending subscribers anything).
    """

    def __init__(self, guard: AdminGuard, admin: Admin) -> None:
        super().__init__(guard)
        self._admin = admin

    def methods(self, request: Request) -> dict[bytes, Handler]:
        return {b"GET": self._list, b"DELETE": self._delete}

    async def _list(self, request: Request, admin: str) -> tuple[int, Any]:
        limit, offset = _page_arguments(request)
        topic_filter = _argument(request, b"filter") or "#"
        try:
            page = self._admin.retained(topic_filter, offset=offset, limit=limit)
        except ValueError as e:
            raise HTTPError(400, str(e), 0x8F) from None
        return 200, _page_json("retained", page)

    async def _delete(self, request: Request, admin: str) -> tuple[int, Any]:
        topic = _argument(request, b"topic")
        if topic is None:
            raise HTTPError(400, "the topic argument is required")
        try:
            deleted = await self._admin.delete_retained(topic, admin)
        except ValueError as e:
            raise HTTPError(400, str(e), 0x90) from None
        if not deleted:
            raise HTTPError(404, "no retained message on that topic")
        return 204, None


class StatsResource(AdminResource):
    """C{/api/v1/stats} (GET: the broker's figures, and its clock for rates)."""

    def __init__(self, guard: AdminGuard, admin: Admin) -> None:
        super().__init__(guard)
        self._admin = admin

    def methods(self, request: Request) -> dict[bytes, Handler]:
        return {b"GET": self._get}

    async def _get(self, request: Request, admin: str) -> tuple[int, Any]:
        return 200, self._admin.stats()


def admin_resources(guard: AdminGuard, admin: Admin) -> dict[str, Resource]:
    """
    The admin API's resources, by their path.

    @param guard: lets admins through.
    @param admin: the broker's admin queries.
    """
    return {
        "api/v1/clients": ClientsResource(guard, admin),
        "api/v1/subscriptions": SubscriptionsResource(guard, admin),
        "api/v1/retained": RetainedResource(guard, admin),
        "api/v1/stats": StatsResource(guard, admin),
    }


def mount_admin(tree: SiteBuilder, authenticate: Authenticate | None = None) -> None:
    """
    Mount the admin API on an HTTP listener's resource tree, and the status
    page (L{mqttx.transports.http.status_page}) at C{/} unless the
    listener's C{http.status_page} is off.

    @param tree: the tree L{build_site<mqttx.transports.http.site.build_site>}
        is building.
    @param authenticate: checks Basic credentials; by default against the
        broker's users, as MQTT clients of this listener. Without a user
        database (no password file nor HTTP hook), every request is refused
        (see L{AdminGuard}), and that is logged once here if there are admins.
    """
    from .auth import basic_authenticator
    from .status_page import status_resources

    context = tree.context
    verified = not isinstance(context.broker.admission.authenticator, NoUserDatabase)
    if context.admins and not verified:
        _log.warn(
            "listener {listener}: the admin API and status page refuse every request: {why}",
            listener=context.listener.name,
            why=UNVERIFIED,
            event_id="admin.unverified",
        )
    guard = AdminGuard(authenticate or basic_authenticator(context), context.admins, verified=verified)
    for path, resource in admin_resources(guard, Admin(context.broker)).items():
        tree.mount(path, resource)
    http = context.listener.http
    if http is None or http.status_page:
        page, folder = status_resources(guard)
        tree.mount("", page)
        tree.mount("status", folder)
