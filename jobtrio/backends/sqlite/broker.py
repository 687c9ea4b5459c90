"""The SQLite Broker: the queue's async surface, each call one transaction on its connection.

Every method hands its arguments to one transaction body (``enqueue.py``,
``claim.py``, ``leased.py``, ``operators.py``, ``leader.py``, ``ticks.py``,
``queue_settings.py``) and ``Database.write`` runs it as one
``BEGIN IMMEDIATE`` transaction in a worker thread: every move, a batch of
many jobs included, is all or nothing. The bodies run in that thread, on the
Broker's connection, inside the transaction. Reads run in autocommit mode.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from typing import Self

import trio

from ...jobs import MAX_PRIORITY, MIN_PRIORITY, Job
from ..base import (
    Broker,
    ClaimScope,
    Finish,
    Lease,
    ProgressReport,
    QueueState,
    RateLimit,
    Tombstone,
)
from . import claim, counters, enqueue, leader, leased, operators, placement, queue_settings, ticks
from .database import DEFAULT_BUSY_TIMEOUT, Database
from .schema import BROKER_SCHEMA, add_queue_columns, count_by_status, get_job


class SqliteBroker(Broker):
    """The queue in a SQLite file; see the package docstring for the guarantees."""

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
            return await self._db.write(enqueue.enqueue_dependents, jobs, now)
        return await self._db.write(enqueue.enqueue, jobs, now)

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
            claim.claim, node_id, n, now + lease_seconds, now, scope or ClaimScope()
        )

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        if not leases:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(leased.renew, leases, now + lease_seconds)

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        if not items:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(leased.finish, items, now)

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        if not reports:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(leased.progress, reports, now)

    # -- operators ------------------------------------------------------------------
    async def cancel(self, job_id: str, now: float) -> Job | None:
        return await self._db.write(operators.cancel, job_id, now)

    async def retry(self, job_id: str, now: float) -> Job | None:
        return await self._db.write(operators.retry, job_id, now)

    async def delete(self, job_id: str) -> bool:
        return await self._db.write(operators.delete, job_id)

    async def get(self, job_id: str) -> Job | None:
        return await self._db.read(get_job, "queue", job_id)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            await trio.lowlevel.checkpoint()
            return {}
        return await self._db.read(placement.get_many, job_ids)

    async def depths(self) -> dict[str, int]:
        return await self._db.read(count_by_status, "queue")

    async def pending_by_priority(self) -> dict[int, int]:
        return await self._db.read(_pending_by_priority)

    async def queues(self) -> list[QueueState]:
        return await self._db.read(queue_settings.queues)

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        return await self._db.write(
            queue_settings.set_queue, name, paused, rate_limit, clear_rate_limit, epoch
        )

    async def running(self) -> list[Lease]:
        return await self._db.read(leased.running)

    # -- leader duties ------------------------------------------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        return await self._db.write(counters.acquire_epoch)

    async def current_epoch(self) -> int:
        return await self._db.read(counters.current_epoch)

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        return await self._db.write(leader.promote_due, now, epoch, limit, grace)

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        return await self._db.write(leader.requeue_expired, now, epoch, poison_limit, limit)

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        return await self._db.read(leader.finished_due, older_than, limit, max_bytes, skip)

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        return await self._db.write(
            leader.purge_finished, older_than, epoch, limit, tombstones_before, only
        )

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        if not jobs:
            await trio.lowlevel.checkpoint()
            return []
        return await self._db.write(leader.restore, jobs, now, epoch)

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        [out] = await self._db.write(leader.put_back, [job], now, True)
        return out

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        return await self._db.write(ticks.claim_tick, name, tick, epoch)

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        return await self._db.write(ticks.fire_tick, name, tick, job, epoch, now)

    # -- life cycle ---------------------------------------------------------------
    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        await self._db.close()


def _pending_by_priority(conn: sqlite3.Connection) -> dict[int, int]:
    counts = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
    query = "SELECT priority, count(*) FROM queue WHERE status = 'pending' GROUP BY priority"
    for priority, count in conn.execute(query):
        counts[priority] = count
    return counts
