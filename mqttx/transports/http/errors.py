# -*- test-case-name: tests.transports.test_http_site -*-
"""
How the HTTP bridge answers a refusal: a status code and a JSON body
C{{"error": "...", "reason_code": N}}, where C{reason_code} is the MQTT 5
reason code behind it (0 when there is none, as for a 404).
"""

from __future__ import annotations

import json

from twisted.web.server import Request

from mqttx.mqtt.reason_codes import ReasonCode

__all__ = ["REALM", "gone", "json_body", "send_error", "send_json", "status_for"]

#: The realm of the Basic authentication challenge.
REALM = b'Basic realm="mqttx"'

#: HTTP status by MQTT 5 reason code; any other refusal is a 500.
_STATUS: dict[int, int] = {
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: 401,
    ReasonCode.BAD_AUTHENTICATION_METHOD: 401,
    ReasonCode.NOT_AUTHORIZED: 403,
    ReasonCode.BANNED: 403,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: 400,
    ReasonCode.TOPIC_FILTER_INVALID: 400,
    ReasonCode.TOPIC_NAME_INVALID: 400,
    ReasonCode.PAYLOAD_FORMAT_INVALID: 400,
    ReasonCode.RETAIN_NOT_SUPPORTED: 400,
    ReasonCode.QOS_NOT_SUPPORTED: 400,
    ReasonCode.SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: 400,
    ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: 400,
    ReasonCode.SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: 400,
    ReasonCode.PROTOCOL_ERROR: 400,
    ReasonCode.MALFORMED_PACKET: 400,
    ReasonCode.PACKET_TOO_LARGE: 413,
    ReasonCode.QUOTA_EXCEEDED: 429,
    ReasonCode.MESSAGE_RATE_TOO_HIGH: 429,
    ReasonCode.CONNECTION_RATE_EXCEEDED: 429,
    ReasonCode.SERVER_UNAVAILABLE: 503,
    ReasonCode.SERVER_BUSY: 503,
    ReasonCode.SERVER_SHUTTING_DOWN: 503,
    ReasonCode.USE_ANOTHER_SERVER: 503,
    ReasonCode.SERVER_MOVED: 503,
}


def status_for(reason_code: int, *, anonymous: bool = False) -> int:
    """
    The HTTP status answering an MQTT refusal.

    @param reason_code: the MQTT 5 reason code (CONNACK, PUBACK, SUBACK...).
    @param anonymous: whether the request had no credentials: then a
        refusal as not authorized (0x87, for instance anonymous clients
        not allowed on the listener) is a 401, which asks for credentials,
        rather than a 403.
    """
    status = _STATUS.get(reason_code, 500)
    if status == 403 and anonymous:
        return 401
    return status


def json_body(value: object) -> bytes:
    """C{value} as compact UTF-8 JSON, with a final newline (for curl)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"


def gone(request: Request) -> bool:
    """Whether C{request} is answered already, or its client has gone."""
    return bool(request.finished or getattr(request, "_disconnected", False))


def send_json(request: Request, status: int, value: object) -> None:
    """
    Answer C{request} with C{status} and C{value} as JSON, and finish it;
    nothing if the client has gone already.
    """
    if gone(request):
        return
    body = json_body(value)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def send_error(request: Request, status: int, error: str, reason_code: int = 0) -> None:
    """
    Answer C{request} with an error: C{status}, and the body
    C{{"error": error, "reason_code": reason_code}}. A 401 carries the
    Basic authentication challenge, a 429 a C{Retry-After} of a minute (the
    authentication failure limit counts per minute).
    """
    if status == 401:
        request.setHeader(b"www-authenticate", REALM)
    elif status == 429:
        request.setHeader(b"retry-after", b"60")
    send_json(request, status, {"error": error, "reason_code": int(reason_code)})
