# -*- test-case-name: tests.transports.test_http_subscribe -*-
"""
C{GET /api/v1/subscribe}: a server-sent-events stream of the messages of
one or more topic filters.

Query: C{filter} (one or more; wildcards allowed), C{qos} (the maximum QoS
for every filter, 0 by default) and C{client_id} (optional). Each message
is one event::

    event: message
    id: 42
    data: {"topic": "a/b", "payload": "21.5", "qos": 1, "retain": false,
           "properties": {"content_type": "text/plain"}}

(on one line). A payload that is not UTF-8 comes as C{payload_base64}
with C{"encoding": "base64"}. C{properties} holds what the message has of
C{content_type}, C{payload_format}, C{message_expiry} (seconds left),
C{response_topic}, C{correlation_data_base64} and C{user_properties} (a
list of C{[name, value]} pairs) — the names of the JSON publish form. A
comment line is sent every C{http.heartbeat_interval} seconds; when the
broker ends the stream's client (shutdown, takeover, kick) a C{close}
event with its reason code ends the response.

Without C{client_id} each stream is a new MQTT session that ends with it.
With C{client_id}, the stream's session outlives it for
C{http.session_expiry} seconds: a request that also sends C{Last-Event-ID}
(as a browser's C{EventSource} does when it reconnects) resumes it, and
gets what was queued meanwhile; without C{Last-Event-ID} it starts a new
one. Event ids continue from C{Last-Event-ID}.

Refusals come before the stream starts, as JSON errors: 400 (bad filter or
QoS), 401/403/429 (see L{mqttx.transports.http.auth}; a filter the ACLs
deny is a 403), 503 while the broker stops.

A reader that does not keep up is a slow consumer like an MQTT one: the
stream is the HTTP transport's push producer, and while the transport's
buffer is full the stream's client is paused (QoS 0 messages over the
allowance dropped, QoS 1 and 2 queued up to C{mqtt.max_queued_messages}).
"""

from __future__ import annotations

import json
from base64 import b64encode
from typing import Any

from twisted.internet.interfaces import IPushProducer
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET, Request
from zope.interface import implementer

from mqttx.broker.admin import properties_to_json
from mqttx.broker.bridge import BridgeClient, BridgeError, Delivery
from mqttx.mqtt.reason_codes import ReasonCode, describe

from .auth import Credentials, bridge_credentials, origin_for, peer_of, refuse
from .errors import gone, send_error
from .publish import BadRequest, parse_qos, query_args
from .site import HTTPContext, JSONResource, answer_later

__all__ = ["EventStream", "SubscribeResource", "message_event"]

#: The reconnection delay a browser's EventSource is told, in milliseconds.
RETRY_MS = 3000


def delivery_json(delivery: Delivery) -> dict[str, Any]:
    """The C{data} of the event for C{delivery}."""
    event: dict[str, Any] = {"topic": delivery.topic}
    try:
        event["payload"] = delivery.payload.decode("utf-8")
    except UnicodeDecodeError:
        event["payload_base64"] = b64encode(delivery.payload).decode("ascii")
        event["encoding"] = "base64"
    event["qos"] = delivery.qos
    event["retain"] = delivery.retain
    event["properties"] = properties_to_json(delivery.properties)
    return event


def message_event(sequence: int, delivery: Delivery) -> bytes:
    """One C{message} event, framed for the stream."""
    data = json.dumps(delivery_json(delivery), separators=(",", ":"), ensure_ascii=False)
    return b"event: message\nid: %d\ndata: %s\n\n" % (sequence, data.encode("utf-8"))


