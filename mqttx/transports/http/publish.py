# -*- test-case-name: tests.transports.test_http_publish -*-
"""
C{POST /api/v1/publish}: publish one message.

Two forms:

  - Raw: C{POST /api/v1/publish?topic=T&qos=Q&retain=R} with the payload
    as the body. MQTT 5 properties come from headers: C{Content-Type}
    (the content type; not C{application/x-www-form-urlencoded}, which
    C{curl -d} sends by default), C{X-MQTT-Message-Expiry} (seconds),
    C{X-MQTT-Response-Topic}, C{X-MQTT-Correlation-Data} (base64),
    C{X-MQTT-Payload-Format} (C{0} bytes, C{1} UTF-8 text) and
    C{X-MQTT-User-Property: name=value} (repeated for several).
  - JSON: no C{topic} in the query and C{Content-Type: application/json}:
    the body is an object with C{topic}, C{payload} (text) or
    C{payload_base64}, C{qos}, C{retain}, C{content_type},
    C{user_properties} (an object, or a list of C{[name, value]} pairs),
    C{message_expiry}, C{response_topic}, C{correlation_data_base64} and
    C{payload_format}. (With a C{topic} in the query, a JSON body is a
    payload like any other, of content type C{application/json}.)

C{qos} is 0 (the default), 1 or 2; C{retain} C{true}/C{false} (or
C{1}/C{0}). A QoS 1 or 2 message is answered once the broker has accepted
it (PUBACK or PUBCOMP, after the store has written it when
C{persistence.durability} is C{sync}); QoS 0 once it is routed. Answers:
200 C{{"topic", "qos", "retain"}}; 400 for a bad topic, QoS, retain value,
JSON or base64; 401, 403, 429 (see L{mqttx.transports.http.auth}); 413 for
a body over C{mqtt.max_packet_size}; 405 for other methods; 503 while the
broker stops.
"""

from __future__ import annotations

import binascii
import json
from base64 import b64decode
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from twisted.logger import Logger
from twisted.web.server import NOT_DONE_YET, Request

from mqttx.broker.bridge import BridgeError
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.mqtt.topics import is_valid_topic_name

from .auth import Credentials, bridge_credentials, origin_for, refuse
from .errors import send_error, send_json
from .site import HTTPContext, JSONResource, answer_later

__all__ = ["BadRequest", "Message", "PublishResource", "parse_json_form", "parse_raw_form", "query_args"]

#: The largest four-byte integer (a message expiry interval).
_MAX_U32 = 0xFFFFFFFF


class BadRequest(Exception):
    """A request the bridge cannot make a message of (a 400), with why."""

    def __init__(self, message: str, reason_code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        super().__init__(message)
        self.reason_code = reason_code


@dataclass(frozen=True, slots=True)
class Message:
    """What a publish request asks to publish."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES


def query_args(request: Request) -> dict[str, list[str]]:
    """
    The query parameters of C{request}'s URL, decoded as UTF-8 (a request
    body is never read as parameters, whatever its content type).

    @raise BadRequest: if they are not UTF-8.
    """
    try:
        query = urlsplit(request.uri).query.decode("ascii")
        return parse_qs(query, keep_blank_values=True, errors="strict")
    except UnicodeError as e:
        raise BadRequest("the query is not UTF-8") from e


def _one(args: Mapping[str, list[str]], name: str) -> str | None:
    values = args.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest(f"{name} given more than once")
    return values[0]


def parse_qos(value: object) -> int:
    """A QoS from a query parameter or JSON: 0, 1 or 2."""
    if isinstance(value, bool):
        raise BadRequest("qos must be 0, 1 or 2", ReasonCode.QOS_NOT_SUPPORTED)
    if isinstance(value, str) and value in ("0", "1", "2"):
        return int(value)
    if isinstance(value, int) and 0 <= value <= 2:
        return value
    raise BadRequest("qos must be 0, 1 or 2", ReasonCode.QOS_NOT_SUPPORTED)


def parse_retain(value: object) -> bool:
    """A retain flag from a query parameter or JSON."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise BadRequest("retain must be true or false")


def _topic(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest("a topic is required", ReasonCode.TOPIC_NAME_INVALID)
    if not is_valid_topic_name(value):
        # [MQTT-3.3.2-2] no wildcards in a topic name.
        raise BadRequest(f"invalid topic name {value!r}", ReasonCode.TOPIC_NAME_INVALID)
    return value


def _base64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a base64 string")
    try:
        return b64decode(value, validate=True)
    except binascii.Error as e:
        raise BadRequest(f"{name} is not valid base64") from e


def _expiry(value: object, name: str) -> int:
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_U32:
        raise BadRequest(f"{name} must be a number of seconds from 0 to {_MAX_U32}")
    return value


def _payload_format(value: object) -> int:
    if not isinstance(value, bool) and value in (0, 1, "0", "1"):
        return int(value)
    raise BadRequest("payload format must be 0 (bytes) or 1 (UTF-8)")


def _user_properties(value: object) -> tuple[tuple[str, str], ...]:
    if isinstance(value, dict):
        pairs = list(value.items())
    elif isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        pairs = [(p[0], p[1]) for p in value]
    else:
        raise BadRequest("user_properties must be an object or a list of [name, value] pairs")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in pairs):
        raise BadRequest("user property names and values must be strings")
    return tuple(pairs)


