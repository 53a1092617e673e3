# -*- test-case-name: tests.integration -*-
"""
Fixtures for the integration tests: a real L{Broker} listening on loopback
TCP, driven by real clients.

Three kinds of client:

  - L{PahoClient}: paho-mqtt (3.1, 3.1.1, 5.0). paho is blocking, so every
    call that waits runs in a worker thread (L{deferToThread}) and the reactor
    keeps serving the broker meanwhile. Its callbacks fill thread-safe
    L{Inbox}es, which tests read with bounded waits.
  - L{RawClient}: a Twisted protocol speaking our own codec, for exact
    control of the bytes (no acknowledgement, malformed packets, a client
    that goes silent).
  - L{run_process} / L{spawn}: Debian's C{mosquitto_pub} / C{mosquitto_sub}.

Every wait is bounded: L{TIMEOUT} for what must happen, L{QUIET} for how long
a test watches for what must not.
"""

from __future__ import annotations

import os
import queue
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar, cast

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties as PahoProperties
from paho.mqtt.reasoncodes import ReasonCode as PahoReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, TimeoutError, gatherResults, maybeDeferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, serverFromString
from twisted.internet.error import ConnectionDone, ProcessDone
from twisted.internet.interfaces import (
    IAddress,
    IListeningPort,
    IProcessTransport,
    IReactorProcess,
    IReactorTCP,
    IReactorTime,
    ITCPTransport,
)
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.task import deferLater
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import FailTest, TestCase

from mqttx.broker.broker import Broker
from mqttx.config import MQTTConfig
from mqttx.interfaces import IAuthenticationMethod, IAuthenticator, IAuthorizer
from mqttx.mqtt.codec import Decoder, encode
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packets import ConnAck, Connect, Packet, Publish, Will
from mqttx.mqtt.properties import NO_PROPERTIES, Properties
from mqttx.store.memory import MemoryStore
from mqttx.transports.mqtt import MQTTServerFactory, MQTTServerProtocol
from mqttx.transports.tls import ServerTLS

__all__ = [
    "HOST",
    "QUIET",
    "TIMEOUT",
    "V5",
    "V31",
    "V311",
    "Connack",
    "Disconnected",
    "Inbox",
    "IntegrationTestCase",
    "MixinBase",
    "PahoClient",
    "RawClient",
    "Received",
    "RunningBroker",
    "RunningProcess",
    "WillSpec",
    "pause",
    "publish_with_qos_3",
    "run_process",
    "spawn",
    "start_broker",
]

reactor = cast("IReactorTime", _reactor)

HOST = "127.0.0.1"
#: The longest a test waits for something that must happen.
TIMEOUT = 5.0
#: How long a test watches for something that must not happen. Real time:
#: the broker answers in-process over loopback within milliseconds.
QUIET = 0.2

V31 = MQTTProtocolVersion.MQTTv31
V311 = MQTTProtocolVersion.MQTTv311
V5 = MQTTProtocolVersion.MQTTv5

_T = TypeVar("_T")
_P = TypeVar("_P")


async def pause(seconds: float) -> None:
    """
    Let real time pass while the reactor runs. Callers say why with a
    C{# real-time:} comment: only timers of the broker (keep-alive, will
    delay, session expiry) justify it.
    """
    await deferLater(reactor, seconds, lambda: None)


# Waiting for things, across threads.


def _brief(items: Sequence[object], shown: int = 5, width: int = 300) -> str:
    """A failure message's view of C{items}: the last few, each cut short."""
    parts = []
    for item in items[-shown:]:
        text = repr(item)
        parts.append(text if len(text) <= width else text[:width] + "...")
    more = f"{len(items) - shown} more, then " if len(items) > shown else ""
    return f"[{more}{', '.join(parts)}]"