@implementer(IPushProducer)
class EventStream:
    """
    One open event stream: writes a subscriber's deliveries to its
    response, and is the response's push producer, so the transport's
    back-pressure pauses the subscriber's client.

    @ivar sequence: the id of the last event written.
    """

    log = Logger()

    def __init__(self, request: Request, context: HTTPContext, first_id: int = 1) -> None:
        self._request = request
        self._context = context
        self.sequence = first_id - 1
        self.client: BridgeClient | None = None
        self._pending: list[Delivery] | None = []
        self._heartbeat: LoopingCall | None = None
        self.done = False

    def deliver(self, delivery: Delivery) -> None:
        """The bridge's callback: one message for the stream."""
        if self._pending is not None:
            # The SUBACK is not yet answered: the stream has not started.
            self._pending.append(delivery)
            return
        if self.done:
            return
        self.sequence += 1
        self._request.write(message_event(self.sequence, delivery))

    def start(self, client: BridgeClient) -> None:
        """The subscription is granted: answer 200 and stream."""
        self.client = client
        request = self._request
        request.setResponseCode(200)
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        request.setHeader(b"x-accel-buffering", b"no")
        request.write(b"retry: %d\n\n" % RETRY_MS)
        pending, self._pending = self._pending or [], None
        for delivery in pending:
            self.deliver(delivery)
        request.registerProducer(self, True)
        http = self._context.listener.http
        interval = http.heartbeat_interval if http is not None else 15.0
        heartbeat = self._heartbeat = LoopingCall(self._beat)
        heartbeat.clock = self._context.clock
        heartbeat.start(interval, now=False)
        request.notifyFinish().addBoth(self._gone)
        client.closed.addCallback(self._ended)

    def discard(self) -> None:
        """The subscription is refused: forget what came meanwhile."""
        self._pending = None
        self.done = True

    def _beat(self) -> None:
        if not self.done:
            self._request.write(b": heartbeat\n\n")

    def _stop(self) -> None:
        self.done = True
        if self._heartbeat is not None and self._heartbeat.running:
            self._heartbeat.stop()
        self._heartbeat = None

    def _gone(self, result: object) -> None:
        """The response is over: the reader went away, or it was ended."""
        if self.done:
            return
        self._stop()
        client = self.client
        if client is not None and not client.ended:
            # A normal DISCONNECT: a named client keeps its session.
            client.close()
        if isinstance(result, Failure):
            self.log.debug(
                "event stream of {client_id!r} to {peer} closed by the reader",
                client_id=client.client_id if client else None,
                peer=peer_of(self._request),
                event_id="http.stream_closed",
            )

    def _ended(self, code: ReasonCode) -> ReasonCode:
        """The broker ended the stream's client: end the response."""
        if self.done:
            return code
        self._stop()
        request = self._request
        data = json.dumps({"reason_code": int(code), "reason": describe(code)}, separators=(",", ":"))
        request.write(b"event: close\ndata: %s\n\n" % data.encode("utf-8"))
        request.unregisterProducer()
        request.finish()
        return code

    # IPushProducer: the HTTP channel relays its transport's back-pressure.

    def pauseProducing(self) -> None:
        if self.client is not None and not self.done:
            self.client.pause()

    def resumeProducing(self) -> None:
        if self.client is not None and not self.done:
            self.client.resume()

    def stopProducing(self) -> None:
        self._gone(Failure(ConnectionError("stopped")))


class SubscribeResource(JSONResource):
    """C{GET /api/v1/subscribe} (see the module docstring)."""

    isLeaf = True
    log = Logger()

    def __init__(self, context: HTTPContext) -> None:
        super().__init__()
        self._context = context

    def render_HEAD(self, request: Request) -> bytes:
        """The headers a stream would have, without one (nor a session)."""
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-cache")
        return b""

    def render_GET(self, request: Request) -> int:
        creds = bridge_credentials(self._context, request)
        if creds is None:
            return NOT_DONE_YET
        try:
            args = query_args(request)
            filters = args.get("filter") or []
            if not filters or not all(filters):
                raise BadRequest("at least one non-empty filter is required", ReasonCode.TOPIC_FILTER_INVALID)
            qos_values = args.get("qos") or ["0"]
            if len(qos_values) > 1:
                raise BadRequest("qos given more than once")
            qos = parse_qos(qos_values[0])
            client_ids = args.get("client_id") or []
            if len(client_ids) > 1 or (client_ids and not client_ids[0]):
                raise BadRequest("client_id must be given once, not empty", ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)
        except BadRequest as e:
            send_error(request, 400, str(e), e.reason_code)
            return NOT_DONE_YET
        client_id = client_ids[0] if client_ids else None
        last_event = request.getHeader(b"last-event-id")
        answer_later(request, self._subscribe(request, creds, [(f, qos) for f in filters], client_id, last_event))
        return NOT_DONE_YET

    async def _subscribe(
        self,
        request: Request,
        creds: Credentials,
        filters: list[tuple[str, int]],
        client_id: str | None,
        last_event: bytes | None,
    ) -> None:
        context = self._context
        http = context.listener.http
        origin = origin_for(context, request, creds, client_id)
        resume = client_id is not None and last_event is not None
        expiry = (http.session_expiry if http is not None else 0) if client_id is not None else 0
        first_id = 1
        if resume and last_event is not None and last_event.strip().isdigit():
            first_id = int(last_event.strip()) + 1
        stream = EventStream(request, context, first_id)
        try:
            client = await context.bridge.connect(origin, clean_start=not resume, session_expiry=expiry)
        except BridgeError as e:
            refuse(request, e, creds, "subscribe")
            return
        if gone(request):
            client.close()
            return
        try:
            # A resumed stream does not get the retained messages of the
            # filters it was subscribed to again (MQTT 5 Retain Handling 1).
            codes = await client.subscribe(filters, stream.deliver, retain_handling=1 if resume else 0)
        except BridgeError as e:
            stream.discard()
            client.close()
            refuse(request, e, creds, "subscribe")
            return
        refused = [(f, code) for (f, _), code in zip(filters, codes, strict=True) if code >= 0x80]
        if refused:
            stream.discard()
            client.close()
            topic_filter, code = refused[0]
            refuse(request, BridgeError(code, f"subscription to {topic_filter!r} refused"), creds, "subscribe")
            return
        if gone(request) or client.ended:
            stream.discard()
            client.close()
            return
        self.log.debug(
            "event stream of {client_id!r} to {peer} started ({resumed})",
            client_id=client.client_id,
            peer=origin.peer,
            resumed="session resumed" if client.session_present else "new session",
            event_id="http.stream_started",
        )
        stream.start(client)
