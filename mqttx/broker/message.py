# -*- test-case-name: tests.broker.test_broker -*-
"""
The application message as the broker keeps it, independent of who sent it.
"""

from __future__ import annotations

from dataclasses import dataclass

from mqttx.mqtt.properties import NO_PROPERTIES, Properties


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__
# for every field, which doubled the cost of creating one, and one is
# created for every PUBLISH. Treat instances as immutable all the same
# (use dataclasses.replace).
@dataclass(slots=True, eq=True)
class Message:
    """
    An application message on its way through the broker. Never modified
    once made.

    @ivar topic: the resolved topic name (never a topic alias).
    @ivar payload: the payload bytes, shared by every delivery.
    @ivar qos: the QoS it was published with.
    @ivar retain: the RETAIN flag it was published with.
    @ivar properties: the MQTT 5 properties to forward (no topic alias,
        no subscription identifiers: those are per delivery).
    @ivar origin: client identifier of the publisher, for No Local.
    @ivar expires_at: the clock time after which it must not be delivered,
        from Message Expiry Interval; C{None} if it never expires.
    """

    topic: str
    payload: bytes
    qos: int = 0
    retain: bool = False
    properties: Properties = NO_PROPERTIES
    origin: str = ""
    expires_at: float | None = None
