"""An operator's moves on one job: cancel, retry, delete.

A cancel or a delete of a live job releases its dependents (as cancelled);
a delete leaves a tombstone, as a purge does, so that a late record of the
job cannot bring it back through ``restore``.
"""

from __future__ import annotations

import sqlite3

from ...jobs import Job, JobStatus
from .. import transitions
from ..base import StateConflict
from .dependents import release
from .placement import move, queued_row
from .schema import delete_job


def cancel(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    job = _cancel_move(conn, job_id, now)
    if job is not None and job.status == JobStatus.CANCELLED:
        release(conn, [job], now)
    return job


def _cancel_move(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    row = queued_row(conn, job_id)
    if row is None:
        return None
    job = Job.loads(row[1])
    if job.terminal:
        return job
    [cancelled] = move(conn, [row], now, lambda j: transitions.cancel(j, now))
    return cancelled


def retry(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    row = queued_row(conn, job_id)
    if row is None:
        return None
    job = Job.loads(row[1])
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise StateConflict(job, f"job {job_id} is {job.status}, not failed or cancelled")
    [retried] = move(conn, [row], now, lambda j: transitions.retry(j, now))
    return retried


def delete(conn: sqlite3.Connection, job_id: str) -> bool:
    row = queued_row(conn, job_id)
    if row is None:
        return False
    job = Job.loads(row[1])
    # a tombstone, as a purge leaves: a record of the job written late (another node's
    # recorder) must not bring it back through restore; a live job counts as cancelled
    [finished_at] = conn.execute(
        "SELECT finished_at FROM queue WHERE rowid = ?", (row[0],)
    ).fetchone()
    terminal = job.terminal
    conn.execute(
        "INSERT OR REPLACE INTO tombstones (id, status, version, finished_at) VALUES (?, ?, ?, ?)",
        (
            job_id,
            job.status.value if terminal else JobStatus.CANCELLED.value,
            job.version if terminal else job.version + 1,
            finished_at if finished_at is not None else job.updated_at,
        ),
    )
    delete_job(conn, "queue", job_id)
    if not job.terminal:  # its dependents must not wait for it forever
        release(conn, [job], job.updated_at, JobStatus.CANCELLED)
    return True