class Inbox(Generic[_T]):
    """
    A thread-safe queue of events (messages, CONNACKs, packets) with bounded
    waits: blocking ones for worker threads, Deferred ones for tests.

    @param what: what the items are, for failure messages.
    """

    def __init__(self, what: str) -> None:
        self._what = what
        self._queue: queue.Queue[_T] = queue.Queue()

    def put(self, item: _T) -> None:
        """Add an item; safe from any thread."""
        self._queue.put(item)

    def wait(self, count: int = 1, timeout: float = TIMEOUT, got: Sequence[_T] = ()) -> list[_T]:
        """
        Block until C{count} items arrived, in order (C{got}: taken already).

        @raise FailTest: if fewer arrived within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        items: list[_T] = list(got)
        while len(items) < count:
            try:
                items.append(self._queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise FailTest(
                    f"expected {count} {self._what} within {timeout}s, got {len(items)}: {_brief(items)}"
                ) from None
        return items

    def wait_quiet(self, quiet: float = QUIET) -> None:
        """
        Block for C{quiet} seconds, failing if anything arrives meanwhile.

        @raise FailTest: with the unexpected item.
        """
        try:
            item = self._queue.get(timeout=quiet)
        except queue.Empty:
            return
        raise FailTest(f"unexpected {self._what}: {_brief([item])}")

    def take_all(self) -> list[_T]:
        """What arrived so far, without waiting."""
        items: list[_T] = []
        while True:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return items

    async def get(self, count: int = 1, timeout: float = TIMEOUT) -> list[_T]:
        """
        L{wait} in a worker thread, so the reactor keeps running; items
        already there are taken at once.
        """
        items: list[_T] = []
        while len(items) < count:
            try:
                items.append(self._queue.get_nowait())
            except queue.Empty:
                return await deferToThread(self.wait, count, timeout, items)
        return items

    async def get_one(self, timeout: float = TIMEOUT) -> _T:
        """The next item; see L{wait}."""
        return (await self.get(1, timeout))[0]

    async def expect_nothing(self, quiet: float = QUIET) -> None:
        """L{wait_quiet} in a worker thread."""
        await deferToThread(self.wait_quiet, quiet)


# The broker.


_CONNECTION_DONE = Failure(ConnectionDone())


class _TrackedProtocol(MQTTServerProtocol):
    """An L{MQTTServerProtocol} whose end the fixture can wait for."""

    def __init__(self, broker: Broker, clock: IReactorTime, listener: str) -> None:
        super().__init__(broker, clock, listener)
        self.gone: Deferred[None] = Deferred()

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        try:
            super().connectionLost(reason)
        finally:
            self.gone.callback(None)


class _TrackingFactory(MQTTServerFactory):
    """Remembers the open connections, so teardown can close every one."""

    def __init__(self, broker: Broker, clock: IReactorTime) -> None:
        super().__init__(broker, clock, "mqtt")
        self.open: set[_TrackedProtocol] = set()

    def buildProtocol(self, addr: IAddress | None) -> _TrackedProtocol:
        proto = _TrackedProtocol(self.broker, self.clock, self.listener)
        proto.factory = self
        proto.certificate_username = self.certificate_username
        self.open.add(proto)
        proto.gone.addCallback(lambda _: self.open.discard(proto))
        return proto


class RunningBroker:
    """
    A broker listening on loopback, as L{start_broker} made it.

    @ivar store: its store; give it to another L{start_broker} to restart.
    """

    def __init__(
        self, broker: Broker, store: MemoryStore, listening: IListeningPort, factory: _TrackingFactory
    ) -> None:
        self.broker = broker
        self.store = store
        self.config = broker.config
        self.port: int = listening.getHost().port  # type: ignore[attr-defined]
        self._listening = listening
        self._factory = factory
        self._stopped = False

    async def stop(self) -> None:
        """
        Stop listening, L{Broker.shutdown}, then abort whatever connection
        is left and wait until each is gone, so no socket or timer outlives
        the test. Stopping twice does nothing.
        """
        if self._stopped:
            return
        self._stopped = True
        await maybeDeferred(self._listening.stopListening)
        await self.broker.shutdown()
        # Connections the broker does not own (never admitted, or refused).
        left = list(self._factory.open)
        for proto in left:
            if proto.transport is not None:
                cast(ITCPTransport, proto.transport).abortConnection()
        gone: Deferred[list[None]] = gatherResults([p.gone for p in left])
        gone.addTimeout(TIMEOUT, reactor)
        await gone


async def start_broker(
    case: TestCase,
    store: MemoryStore | None = None,
    *,
    authentication_methods: Sequence[IAuthenticationMethod] = (),
    tls: ServerTLS | None = None,
    authorizer: IAuthorizer | None = None,
    authenticator: IAuthenticator | None = None,
    **overrides: Any,
) -> RunningBroker:
    """
    Start a broker with an in-memory store and a listener on
    C{tcp:0:interface=127.0.0.1}; it is stopped at test cleanup (see
    L{RunningBroker.stop}).

    @param store: the store to load, to restart a broker; a new one by default.
    @param authentication_methods: the MQTT 5 enhanced authentication
        methods the broker offers.
    @param tls: TLS for the listener (its C{use_identity_as_username} too).
    @param authorizer: the broker's authorizer; none by default.
    @param authenticator: the broker's authenticator; by default every
        client is let in.
    @param overrides: L{MQTTConfig} fields to change from their defaults.
    """
    config = replace(MQTTConfig(), **overrides)
    store = MemoryStore() if store is None else store
    broker = Broker(
        config,
        clock=reactor,
        store=store,
        authentication_methods=authentication_methods,
        authorizer=authorizer,
        authenticator=authenticator,
    )
    await broker.start()
    factory = _TrackingFactory(broker, reactor)
    factory.certificate_username = tls is not None and tls.config.use_identity_as_username
    listening: IListeningPort = await serverFromString(
        _reactor, f"tcp:0:interface={HOST}"
    ).listen(factory if tls is None else tls.wrap(factory, reactor))
    running = RunningBroker(broker, store, listening, factory)
    case.addCleanup(running.stop)
    return running


# paho-mqtt.


@dataclass(frozen=True)
class Received:
    """A PUBLISH as a paho client got it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: PahoProperties | None = None

    def user_properties(self) -> list[tuple[str, str]]:
        """The MQTT 5 user properties, in order."""
        return list(getattr(self.properties, "UserProperty", []))


