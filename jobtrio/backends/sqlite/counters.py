"""The Broker's two counters in the file (table ``broker_meta``): FIFO sequence and epoch.

Both live in the file, not in Python, and are read inside each transaction:
so they survive a restart, and a second Broker on the same file sees one
consistent queue (not a supported deployment, but it cannot corrupt it).
The sequence orders pending jobs of one priority first come, first served;
the epoch fences the leader's moves (``FencedError`` for a stale one).
"""

from __future__ import annotations

import sqlite3

from ..base import FencedError


class FifoSequence:
    """Hands out the FIFO sequence numbers of one transaction.

    The counter lives in ``broker_meta`` (not in Python) so that it survives a
    restart and is shared by every connection on the file; it is read once
    per transaction, on first use, and written back once at the end.
    """

    __slots__ = ("_conn", "_first", "_next")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn
        self._first = 0
        self._next = 0

    def __call__(self) -> int:
        if not self._first:
            (last,) = self._conn.execute(
                "SELECT value FROM broker_meta WHERE key = 'seq'"
            ).fetchone()
            self._first = self._next = last + 1
        value = self._next
        self._next += 1
        return value

    def save(self) -> None:
        if self._next != self._first:
            self._conn.execute(
                "UPDATE broker_meta SET value = ? WHERE key = 'seq'", (self._next - 1,)
            )


def check_epoch(conn: sqlite3.Connection, epoch: int) -> None:
    (current,) = conn.execute("SELECT value FROM broker_meta WHERE key = 'epoch'").fetchone()
    if epoch < current:
        raise FencedError(epoch, current)


def acquire_epoch(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE broker_meta SET value = value + 1 WHERE key = 'epoch'")
    return current_epoch(conn)


def current_epoch(conn: sqlite3.Connection) -> int:
    (epoch,) = conn.execute("SELECT value FROM broker_meta WHERE key = 'epoch'").fetchone()
    return int(epoch)
