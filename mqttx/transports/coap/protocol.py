# -*- test-case-name: tests.transports.coap.test_protocol -*-
"""
The CoAP bridge's Twisted side: a L{DatagramProtocol} that drives the
sans-IO message layer (L{MessageLayer}) with the reactor's clock and hands
requests to the C{/ps/} resources (L{PubSub}, L{observe}).

Per request, in order: the source-address rules (no matching rule: 4.03,
logged once per address), the per-source rate limit (4.29 with Max-Age,
RFC 8516), critical options it does not know (4.02), the path (4.04 outside
C{/ps/}), Block1 reassembly (RFC 7959; 4.08, 4.13), then the resource.
Responses larger than a block go out block-wise (Block2, with an ETag and
Size2); the representation is kept for a while per source and path so the
later blocks come from the same one.

A response that is not ready at once (a QoS 1/2 publish waits for the
broker's acknowledgement) is piggybacked if it comes within
L{PIGGYBACK_DELAY}, else the request is acknowledged and the response is
sent separately.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, cast

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from mqttx.broker.bridge import Bridge
from mqttx.config import CoAPConfig
from mqttx.transports.address import describe_host_port
from mqttx.transports.coap.access import RateLimiter, Rules
from mqttx.transports.coap.blockwise import (
    Block1Assembler,
    Block1Continue,
    Block1Error,
    etag_for,
    slice_block2,
)
from mqttx.transports.coap.codec import (
    BlockValue,
    CoAPOptionError,
    Code,
    Message,
    MessageType,
    Option,
    OptionNumber,
    path_options,
)
from mqttx.transports.coap.messages import (
    EXCHANGE_LIFETIME,
    Acknowledged,
    Duplicate,
    Event,
    Malformed,
    MessageLayer,
    Received,
    Remote,
    Reset,
    TimedOut,
    Transmit,
)
from mqttx.transports.coap.observe import Notification, Observation, observe
from mqttx.transports.coap.resources import (
    GET,
    PREFIX,
    PubSub,
    Request,
    Response,
    Source,
    client_id_of,
    diagnostic,
)

__all__ = ["PIGGYBACK_DELAY", "CoAPDatagramProtocol"]

#: Seconds a response may take and still be piggybacked on the ACK.
PIGGYBACK_DELAY = 0.5
#: Seconds the blocks of a response (Block2) or request (Block1) are kept.
TRANSFER_LIFETIME = EXCHANGE_LIFETIME
#: Block-wise transfers kept at once, over all sources.
MAX_TRANSFERS = 1024
#: Bytes of Block2 representations kept at once, over all sources.
MAX_KEPT_BYTES = 16 * 1024 * 1024
#: Addresses whose refusal was logged, remembered so it is logged once.
MAX_LOGGED_SOURCES = 4096

Address = tuple[str, int]
_ObservationKey = tuple[str, int, bytes]
_TransferKey = tuple[str, int, tuple[str, ...]]


@dataclass(slots=True)
class _Representation:
    """A response body being fetched block by block (Block2)."""

    response: Response
    etag: bytes
    expires: float


@dataclass(slots=True)
class _Exchange:
    """A CON or NON request whose response is being computed."""

    address: Address
    request: Message
    acked: bool = False
    timer: IDelayedCall | None = None
    extra: tuple[Option, ...] = field(default=())


class CoAPDatagramProtocol(DatagramProtocol):
    """
    One C{coap} listener's endpoint.

    @ivar observations: the current observations, by source address and token.
    """

    log = Logger()
    #: The listener logs its own "listening on" line.
    noisy = False

    def __init__(
        self,
        bridge: Bridge,
        listener: str,
        config: CoAPConfig,
        clock: IReactorTime,
        *,
        layer: MessageLayer | None = None,
        stopping: Callable[[], bool] = lambda: False,
    ) -> None:
        """
        @param bridge: the way into the broker.
        @param listener: the listener's name (origins, logs, stats).
        @param config: the listener's C{coap:} settings.
        @param clock: keeps time for the message layer and rate limits.
        @param layer: the message layer; tests pass one with a seeded random.
        @param stopping: whether the broker is stopping (requests get 5.03).
        """
        self.listener = listener
        self.config = config
        self._clock = clock
        self._layer = layer if layer is not None else MessageLayer()
        self._stopping = stopping
        self._stopped = False
        self._pubsub = PubSub(bridge, listener, stopping=self._refusing)
        self._rules = Rules(config.rules)
        self._rate = RateLimiter(config.max_request_rate)
        self._timer: IDelayedCall | None = None
        self._timer_at: float | None = None
        self.observations: dict[_ObservationKey, Observation] = {}
        self._observers: Counter[str] = Counter()
        #: The message ID of each observation's unacknowledged CON notification.
        self._outstanding: dict[_ObservationKey, int] = {}
        self._uploads = Block1Assembler(config.max_payload, config.block_size, max_transfers=MAX_TRANSFERS)
        self._downloads: OrderedDict[_TransferKey, _Representation] = OrderedDict()
        self._kept_bytes = 0
        self._logged: OrderedDict[str, None] = OrderedDict()

    # --- Twisted ----------------------------------------------------------------------

    def datagramReceived(self, datagram: bytes, addr: Any) -> None:
        address: Address = (addr[0], addr[1])
        try:
            self._handle(self._layer.receive(address, datagram, self._clock.seconds()))
        except Exception:
            self.log.failure(
                "CoAP datagram from {peer} not handled", peer=_peer(address), event_id="coap.error"
            )
        self._schedule()

    def stop(self) -> None:
        """
        The listener stops: every observer gets a final 5.03 Service
        Unavailable notification (a non-2.xx ends an observation, RFC 7641
        section 3.2), as NON since there is no waiting for its ACK, and its
        observation ends; requests from now on get 5.03.
        """
        self._stopped = True
        for observation in list(self.observations.values()):
            self._end(observation, Response(Code.SERVICE_UNAVAILABLE, b"shutting down"))
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _refusing(self) -> bool:
        return self._stopped or self._stopping()

    # --- message layer ---------------------------------------------------------------

    def _write(self, datagram: bytes | None, address: Address) -> None:
        if datagram is not None and self.transport is not None:
            self.transport.write(datagram, address)

    def _handle(self, events: list[Event]) -> None:
        for event in events:
            if isinstance(event, Received):
                self._received(_address(event.remote), event.message)
            elif isinstance(event, Transmit):
                self._write(event.datagram, _address(event.remote))
            elif isinstance(event, Acknowledged):
                observation = event.context
                if isinstance(observation, Observation) and self._current(observation):
                    self._outstanding.pop(observation.key, None)  # type: ignore[call-overload]
                    observation.acknowledged()
            elif isinstance(event, (Reset, TimedOut)):
                self._notification_failed(event)
            elif isinstance(event, Malformed):
                # At info once per address, so a flood does not flood the log.
                self._log_once(
                    _address(event.remote),
                    "malformed CoAP datagram from {peer}: {error}",
                    "coap.malformed",
                    error=str(event.error),
                )
            elif isinstance(event, Duplicate):
                self.log.debug("duplicate {message} from {peer}", message=str(event.message), peer=event.remote)

    def _current(self, observation: Observation) -> bool:
        return self.observations.get(observation.key) is observation  # type: ignore[call-overload]

    def _notification_failed(self, event: Reset | TimedOut) -> None:
        observation = event.context
        if not isinstance(observation, Observation) or not self._current(observation):
            return
        del self.observations[observation.key]  # type: ignore[arg-type]
        why = "reset" if isinstance(event, Reset) else "unacknowledged"
        self.log.info(
            "CoAP observation of {filter!r} by {peer} ended: notification {why}",
            filter=observation.topic_filter,
            peer=observation.source.peer,
            why=why,
            event_id="coap.observe_dropped",
        )
        self._forget(observation)
        observation.close()

    def _schedule(self) -> None:
        deadline = self._layer.next_deadline()
        if deadline == self._timer_at and self._timer is not None and self._timer.active():
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_at = deadline
        if deadline is not None and not self._stopped:
            delay = max(0.0, deadline - self._clock.seconds())
            self._timer = self._clock.callLater(delay, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self._handle(self._layer.tick(self._clock.seconds()))
        except Exception:
            self.log.failure("CoAP retransmission failed", event_id="coap.error")
        self._schedule()

    # --- requests ----------------------------------------------------------------------

    def _received(self, address: Address, message: Message) -> None:
        if not message.is_request:
            # A response to nothing we asked (we send no requests).
            self._write(self._layer.reject(address, message, self._clock.seconds()), address)
            return
        rule = self._rules.match(address[0])
        if rule is None:
            self._log_once(address, "no rule admits {peer}: CoAP requests refused (4.03)", "coap.denied")
            self._answer(address, message, Response(Code.FORBIDDEN, b"source not allowed"))
            return
        if self._refusing():
            self._answer(address, message, Response(Code.SERVICE_UNAVAILABLE, b"shutting down"))
            return
        wait = self._rate.allow(address[0], self._clock.seconds())
        if wait:
            self._log_once(address, "{peer} is over the CoAP request rate: 4.29", "coap.rate_limited")
            self._answer(address, message, Response(Code.TOO_MANY_REQUESTS, max_age=wait))
            return
        if message.bad_options():
            if message.type is MessageType.NON:
                # Section 5.4.1: a NON with a bad critical option is rejected (dropped).
                return
            numbers = ", ".join(str(n) for n in message.bad_options())
            self._answer(address, message, diagnostic(Code.BAD_OPTION, f"bad critical option {numbers}"))
            return
        try:
            path = tuple(message.uri_path)
            query = tuple(message.uri_query)
            block2 = message.block2
        except CoAPOptionError as e:
            self._answer(address, message, diagnostic(e.code, e.detail))
            return
        if not path or path[0] != PREFIX:
            self._answer(address, message, diagnostic(Code.NOT_FOUND, "resources are under /ps/"))
            return
        if message.code not in (Code.GET, Code.POST, Code.PUT, Code.DELETE):
            self._answer(address, message, Response(Code.METHOD_NOT_ALLOWED))
            return
        source = Source(address[0], address[1], rule)
        if message.code == GET:
            self._get(source, address, message, path, block2)
            return
        now = self._clock.seconds()
        if len(self._uploads):
            self._uploads.expire(now)
        upload = self._uploads.receive(address, message, now)
        if isinstance(upload, Block1Continue):
            self._answer(address, message, Response(Code.CONTINUE), upload.options)
            return
        if isinstance(upload, Block1Error):
            self._answer(address, message, diagnostic(upload.code, upload.detail), upload.options)
            return
        request = Request(message.code, path, query, upload.body, message.content_format)
        self._start(address, message, self._pubsub.handle(request, source), upload.options)

    def _answer(
        self, address: Address, request: Message, response: Response, extra: tuple[Option, ...] = ()
    ) -> None:
        """Respond to C{request} now (piggybacked on the ACK of a CON)."""
        options = [*_response_options(response), *extra]
        datagram = self._layer.respond(
            address, request, response.code, self._clock.seconds(), options, response.payload
        )
        self._write(datagram, address)

    def _start(
        self,
        address: Address,
        request: Message,
        result: Deferred[Response],
        extra: tuple[Option, ...] = (),
        block2: BlockValue | None = None,
    ) -> None:
        """Respond when C{result} fires: piggybacked if soon enough, else separately."""
        exchange = _Exchange(address, request, extra=extra)
        if request.type is MessageType.CON:
            exchange.timer = self._clock.callLater(PIGGYBACK_DELAY, self._acknowledge, exchange)
        result.addCallback(self._respond, exchange, block2)
        result.addErrback(self._failed, exchange)

    def _acknowledge(self, exchange: _Exchange) -> None:
        exchange.timer = None
        exchange.acked = True
        self._write(
            self._layer.acknowledge(exchange.address, exchange.request, self._clock.seconds()),
            exchange.address,
        )

    def _respond(self, response: Response, exchange: _Exchange, block2: BlockValue | None) -> None:
        if exchange.timer is not None and exchange.timer.active():
            exchange.timer.cancel()
        exchange.timer = None
        address, request = exchange.address, exchange.request
        if response.code == Code.CONTENT and (block2 is not None or len(response.payload) > self.config.block_size):
            self._send_block(address, request, response, block2, exchange.extra)
        else:
            self._answer(address, request, response, exchange.extra)
        self._schedule()

    def _failed(self, reason: Failure, exchange: _Exchange) -> None:
        self.log.failure(
            "CoAP request from {peer} failed", reason, peer=_peer(exchange.address), event_id="coap.error"
        )
        self._respond(Response(Code.INTERNAL_SERVER_ERROR), exchange, None)

    # --- GET and Observe -------------------------------------------------------------

    def _get(
        self,
        source: Source,
        address: Address,
        message: Message,
        path: tuple[str, ...],
        block2: BlockValue | None,
    ) -> None:
        request = Request(GET, path, tuple(message.uri_query))
        key = (address[0], address[1], message.token)
        flag = message.observe
        if flag == 1:
            # Deregistration (RFC 7641 section 3.6), then an ordinary GET.
            self._cancel(key)
        if block2 is not None and block2.num > 0:
            kept = self._downloads.get((address[0], address[1], path))
            if kept is not None and kept.expires > self._clock.seconds():
                self._send_block(address, message, kept.response, block2, (), kept.etag)
                return
        if flag == 0:
            self._register(source, address, message, request, key)
            return
        if flag == 1 and ("+" in path or "#" in path):
            # Nothing to return for a filter: the deregistration is done.
            self._answer(address, message, Response(Code.CONTENT))
            return
        self._start(address, message, self._pubsub.handle(request, source), (), block2)

    def _register(
        self, source: Source, address: Address, message: Message, request: Request, key: _ObservationKey
    ) -> None:
        self._cancel(key)  # A registration with the same token replaces it.
        if self._observers[address[0]] >= self.config.max_observers_per_source:
            self._log_once(address, "{peer} has too many CoAP observations: 5.03", "coap.observers_limit")
            self._answer(address, message, diagnostic(Code.SERVICE_UNAVAILABLE, "too many observations"))
            return
        self._observers[address[0]] += 1
        client_id = f"{client_id_of(source)}-{message.token.hex()}"
        d = observe(
            self._pubsub,
            request,
            source,
            key,
            client_id,
            self._notify,
            self._observation_ended,
            confirmable_every=self.config.confirmable_every,
            clock=self._clock,
        )
        exchange = _Exchange(address, message)
        if message.type is MessageType.CON:
            exchange.timer = self._clock.callLater(PIGGYBACK_DELAY, self._acknowledge, exchange)

        def registered(result: tuple[Response, Observation | None]) -> None:
            response, observation = result
            if observation is not None and self._refusing():
                observation.close()
                response = diagnostic(Code.SERVICE_UNAVAILABLE, "shutting down")
            if observation is None or observation.closed:
                self._observers[address[0]] -= 1
                self._respond(response, exchange, None)
                return
            self.observations[key] = observation
            exchange.extra = (Option.uint(OptionNumber.OBSERVE, observation.next_sequence()),)
            self._respond(response, exchange, None)
            observation.start()

        def failed(reason: Failure) -> None:
            self._observers[address[0]] -= 1
            self._failed(reason, exchange)

        d.addCallbacks(registered, failed)

    def _cancel(self, key: _ObservationKey) -> None:
        observation = self.observations.pop(key, None)
        if observation is not None:
            self._forget(observation)
            observation.close()

    def _forget(self, observation: Observation) -> None:
        """Count the observation out, and stop retransmitting its notification."""
        key: _ObservationKey = observation.key  # type: ignore[assignment]
        mid = self._outstanding.pop(key, None)
        if mid is not None:
            self._layer.cancel((key[0], key[1]), mid)
        host = observation.source.host
        self._observers[host] -= 1
        if self._observers[host] <= 0:
            del self._observers[host]

    def _observation_ended(self, observation: Observation) -> None:
        """The observation ended; if not by the observer, tell it (5.03)."""
        key: _ObservationKey = observation.key  # type: ignore[assignment]
        if self.observations.get(key) is observation:
            self._end(observation, Response(Code.SERVICE_UNAVAILABLE, b"subscription ended"))

    def _end(self, observation: Observation, response: Response) -> None:
        key: _ObservationKey = observation.key  # type: ignore[assignment]
        if self.observations.get(key) is observation:
            del self.observations[key]
            self._forget(observation)
        address = (key[0], key[1])
        # A final non-2.xx response without Observe (RFC 7641 section 3.2).
        message = Message(
            MessageType.NON,
            response.code,
            self._layer.new_message_id(address),
            key[2],
            tuple(_response_options(response)),
            response.payload,
        )
        self._write(self._layer.send(address, message, self._clock.seconds()), address)
        observation.close()

    def _notify(self, observation: Observation, notification: Notification) -> None:
        key: _ObservationKey = observation.key  # type: ignore[assignment]
        address = (key[0], key[1])
        response = notification.response
        mtype = MessageType.CON if notification.confirmable else MessageType.NON
        options = [Option.uint(OptionNumber.OBSERVE, notification.sequence), *_response_options(response)]
        payload = response.payload
        if len(payload) > self.config.block_size:
            etag = etag_for(payload)
            self._keep(address, (PREFIX, *observation.topic_filter.split("/")), response, etag)
            block = slice_block2(payload, None, self.config.block_size, etag=etag)
            options += block.options
            payload = block.payload
        mid = self._layer.new_message_id(address)
        message = Message(mtype, response.code, mid, key[2], tuple(options), payload)
        if notification.confirmable:
            self._outstanding[key] = mid
        self._write(self._layer.send(address, message, self._clock.seconds(), context=observation), address)
        self._schedule()

    # --- block-wise ------------------------------------------------------------------

    def _send_block(
        self,
        address: Address,
        request: Message,
        response: Response,
        block2: BlockValue | None,
        extra: tuple[Option, ...],
        etag: bytes | None = None,
    ) -> None:
        """
        Answer with one Block2 block of C{response} (RFC 7959 section 2.4),
        keeping the representation for the requests of the next blocks.
        """
        if etag is None:
            etag = etag_for(response.payload)
            self._keep(address, tuple(request.uri_path), response, etag)
        try:
            block = slice_block2(response.payload, block2, self.config.block_size, etag=etag)
        except CoAPOptionError as e:
            self._answer(address, request, diagnostic(e.code, e.detail))
            return
        sliced = Response(response.code, block.payload, response.content_format, response.max_age, response.location)
        self._answer(address, request, sliced, (*extra, *block.options))

    def _keep(self, address: Address, path: tuple[str, ...], response: Response, etag: bytes) -> None:
        key = (address[0], address[1], path)
        old = self._downloads.pop(key, None)
        if old is not None:
            self._kept_bytes -= len(old.response.payload)
        self._downloads[key] = _Representation(response, etag, self._clock.seconds() + TRANSFER_LIFETIME)
        self._kept_bytes += len(response.payload)
        # The oldest go first; a client asking for one of their blocks later
        # gets the current representation, with another ETag.
        while len(self._downloads) > MAX_TRANSFERS or self._kept_bytes > MAX_KEPT_BYTES:
            _, dropped = self._downloads.popitem(last=False)
            self._kept_bytes -= len(dropped.response.payload)

    # --- logs ------------------------------------------------------------------------

    def _log_once(self, address: Address, text: str, event_id: str, **fields: object) -> None:
        """Log C{text} at info the first time C{address}'s host earns it, then at debug."""
        host = f"{event_id}:{address[0]}"
        if host in self._logged:
            self.log.debug(text, peer=_peer(address), listener=self.listener, event_id=event_id, **fields)
            return
        self._logged[host] = None
        if len(self._logged) > MAX_LOGGED_SOURCES:
            self._logged.popitem(last=False)
        self.log.info(text, peer=_peer(address), listener=self.listener, event_id=event_id, **fields)


def _address(remote: Remote) -> Address:
    # The message layer keeps the addresses this protocol gave it.
    return cast(Address, remote)


def _peer(address: Address) -> str:
    return describe_host_port(*address)


def _response_options(response: Response) -> list[Option]:
    options: list[Option] = []
    if response.location:
        options += path_options(response.location, OptionNumber.LOCATION_PATH)
    if response.content_format is not None:
        options.append(Option.uint(OptionNumber.CONTENT_FORMAT, response.content_format))
    if response.max_age is not None:
        options.append(Option.uint(OptionNumber.MAX_AGE, response.max_age))
    return options
