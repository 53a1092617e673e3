# -*- test-case-name: tests.transports.test_websocket -*-
"""
MQTT over WebSocket (MQTT 3.1.1 and 5.0 section 6), with Autobahn.

An L{MQTTWebSocketFactory} wraps the L{MQTTServerFactory} of a listener:
each connection speaks the WebSocket opening handshake with Autobahn, then
its binary messages carry the MQTT byte stream to the same
L{MQTTServerProtocol} a TCP connection has. This module moves bytes and
decides nothing about MQTT.

  - Subprotocol [MQTT-6.0.0-3], [MQTT-6.0.0-4]: C{mqtt} when the client
    offers it, else C{mqttv3.1} (old 3.1 clients); a client offering only
    other subprotocols is refused with HTTP 400. A client offering none is
    let in without one (logged at debug): some clients and test tools send
    no C{Sec-WebSocket-Protocol}, and the bytes that follow are MQTT or
    are refused by the codec anyway.
  - Path: only the listener's C{path} is served; other paths get 404.
  - Streaming [MQTT-6.0.0-2]: message boundaries mean nothing. The payload
    of binary frames is handed to MQTT as it arrives, with Autobahn's
    frame-data callbacks, so a packet may span frames or messages, a frame
    may hold several packets, and neither a frame nor a message is ever
    buffered whole: the MQTT codec refuses a packet over
    C{max_packet_size} from its fixed header, as on TCP. Text messages are
    refused with close code 1003 [MQTT-6.0.0-1]. The other way, what one
    read causes to be written to a connection (the answers to all the
    frames of a TCP read, a fan-out from any connection's read) goes out
    as one binary message when the read is done, before any close frame;
    writes outside a read are a message each, at once.
  - Unmasking: client frames under 1 kB are unmasked by L{_Unmasker}
    (one integer XOR), larger ones by Autobahn's NVX masker: faster on
    them, but making one costs about 3 µs, which a small frame does not
    repay.
  - permessage-deflate (when configured): a compressed message may inflate
    to at most C{max_packet_size} bytes; Autobahn stops inflating there
    and closes with 1009, so a deflate bomb costs no more memory than the
    largest packet.
  - Admission: a listener that trusts C{X-Forwarded-For} admits a
    connection (connection limits, per-address rate) once the request is
    read, with the address the proxy gives; otherwise as it is accepted,
    like TCP, before anything is read.
  - Autobahn's own log lines are silenced; this module logs one line for a
    refused or failed WebSocket connection, and the MQTT protocol logs the
    end of an admitted client as on TCP.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from typing import Any, NoReturn, cast

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept
from autobahn.websocket.protocol import WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny, ConnectionRequest
from autobahn.websocket.xormasker import create_xor_masker  # type: ignore[attr-defined]
from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import (
    IAddress,
    IDelayedCall,
    IPushProducer,
    IReactorTime,
    ITransport,
)
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from txaio.tx import make_logger
from zope.interface import implementer

from mqttx.config import WebSocketConfig
from mqttx.transports.address import describe_address
from mqttx.transports.mqtt import ABORT_TIMEOUT, MQTTServerFactory, MQTTServerProtocol, one_read

__all__ = ["MAX_REQUEST_BYTES", "MQTTWebSocketFactory", "MQTTWebSocketProtocol", "SUBPROTOCOLS"]

#: The WebSocket subprotocols served, in order of preference [MQTT-6.0.0-4].
SUBPROTOCOLS = ("mqtt", "mqttv3.1")
#: The largest opening handshake request read; a longer one gets 431.
MAX_REQUEST_BYTES = 65536
#: Close code for a text message (RFC 6455: unsupported data).
_UNSUPPORTED_DATA = 1003
_OPEN = WebSocketProtocol.STATE_OPEN
_CONNECTING = WebSocketProtocol.STATE_CONNECTING
_CLOSED = WebSocketProtocol.STATE_CLOSED
#: Client frames with a shorter payload are unmasked by L{_Unmasker}; longer
#: ones by Autobahn's masker (NVX, SIMD), which costs about 3 µs to make.
_SMALL_FRAME = 1024


def forwarded_address(header: str) -> IPv4Address | IPv6Address | None:
    """
    The client address in an C{X-Forwarded-For} header: its last entry,
    the one the proxy in front of mqttx added. Entries with a port
    (C{1.2.3.4:5678}, C{[2001:db8::1]:5678}) are taken too; the port is
    dropped, and the address gets port 0.

    @return: the address, or C{None} if the last entry is not an IP address.
    """
    entry = header.rsplit(",", 1)[-1].strip()
    if entry.startswith("["):
        entry = entry[1:].partition("]")[0]
    elif entry.count(":") == 1:
        entry = entry.partition(":")[0]
    try:
        ip = ipaddress.ip_address(entry)
    except ValueError:
        return None
    if ip.version == 6:
        return IPv6Address("TCP", str(ip), 0)
    return IPv4Address("TCP", str(ip), 0)


class _Timer:
    """A delayed call that may be cancelled after it ran, as Autobahn does."""

    __slots__ = ("_call",)

    def __init__(self, call: IDelayedCall) -> None:
        self._call = call

    def cancel(self) -> None:
        if self._call.active():
            self._call.cancel()


class _Timers:
    """
    Autobahn's timers (opening and closing handshakes, pings) on the
    broker's clock. Autobahn batches them on txaio's global reactor; here
    each is one delayed call, like the MQTT keep-alive, and tests drive
    them with a L{twisted.internet.task.Clock}.
    """

    def __init__(self, clock: IReactorTime) -> None:
        self._clock = clock

    def call_later(self, delay: float, func: Callable[..., object], *args: object, **kwargs: object) -> _Timer:
        return _Timer(self._clock.callLater(delay, func, *args, **kwargs))


class _Unmasker:
    """
    Unmasks the payload of a small client frame (RFC 6455 section 5.3),
    with the interface of Autobahn's maskers (C{pointer}, C{reset},
    C{process}), as one XOR of two integers: about 0.8 µs for an 80-byte
    frame, where making Autobahn's NVX masker (cffi allocations) and running
    it costs about 3 µs. From 1 kB on Autobahn's is faster.
    """

    __slots__ = ("_mask", "_ptr")

    def __init__(self, mask: bytes) -> None:
        self._mask = mask * 2
        self._ptr = 0

    def pointer(self) -> int:
        return self._ptr

    def reset(self) -> None:
        self._ptr = 0

    def process(self, data: bytes) -> bytes:
        n = len(data)
        at = self._ptr & 3
        self._ptr += n
        key = self._mask[at : at + 4] * ((n >> 2) + 1)
        return (int.from_bytes(data, "little") ^ int.from_bytes(key[:n], "little")).to_bytes(n, "little")


@implementer(ITransport, IPushProducer)
class _WebSocketTransport:
    """
    The transport an L{MQTTServerProtocol} sees on a WebSocket connection.

    Each write is one binary message; the MQTT protocol joins what it
    writes while a read is handled into one write (C{joins_writes}), sent
    when the read is done (L{mqttx.transports.outbox}) or before a close
    frame. Producer calls reach the TCP (or TLS)
    transport underneath, so the MQTT protocol is the push producer of the
    real connection and pausing it pauses reading from the socket, as on
    TCP. C{dataBuffer}, C{offset} and C{_tempDataLen} are those of a TCP
    transport underneath, for L{MQTTServerProtocol.waiting}: what waits
    there is the MQTT bytes and a few bytes of frame headers. There is no
    C{socket}: the MQTT protocol's direct sends would bypass the framing.
    """

    #: Tells L{MQTTServerProtocol} to keep what a read writes for one write.
    joins_writes = True

    def __init__(self, ws: MQTTWebSocketProtocol) -> None:
        self._ws = ws
        #: Whether the MQTT protocol has paused reading.
        self.reading_paused = False

    @property
    def _tcp(self) -> Any:
        return self._ws.transport

    # ITransport

    def write(self, data: bytes) -> None:
        if self._ws.state == _OPEN:
            self._ws.sendMessage(data, isBinary=True)

    def writeSequence(self, data: Iterable[bytes]) -> None:
        self.write(b"".join(data))

    def loseConnection(self) -> None:
        """
        Close with a WebSocket close (1000, normal closure); Autobahn
        closes the TCP connection once the client answers it, or aborts it
        after C{ABORT_TIMEOUT}.
        """
        if self._ws.state == _OPEN:
            self._ws.sendCloseFrame(code=WebSocketProtocol.CLOSE_STATUS_CODE_NORMAL, isReply=False)

    def abortConnection(self) -> None:
        ws = self._ws
        if ws.state != _CLOSED:
            ws.wasNotCleanReason = "aborted by mqttx"
            ws.dropConnection(abort=True)
        else:
            # Autobahn closed, but the TCP connection still flushes.
            self._tcp.abortConnection()

    def getPeer(self) -> IAddress:
        return self._ws.peer_address

    def getHost(self) -> IAddress:
        return self._tcp.getHost()  # type: ignore[no-any-return]

    def getPeerCertificate(self) -> Any:
        """The client's TLS certificate (wss), for C{use_identity_as_username}; else C{None}."""
        get_certificate = getattr(self._tcp, "getPeerCertificate", None)
        return None if get_certificate is None else get_certificate()

    # IConsumer, IPushProducer: the TCP transport's.

    def registerProducer(self, producer: IPushProducer, streaming: bool) -> None:
        self._tcp.registerProducer(producer, streaming)

    def unregisterProducer(self) -> None:
        self._tcp.unregisterProducer()

    def pauseProducing(self) -> None:
        self.reading_paused = True
        self._tcp.pauseProducing()

    def resumeProducing(self) -> None:
        self.reading_paused = False
        self._tcp.resumeProducing()

    def stopProducing(self) -> None:
        self._tcp.stopProducing()

    # What MQTTServerProtocol.waiting() reads of a TCP transport; an
    # AttributeError (no such attribute) when there is none underneath.

    @property
    def dataBuffer(self) -> bytes:
        return self._tcp.dataBuffer  # type: ignore[no-any-return]

    @property
    def offset(self) -> int:
        return self._tcp.offset  # type: ignore[no-any-return]

    @property
    def _tempDataLen(self) -> int:
        return self._tcp._tempDataLen  # type: ignore[no-any-return]