@dataclass(frozen=True)
class Connack:
    """
    A CONNACK as a paho client got it. paho reports 3.1/3.1.1 return codes
    as their MQTT 5 equivalents (0x02 as 0x85 ...); success is 0 either way.
    """

    session_present: bool
    reason_code: int
    properties: PahoProperties | None

    @property
    def assigned_client_id(self) -> str | None:
        """The MQTT 5 Assigned Client Identifier, if the broker sent one."""
        value = getattr(self.properties, "AssignedClientIdentifier", None)
        return None if value is None else str(value)


@dataclass(frozen=True)
class Disconnected:
    """
    A paho client lost its connection.

    @ivar from_server: whether the broker sent DISCONNECT (MQTT 5).
    @ivar reason_code: the DISCONNECT reason code if C{from_server}.
    """

    reason_code: int
    from_server: bool


@dataclass(frozen=True)
class WillSpec:
    """A will message for L{PahoClient}; C{delay} is the MQTT 5 Will Delay Interval."""

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    delay: int | None = None
    user_properties: tuple[tuple[str, str], ...] = ()


class PahoClient:
    """
    One paho-mqtt connection, driven from tests without blocking the reactor.

    paho's network loop runs in its own thread (C{loop_start}) and never
    reconnects by itself. Waiting calls run in reactor worker threads.
    The client is disconnected and its thread stopped at test cleanup.

    @ivar messages: every PUBLISH received, in order.
    @ivar disconnects: every loss of the connection.
    @ivar connect_properties: further MQTT 5 CONNECT properties, by their
        paho names (C{TopicAliasMaximum=5}, C{RequestResponseInformation=1}).
    @param websocket_path: given, the client speaks MQTT over WebSocket to
        this path of C{port}.
    """

    def __init__(
        self,
        case: TestCase,
        port: int,
        client_id: str,
        version: MQTTProtocolVersion = V311,
        *,
        clean: bool = True,
        keepalive: int = 60,
        session_expiry: int | None = None,
        will: WillSpec | None = None,
        connect_properties: dict[str, Any] | None = None,
        tls: ssl.SSLContext | None = None,
        websocket_path: str | None = None,
    ) -> None:
        self.port = port
        self.connect_properties = dict(connect_properties or {})
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.session_expiry = session_expiry
        v5 = version == V5
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            clean_session=None if v5 else clean,
            protocol=version,
            reconnect_on_failure=False,
            transport="tcp" if websocket_path is None else "websockets",
        )
        if websocket_path is not None:
            # MQTT over WebSocket at this path (subprotocol "mqtt").
            self.client.ws_set_options(path=websocket_path)
        if tls is not None:
            self.client.tls_set_context(tls)
        if will is not None:
            props = None
            if will.delay is not None or will.user_properties:
                props = PahoProperties(PacketTypes.WILLMESSAGE)
                if will.delay is not None:
                    props.WillDelayInterval = will.delay
                if will.user_properties:
                    props.UserProperty = list(will.user_properties)
            self.client.will_set(will.topic, will.payload, will.qos, will.retain, props)
        self.messages: Inbox[Received] = Inbox("messages")
        self.connacks: Inbox[Connack] = Inbox("CONNACKs")
        self.disconnects: Inbox[Disconnected] = Inbox("disconnections")
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self._started = False
        self._gone = threading.Event()
        client = self.client
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_subscribe
        client.on_publish = self._on_publish
        case.addCleanup(self.close)

    # paho's callbacks (its network thread).

    def _on_connect(self, client: paho.Client, userdata: object, flags: Any, rc: PahoReasonCode, props: Any) -> None:
        self.connacks.put(Connack(bool(flags.session_present), rc.value, props))

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        self.messages.put(
            Received(msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), bool(msg.dup), msg.properties)
        )

    def _on_disconnect(self, client: paho.Client, userdata: object, flags: Any, rc: PahoReasonCode, props: Any) -> None:
        self._gone.set()
        self.disconnects.put(Disconnected(rc.value, bool(flags.is_disconnect_packet_from_server)))

    def _on_subscribe(self, client: paho.Client, userdata: object, mid: int, codes: Any, props: Any) -> None:
        self._ack(mid, [c.value for c in codes])

    def _on_publish(self, client: paho.Client, userdata: object, mid: int, rc: PahoReasonCode, props: Any) -> None:
        self._ack(mid, rc.value)

    def _ack(self, mid: int, value: object) -> None:
        with self._acked:
            self._acks[mid] = value
            self._acked.notify_all()

    def _wait_ack(self, mid: int | None, what: str) -> Any:
        assert mid is not None
        with self._acked:
            if not self._acked.wait_for(lambda: mid in self._acks, TIMEOUT):
                raise FailTest(f"no {what} for message id {mid} within {TIMEOUT}s")
            return self._acks.pop(mid)

    # Blocking operations (worker threads).

    def _connect(self, clean_start: bool) -> Connack:
        if self.version == V5:
            props = PahoProperties(PacketTypes.CONNECT)
            if self.session_expiry is not None:
                props.SessionExpiryInterval = self.session_expiry
            for name, value in self.connect_properties.items():
                setattr(props, name, value)
            self.client.connect(HOST, self.port, self.keepalive, clean_start=clean_start, properties=props)
        else:
            self.client.connect(HOST, self.port, self.keepalive)
        self.client.loop_start()
        self._started = True
        return self.connacks.wait()[0]

    def _subscribe(
        self, topics: list[tuple[str, int]] | list[tuple[str, SubscribeOptions]], subscription_id: int | None
    ) -> list[int]:
        props = None
        if subscription_id is not None:
            props = PahoProperties(PacketTypes.SUBSCRIBE)
            props.SubscriptionIdentifier = subscription_id
        rc, mid = self.client.subscribe(topics, properties=props)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise FailTest(f"paho could not send SUBSCRIBE: {rc!r}")
        return cast(list[int], self._wait_ack(mid, "SUBACK"))

    def _unsubscribe(self, topics: list[str]) -> list[int]:
        rc, mid = self.client.unsubscribe(topics)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise FailTest(f"paho could not send UNSUBSCRIBE: {rc!r}")
        return cast(list[int], self._wait_ack(mid, "UNSUBACK"))

    def _publish(self, topic: str, payload: bytes, qos: int, retain: bool, props: PahoProperties | None) -> int:
        info = self.client.publish(topic, payload, qos, retain, props)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise FailTest(f"paho could not send PUBLISH: {info.rc!r}")
        return cast(int, self._wait_ack(info.mid, "acknowledgement"))

    def _publish_many(self, topic: str, payloads: list[bytes], qos: int) -> list[int]:
        infos = [self.client.publish(topic, payload, qos) for payload in payloads]
        for info in infos:
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise FailTest(f"paho could not send PUBLISH: {info.rc!r}")
        return [cast(int, self._wait_ack(info.mid, "acknowledgement")) for info in infos]

    def _disconnect(self, reason_code: int | None) -> Disconnected:
        code = None if reason_code is None else PahoReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
        self.client.disconnect(reasoncode=code)
        gone = self.disconnects.wait()[0]
        self.client.loop_stop()
        return gone

    def _drop(self) -> Disconnected:
        sock = self.client.socket()
        if sock is None:
            raise FailTest("paho client is not connected")
        # A FIN without DISCONNECT: the network connection closes abnormally.
        cast(socket.socket, sock).shutdown(socket.SHUT_RDWR)
        gone = self.disconnects.wait()[0]
        self.client.loop_stop()
        return gone

    def _close(self) -> None:
        if not self._started:
            return
        if not self._gone.is_set():
            self.client.disconnect()
            if not self._gone.wait(TIMEOUT):
                raise FailTest(f"paho client still connected {TIMEOUT}s after DISCONNECT")
        self.client.loop_stop()

    # The test's side.

    async def connect(self, clean_start: bool | None = None) -> Connack:
        """
        Connect and wait for CONNACK. For MQTT 5, C{clean_start} defaults to
        the C{clean} given at construction.
        """
        return await deferToThread(self._connect, self.clean if clean_start is None else clean_start)

    async def subscribe(
        self, topic_filter: str, qos: int = 0, subscription_id: int | None = None, **options: Any
    ) -> int:
        """
        Subscribe to one filter and return the SUBACK code. MQTT 5
        C{options} are L{SubscribeOptions} keywords (C{retainAsPublished},
        C{noLocal}, C{retainHandling}).
        """
        if options:
            topics: list[tuple[str, int]] | list[tuple[str, SubscribeOptions]]
            topics = [(topic_filter, SubscribeOptions(qos=qos, **options))]
        else:
            topics = [(topic_filter, qos)]
        return (await self.subscribe_many(topics, subscription_id))[0]

    async def subscribe_many(
        self,
        topics: list[tuple[str, int]] | list[tuple[str, SubscribeOptions]],
        subscription_id: int | None = None,
    ) -> list[int]:
        """Subscribe with one SUBSCRIBE; return the SUBACK codes in order."""
        return await deferToThread(self._subscribe, topics, subscription_id)

    async def unsubscribe(self, *topic_filters: str) -> list[int]:
        """Unsubscribe; return the UNSUBACK codes (empty before MQTT 5)."""
        return await deferToThread(self._unsubscribe, list(topic_filters))

    async def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False, **props: Any) -> int:
        """
        Publish and wait until the QoS flow completes (PUBACK / PUBCOMP).
        C{props} are MQTT 5 PUBLISH properties by their paho names
        (C{UserProperty=[("k", "v")]}, C{TopicAlias=1} ...).

        @return: the reason code of the PUBACK (MQTT 5); 0 otherwise.
        """
        properties = None
        if props:
            properties = PahoProperties(PacketTypes.PUBLISH)
            for name, value in props.items():
                setattr(properties, name, value)
        return await deferToThread(self._publish, topic, payload, qos, retain, properties)

    async def publish_many(self, topic: str, payloads: Sequence[bytes], qos: int) -> list[int]:
        """
        Publish C{payloads} back to back, without waiting between them, then
        wait for every QoS flow; return the reason codes as L{publish} does.
        """
        return await deferToThread(self._publish_many, topic, list(payloads), qos)

    async def disconnect(self, reason_code: int | None = None) -> Disconnected:
        """Send DISCONNECT (with C{reason_code} in MQTT 5) and wait until closed."""
        return await deferToThread(self._disconnect, reason_code)

    async def drop(self) -> Disconnected:
        """Close the socket without DISCONNECT, as a crashing client would."""
        return await deferToThread(self._drop)

    async def close(self) -> None:
        """Disconnect if still connected and stop paho's thread."""
        await deferToThread(self._close)


