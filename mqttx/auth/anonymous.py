# -*- test-case-name: tests.auth.test_anonymous -*-
"""
The authenticator used when no user database is configured.
"""

from __future__ import annotations

from collections.abc import Mapping

from twisted.internet.defer import Deferred, succeed
from zope.interface import implementer

from mqttx.interfaces import IAuthenticator
from mqttx.mqtt.reason_codes import ReasonCode


@implementer(IAuthenticator)
class NoUserDatabase:
    """
    Without a user database no credentials can be verified: with
    C{allow_anonymous} every client is let in whatever it presents (as
    Mosquitto does without a password file), without it nobody is.

    @param allow_anonymous: the C{auth.allow_anonymous} setting.
    @param listener_anonymous: per listener name, the listener's own
        C{allow_anonymous}, where it has one.
    """

    def __init__(
        self, allow_anonymous: bool, listener_anonymous: Mapping[str, bool] | None = None
    ) -> None:
        self._allow_anonymous = allow_anonymous
        self._listener_anonymous = dict(listener_anonymous or {})

    def authenticate(
        self, client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        if self._listener_anonymous.get(listener, self._allow_anonymous):
            return succeed(ReasonCode.SUCCESS)
        if username is None and password is None:
            return succeed(ReasonCode.NOT_AUTHORIZED)
        return succeed(ReasonCode.BAD_USER_NAME_OR_PASSWORD)
