"""Tests for L{mqttx.transports.coap}."""
