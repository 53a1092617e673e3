# -*- test-case-name: tests.transports.test_mqtt -*-
"""
MQTT over a byte stream (TCP, TLS, WebSocket adapters): the thin Twisted
adapter between a transport and the sans-IO L{Connection} and the L{Broker}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IAddress, IDelayedCall, IPushProducer, IReactorTime
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOProtocol
from twisted.python.failure import Failure
from zope.interface import implementer

from mqttx.broker.admission import VerifiedIdentity
from mqttx.broker.auth import EnhancedAuthentication
from mqttx.broker.broker import Broker
from mqttx.broker.session import SLOW_CONSUMER_BYTES, Session
from mqttx.broker.stats import disconnected
from mqttx.mqtt._wire import REASON_CODES
from mqttx.mqtt.aliases import OutboundTopicAliases
from mqttx.mqtt.codec import encode
from mqttx.mqtt.connection import AuthPhase, Connection
from mqttx.mqtt.errors import MalformedPacket
from mqttx.mqtt.packet_type import PacketType, ProtocolVersion
from mqttx.mqtt.packets import Auth, ConnAck, Connect, Disconnect, Packet
from mqttx.mqtt.properties import Properties
from mqttx.mqtt.reason_codes import ConnackReturnCode, ReasonCode
from mqttx.transports.address import describe_address
from mqttx.transports.limits import ConnectionLimits
from mqttx.transports.outbox import flush_outboxes, unflushed
from mqttx.transports.publish_limits import PublishLimits
from mqttx.transports.tls import peer_common_name

_DISCONNECT_CODES = REASON_CODES[PacketType.DISCONNECT]

#: Seconds a new connection has to send CONNECT, unless the configuration's
#: C{connect_timeout} says otherwise.
CONNECT_TIMEOUT = 10.0
#: Seconds a closing connection has to flush before it is aborted.
ABORT_TIMEOUT = 5.0


@implementer(IPushProducer)
class MQTTServerProtocol(Protocol):
    """
    One client connection. Registers itself as the push producer of its
    transport: while the transport's buffer is full the session is
    C{paused} (QoS 1/2 queued, QoS 0 written up to the slow-consumer
    allowance) and the client is not read, so TCP pushes back on it. It is
    not read either while the broker holds it for inbound flow control
    (L{hold_reading}).

    @ivar protocol_level: the client's MQTT version, once CONNECT arrived.
    @ivar max_packet_size: the largest packet the client accepts.
    @ivar paused: whether the transport cannot take more bytes now.
    @ivar authentication: the MQTT 5 enhanced authentication of the
        connection, which the broker sets if the CONNECT named a method it
        offers; AUTH packets go to it.
    @ivar topic_aliases: the outbound topic aliases of an MQTT 5 client that
        takes them, once CONNECT arrived; else C{None}.
    @ivar certificate_username: whether the listener takes the user name
        from the client's TLS certificate (C{use_identity_as_username});
        set by the factory.
    @ivar identity: what the client's certificate says, once CONNECT
        arrived on such a listener; else C{None}.
    """

    log = Logger()

    def __init__(self, broker: Broker, clock: IReactorTime, listener: str) -> None:
        self.broker = broker
        self.listener = listener
        self.peer = "?"
        self.protocol_level: int = ProtocolVersion.MQTT_3_1_1
        self.max_packet_size = 0
        self.paused = False
        self.paused_bytes = 0
        self.topic_aliases: OutboundTopicAliases | None = None
        self._clock = clock
        self._session: Session | None = None
        self._backlog: list[Packet] | None = None
        self._timer: IDelayedCall | None = None
        self._abort_call: IDelayedCall | None = None
        self._waiters: list[Deferred[None]] = []
        self._lost = False
        self._closing = False
        self._reading_paused = False
        self._held = False
        self._measurable = False
        self._direct = False
        self._batched = False
        #: Bytes written during the read being handled, sent at its end.
        self._outbox: list[bytes] | None = None
        self.authentication: EnhancedAuthentication | None = None
        self.certificate_username = False
        self.identity: VerifiedIdentity | None = None
        #: The CONNECT's user name (or the certificate's), for logs.
        self.username: str | None = None
        #: The reason code the server closed the connection with, if it did.
        self._close_code: int | None = None
        self._stats = broker.stats_for(listener)
        config = broker.config
        #: Set by the factory: the limits that counted this connection.
        self.admission: ConnectionLimits | None = None
        self._handlers = _HANDLERS
        self._publish_limits: PublishLimits | None = None
        if PublishLimits.needed(config):
            # Only then is a PUBLISH checked: no cost when the limits are off.
            self._publish_limits = PublishLimits(self, config, clock)
            self._handlers = {**_HANDLERS, PacketType.PUBLISH: self._publish_limits.publish}
        self._conn = Connection(
            max_packet_size=config.max_packet_size,
            receive_maximum=config.receive_maximum,
            topic_alias_maximum=config.topic_alias_maximum,
            maximum_qos=config.maximum_qos,
            subscription_identifiers=config.subscription_identifiers,
        )

    # Twisted's side.

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.peer = describe_address(self.transport.getPeer())
        # Twisted pauses its producer once 64 kB wait in user space, which a
        # burst routed in one reactor turn (a fan-out, the retained messages
        # of a new subscription) reaches for a client that reads promptly.
        # Raising its bufferSize would also make every read allocate that
        # much, so the pause stays at 64 kB and Session.deliver drops QoS 0
        # only once the transport really holds SLOW_CONSUMER_BYTES more
        # (see waiting()).
        no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if no_delay is not None:
            # Small packets go out at once, not held back by Nagle's
            # algorithm behind earlier unacknowledged bytes: latency.
            no_delay(True)
        t = self.transport
        self._measurable = all(hasattr(t, a) for a in ("dataBuffer", "offset", "_tempDataLen"))
        # Twisted's TCP transports: what one read causes is sent by flush_outboxes.
        # Not a TLS one, which passes attribute lookups on to the TCP
        # transport under it (ProtocolWrapper.__getattr__): its bytes must
        # go through it to be encrypted.
        self._direct = self._measurable and hasattr(t, "socket") and not isinstance(t, TLSMemoryBIOProtocol)
        # A WebSocket transport: what one read causes is one message, written by flush_outboxes.
        self._batched = getattr(t, "joins_writes", False)
        self.transport.registerProducer(self, True)  # type: ignore[attr-defined]
        self._timer = self._clock.callLater(self.broker.config.connect_timeout, self._connect_timeout)
        self._stats.connections_open += 1

    def dataReceived(self, data: bytes) -> None:
        self._stats.bytes_received += len(data)
        # Within a WebSocket connection's read, one_read only calls it: that
        # read flushes at its end.
        one_read(self._received, data)

    def _received(self, data: bytes) -> None:
        if self._closing:
            # Closed (taken over, shut down, refused): its session may belong
            # to another connection already.
            return
        try:
            packets = self._conn.receive_data(data, self._clock.seconds())
        except MalformedPacket as e:
            self._protocol_error(e)
            return
        session = self._session
        if session is None or self._backlog is not None:
            self._before_admission(packets)
            return
        try:
            for packet in packets:
                if self._closing:
                    # A packet before closed the connection (a DISCONNECT
                    # with an error code, say): what follows it is not acted
                    # on. (mypy keeps the narrowing of the check above.)
                    break  # type: ignore[unreachable]
                self._handlers[packet.type](self.broker, session, packet)
        except Exception:
            self.log.failure(
                "failed handling a packet from {client_id!r}",
                client_id=session.client_id,
                event_id="broker.error",
            )
            self.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        for call in (self._timer, self._abort_call):
            if call is not None and call.active():
                call.cancel()
        self._timer = self._abort_call = None
        if self._publish_limits is not None:
            self._publish_limits.stop()
        if self.admission is not None:
            self.admission.closed(self.listener)
            self.admission = None
        self._closing = True
        if self.authentication is not None:
            self.authentication.abandon()
        session = self._session
        if self.transport is not None:
            self._stats.connections_open -= 1
        if session is not None:
            self._session = None
            self._ended(session)
            try:
                self.broker.connection_lost(session, self)
            except Exception:
                self.log.failure("failed ending {client_id!r}", client_id=session.client_id, event_id="broker.error")
        self.broker.flow.forget(self)
        self._lost = True
        waiters, self._waiters = self._waiters, []
        for d in waiters:
            d.callback(None)

    def pauseProducing(self) -> None:
        # Twisted calls this again for every write while its buffer is over
        # the limit: the slow-consumer allowance starts over only on resume.
        self.paused = True
        self.update_reading()

    def resumeProducing(self) -> None:
        self.paused = False
        self.paused_bytes = 0
        self.update_reading()
        if self._session is not None and not self._closing:
            # Lets go of the publishers this client held, once clear.
            self._session.drain()

    def stopProducing(self) -> None:
        self.paused = True

    # The broker's side (ClientLink).

    def write(self, data: bytes) -> None:
        """
        Write encoded packets. While a read is handled, bytes for a TCP
        connection with nothing waiting in Twisted's buffer are kept and
        sent by L{flush_outboxes} when the read is done: at once, not when the
        reactor next polls, and without Twisted registering and then
        unregistering the socket for writing. Bytes for a WebSocket
        connection are kept likewise and written as one message.
        """
        outbox = self._outbox
        if outbox is not None:
            outbox.append(data)  # Counted in bytes_sent when it leaves.
            return
        t: Any = self.transport
        if _reading:
            if self._direct:
                if not t._tempDataLen and t.offset == len(t.dataBuffer):
                    self._outbox = [data]
                    unflushed.append(self)
                    return
            elif self._batched:
                self._outbox = [data]
                unflushed.append(self)
                return
        self._stats.bytes_sent += len(data)
        t.write(data)

    def send(self, packet: Packet) -> None:
        """Encode and write one packet."""
        data = self._conn.send(packet)
        if data:
            self.write(data)

    def spill(self) -> None:
        """
        Hand what the outbox holds to the transport now, ahead of later
        writes: before closing, the bytes written before.
        """
        outbox = self._outbox
        if outbox is not None:
            self._outbox = None
            assert self.transport is not None
            data = b"".join(outbox)
            self._stats.bytes_sent += len(data)
            self.transport.write(data)

    def waiting(self) -> int:
        """
        Bytes written and not yet sent. Read from Twisted's own buffer
        (C{FileDescriptor}'s private fields, stable for many years) when the
        transport has one, because with a steady stream that buffer seldom
        empties and Twisted resumes the producer only once it does; other
        transports are assumed to hold the pause threshold plus what was
        written since the pause.
        """
        t: Any = self.transport
        if self._measurable:
            return len(t.dataBuffer) - t.offset + t._tempDataLen  # type: ignore[no-any-return]
        return SLOW_CONSUMER_BYTES + self.paused_bytes

    def hold_reading(self, held: bool) -> None:
        """Stop (or resume) reading the client for inbound flow control."""
        self._held = held
        self.update_reading()

    def set_keep_alive(self, seconds: int) -> None:
        """Replace the client's keep-alive with the Server Keep Alive."""
        self._conn.keep_alive = seconds

    def challenge(self, packet: Auth) -> None:
        """
        Send AUTH 0x18 (Continue authentication). During the CONNECT's
        exchange, read the client's answer: reading is paused while the
        authentication method works on a step, as while the broker decides
        on a CONNECT.
        """
        backlog = self._backlog
        if backlog is None or self._closing:
            # A re-authentication: the client's traffic flows anyway.
            self.send(packet)
            return
        try:
            self._conn.check_challenge()
        except MalformedPacket as e:
            self._protocol_error(e)
            return
        if backlog:
            # Only a DISCONNECT can be waiting: the client gave up.
            self.close(ReasonCode.SUCCESS)
            return
        self.send(packet)
        self.update_reading()

    def close(self, reason_code: int, reason_string: str | None = None) -> Deferred[None]:
        """
        Close the connection: MQTT 5 clients get DISCONNECT with
        C{reason_code} first; a peer that does not let the bytes drain is
        aborted after L{ABORT_TIMEOUT} seconds.

        @return: a Deferred that fires once the connection is gone.
        """
        if self._lost:
            return succeed(None)
        done: Deferred[None] = Deferred()
        self._waiters.append(done)
        if self._closing or self.transport is None:
            return done
        self._closing = True
        self._close_code = reason_code
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self.authentication is not None:
            # Nothing more of an exchange in progress is sent.
            self.authentication.abandon()
        self.spill()
        data = self._conn.disconnect(reason_code, reason_string)
        if data:
            self._stats.bytes_sent += len(data)
            self.transport.write(data)
        self.transport.loseConnection()
        self._abort_call = self._clock.callLater(ABORT_TIMEOUT, self._abort)
        return done

    # Internals.

    def _ended(self, session: Session) -> None:
        """Count and log the end of an admitted connection, once."""
        disconnected(self.log, self._stats, self, session.client_id, self._close_code)

    def _abort(self) -> None:
        self._abort_call = None
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def update_reading(self) -> None:
        """
        Pause or resume reading the client, as its transport, the broker's
        flow control (L{hold_reading}), its L{PublishLimits} and its
        admission now want.
        """
        # Before CONNACK, the client is read only when an enhanced
        # authentication waits for its AUTH.
        limits = self._publish_limits
        want_paused = (
            self.paused
            or self._held
            or (limits is not None and limits.held)
            or (self._backlog is not None and self._conn.auth_phase is not AuthPhase.CLIENT)
        )
        if want_paused == self._reading_paused or self.transport is None:
            return
        self._reading_paused = want_paused
        if want_paused:
            self.transport.pauseProducing()  # type: ignore[attr-defined]
        else:
            self._conn.last_received = self._clock.seconds()
            self.transport.resumeProducing()  # type: ignore[attr-defined]

    def _before_admission(self, packets: list[Packet]) -> None:
        if self._backlog is not None:
            if self.authentication is None:
                self._backlog.extend(packets)
            else:
                self._during_authentication(packets)
            return
        if not packets:
            return
        connect = packets[0]
        assert isinstance(connect, Connect)
        self._backlog = packets[1:]
        self.protocol_level = connect.protocol_level
        if len(connect.client_id) > self.broker.config.max_client_id_length:
            self._refuse_client_id(connect)
            return
        self.username = connect.username
        if self.certificate_username:
            # The handshake is over (data arrived): the broker takes the
            # client's name from its certificate.
            self.identity = VerifiedIdentity(peer_common_name(self.transport))
            self.username = self.identity.username
        self.max_packet_size = self._conn.client_maximum_packet_size
        self.topic_aliases = self._conn.outbound_aliases
        self.update_reading()
        # The CONNECT timer keeps running until the broker has decided, so an
        # authenticator that never answers cannot hold the connection open.
        d = self.broker.connect(self, connect)
        d.addCallbacks(self._admitted, self._connect_failed)

    def _during_authentication(self, packets: list[Packet]) -> None:
        """
        Packets that arrive during the enhanced authentication of the
        CONNECT (MQTT 5 section 4.12), which the connection let through:
        AUTH goes to the exchange; a DISCONNECT while the exchange waits for
        the client ends the connection; other packets (and a DISCONNECT
        while the method works) wait for CONNACK, like packets behind a
        CONNECT.
        """
        for index, packet in enumerate(packets):
            backlog = self._backlog
            if backlog is None or self._closing:
                # The AUTH before ended the exchange: admitted or refused.
                if self._session is not None and not self._closing:
                    self._handle_packets(self._session, packets[index:])
                return
            kind = packet.type
            if kind is PacketType.AUTH and self.authentication is not None:
                assert isinstance(packet, Auth)
                self.authentication.receive(packet)
                self.update_reading()
            elif kind is PacketType.DISCONNECT and self._conn.auth_phase is AuthPhase.CLIENT:
                self.close(ReasonCode.SUCCESS)
                return
            else:
                backlog.append(packet)

    def _handle_packets(self, session: Session, packets: list[Packet]) -> None:
        try:
            for packet in packets:
                if self._closing:
                    break
                self._handlers[packet.type](self.broker, session, packet)
        except Exception:
            self.log.failure("failed handling a packet", event_id="broker.error")
            self.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)

    def _admitted(self, session: Session | None) -> None:
        backlog = self._backlog or []
        self._backlog = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        if session is not None and self._closing:
            # The connection went away while the broker decided.
            self._ended(session)
            self.broker.connection_lost(session, self)
            return
        if session is None:
            # Refused: CONNACK is written; [MQTT-3.2.2-5] close.
            self.close(ReasonCode.UNSPECIFIED_ERROR)
            return
        self._session = session
        self._conn.accepted()
        self._schedule_keepalive()
        self.update_reading()
        if backlog:
            # Packets the client sent right behind CONNECT.
            try:
                for packet in backlog:
                    if self._closing:
                        break
                    self._handlers[packet.type](self.broker, session, packet)
            except Exception:
                self.log.failure("failed handling a packet", event_id="broker.error")
                self.close(ReasonCode.IMPLEMENTATION_SPECIFIC_ERROR)

    def _connect_failed(self, failure: Failure) -> None:
        self._backlog = None
        self.log.failure("failed admitting a client from {peer}", failure, peer=self.peer, event_id="broker.error")
        if self.protocol_level == ProtocolVersion.MQTT_5:
            self.send(ConnAck(False, ReasonCode.UNSPECIFIED_ERROR))
        else:
            self.send(ConnAck(False, ConnackReturnCode.SERVER_UNAVAILABLE))
        self.close(ReasonCode.UNSPECIFIED_ERROR)

    def _refuse_client_id(self, connect: Connect) -> None:
        """Refuse a client identifier over C{max_client_id_length}."""
        self._backlog = None
        self.log.info(
            "client identifier of {length} characters from {peer} refused (max_client_id_length)",
            length=len(connect.client_id),
            peer=self.peer,
            event_id="connect.client_id_too_long",
        )
        if self.protocol_level == ProtocolVersion.MQTT_5:
            self.send(ConnAck(False, ReasonCode.CLIENT_IDENTIFIER_NOT_VALID))
        else:
            self.send(ConnAck(False, ConnackReturnCode.IDENTIFIER_REJECTED))
        self.close(ReasonCode.CLIENT_IDENTIFIER_NOT_VALID)

    def _connect_timeout(self) -> None:
        self._timer = None
        self.log.info(
            "connection from {peer} not established in {seconds} s",
            peer=self.peer,
            seconds=self.broker.config.connect_timeout,
            event_id="connect.timeout",
        )
        self.close(ReasonCode.MAXIMUM_CONNECT_TIME)

    def _schedule_keepalive(self) -> None:
        deadline = self._conn.keepalive_deadline()
        if deadline is not None:
            self._timer = self._clock.callLater(max(0.0, deadline - self._clock.seconds()), self._check_keepalive)

    def _check_keepalive(self) -> None:
        self._timer = None
        deadline = self._conn.keepalive_deadline()
        if deadline is None or self._closing:
            return
        now = self._clock.seconds()
        if self._reading_paused:
            # Silence while mqttx is not reading is not the client's: count
            # the keep-alive again from when reading resumes.
            self._conn.last_received = now
            deadline = self._conn.keepalive_deadline() or now
        if now < deadline:
            self._timer = self._clock.callLater(deadline - now, self._check_keepalive)
            return
        # [MQTT-3.1.2-24] Nothing for 1.5 keep-alive periods.
        self.log.info(
            "keep-alive timeout for {client_id!r}",
            client_id=self._session.client_id if self._session else None,
            event_id="client.keepalive_timeout",
        )
        self.close(ReasonCode.KEEP_ALIVE_TIMEOUT)

    def _protocol_error(self, error: MalformedPacket) -> None:
        self.log.warn(
            "bad packet from {peer}: {error}",
            peer=self.peer,
            error=str(error),
            event_id="codec.malformed",
        )
        if self._session is None and (self._backlog is None or self.authentication is not None):
            # [MQTT-4.13.1-1] Before CONNACK, refuse with CONNACK; during an
            # enhanced authentication too [MQTT-4.12.0-4], as closing the
            # connection abandons the exchange: no other CONNACK follows.
            self._refuse_connect(error)
        code = error.reason_code
        if code not in _DISCONNECT_CODES:
            # Only CONNACK carries it (0x84 for a second CONNECT of an
            # unknown level): a second CONNECT is a Protocol Error [MQTT-3.1.0-2].
            code = ReasonCode.PROTOCOL_ERROR
        self.close(code, error.detail)

    def _refuse_connect(self, error: MalformedPacket) -> None:
        level = self._conn.announced_level
        if level is None or self.transport is None:
            return
        self.spill()
        if level == ProtocolVersion.MQTT_5:
            refusal = ConnAck(False, error.reason_code, Properties(reason_string=error.detail))
            data = encode(refusal, ProtocolVersion.MQTT_5)
            self._stats.bytes_sent += len(data)
            self.transport.write(data)
        elif error.reason_code == ReasonCode.UNSUPPORTED_PROTOCOL_VERSION:
            # [MQTT-3.1.2-2] 3.1.1 answers an unknown level with 0x01 (a
            # 3.1.1-format CONNACK, which is what 3.1 clients also read).
            self.transport.write(b"\x20\x02\x00\x01")


