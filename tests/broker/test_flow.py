"""
Inbound flow control (L{mqttx.broker.flow}): publishers are read only as
fast as the subscribers they feed drain, and a slow consumer holds them back
for at most C{flow_control_timeout} seconds.

A subscriber's full transport is simulated by calling its protocol's
C{pauseProducing}, as Twisted does; whether a client is read shows in its
L{StringTransport}'s C{producerState}.
"""

from __future__ import annotations

from mqttx.broker.session import FLOW_CONTROL_BYTES
from mqttx.config import MQTTConfig
from mqttx.mqtt.codec import encode
from mqttx.mqtt.packets import PubAck, Publish

from ..helpers import BrokerTestCase, FakeClient


class FlowControlTests(BrokerTestCase):
    def default_config(self) -> MQTTConfig:
        return MQTTConfig(flow_control_timeout=5.0, max_inflight=2)

    def setUp(self) -> None:
        super().setUp()
        self.sub = self.connect_client("sub")
        self.sub.subscribe("t/#", qos=1)
        self.pub = self.connect_client("pub")

    def assertReading(self, client: FakeClient, reading: bool) -> None:
        self.assertEqual(client.transport.producerState, "producing" if reading else "paused")

    def test_publisher_held_while_subscriber_full(self) -> None:
        """
        A publisher whose message reaches a subscriber with a full transport
        is not read until that subscriber's transport drains; the message
        itself is delivered.
        """
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.assertReading(self.pub, False)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"m"])
        self.sub.protocol.resumeProducing()
        self.assertReading(self.pub, True)

    def test_short_pause_holds_nobody(self) -> None:
        """
        A paused subscriber whose transport says it holds less than
        C{FLOW_CONTROL_BYTES} (a burst it is draining) holds nobody; one
        holding more does.
        """
        transport = self.sub.transport
        transport.dataBuffer, transport.offset = b"", 0  # type: ignore[attr-defined]
        transport._tempDataLen = FLOW_CONTROL_BYTES - 100  # type: ignore[attr-defined]
        self.sub.protocol._measurable = True
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.assertReading(self.pub, True)
        transport._tempDataLen = FLOW_CONTROL_BYTES  # type: ignore[attr-defined]
        self.pub.publish("t/a", b"m", 0)
        self.assertReading(self.pub, False)

    def test_publisher_to_others_not_held(self) -> None:
        """
        Only publishers whose messages reach the full subscriber are held:
        one publishing to a topic nobody full subscribes to reads on.
        """
        other = self.connect_client("other")
        other.subscribe("u", qos=0)
        self.sub.protocol.pauseProducing()
        self.pub.publish("u", b"m", 0)
        self.assertReading(self.pub, True)
        self.assertEqual([p.payload for p in other.publishes()], [b"m"])

    def test_held_until_every_subscriber_clear(self) -> None:
        """
        A publisher held by two subscribers is read again only once both
        have drained.
        """
        second = self.connect_client("second")
        second.subscribe("t/a", qos=0)
        self.sub.protocol.pauseProducing()
        second.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.sub.protocol.resumeProducing()
        self.assertReading(self.pub, False)
        second.protocol.resumeProducing()
        self.assertReading(self.pub, True)

    def test_several_publishers_held_by_one_subscriber(self) -> None:
        """Every publisher feeding a full subscriber is held, and every one let go on resume."""
        pub2 = self.connect_client("pub2")
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"1", 0)
        pub2.publish("t/b", b"2", 0)
        self.assertReading(self.pub, False)
        self.assertReading(pub2, False)
        self.sub.protocol.resumeProducing()
        self.assertReading(self.pub, True)
        self.assertReading(pub2, True)

    def test_qos1_held_while_window_full(self) -> None:
        """
        A subscriber whose outbound window is full (its messages queue in
        the session) holds the publisher too, and lets go once its queue is
        empty: PUBACKs to the publisher do not run ahead of deliveries.
        """
        for payload in (b"1", b"2"):
            self.pub.publish_acked("t/a", payload, 1)
        self.assertReading(self.pub, True)
        self.pub.publish("t/a", b"3", 1)
        self.assertIsInstance(self.pub.expect(PubAck), PubAck)
        self.assertReading(self.pub, False)
        first = self.sub.publishes()
        self.assertEqual([p.payload for p in first], [b"1", b"2"])
        self.sub.ack(first[:1])
        # "3" left the queue: the subscriber is clear.
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"3"])
        self.assertReading(self.pub, True)

    def test_slow_consumer_lets_go_after_timeout(self) -> None:
        """
        A subscriber still full after C{flow_control_timeout} seconds is a
        slow consumer: its publishers are read again, and it holds nobody
        until it drains; then it may hold them again.
        """
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"1", 0)
        self.clock.advance(4.9)
        self.assertReading(self.pub, False)
        self.clock.advance(0.1)
        self.assertReading(self.pub, True)
        self.pub.publish("t/a", b"2", 0)
        self.assertReading(self.pub, True)
        self.sub.protocol.resumeProducing()
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"3", 0)
        self.assertReading(self.pub, False)

    def test_timeout_zero_never_holds(self) -> None:
        """C{flow_control_timeout: 0} turns inbound flow control off."""
        self.use_config(flow_control_timeout=0.0)
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=0)
        pub = self.connect_client("pub")
        sub.protocol.pauseProducing()
        pub.publish("t", b"m", 0)
        self.assertReading(pub, True)

    def test_self_subscribed_publisher_not_held_by_itself(self) -> None:
        """
        A client that gets its own messages is not held by itself: once its
        transport drains, it is read again.
        """
        self.pub.subscribe("t/#", qos=0)
        self.pub.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.pub.protocol.resumeProducing()
        self.assertReading(self.pub, True)

    def test_subscriber_gone_lets_go(self) -> None:
        """A full subscriber whose connection ends lets its publishers go."""
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.sub.drop()
        self.assertReading(self.pub, True)

    def test_publisher_gone_while_held(self) -> None:
        """
        A held publisher whose connection ends is forgotten: the subscriber
        draining later touches nothing of it, and holds others as before.
        """
        self.sub.protocol.pauseProducing()
        self.pub.publish("t/a", b"m", 0)
        self.pub.drop()
        self.sub.protocol.resumeProducing()
        self.assertReading(self.pub, False)
        pub2 = self.connect_client("pub2")
        self.sub.protocol.pauseProducing()
        pub2.publish("t/a", b"n", 0)
        self.assertReading(pub2, False)
        self.clock.advance(5)
        self.assertReading(pub2, True)

    def test_deliveries_outside_a_publish_hold_nobody(self) -> None:
        """
        A retained message sent to a full subscriber when it subscribes is
        not charged to the next publisher, whose message goes elsewhere.
        """
        self.pub.publish("r", b"kept", 0, retain=True)
        self.sub.protocol.pauseProducing()
        self.sub.subscribe("r", qos=0)
        other = self.connect_client("other")
        other.subscribe("u", qos=0)
        self.pub.publish("u", b"m", 0)
        self.assertReading(self.pub, True)

    def test_keep_alive_not_counted_while_held(self) -> None:
        """
        A held publisher's silence does not count against its keep-alive
        [MQTT-3.1.2-24]: the broker is not reading it.
        """
        self.use_config(flow_control_timeout=60.0)
        sub = self.connect_client("sub")
        sub.subscribe("t", qos=0)
        pub = self.connect_client("pub", keep_alive=10)
        sub.protocol.pauseProducing()
        pub.publish("t", b"m", 0)
        self.clock.advance(30)
        self.assertFalse(pub.disconnecting)
        self.assertReading(pub, False)

    def test_messages_behind_the_hold_still_handled(self) -> None:
        """
        Packets that arrived in the same read as the message that caused
        the hold are handled, not lost: a hold only stops further reads.
        """
        self.sub.protocol.pauseProducing()
        data = b"".join(encode(Publish("t/a", bytes([n]), 0, False, False, None), 4) for n in range(3))
        self.pub.send_bytes(data)
        self.assertEqual([p.payload for p in self.sub.publishes()], [b"\0", b"\1", b"\2"])
        self.assertReading(self.pub, False)
