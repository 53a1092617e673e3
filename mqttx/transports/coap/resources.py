# -*- test-case-name: tests.transports.coap.test_resources -*-
"""
The CoAP bridge's resources: C{/ps/{topic...}}, an MQTT topic per path.

Transport-independent: a L{Request} comes in (already reassembled from
Block1 blocks), a L{Response} goes out; the broker is reached only through
the bridge API (L{mqttx.broker.bridge}), as the user of the source address's
rule (L{CoAPRule}), so ACLs, retained messages and metrics apply as for MQTT
clients.

  - POST or PUT publishes the payload. Uri-Query C{qos=0|1|2} (default 0)
    and C{retain=true|false} (default false); Content-Format becomes the
    MQTT 5 content type (L{CONTENT_FORMATS}, an unknown number as its
    decimal text). 2.04 Changed once the broker took the message (QoS 1/2:
    once it acknowledged it); PUT answers 2.04 too, even for a new topic.
  - GET returns the retained message of a topic (2.05, Content-Format from
    its content type, Max-Age from its expiry), or 4.04. A wildcard filter
    without Observe is 4.00: there is no one representation to return.
    It is read with L{mqttx.broker.bridge.BridgeClient.retained} through
    the user's cached client, the one its publishes use: polling admits no
    client per GET.
  - GET with Observe=0 observes a topic filter (C{+} and C{#} path
    segments are MQTT wildcards): see L{mqttx.transports.coap.observe}.
  - DELETE clears the retained message (an empty retained publish): 2.02.

Refusals: 4.00 for a bad topic or query, 4.03 when the rule or an ACL
denies, 4.13 above C{max_payload}, 5.03 while the broker is stopping.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from mqttx.broker.bridge import Bridge, BridgeError, Delivery, Origin
from mqttx.config import CoAPRule
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.mqtt.topics import is_valid_topic_filter, is_valid_topic_name
from mqttx.transports.address import describe_host_port
from mqttx.transports.coap.codec import Code

__all__ = [
    "CONTENT_FORMATS",
    "PubSub",
    "Request",
    "Response",
    "Source",
    "content_format_of",
    "content_type_of",
    "response_for_delivery",
]

#: The first path segment of the pub/sub resources.
PREFIX = "ps"
#: Max-Age of a representation whose message has no expiry (RFC 7252's default).
DEFAULT_MAX_AGE = 60


#: Method codes (RFC 7252 section 12.1.1).
GET, POST, PUT, DELETE = Code.GET, Code.POST, Code.PUT, Code.DELETE

#: CoAP Content-Formats (RFC 7252 section 12.3 and the IANA registry) and
#: the MQTT 5 content type each is carried as.
CONTENT_FORMATS: dict[int, str] = {
    0: "text/plain;charset=utf-8",
    40: "application/link-format",
    41: "application/xml",
    42: "application/octet-stream",
    47: "application/exi",
    50: "application/json",
    51: "application/json-patch+json",
    52: "application/merge-patch+json",
    60: "application/cbor",
    61: "application/cwt",
    110: "application/senml+json",
    111: "application/sensml+json",
    112: "application/senml+cbor",
    113: "application/sensml+cbor",
    310: "application/senml+xml",
    311: "application/sensml+xml",
}
_FORMAT_OF = {media: number for number, media in CONTENT_FORMATS.items()}
_FORMAT_OF["text/plain"] = 0


def content_type_of(content_format: int | None) -> str | None:
    """
    The MQTT 5 content type a CoAP Content-Format is carried as: its media
    type, or the number in decimal if it has none here.
    """
    if content_format is None:
        return None
    return CONTENT_FORMATS.get(content_format, str(content_format))


def content_format_of(content_type: str | None) -> int | None:
    """
    The CoAP Content-Format of an MQTT 5 content type (the reverse of
    L{content_type_of}), or L{None} if it has none.
    """
    if not content_type:
        return None
    if content_type.isdigit() and int(content_type) <= 0xFFFF:
        return int(content_type)
    return _FORMAT_OF.get(content_type.replace(" ", "").lower())


@dataclass(frozen=True, slots=True)
class Source:
    """
    Who made a request: the source address and the rule that matched it.
    """

    host: str
    port: int
    rule: CoAPRule

    @property
    def peer(self) -> str:
        """The address for log lines: C{host:port}, an IPv6 host in brackets."""
        return describe_host_port(self.host, self.port)


@dataclass(frozen=True, slots=True)
class Request:
    """
    A CoAP request for a C{/ps/} resource, payload reassembled.

    @ivar method: the method code (L{GET}, L{POST}, L{PUT}, L{DELETE}).
    @ivar path: the Uri-Path segments, C{"ps"} included.
    @ivar query: the Uri-Query options.
    """

    method: int
    path: tuple[str, ...]
    query: tuple[str, ...] = ()
    payload: bytes = b""
    content_format: int | None = None


@dataclass(frozen=True, slots=True)
class Response:
    """
    A CoAP response (or notification) before block-wise slicing.

    @ivar location: the topic levels a wildcard observation's notification
        carries as Location-Path, so the observer knows the topic.
    """

    code: int
    payload: bytes = b""
    content_format: int | None = None
    max_age: int | None = None
    location: tuple[str, ...] = ()


class BadRequest(Exception):
    """A request's path or query is not acceptable (4.00, with this diagnostic)."""