class MQTTWebSocketProtocol(WebSocketServerProtocol):
    """
    One WebSocket connection carrying MQTT to an L{MQTTServerProtocol}.

    @ivar mqtt: the MQTT protocol of the connection, once admitted.
    @ivar peer_address: the client's address: the TCP peer's, or the one
        C{X-Forwarded-For} gives when the listener trusts it.
    """

    # Autobahn's own logger, silenced: it logs warnings (and tracebacks)
    # for bad input, several per connection. _log is this module's.
    log = make_logger(level="critical")
    _log = Logger()

    factory: MQTTWebSocketFactory
    mqtt: MQTTServerProtocol | None = None
    peer_address: IAddress
    _peer = "?"
    _logged = False
    _mqtt_transport: _WebSocketTransport | None = None
    # Options Autobahn copies from the factory as the connection is made.
    openHandshakeTimeout: float
    autoPingTimeout: float

    # Twisted's side.

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.peer_address = self.transport.getPeer()
        self._peer = describe_address(self.peer_address)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        # Not Autobahn's dataReceived: it formats a debug line (colours and
        # all) for every read, whatever the log level. The same for writes
        # in sendData. What the frames of this read cause is written when
        # it is done: one message per connection written to.
        one_read(self._dataReceived, data)
        if self.state == _CONNECTING and len(self.data) > MAX_REQUEST_BYTES:
            self.failHandshake("Request Header Fields Too Large", 431)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
            return
        assert self.transport is not None
        self.transport.write(data)
        if self.state == _OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)

    def sendCloseFrame(self, code: int | None = None, reasonUtf8: bytes | None = None, isReply: bool = False) -> None:
        """
        Send a close frame (Autobahn's, for every close) after what the
        MQTT protocol wrote in the read being handled: a client's PUBLISH
        and close in one read get the PUBACK, then the close.
        """
        mqtt = self.mqtt
        if mqtt is not None:
            mqtt.spill()
        super().sendCloseFrame(code, reasonUtf8, isReply)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        super().connectionLost(reason)
        call: Any = self.closeHandshakeTimeoutCall
        if call is not None:
            # Autobahn leaves it running when the client closes the TCP
            # connection instead of answering the close.
            call.cancel()
            self.closeHandshakeTimeoutCall = None
        mqtt, self.mqtt = self.mqtt, None
        if mqtt is not None:
            # Also for a connection refused at the handshake: its admission
            # ends here.
            mqtt.connectionLost(reason)

    # The opening handshake.

    def onConnect(self, request: ConnectionRequest) -> str | None:
        """
        Check the path and the subprotocol, and admit the connection if
        that waited for C{X-Forwarded-For}.

        @return: the subprotocol selected.
        @raise ConnectionDeny: 404, 400, or 503 when the connection limits
            refuse it.
        """
        config = self.factory.websocket
        if request.path != config.path:
            self._deny(ConnectionDeny.NOT_FOUND, "Not Found", f"path {request.path[:100]!r}")
        offered = request.protocols
        selected = next((name for name in SUBPROTOCOLS if name in offered), None)
        if selected is None:
            if offered:
                # [MQTT-6.0.0-3] A client MUST offer "mqtt".
                self._deny(
                    ConnectionDeny.BAD_REQUEST,
                    "Bad Request (WebSocket subprotocol mqtt required)",
                    f"subprotocols {', '.join(offered)[:100]!r} offered, not mqtt",
                )
            self._log.debug(
                "WebSocket client {peer} offers no subprotocol; served as mqtt",
                peer=self._peer,
                event_id="websocket.no_subprotocol",
            )
        if config.trust_x_forwarded_for:
            self._admit(request.headers.get("x-forwarded-for"))
        return selected

    def _admit(self, forwarded: str | None) -> None:
        if forwarded is not None:
            address = forwarded_address(forwarded)
            if address is None:
                self._deny(
                    ConnectionDeny.BAD_REQUEST, "Bad Request (X-Forwarded-For)", f"X-Forwarded-For {forwarded[:100]!r}"
                )
            self.peer_address = address
            self._peer = describe_address(address)
        # Without the header, the address is the TCP peer's (the proxy's).
        mqtt = self.factory.mqtt.buildProtocol(self.peer_address)
        if mqtt is None:
            # The connection limits logged it.
            self._logged = True
            raise ConnectionDeny(503, "Service Unavailable")
        self.mqtt = mqtt

    def _deny(self, code: int, reason: str, detail: str) -> NoReturn:
        """Log the refusal with C{detail}, and refuse with C{code}."""
        self._log_refusal(code, detail)
        raise ConnectionDeny(code, reason)

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:
        self._log_refusal(code, reason)
        super().failHandshake(reason, code, responseHeaders)

    def _log_refusal(self, code: int, reason: str) -> None:
        if self._logged:
            return
        self._logged = True
        self._log.info(
            "WebSocket handshake from {peer} refused: {code} {reason}",
            peer=self._peer,
            code=code,
            reason=reason[:200],
            event_id="websocket.refused",
        )

    def onOpenHandshakeTimeout(self) -> None:
        if self.state == _CONNECTING and not self._logged:
            self._logged = True
            self._log.info(
                "WebSocket handshake from {peer} not completed in {seconds} s",
                peer=self._peer,
                seconds=self.openHandshakeTimeout,
                event_id="websocket.handshake_timeout",
            )
        super().onOpenHandshakeTimeout()

    def onOpen(self) -> None:
        mqtt = self.mqtt
        assert mqtt is not None
        self._mqtt_transport = _WebSocketTransport(self)
        mqtt.makeConnection(self._mqtt_transport)

    # Frames.

    def onFrameBegin(self) -> None:
        """
        Give a masked frame its unmasker: L{_Unmasker} for a small one,
        Autobahn's for a larger one. The factory sets Autobahn's
        C{applyMask} option off, so Autobahn makes no masker of its own (a
        no-op one) before calling this, and unmasks with the one set here:
        C{processData} reads C{current_frame_masker} only after. This
        depends on Autobahn's internals; C{UnmaskTests} fail if they change.
        """
        frame = self.current_frame
        mask = cast("bytes | None", frame.mask)  # Annotated str in Autobahn: the frame's 4 bytes.
        if mask is not None and frame.length:
            length = frame.length
            self.current_frame_masker = _Unmasker(mask) if length < _SMALL_FRAME else create_xor_masker(mask, length)
        super().onFrameBegin()

    # Messages: the MQTT byte stream, as it arrives.

    def onMessageBegin(self, isBinary: bool) -> None:
        # Autobahn counts inflated bytes into it (permessage-deflate).
        self.message_data_total_length = 0
        if not isBinary:
            self._fail(_UNSUPPORTED_DATA, "MQTT over WebSocket uses binary messages")

    def onMessageFrameBegin(self, length: int) -> None:
        pass

    def onMessageFrameData(self, payload: bytes) -> None:
        mqtt = self.mqtt
        if payload and self.state == _OPEN and mqtt is not None:
            mqtt.dataReceived(payload)

    def onMessageFrameEnd(self) -> None:
        pass

    def onMessageEnd(self) -> None:
        pass

    # Failures.

    def _fail(self, code: int, reason: str) -> None:
        """[MQTT-6.0.0-1] Close with C{code}; nothing more is read."""
        self._log_failure(code, reason)
        self.sendCloseFrame(code=code, reasonUtf8=reason.encode("utf-8"), isReply=False)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        # Autobahn's protocol violations, invalid payloads, messages over a limit.
        if self.state != _CLOSED:
            self._log_failure(code, reason)
        super()._fail_connection(code, reason)

    def _log_failure(self, code: int, reason: str) -> None:
        if self._logged:
            return
        self._logged = True
        self._log.info(
            "WebSocket connection from {peer} closed with {code}: {reason}",
            peer=self._peer,
            code=code,
            reason=reason[:200],
            event_id="websocket.failed",
        )

    def onAutoPingTimeout(self) -> None:
        transport = self._mqtt_transport
        if transport is not None and transport.reading_paused:
            # The pong cannot be read while mqttx does not read the client:
            # not the client's silence. Ping again later.
            self._cancelAutoPingTimeoutCall()
            return
        if not self._logged:
            self._logged = True
            self._log.info(
                "WebSocket client {peer} did not answer a ping in {seconds} s",
                peer=self._peer,
                seconds=self.autoPingTimeout,
                event_id="websocket.ping_timeout",
            )
        super().onAutoPingTimeout()