# Raw MQTT over our own codec.


class RawClient(Protocol):
    """
    An MQTT client with no behaviour of its own: it sends exactly the packets
    or bytes a test gives it and queues every packet it receives, decoded by
    L{mqttx.mqtt.codec.Decoder}. Nothing is acknowledged unless the test does.

    @ivar packets: the packets received, in order.
    @ivar lost: fires when the connection is gone.
    """

    def __init__(self, level: int) -> None:
        self.level = level
        self.packets: Inbox[Packet] = Inbox("packets")
        self.lost: Deferred[None] = Deferred()
        self.closed_at: float | None = None
        self.garbage: MalformedPacket | None = None
        self._decoder = Decoder(protocol_level=level)

    def dataReceived(self, data: bytes) -> None:
        try:
            packets = self._decoder.feed(data)
        except MalformedPacket as e:
            self.garbage = e
            packets = self._decoder.packets_before_error
        for packet in packets:
            self.packets.put(packet)

    def connectionLost(self, reason: Failure = _CONNECTION_DONE) -> None:
        self.closed_at = time.monotonic()
        self.lost.callback(None)

    @property
    def is_closed(self) -> bool:
        """Whether the connection is gone."""
        return self.closed_at is not None

    def send(self, *packets: Packet) -> None:
        """Encode C{packets} at this client's level and write them."""
        self.send_bytes(b"".join(encode(p, self.level) for p in packets))

    def send_bytes(self, data: bytes) -> None:
        """Write raw bytes."""
        assert self.transport is not None
        self.transport.write(data)

    def abort(self) -> None:
        """Drop the TCP connection at once, without DISCONNECT."""
        if self.transport is not None and not self.is_closed:
            cast(ITCPTransport, self.transport).abortConnection()

    async def expect(self, kind: type[_P], timeout: float = TIMEOUT) -> _P:
        """The next packet, which must be a C{kind}."""
        packet = await self.packets.get_one(timeout)
        if not isinstance(packet, kind):
            raise FailTest(f"expected {kind.__name__}, got {packet!r}")
        return packet

    async def expect_closed(self, timeout: float = TIMEOUT) -> None:
        """Wait until the broker closes the connection."""
        if self.is_closed:
            return
        waiting: Deferred[None] = Deferred()
        self.lost.addBoth(lambda r: waiting.callback(None) if not waiting.called else None)
        waiting.addTimeout(timeout, reactor)
        try:
            await waiting
        except TimeoutError:
            raise FailTest(f"connection still open after {timeout}s") from None

    async def close(self) -> None:
        """Abort the connection if needed and wait until it is gone."""
        if not self.is_closed:
            self.abort()
            done: Deferred[None] = Deferred()
            self.lost.addBoth(lambda r: done.callback(None))
            await done


