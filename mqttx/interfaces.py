"""
The interfaces of mqttx's pluggable parts.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred
from zope.interface import Attribute, Interface

from mqttx.broker.auth import AuthOutcome
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


class IAuthenticationMethod(Interface):
    """
    An MQTT 5 enhanced authentication method (section 4.12), such as
    SCRAM-SHA-256: a client names it in CONNECT's Authentication Method,
    and it decides, over as many AUTH round trips as it needs, whether the
    client is who it claims.

    The broker offers the methods it is given (L{Broker}'s
    C{authentication_methods}); a CONNECT naming another gets CONNACK 0x8C
    [MQTT-4.12.0-1]. A client that names an offered method is
    authenticated by it alone: the L{IAuthenticator} is not asked (as in
    Mosquitto).
    """

    name = Attribute(
        "The Authentication Method this handles (a str), compared exactly, case included, "
        "with the one the client names."
    )

    def start(
        client_id: str, username: str | None, listener: str, reauthentication: bool
    ) -> IAuthenticationExchange:
        """
        Begin authenticating a connection: for its CONNECT, or for a
        re-authentication the client asked for after CONNACK (AUTH 0x19).
        Each gets its own exchange.

        @param client_id: the client identifier (the assigned one if the
            client sent none).
        @param username: the CONNECT's User Name, if any.
        @param listener: the name of the listener the client came in on.
        @param reauthentication: whether the client is connected already.
        """


class IAuthenticationExchange(Interface):
    """
    One run of an authentication method for one connection.

    The broker calls L{step} with the client's Authentication Data: first
    the CONNECT's (or the re-authenticating AUTH 0x19's), then, after each
    L{AuthContinue<mqttx.broker.auth.AuthContinue>}, that of the client's
    AUTH 0x18 answering it. It never calls L{step} while the previous
    step's Deferred is pending, nor after an
    L{AuthSuccess<mqttx.broker.auth.AuthSuccess>} or
    L{AuthFailure<mqttx.broker.auth.AuthFailure>}.
    """

    def step(data: bytes | None) -> Deferred[AuthOutcome]:
        """
        Answer the client's Authentication Data (C{None} if it sent none).

        The answer may take time (password hashing belongs in a thread, not
        on the reactor): the client's CONNECT timeout bounds a CONNECT's
        whole exchange. If the connection closes first, the broker cancels
        the Deferred. A failed Deferred is logged and ends the client: CONNACK
        or DISCONNECT 0x80.

        @return: a Deferred firing with an C{AuthContinue} (send this data
            to the client in AUTH 0x18 and wait for its answer), an
            C{AuthSuccess} (optional final data for the CONNACK or AUTH
            0x00) or an C{AuthFailure} (a reason code), all from
            L{mqttx.broker.auth}.
        """


class IClientAccess(Interface):
    """
    What one connected client may do with topics, as an L{IAuthorizer}
    decided for its username and client identifier. Checked on the broker's
    paths, so implementations answer from caches once a topic is known.
    """

    def can_publish(topic: str) -> bool:
        """Whether the client may publish to the topic name C{topic}."""

    def can_subscribe(filter: str) -> bool:
        """Whether the client may subscribe to the topic filter C{filter}."""

    def can_read(topic: str) -> bool:
        """Whether a message published to C{topic} may be delivered to the client."""


class IAuthorizer(Interface):
    """Decides which topics clients may publish to, subscribe to and receive."""

    def for_client(client_id: str, username: str | None) -> IClientAccess:
        """The access of a client admitted with C{client_id} and C{username}."""
