# -*- test-case-name: tests.transports.coap.test_protocol -*-
"""
The service of a C{coap} listener: a UDP port and its L{CoAPDatagramProtocol}.
"""

from __future__ import annotations

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.error import CannotListenError
from twisted.internet.interfaces import IListeningPort

from mqttx.transports.coap.protocol import CoAPDatagramProtocol

__all__ = ["UDPListenerService"]


class UDPListenerService(Service):
    """
    Listens on a UDP port while running.

    Stopping first ends the observations (each observer gets a final 5.03
    Service Unavailable notification, RFC 7641 section 3.2: a non-2.xx
    response ends an observation; there is no other server-side cancel),
    then closes the port.

    @ivar listening: fires with the port once listening, or fails with
        L{CannotListenError}; like the stream listeners' observed endpoint,
        for L{mqttx.service.MQTTXService}.
    """

    def __init__(self, reactor: Any, port: int, interface: str, protocol: CoAPDatagramProtocol) -> None:
        self._reactor = reactor
        self._port_number = port
        self._interface = interface
        self.protocol = protocol
        self.port: IListeningPort | None = None
        self.listening: Deferred[IListeningPort] = Deferred()

    def startService(self) -> None:
        super().startService()
        try:
            # Datagrams up to the UDP maximum: a request need not use Block1.
            self.port = self._reactor.listenUDP(self._port_number, self.protocol, self._interface, 65535)
        except CannotListenError as e:
            self.listening.errback(e)
            return
        self.listening.callback(self.port)

    def stopService(self) -> Deferred[None] | None:
        super().stopService()
        self.protocol.stop()
        port, self.port = self.port, None
        if port is None:
            return None
        result: Deferred[None] | None = port.stopListening()
        return result