async def open_raw(case: TestCase, port: int, level: int) -> RawClient:
    """Open a L{RawClient} connection, closed at test cleanup."""
    proto = RawClient(level)
    endpoint = TCP4ClientEndpoint(cast(IReactorTCP, _reactor), HOST, port, timeout=int(TIMEOUT))
    await connectProtocol(endpoint, proto)
    case.addCleanup(proto.close)
    return proto


def connect_packet(
    level: int,
    client_id: str,
    *,
    clean: bool = True,
    keep_alive: int = 0,
    session_expiry: int | None = None,
    will: Will | None = None,
    **properties: Any,
) -> Connect:
    """
    A CONNECT for C{level}: protocol name C{MQIsdp} for 3.1, C{MQTT}
    otherwise. C{properties} are further MQTT 5 L{Properties} fields.
    """
    if session_expiry is not None:
        properties["session_expiry_interval"] = session_expiry
    return Connect(
        client_id,
        protocol_level=level,
        protocol_name="MQIsdp" if level == 3 else "MQTT",
        clean_start=clean,
        keep_alive=keep_alive,
        will=will,
        properties=Properties(**properties) if properties else NO_PROPERTIES,
    )


def publish_with_qos_3(level: int) -> bytes:
    """
    A PUBLISH that is well formed except that both QoS bits are set, which
    no version allows [MQTT-3.3.1-4].
    """
    data = bytearray(encode(Publish("bad/qos", b"x", 1, packet_id=1), level))
    data[0] |= 0x06
    return bytes(data)


