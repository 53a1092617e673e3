# -*- test-case-name: tests.transports.test_mqtt -*-
"""
Sending what one read causes at the end of that read, straight to the
socket of each TCP connection it wrote to, and as one message to each
WebSocket connection.

L{MQTTServerProtocol.write} keeps what a read writes to a TCP connection
with nothing waiting in Twisted's buffer, or to a WebSocket connection, in
the protocol's C{_outbox} and puts the protocol on L{unflushed};
C{MQTTServerProtocol.dataReceived} (and C{one_read}, for a WebSocket
connection's read) calls L{flush_outboxes} when the read is done. This is
the message path:
both names are imported into L{mqttx.transports.mqtt}, so using them costs
what a global of that module would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mqttx.transports.mqtt import MQTTServerProtocol

__all__ = ["flush_outboxes", "unflushed"]

#: Connections with bytes in their outbox.
unflushed: list[MQTTServerProtocol] = []


def flush_outboxes() -> None:
    """
    Send what the packets of one read wrote, now. Twisted sends only once
    the reactor next polls, after every other ready connection was read and
    handled, which holds a message back by the time it takes to handle
    everything that arrived with it (S4's latency). Flushing once per read
    still coalesces what one read fans out to each subscriber. What the
    socket does not take, and any error, is left to Twisted. A WebSocket
    connection gets what was written to it as one binary message (MQTT
    packets may share a message [MQTT-6.0.0-2]), in one transport write.
    """
    protocols = unflushed[:]
    del unflushed[:]
    for protocol in protocols:
        outbox = protocol._outbox
        if outbox is None:
            continue  # Spilled by a close.
        protocol._outbox = None
        data = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        protocol._stats.bytes_sent += len(data)
        t: Any = protocol.transport
        if not protocol._direct:
            t.write(data)  # WebSocket
            continue
        if not t.connected or t.disconnecting or t._tempDataLen or t.offset != len(t.dataBuffer):
            t.write(data)
            continue
        try:
            sent = t.socket.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            # Twisted meets the error again on its own send and closes.
            sent = 0
        if sent < len(data):
            t.write(data[sent:])
