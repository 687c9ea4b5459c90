"""Dependencies inside a Broker transaction: ``dependencies.py``'s rules on the queue table.

``Table`` is the queue as ``dependencies`` sees it. A job that ends
releases its dependents in the same transaction as the move that ended it
(``release``); a job filed with parents is attached to them as it is filed
(``attach``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from ...jobs import Job, JobStatus
from .. import dependencies
from ..base import Tombstone
from .counters import FifoSequence
from .placement import PLACE_UPDATE, placement, queued_row


class Table:
    """The queue's jobs as ``dependencies`` sees them, within one transaction: read on
    demand, changed in memory, written back by ``save``."""

    def __init__(self, conn: sqlite3.Connection, now: float) -> None:
        self._conn = conn
        self._now = now
        self._rows: dict[str, tuple[int, Job]] = {}
        self._dirty: dict[str, bool] = {}

    def job(self, job_id: str) -> Job | None:
        held = self._rows.get(job_id)
        if held is not None:
            return held[1]
        row = queued_row(self._conn, job_id)
        if row is None:
            return None
        job = Job.loads(row[1])
        self._rows[job_id] = (row[0], job)
        return job

    def tombstone(self, job_id: str) -> Tombstone | None:
        row = self._conn.execute(
            "SELECT status, version, finished_at FROM tombstones WHERE id = ?", (job_id,)
        ).fetchone()
        return None if row is None else Tombstone(job_id, JobStatus(row[0]), row[1], row[2])

    def changed(self, job: Job, refile: bool) -> None:
        self._dirty[job.id] = self._dirty.get(job.id, False) or refile

    def save(self) -> None:
        seq = FifoSequence(self._conn)
        for job_id, refile in self._dirty.items():
            rowid, job = self._rows[job_id]
            if refile:
                self._conn.execute(
                    PLACE_UPDATE, (*placement(job, self._now, seq), job.dumps(), rowid)
                )
            else:  # its place in the queue (and its lease) stay as they are
                self._conn.execute("UPDATE queue SET doc = ? WHERE rowid = ?", (job.dumps(), rowid))
        seq.save()
        self._dirty.clear()


def release(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, status: JobStatus | None = None
) -> None:
    """Release the dependents of ``jobs`` that just ended (``dependencies.release``)."""
    ended = [j for j in jobs if j.dependents and (status is not None or j.terminal)]
    if not ended:
        return
    table = Table(conn, now)
    for job in ended:
        dependencies.release(job, table, now, status)
    table.save()


def attach(conn: sqlite3.Connection, stored: Sequence[Job], now: float) -> None:
    """Resolve the dependencies of jobs ``enqueue`` just filed (as if due), one at a time
    so that a job sees the parents inserted before it."""
    for job in stored:
        if not job.depends_on or job.terminal:
            continue
        table = Table(conn, now)
        row = queued_row(conn, job.id)
        assert row is not None
        table._rows[job.id] = (row[0], job)
        before = job.status
        dependencies.attach(job, table, now)  # changes ``job`` in place: the caller's copy
        table.changed(job, job.status != before)
        table.save()
