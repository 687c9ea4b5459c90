"""The embedded default backend: Broker and Store on one SQLite file (stdlib ``sqlite3``).

A node with no Redis or MongoDB configured opens ``SqliteBroker`` and
``SqliteStore`` on the same file (``SQLITE_PATH``, ``./jobtrio.db``), so
``jobtrio serve`` needs nothing installed. The two keep separate tables
(``queue``, ``broker_meta``, ``ticks`` for the Broker; ``jobs``, ``nodes``,
``elections`` for the Store) and separate connections, so either may also
live in a file of its own.

Durability: the file runs in WAL mode with ``synchronous=NORMAL``. A commit
is then durable against the death of the process (a crash, ``kill -9``):
the WAL frames are in the operating system's hands before the call returns.
It is *not* durable against a power loss or an operating-system crash, which
may roll back the last transactions (the file stays consistent). That is the
guarantee we claim for the embedded backend; a deployment that needs more
runs Redis with AOF.

Concurrency: ``sqlite3`` blocks, so every operation runs in a worker thread
through ``trio.to_thread.run_sync``, on one connection per object, behind a
``CapacityLimiter(1)`` so that two calls never share the connection at once.
A thread is never abandoned on cancellation: the call finishes its
transaction, so a cancelled task can't leave the connection mid-transaction.
Each Broker method is one ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction:
the write lock is taken up front, so a move never fails half-way on a lock
upgrade, and every move (a batch of many jobs included) is all or nothing.
Because the queue order counter and the fencing epoch live in the file and
are read inside each transaction, a second Broker on the same file sees one
consistent queue (not a supported deployment, but it cannot corrupt it).

The job itself is kept whole as ``Job.dumps()`` text; the columns beside it
(status, priority, sequence, due time, lease) exist only to be indexed. State
changes are the pure functions of ``transitions.py``, applied to the loaded
``Job`` inside the transaction, exactly as the memory Broker applies them.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, Self

import trio

from ...jobs import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    TERMINAL_STATUSES,
    Job,
    JobStatus,
    new_token,
)
from .. import dependencies, transitions
from ..base import (
    Broker,
    ClaimScope,
    FencedError,
    Finish,
    Lease,
    ProgressReport,
    QueueState,
    RateLimit,
    StateConflict,
    Tombstone,
)
from ..queues import ClaimCaps
from .database import DEFAULT_BUSY_TIMEOUT, Database, default_path, json_list
from .schema import (
    BROKER_SCHEMA,
    add_queue_columns,
    count_by_status,
    delete_job,
    get_job,
)
from .store import SqliteStore

_PENDING = JobStatus.PENDING.value
_DELAYED = frozenset({JobStatus.SCHEDULED, JobStatus.RETRYING})


# --------------------------------------------------------------------------- broker

_CLAIM_UPDATE = (
    "UPDATE queue SET status = 'running', seq = NULL, run_at = NULL, token = ?, "
    "expires_at = ?, doc = ? WHERE rowid = ?"
)
# Every move other than a claim ends the lease, if any.
_PLACE_UPDATE = (
    "UPDATE queue SET status = ?, seq = ?, run_at = ?, token = NULL, expires_at = NULL, "
    "finished_at = ?, doc = ? WHERE rowid = ?"
)
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


class _Sequence:
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


def _placement(
    job: Job, now: float, seq: _Sequence
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


def _check_epoch(conn: sqlite3.Connection, epoch: int) -> None:
    (current,) = conn.execute("SELECT value FROM broker_meta WHERE key = 'epoch'").fetchone()
    if epoch < current:
        raise FencedError(epoch, current)


def _move(
    conn: sqlite3.Connection,
    rows: Sequence[tuple[int, str]],
    now: float,
    change: Callable[[Job], object],
) -> list[Job]:
    """Apply ``change`` to each (rowid, doc) row, file it anew, in one executemany."""
    seq = _Sequence(conn)
    params = []
    out = []
    for rowid, doc in rows:
        job = Job.loads(doc)
        change(job)
        params.append((*_placement(job, now, seq), job.dumps(), rowid))
        out.append(job)
    conn.executemany(_PLACE_UPDATE, params)
    seq.save()
    return out


class SqliteBroker(Broker):
    """The queue in a SQLite file; see the module docstring for the guarantees."""

    name = "sqlite"

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str] | None = None, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Self:
        """Open (creating if needed) the queue tables in ``path`` (default ``SQLITE_PATH``)."""
        broker = cls(await Database.connect(path, BROKER_SCHEMA, busy_timeout))
        await broker._db.write(add_queue_columns)
        return broker

    @property
    def path(self) -> str:
        return self._db.path

    # -- producers ------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        if not jobs:
            await trio.lowlevel.checkpoint()  # an empty call still checkpoints, as trio expects
            return []
        if any(job.depends_on for job in jobs):
            return await self._db.write(_enqueue_dependents, jobs, now)
        return await self._db.write(_enqueue, jobs, now)

    # -- workers ----------------------------------------------------------------
    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        if n <= 0:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(
            _claim, node_id, n, now + lease_seconds, now, scope or ClaimScope()
        )

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        if not leases:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(_renew, leases, now + lease_seconds)

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(_finish, items, now)

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        if not reports:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(_progress, reports, now)

    # -- operators ------------------------------------------------------------------
    async def cancel(self, job_id: str, now: float) -> Job | None:
        return await self._db.write(_cancel_releasing, job_id, now)

    async def retry(self, job_id: str, now: float) -> Job | None:
        return await self._db.write(_retry, job_id, now)

    async def delete(self, job_id: str) -> bool:
        return await self._db.write(_delete_queued, job_id)

    async def get(self, job_id: str) -> Job | None:
        return await self._db.read(get_job, "queue", job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            await trio.lowlevel.checkpoint()
            return {}
        return await self._db.read(_get_many, job_ids)

    async def depths(self) -> dict[str, int]:
        return await self._db.read(count_by_status, "queue")

    async def pending_by_priority(self) -> dict[int, int]:
        return await self._db.read(_pending_by_priority)

    async def queues(self) -> list[QueueState]:
        return await self._db.read(_queues)

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        return await self._db.write(_set_queue, name, paused, rate_limit, clear_rate_limit, epoch)

    async def running(self) -> list[Lease]:
        return await self._db.read(_running)

    # -- leader duties ------------------------------------------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        return await self._db.write(_acquire_epoch)

    async def current_epoch(self) -> int:
        return await self._db.read(_current_epoch)

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        return await self._db.write(_promote_due, now, epoch, limit, grace)

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        return await self._db.write(_requeue_expired, now, epoch, poison_limit, limit)

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        return await self._db.read(_finished_due, older_than, limit, max_bytes, skip)

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        return await self._db.write(
            _purge_finished, older_than, epoch, limit, tombstones_before, only
        )

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        if not jobs:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(_restore, jobs, now, epoch)

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        [out] = await self._db.write(_put_back, [job], now, True)
        return out

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        return await self._db.write(_claim_tick, name, tick, epoch)

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        return await self._db.write(_fire_tick, name, tick, job, epoch, now)

    # -- life cycle ---------------------------------------------------------------
    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        await self._db.close()


# The transaction bodies run in the worker thread, on the connection, inside
# the transaction that ``Database.write`` opened.


def _enqueue(conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> list[Job]:
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
    seq = _Sequence(conn)
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
        status, s, run_at, finished_at = _placement(stored, now, seq)
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
        _attach(conn, fresh, now)
    return out


def _queue_settings(
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


def _claim_select(by_queue: bool, by_types: bool, not_queues: bool, not_rows: bool) -> str:
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


def _claim(
    conn: sqlite3.Connection,
    node_id: str,
    n: int,
    expires_at: float,
    now: float,
    scope: ClaimScope,
) -> list[Lease]:
    paused, limits, windows = _queue_settings(conn)
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
            sql = _claim_select(queue is not None, types is not None, bool(shut), bool(picked))
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


def _queues(conn: sqlite3.Connection) -> list[QueueState]:
    paused, limits, _ = _queue_settings(conn)
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


def _set_queue(
    conn: sqlite3.Connection,
    name: str,
    paused: bool | None,
    rate_limit: RateLimit | None,
    clear_rate_limit: bool,
    epoch: int | None,
) -> QueueState:
    if epoch is not None:
        _check_epoch(conn, epoch)
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
    ps, limits, _ = _queue_settings(conn)
    return QueueState(name, name in ps, limits.get(name))


def _held_leases(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, list[Any]]:
    """id -> [rowid, token, doc] for those of ``job_ids`` that are leased now."""
    rows = conn.execute(
        "SELECT id, rowid, token, doc FROM queue "
        "WHERE id IN (SELECT value FROM json_each(?)) AND token IS NOT NULL",
        (json_list(job_ids),),
    )
    return {job_id: [rowid, token, doc] for job_id, rowid, token, doc in rows}


def _renew(
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


def _finish(conn: sqlite3.Connection, items: Sequence[Finish], now: float) -> list[Job | None]:
    held = _held_leases(conn, [item.job_id for item in items])
    seq = _Sequence(conn)
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
        params.append((*_placement(job, now, seq), job.dumps(), row[0]))
        out.append(job)
    if params:
        conn.executemany(_PLACE_UPDATE, params)
        seq.save()
        _release(conn, [job for job in out if job is not None], now)
    return out


def _progress(
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


class _Table:
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
        row = _row(self._conn, job_id)
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
        seq = _Sequence(self._conn)
        for job_id, refile in self._dirty.items():
            rowid, job = self._rows[job_id]
            if refile:
                self._conn.execute(
                    _PLACE_UPDATE, (*_placement(job, self._now, seq), job.dumps(), rowid)
                )
            else:  # its place in the queue (and its lease) stay as they are
                self._conn.execute("UPDATE queue SET doc = ? WHERE rowid = ?", (job.dumps(), rowid))
        seq.save()
        self._dirty.clear()


def _release(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, status: JobStatus | None = None
) -> None:
    """Release the dependents of ``jobs`` that just ended (``dependencies.release``)."""
    ended = [j for j in jobs if j.dependents and (status is not None or j.terminal)]
    if not ended:
        return
    table = _Table(conn, now)
    for job in ended:
        dependencies.release(job, table, now, status)
    table.save()


def _enqueue_dependents(conn: sqlite3.Connection, jobs: Sequence[Job], now: float) -> list[Job]:
    """``_enqueue`` for a batch with dependencies: every parent known, or nothing inserted."""
    dependencies.check_known(jobs, _Table(conn, now))
    return _enqueue(conn, jobs, now)


def _attach(conn: sqlite3.Connection, stored: Sequence[Job], now: float) -> None:
    """Resolve the dependencies of jobs ``_enqueue`` just filed (as if due), one at a time
    so that a job sees the parents inserted before it."""
    for job in stored:
        if not job.depends_on or job.terminal:
            continue
        table = _Table(conn, now)
        row = _row(conn, job.id)
        assert row is not None
        table._rows[job.id] = (row[0], job)
        before = job.status
        dependencies.attach(job, table, now)  # changes ``job`` in place: the caller's copy
        table.changed(job, job.status != before)
        table.save()


def _cancel_releasing(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    job = _cancel(conn, job_id, now)
    if job is not None and job.status == JobStatus.CANCELLED:
        _release(conn, [job], now)
    return job


def _delete_queued(conn: sqlite3.Connection, job_id: str) -> bool:
    row = _row(conn, job_id)
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
        _release(conn, [job], job.updated_at, JobStatus.CANCELLED)
    return True


def _row(conn: sqlite3.Connection, job_id: str) -> tuple[int, str] | None:
    return conn.execute("SELECT rowid, doc FROM queue WHERE id = ?", (job_id,)).fetchone()


def _cancel(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    row = _row(conn, job_id)
    if row is None:
        return None
    job = Job.loads(row[1])
    if job.terminal:
        return job
    [cancelled] = _move(conn, [row], now, lambda j: transitions.cancel(j, now))
    return cancelled


def _retry(conn: sqlite3.Connection, job_id: str, now: float) -> Job | None:
    row = _row(conn, job_id)
    if row is None:
        return None
    job = Job.loads(row[1])
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise StateConflict(job, f"job {job_id} is {job.status}, not failed or cancelled")
    [retried] = _move(conn, [row], now, lambda j: transitions.retry(j, now))
    return retried


def _get_many(conn: sqlite3.Connection, job_ids: Sequence[str]) -> dict[str, Job]:
    rows = conn.execute(
        "SELECT id, doc FROM queue WHERE id IN (SELECT value FROM json_each(?))",
        (json_list(job_ids),),
    )
    return {job_id: Job.loads(doc) for job_id, doc in rows}


def _running(conn: sqlite3.Connection) -> list[Lease]:
    rows = conn.execute(
        "SELECT doc, token, expires_at FROM queue "
        "WHERE expires_at IS NOT NULL ORDER BY expires_at, id"
    )
    return [Lease(Job.loads(doc), token, expires_at) for doc, token, expires_at in rows]


def _acquire_epoch(conn: sqlite3.Connection) -> int:
    conn.execute("UPDATE broker_meta SET value = value + 1 WHERE key = 'epoch'")
    return _current_epoch(conn)


def _current_epoch(conn: sqlite3.Connection) -> int:
    (epoch,) = conn.execute("SELECT value FROM broker_meta WHERE key = 'epoch'").fetchone()
    return int(epoch)


def _promote_due(
    conn: sqlite3.Connection, now: float, epoch: int, limit: int, grace: float
) -> list[Job]:
    _check_epoch(conn, epoch)
    rows = conn.execute(
        "SELECT rowid, doc FROM queue WHERE run_at <= ? ORDER BY run_at, id LIMIT ?",
        (now - grace if grace else now, limit),
    ).fetchall()
    return _move(conn, rows, now, lambda job: transitions.promote(job, now))


def _requeue_expired(
    conn: sqlite3.Connection, now: float, epoch: int, poison_limit: int, limit: int
) -> list[Job]:
    _check_epoch(conn, epoch)
    rows = conn.execute(
        "SELECT rowid, doc FROM queue WHERE expires_at < ? ORDER BY expires_at, id LIMIT ?",
        (now, limit),
    ).fetchall()
    moved = _move(conn, rows, now, lambda job: transitions.expire(job, now, poison_limit))
    _release(conn, moved, now)
    return moved


def _finished_due(
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


def _purge_finished(
    conn: sqlite3.Connection,
    older_than: float,
    epoch: int,
    limit: int,
    tombstones_before: float | None,
    only: Sequence[tuple[str, int]] | None,
) -> int:
    _check_epoch(conn, epoch)
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


def _restore(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, epoch: int
) -> list[Job | Tombstone]:
    _check_epoch(conn, epoch)
    return _put_back(conn, jobs, now, False)


def _put_back(
    conn: sqlite3.Connection, jobs: Sequence[Job], now: float, revive: bool
) -> list[Job | Tombstone]:
    """Insert-if-absent (``restore``); ``revive``: only a completed job's tombstone refuses."""
    wanted = json_list([job.id for job in jobs])
    held = _get_many(conn, [job.id for job in jobs])
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
            [stored] = _enqueue(conn, [job], now)
            held[job.id] = stored  # a repeat of the id in this call finds it held
            out.append(stored)
    return out


#: Ticks remembered per schedule; older ones are forgotten, and anything at or
#: below the oldest forgotten tick is refused (the Redis broker does the same).
TICKS_KEPT = 1000


def _claim_tick(conn: sqlite3.Connection, name: str, tick: float, epoch: int) -> bool:
    _check_epoch(conn, epoch)
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


def _fire_tick(
    conn: sqlite3.Connection, name: str, tick: float, job: Job, epoch: int, now: float
) -> Job | None:
    if not _claim_tick(conn, name, tick, epoch):
        return None
    [stored] = _enqueue(conn, [job], now)
    return stored


def _pending_by_priority(conn: sqlite3.Connection) -> dict[int, int]:
    counts = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
    query = "SELECT priority, count(*) FROM queue WHERE status = 'pending' GROUP BY priority"
    for priority, count in conn.execute(query):
        counts[priority] = count
    return counts


__all__ = ["DEFAULT_BUSY_TIMEOUT", "TICKS_KEPT", "SqliteBroker", "SqliteStore", "default_path"]
