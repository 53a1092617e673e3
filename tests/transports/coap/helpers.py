"""
A CoAP listener on a L{Clock} with a real broker and bridge, fed datagrams
by hand: the base of the CoAP protocol and resource tests.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

from mqttx.broker.bridge import Bridge
from mqttx.config import CoAPConfig, CoAPRule
from mqttx.transports.coap.codec import (
    Code,
    Message,
    MessageType,
    Option,
    OptionNumber,
    decode,
    encode,
    path_options,
    query_options,
)
from mqttx.transports.coap.messages import MessageLayer
from mqttx.transports.coap.protocol import CoAPDatagramProtocol
from tests.helpers import BrokerTestCase

#: The address requests come from unless a test says otherwise.
CLIENT = ("127.0.0.1", 40000)


class FakeDatagramTransport:
    """Records what the protocol writes, as (datagram, address) pairs."""

    def __init__(self) -> None:
        self.written: list[tuple[bytes, tuple[str, int]]] = []

    def write(self, datagram: bytes, addr: tuple[str, int]) -> None:
        self.written.append((datagram, addr))


class CoAPTestCase(BrokerTestCase):
    """
    A L{CoAPDatagramProtocol} for the broker of L{BrokerTestCase}, through a
    real L{Bridge}, writing to a L{FakeDatagramTransport}.
    """

    def setUp(self) -> None:
        super().setUp()
        self._mid = 100
        self.build_coap()

    def coap_config(self) -> CoAPConfig:
        """The listener's C{coap:} settings."""
        return CoAPConfig(rules=(CoAPRule("127.0.0.0/8"), CoAPRule("10.1.0.0/16", "dev", subscribe=False)))

    def build_coap(self, **changes: Any) -> None:
        """(Re)build the listener, with some settings changed."""
        self.bridge = Bridge(self.broker, self.clock)
        self.coap = replace(self.coap_config(), **changes)
        self.protocol = CoAPDatagramProtocol(
            self.bridge, "coap", self.coap, self.clock, layer=MessageLayer(random.Random(7))
        )
        self.transport = FakeDatagramTransport()
        self.protocol.transport = self.transport  # type: ignore[assignment]
        self._read = 0

    def request(
        self,
        code: int,
        path: str,
        *,
        query: tuple[str, ...] = (),
        payload: bytes = b"",
        mtype: MessageType = MessageType.CON,
        token: bytes = b"t1",
        observe: int | None = None,
        options: tuple[Option, ...] = (),
        source: tuple[str, int] = CLIENT,
        mid: int | None = None,
    ) -> Message:
        """Send a request for C{path} (C{"/ps/a/b"}); return the message sent."""
        if mid is None:
            self._mid += 1
            mid = self._mid
        opts = [*path_options(path.strip("/").split("/")), *query_options(query), *options]
        if observe is not None:
            opts.append(Option.uint(OptionNumber.OBSERVE, observe))
        message = Message(mtype, code, mid, token, tuple(opts), payload)
        self.send(message, source)
        return message

    def send(self, message: Message | bytes, source: tuple[str, int] = CLIENT) -> None:
        """Hand the protocol one datagram from C{source}."""
        datagram = message if isinstance(message, bytes) else encode(message)
        self.protocol.datagramReceived(datagram, source)

    def sent(self, to: tuple[str, int] = CLIENT) -> list[Message]:
        """The messages written to C{to} since the last call."""
        new, self._read = self.transport.written[self._read :], len(self.transport.written)
        return [decode(d) for d, addr in new if addr == to]

    def answer(self, to: tuple[str, int] = CLIENT) -> Message:
        """The one message written since the last read."""
        messages = self.sent(to)
        if len(messages) != 1:
            raise AssertionError(f"expected one message, got {messages!r}")
        return messages[0]

    def ack(self, message: Message, source: tuple[str, int] = CLIENT) -> None:
        """Acknowledge a CON the protocol sent."""
        self.send(Message(MessageType.ACK, Code.EMPTY, message.message_id), source)

    def reset(self, message: Message, source: tuple[str, int] = CLIENT) -> None:
        """Reject a message the protocol sent (RST)."""
        self.send(Message(MessageType.RST, Code.EMPTY, message.message_id), source)
