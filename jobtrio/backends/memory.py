"""In-process Broker and Store: the reference implementation.

Used by the simulator (which stands it in for Redis) and by fast tests. Each
method runs without awaiting in the middle, so under trio it is atomic; the
one checkpoint at the start lets the simulator interleave tasks there.
Jobs are copied on the way in and out so that no caller can mutate the
Broker's state behind its back (as a real network would guarantee).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import trio

from ..jobs import MAX_PRIORITY, MIN_PRIORITY, TERMINAL_STATUSES, Job, JobStatus, new_token
from . import dependencies, transitions
from .base import (
    Broker,
    ClaimScope,
    FencedError,
    Finish,
    JobQuery,
    Lease,
    NodeRecord,
    Page,
    ProgressReport,
    QueueState,
    RateLimit,
    StateConflict,
    Store,
    Tombstone,
)
from .queues import ClaimCaps

#: Ticks remembered per schedule (see ``claim_tick``).
TICKS_KEPT = 1000


class MemoryBroker(Broker):
    name = "memory"
    #: The two safety checks; the simulator turns one off to plant a known bug
    #: and show that its invariants catch it. Never off outside that.
    check_fencing = True
    check_lease_tokens = True
    #: Off: a job with dependencies is due at once, as if they had completed (a planted
    #: bug for the simulator's dependency checks).
    check_dependencies = True

    def __init__(self, *, tokens: Callable[[], str] = new_token) -> None:
        #: Makes lease tokens (the simulator passes a seeded source).
        self._tokens = tokens
        self._jobs: dict[str, Job] = {}
        #: (queue, type) -> heap of (-priority, seq, id): a claim reads only the heaps
        #: of the queues it serves and the types it can run
        self._pending: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
        self._pending_key: dict[str, tuple[int, int, str]] = {}
        self._paused: set[str] = set()
        self._limits: dict[str, RateLimit] = {}
        self._rate: dict[str, tuple[int, int]] = {}  # queue -> (window, claims in it)
        self._delayed: dict[str, float] = {}  # id -> run at
        self._leases: dict[str, tuple[str, float]] = {}  # id -> (token, expires_at)
        self._finished_at: dict[str, float] = {}
        self._idempotency: dict[str, str] = {}
        self._seq = itertools.count()
        self._epoch = 0
        self._ticks: dict[str, set[float]] = {}
        self._tick_floor: dict[str, float] = {}
        self._tombstones: dict[str, Tombstone] = {}
        self._now = 0.0  # the time of the move in progress, for ``changed``

    # -- the test hook ----------------------------------------------------------
    # Not part of the Broker interface: the simulator's checker and tests read the
    # Broker's state through these, synchronously, instead of its private tables.
    def view(self) -> Mapping[str, Job]:
        """Every job held, by id: a read-only view of the live objects (do not change them)."""
        return MappingProxyType(self._jobs)

    @property
    def epoch(self) -> int:
        """The newest fencing epoch handed out."""
        return self._epoch

    # -- internals ------------------------------------------------------------
    def _push_pending(self, job: Job) -> None:
        entry = (-job.priority, next(self._seq), job.id)
        self._pending_key[job.id] = entry
        heapq.heappush(self._pending.setdefault((job.queue, job.type), []), entry)

    def _place(self, job: Job, now: float) -> None:
        """File a job under its status's index."""
        self._pending_key.pop(job.id, None)
        self._delayed.pop(job.id, None)
        self._leases.pop(job.id, None)
        self._finished_at.pop(job.id, None)
        if job.status == JobStatus.PENDING:
            self._push_pending(job)
        elif job.status in (JobStatus.SCHEDULED, JobStatus.RETRYING):
            self._delayed[job.id] = job.scheduled_at if job.scheduled_at is not None else now
        elif job.status in TERMINAL_STATUSES:
            self._finished_at[job.id] = now

    # -- dependencies: the table ``dependencies`` works on ----------------------------
    def job(self, job_id: str) -> Job | None:
        return self._jobs.get(job_id)

    def tombstone(self, job_id: str) -> Tombstone | None:
        return self._tombstones.get(job_id)

    def changed(self, job: Job, refile: bool) -> None:
        if refile:
            self._place(job, self._now)

    def _ended(self, job: Job, now: float, status: JobStatus | None = None) -> None:
        """``job`` just ended (or is deleted): release the jobs that wait for it."""
        if job.dependents and (status is not None or job.terminal):
            self._now = now
            dependencies.release(job, self, now, status)

    def _check_epoch(self, epoch: int) -> None:
        if self.check_fencing and epoch < self._epoch:
            raise FencedError(epoch, self._epoch)

    # -- producers ------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        await trio.lowlevel.checkpoint()
        dependencies.check_known(jobs, self)  # all or none: before anything is inserted
        if jobs and jobs[0].workflow is not None and jobs[0].idempotency_key is not None:
            held = self._idempotency.get(jobs[0].idempotency_key)
            if held is not None and held in self._jobs:  # a retried workflow: none of it
                return [self._jobs[held].copy()]
        out: list[Job] = []
        batch_keys: dict[str, Job] = {}
        for job in jobs:
            key = job.idempotency_key
            if key is not None:
                if key in self._idempotency and self._idempotency[key] in self._jobs:
                    out.append(self._jobs[self._idempotency[key]].copy())
                    continue
                if key in batch_keys:
                    out.append(batch_keys[key].copy())
                    continue
            stored = self._insert(job, now)
            if key is not None:
                batch_keys[key] = stored
            out.append(stored.copy())
        return out

    def _insert(self, job: Job, now: float) -> Job:
        """File a copy of ``job`` (waiting unless terminal) and take its idempotency key."""
        stored = job.copy()
        if not stored.terminal:
            stored.status = transitions.waiting_status(stored, now)
            self._now = now
            if self.check_dependencies:
                dependencies.attach(stored, self, now)
        self._jobs[stored.id] = stored
        self._place(stored, now)
        if stored.idempotency_key is not None:
            self._idempotency[stored.idempotency_key] = stored.id
        return stored

    # -- workers ----------------------------------------------------------------
    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        await trio.lowlevel.checkpoint()
        scope = scope or ClaimScope()
        caps = ClaimCaps(scope, self._paused, self._limits, self._rate, now)
        heaps = {
            key: heap
            for key, heap in self._pending.items()
            if heap and (scope.types is None or key[1] in scope.types)
        }
        due = self._claimable_due(n, now, scope)
        keys_all = list(heaps) + [k for k in due if k not in heaps]
        if scope.queues is None:
            groups = [keys_all]
        else:
            groups = [[k for k in keys_all if k[0] == q] for q in scope.queues]
        leases: list[Lease] = []
        for keys in groups:
            while len(leases) < n:
                # the lowest head of the pending heaps and of the due lists: a pending
                # entry (-priority, 0, seq) before a due one (-priority, 1, rank) of its
                # priority, as if the due jobs had been promoted in this very move
                best: tuple[tuple[int, int, int], tuple[str, str]] | None = None
                for key in keys:
                    if caps.left(key[0]) == 0:
                        continue
                    heap = heaps.get(key)
                    while heap and self._pending_key.get(heap[0][2]) != heap[0]:
                        heapq.heappop(heap)  # stale entry: the job moved on
                    if heap and (best is None or (heap[0][0], 0, heap[0][1]) < best[0]):
                        best = ((heap[0][0], 0, heap[0][1]), key)
                    waiting = due.get(key)
                    if waiting and (best is None or waiting[0][:3] < best[0]):
                        best = (waiting[0][:3], key)
                if best is None:
                    break
                key = best[1]
                caps.took(key[0])
                if best[0][1] == 0:
                    job_id = heapq.heappop(heaps[key])[2]
                    del self._pending_key[job_id]
                else:
                    job_id = due[key].pop(0)[3]
                    del self._delayed[job_id]
                job = self._jobs[job_id]
                transitions.claim(job, node_id, now)
                token = self._tokens()
                self._leases[job_id] = (token, now + lease_seconds)
                leases.append(Lease(job.copy(), token, now + lease_seconds))
        for queue, window, used in caps.windows():
            self._rate[queue] = (window, used)
        return leases

    def _claimable_due(
        self, n: int, now: float, scope: ClaimScope
    ) -> dict[tuple[str, str], list[tuple[int, int, int, str]]]:
        """The due scheduled and retrying jobs a claim of ``n`` may take itself.

        The first ``n`` due on the Broker's clock (``now``), in the order the
        leader promotes them (due time, then id), of the types and queues of
        ``scope``: by (queue, type), each as (-priority, 1, rank, id) in claim
        order. A claim takes them directly (scheduled to running in one move),
        after the pending jobs of their priority, as if promoted just before it.
        """
        out: dict[tuple[str, str], list[tuple[int, int, int, str]]] = {}
        if not self._delayed or n <= 0:
            return out
        first = heapq.nsmallest(n, ((at, i) for i, at in self._delayed.items() if at <= now))
        for rank, (_, job_id) in enumerate(first):
            job = self._jobs[job_id]
            if scope.types is not None and job.type not in scope.types:
                continue
            if scope.queues is not None and job.queue not in scope.queues:
                continue
            out.setdefault((job.queue, job.type), []).append((-job.priority, 1, rank, job_id))
        for entries in out.values():
            entries.sort()
        return out

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        await trio.lowlevel.checkpoint()
        lost = []
        for job_id, token in leases:
            held = self._leases.get(job_id)
            if held is None or held[0] != token:
                lost.append(job_id)
            else:
                self._leases[job_id] = (token, now + lease_seconds)
        return lost

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        await trio.lowlevel.checkpoint()
        out: list[Job | None] = []
        for item in items:
            held = self._leases.get(item.job_id)
            if self.check_lease_tokens and (held is None or held[0] != item.token):
                out.append(None)
                continue
            job = self._jobs[item.job_id]
            transitions.finish(job, item, now)
            self._place(job, now)
            self._ended(job, now)
            out.append(job.copy())
        return out

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        await trio.lowlevel.checkpoint()
        out: list[Job | None] = []
        for report in reports:
            held = self._leases.get(report.job_id)
            if held is None or held[0] != report.token:
                out.append(None)
                continue
            job = self._jobs[report.job_id]
            job.progress = dict(report.progress)
            job.touch(now)
            out.append(job.copy())
        return out

    # -- operators ------------------------------------------------------------------
    async def cancel(self, job_id: str, now: float) -> Job | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if transitions.cancel(job, now):
            self._place(job, now)
            self._ended(job, now)
        return job.copy()

    async def retry(self, job_id: str, now: float) -> Job | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        if job is None:
            return None
        if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
            raise StateConflict(
                job.copy(), f"job {job_id} is {job.status}, not failed or cancelled"
            )
        transitions.retry(job, now)
        self._place(job, now)
        return job.copy()

    async def delete(self, job_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        job = self._jobs.pop(job_id, None)
        if job is None:
            return False
        # a tombstone, as a purge leaves: a record of the job written late (another node's
        # recorder) must not bring it back through restore; a live job counts as cancelled
        at = self._finished_at.get(job_id, job.updated_at)
        if job.terminal:
            self._tombstones[job_id] = Tombstone(job_id, job.status, job.version, at)
        else:
            self._tombstones[job_id] = Tombstone(job_id, JobStatus.CANCELLED, job.version + 1, at)
        if not job.terminal:  # its dependents must not wait for it forever
            self._ended(job, job.updated_at, JobStatus.CANCELLED)
        self._pending_key.pop(job_id, None)
        self._delayed.pop(job_id, None)
        self._leases.pop(job_id, None)
        self._finished_at.pop(job_id, None)
        if job.idempotency_key is not None:
            self._idempotency.pop(job.idempotency_key, None)
        return True

    async def get(self, job_id: str) -> Job | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        return None if job is None else job.copy()

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        await trio.lowlevel.checkpoint()
        return {i: self._jobs[i].copy() for i in job_ids if i in self._jobs}

    async def depths(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        counts = {str(s): 0 for s in JobStatus}
        for job in self._jobs.values():
            counts[str(job.status)] += 1
        return counts

    async def pending_by_priority(self) -> dict[int, int]:
        await trio.lowlevel.checkpoint()
        counts = dict.fromkeys(range(MIN_PRIORITY, MAX_PRIORITY + 1), 0)
        for job in self._jobs.values():
            if job.status == JobStatus.PENDING:
                counts[job.priority] += 1
        return counts

    async def queues(self) -> list[QueueState]:
        await trio.lowlevel.checkpoint()
        out: dict[str, QueueState] = {}
        for job in self._jobs.values():
            if job.status == JobStatus.PENDING:
                state = out.setdefault(job.queue, QueueState(job.queue))
                state.pending[job.type] = state.pending.get(job.type, 0) + 1
        for name in self._paused | set(self._limits):
            state = out.setdefault(name, QueueState(name))
            state.paused = name in self._paused
            state.rate_limit = self._limits.get(name)
        return [out[name] for name in sorted(out)]

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        await trio.lowlevel.checkpoint()
        if epoch is not None:
            self._check_epoch(epoch)
        if paused is True:
            self._paused.add(name)
        elif paused is False:
            self._paused.discard(name)
        if clear_rate_limit:
            self._limits.pop(name, None)
            self._rate.pop(name, None)
        elif rate_limit is not None:
            self._limits[name] = rate_limit
            self._rate.pop(name, None)
        return QueueState(name, name in self._paused, self._limits.get(name))

    async def running(self) -> list[Lease]:
        await trio.lowlevel.checkpoint()
        return [
            Lease(self._jobs[i].copy(), token, expires)
            for i, (token, expires) in self._leases.items()
        ]

    # -- leader duties ------------------------------------------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        await trio.lowlevel.checkpoint()
        self._epoch += 1
        return self._epoch

    async def current_epoch(self) -> int:
        await trio.lowlevel.checkpoint()
        return self._epoch

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        until = now - grace if grace else now
        due = sorted((at, i) for i, at in self._delayed.items() if at <= until)[:limit]
        out = []
        for _, job_id in due:
            job = self._jobs[job_id]
            transitions.promote(job, now)
            self._place(job, now)
            out.append(job.copy())
        return out

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        expired = sorted((exp, i) for i, (_, exp) in self._leases.items() if exp < now)[:limit]
        out = []
        for _, job_id in expired:
            job = self._jobs[job_id]
            transitions.expire(job, now, poison_limit)
            self._place(job, now)
            self._ended(job, now)
            out.append(job.copy())
        return out

    def _due(self, older_than: float, limit: int) -> list[str]:
        # in the order the jobs finished (a job is filed again at each finish)
        return [i for i, at in self._finished_at.items() if at < older_than][:limit]

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        await trio.lowlevel.checkpoint()
        out: list[Job] = []
        size = 0
        skipped = set(skip)
        for job_id in self._due(older_than, limit + len(skipped)):
            if job_id in skipped:
                continue
            if len(out) >= limit or (max_bytes is not None and size >= max_bytes):
                break
            job = self._jobs[job_id].copy()
            if max_bytes is not None:
                size += len(job.dumps())
            out.append(job)
        return out

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        if only is None:
            old = self._due(older_than, limit)
        else:
            old = [
                i
                for i, version in dict(only).items()
                if i in self._finished_at and self._jobs[i].version == version
            ]
        for job_id in old:
            job = self._jobs.pop(job_id)
            at = self._finished_at.pop(job_id)
            self._tombstones[job_id] = Tombstone(job_id, job.status, job.version, at)
            if job.idempotency_key is not None:
                self._idempotency.pop(job.idempotency_key, None)
        if tombstones_before is not None:
            for job_id in [
                i for i, t in self._tombstones.items() if t.finished_at < tombstones_before
            ]:
                del self._tombstones[job_id]
        return len(old)

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        out: list[Job | Tombstone] = []
        for job in jobs:
            held = self._jobs.get(job.id)
            tomb = self._tombstones.get(job.id)
            if held is not None:
                out.append(held.copy())
            elif tomb is not None:
                out.append(tomb)
            else:
                key = job.idempotency_key
                if key is not None and self._idempotency.get(key) in self._jobs:
                    job = job.copy()
                    job.idempotency_key = None  # another job holds the key now
                out.append(self._insert(job, now).copy())
        return out

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        await trio.lowlevel.checkpoint()
        held = self._jobs.get(job.id)
        tomb = self._tombstones.get(job.id)
        if held is not None:
            return held.copy()
        if tomb is not None and tomb.status == JobStatus.COMPLETED:
            return tomb
        key = job.idempotency_key
        if key is not None and self._idempotency.get(key) in self._jobs:
            job = job.copy()
            job.idempotency_key = None  # another job holds the key now
        return self._insert(job, now).copy()

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        return self._take_tick(name, tick)

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        await trio.lowlevel.checkpoint()
        self._check_epoch(epoch)
        # one move: nothing awaits between the claim and the insert
        if not self._take_tick(name, tick):
            return None
        key = job.idempotency_key
        if key is not None and self._idempotency.get(key) in self._jobs:
            return self._jobs[self._idempotency[key]].copy()  # as enqueue answers
        return self._insert(job, now).copy()

    def _take_tick(self, name: str, tick: float) -> bool:
        ticks = self._ticks.setdefault(name, set())
        if tick in ticks or tick <= self._tick_floor.get(name, float("-inf")):
            return False
        ticks.add(tick)
        if len(ticks) > TICKS_KEPT:
            # forget the oldest, but refuse anything at or below it from now on
            oldest = min(ticks)
            ticks.discard(oldest)
            self._tick_floor[name] = oldest
        return True


class MemoryStore(Store):
    name = "memory"

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}
        self._nodes: dict[str, NodeRecord] = {}
        self._elections: list[dict[str, Any]] = []
        self._schedules: dict[str, dict[str, Any]] = {}

    def view(self) -> Mapping[str, Job]:
        """The test hook (not part of the Store interface): every record, by id, as a
        read-only view of the live objects (do not change them)."""
        return MappingProxyType(self._jobs)

    async def put_many(self, jobs: Sequence[Job]) -> None:
        await trio.lowlevel.checkpoint()
        for job in jobs:
            old = self._jobs.get(job.id)
            if old is None or job.version >= old.version:
                self._jobs[job.id] = job.copy()

    async def get(self, job_id: str) -> Job | None:
        await trio.lowlevel.checkpoint()
        job = self._jobs.get(job_id)
        return None if job is None else job.copy()

    async def query(self, query: JobQuery) -> Page:
        await trio.lowlevel.checkpoint()
        out: list[Job] = []
        for job_id in sorted(self._jobs, reverse=True):
            if query.cursor is not None and job_id >= query.cursor:
                continue
            job = self._jobs[job_id]
            if query.statuses is not None and job.status not in query.statuses:
                continue
            if query.type is not None and job.type != query.type:
                continue
            if query.owner is not None and job.owner != query.owner:
                continue
            if query.queue is not None and job.queue != query.queue:
                continue
            if query.created_after is not None and job.created_at < query.created_after:
                continue
            if query.created_before is not None and job.created_at >= query.created_before:
                continue
            out.append(job.copy())
            if len(out) > query.limit:
                break
        more = len(out) > query.limit
        out = out[: query.limit]
        return Page(out, out[-1].id if more and out else None)

    async def delete(self, job_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._jobs.pop(job_id, None) is not None

    async def count_by_status(self) -> dict[str, int]:
        await trio.lowlevel.checkpoint()
        counts = {str(s): 0 for s in JobStatus}
        for job in self._jobs.values():
            counts[str(job.status)] += 1
        return counts

    async def put_node(self, node: NodeRecord) -> None:
        await trio.lowlevel.checkpoint()
        self._nodes[node.node_id] = node

    async def list_nodes(self) -> list[NodeRecord]:
        await trio.lowlevel.checkpoint()
        return sorted(self._nodes.values(), key=lambda n: n.node_id)

    async def delete_node(self, node_id: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._nodes.pop(node_id, None) is not None

    async def add_election(self, record: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        self._elections.append(dict(record))

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        return [dict(r) for r in reversed(self._elections[-limit:])]

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        self._schedules[schedule["name"]] = dict(schedule)

    async def list_schedules(self) -> list[dict[str, Any]]:
        await trio.lowlevel.checkpoint()
        return [dict(self._schedules[k]) for k in sorted(self._schedules)]

    async def delete_schedule(self, name: str) -> bool:
        await trio.lowlevel.checkpoint()
        return self._schedules.pop(name, None) is not None
