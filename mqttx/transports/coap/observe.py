# -*- test-case-name: tests.transports.coap.test_resources -*-
"""
CoAP observations (RFC 7641) of MQTT topic filters, transport-independent.

Each observation is one bridge client subscribed to the filter (so ACLs,
retained messages, metrics and slow-consumer handling apply as for an MQTT
subscriber). Messages it receives become notifications: a 2.05 with an
Observe sequence number that increases by one per notification, modulo
2**24 (section 4.4), confirmable at least every C{confirmable_every}
notifications and at least once a day (section 4.5) so that a gone
observer is found out.

Back-pressure: while a confirmable notification is unacknowledged, no
other notification is sent to the observer (RFC 7252 section 4.7, NSTART
1); the messages wait in a short queue and the bridge client is paused, so
the broker treats the observer as a slow consumer (QoS 0 dropped beyond
the allowance, QoS 1/2 queued up to the session limit). The protocol calls
L{Observation.acknowledged} on the ACK, and L{Observation.close} on an RST
or when the message layer gives up on the notification.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from mqttx.broker.bridge import BridgeClient, BridgeError, Delivery
from mqttx.mqtt.reason_codes import ReasonCode
from mqttx.transports.coap.codec import Code
from mqttx.transports.coap.resources import (
    BadRequest,
    PubSub,
    Request,
    Response,
    Source,
    diagnostic,
    refusal,
    response_for_delivery,
    topic_of,
)

__all__ = ["Notification", "Observation", "observe"]

#: Sequence numbers are 24 bits (RFC 7641 section 4.4).
SEQUENCE_MODULO = 1 << 24
#: Seconds after which a notification is confirmable whatever the count
#: (RFC 7641 section 4.5: at least every 24 hours).
CONFIRMABLE_INTERVAL = 86400.0
#: Messages kept for an observer while its confirmable notification is
#: unacknowledged; beyond that the oldest are dropped (the broker, which sees
#: the observer paused, keeps QoS 1/2 messages queued for it).
QUEUE_LIMIT = 256


@dataclass(frozen=True, slots=True)
class Notification:
    """
    One notification to send.

    @ivar sequence: the Observe option's value.
    @ivar confirmable: send it as a CON message.
    """

    response: Response
    sequence: int
    confirmable: bool


class Observation:
    """
    One observer (a source address and token) of one topic filter.

    @ivar key: the protocol's key for it (address and token).
    @ivar topic_filter: what it observes.
    @ivar sequence: the last Observe value sent.
    @ivar unacknowledged: whether a confirmable notification awaits its ACK.
    @ivar dropped: messages dropped from the queue while waiting.
    @ivar wildcard: whether the topic filter has wildcards.
    @ivar client: its bridge client, once admitted.
    """

    log = Logger()

    def __init__(
        self,
        key: object,
        topic_filter: str,
        source: Source,
        send: Callable[[Observation, Notification], None],
        on_end: Callable[[Observation], None],
        *,
        confirmable_every: int,
        clock: IReactorTime,
    ) -> None:
        """
        @param send: sends a notification to the observer; the protocol
            calls L{acknowledged} when a confirmable one is acknowledged.
        @param on_end: called once when the observation ends, whoever
            ended it (L{close}, or the broker ending the bridge client).
        """
        self.key = key
        self.topic_filter = topic_filter
        self.source = source
        self.sequence = 0
        self.unacknowledged = False
        self.dropped = 0
        self.closed = False
        self.client: BridgeClient | None = None
        self._send = send
        self._on_end = on_end
        self._every = confirmable_every
        self._since_confirmable = 0
        self._clock = clock
        self._confirmed_at = clock.seconds()
        self.wildcard = "+" in topic_filter or "#" in topic_filter
        self._queue: deque[Delivery] = deque()
        self._started = False

    def next_sequence(self) -> int:
        """Advance and return the Observe sequence number (24-bit wrap)."""
        self.sequence = (self.sequence + 1) % SEQUENCE_MODULO
        return self.sequence

    def deliver(self, delivery: Delivery) -> None:
        """The bridge client received a message: notify, or queue it while waiting."""
        if self.closed:
            return
        if not self._started or self.unacknowledged:
            self._queue.append(delivery)
            if len(self._queue) > QUEUE_LIMIT:
                self._queue.popleft()
                self.dropped += 1
            return
        self._notify(delivery)

    def start(self) -> None:
        """The registration response went out: send what waited meanwhile."""
        self._started = True
        self._drain()

    def acknowledged(self) -> None:
        """The outstanding confirmable notification was acknowledged."""
        if not self.unacknowledged:
            return
        self.unacknowledged = False
        if self.client is not None and not self.closed:
            self.client.resume()
        self._drain()

    def close(self) -> None:
        """End the observation: its bridge client disconnects."""
        if self.closed:
            return
        self.closed = True
        self._queue.clear()
        if self.client is not None:
            self.client.close()
        self._on_end(self)

    def take_initial(self, topic: str) -> Delivery | None:
        """
        The retained message that answers the registration of an exact
        topic (taken out of the queue), if it arrived.
        """
        for delivery in self._queue:
            if delivery.retain and delivery.topic == topic and delivery.payload:
                self._queue.remove(delivery)
                return delivery
        return None

    def _drain(self) -> None:
        while self._queue and not self.unacknowledged and not self.closed:
            self._notify(self._queue.popleft())

    def _notify(self, delivery: Delivery) -> None:
        if not delivery.payload and delivery.retain:
            # A retained message being cleared is not a state to show.
            return
        self._since_confirmable += 1
        now = self._clock.seconds()
        confirmable = self._since_confirmable >= self._every or now - self._confirmed_at >= CONFIRMABLE_INTERVAL
        if confirmable:
            self._since_confirmable = 0
            self._confirmed_at = now
            self.unacknowledged = True
            if self.client is not None:
                self.client.pause()
        response = response_for_delivery(delivery, location=self.wildcard)
        self._send(self, Notification(response, self.next_sequence(), confirmable))


def observe(
    pubsub: PubSub,
    request: Request,
    source: Source,
    key: object,
    client_id: str,
    send: Callable[[Observation, Notification], None],
    on_end: Callable[[Observation], None],
    *,
    confirmable_every: int,
    clock: IReactorTime,
) -> Deferred[tuple[Response, Observation | None]]:
    """
    Register an observation (GET with Observe=0).

    The registration's response is the topic's retained message for an
    exact topic (2.05 with an empty payload when it has none, so that a
    client can wait for the first message), and a 2.05 with an empty
    payload for a wildcard filter, whose retained messages then follow as
    notifications. On a refusal the response is the error and there is no
    observation.

    @param key: the protocol's key of the observation.
    @param client_id: the bridge client's identifier.
    @param send: sends the observation's notifications.
    @param on_end: called when the observation ends (L{Observation}).
    @return: fires with the response and the observation (started once the
        caller has sent the response: call L{Observation.start}); never fails.
    """

    async def run() -> tuple[Response, Observation | None]:
        if not source.rule.subscribe:
            return diagnostic(Code.FORBIDDEN, "this source may not subscribe"), None
        try:
            topic_filter = topic_of(request.path, wildcards=True)
            if request.query:
                raise BadRequest("GET takes no query")
        except BadRequest as e:
            return diagnostic(Code.BAD_REQUEST, str(e)), None
        observation = Observation(
            key, topic_filter, source, send, on_end, confirmable_every=confirmable_every, clock=clock
        )
        try:
            client = await pubsub.bridge.connect(pubsub.origin(source, client_id))
        except BridgeError as e:
            return refusal(e), None
        observation.client = client
        client.closed.addBoth(lambda _: observation.close())
        try:
            # QoS 1: while the observer is paused the broker queues rather than drops.
            granted = await client.subscribe([(topic_filter, 1)], observation.deliver)
        except BridgeError as e:
            observation.close()
            return refusal(e), None
        if not granted or granted[0] >= 0x80:
            observation.close()
            code = granted[0] if granted else ReasonCode.UNSPECIFIED_ERROR
            return refusal(BridgeError(code, "subscription refused")), None
        # The retained messages were delivered (queued) before subscribe() returned.
        if observation.closed:
            return diagnostic(Code.SERVICE_UNAVAILABLE, "observation ended"), None
        initial = None if observation.wildcard else observation.take_initial(topic_filter)
        if initial is None:
            return Response(Code.CONTENT), observation
        return response_for_delivery(initial), observation

    return Deferred.fromCoroutine(run())
