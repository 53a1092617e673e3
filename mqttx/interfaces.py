"""
The interfaces of mqttx's pluggable parts.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Interface

from mqttx.broker.message import Message
from mqttx.broker.state import Delivery, InflightEntry, SessionRecord, StoreSnapshot


class IStore(Interface):
    """
    Where the broker keeps what must outlive a connection or a process:
    persistent sessions (record, queued and in-flight messages, inbound QoS 2
    packet identifiers) and retained messages.

    The broker calls it only for sessions with a non-zero expiry and for
    retained messages. Each write returns a L{Deferred} that fires once the
    write is as durable as the store promises; the broker acknowledges QoS
    1/2 messages only after the writes they caused have fired. Writes for one
    session are applied in call order.
    """

    def load() -> Deferred[StoreSnapshot]:
        """Read everything stored, for the broker's start."""

    def save_session(record: SessionRecord) -> Deferred[None]:
        """Create or replace the record of C{record.client_id}'s session."""

    def delete_session(client_id: str) -> Deferred[None]:
        """Forget a session and all its messages."""

    def add_queued(client_id: str, delivery: Delivery) -> Deferred[None]:
        """Append C{delivery} to the session's queue."""

    def remove_queued(client_id: str, seq: int) -> Deferred[None]:
        """Remove the queued delivery with sequence number C{seq}."""

    def put_inflight(client_id: str, entry: InflightEntry) -> Deferred[None]:
        """Record (or update, e.g. once released) an outbound in-flight message."""

    def remove_inflight(client_id: str, packet_id: int) -> Deferred[None]:
        """Forget a completed outbound in-flight message."""

    def add_inbound_qos2(client_id: str, packet_id: int) -> Deferred[None]:
        """Remember an inbound QoS 2 packet identifier awaiting PUBREL."""

    def remove_inbound_qos2(client_id: str, packet_id: int) -> Deferred[None]:
        """Forget an inbound QoS 2 packet identifier once PUBREL arrived."""

    def put_retained(message: Message) -> Deferred[None]:
        """Store C{message} as the retained message of its topic."""

    def delete_retained(topic: str) -> Deferred[None]:
        """Clear the retained message of C{topic}."""

    def close() -> Deferred[None]:
        """Flush outstanding writes and release resources."""


class IAuthenticator(Interface):
    """Decides whether a connecting client may in, from its CONNECT."""

    def authenticate(
        client_id: str, username: str | None, password: bytes | None, listener: str
    ) -> Deferred[int]:
        """
        Check a client's credentials.

        @return: a Deferred firing with an MQTT 5 reason code: 0 to accept,
            0x86 (bad user name or password) or 0x87 (not authorized) to refuse.
        """