class MQTTWebSocketFactory(WebSocketServerFactory):
    """
    Serves MQTT over WebSocket on one listener: each connection ends in an
    L{MQTTServerProtocol} that C{mqtt} builds, so its connection limits,
    keep-alive, authentication and back-pressure are the listener's.

    Autobahn's URL is left at its default: it is used only to check the
    C{Origin} header against allowed origins, and every origin is allowed
    (MQTT clients authenticate themselves), so neither the C{Host} header
    nor TLS (a C{tls:} block wraps this factory) can make a handshake fail.

    @ivar mqtt: the wrapped factory.
    @ivar websocket: the listener's WebSocket settings.
    """

    protocol = MQTTWebSocketProtocol  # type: ignore[assignment]
    noisy = False

    def __init__(self, mqtt: MQTTServerFactory, websocket: WebSocketConfig) -> None:
        super().__init__(server=None, reactor=mqtt.clock)
        self.mqtt = mqtt
        self.websocket = websocket
        self._batched_timer = _Timers(mqtt.clock)
        ping = websocket.ping_interval
        self.setProtocolOptions(
            # A request without Upgrade gets 426, not Autobahn's status page.
            webStatus=False,
            # Tell the client why, with a close code, rather than drop it.
            failByDrop=False,
            openHandshakeTimeout=mqtt.broker.config.connect_timeout,
            # As long as a closing MQTT connection has to flush.
            closeHandshakeTimeout=ABORT_TIMEOUT,
            autoPingInterval=ping,
            autoPingTimeout=ping,
            # Masked client frames are unmasked with the maskers
            # MQTTWebSocketProtocol.onFrameBegin chooses (server frames are
            # not masked, so nothing else changes).
            applyMask=False,
            perMessageCompressionAccept=self._accept_deflate if websocket.permessage_deflate else None,
        )

    def _accept_deflate(self, offers: list[Any]) -> PerMessageDeflateOfferAccept | None:
        for offer in offers:
            if isinstance(offer, PerMessageDeflateOffer):
                # Inflation stops there: the largest packet is the most a
                # message may hold (a bigger one closes with 1009).
                return PerMessageDeflateOfferAccept(offer, max_message_size=self.mqtt.broker.config.max_packet_size)
        return None

    def buildProtocol(self, addr: IAddress | None) -> MQTTWebSocketProtocol | None:  # type: ignore[override]
        """
        Build the protocol of a new connection. Unless the listener trusts
        C{X-Forwarded-For}, the connection limits decide now, by the TCP
        peer's address, and a refused connection is closed at once.
        """
        mqtt = None
        if not self.websocket.trust_x_forwarded_for:
            mqtt = self.mqtt.buildProtocol(addr)
            if mqtt is None:
                return None
        proto = self.protocol()
        proto.factory = self
        proto.mqtt = mqtt
        return proto
