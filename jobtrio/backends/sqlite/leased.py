"""The moves of a leased job: renew, finish, progress, each only for the holder of its token.

A lease is the row's ``token`` and ``expires_at``; a token that does not
match (the lease expired and the job went to another worker) answers as
lost, and the job is left alone.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from ...jobs import Job
from .. import transitions
from ..base import Finish, Lease, ProgressReport
from .counters import FifoSequence
from .database import json_list
from .dependents import release
from .placement import PLACE_UPDATE, placement


def _held_leases(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, list[Any]]:
    """id -> [rowid, token, doc] for those of ``job_ids`` that are leased now."""
    rows = conn.execute(
        "SELECT id, rowid, token, doc FROM queue "
        "WHERE id IN (SELECT value FROM json_each(?)) AND token IS NOT NULL",
        (json_list(job_ids),),
    )
    return {job_id: [rowid, token, doc] for job_id, rowid, token, doc in rows}


def renew(
    conn: sqlite3.Connection, leases: Sequence[tuple[str, str]], expires_at: float
) -> list[str]:
    # Only the lease columns: a renewal never reads or rewrites the job itself.
    rows = conn.execute(
        "SELECT id, rowid, token FROM queue "
        "WHERE id IN (SELECT value FROM json_each(?)) AND token IS NOT NULL",
        (json_list([job_id for job_id, _ in leases]),),
    )
    held = {job_id: (rowid, token) for job_id, rowid, token in rows}
    lost = []
    params = []
    for job_id, token in leases:
        row = held.get(job_id)
        if row is None or row[1] != token:
            lost.append(job_id)
        else:
            params.append((expires_at, row[0]))
    if params:
        conn.executemany("UPDATE queue SET expires_at = ? WHERE rowid = ?", params)
    return lost


def finish(conn: sqlite3.Connection, items: Sequence[Finish], now: float) -> list[Job | None]:
    held = _held_leases(conn, [item.job_id for item in items])
    seq = FifoSequence(conn)
    params = []
    out: list[Job | None] = []
    for item in items:
        row = held.get(item.job_id)
        if row is None or row[1] != item.token:
            out.append(None)
            continue
        row[1] = None  # the lease is spent, even for a repeat within this batch
        job = Job.loads(row[2])
        transitions.finish(job, item, now)
        params.append((*placement(job, now, seq), job.dumps(), row[0]))
        out.append(job)
    if params:
        conn.executemany(PLACE_UPDATE, params)
        seq.save()
        release(conn, [job for job in out if job is not None], now)
    return out


def progress(
    conn: sqlite3.Connection, reports: Sequence[ProgressReport], now: float
) -> list[Job | None]:
    held = _held_leases(conn, [report.job_id for report in reports])
    params = []
    out: list[Job | None] = []
    for report in reports:
        row = held.get(report.job_id)
        if row is None or row[1] != report.token:
            out.append(None)
            continue
        job = Job.loads(row[2])
        job.progress = dict(report.progress)
        job.touch(now)
        row[2] = job.dumps()  # a second report in one batch builds on this one
        params.append((row[2], row[0]))
        out.append(job)
    if params:
        conn.executemany("UPDATE queue SET doc = ? WHERE rowid = ?", params)
    return out


def running(conn: sqlite3.Connection) -> list[Lease]:
    rows = conn.execute(
        "SELECT doc, token, expires_at FROM queue "
        "WHERE expires_at IS NOT NULL ORDER BY expires_at, id"
    )
    return [Lease(Job.loads(doc), token, expires_at) for doc, token, expires_at in rows]