def parse_raw_form(request: Request, args: Mapping[str, list[str]], body: bytes) -> Message:
    """
    The message of a raw publish request: topic, QoS and retain from the
    query, the body as payload, properties from the headers.

    @raise BadRequest: for what the module docstring says is a 400.
    """
    headers = request.requestHeaders
    content_type = request.getHeader(b"content-type")
    props: dict[str, Any] = {}
    if content_type and not content_type.lower().startswith(b"application/x-www-form-urlencoded"):
        props["content_type"] = _header_text(content_type, "Content-Type")
    if (expiry := request.getHeader(b"x-mqtt-message-expiry")) is not None:
        name = "X-MQTT-Message-Expiry"
        props["message_expiry_interval"] = _expiry(_header_text(expiry, name), name)
    if (response := request.getHeader(b"x-mqtt-response-topic")) is not None:
        props["response_topic"] = _topic(_header_text(response, "X-MQTT-Response-Topic"))
    if (correlation := request.getHeader(b"x-mqtt-correlation-data")) is not None:
        name = "X-MQTT-Correlation-Data"
        props["correlation_data"] = _base64(_header_text(correlation, name), name)
    if (payload_format := request.getHeader(b"x-mqtt-payload-format")) is not None:
        props["payload_format_indicator"] = _payload_format(_header_text(payload_format, "X-MQTT-Payload-Format"))
    pairs = []
    for raw in headers.getRawHeaders(b"x-mqtt-user-property", []):
        name, sep, value = _header_text(raw, "X-MQTT-User-Property").partition("=")
        if not sep or not name:
            raise BadRequest("X-MQTT-User-Property must be name=value")
        pairs.append((name.strip(), value.strip()))
    if pairs:
        props["user_property"] = tuple(pairs)
    return Message(
        topic=_topic(_one(args, "topic")),
        payload=body,
        qos=parse_qos(_one(args, "qos") or "0"),
        retain=parse_retain(_one(args, "retain") or "false"),
        properties=Properties(**props) if props else NO_PROPERTIES,
    )


def _header_text(value: bytes, name: str) -> str:
    try:
        return value.decode("utf-8").strip()
    except UnicodeDecodeError as e:
        raise BadRequest(f"{name} is not UTF-8") from e


_JSON_KEYS = frozenset(
    {
        "topic", "payload", "payload_base64", "qos", "retain", "content_type", "user_properties",
        "message_expiry", "response_topic", "correlation_data_base64", "payload_format",
    }
)


def parse_json_form(body: bytes) -> Message:
    """
    The message of a JSON publish request.

    @raise BadRequest: for what the module docstring says is a 400.
    """
    try:
        form = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BadRequest(f"the body is not JSON: {e}") from e
    if not isinstance(form, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(form) - _JSON_KEYS)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    if "payload" in form and "payload_base64" in form:
        raise BadRequest("payload and payload_base64 are exclusive")
    if "payload_base64" in form:
        payload = _base64(form["payload_base64"], "payload_base64")
    else:
        text = form.get("payload", "")
        if not isinstance(text, str):
            raise BadRequest("payload must be a string (use payload_base64 for bytes)")
        payload = text.encode("utf-8")
    props: dict[str, Any] = {}
    if (content_type := form.get("content_type")) is not None:
        if not isinstance(content_type, str):
            raise BadRequest("content_type must be a string")
        props["content_type"] = content_type
    if (expiry := form.get("message_expiry")) is not None:
        props["message_expiry_interval"] = _expiry(expiry, "message_expiry")
    if (response := form.get("response_topic")) is not None:
        props["response_topic"] = _topic(response)
    if (correlation := form.get("correlation_data_base64")) is not None:
        props["correlation_data"] = _base64(correlation, "correlation_data_base64")
    if (payload_format := form.get("payload_format")) is not None:
        props["payload_format_indicator"] = _payload_format(payload_format)
    if (user := form.get("user_properties")) is not None:
        props["user_property"] = _user_properties(user)
    return Message(
        topic=_topic(form.get("topic")),
        payload=payload,
        qos=parse_qos(form.get("qos", 0)),
        retain=parse_retain(form.get("retain", False)),
        properties=Properties(**props) if props else NO_PROPERTIES,
    )


def _is_json(request: Request) -> bool:
    content_type = request.getHeader(b"content-type") or b""
    return content_type.split(b";")[0].strip().lower() == b"application/json"


class PublishResource(JSONResource):
    """C{POST /api/v1/publish} (see the module docstring)."""

    isLeaf = True
    log = Logger()

    def __init__(self, context: HTTPContext) -> None:
        super().__init__()
        self._context = context

    def render_POST(self, request: Request) -> int:
        creds = bridge_credentials(self._context, request)
        if creds is None:
            return NOT_DONE_YET
        assert request.content is not None
        request.content.seek(0)
        body = request.content.read()
        try:
            args = query_args(request)
            if "topic" not in args and _is_json(request):
                message = parse_json_form(body)
            else:
                message = parse_raw_form(request, args, body)
        except BadRequest as e:
            self.log.debug("bad publish request: {error}", error=str(e), event_id="http.bad_request")
            send_error(request, 400, str(e), e.reason_code)
            return NOT_DONE_YET
        answer_later(request, self._publish(request, creds, message))
        return NOT_DONE_YET

    async def _publish(self, request: Request, creds: Credentials, message: Message) -> None:
        context = self._context
        origin = origin_for(context, request, creds, "")
        try:
            await context.bridge.publish_once(
                origin, message.topic, message.payload, message.qos, message.retain, message.properties
            )
        except BridgeError as e:
            refuse(request, e, creds, "publish")
            return
        send_json(request, 200, {"topic": message.topic, "qos": message.qos, "retain": message.retain})
