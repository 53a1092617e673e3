"""
Integration tests: the broker over real loopback TCP, driven by real MQTT
clients (paho-mqtt, mosquitto_pub/mosquitto_sub) and by raw sockets.
"""