#: Whether a read is being handled (see L{MQTTServerProtocol.write}).
_reading = False


def one_read(handle: Callable[[bytes], object], data: bytes) -> None:
    """
    Call C{handle(data)} as one read of a connection: what it causes to be
    written to MQTT connections (answers, deliveries to subscribers) is
    sent when it returns, as for a read of L{MQTTServerProtocol}. A
    WebSocket connection reads through it, so that all the frames of one
    TCP read are one read, not one each.
    """
    global _reading
    if _reading:
        handle(data)
        return
    _reading = True
    try:
        handle(data)
    finally:
        _reading = False
        if unflushed:
            flush_outboxes()


def _disconnect(broker: Broker, session: Session, packet: Disconnect) -> None:
    broker.disconnect(session, packet)
    link = session.link
    if link is not None:
        link.close(ReasonCode.SUCCESS)


def _pingreq(broker: Broker, session: Session, packet: Packet) -> None:
    broker.pingreq(session)


def _auth(broker: Broker, session: Session, packet: Auth) -> None:
    # MQTT 5 section 4.12.1: after CONNACK, AUTH 0x19 starts a
    # re-authentication and AUTH 0x18 answers its challenges (the connection
    # checked which is allowed when).
    link = session.link
    if isinstance(link, MQTTServerProtocol) and link.authentication is not None:
        link.authentication.receive(packet)
    elif link is not None:
        link.close(ReasonCode.PROTOCOL_ERROR, "AUTH without an authentication method")


