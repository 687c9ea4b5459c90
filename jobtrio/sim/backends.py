"""The shared Broker and Store standing in for Redis, and each node's connection to them.

One :class:`ObservedBroker` (the real ``MemoryBroker``, subclassed only to
watch) and one ``MemoryStore`` live for the whole run; a crash never touches
them, exactly as a node's death leaves Redis alone. The observer records
every move of a job in the trace and judges, atomically with the move (no
checkpoint lies between the parent's atomic section and the check), the
invariants that belong to the Broker:

* a leader-only write must carry the newest fencing epoch (at most one
  leader acts at a time, whatever the election believes);
* a job is completed at most once, so never under two lease tokens, and
  nothing finishes a job that already ended.

Each node reaches them through a :class:`Connection`: a little latency each
way, and a switch the nemesis flips to cut the node off (Redis unreachable:
``BackendUnavailable``). A reply lost that way leaves the move applied but
unknown to the caller, which is the indeterminate outcome real clients get.
When the node crashes its connection closes, so a client request in flight
through it fails too.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import trio

from ..backends.base import (
    BackendUnavailable,
    Broker,
    ClaimScope,
    Finish,
    JobQuery,
    Lease,
    NodeRecord,
    Page,
    QueueState,
    RateLimit,
    Store,
    Tombstone,
)
from ..backends.memory import MemoryBroker
from ..jobs import Job, JobStatus
from .history import History

T = TypeVar("T")


class ObservedBroker(MemoryBroker):
    """``MemoryBroker`` with every move traced and the Broker's invariants checked."""

    def __init__(self, history: History, tokens: Callable[[], str]) -> None:
        super().__init__(tokens=tokens)
        self._history = history
        self._trace = history.trace
        #: The status each job had after its last move (so the next move sees its "before").
        self.status: dict[str, JobStatus] = {}
        self._acting: set[int] = set()

    def _moved(self, what: str, job: Job, *extra: object) -> None:
        self.status[job.id] = job.status
        self._trace.record("job", what, job.id, job.status, *extra)

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        out = await super().enqueue(jobs, now)
        for job in out:
            if job.id not in self.status:
                self._moved("enqueued", job, job.idempotency_key, job.type)
        return out

    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        leases = await super().claim(node_id, n, lease_seconds, now, scope)
        for lease in leases:
            self._moved("claimed", lease.job, node_id, lease.token)
        return leases

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        out = await super().finish(items, now)
        for item, job in zip(items, out, strict=True):
            if job is None:
                self._trace.record("job", "refused", item.job_id, item.outcome, item.token)
                continue
            before = self.status.get(item.job_id)
            self._moved("finished", job, item.outcome, item.token)
            tokens = self._history.completions.setdefault(job.id, [])
            if item.outcome == "completed" and tokens:
                self._history.violate(
                    "completed_once",
                    trio.current_time(),
                    f"job {job.id} completed again under lease token {item.token} "
                    f"after {', '.join(tokens)}",
                )
            elif before is not None and before.terminal:
                self._history.violate(
                    "completed_once",
                    trio.current_time(),
                    f"job {job.id} was {before} yet the Broker accepted "
                    f"'{item.outcome}' under lease token {item.token}",
                )
            if item.outcome == "completed":
                tokens.append(item.token)
        return out

    async def cancel(self, job_id: str, now: float) -> Job | None:
        job = await super().cancel(job_id, now)
        if job is not None and self.status.get(job_id) != job.status:
            self._moved("cancelled", job)
        return job

    async def retry(self, job_id: str, now: float) -> Job | None:
        job = await super().retry(job_id, now)
        if job is not None:
            self._moved("retried", job)
        return job

    # -- leader duties: judged against the newest epoch -----------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        epoch = await super().acquire_epoch(node_id, now)
        self._history.epochs[epoch] = node_id
        self._trace.record("epoch", epoch, node_id)
        return epoch

    def _leader_write(self, what: str, epoch: int) -> None:
        holder = self._history.epochs.get(epoch, "?")
        if epoch < self._epoch:
            newest = self._history.epochs.get(self._epoch, "?")
            self._history.violate(
                "one_acting_leader",
                trio.current_time(),
                f"{holder} wrote ({what}) with fencing epoch {epoch} after {newest} "
                f"took epoch {self._epoch}: two leaders acted",
            )
        if epoch not in self._acting:
            self._acting.add(epoch)
            self._trace.record("epoch.acts", epoch, holder)

    async def promote_due(self, now: float, epoch: int, limit: int = 1000) -> list[Job]:
        out = await super().promote_due(now, epoch, limit)
        self._leader_write("promote", epoch)
        for job in out:
            self._moved("promoted", job, epoch)
        return out

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        out = await super().requeue_expired(now, epoch, poison_limit, limit)
        self._leader_write("requeue", epoch)
        for job in out:
            self._moved("expired", job, epoch, job.lease_expirations)
        return out

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
    ) -> int:
        n = await super().purge_finished(older_than, epoch, limit, tombstones_before)
        self._leader_write("purge", epoch)
        return n

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        out = await super().restore(jobs, now, epoch)
        self._leader_write("restore", epoch)
        for job in out:
            if isinstance(job, Job):
                self._moved("restored", job, epoch)
        return out

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        out = await super().fire_tick(name, tick, job, epoch, now)
        self._leader_write("tick", epoch)
        if out is not None:
            self._trace.record("tick", "fired", name, tick, out.id, epoch)
            if out.id not in self.status:
                self._moved("enqueued", out, out.idempotency_key, out.type)
        return out

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        ok = await super().claim_tick(name, tick, epoch)
        self._leader_write("tick", epoch)
        return ok

    # -- views for the checker --------------------------------------------------------------
    def snapshot(self) -> dict[str, Job]:
        return {job_id: job.copy() for job_id, job in self.view().items()}


