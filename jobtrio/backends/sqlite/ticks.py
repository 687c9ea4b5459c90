"""Periodic ticks (table ``ticks``): each tick of a schedule is claimed once, by one leader.

A claimed tick is a row; the oldest are forgotten past ``TICKS_KEPT``, and
the highest forgotten one is kept as the schedule's floor (one negative
row), below which every tick is refused.
"""

from __future__ import annotations

import sqlite3

from ...jobs import Job
from .counters import check_epoch
from .enqueue import enqueue

#: Ticks remembered per schedule; older ones are forgotten, and anything at or
#: below the oldest forgotten tick is refused (the Redis broker does the same).
TICKS_KEPT = 1000


def claim_tick(conn: sqlite3.Connection, name: str, tick: float, epoch: int) -> bool:
    check_epoch(conn, epoch)
    floor = conn.execute(
        "SELECT MIN(tick) FROM ticks WHERE name = ? AND tick < 0", (name,)
    ).fetchone()[0]
    if floor is not None and tick <= -floor:
        return False
    cursor = conn.execute("INSERT OR IGNORE INTO ticks (name, tick) VALUES (?, ?)", (name, tick))
    if cursor.rowcount != 1:
        return False
    gone = conn.execute(
        "SELECT tick FROM ticks WHERE name = ? AND tick >= 0 ORDER BY tick DESC LIMIT 1 OFFSET ?",
        (name, TICKS_KEPT),
    ).fetchone()
    if gone is not None:
        conn.execute(
            "DELETE FROM ticks WHERE name = ? AND tick >= 0 AND tick <= ?", (name, gone[0])
        )
        # the floor is kept as one negative row, so the table needs no new column
        conn.execute("DELETE FROM ticks WHERE name = ? AND tick < 0", (name,))
        conn.execute("INSERT INTO ticks (name, tick) VALUES (?, ?)", (name, -gone[0]))
    return True


def fire_tick(
    conn: sqlite3.Connection, name: str, tick: float, job: Job, epoch: int, now: float
) -> Job | None:
    if not claim_tick(conn, name, tick, epoch):
        return None
    [stored] = enqueue(conn, [job], now)
    return stored