def topic_of(path: Sequence[str], *, wildcards: bool) -> str:
    """
    The topic name (or filter) of a C{/ps/...} path.

    @raise BadRequest: if it is not a valid one.
    """
    if len(path) < 2 or path[0] != PREFIX:
        raise BadRequest("not a /ps/{topic} resource")
    levels = path[1:]
    if any("/" in level for level in levels):
        raise BadRequest("a topic level cannot hold '/'")
    topic = "/".join(levels)
    valid = is_valid_topic_filter(topic) if wildcards else is_valid_topic_name(topic)
    if not valid or topic.startswith("$"):
        raise BadRequest(f"invalid topic {'filter' if wildcards else 'name'}")
    return topic


def publish_options(query: Sequence[str]) -> tuple[int, bool]:
    """
    The QoS and retain flag of a publish's Uri-Query.

    @raise BadRequest: for an unknown parameter or a bad value.
    """
    qos, retain = 0, False
    for item in query:
        name, _, value = item.partition("=")
        if name == "qos" and value in ("0", "1", "2"):
            qos = int(value)
        elif name == "retain" and value in ("true", "false", "1", "0"):
            retain = value in ("true", "1")
        else:
            raise BadRequest(f"bad query parameter {item[:40]!r} (qos=0|1|2, retain=true|false)")
    return qos, retain


def max_age_of(properties: Properties) -> int:
    """Max-Age for a message: its remaining expiry, else L{DEFAULT_MAX_AGE}."""
    expiry = properties.message_expiry_interval
    return DEFAULT_MAX_AGE if expiry is None else expiry


def response_for_delivery(delivery: Delivery, *, location: bool = False) -> Response:
    """The 2.05 representation of a delivered (or retained) message."""
    props = delivery.properties
    return Response(
        Code.CONTENT,
        delivery.payload,
        content_format_of(props.content_type),
        max_age_of(props),
        tuple(delivery.topic.split("/")) if location else (),
    )


#: The CoAP answer to a bridge refusal, by MQTT 5 reason code.
_REFUSALS: dict[int, int] = {
    ReasonCode.NOT_AUTHORIZED: Code.FORBIDDEN,
    ReasonCode.BAD_USER_NAME_OR_PASSWORD: Code.FORBIDDEN,
    ReasonCode.BANNED: Code.FORBIDDEN,
    ReasonCode.CLIENT_IDENTIFIER_NOT_VALID: Code.BAD_REQUEST,
    ReasonCode.TOPIC_NAME_INVALID: Code.BAD_REQUEST,
    ReasonCode.TOPIC_FILTER_INVALID: Code.BAD_REQUEST,
    ReasonCode.PAYLOAD_FORMAT_INVALID: Code.BAD_REQUEST,
    ReasonCode.QOS_NOT_SUPPORTED: Code.BAD_REQUEST,
    ReasonCode.RETAIN_NOT_SUPPORTED: Code.BAD_REQUEST,
    ReasonCode.WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: Code.BAD_REQUEST,
    ReasonCode.PACKET_TOO_LARGE: Code.REQUEST_ENTITY_TOO_LARGE,
    ReasonCode.QUOTA_EXCEEDED: Code.TOO_MANY_REQUESTS,
    ReasonCode.CONNECTION_RATE_EXCEEDED: Code.TOO_MANY_REQUESTS,
    ReasonCode.MESSAGE_RATE_TOO_HIGH: Code.TOO_MANY_REQUESTS,
    ReasonCode.SERVER_UNAVAILABLE: Code.SERVICE_UNAVAILABLE,
    ReasonCode.SERVER_BUSY: Code.SERVICE_UNAVAILABLE,
    ReasonCode.SERVER_SHUTTING_DOWN: Code.SERVICE_UNAVAILABLE,
}


