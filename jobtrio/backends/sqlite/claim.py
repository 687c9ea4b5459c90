"""The claim: the next pending jobs in priority and FIFO order, within the queues' caps, leased.

A claim walks the index (``queue_claim``, or ``queue_by_name`` for one queue)
without sorting, so its cost does not grow with the queue
(tests/test_sqlite_backend.py reads ``claim_select``'s plan). Scheduled and
retrying jobs already due are taken too, as if the leader had promoted them
first. A queue paused or out of its rate budget is skipped.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from ...jobs import Job, new_token
from .. import transitions
from ..base import ClaimScope, Lease
from ..queues import ClaimCaps
from .database import json_list
from .queue_settings import read_queue_settings

_CLAIM_UPDATE = (
    "UPDATE queue SET status = 'running', seq = NULL, run_at = NULL, token = ?, "
    "expires_at = ?, doc = ? WHERE rowid = ?"
)


def claim_select(by_queue: bool, by_types: bool, not_queues: bool, not_rows: bool) -> str:
    """The claim's query: pending jobs of one queue (or any), of the given types (or any),
    outside the queues out of budget and the rows already picked, in priority order."""
    sql = "SELECT rowid, doc, queue, priority, seq FROM queue WHERE status = 'pending'"
    if by_queue:
        sql += " AND queue = ?"
    if by_types:
        sql += " AND type IN (SELECT value FROM json_each(?))"
    if not_queues:
        sql += " AND queue NOT IN (SELECT value FROM json_each(?))"
    if not_rows:
        sql += " AND rowid NOT IN (SELECT value FROM json_each(?))"
    return sql + " ORDER BY priority DESC, seq LIMIT ?"


def claim(
    conn: sqlite3.Connection,
    node_id: str,
    n: int,
    expires_at: float,
    now: float,
    scope: ClaimScope,
) -> list[Lease]:
    paused, limits, windows = read_queue_settings(conn)
    caps = ClaimCaps(scope, paused, limits, windows, now)
    types = None if scope.types is None else json_list(sorted(scope.types))
    groups: list[str | None] = [None] if scope.queues is None else list(scope.queues)
    picked: list[tuple[int, str]] = []
    due = _claimable_due(conn, n, now, scope)
    for queue in groups:
        shut: set[str] = set()  # queues out of budget: not asked again
        if queue is not None and caps.left(queue) == 0:
            continue
        while len(picked) < n:
            args: list[Any] = []
            if queue is not None:
                args.append(queue)
            if types is not None:
                args.append(types)
            if shut:
                args.append(json_list(sorted(shut)))
            if picked:
                args.append(json.dumps([rowid for rowid, _ in picked]))
            args.append(n - len(picked))
            sql = claim_select(queue is not None, types is not None, bool(shut), bool(picked))
            # pending before due at one priority, as if the due jobs were promoted first
            rows = [
                ((-priority, 0, seq), rowid, doc, q)
                for rowid, doc, q, priority, seq in conn.execute(sql, args)
            ]
            # past the last pending row of a full page may lie more pending jobs: only the
            # due jobs before it are known to come next
            last = rows[-1][0] if len(rows) == n - len(picked) else None
            rows += [
                c
                for c in due
                if (queue is None or c[3] == queue)
                and c[3] not in shut
                and (last is None or c[0] < last)
            ]
            if not rows:
                break
            rows.sort(key=lambda row: row[0])
            skipped = False
            for order, rowid, doc, q in rows:
                if len(picked) >= n:
                    break
                if q in shut:
                    continue
                if caps.left(q) == 0:
                    shut.add(q)
                    skipped = True
                    continue
                caps.took(q)
                picked.append((rowid, doc))
                if order[1]:
                    due.remove((order, rowid, doc, q))
            if not skipped:
                break
    for queue, window, used in caps.windows():
        conn.execute(
            "UPDATE queue_settings SET window = ?, used = ? WHERE name = ?", (window, used, queue)
        )
    if not picked:
        return []
    params = []
    leases = []
    claim = transitions.claim
    loads = Job.loads
    for rowid, doc in picked:
        job = loads(doc)
        claim(job, node_id, now)
        token = new_token()
        params.append((token, expires_at, job.dumps(), rowid))
        leases.append(Lease(job, token, expires_at))
    conn.executemany(_CLAIM_UPDATE, params)
    return leases


def _claimable_due(
    conn: sqlite3.Connection, n: int, now: float, scope: ClaimScope
) -> list[tuple[tuple[int, int, int], int, str, str]]:
    """The due scheduled and retrying jobs a claim of ``n`` may take itself (as
    ``MemoryBroker._claimable_due``): the first ``n`` due at ``now`` in the order the
    leader promotes them, of the scope's types and queues, as ((-priority, 1, rank),
    rowid, doc, queue)."""
    rows = conn.execute(
        "SELECT rowid, doc, queue, type, priority FROM queue WHERE run_at <= ? "
        "ORDER BY run_at, id LIMIT ?",
        (now, n),
    )
    out = []
    for rank, (rowid, doc, queue, job_type, priority) in enumerate(rows):
        if scope.types is not None and job_type not in scope.types:
            continue
        if scope.queues is not None and queue not in scope.queues:
            continue
        out.append(((-priority, 1, rank), rowid, doc, queue))
    return out