# mosquitto_pub / mosquitto_sub.


class _Capture(ProcessProtocol):
    def __init__(self) -> None:
        self.out = bytearray()
        self.err = bytearray()
        self.ended: Deferred[int] = Deferred()
        self.code: int | None = None
        self._watches: list[tuple[bytes, Deferred[None]]] = []

    def outReceived(self, data: bytes) -> None:
        self.out += data
        self._check()

    def errReceived(self, data: bytes) -> None:
        self.err += data
        self._check()

    def watch(self, marker: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self._watches.append((marker, d))
        self._check()
        return d

    def _check(self) -> None:
        for marker, d in list(self._watches):
            if marker in self.out or marker in self.err:
                self._watches.remove((marker, d))
                d.callback(None)

    def processEnded(self, reason: Failure) -> None:
        value = reason.value
        self.code = 0 if isinstance(value, ProcessDone) else getattr(value, "exitCode", None)
        if self.code is None:
            self.code = -(getattr(value, "signal", None) or 1)
        self.ended.callback(self.code)


class RunningProcess:
    """A child process with its output captured; killed at cleanup if still running."""

    def __init__(self, capture: _Capture, transport: IProcessTransport, argv: list[str]) -> None:
        self._capture = capture
        self._transport = transport
        self.argv = argv

    @property
    def out(self) -> str:
        """Standard output so far."""
        return self._capture.out.decode("utf-8", "replace")

    @property
    def err(self) -> str:
        """Standard error so far."""
        return self._capture.err.decode("utf-8", "replace")

    @property
    def running(self) -> bool:
        """Whether the process has not ended yet."""
        return self._capture.code is None

    async def wait_for_output(self, marker: bytes, timeout: float = TIMEOUT) -> None:
        """Wait until C{marker} appears on standard output or error."""
        d = self._capture.watch(marker)
        d.addTimeout(timeout, reactor)
        try:
            await d
        except TimeoutError:
            raise FailTest(
                f"{self.argv[0]} did not print {marker!r} within {timeout}s; "
                f"stdout {self.out!r}, stderr {self.err!r}"
            ) from None

    def kill(self) -> None:
        """SIGKILL: the process ends without closing anything itself."""
        if self.running:
            self._transport.signalProcess("KILL")

    async def finish(self, timeout: float = TIMEOUT) -> tuple[str, str, int]:
        """
        Wait for the process to exit.

        @return: (stdout, stderr, exit code; minus the signal if killed).
        @raise FailTest: if it still runs after C{timeout} seconds (it is
            killed then).
        """
        if self.running:
            waiting: Deferred[None] = Deferred()
            self._capture.ended.addBoth(lambda r: waiting.callback(None) if not waiting.called else None)
            waiting.addTimeout(timeout, reactor)
            try:
                await waiting
            except TimeoutError:
                self.kill()
                await self._ended()
                raise FailTest(
                    f"{' '.join(self.argv)} still running after {timeout}s; "
                    f"stdout {self.out!r}, stderr {self.err!r}"
                ) from None
        assert self._capture.code is not None
        return self.out, self.err, self._capture.code

    async def _ended(self) -> None:
        if self.running:
            done: Deferred[None] = Deferred()
            self._capture.ended.addBoth(lambda r: done.callback(None))
            await done

    async def cleanup(self) -> None:
        """Kill the process if needed and wait for its end."""
        self.kill()
        await self._ended()


def spawn(case: TestCase, executable: str, args: Sequence[str]) -> RunningProcess:
    """
    Start C{executable} with C{args}, isolated from the user's configuration
    (mosquitto clients read C{~/.config/mosquitto_*}): C{HOME} is a fresh
    directory. The process is killed and reaped at test cleanup.
    """
    capture = _Capture()
    home = case.mktemp()
    os.makedirs(home)
    env = {"HOME": home, "XDG_CONFIG_HOME": home, "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    argv = [executable, *args]
    transport = cast(IReactorProcess, _reactor).spawnProcess(capture, executable, argv, env=env)
    process = RunningProcess(capture, transport, argv)
    case.addCleanup(process.cleanup)
    return process


async def run_process(
    case: TestCase, executable: str, args: Sequence[str], timeout: float = TIMEOUT
) -> tuple[str, str, int]:
    """Run a command to completion; see L{spawn} and L{RunningProcess.finish}."""
    return await spawn(case, executable, args).finish(timeout)


# The test case base.


class IntegrationTestCase(TestCase):
    """
    A test case with a running broker (L{server}); set C{broker_config} to
    override L{MQTTConfig} defaults. Helpers make clients that the cleanup
    closes.
    """

    #: Generous for one test, small enough that a hang fails fast.
    timeout = 30
    broker_config: ClassVar[dict[str, Any]] = {}
    #: The protocol version of version-parametrized test classes.
    version: ClassVar[MQTTProtocolVersion] = V311

    server: RunningBroker

    async def setUp(self) -> None:  # type: ignore[override]
        self.server = await start_broker(self, **self.broker_config)

    @property
    def port(self) -> int:
        """The broker's TCP port."""
        return self.server.port

    @property
    def broker(self) -> Broker:
        """The broker object, for the few checks of its state."""
        return self.server.broker

    @property
    def level(self) -> int:
        """The protocol level of L{version}, for raw clients."""
        return int(self.version)

    def paho(self, client_id: str, version: MQTTProtocolVersion | None = None, **kwargs: Any) -> PahoClient:
        """A paho client (not yet connected); see L{PahoClient}."""
        return PahoClient(self, self.port, client_id, self.version if version is None else version, **kwargs)

    async def connected(
        self, client_id: str, version: MQTTProtocolVersion | None = None, **kwargs: Any
    ) -> PahoClient:
        """A paho client connected with success; see L{PahoClient}."""
        client = self.paho(client_id, version, **kwargs)
        ack = await client.connect()
        self.assertEqual(ack.reason_code, 0, f"CONNACK for {client_id!r}")
        return client

    async def subscriber(
        self, client_id: str, topic_filter: str, qos: int = 0, version: MQTTProtocolVersion | None = None
    ) -> PahoClient:
        """A connected paho client subscribed to C{topic_filter}; the grant is checked."""
        client = await self.connected(client_id, version)
        granted = await client.subscribe(topic_filter, qos)
        self.assertEqual(granted, qos, f"SUBACK for {topic_filter!r}")
        return client

    async def raw(self, level: int | None = None) -> RawClient:
        """A raw connection (nothing sent yet)."""
        return await open_raw(self, self.port, self.level if level is None else level)

    async def raw_connected(
        self, client_id: str, level: int | None = None, **kwargs: Any
    ) -> tuple[RawClient, ConnAck]:
        """A raw connection after CONNECT and a successful CONNACK."""
        client = await self.raw(level)
        client.send(connect_packet(client.level, client_id, **kwargs))
        ack = await client.expect(ConnAck)
        self.assertEqual(ack.reason_code, 0, f"CONNACK for {client_id!r}")
        return client, ack

    async def wait_until(self, predicate: Callable[[], bool], what: str, timeout: float = TIMEOUT) -> None:
        """Poll the broker's state every 10 ms until C{predicate} holds."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(f"{what}: not within {timeout}s")
            await deferLater(reactor, 0.01, lambda: None)


if TYPE_CHECKING:
    #: Base of mixins holding tests shared by several protocol versions:
    #: typed as the test case, but not a TestCase at run time, so trial does
    #: not collect the mixin itself.
    MixinBase = IntegrationTestCase
else:
    MixinBase = object
