"""A job's row in the queue table: its place (the indexed columns), filing it anew, reading it.

The job is kept whole as ``Job.dumps()`` text; the columns beside it (status,
priority, sequence, due time, lease, end time) exist only to be indexed, and
``placement`` derives them from the job. State changes are the pure
functions of ``transitions.py``, applied to the loaded ``Job`` inside the
transaction, exactly as the memory Broker applies them; ``move`` applies one
to many rows and files them anew in one statement.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence

from ...jobs import TERMINAL_STATUSES, Job, JobStatus
from .counters import FifoSequence
from .database import json_list

_PENDING = JobStatus.PENDING.value
_DELAYED = frozenset({JobStatus.SCHEDULED, JobStatus.RETRYING})


# Every move other than a claim ends the lease, if any.
PLACE_UPDATE = (
    "UPDATE queue SET status = ?, seq = ?, run_at = ?, token = NULL, expires_at = NULL, "
    "finished_at = ?, doc = ? WHERE rowid = ?"
)


def placement(
    job: Job, now: float, seq: FifoSequence
) -> tuple[str, int | None, float | None, float | None]:
    """The indexed columns (status, seq, run_at, finished_at) for a job not running."""
    status = job.status
    if status == JobStatus.PENDING:
        return _PENDING, seq(), None, None
    if status in _DELAYED:
        return status.value, None, job.scheduled_at if job.scheduled_at is not None else now, None
    if status in TERMINAL_STATUSES:
        return status.value, None, None, now
    if status == JobStatus.WAITING:
        return status.value, None, None, None  # on no index: its parents release it
    raise AssertionError(f"a {status} job cannot be placed without a lease")


def move(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[int, str]],
    now: float,
    change: Callable[[Job], object],
) -> list[Job]:
    """Apply ``change`` to each (rowid, doc) row, file it anew, in one executemany."""
    seq = FifoSequence(conn)
    params = []
    out = []
    for rowid, doc in rows:
        job = Job.loads(doc)
        change(job)
        params.append((*placement(job, now, seq), job.dumps(), rowid))
        out.append(job)
    conn.executemany(PLACE_UPDATE, params)
    seq.save()
    return out


def queued_row(conn: sqlite3.Connection, job_id: str) -> tuple[int, str] | None:
    return conn.execute("SELECT rowid, doc FROM queue WHERE id = ?", (job_id,)).fetchone()


def get_many(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, Job]:
    rows = conn.execute(
        "SELECT id, doc FROM queue WHERE id IN (SELECT value FROM json_each(?))",
        (json_list(job_ids),),
    )
    return {job_id: Job.loads(doc) for job_id, doc in rows}
