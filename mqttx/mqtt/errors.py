# -*- test-case-name: tests.mqtt.test_codec -*-
"""
The one exception the sans-IO MQTT layer raises for bad input.
"""

from __future__ import annotations

from .reason_codes import ReasonCode


class MalformedPacket(Exception):
    """
    The peer sent bytes or a packet that breaks the MQTT specification.

    @ivar reason_code: the MQTT 5 reason code that describes the fault
        (0x81 malformed, 0x82 protocol error, 0x95 packet too large, ...).
        The connection uses it for DISCONNECT (or CONNACK before the
        session exists); 3.1/3.1.1 connections simply close.
    @ivar detail: a short human explanation, for logs and reason strings.
    """

    def __init__(self, reason_code: ReasonCode, detail: str) -> None:
        super().__init__(reason_code, detail)
        self.reason_code = reason_code
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.detail} ({self.reason_code.name}, 0x{self.reason_code:02X})"
