# -*- test-case-name: tests.store.test_sqlite -*-
"""
Tests for L{mqttx.store.sqlite}, L{mqttx.store.schema} and
L{mqttx.store.writer}: the L{IStore} contract and broker restarts (shared
with L{MemoryStore}, see L{tests.store.test_memory}), what SQLite adds
(one row per message, reloads from disk, a checked and versioned schema)
and the group-commit writer thread under a real reactor.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as _reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase

from mqttx.broker.message import Message
from mqttx.broker.state import (
    Delivery,
    InflightEntry,
    SessionRecord,
    SharedDelivery,
    StoredSession,
    StoreSnapshot,
    SubscriptionEntry,
)
from mqttx.interfaces import IStore
from mqttx.mqtt.packet_type import PacketType
from mqttx.mqtt.properties import Properties
from mqttx.store.memory import MemoryStore
from mqttx.store.schema import MIGRATIONS, SCHEMA_VERSION, StoreError, connect, migrate
from mqttx.store.sqlite import SQLiteStore
from mqttx.store.writer import GroupCommitWriter, InlineWriter, Op
from tests.helpers import BrokerTestCase
from tests.store.test_memory import BrokerRestartMixin, StoreContractMixin
from tests.strategies import properties

#: The global reactor, untyped: trial runs it, and the writer thread needs it.
reactor: Any = _reactor


def open_store(case: SynchronousTestCase, path: str | Path, **kwargs: Any) -> SQLiteStore:
    """A L{SQLiteStore} on C{path}, closed when the test ends."""
    store = SQLiteStore(path, **kwargs)
    case.addCleanup(store.close)
    return store


def query(path: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """The rows of C{sql}, read through a connection of its own (what is committed)."""
    conn = sqlite3.connect(path)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


def count(path: str | Path, table: str) -> int:
    """How many rows C{table} has."""
    [(n,)] = query(path, f"SELECT count(*) FROM {table}")
    return int(n)


def snapshot_key(snapshot: StoreSnapshot) -> tuple[Any, ...]:
    """
    A snapshot in a canonical order, for comparing stores: sessions by
    client id, inbound QoS 2 ids sorted, retained messages by topic (the
    order of those is not part of the contract; queue and flight order is).
    """
    return (
        sorted(
            (
                (s.record.client_id, s.record, s.queued, s.inflight, tuple(sorted(s.inbound_qos2)))
                for s in snapshot.sessions
            ),
            key=lambda s: s[0],
        ),
        sorted(((m.topic, m) for m in snapshot.retained), key=lambda r: r[0]),
    )


# The shared suites.


class SQLiteStoreTests(StoreContractMixin, SynchronousTestCase):
    """
    L{SQLiteStore}, committing each write at once (no reactor), keeps the
    L{IStore} contract.
    """

    def make_store(self) -> IStore:
        self.path = self.mktemp()
        return open_store(self, self.path)


class SQLiteReloadedStoreTests(SQLiteStoreTests):
    """
    L{SQLiteStore} keeps the L{IStore} contract when every load is made by
    a new store on the same file: what was written is on disk.
    """

    def _load(self) -> StoreSnapshot:
        return self.successResultOf(open_store(self, self.path).load())


class SQLiteBrokerRestartTests(BrokerRestartMixin, BrokerTestCase):
    """
    A broker restarted on a new L{SQLiteStore} opened on the stopped
    broker's database file carries on where the first left off.
    """

    def make_store(self) -> IStore:
        self.path = self.mktemp()
        return open_store(self, self.path)

    def reopen_store(self) -> IStore:
        self.successResultOf(self.store.close())
        return open_store(self, self.path)

    def test_fan_out_stored_once_across_restart(self) -> None:
        """
        A message published to three offline persistent subscribers is one
        row of C{messages}; after a restart each gets it, and the row goes
        once the last has acknowledged it.
        """
        subs = ("s1", "s2", "s3")
        for cid in subs:
            sub = self.connect_client(cid, 4, clean_start=False)
            sub.subscribe("t", qos=1)
            sub.drop()
        pub = self.connect_client("pub")
        pub.publish_acked("t", b"once", 1)
        pub.disconnect()
        self.assertEqual((count(self.path, "messages"), count(self.path, "queued")), (1, 3))
        self._restart()
        for cid in subs:
            self.assertEqual(count(self.path, "messages"), 1)
            sub = self.connect_client(cid, 4, clean_start=False)
            got = sub.publishes()
            self.assertEqual([p.payload for p in got], [b"once"])
            sub.ack(got)
        self.assertEqual([count(self.path, t) for t in ("messages", "queued", "inflight")], [0, 0, 0])


# What SQLite adds.


def _session(cid: str) -> SessionRecord:
    return SessionRecord(cid, 5, 3600)


class SharedPayloadTests(SynchronousTestCase):
    """
    A message queued or in flight for several sessions is one row of
    C{messages}, deleted when the last session is done with it.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.store = open_store(self, self.path)
        self.message = Message("t", b"payload" * 100, 1, origin="pub")
        for cid in ("a", "b", "c"):
            self.store.save_session(_session(cid))
            self.store.add_queued(cid, Delivery(1, self.message, 1, False))

    def test_fan_out_is_one_row(self) -> None:
        """
        One message queued for three sessions is stored once, with a queue
        row per session.
        """
        self.assertEqual((count(self.path, "messages"), count(self.path, "queued")), (1, 3))

    def test_row_goes_with_last_reference(self) -> None:
        """
        The message row stays while any session holds the message (queued,
        then in flight) and goes when the last one acknowledges it or its
        session is deleted.
        """
        self.store.remove_queued("a", 1)
        self.store.delete_session("b")
        self.store.remove_queued("c", 1)
        self.store.put_inflight("c", InflightEntry(4, Delivery(1, self.message, 1, False)))
        self.assertEqual(count(self.path, "messages"), 1)
        self.store.remove_inflight("c", 4)
        self.assertEqual([count(self.path, t) for t in ("messages", "queued", "inflight")], [0, 0, 0])

    def test_deleting_sessions_frees_row(self) -> None:
        """
        Deleting every session that holds a message deletes its row.
        """
        for cid in ("a", "b"):
            self.store.delete_session(cid)
        self.assertEqual(count(self.path, "messages"), 1)
        self.store.delete_session("c")
        self.assertEqual(count(self.path, "messages"), 0)

    def test_reference_counts_rebuilt_at_load(self) -> None:
        """
        After a restart, the deliveries of one row share one L{Message}
        object, and the row goes when the last of them is done with, as
        before the restart.
        """
        self.store.remove_queued("c", 1)
        self.store.put_inflight("c", InflightEntry(4, Delivery(1, self.message, 1, False)))
        self.successResultOf(self.store.close())
        store = open_store(self, self.path)
        sessions = {s.record.client_id: s for s in self.successResultOf(store.load()).sessions}
        a, b, c = (sessions[cid] for cid in "abc")
        self.assertIs(a.queued[0].message, b.queued[0].message)
        self.assertIs(a.queued[0].message, c.inflight[0].delivery.message)
        self.assertEqual(a.queued[0].message, self.message)
        store.remove_queued("a", 1)
        store.remove_queued("b", 1)
        self.assertEqual(count(self.path, "messages"), 1)
        store.remove_inflight("c", 4)
        self.assertEqual(count(self.path, "messages"), 0)

    def test_new_rows_after_load_do_not_collide(self) -> None:
        """
        Messages stored after a reload get rows of their own, not the row
        of a message loaded from the file.
        """
        self.successResultOf(self.store.close())
        store = open_store(self, self.path)
        self.successResultOf(store.load())
        store.add_queued("a", Delivery(2, Message("t", b"new", 1), 1, False))
        store.remove_queued("a", 2)
        self.assertEqual(count(self.path, "messages"), 1)
        snapshot = self.successResultOf(open_store(self, self.path).load())
        [a] = [s for s in snapshot.sessions if s.record.client_id == "a"]
        self.assertEqual([d.message for d in a.queued], [self.message])

    def test_orphan_rows_removed_at_load(self) -> None:
        """
        A message row no session holds (as a crash between its last
        reference going and its deletion could leave) is deleted at load;
        held ones stay.
        """
        self.successResultOf(self.store.close())
        conn = sqlite3.connect(self.path)
        conn.execute(
            "INSERT INTO messages (id, topic, payload, qos, retain, properties, origin)"
            " VALUES (99, 'lost', x'00', 1, 0, x'00', '')"
        )
        conn.commit()
        conn.close()
        store = open_store(self, self.path)
        self.successResultOf(store.load())
        self.assertEqual(query(self.path, "SELECT topic FROM messages"), [("t",)])


    def test_dangling_references_dropped_at_load(self) -> None:
        """
        Queue and flight rows whose message row is missing (lost with a
        failed commit, say) are dropped at load, not a crash: the rest of
        the session loads.
        """
        self.successResultOf(self.store.close())
        conn = sqlite3.connect(self.path)
        conn.execute("INSERT INTO queued VALUES ('a', 2, 98, 1, 0, '', NULL)")
        conn.execute("INSERT INTO inflight VALUES ('a', 7, 3, 99, 1, 0, '', NULL, 0)")
        conn.commit()
        conn.close()
        store = open_store(self, self.path)
        [a] = [s for s in self.successResultOf(store.load()).sessions if s.record.client_id == "a"]
        self.assertEqual(([d.seq for d in a.queued], a.inflight), ([1], ()))
        self.assertEqual(query(self.path, "SELECT client_id, seq FROM queued WHERE client_id = 'a'"), [("a", 1)])
        self.assertEqual(count(self.path, "inflight"), 0)


