"""The file's connections: opening one, and running a read or a transaction on it.

``sqlite3`` blocks, so every call runs in a worker thread through
``trio.to_thread.run_sync``, on one connection per object (the Broker and the
Store each own a ``Database``), behind a ``CapacityLimiter(1)`` so that two
calls never share the connection at once. A thread is never abandoned on
cancellation: the call finishes its transaction, so a cancelled task can't
leave the connection mid-transaction. ``Database.write`` is one
``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction: the write lock is taken up
front, so a move never fails half-way on a lock upgrade, and all of it or
none of it is kept.

Opening puts the file in WAL mode with ``synchronous=NORMAL`` (the package
docstring says what that guarantees) and creates the caller's tables
(``schema.py``). An error that means the file cannot be used is raised as
``BackendUnavailable``; any other ``sqlite3.Error`` is a bug and stays what it is.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from typing import Concatenate, ParamSpec, TypeVar

import trio

from ..base import BackendUnavailable

P = ParamSpec("P")
T = TypeVar("T")

#: How long a call waits for another connection's write lock before giving up.
DEFAULT_BUSY_TIMEOUT = 5.0

# Primary result codes that mean "the database cannot be used right now"
# (https://sqlite.org/rescode.html). Other errors, such as a malformed
# statement, are bugs and are not disguised as an outage.
_UNAVAILABLE_CODES = frozenset(
    {
        5,  # SQLITE_BUSY: locked beyond busy_timeout
        6,  # SQLITE_LOCKED
        7,  # SQLITE_NOMEM
        8,  # SQLITE_READONLY
        10,  # SQLITE_IOERR
        11,  # SQLITE_CORRUPT
        13,  # SQLITE_FULL
        14,  # SQLITE_CANTOPEN
        15,  # SQLITE_PROTOCOL
        26,  # SQLITE_NOTADB
    }
)


def default_path() -> str:
    """``SQLITE_PATH`` as the node's settings read it (environment, then ``.env``)."""
    from ...config import Settings

    return Settings.from_env().sqlite_path


def _outage(exc: sqlite3.Error) -> BackendUnavailable | None:
    """``BackendUnavailable`` if ``exc`` means the file cannot be used; None for a bug."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and code & 0xFF in _UNAVAILABLE_CODES:
        return BackendUnavailable("sqlite", str(exc))
    if code is None and isinstance(exc, sqlite3.OperationalError):
        # No result code (e.g. a Python-level failure to open): treat as I/O.
        return BackendUnavailable("sqlite", str(exc))
    return None


def _open_hint(path: str) -> str:
    """Why a file would not open, where SQLite says only "unable to open database file"."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        return " (it is a folder; SQLITE_PATH names a file)"
    if not os.path.isdir(folder):
        return f" (its folder {folder} does not exist)"
    if not os.access(folder, os.W_OK):
        return f" (its folder {folder} is not writable)"
    return ""


def _switch_to_wal(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """Put the file in WAL mode, waiting out another connection doing the same.

    Switching a fresh file to WAL takes an exclusive lock, and SQLite answers
    ``database is locked`` at once, without the busy handler, when another
    connection is opening the same file at that moment (the Broker and the
    Store of one node do): so wait here, up to the busy timeout.
    """
    deadline = time.monotonic() + busy_timeout
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", None)
            busy = code is not None and code & 0xFF == sqlite3.SQLITE_BUSY
            if not busy or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.05)


class Database:
    """One connection, used from one worker thread at a time.

    The limiter, not ``check_same_thread``, is what keeps calls apart: trio
    may run successive calls on different cached threads, but never two at
    once.
    """

    def __init__(self, conn: sqlite3.Connection, path: str) -> None:
        self._conn: sqlite3.Connection | None = conn
        self.path = path
        self._limiter = trio.CapacityLimiter(1)

    @classmethod
    async def connect(
        cls, where: str | os.PathLike[str] | None, schema: str, busy_timeout: float
    ) -> Database:
        """Open (creating if needed) ``schema``'s tables in the file ``where``
        (None: ``SQLITE_PATH``, as ``default_path`` reads it)."""
        path = os.fspath(where) if where is not None else default_path()

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
                _switch_to_wal(conn, busy_timeout)
                conn.execute("PRAGMA synchronous = NORMAL")
                conn.execute("PRAGMA temp_store = MEMORY")
                # Two objects may create their tables in one file at the same time.
                conn.execute("BEGIN IMMEDIATE")
                try:
                    for statement in schema.split(";"):
                        if statement.strip():
                            conn.execute(statement)
                    conn.execute("COMMIT")
                except BaseException:
                    _rollback(conn)
                    raise
            except BaseException:
                conn.close()
                raise
            return conn

        try:
            conn = await trio.to_thread.run_sync(connect)
        except sqlite3.Error as exc:
            outage = _outage(exc)
            if outage is None:
                raise
            why = f"{path}: {outage.reason}{_open_hint(path)}"
            raise BackendUnavailable("sqlite", why) from exc
        return cls(conn, path)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise BackendUnavailable("sqlite", f"{self.path} is closed")
        return self._conn

    async def read(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn`` in autocommit mode: each single statement is its own snapshot."""

        def call() -> T:
            return fn(self._connection(), *args, **kwargs)

        return await self._run(call)

    async def write(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn`` in one ``BEGIN IMMEDIATE`` transaction; any exception rolls it all back."""

        def call() -> T:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn, *args, **kwargs)
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise
            return result

        return await self._run(call)

    async def _run(self, call: Callable[[], T]) -> T:
        try:
            return await trio.to_thread.run_sync(call, limiter=self._limiter)
        except sqlite3.Error as exc:
            outage = _outage(exc)
            if outage is None:
                raise
            raise outage from exc

    async def ping(self) -> None:
        """A trivial read: the file answers (``Broker.ping`` and ``Store.ping``)."""
        await self.read(_ping)

    async def close(self) -> None:
        def close() -> None:
            conn, self._conn = self._conn, None
            if conn is not None:
                try:
                    # Keeps the planner's statistics fresh (sqlite.org/lang_analyze.html);
                    # a failure here must not stop the close.
                    conn.execute("PRAGMA optimize")
                except sqlite3.Error:
                    pass
                finally:
                    conn.close()

        await self._run(close)


def _rollback(conn: sqlite3.Connection) -> None:
    # Some errors (SQLITE_FULL, SQLITE_IOERR) already rolled the transaction back.
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            pass


def json_list(values: Sequence[str]) -> str:
    """Many ids as one bound parameter (read with ``json_each``): no variable limit."""
    return json.dumps(list(values))


def _ping(conn: sqlite3.Connection) -> None:
    conn.execute("SELECT 1").fetchone()
