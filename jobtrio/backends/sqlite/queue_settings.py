"""Named queues' settings (table ``queue_settings``): paused queues and rate limits.

A queue has a row only while it is paused or limited. A rate limit's current
window (its number, ``queues.window_of``, and the jobs taken in it) is kept beside the limit and
advanced by the claims (``claim.py``, through ``queues.ClaimCaps``).
"""

from __future__ import annotations

import sqlite3

from ..base import QueueState, RateLimit
from .counters import check_epoch


def read_queue_settings(
    conn: sqlite3.Connection,
) -> tuple[set[str], dict[str, RateLimit], dict[str, tuple[int, int]]]:
    """(paused queues, rate limits, rate windows as (window, used))."""
    paused: set[str] = set()
    limits: dict[str, RateLimit] = {}
    windows: dict[str, tuple[int, int]] = {}
    rows = conn.execute("SELECT name, paused, jobs, per, window, used FROM queue_settings")
    for name, is_paused, jobs, per, window, used in rows:
        if is_paused:
            paused.add(name)
        if jobs is not None:
            limits[name] = RateLimit(int(jobs), float(per))
            if window is not None:
                windows[name] = (int(window), int(used))
    return paused, limits, windows


def queues(conn: sqlite3.Connection) -> list[QueueState]:
    paused, limits, _ = read_queue_settings(conn)
    out: dict[str, QueueState] = {}
    rows = conn.execute(
        "SELECT queue, type, count(*) FROM queue WHERE status = 'pending' GROUP BY queue, type"
    )
    for queue, job_type, count in rows:
        out.setdefault(queue, QueueState(queue)).pending[job_type] = count
    for name in paused | set(limits):
        state = out.setdefault(name, QueueState(name))
        state.paused = name in paused
        state.rate_limit = limits.get(name)
    return [out[name] for name in sorted(out)]


def set_queue(
    conn: sqlite3.Connection,
    name: str,
    paused: bool | None,
    rate_limit: RateLimit | None,
    clear_rate_limit: bool,
    epoch: int | None,
) -> QueueState:
    if epoch is not None:
        check_epoch(conn, epoch)
    conn.execute("INSERT OR IGNORE INTO queue_settings (name) VALUES (?)", (name,))
    if paused is not None:
        conn.execute("UPDATE queue_settings SET paused = ? WHERE name = ?", (int(paused), name))
    if clear_rate_limit:
        conn.execute(
            "UPDATE queue_settings SET jobs = NULL, per = NULL, window = NULL, used = 0 "
            "WHERE name = ?",
            (name,),
        )
    elif rate_limit is not None:
        conn.execute(
            "UPDATE queue_settings SET jobs = ?, per = ?, window = NULL, used = 0 WHERE name = ?",
            (rate_limit.jobs, rate_limit.per, name),
        )
    conn.execute(
        "DELETE FROM queue_settings WHERE name = ? AND paused = 0 AND jobs IS NULL", (name,)
    )
    ps, limits, _ = read_queue_settings(conn)
    return QueueState(name, name in ps, limits.get(name))
