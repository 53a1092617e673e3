# -*- test-case-name: tests.store.test_tools -*-
"""
Looking at a SQLite store from outside the broker: counts of what it holds
and consistent copies (C{mqttx store stats}, C{mqttx store backup}).

Both work while a broker runs on the same file: the database is in WAL
mode, so a reader sees the last commit and never blocks the broker's
writer. They never create, migrate or repair it, and refuse any write
(C{PRAGMA query_only}); a file that is missing, not SQLite, or not an mqttx
database of this version is refused with L{StoreError}, whose message names
the path.

The connection is not opened with SQLite's C{mode=ro}: on a database no
broker has open, a C{mode=ro} connection creates the C{-wal} and C{-shm}
files and leaves them behind, owned by whoever ran the tool (root, say),
which could keep the broker from opening its own database. A read-write
connection that is the last one removes them as it closes, as the broker
does.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .schema import SCHEMA_VERSION, StoreError

__all__ = ["StoreStats", "backup", "open_readonly", "stats"]

#: The tables of the current schema.
TABLES = frozenset({"messages", "sessions", "queued", "inflight", "inbound_qos2", "retained"})


@dataclass(frozen=True, slots=True)
class StoreStats:
    """
    What a store holds, read in one transaction.

    @ivar path: the database file, absolute.
    @ivar sessions: stored sessions.
    @ivar queued: messages queued for sessions (one per session and message).
    @ivar inflight: outbound QoS 1/2 messages awaiting acknowledgement.
    @ivar messages: stored message payloads, each shared by the sessions
        that queue it or have it in flight.
    @ivar retained: retained messages.
    @ivar inbound_qos2: inbound QoS 2 packet ids awaiting PUBREL.
    @ivar size: bytes on disk: the database file and its write-ahead log.
    """

    path: Path
    sessions: int
    queued: int
    inflight: int
    messages: int
    retained: int
    inbound_qos2: int
    size: int

    def lines(self) -> list[str]:
        """The stats as C{name: value} lines, for people and C{grep}."""
        return [
            f"database: {self.path}",
            f"sessions: {self.sessions}",
            f"queued messages: {self.queued}",
            f"in-flight messages: {self.inflight}",
            f"stored message payloads: {self.messages}",
            f"retained messages: {self.retained}",
            f"inbound QoS 2 ids: {self.inbound_qos2}",
            f"database size (bytes): {self.size}",
        ]


def open_readonly(path: str | Path, *, exact_version: bool = True) -> sqlite3.Connection:
    """
    Open the mqttx database at C{path} for reading only, after checking that
    it is one.

    @param exact_version: require this mqttx's schema version; otherwise
        any mqttx schema version is accepted (a copy needs no understanding
        of the tables).
    @raise StoreError: if the file is missing, cannot be opened, is not an
        mqttx database, or (with C{exact_version}) is of another version.
    """
    path = Path(path).absolute()
    if not path.exists():
        raise StoreError(
            f"{path}: no such database file (a relative persistence.path is taken "
            f"from the working directory)"
        )
    if not path.is_file():
        raise StoreError(f"{path}: not a file")
    try:
        # mode=rw: never create the file (see the module docstring).
        conn = sqlite3.connect(f"file:{quote(str(path))}?mode=rw", uri=True, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"{path}: cannot open the database: {e}") from e
    try:
        conn.execute("PRAGMA query_only = ON")
        _check(conn, path, exact_version)
    except sqlite3.DatabaseError as e:
        conn.close()
        raise StoreError(f"{path}: not a usable mqttx database: {e}") from e
    except BaseException:
        conn.close()
        raise
    return conn


def _check(conn: sqlite3.Connection, path: Path, exact_version: bool) -> None:
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if version == 0:
        raise StoreError(f"{path}: not an mqttx database (no mqttx schema)")
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is newer than this mqttx knows ({SCHEMA_VERSION}); "
            f"use a newer mqttx"
        )
    if exact_version and version < SCHEMA_VERSION:
        raise StoreError(
            f"{path}: schema version {version} is older than this mqttx's ({SCHEMA_VERSION}); "
            f"starting the broker migrates it"
        )
    if version == SCHEMA_VERSION and not TABLES <= tables:
        missing = ", ".join(sorted(TABLES - tables))
        raise StoreError(f"{path}: not an mqttx database (missing tables: {missing})")


def _size(path: Path) -> int:
    """Bytes of the database file and of its write-ahead log, if any."""
    total = 0
    for part in (path, path.with_name(path.name + "-wal")):
        try:
            total += part.stat().st_size
        except FileNotFoundError:
            pass
    return total


def stats(path: str | Path) -> StoreStats:
    """
    Count what the mqttx database at C{path} holds.

    @raise StoreError: as L{open_readonly}, or if it cannot be read.
    """
    path = Path(path).absolute()
    conn = open_readonly(path)
    try:
        # One statement, so one read transaction: the counts agree.
        row = conn.execute(
            "SELECT (SELECT count(*) FROM sessions), (SELECT count(*) FROM queued),"
            " (SELECT count(*) FROM inflight), (SELECT count(*) FROM messages),"
            " (SELECT count(*) FROM retained), (SELECT count(*) FROM inbound_qos2)"
        ).fetchone()
    except sqlite3.DatabaseError as e:
        raise StoreError(f"{path}: cannot read the database: {e}") from e
    finally:
        conn.close()
    sessions, queued, inflight, messages, retained, inbound_qos2 = row
    return StoreStats(
        path, sessions, queued, inflight, messages, retained, inbound_qos2, _size(path)
    )


def backup(path: str | Path, target: str | Path) -> int:
    """
    Copy the mqttx database at C{path} to the new file C{target}, as of one
    moment, while a broker may be writing to it; then check the copy.

    The copy is made in one step of SQLite's online backup, inside one read
    transaction: a broker committing meanwhile neither blocks it nor makes
    it start over. C{target} gets the permissions of C{path}.

    @return: the size of the copy, in bytes.
    @raise StoreError: if C{target} exists or its folder does not, if the
        source is not a usable mqttx database, or if the copy fails its
        check (the copy is then removed).
    """
    path = Path(path).absolute()
    target = Path(target).absolute()
    if not target.parent.is_dir():
        raise StoreError(f"{target}: no such directory: {target.parent}")
    source = open_readonly(path, exact_version=False)
    try:
        try:
            # Created here, exclusively: a file that appears meanwhile is
            # never overwritten.
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, path.stat().st_mode & 0o777)
        except FileExistsError as e:
            raise StoreError(f"{target}: already exists; not overwriting it") from e
        except OSError as e:
            raise StoreError(f"{target}: cannot create the file: {e.strerror}") from e
        os.close(fd)
        try:
            _copy(source, target)
        except BaseException:
            target.unlink(missing_ok=True)
            raise
    finally:
        source.close()
    return target.stat().st_size


def _copy(source: sqlite3.Connection, target: Path) -> None:
    try:
        copy = sqlite3.connect(target, isolation_level=None)
    except sqlite3.Error as e:
        raise StoreError(f"{target}: cannot open the copy: {e}") from e
    try:
        source.backup(copy)
        # A self-contained file, with no write-ahead log beside it.
        copy.execute("PRAGMA journal_mode=DELETE")
        problems = [row[0] for row in copy.execute("PRAGMA quick_check")]
    except sqlite3.Error as e:
        raise StoreError(f"{target}: the backup failed: {e}") from e
    finally:
        copy.close()
    if problems != ["ok"]:
        raise StoreError(
            f"{target}: the copy is damaged, so is the database: {'; '.join(problems[:3])}"
        )
