"""Sans-IO MQTT 3.1, 3.1.1 and 5.0: packets, codec, topic rules and the connection state machine."""