def refusal(error: BridgeError) -> Response:
    """The response for a refusal by the broker, its message as diagnostic payload."""
    code = _REFUSALS.get(error.reason_code, Code.INTERNAL_SERVER_ERROR)
    return Response(code, error.message.encode("utf-8")[:120])


def diagnostic(code: int, text: str) -> Response:
    """An error response with a diagnostic payload (RFC 7252 section 5.5.2)."""
    return Response(code, text.encode("utf-8"))


class PubSub:
    """
    The C{/ps/} resources of one CoAP listener, for everything but
    observations (which L{mqttx.transports.coap.observe} keeps).

    @ivar bridge: the way into the broker.
    @ivar listener: the listener's name, for the bridge's origins.
    """

    log = Logger()

    def __init__(
        self,
        bridge: Bridge,
        listener: str,
        *,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """
        @param stopping: whether the broker is shutting down (then 5.03).
        """
        self.bridge = bridge
        self.listener = listener
        self._stopping = stopping

    def origin(self, source: Source, client_id: str = "") -> Origin:
        """
        The bridge origin of a request from C{source}: its rule's user,
        vouched for by the rule (no password is checked). Without
        C{client_id}, publishes and GETs share one cached client per user
        (L{Bridge.publish_once}, L{Bridge.cached_client}).
        """
        return Origin(self.listener, source.peer, client_id, source.rule.username, verified=True)

    def handle(self, request: Request, source: Source) -> Deferred[Response]:
        """
        Answer a POST, PUT, GET (without Observe) or DELETE.

        @return: fires with the response; never fails.
        """
        return Deferred.fromCoroutine(self._handle(request, source))

    async def _handle(self, request: Request, source: Source) -> Response:
        if self._stopping():
            return diagnostic(Code.SERVICE_UNAVAILABLE, "shutting down")
        try:
            if request.method in (POST, PUT):
                return await self._publish(request, source)
            if request.method == GET:
                return await self._get(request, source)
            if request.method == DELETE:
                return await self._delete(request, source)
        except BadRequest as e:
            return diagnostic(Code.BAD_REQUEST, str(e))
        except BridgeError as e:
            return refusal(e)
        return Response(Code.METHOD_NOT_ALLOWED)

    async def _publish(self, request: Request, source: Source) -> Response:
        if not source.rule.publish:
            return diagnostic(Code.FORBIDDEN, "this source may not publish")
        topic = topic_of(request.path, wildcards=False)
        qos, retain = publish_options(request.query)
        content_type = content_type_of(request.content_format)
        props = NO_PROPERTIES if content_type is None else Properties(content_type=content_type)
        await self.bridge.publish_once(self.origin(source), topic, request.payload, qos, retain, props)
        return Response(Code.CHANGED)

    async def _delete(self, request: Request, source: Source) -> Response:
        if not source.rule.publish:
            return diagnostic(Code.FORBIDDEN, "this source may not publish")
        topic = topic_of(request.path, wildcards=False)
        if request.query:
            raise BadRequest("DELETE takes no query")
        # An empty retained message clears the topic's [MQTT-3.3.1-6].
        await self.bridge.publish_once(self.origin(source), topic, b"", 0, True, NO_PROPERTIES)
        return Response(Code.DELETED)

    async def _get(self, request: Request, source: Source) -> Response:
        if not source.rule.subscribe:
            return diagnostic(Code.FORBIDDEN, "this source may not subscribe")
        topic = topic_of(request.path, wildcards=True)
        if "+" in topic or "#" in topic:
            raise BadRequest("GET of a wildcard filter needs Observe")
        if request.query:
            raise BadRequest("GET takes no query")
        retained = await self.retained(source, topic)
        if retained is None:
            return Response(Code.NOT_FOUND)
        return response_for_delivery(retained)

    async def retained(self, source: Source, topic: str) -> Delivery | None:
        """
        The retained message of C{topic} as C{source}'s user may read it
        (ACLs applied), read through the user's cached bridge client, the
        one its publishes use (L{Bridge.cached_client}): polling GETs admit
        no client of their own.

        @raise BridgeError: if the client is refused or may not read C{topic}.
        """
        client = await self.bridge.cached_client(self.origin(source))
        return client.retained(topic, 0)


def client_id_of(source: Source) -> str:
    """The client id prefix of C{source}'s bridge clients: C{coap-HOST-PORT}."""
    return f"coap-{source.host}-{source.port}"
