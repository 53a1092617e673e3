# -*- test-case-name: tests.store.test_tools -*-
"""
Tests for L{mqttx.store.tools}: stats and backups of a SQLite store, also
while something writes to it.
"""

from __future__ import annotations

import os
import random
import sqlite3
import stat
import threading
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from mqttx.broker.message import Message
from mqttx.broker.state import Delivery, InflightEntry, SessionRecord, SubscriptionEntry
from mqttx.store import tools
from mqttx.store.schema import SCHEMA_VERSION, StoreError
from mqttx.store.sqlite import SQLiteStore
from mqttx.store.tools import StoreStats, backup, open_readonly, stats

#: Text that is not a database.
NOT_A_DATABASE = b"persistence:\n  backend: sqlite\n" * 100


def fill(case: SynchronousTestCase, path: Path) -> SQLiteStore:
    """
    Store two sessions with three queued deliveries of two messages (one
    shared by both sessions), one in-flight message, one inbound QoS 2 id and
    one retained message, through the real store. Returns it open.
    """
    store = SQLiteStore(path)
    shared = Message("a/b", b"payload", qos=1)
    for d in (
        store.save_session(SessionRecord("c1", 5, 3600, (SubscriptionEntry("a/#", 1),))),
        store.save_session(SessionRecord("c2", 4, 3600)),
        store.add_queued("c1", Delivery(1, shared, 1, False)),
        store.add_queued("c2", Delivery(1, shared, 1, False)),
        store.add_queued("c2", Delivery(2, Message("a/c", b"x", qos=2), 2, False)),
        store.put_inflight(
            "c1", InflightEntry(7, Delivery(2, Message("a/d", b"y", qos=1), 1, False))
        ),
        store.add_inbound_qos2("c1", 9),
        store.put_retained(Message("r/1", b"kept", retain=True)),
    ):
        case.successResultOf(d)
    return store


def filled(case: SynchronousTestCase, path: Path) -> None:
    """L{fill}, then close the store."""
    case.successResultOf(fill(case, path).close())


class Temp(SynchronousTestCase):
    """A test case with a fresh directory."""

    def setUp(self) -> None:
        self.dir = Path(self.mktemp()).absolute()
        self.dir.mkdir()
        self.db = self.dir / "mqttx.db"

    def assertStoreError(self, path: Path, *fragments: str) -> str:
        """Assert that L{stats} of C{path} fails with one line naming it."""
        with self.assertRaises(StoreError) as caught:
            stats(path)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"{path.absolute()}: "), message)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)
        return message