class Connection:
    """One node incarnation's link to the backends: latency, outages, death."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        self.node_id = node_id
        self._rng = rng
        self.cut = False
        self.closed = False

    def _check(self, backend: str) -> None:
        if self.closed:
            raise BackendUnavailable(backend, f"connection of {self.node_id} closed")
        if self.cut:
            raise BackendUnavailable(backend, f"{self.node_id} is cut off from it")

    async def call(self, backend: str, fn: Callable[[], Awaitable[T]]) -> T:
        # The request's trip is the memory backend's own checkpoint before it
        # moves; the reply's trip is a sleep, during which a crash or a cut can
        # lose it. One sleep per call, not two: each costs a scheduler round.
        self._check(backend)
        result = await fn()
        await trio.sleep(self._rng.uniform(0.0002, 0.002))
        self._check(backend)  # the reply never arrived: applied, but the caller cannot know
        return result


class BrokerLink(Broker):
    """The shared Broker as one node reaches it."""

    def __init__(self, broker: Broker, connection: Connection) -> None:
        self._b = broker
        self._c = connection
        self.name = broker.name

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        return await self._c.call("broker", lambda: self._b.enqueue(jobs, now))

    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        return await self._c.call(
            "broker", lambda: self._b.claim(node_id, n, lease_seconds, now, scope)
        )

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        return await self._c.call("broker", lambda: self._b.renew(leases, lease_seconds, now))

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        return await self._c.call("broker", lambda: self._b.finish(items, now))

    async def cancel(self, job_id: str, now: float) -> Job | None:
        return await self._c.call("broker", lambda: self._b.cancel(job_id, now))

    async def retry(self, job_id: str, now: float) -> Job | None:
        return await self._c.call("broker", lambda: self._b.retry(job_id, now))

    async def delete(self, job_id: str) -> bool:
        return await self._c.call("broker", lambda: self._b.delete(job_id))

    async def get(self, job_id: str) -> Job | None:
        return await self._c.call("broker", lambda: self._b.get(job_id))

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        return await self._c.call("broker", lambda: self._b.get_many(job_ids))

    async def depths(self) -> dict[str, int]:
        return await self._c.call("broker", self._b.depths)

    async def pending_by_priority(self) -> dict[int, int]:
        return await self._c.call("broker", self._b.pending_by_priority)

    async def queues(self) -> list[QueueState]:
        return await self._c.call("broker", self._b.queues)

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        return await self._c.call(
            "broker",
            lambda: self._b.set_queue(
                name,
                paused=paused,
                rate_limit=rate_limit,
                clear_rate_limit=clear_rate_limit,
                epoch=epoch,
            ),
        )

    async def running(self) -> list[Lease]:
        return await self._c.call("broker", self._b.running)

    async def acquire_epoch(self, node_id: str, now: float) -> int:
        return await self._c.call("broker", lambda: self._b.acquire_epoch(node_id, now))

    async def current_epoch(self) -> int:
        return await self._c.call("broker", self._b.current_epoch)

    async def promote_due(self, now: float, epoch: int, limit: int = 1000) -> list[Job]:
        return await self._c.call("broker", lambda: self._b.promote_due(now, epoch, limit))

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        return await self._c.call(
            "broker", lambda: self._b.requeue_expired(now, epoch, poison_limit, limit)
        )

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
    ) -> int:
        return await self._c.call(
            "broker",
            lambda: self._b.purge_finished(older_than, epoch, limit, tombstones_before),
        )

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        return await self._c.call("broker", lambda: self._b.restore(jobs, now, epoch))

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        return await self._c.call("broker", lambda: self._b.revive(job, now))

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        return await self._c.call("broker", lambda: self._b.fire_tick(name, tick, job, epoch, now))

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        return await self._c.call("broker", lambda: self._b.claim_tick(name, tick, epoch))

    async def ping(self) -> None:
        await self._c.call("broker", self._b.ping)


class StoreLink(Store):
    """The shared Store as one node reaches it (the same connection as its Broker)."""

    def __init__(self, store: Store, connection: Connection) -> None:
        self._s = store
        self._c = connection
        self.name = store.name

    async def put_many(self, jobs: Sequence[Job]) -> None:
        await self._c.call("store", lambda: self._s.put_many(jobs))

    async def get(self, job_id: str) -> Job | None:
        return await self._c.call("store", lambda: self._s.get(job_id))

    async def query(self, query: JobQuery) -> Page:
        return await self._c.call("store", lambda: self._s.query(query))

    async def delete(self, job_id: str) -> bool:
        return await self._c.call("store", lambda: self._s.delete(job_id))

    async def count_by_status(self) -> dict[str, int]:
        return await self._c.call("store", self._s.count_by_status)

    async def put_node(self, node: NodeRecord) -> None:
        await self._c.call("store", lambda: self._s.put_node(node))

    async def list_nodes(self) -> list[NodeRecord]:
        return await self._c.call("store", self._s.list_nodes)

    async def delete_node(self, node_id: str) -> bool:
        return await self._c.call("store", lambda: self._s.delete_node(node_id))

    async def add_election(self, record: dict[str, Any]) -> None:
        await self._c.call("store", lambda: self._s.add_election(record))

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self._c.call("store", lambda: self._s.list_elections(limit))

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        await self._c.call("store", lambda: self._s.put_schedule(schedule))

    async def list_schedules(self) -> list[dict[str, Any]]:
        return await self._c.call("store", self._s.list_schedules)

    async def delete_schedule(self, name: str) -> bool:
        return await self._c.call("store", lambda: self._s.delete_schedule(name))

    async def ping(self) -> None:
        await self._c.call("store", self._s.ping)
