# -*- test-case-name: tests.store.test_sqlite -*-
"""
Committing the SQLite store's writes: in a thread of its own, grouped
(L{GroupCommitWriter}), or at once in the calling thread (L{InlineWriter},
for deterministic tests and tools).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorThreads
from twisted.logger import Logger

#: One statement and its parameters.
Op = tuple[str, Sequence[Any]]


class Writer(Protocol):
    """Takes batches of statements and commits them, in order."""

    #: Commits made, and the seconds they took in all (for metrics).
    commits: int
    commit_seconds: float

    def submit(self, ops: list[Op], waiters: list[Deferred[None]]) -> None:
        """Commit C{ops} after everything submitted before, then fire C{waiters}."""

    def close(self) -> Deferred[None]:
        """Commit what was submitted, close the database; fires when done."""


def _commit(conn: sqlite3.Connection, batches: Sequence[list[Op]]) -> None:
    conn.execute("BEGIN")
    try:
        for ops in batches:
            for sql, params in ops:
                conn.execute(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _fire(waiters: Sequence[Deferred[None]], error: BaseException | None) -> None:
    for d in waiters:
        if error is None:
            d.callback(None)
        else:
            d.errback(error)


class InlineWriter:
    """Commits each batch at once, in the calling thread."""

    log = Logger()

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self.commits = 0
        self.commit_seconds = 0.0

    def submit(self, ops: list[Op], waiters: list[Deferred[None]]) -> None:
        started = time.perf_counter()
        error: BaseException | None = None
        try:
            _commit(self._conn, (ops,))
        except sqlite3.Error as e:
            self.log.failure("store commit failed", event_id="store.commit_failed")
            error = e
        self.commits += 1
        self.commit_seconds += time.perf_counter() - started
        _fire(waiters, error)

    def close(self) -> Deferred[None]:
        self._conn.close()
        d: Deferred[None] = Deferred()
        d.callback(None)
        return d


class GroupCommitWriter:
    """
    One thread that owns the database connection and commits, in one
    transaction, every batch submitted while it was busy with the previous
    commit: the more writers wait, the more each commit carries (group
    commit). With an C{interval}, it commits at most that often instead.
    Waiters fire in the reactor thread. The thread starts with the first
    batch, so that a daemonising twistd, which forks after building the
    service, does not lose it.

    @param connect: opens the connection, in the writer's thread.
    @param interval: seconds between commits (C{0}: as soon as possible).
    """

    log = Logger()

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        reactor: IReactorThreads,
        interval: float = 0.0,
    ) -> None:
        self.commits = 0
        self.commit_seconds = 0.0
        self._connect = connect
        self._reactor = reactor
        self._interval = interval
        self._cond = threading.Condition()
        self._pending: list[tuple[list[Op], list[Deferred[None]]]] = []
        self._closing = False
        self._failed: BaseException | None = None
        self._closed: Deferred[None] = Deferred()
        self._thread: threading.Thread | None = None

    def submit(self, ops: list[Op], waiters: list[Deferred[None]]) -> None:
        with self._cond:
            if self._closing:
                raise RuntimeError("store writer closed")
            if self._failed is not None:
                _fire(waiters, self._failed)
                return
            self._pending.append((ops, waiters))
            self._cond.notify()
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="mqttx-store-writer", daemon=True)
            self._thread.start()

    def close(self) -> Deferred[None]:
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is None and not self._closed.called:
            self._closed.callback(None)
        return self._closed

    def _run(self) -> None:
        conn = None
        try:
            conn = self._connect()
            self._loop(conn)
        except BaseException as e:
            # Cannot go on (the file cannot be opened any more, say): fail
            # what waits and what comes, rather than leave it waiting.
            with self._cond:
                self._failed = e
                batch, self._pending = self._pending, []
            self._reactor.callFromThread(self._crashed, e, [d for _, ds in batch for d in ds])
        finally:
            if conn is not None:
                conn.close()
            self._reactor.callFromThread(self._closed.callback, None)

    def _loop(self, conn: sqlite3.Connection) -> None:
        last = time.monotonic()
        while True:
            with self._cond:
                while not self._pending and not self._closing:
                    self._cond.wait()
                if self._interval:
                    while not self._closing and (remaining := last + self._interval - time.monotonic()) > 0:
                        self._cond.wait(remaining)
                batch, self._pending = self._pending, []
                closing = self._closing
            if batch:
                started = time.perf_counter()
                error: BaseException | None = None
                try:
                    _commit(conn, [ops for ops, _ in batch])
                except sqlite3.Error as e:
                    error = e
                self.commit_seconds += time.perf_counter() - started
                self.commits += 1
                last = time.monotonic()
                waiters = [d for _, ds in batch for d in ds]
                self._reactor.callFromThread(self._done, waiters, error, len(batch))
            elif closing:
                return

    def _done(self, waiters: list[Deferred[None]], error: BaseException | None, batches: int) -> None:
        if error is not None:
            self.log.error(
                "store commit of {batches} batch(es) failed: {error}",
                batches=batches,
                error=str(error),
                event_id="store.commit_failed",
            )
        _fire(waiters, error)

    def _crashed(self, error: BaseException, waiters: list[Deferred[None]]) -> None:
        self.log.error("store writer stopped: {error}", error=repr(error), event_id="store.writer_failed")
        _fire(waiters, error)
