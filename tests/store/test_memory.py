# -*- test-case-name: tests.store.test_memory -*-
"""
Tests for L{mqttx.store.memory}: the L{IStore} contract, and a broker
restarted on the same store. The contract and restart tests are mixins, run
against every store (see L{tests.store.test_sqlite}).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from mqttx.broker.message import Message
from mqttx.broker.state import (
    Delivery,
    InflightEntry,
    SessionRecord,
    StoreSnapshot,
    SubscriptionEntry,
)
from mqttx.interfaces import IStore
from mqttx.mqtt.packets import ConnAck, Publish, PubRel, Will
from mqttx.mqtt.properties import Properties
from mqttx.store.memory import MemoryStore
from tests.helpers import BrokerTestCase


def delivery(seq: int, payload: bytes = b"m", qos: int = 1) -> Delivery:
    """A QoS C{qos} delivery of a message on topic C{t}, with sequence number C{seq}."""
    return Delivery(seq, Message("t", payload, qos, origin="pub"), qos, False)


if TYPE_CHECKING:
    _TestCase = SynchronousTestCase
    _BrokerTestCase = BrokerTestCase
else:
    _TestCase = _BrokerTestCase = object


class StoreContractMixin(_TestCase):
    """
    What every L{IStore} must do; mixed into a L{SynchronousTestCase} whose
    C{make_store} builds the store under test.
    """

    def make_store(self) -> IStore:
        raise NotImplementedError

    def setUp(self) -> None:
        self.store = self.make_store()

    def _load(self) -> StoreSnapshot:
        return self.successResultOf(self.store.load())

    def test_interface(self) -> None:
        """
        The store provides L{IStore}.
        """
        self.assertTrue(verifyObject(IStore, self.store))

    def test_empty(self) -> None:
        """
        A new store holds no sessions and no retained messages.
        """
        snapshot = self._load()
        self.assertEqual((snapshot.sessions, snapshot.retained), ((), ()))

    def test_session_round_trip(self) -> None:
        """
        A saved session loads with its record, its queued messages in
        sequence order, its in-flight messages in the order they were sent
        (an update keeps its place) and its inbound QoS 2 identifiers.
        """
        store = self.store
        record = SessionRecord(
            "c1",
            5,
            600,
            (SubscriptionEntry("a/#", 1), SubscriptionEntry("b", 2, no_local=True, subscription_id=4)),
            disconnected_at=12.5,
            # A will's origin is its session's client id (will_message).
            will=Message("will", b"w", 1, True, origin="c1"),
            will_at=40.0,
        )
        results = [
            store.save_session(record),
            store.add_queued("c1", delivery(3, b"third")),
            store.add_queued("c1", delivery(1, b"first")),
            store.add_queued("c1", delivery(2, b"second")),
            store.remove_queued("c1", 2),
            store.put_inflight("c1", InflightEntry(7, delivery(10, b"seven", 2))),
            store.put_inflight("c1", InflightEntry(2, delivery(11, b"two"))),
            store.put_inflight("c1", InflightEntry(9, delivery(12, b"nine"))),
            store.put_inflight("c1", InflightEntry(7, delivery(10, b"seven", 2), released=True)),
            store.remove_inflight("c1", 9),
            store.add_inbound_qos2("c1", 5),
            store.add_inbound_qos2("c1", 6),
            store.remove_inbound_qos2("c1", 5),
        ]
        for d in results:
            self.assertIsNone(self.successResultOf(d))
        [stored] = self._load().sessions
        self.assertEqual(stored.record, record)
        self.assertEqual([d.message.payload for d in stored.queued], [b"first", b"third"])
        self.assertEqual(
            [(e.packet_id, e.released) for e in stored.inflight], [(7, True), (2, False)]
        )
        self.assertEqual(stored.inbound_qos2, (6,))

    def test_save_session_replaces_record_keeps_messages(self) -> None:
        """
        Saving a session's record again replaces the record and keeps its
        queued messages.
        """
        self.store.save_session(SessionRecord("c1", 4, 100))
        self.store.add_queued("c1", delivery(1))
        self.store.save_session(SessionRecord("c1", 5, 200, (SubscriptionEntry("t", 1),)))
        [stored] = self._load().sessions
        self.assertEqual(stored.record, SessionRecord("c1", 5, 200, (SubscriptionEntry("t", 1),)))
        self.assertEqual(len(stored.queued), 1)

    def test_delete_session(self) -> None:
        """
        Deleting a session forgets it and its messages; a session saved again
        later starts empty.
        """
        self.store.save_session(SessionRecord("c1", 4, 100))
        self.store.add_queued("c1", delivery(1))
        self.store.put_inflight("c1", InflightEntry(1, delivery(2)))
        self.store.add_inbound_qos2("c1", 3)
        self.store.save_session(SessionRecord("c2", 4, 100))
        self.successResultOf(self.store.delete_session("c1"))
        self.assertEqual([s.record.client_id for s in self._load().sessions], ["c2"])
        self.store.save_session(SessionRecord("c1", 4, 100))
        stored = {s.record.client_id: s for s in self._load().sessions}["c1"]
        self.assertEqual((stored.queued, stored.inflight, stored.inbound_qos2), ((), (), ()))

    def test_writes_for_unknown_session_ignored(self) -> None:
        """
        Message writes for a session that is not stored do not create one.
        """
        self.store.add_queued("ghost", delivery(1))
        self.store.put_inflight("ghost", InflightEntry(1, delivery(2)))
        self.store.add_inbound_qos2("ghost", 1)
        self.store.remove_queued("ghost", 1)
        self.store.remove_inflight("ghost", 1)
        self.store.remove_inbound_qos2("ghost", 1)
        self.store.delete_session("ghost")
        self.assertEqual(self._load().sessions, ())

    def test_writes_for_unknown_session_not_kept(self) -> None:
        """
        Message writes for a session that is not stored are not kept for a
        session of that client id saved later, which starts empty.
        """
        self.store.add_queued("ghost", delivery(1))
        self.store.put_inflight("ghost", InflightEntry(1, delivery(2)))
        self.store.add_inbound_qos2("ghost", 1)
        self.store.save_session(SessionRecord("ghost", 4, 100))
        [stored] = self._load().sessions
        self.assertEqual((stored.queued, stored.inflight, stored.inbound_qos2), ((), (), ()))

    def test_retained(self) -> None:
        """
        A retained message is stored per topic, replaced by the next one for
        the same topic, and deleted on request.
        """
        self.assertIsNone(self.successResultOf(self.store.put_retained(Message("a", b"1", retain=True))))
        self.store.put_retained(Message("b", b"2", 1, True, Properties(content_type="x"), expires_at=99.0))
        self.store.put_retained(Message("a", b"3", retain=True))
        by_topic = {m.topic: m for m in self._load().retained}
        self.assertEqual(
            by_topic,
            {
                "a": Message("a", b"3", retain=True),
                "b": Message("b", b"2", 1, True, Properties(content_type="x"), expires_at=99.0),
            },
        )
        self.assertIsNone(self.successResultOf(self.store.delete_retained("a")))
        self.store.delete_retained("nothing")
        self.assertEqual([m.topic for m in self._load().retained], ["b"])

    def test_close(self) -> None:
        """
        Closing the store fires once its writes are done.
        """
        self.assertIsNone(self.successResultOf(self.store.close()))


class MemoryStoreTests(StoreContractMixin, SynchronousTestCase):
    """
    L{MemoryStore} keeps the L{IStore} contract.
    """

    def make_store(self) -> IStore:
        return MemoryStore()


class BrokerRestartMixin(_BrokerTestCase):
    """
    A broker stopped with L{Broker.shutdown} and a new one started on the
    same store carry on where the first left off; mixed into a
    L{BrokerTestCase} whose C{reopen_store} gives what the new broker reads.
    """

    def reopen_store(self) -> IStore:
        """The store a restarted broker uses, given the stopped one's C{self.store}."""
        raise NotImplementedError

    def _start_again(self) -> None:
        self.store = self.reopen_store()
        self._build()

    def _restart(self) -> None:
        d = self.broker.shutdown()
        self.assertIsNone(self.successResultOf(d))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self._start_again()

    def test_queued_messages_survive_restart(self) -> None:
        """
        If a persistent session has queued messages when the broker stops, a
        broker started on the same store resumes it: Session Present 1 and
        the messages in order.
        """
        props = Properties(session_expiry_interval=3600)
        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        sub.subscribe("t/#", qos=2)
        sub.drop()
        pub = self.connect_client("pub", 4)
        for i, qos in enumerate((1, 2, 1, 2)):
            pub.publish_acked(f"t/{i}", b"%d" % i, qos)
        pending = self.broker.shutdown()
        pub.finish_close()
        self.successResultOf(pending)
        self._start_again()
        self.assertIn("sub", self.broker.sessions)
        sub = self.connect_client("sub", 5, clean_start=False, properties=props)
        assert sub.connack is not None
        self.assertTrue(sub.connack.session_present)
        got = sub.publishes()
        self.assertEqual(
            [(p.topic, p.payload, p.qos) for p in got],
            [("t/0", b"0", 1), ("t/1", b"1", 2), ("t/2", b"2", 1), ("t/3", b"3", 2)],
        )
        # The subscription came back too.
        self.connect_client("pub2").publish_acked("t/x", b"after", 1)
        self.assertEqual([p.payload for p in sub.publishes()], [b"after"])

    def test_inflight_resent_after_restart(self) -> None:
        """
        If a client had unacknowledged messages when the broker stopped, it
        gets them again with DUP 1 and the same packet identifiers from the
        restarted broker, PUBREL for released QoS 2, and queued messages
        after them [MQTT-4.4.0-1].
        """
        sub = self.connect_client("sub", 4, clean_start=False)
        sub.subscribe("t", qos=2)
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"one", 1)
        pub.publish_acked("t", b"two", 2)
        one, two = sub.publishes()
        assert one.packet_id is not None and two.packet_id is not None
        sub.ack([two])
        self.assertEqual(sub.received(), [PubRel(two.packet_id)])
        sub.drop()
        pub.publish_acked("t", b"queued", 1)
        pending = self.broker.shutdown()
        pub.finish_close()
        self.successResultOf(pending)
        self._start_again()
        sub = self.connect_client("sub", 4, clean_start=False)
        self.assertEqual(sub.connack, ConnAck(True, 0))
        *resent, queued = sub.received()
        self.assertEqual(resent, [Publish("t", b"one", 1, False, True, one.packet_id), PubRel(two.packet_id)])
        assert isinstance(queued, Publish)
        self.assertEqual((queued.payload, queued.dup), (b"queued", False))
        self.assertNotIn(queued.packet_id, (one.packet_id, two.packet_id))

    def test_retained_survive_restart(self) -> None:
        """
        Retained messages are loaded by a broker started on the same store.
        """
        pub = self.connect_client("pub")
        pub.publish("r", b"kept", 0, retain=True)
        pub.disconnect()
        self._restart()
        sub = self.connect_client("sub")
        sub.subscribe("r")
        self.assertEqual(sub.received(), [Publish("r", b"kept", 0, True)])

    def test_session_expiry_counts_across_restart(self) -> None:
        """
        If a stored session's expiry passes while the broker is down, the
        restarted broker discards it; one with time left expires on time.
        """
        self.connect_client("short", 5, clean_start=False, properties=Properties(session_expiry_interval=10)).drop()
        self.connect_client("long", 5, clean_start=False, properties=Properties(session_expiry_interval=100)).drop()
        self._restart()
        self.clock.advance(50)
        self._restart()
        self.assertEqual(sorted(self.broker.sessions), ["long"])
        snapshot = self.successResultOf(self.store.load())
        self.assertEqual([s.record.client_id for s in snapshot.sessions], ["long"])
        self.clock.advance(49.9)
        self.assertIn("long", self.broker.sessions)
        self.clock.advance(0.1)
        self.assertNotIn("long", self.broker.sessions)

    def test_delayed_will_survives_restart(self) -> None:
        """
        If a 5.0 session's will is still delayed when the broker stops, the
        restarted broker publishes it when it falls due.
        """
        will = Will("will", b"late", properties=Properties(will_delay_interval=30))
        props = Properties(session_expiry_interval=100)
        self.connect_client("c1", 5, clean_start=False, properties=props, will=will).drop()
        self.clock.advance(10)
        self._restart()
        watcher = self.connect_client("watcher")
        watcher.subscribe("will")
        self.clock.advance(19.9)
        self.assertEqual(watcher.received(), [])
        self.clock.advance(0.1)
        self.assertEqual(watcher.received(), [Publish("will", b"late")])

    def test_will_of_session_expired_while_down_reaches_all_sessions(self) -> None:
        """
        If a session with a pending will expired while the broker was down,
        the restarted broker publishes the will once every stored session is
        back, so offline subscribers restored after it still get it
        [MQTT-3.1.3-9].
        """
        will = Will("will", b"late", 1, properties=Properties(will_delay_interval=100))
        # Stored first, so it is loaded first.
        self.connect_client(
            "dying", 5, clean_start=False, properties=Properties(session_expiry_interval=10), will=will
        ).drop()
        sub = self.connect_client("sub", 5, clean_start=False, properties=Properties(session_expiry_interval=1000))
        sub.subscribe("will", qos=1)
        sub.drop()
        self.successResultOf(self.broker.shutdown())
        self.clock.advance(50)
        self._start_again()
        self.assertNotIn("dying", self.broker.sessions)
        sub = self.connect_client("sub", 5, clean_start=False, properties=Properties(session_expiry_interval=1000))
        self.assertEqual([(p.topic, p.payload) for p in sub.publishes()], [("will", b"late")])


class BrokerRestartTests(BrokerRestartMixin, BrokerTestCase):
    """
    A broker restarted on the same L{MemoryStore} object carries on.
    """

    def reopen_store(self) -> IStore:
        return self.store
