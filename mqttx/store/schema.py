# -*- test-case-name: tests.store.test_sqlite -*-
"""
The SQLite store's schema: opening a database file, checking it, and
bringing it to the current version.

The version is SQLite's C{user_version}. Each entry of L{MIGRATIONS} takes
a database from the version before it to its own; a new database runs them
all. A database that is not one (or is damaged), or is from a newer mqttx,
is refused with L{StoreError}, never reset.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path


class StoreError(Exception):
    """The store cannot be used; the message says why, with the path."""


#: Statements that take the schema from version N-1 to N, for N = 1, 2, ...
MIGRATIONS: Sequence[Sequence[str]] = (
    (
        # Messages queued or in flight, one row however many sessions hold it.
        """CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            topic TEXT NOT NULL,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            properties BLOB NOT NULL,
            origin TEXT NOT NULL,
            expires_at REAL
        )""",
        """CREATE TABLE sessions (
            client_id TEXT PRIMARY KEY,
            protocol_level INTEGER NOT NULL,
            expiry_interval INTEGER NOT NULL,
            disconnected_at REAL,
            subscriptions TEXT NOT NULL,
            will_topic TEXT,
            will_payload BLOB,
            will_qos INTEGER,
            will_retain INTEGER,
            will_properties BLOB,
            will_expires_at REAL,
            will_at REAL
        ) WITHOUT ROWID""",
        """CREATE TABLE queued (
            client_id TEXT NOT NULL,
            seq INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            subscription_ids TEXT NOT NULL,
            share_group TEXT,
            PRIMARY KEY (client_id, seq)
        ) WITHOUT ROWID""",
        """CREATE TABLE inflight (
            client_id TEXT NOT NULL,
            packet_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            message_id INTEGER NOT NULL,
            qos INTEGER NOT NULL,
            retain INTEGER NOT NULL,
            subscription_ids TEXT NOT NULL,
            share_group TEXT,
            released INTEGER NOT NULL,
            PRIMARY KEY (client_id, packet_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE inbound_qos2 (
            client_id TEXT NOT NULL,
            packet_id INTEGER NOT NULL,
            PRIMARY KEY (client_id, packet_id)
        ) WITHOUT ROWID""",
        """CREATE TABLE retained (
            topic TEXT PRIMARY KEY,
            payload BLOB NOT NULL,
            qos INTEGER NOT NULL,
            properties BLOB NOT NULL,
            origin TEXT NOT NULL,
            expires_at REAL
        ) WITHOUT ROWID""",
    ),
)

#: The schema version this mqttx writes.
SCHEMA_VERSION = len(MIGRATIONS)


def connect(
    path: str | Path, *, synchronous: str, check: bool = True, check_same_thread: bool = True
) -> sqlite3.Connection:
    """
    Open (creating it and its folder if need be), check and migrate the
    database at C{path}, in WAL mode with the given C{synchronous} setting
    (C{FULL}: each commit is on disk when it returns; C{NORMAL}: a crash of
    the machine, not of the process, may lose the last commits).

    @param check: whether to check the whole file (C{PRAGMA quick_check},
        which reads all of it); the first connection of a process should.

    @raise StoreError: if it cannot be opened, is not an mqttx database, is
        damaged, or was written by a newer mqttx.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=check_same_thread)
    except (OSError, sqlite3.Error) as e:
        raise StoreError(f"{path}: cannot open the database: {e}") from e
    try:
        _prepare(conn, path, synchronous, check)
    except BaseException:
        conn.close()
        raise
    return conn


def _prepare(conn: sqlite3.Connection, path: Path, synchronous: str, check: bool) -> None:
    try:
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        problems = [row[0] for row in conn.execute("PRAGMA quick_check")] if check else ["ok"]
        if problems != ["ok"]:
            raise StoreError(f"{path}: the database is damaged: {'; '.join(problems[:3])}")
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{path}: schema version {version} is newer than this mqttx knows "
                f"({SCHEMA_VERSION}); use a newer mqttx or another file"
            )
        if version == 0 and _has_foreign_tables(conn):
            raise StoreError(f"{path}: not an mqttx database (it has other tables)")
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        migrate(conn, version)
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: not a usable mqttx database: {e}") from e


def _has_foreign_tables(conn: sqlite3.Connection) -> bool:
    return bool(conn.execute("SELECT count(*) FROM sqlite_master WHERE type = 'table'").fetchone()[0] > 0)


def migrate(conn: sqlite3.Connection, version: int, migrations: Sequence[Sequence[str]] = MIGRATIONS) -> None:
    """Apply the C{migrations} after C{version}, each in its own transaction."""
    for target in range(version + 1, len(migrations) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[target - 1]:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