class TurnTests(SynchronousTestCase):
    """
    With a reactor, the writes of one reactor turn are handed to the writer
    together once the turn ends (here a L{Clock} and an inline writer).
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.clock = Clock()
        self.store = open_store(self, self.path, reactor=self.clock)
        self.batches: list[list[Op]] = []
        inline = InlineWriter(connect(self.path, synchronous="FULL"))
        submit = inline.submit

        def record(ops: list[Op], waiters: list[Deferred[None]]) -> None:
            self.batches.append(ops)
            submit(ops, waiters)

        inline.submit = record  # type: ignore[method-assign]
        self.store.writer = inline
        self.message = Message("t", b"x", 1)
        self.store.save_session(_session("a"))
        self.store.add_queued("a", Delivery(1, self.message, 1, False))
        self.clock.advance(0)

    def test_turn_is_one_commit_after_it_ends(self) -> None:
        """
        With C{sync}, the writes of one turn are committed together once the
        turn ends, and their Deferreds fire after that commit.
        """
        self.assertEqual(len(self.batches), 1)
        d1 = self.store.save_session(_session("b"))
        d2 = self.store.put_retained(Message("r", b"1", retain=True))
        self.assertNoResult(d1)
        self.assertNoResult(d2)
        self.assertEqual(count(self.path, "sessions"), 1)
        self.clock.advance(0)
        self.assertEqual(len(self.batches), 2)
        self.successResultOf(d1)
        self.successResultOf(d2)
        self.assertEqual((count(self.path, "sessions"), count(self.path, "retained")), (2, 1))

    def test_move_into_flight_keeps_row(self) -> None:
        """
        A message that leaves a queue and goes into flight in one turn keeps
        its row: it is neither deleted nor written again.
        """
        [(row,)] = query(self.path, "SELECT id FROM messages")
        self.store.remove_queued("a", 1)
        self.store.put_inflight("a", InflightEntry(1, Delivery(1, self.message, 1, False)))
        self.clock.advance(0)
        self.assertFalse([sql for sql, _ in self.batches[-1] if "messages" in sql])
        self.assertEqual(query(self.path, "SELECT id FROM messages"), [(row,)])
        self.assertEqual(query(self.path, "SELECT message_id FROM inflight"), [(row,)])

    def test_row_deleted_at_end_of_turn(self) -> None:
        """
        A message whose last reference goes is deleted in that turn's commit.
        """
        self.store.remove_queued("a", 1)
        self.clock.advance(0)
        self.assertEqual(count(self.path, "messages"), 0)


class RoundTripTests(SynchronousTestCase):
    """
    Everything a store keeps reads back the same from the file, by a new
    store.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.store = open_store(self, self.path)

    def _reload(self) -> StoreSnapshot:
        self.successResultOf(self.store.close())
        return self.successResultOf(open_store(self, self.path).load())

    def test_session_state(self) -> None:
        """
        Message properties (user properties in order with duplicates,
        content type, correlation data, response topic, expiry), subscription
        options and identifiers, shared-subscription deliveries, released QoS
        2 in-flight entries, inbound QoS 2 ids and a delayed will with its due
        time all come back equal.
        """
        props = Properties(
            payload_format_indicator=1,
            message_expiry_interval=60,
            content_type="text/plain; charset=utf-8",
            response_topic="reply/to",
            correlation_data=b"\x00\x01corr\xff",
            user_property=(("k", "v1"), ("a", "b"), ("k", "v1"), ("k", "v2")),
        )
        message = Message("a/b", b"\x00\xff" * 50, 2, True, props, "pub", 1234.5)
        will = Message("will/t", b"bye", 1, True, Properties(content_type="w", user_property=(("x", "y"),)), "c1", 99.0)
        record = SessionRecord(
            "c1",
            5,
            86400,
            (
                SubscriptionEntry(
                    "a/#", 2, no_local=True, retain_as_published=True, retain_handling=2, subscription_id=268435455
                ),
                SubscriptionEntry("$share/g/a/b", 1, subscription_id=7),
                SubscriptionEntry("plain", 0),
            ),
            disconnected_at=1000.25,
            will=will,
            will_at=1030.25,
        )
        queued = (
            Delivery(5, message, 2, True, (268435455, 7)),
            SharedDelivery(6, message, 1, False, (7,), group="$share/g/a/b"),
            Delivery(7, Message("z", b"", 1), 1, False),
        )
        inflight = (
            InflightEntry(1, Delivery(2, message, 2, False, (1,)), released=True),
            InflightEntry(65535, SharedDelivery(3, message, 2, True, group="$share/g/a/b")),
            InflightEntry(8, Delivery(4, Message("y", b"y", 1, properties=props), 1, False)),
        )
        self.store.save_session(record)
        for d in queued:
            self.store.add_queued("c1", d)
        for e in inflight:
            self.store.put_inflight("c1", e)
        self.store.add_inbound_qos2("c1", 65535)
        self.store.add_inbound_qos2("c1", 1)
        self.store.save_session(SessionRecord("c2", 3, 10))
        sessions = {s.record.client_id: s for s in self._reload().sessions}
        self.assertEqual(sessions["c1"], StoredSession(record, queued, inflight, sessions["c1"].inbound_qos2))
        self.assertEqual(sorted(sessions["c1"].inbound_qos2), [1, 65535])
        self.assertIsInstance(sessions["c1"].queued[1], SharedDelivery)
        self.assertEqual(sessions["c2"], StoredSession(SessionRecord("c2", 3, 10)))

    def test_retained(self) -> None:
        """
        Retained messages come back with their QoS, properties, origin and
        expiry.
        """
        kept = [
            Message("r/1", b"one", 1, True, Properties(user_property=(("a", "1"), ("a", "1"))), "p", 50.0),
            Message("r/2", b"\x00" * 1000, 2, True, Properties(correlation_data=b"c"), ""),
        ]
        for m in kept:
            self.store.put_retained(m)
        self.assertEqual(sorted(self._reload().retained, key=lambda m: m.topic), kept)


