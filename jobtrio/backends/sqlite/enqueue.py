"""Filing new jobs: idempotency keys, a workflow filed whole or not at all, parents checked.

One ``INSERT ... ON CONFLICT`` for the batch; a job with an idempotency key
another job already holds is answered with that job instead. A batch with
dependencies is filed only if every parent is known (``enqueue_dependents``).
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Sequence

from ...jobs import Job
from .. import dependencies, transitions
from .counters import FifoSequence
from .database import json_list
from .dependents import Table, attach
from .placement import placement

_ENQUEUE = """
INSERT INTO queue (id, status, priority, seq, run_at, token, expires_at, finished_at,
                   idempotency_key, doc, queue, type)
VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, priority = excluded.priority, seq = excluded.seq,
    queue = excluded.queue, type = excluded.type,
    run_at = excluded.run_at, token = NULL, expires_at = NULL,
    finished_at = excluded.finished_at, idempotency_key = excluded.idempotency_key,
    doc = excluded.doc
"""


def enqueue(conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> list[Job]:
    keys = [job.idempotency_key for job in jobs if job.idempotency_key is not None]
    known: dict[str, Job] = {}
    if keys:
        rows = conn.execute(
            "SELECT idempotency_key, doc FROM queue "
            "WHERE idempotency_key IN (SELECT value FROM json_each(?))",
            (json_list(keys),),
        )
        known = {key: Job.loads(doc) for key, doc in rows}
        root = jobs[0]
        if root.workflow is not None and root.idempotency_key in known:
            return [known[root.idempotency_key]]  # a retried workflow: none of it filed
    seq = FifoSequence(conn)
    params = []
    out: list[Job] = []
    fresh: list[Job] = []  # inserted with dependencies: resolved once all are filed
    for job in jobs:
        key = job.idempotency_key
        if key is not None and key in known:
            out.append(known[key].copy())
            continue
        if not job.terminal:
            status = transitions.waiting_status(job, now)
            if status != job.status:
                # A shallow copy is enough: it is only serialised, never kept.
                job = dataclasses.replace(job, status=status)
        doc = job.dumps()
        stored = Job.loads(doc)  # the caller's copy, sharing nothing with its input
        status, s, run_at, finished_at = placement(stored, now, seq)
        params.append(
            (
                stored.id,
                status,
                stored.priority,
                s,
                run_at,
                finished_at,
                key,
                doc,
                stored.queue,
                stored.type,
            )
        )
        if key is not None:
            known[key] = stored
        out.append(stored)
        if stored.depends_on:
            fresh.append(stored)
    conn.executemany(_ENQUEUE, params)
    seq.save()
    if fresh:
        attach(conn, fresh, now)
    return out


def enqueue_dependents(conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> list[Job]:
    """``enqueue`` for a batch with dependencies: every parent known, or nothing inserted."""
    dependencies.check_known(jobs, Table(conn, now))
    return enqueue(conn, jobs, now)
