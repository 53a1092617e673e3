# -*- test-case-name: tests.transports.test_http_auth -*-
"""
HTTP Basic authentication against the broker's users, through the bridge:
401 with a challenge, 403 for ACL denials, 429 over the failure limit, and
the helpers the admin API uses.
"""

from __future__ import annotations

from typing import cast

from twisted.internet.address import IPv4Address
from twisted.web.server import Request
from twisted.web.test.requesthelper import DummyRequest

from mqttx.broker.bridge import BridgeError
from mqttx.transports.http.auth import (
    BadCredentials,
    Credentials,
    admin_origin,
    basic_authenticator,
    credentials,
)

from .http_helpers import HTTPTestCase, basic


def _request(authorization: bytes | None = None) -> Request:
    """A request (twisted.web's DummyRequest) with these credentials, from 127.0.0.1."""
    request = DummyRequest([b""])
    request.client = IPv4Address("TCP", "127.0.0.1", 40000)
    if authorization is not None:
        request.requestHeaders.setRawHeaders(b"authorization", [authorization])
    return cast(Request, request)


class CredentialsTests(HTTPTestCase):
    """Parsing the Authorization header (RFC 7617)."""

    def test_none(self) -> None:
        self.assertEqual(credentials(_request()), Credentials())
        self.assertTrue(Credentials().anonymous)

    def test_basic(self) -> None:
        """User name and password; the password may hold colons, the name UTF-8."""
        self.assertEqual(credentials(_request(basic("alice", b"se:cret"))), Credentials("alice", b"se:cret"))
        self.assertEqual(credentials(_request(basic("zoë", b""))), Credentials("zoë", b""))
        self.assertEqual(credentials(_request(b"basic " + basic("a", b"b")[6:])), Credentials("a", b"b"))

    def test_malformed(self) -> None:
        """Another scheme, bad base64, no colon, a name that is not UTF-8: BadCredentials."""
        for header in [b"Bearer abc", b"Basic !!!", b"Basic " + b"YWxpY2U=", b"Basic /w==", b"Basic /zpi"]:
            self.assertRaises(BadCredentials, credentials, _request(header))


class PublishAuthTests(HTTPTestCase):
    """What publishing answers for each kind of credentials."""

    def test_anonymous_allowed(self) -> None:
        self.assertEqual(self.request("POST", "/api/v1/publish?topic=a", b"x").status, 200)

    def test_anonymous_refused_asks_for_credentials(self) -> None:
        """Anonymous clients not allowed: 401 with the Basic challenge."""
        self.authenticator.anonymous = False
        response = self.request("POST", "/api/v1/publish?topic=a", b"x")
        self.assertEqual(response.status, 401)
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="mqttx"')
        self.assertEqual(response.json()["reason_code"], 0x87)
        self.assertEqual(self.broker.received_qos, [0, 0, 0])

    def test_good_credentials(self) -> None:
        self.authenticator.anonymous = False
        response = self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"secret"))
        self.assertEqual(response.status, 200)

    def test_wrong_password(self) -> None:
        """Wrong credentials: 401 with the challenge, 0x86."""
        response = self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"wrong"))
        self.assertEqual(response.status, 401)
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="mqttx"')
        self.assertEqual(response.json()["reason_code"], 0x86)

    def test_malformed_header(self) -> None:
        response = self.request("POST", "/api/v1/publish?topic=a", b"x", {"Authorization": "Bearer t"})
        self.assertEqual(response.status, 401)
        self.assertEqual(response.header("www-authenticate"), 'Basic realm="mqttx"')

    def test_acl_denial(self) -> None:
        """A topic the ACLs deny the user: 403, 0x87, nothing published."""
        response = self.request("POST", "/api/v1/publish?topic=secret/x&qos=1", b"x", auth=("alice", b"secret"))
        self.assertEqual((response.status, response.json()["reason_code"]), (403, 0x87))
        self.assertIsNone(response.header("www-authenticate"))

    def test_failure_limit(self) -> None:
        """Over the authentication failure limit (3 a minute here): 429 with Retry-After, 0x9F."""
        for _ in range(3):
            self.assertEqual(self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"no")).status, 401)
        response = self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"secret"))
        self.assertEqual((response.status, response.json()["reason_code"]), (429, 0x9F))
        self.assertEqual(response.header("retry-after"), "60")
        self.clock.advance(61)
        self.assertEqual(self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"secret")).status, 200)

    def test_password_checked_once_for_repeated_requests(self) -> None:
        """Repeated requests with the same credentials reuse the bridge's admitted client."""
        for _ in range(3):
            self.request("POST", "/api/v1/publish?topic=a", b"x", auth=("alice", b"secret"))
        self.assertEqual(self.authenticator.calls, 1)


class AdminHelperTests(HTTPTestCase):
    """basic_authenticator and admin_origin, for the admin API."""

    def test_basic_authenticator(self) -> None:
        """The user name for good credentials; None for none, malformed or wrong ones."""
        authenticate = basic_authenticator(self.context)
        self.assertEqual(self.successResultOf(authenticate(_request(basic("alice", b"secret")))), "alice")
        self.assertIsNone(self.successResultOf(authenticate(_request())))
        self.assertIsNone(self.successResultOf(authenticate(_request(b"Basic !!"))))
        self.assertIsNone(self.successResultOf(authenticate(_request(basic("alice", b"bad")))))

    def test_basic_authenticator_over_the_limit(self) -> None:
        """Over the failure limit it fails with the bridge's 0x9F (for a 429)."""
        authenticate = basic_authenticator(self.context)
        for _ in range(3):
            self.successResultOf(authenticate(_request(basic("alice", b"bad"))))
        failure = self.failureResultOf(authenticate(_request(basic("alice", b"secret"))), BridgeError)
        self.assertEqual(failure.value.reason_code, 0x9F)

    def test_admin_origin(self) -> None:
        """An admin gets an origin; others get 401 or 403 answered and None."""
        request = _request(basic("root", b"toor"))
        origin = self.successResultOf(_deferred(admin_origin(self.context, request)))
        self.assertEqual((origin.username, origin.listener), ("root", "http"))
        for header, status in [(None, 401), (basic("root", b"bad"), 401), (basic("alice", b"secret"), 403)]:
            request = _request(header)
            self.assertIsNone(self.successResultOf(_deferred(admin_origin(self.context, request))))
            self.assertEqual(cast(DummyRequest, request).responseCode, status)


def _deferred(coroutine):  # type: ignore[no-untyped-def]
    from twisted.internet.defer import Deferred

    return Deferred.fromCoroutine(coroutine)