class SchemaTests(SynchronousTestCase):
    """
    Opening a database: a new one is created at the current version, an
    older one is migrated, and anything else is refused with the path,
    never reset.
    """

    def _refused(self, path: Path) -> str:
        """Opening C{path} fails with a L{StoreError} naming it, and leaves the file as it was."""
        before = path.read_bytes()
        error = self.assertRaises(StoreError, SQLiteStore, path)
        self.assertIn(str(path), str(error))
        self.assertEqual(path.read_bytes(), before)
        return str(error)

    def test_new_database(self) -> None:
        """
        A new database file is created, with its folders, at the current
        schema version, in WAL mode.
        """
        path = Path(self.mktemp()) / "var" / "lib" / "mqttx.db"
        open_store(self, path)
        self.assertEqual(query(path, "PRAGMA user_version"), [(SCHEMA_VERSION,)])
        self.assertEqual(query(path, "PRAGMA journal_mode"), [("wal",)])

    def test_reopen_keeps_data(self) -> None:
        """
        Opening a database at the current version changes nothing in it.
        """
        path = self.mktemp()
        store = open_store(self, path)
        store.save_session(_session("a"))
        self.successResultOf(store.close())
        open_store(self, path)
        self.assertEqual(query(path, "SELECT client_id FROM sessions"), [("a",)])
        self.assertEqual(query(path, "PRAGMA user_version"), [(SCHEMA_VERSION,)])

    def test_migrate_applies_later_steps(self) -> None:
        """
        L{migrate} applies the steps after the database's version, keeping
        its data, and records the new version.
        """
        path = self.mktemp()
        store = open_store(self, path)
        store.save_session(_session("a"))
        self.successResultOf(store.close())
        conn = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(conn.close)
        later = (*MIGRATIONS, ("ALTER TABLE sessions ADD COLUMN note TEXT DEFAULT 'n'",))
        migrate(conn, SCHEMA_VERSION, later)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION + 1,))
        self.assertEqual(conn.execute("SELECT client_id, note FROM sessions").fetchall(), [("a", "n")])

    def test_failed_migration_rolled_back(self) -> None:
        """
        A migration step that fails leaves the database at the version
        before it, without the step's other changes.
        """
        path = self.mktemp()
        self.successResultOf(open_store(self, path).close())
        conn = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(conn.close)
        later = (*MIGRATIONS, ("CREATE TABLE extra (x)", "NOT SQL"))
        self.assertRaises(sqlite3.OperationalError, migrate, conn, SCHEMA_VERSION, later)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION,))
        self.assertEqual(conn.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall(), [])

    def test_newer_version_refused(self) -> None:
        """
        A database written by a newer mqttx (a higher C{user_version}) is
        refused.
        """
        path = Path(self.mktemp())
        self.successResultOf(open_store(self, path).close())
        conn = sqlite3.connect(path)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        self.assertIn("newer", self._refused(path))

    def test_random_bytes_refused(self) -> None:
        """
        A file of random bytes is not taken for a database.
        """
        path = Path(self.mktemp())
        path.write_bytes(os.urandom(8192))
        self._refused(path)

    def test_text_file_refused(self) -> None:
        """
        A text file (say, a configuration given as the database) is refused.
        """
        path = Path(self.mktemp())
        path.write_text("persistence:\n  backend: sqlite\n" * 100)
        self._refused(path)

    def test_foreign_database_refused(self) -> None:
        """
        A SQLite database of another application is refused, not migrated.
        """
        path = Path(self.mktemp())
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE invoices (id INTEGER PRIMARY KEY)")
        conn.commit()
        conn.close()
        self.assertIn("not an mqttx database", self._refused(path))

    def test_damaged_database_refused(self) -> None:
        """
        A database whose pages were overwritten with garbage is refused as
        damaged.
        """
        path = Path(self.mktemp())
        store = open_store(self, path)
        for i in range(200):
            store.save_session(_session(f"client-{i:04}"))
            store.put_retained(Message(f"r/{i}", b"%d" % i * 50, retain=True))
        self.successResultOf(store.close())
        size = path.stat().st_size
        self.assertGreater(size, 8 * 4096)
        with path.open("r+b") as f:
            f.seek(size // 2)
            f.write(bytes(range(256)) * 32)
        self._refused(path)

    def test_unusable_folder(self) -> None:
        """
        A database path under a file, not a folder, is refused with the path.
        """
        parent = Path(self.mktemp())
        parent.write_text("")
        path = parent / "mqttx.db"
        error = self.assertRaises(StoreError, SQLiteStore, path)
        self.assertIn(str(path), str(error))

    def test_unknown_durability(self) -> None:
        """
        A durability other than C{sync} or C{batch} is a L{ValueError}.
        """
        self.assertRaises(ValueError, SQLiteStore, self.mktemp(), durability="sometimes")


# The writer thread, with the real reactor.


class GroupCommitTests(TestCase):
    """
    L{SQLiteStore} with a reactor commits in L{GroupCommitWriter}'s thread;
    the reactor thread never waits on it.
    """

    def _store(self, **kwargs: Any) -> tuple[Path, SQLiteStore]:
        path = Path(self.mktemp())
        store = SQLiteStore(path, reactor=reactor, **kwargs)
        self.addCleanup(store.close)
        return path, store

    async def _fired_after_commit(self, path: Path, d: Deferred[None]) -> list[tuple[Any, ...]]:
        seen: list[list[tuple[Any, ...]]] = []
        d.addCallback(lambda _: seen.append(query(path, "SELECT client_id FROM sessions")))
        await d
        return seen[0]

    def test_sync_fires_after_commit(self) -> Deferred[None]:
        """
        With C{durability: sync}, a write's Deferred fires only once its
        commit is done: another connection then sees the data.
        """
        path, store = self._store(durability="sync")

        async def run() -> None:
            d = store.save_session(_session("a"))
            self.assertFalse(d.called)
            self.assertEqual(await self._fired_after_commit(path, d), [("a",)])
            self.assertEqual(store.writer.commits, 1)

        return Deferred.fromCoroutine(run())

    def test_batch_fires_at_once(self) -> Deferred[None]:
        """
        With C{durability: batch}, a write's Deferred fires at once, before
        the commit, which follows within C{commit_interval}.
        """
        path, store = self._store(durability="batch", commit_interval=0.05)

        async def run() -> None:
            d = store.save_session(_session("a"))
            self.assertIsNone(self.successResultOf(d))
            self.assertEqual(query(path, "SELECT client_id FROM sessions"), [])
            # A marker batch submitted after the turn's: it fires once
            # both are committed, without closing the store.
            await _next_turn()
            marker: Deferred[None] = Deferred()
            store.writer.submit([], [marker])
            self.assertEqual(await self._fired_after_commit(path, marker), [("a",)])

        return Deferred.fromCoroutine(run())

    def test_close_commits_pending(self) -> Deferred[None]:
        """
        Closing the store commits what is pending at once, the turn not yet
        over and the batch interval not yet passed.
        """
        path, store = self._store(durability="batch", commit_interval=3600)

        async def run() -> None:
            store.save_session(_session("a"))
            await store.close()
            self.assertEqual(query(path, "SELECT client_id FROM sessions"), [("a",)])
            await _next_turn()

        return Deferred.fromCoroutine(run())

    def test_turns_during_commit_grouped(self) -> Deferred[None]:
        """
        Turns submitted while a commit is in progress are committed together,
        in one transaction, when it ends.
        """
        path = Path(self.mktemp())
        self.successResultOf(SQLiteStore(path).close())
        entered: Deferred[None] = Deferred()
        gate = threading.Event()

        def block() -> int:
            reactor.callFromThread(entered.callback, None)
            gate.wait(30)
            return 0

        def opener() -> sqlite3.Connection:
            conn = connect(path, synchronous="FULL", check=False, check_same_thread=False)
            conn.create_function("block", 0, block)
            return conn

        writer = GroupCommitWriter(opener, reactor)
        # Cleanups run last first: the gate opens before the writer closes.
        self.addCleanup(writer.close)
        self.addCleanup(gate.set)

        async def run() -> None:
            first: Deferred[None] = Deferred()
            writer.submit([("SELECT block()", ())], [first])
            await entered
            later = [Deferred[None]() for _ in range(20)]
            for i, d in enumerate(later):
                writer.submit([("INSERT INTO inbound_qos2 VALUES (?, ?)", ("c", i))], [d])
            self.assertEqual(count(path, "inbound_qos2"), 0)
            gate.set()
            await gatherResults([first, *later])
            self.assertEqual(writer.commits, 2)
            self.assertEqual(count(path, "inbound_qos2"), 20)

        return Deferred.fromCoroutine(run())

    def test_commit_error_fails_that_batch_only(self) -> Deferred[None]:
        """
        If a commit fails, the Deferreds of its batch errback, nothing of it
        is kept, and later batches commit.
        """
        path, store = self._store(durability="sync")
        writer = store.writer
        insert = "INSERT INTO inbound_qos2 VALUES (?, ?)"

        async def run() -> None:
            bad: Deferred[None] = Deferred()
            writer.submit([(insert, ("c", 1)), (insert, ("c", 2)), (insert, ("c", 1))], [bad])
            await self.assertFailure(bad, sqlite3.IntegrityError)
            self.assertEqual(count(path, "inbound_qos2"), 0)
            good: Deferred[None] = Deferred()
            writer.submit([(insert, ("c", 1))], [good])
            await good
            self.assertEqual(query(path, "SELECT packet_id FROM inbound_qos2"), [(1,)])
            await store.save_session(_session("a"))

        return Deferred.fromCoroutine(run())

    def test_read_only_database_errbacks(self) -> Deferred[None]:
        """
        If the database cannot be written, writes errback rather than being
        acknowledged.
        """
        path = Path(self.mktemp())
        self.successResultOf(SQLiteStore(path).close())

        def opener() -> sqlite3.Connection:
            conn = connect(path, synchronous="FULL", check=False, check_same_thread=False)
            conn.execute("PRAGMA query_only = ON")
            return conn

        writer = GroupCommitWriter(opener, reactor)
        self.addCleanup(writer.close)

        async def run() -> None:
            d: Deferred[None] = Deferred()
            writer.submit([("INSERT INTO inbound_qos2 VALUES ('c', 1)", ())], [d])
            await self.assertFailure(d, sqlite3.OperationalError)
            self.assertEqual(count(path, "inbound_qos2"), 0)

        return Deferred.fromCoroutine(run())


    def test_writer_that_cannot_open_fails_waiters(self) -> Deferred[None]:
        """
        If the writer thread cannot open the database, what was submitted
        errbacks, and so does what is submitted later: nothing waits for
        ever (an acknowledgement would).
        """

        def opener() -> sqlite3.Connection:
            raise sqlite3.OperationalError("unable to open database file")

        writer = GroupCommitWriter(opener, reactor)
        self.addCleanup(writer.close)

        async def run() -> None:
            first: Deferred[None] = Deferred()
            writer.submit([("SELECT 1", ())], [first])
            await self.assertFailure(first, sqlite3.OperationalError)
            later: Deferred[None] = Deferred()
            writer.submit([("SELECT 1", ())], [later])
            await self.assertFailure(later, sqlite3.OperationalError)
            self.assertEqual(len(self.flushLoggedErrors()), 0)

        return Deferred.fromCoroutine(run())


def _next_turn() -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(0, d.callback, None)
    return d


class InlineWriterTests(SynchronousTestCase):
    """
    L{InlineWriter} commits each batch at once in the calling thread.
    """

    def test_error_errbacks_and_next_commits(self) -> None:
        """
        A failed commit errbacks its Deferreds, keeps nothing of the batch,
        and the next batch commits.
        """
        path = self.mktemp()
        writer = InlineWriter(connect(path, synchronous="FULL"))
        self.addCleanup(writer.close)
        insert = "INSERT INTO inbound_qos2 VALUES (?, ?)"
        bad: Deferred[None] = Deferred()
        writer.submit([(insert, ("c", 1)), (insert, ("c", 1))], [bad])
        self.failureResultOf(bad, sqlite3.IntegrityError)
        self.assertEqual(len(self.flushLoggedErrors(sqlite3.IntegrityError)), 1)
        good: Deferred[None] = Deferred()
        writer.submit([(insert, ("c", 1))], [good])
        self.successResultOf(good)
        self.assertEqual((count(path, "inbound_qos2"), writer.commits), (1, 2))


# A model test: SQLite against memory.

_CLIENTS = ("a", "b")
_PACKET_IDS = (1, 2, 3, 4, 5, 65535)
#: Operations to draw, the common ones (queueing and sending) more often.
_KINDS = (
    *("queue", "send") * 3,
    *("release", "complete", "unqueue", "qos2", "unqos2", "retain", "unretain", "save", "delete"),
)
_PAYLOADS = (b"", b"x", b"\x00\xff" * 20)


@st.composite
def _messages(draw: st.DrawFn) -> Message:
    return Message(
        draw(st.sampled_from(("t", "t/1", "u"))),
        draw(st.sampled_from(_PAYLOADS)),
        draw(st.integers(0, 2)),
        draw(st.booleans()),
        draw(properties(PacketType.PUBLISH)),
        draw(st.sampled_from(("", "pub"))),
        draw(st.none() | st.floats(0, 1e6)),
    )


_records = st.builds(
    SessionRecord,
    st.sampled_from(_CLIENTS),
    st.sampled_from((3, 4, 5)),
    st.integers(1, 2**32 - 1),
    st.lists(
        st.builds(
            SubscriptionEntry,
            st.sampled_from(("#", "a/+", "$share/g/t")),
            st.integers(0, 2),
            st.booleans(),
            st.booleans(),
            st.integers(0, 2),
            st.none() | st.integers(1, 268435455),
        ),
        max_size=3,
    ).map(tuple),
    st.none() | st.floats(0, 1e6),
)


class _Model:
    """What the test has written, to draw meaningful next operations from."""

    def __init__(self) -> None:
        self.seq = 0
        self.sessions: dict[str, tuple[dict[int, Delivery], dict[int, InflightEntry], set[int]]] = {}


class ModelTests(SynchronousTestCase):
    """
    L{SQLiteStore} loads what L{MemoryStore}, the reference, loads after the
    same writes, before and after the file is reopened; and it keeps no
    message row that nothing holds.
    """

    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.data())
    def test_same_as_memory(self, data: st.DataObject) -> None:
        """
        Random sequences of writes leave both stores with equal snapshots.
        """
        path = Path(self.mktemp())
        memory = MemoryStore()
        opened = [SQLiteStore(path, durability="batch")]
        model = _Model()
        pool = data.draw(st.lists(_messages(), min_size=1, max_size=4))
        steps = data.draw(st.integers(5, 40))
        reopen_at = data.draw(st.integers(0, steps))
        try:
            for cid in _CLIENTS:
                self._step(data, model, pool, (memory, opened[-1]), "save", cid)
            for i in range(steps):
                if i == reopen_at:
                    # A restart in the middle: later writes go to a store
                    # that knows the file's rows from its load only.
                    self.successResultOf(opened[-1].close())
                    opened.append(SQLiteStore(path, durability="batch"))
                    self.successResultOf(opened[-1].load())
                self._step(data, model, pool, (memory, opened[-1]))
            # No message row is left that no session holds (checked before
            # any load, which would delete such rows).
            [(rows, held)] = query(
                path,
                "SELECT (SELECT count(*) FROM messages),"
                " (SELECT count(DISTINCT message_id) FROM"
                "  (SELECT message_id FROM queued UNION ALL SELECT message_id FROM inflight))",
            )
            self.assertEqual(rows, held)
            expected = snapshot_key(self.successResultOf(memory.load()))
            self.assertEqual(snapshot_key(self.successResultOf(opened[-1].load())), expected)
            self.successResultOf(opened[-1].close())
            opened.append(SQLiteStore(path, durability="batch"))
            self.assertEqual(snapshot_key(self.successResultOf(opened[-1].load())), expected)
        finally:
            for store in opened:
                self.successResultOf(store.close())

    def _step(
        self,
        data: st.DataObject,
        model: _Model,
        pool: list[Message],
        stores: Sequence[IStore],
        kind: str | None = None,
        cid: str | None = None,
    ) -> None:
        """Draw one write (of C{kind}, for C{cid}, if given) and apply it to all C{stores}."""
        ops: list[Callable[[IStore], Deferred[None]]] = []
        if kind is None:
            kind = data.draw(st.sampled_from(_KINDS))
        if cid is None:
            cid = data.draw(st.sampled_from(_CLIENTS))
        state = model.sessions.get(cid)
        if kind == "save":
            will = data.draw(st.none() | _messages())
            if will is not None:
                will = Message(will.topic, will.payload, will.qos, will.retain, will.properties, cid, will.expires_at)
            record = data.draw(_records)
            record = SessionRecord(
                cid, record.protocol_level, record.expiry_interval, record.subscriptions,
                record.disconnected_at, will, None if will is None else data.draw(st.floats(0, 1e6)),
            )
            model.sessions.setdefault(cid, ({}, {}, set()))
            ops.append(lambda s: s.save_session(record))
        elif kind == "delete":
            model.sessions.pop(cid, None)
            ops.append(lambda s: s.delete_session(cid))
        elif kind in ("retain", "unretain"):
            message = replace(data.draw(st.sampled_from(pool)), retain=True)
            if kind == "retain":
                ops.append(lambda s: s.put_retained(message))
            else:
                ops.append(lambda s: s.delete_retained(message.topic))
        elif state is None:
            # The broker writes messages only for sessions it stored; the
            # contract tests cover writes for others.
            return
        elif kind == "queue" or (kind == "send" and not state[0]):
            model.seq += 1
            message = data.draw(st.sampled_from(pool))
            qos = data.draw(st.integers(1, 2))
            ids = tuple(data.draw(st.lists(st.integers(1, 268435455), max_size=2)))
            if data.draw(st.booleans()):
                delivery: Delivery = SharedDelivery(model.seq, message, qos, False, ids, group="$share/g/t")
            else:
                delivery = Delivery(model.seq, message, qos, data.draw(st.booleans()), ids)
            if kind == "queue":
                state[0][delivery.seq] = delivery
                ops.append(lambda s: s.add_queued(cid, delivery))
            else:
                self._send(data, cid, state, delivery, ops)
        elif kind == "send" and len(state[1]) < len(_PACKET_IDS):
            # The queue's head moves into flight, as Session.drain does.
            head = state[0].pop(min(state[0]))
            ops.append(lambda s: s.remove_queued(cid, head.seq))
            self._send(data, cid, state, head, ops)
        elif kind == "unqueue" and state[0]:
            seq = data.draw(st.sampled_from(sorted(state[0])))
            del state[0][seq]
            ops.append(lambda s: s.remove_queued(cid, seq))
        elif kind == "release" and state[1]:
            pid = data.draw(st.sampled_from(sorted(state[1])))
            entry = state[1][pid] = InflightEntry(pid, state[1][pid].delivery, released=True)
            ops.append(lambda s: s.put_inflight(cid, entry))
        elif kind == "complete" and state[1]:
            pid = data.draw(st.sampled_from(sorted(state[1])))
            del state[1][pid]
            ops.append(lambda s: s.remove_inflight(cid, pid))
        elif kind in ("qos2", "unqos2"):
            pid = data.draw(st.integers(1, 4))
            if kind == "qos2":
                state[2].add(pid)
                ops.append(lambda s: s.add_inbound_qos2(cid, pid))
            else:
                state[2].discard(pid)
                ops.append(lambda s: s.remove_inbound_qos2(cid, pid))
        for op in ops:
            for store in stores:
                self.assertIsNone(self.successResultOf(op(store)))

    def _send(
        self,
        data: st.DataObject,
        cid: str,
        state: tuple[dict[int, Delivery], dict[int, InflightEntry], set[int]],
        delivery: Delivery,
        ops: list[Callable[[IStore], Deferred[None]]],
    ) -> None:
        free = [pid for pid in _PACKET_IDS if pid not in state[1]]
        if not free:
            return
        entry = InflightEntry(data.draw(st.sampled_from(free)), delivery)
        state[1][entry.packet_id] = entry
        ops.append(lambda s: s.put_inflight(cid, entry))