class StatsTests(Temp):
    """
    L{stats} counts what a store holds.
    """

    def test_counts(self) -> None:
        """
        Sessions, queued and in-flight deliveries, stored payloads (one for
        a message queued by two sessions), retained messages and inbound
        QoS 2 ids are counted; the size is the file's.
        """
        filled(self, self.db)
        self.assertEqual(
            stats(self.db),
            StoreStats(
                path=self.db,
                sessions=2,
                queued=3,
                inflight=1,
                messages=3,
                retained=1,
                inbound_qos2=1,
                size=self.db.stat().st_size,
            ),
        )

    def test_lines(self) -> None:
        """
        The stats print as one C{name: value} line each.
        """
        filled(self, self.db)
        self.assertEqual(
            stats(self.db).lines(),
            [
                f"database: {self.db}",
                "sessions: 2",
                "queued messages: 3",
                "in-flight messages: 1",
                "stored message payloads: 3",
                "retained messages: 1",
                "inbound QoS 2 ids: 1",
                f"database size (bytes): {self.db.stat().st_size}",
            ],
        )

    def test_empty(self) -> None:
        """
        A store that holds nothing counts zeros.
        """
        self.successResultOf(SQLiteStore(self.db).close())
        result = stats(self.db)
        self.assertEqual(
            (
                result.sessions,
                result.queued,
                result.inflight,
                result.messages,
                result.retained,
                result.inbound_qos2,
            ),
            (0, 0, 0, 0, 0, 0),
        )

    def test_relative_path(self) -> None:
        """
        A relative path is taken from the working directory and reported
        absolute.
        """
        filled(self, self.db)
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        self.assertEqual(stats("mqttx.db").path, self.db)

    def test_while_open(self) -> None:
        """
        While a store is open and writing, stats see its last commit, count
        the write-ahead log in the size, and do not keep it from writing.
        """
        store = fill(self, self.db)
        self.addCleanup(store.close)
        wal = self.db.with_name("mqttx.db-wal")
        self.assertTrue(wal.exists())
        result = stats(self.db)
        self.assertEqual(result.sessions, 2)
        self.assertEqual(result.size, self.db.stat().st_size + wal.stat().st_size)
        self.successResultOf(store.save_session(SessionRecord("c3", 5, 60)))
        self.assertEqual(stats(self.db).sessions, 3)

    def test_missing(self) -> None:
        """
        A missing file is refused, and not created.
        """
        self.assertStoreError(self.db, "no such database file")
        self.assertEqual(os.listdir(self.dir), [])

    def test_directory(self) -> None:
        """
        A directory is not a database.
        """
        self.assertStoreError(self.dir, "not a file")

    def test_not_sqlite(self) -> None:
        """
        Random bytes or text are refused as not a usable database, and left
        as they were.
        """
        for content in (random.Random(5).randbytes(8192), NOT_A_DATABASE):
            self.db.write_bytes(content)
            self.assertStoreError(self.db, "not a usable mqttx database")
            self.assertEqual(self.db.read_bytes(), content)

    def test_empty_file(self) -> None:
        """
        An empty file (which SQLite would take as an empty database) has no
        mqttx schema, and stays empty.
        """
        self.db.write_bytes(b"")
        self.assertStoreError(self.db, "not an mqttx database (no mqttx schema)")
        self.assertEqual(self.db.read_bytes(), b"")

    def test_foreign_database(self) -> None:
        """
        A SQLite database of something else is refused.
        """
        conn = sqlite3.connect(self.db)
        conn.execute("CREATE TABLE users (name TEXT)")
        conn.commit()
        conn.close()
        self.assertStoreError(self.db, "not an mqttx database")
        conn = sqlite3.connect(self.db)
        conn.execute("PRAGMA user_version = 1")
        conn.close()
        self.assertStoreError(
            self.db, "not an mqttx database (missing tables: inbound_qos2, inflight"
        )

    def test_newer_version(self) -> None:
        """
        A database from a newer mqttx is refused, saying so.
        """
        filled(self, self.db)
        conn = sqlite3.connect(self.db)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.close()
        self.assertStoreError(self.db, f"schema version {SCHEMA_VERSION + 1} is newer")

    def test_older_version(self) -> None:
        """
        A database of an older schema is not migrated by stats: the broker
        does that.
        """
        filled(self, self.db)
        self.patch(tools, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        before = self.db.read_bytes()
        self.assertStoreError(self.db, "is older", "starting the broker migrates it")
        self.assertEqual(self.db.read_bytes(), before)

    def test_read_only(self) -> None:
        """
        The database cannot be written through the connection.
        """
        filled(self, self.db)
        conn = open_readonly(self.db)
        self.addCleanup(conn.close)
        with self.assertRaises(sqlite3.OperationalError) as caught:
            conn.execute("DELETE FROM sessions")
        self.assertIn("readonly", str(caught.exception))

    def test_leaves_no_files(self) -> None:
        """
        On a database no broker has open, stats leave no write-ahead log or
        shared-memory file behind (they would belong to whoever ran them).
        """
        filled(self, self.db)
        self.assertEqual(os.listdir(self.dir), ["mqttx.db"])
        stats(self.db)
        self.assertEqual(os.listdir(self.dir), ["mqttx.db"])


class BackupTests(Temp):
    """
    L{backup} makes a consistent, checked copy.
    """

    def setUp(self) -> None:
        super().setUp()
        self.target = self.dir / "copy.db"

    def assertBackupRefused(self, *fragments: str) -> None:
        with self.assertRaises(StoreError) as caught:
            backup(self.db, self.target)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        for fragment in fragments:
            self.assertIn(fragment, message)

    def test_copy(self) -> None:
        """
        The copy is a self-contained database (no write-ahead log beside it)
        with the same data, which the store loads; it has the source's
        permissions. The size of the copy is returned.
        """
        filled(self, self.db)
        self.db.chmod(0o640)
        size = backup(self.db, self.target)
        self.assertEqual(size, self.target.stat().st_size)
        self.assertEqual(stat.S_IMODE(self.target.stat().st_mode), 0o640)
        self.assertEqual(sorted(os.listdir(self.dir)), ["copy.db", "mqttx.db"])
        self.assertEqual(stats(self.target).lines()[1:-1], stats(self.db).lines()[1:-1])
        store = SQLiteStore(self.target)
        self.addCleanup(store.close)
        snapshot = self.successResultOf(store.load())
        self.assertEqual(sorted(s.record.client_id for s in snapshot.sessions), ["c1", "c2"])
        [c1] = [s for s in snapshot.sessions if s.record.client_id == "c1"]
        self.assertEqual(c1.record.subscriptions, (SubscriptionEntry("a/#", 1),))
        self.assertEqual([d.message.payload for d in c1.queued], [b"payload"])
        self.assertEqual([m.topic for m in snapshot.retained], ["r/1"])

    def test_uncommitted_left_out(self) -> None:
        """
        A transaction open in another connection neither blocks the backup
        nor is in the copy; it commits afterwards.
        """
        filled(self, self.db)
        writer = sqlite3.connect(self.db, isolation_level=None)
        self.addCleanup(writer.close)
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM retained")
        writer.execute("INSERT INTO inbound_qos2 VALUES ('c2', 1)")
        backup(self.db, self.target)
        writer.execute("COMMIT")
        copied = stats(self.target)
        self.assertEqual((copied.retained, copied.inbound_qos2), (1, 1))
        now = stats(self.db)
        self.assertEqual((now.retained, now.inbound_qos2), (0, 2))

    def test_while_writing(self) -> None:
        """
        A backup taken while another connection keeps committing is
        consistent: every transaction of the writer is in it whole or not at
        all, all those committed before it began are, and the writer is never
        blocked (it waits for no lock).
        """
        filled(self, self.db)
        started = threading.Event()
        stop = threading.Event()
        errors: list[BaseException] = []
        commits = [0]

        def write() -> None:
            # Each transaction adds two sessions; a torn copy would hold an
            # odd number of them.
            conn = sqlite3.connect(self.db, isolation_level=None, timeout=0)
            try:
                for n in range(100_000):
                    conn.execute("BEGIN IMMEDIATE")
                    for side in ("a", "b"):
                        conn.execute(
                            "INSERT INTO sessions"
                            " (client_id, protocol_level, expiry_interval, subscriptions)"
                            " VALUES (?, 5, 60, '[]')",
                            (f"w{n}{side}",),
                        )
                    conn.execute("COMMIT")
                    commits[0] += 1
                    started.set()
                    if stop.is_set():
                        break
            except BaseException as e:
                errors.append(e)
                started.set()
            finally:
                conn.close()

        thread = threading.Thread(target=write)
        thread.start()
        self.addCleanup(thread.join)
        self.addCleanup(stop.set)
        # real-time: bounded waits on the writer thread, no sleeping.
        self.assertTrue(started.wait(30))
        before = commits[0]
        backup(self.db, self.target)
        stop.set()
        thread.join(30)
        self.assertEqual(errors, [])
        copied = stats(self.target).sessions - 2
        self.assertEqual(copied % 2, 0)
        # Everything committed before the backup began is in it.
        self.assertGreaterEqual(copied, 2 * before)
        self.assertLessEqual(copied, 2 * commits[0])
        self.assertEqual(stats(self.db).sessions - 2, 2 * commits[0])
        conn = sqlite3.connect(self.target)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA integrity_check").fetchall(), [("ok",)])

    def test_target_exists(self) -> None:
        """
        An existing file is not overwritten.
        """
        filled(self, self.db)
        self.target.write_bytes(b"mine")
        self.assertBackupRefused(str(self.target), "already exists")
        self.assertEqual(self.target.read_bytes(), b"mine")

    def test_no_directory(self) -> None:
        """
        The target's folder is not created.
        """
        filled(self, self.db)
        self.target = self.dir / "backups" / "copy.db"
        self.assertBackupRefused(str(self.target), "no such directory")
        self.assertFalse(self.target.parent.exists())

    def test_bad_source(self) -> None:
        """
        A source that is not an mqttx database is refused, and nothing is
        created.
        """
        for content in (b"", NOT_A_DATABASE):
            self.db.write_bytes(content)
            self.assertBackupRefused(str(self.db), "mqttx database")
            self.assertFalse(self.target.exists())
        self.db.unlink()
        self.assertBackupRefused(str(self.db), "no such database file")
        self.assertFalse(self.target.exists())

    def test_older_version(self) -> None:
        """
        A database of an older schema is copied as it is.
        """
        filled(self, self.db)
        self.patch(tools, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
        backup(self.db, self.target)
        conn = sqlite3.connect(self.target)
        self.addCleanup(conn.close)
        self.assertEqual(conn.execute("PRAGMA user_version").fetchone(), (SCHEMA_VERSION,))
        self.assertEqual(conn.execute("SELECT count(*) FROM sessions").fetchone(), (2,))

    def test_copy_failure_removes_target(self) -> None:
        """
        A copy that fails its check is removed, and the failure names it.
        """
        filled(self, self.db)

        def damaged(source: sqlite3.Connection, target: Path) -> None:
            target.write_bytes(b"half")
            raise StoreError(f"{target}: the copy is damaged")

        self.patch(tools, "_copy", damaged)
        self.assertBackupRefused(str(self.target), "damaged")
        self.assertFalse(self.target.exists())