_HANDLERS: dict[PacketType, Callable[[Broker, Session, Any], None]] = {
    PacketType.PUBLISH: Broker.publish,
    PacketType.PUBACK: Broker.puback,
    PacketType.PUBREC: Broker.pubrec,
    PacketType.PUBREL: Broker.pubrel,
    PacketType.PUBCOMP: Broker.pubcomp,
    PacketType.SUBSCRIBE: Broker.subscribe,
    PacketType.UNSUBSCRIBE: Broker.unsubscribe,
    PacketType.PINGREQ: _pingreq,
    PacketType.DISCONNECT: _disconnect,
    PacketType.AUTH: _auth,
}


class MQTTServerFactory(Factory):
    """
    Builds an L{MQTTServerProtocol} for each connection to one listener.

    @param listener: the listener's name, for logs and per-listener policy.
    @param certificate_username: take each client's user name from its TLS
        certificate (see L{MQTTServerProtocol.certificate_username}).
    """

    noisy = False

    def __init__(
        self,
        broker: Broker,
        clock: IReactorTime,
        listener: str = "mqtt",
        *,
        max_connections: int = 0,
        limits: ConnectionLimits | None = None,
        certificate_username: bool = False,
    ) -> None:
        """
        @param max_connections: the listener's own connection limit; 0 for
            none.
        @param limits: the admission limits shared by every listener of
            the broker; by default this factory's own.
        """
        self.broker = broker
        self.clock = clock
        self.listener = listener
        self.max_connections = max_connections
        self.limits = limits if limits is not None else ConnectionLimits(broker.config, clock)
        self.certificate_username = certificate_username

    def buildProtocol(self, addr: IAddress | None) -> MQTTServerProtocol | None:
        """
        Build the protocol of a new connection, or return C{None}, which
        closes it at once, when the connection limits refuse it.
        """
        limits = self.limits
        if not limits.admit(self.listener, self.max_connections, getattr(addr, "host", None)):
            return None
        proto = MQTTServerProtocol(self.broker, self.clock, self.listener)
        proto.factory = self
        proto.admission = limits
        proto.certificate_username = self.certificate_username
        return proto
