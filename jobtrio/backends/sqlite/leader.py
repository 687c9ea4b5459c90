"""The leader's duties on the queue: promote due jobs, requeue expired leases, retention, restore.

Each move is fenced by the leader's epoch (``counters.check_epoch``). A purged
job leaves a tombstone (table ``tombstones``), which ``restore`` and
``revive`` (``put_back``) answer instead of bringing the job back.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Sequence

from ...jobs import Job, JobStatus
from .. import transitions
from ..base import Tombstone
from .counters import check_epoch
from .database import json_list
from .dependents import release
from .enqueue import enqueue
from .placement import get_many, move


def promote_due(
    conn: sqlite3.Connection, now: float, epoch: int, limit: int, grace: float
) -> list[Job]:
    check_epoch(conn, epoch)
    rows = conn.execute(
        "SELECT rowid, doc FROM queue WHERE run_at <= ? ORDER BY run_at, id LIMIT ?",
        (now - grace if grace else now, limit),
    ).fetchall()
    return move(conn, rows, now, lambda job: transitions.promote(job, now))


def requeue_expired(
    conn: sqlite3.Connection, now: float, epoch: int, poison_limit: int, limit: int
) -> list[Job]:
    check_epoch(conn, epoch)
    rows = conn.execute(
        "SELECT rowid, doc FROM queue WHERE expires_at < ? ORDER BY expires_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    moved = move(conn, rows, now, lambda job: transitions.expire(job, now, poison_limit))
    release(conn, moved, now)
    return moved


def finished_due(
    conn: sqlite3.Connection,
    older_than: float,
    limit: int,
    max_bytes: int | None,
    skip: Sequence[str],
) -> list[Job]:
    skipped = set(skip)
    rows = conn.execute(
        "SELECT id, doc FROM queue WHERE finished_at < ? ORDER BY finished_at LIMIT ?",
        (older_than, limit + len(skipped)),
    )
    out: list[Job] = []
    size = 0
    for job_id, doc in rows:
        if job_id in skipped:
            continue
        if len(out) >= limit or (max_bytes is not None and size >= max_bytes):
            break
        size += len(doc)
        out.append(Job.loads(doc))
    return out


def purge_finished(
    conn: sqlite3.Connection,
    older_than: float,
    epoch: int,
    limit: int,
    tombstones_before: float | None,
    only: Sequence[tuple[str, int]] | None,
) -> int:
    check_epoch(conn, epoch)
    if only is None:
        rows = conn.execute(
            "SELECT rowid, id, status, json_extract(doc, '$.version'), finished_at FROM queue "
            "WHERE finished_at < ? ORDER BY finished_at LIMIT ?",
            (older_than, limit),
        ).fetchall()
    else:
        # exactly these jobs, each only while it is still finished at the version given
        rows = conn.execute(
            "SELECT q.rowid, q.id, q.status, json_extract(q.doc, '$.version'), q.finished_at "
            "FROM json_each(?) AS w JOIN queue AS q ON q.id = json_extract(w.value, '$[0]') "
            "WHERE q.finished_at IS NOT NULL "
            "AND json_extract(q.doc, '$.version') = json_extract(w.value, '$[1]')",
            (json.dumps(list(dict(only).items())),),
        ).fetchall()
    conn.executemany(
        "INSERT OR REPLACE INTO tombstones (id, status, version, finished_at) VALUES (?, ?, ?, ?)",
        [row[1:] for row in rows],
    )
    conn.executemany("DELETE FROM queue WHERE rowid = ?", [(row[0],) for row in rows])
    if tombstones_before is not None:
        conn.execute("DELETE FROM tombstones WHERE finished_at < ?", (tombstones_before,))
    return len(rows)


def restore(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, epoch: int
) -> list[Job | Tombstone]:
    check_epoch(conn, epoch)
    return put_back(conn, jobs, now, False)


def put_back(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, revive: bool
) -> list[Job | Tombstone]:
    """Insert-if-absent (``restore``); ``revive``: only a completed job's tombstone refuses."""
    wanted = json_list([job.id for job in jobs])
    held = get_many(conn, [job.id for job in jobs])
    tombs = {
        job_id: Tombstone(job_id, JobStatus(status), int(version), finished_at)
        for job_id, status, version, finished_at in conn.execute(
            "SELECT id, status, version, finished_at FROM tombstones "
            "WHERE id IN (SELECT value FROM json_each(?))",
            (wanted,),
        )
    }
    out: list[Job | Tombstone] = []
    for job in jobs:
        tomb = tombs.get(job.id)
        if job.id in held:
            out.append(held[job.id])
        elif tomb is not None and (not revive or tomb.status == JobStatus.COMPLETED):
            out.append(tomb)
        else:
            key = job.idempotency_key
            if (
                key is not None
                and conn.execute("SELECT 1 FROM queue WHERE idempotency_key = ?", (key,)).fetchone()
            ):
                job = dataclasses.replace(job, idempotency_key=None)  # another job holds it
            [stored] = enqueue(conn, [job], now)
            held[job.id] = stored  # a repeat of the id in this call finds it held
            out.append(stored)
    return out
