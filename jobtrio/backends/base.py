"""The two storage contracts: the Broker (the queue) and the Store (the record).

The Broker is the source of truth for a live job: it holds each job whole,
and every move (enqueue, claim, finish, cancel, promote, requeue) is atomic
in it and returns the job as it now is. The Store is the durable, queryable
history that the API lists from; the node's Recorder copies each snapshot the
Broker returns into it, in batches. A Store upsert keeps the highest
``version`` so that batches racing from several nodes can never roll a record
back.

Every method takes ``now`` (Unix seconds) from the caller instead of reading a
clock: the simulator runs the same backends on a virtual clock, and a Redis
Lua script gets one time for the whole atomic move.

The hot path is batched by design: ``claim`` takes n jobs, ``finish`` and
``renew`` take many items, because one round trip to Redis costs about
250 us from trio while a Lua script moving 100 jobs costs little more.

``tests/test_backend_contract.py`` pins these semantics for every
implementation.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import trio

from ..jobs import Job, JobStatus


class BackendError(Exception):
    """Base of the errors a backend raises on purpose."""


class BackendUnavailable(BackendError):
    """The service behind a backend cannot be reached; callers retry with backoff."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} is unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class RecordRefused(BackendError):
    """The Store refuses a record for good (bigger than it can hold: MongoDB's 16 MiB
    document): a retry cannot help, so the writer leaves that record out instead of
    retrying the batch forever, and says so."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} refused the record: {reason}")
        self.backend = backend
        self.reason = reason


class FencedError(BackendError):
    """A leader-only write carried an epoch older than the newest one: refused."""

    def __init__(self, epoch: int, current: int) -> None:
        super().__init__(f"epoch {epoch} is fenced off by epoch {current}")
        self.epoch = epoch
        self.current = current


class StateConflict(BackendError):
    """The job exists but is in a state that does not allow the move."""

    def __init__(self, job: Job, message: str) -> None:
        super().__init__(message)
        self.job = job


@dataclass(slots=True)
class Lease:
    """A claimed job and the proof of the claim.

    Only the holder of ``token`` can finish or renew the attempt; a newer
    claim of the same job gets a new token, so a zombie cannot overwrite it.
    """

    job: Job
    token: str
    expires_at: float


FinishOutcome = Literal["completed", "failed", "timeout", "released"]


@dataclass(slots=True)
class Finish:
    """How an attempt ended, as the worker reports it.

    ``failed`` and ``timeout`` with ``retry_at`` set move the job to
    ``retrying`` (retry_count + 1) until that time; without ``retry_at`` the
    job ends ``failed``. ``released`` hands an attempt back unrun (graceful
    shutdown): the job waits again and no retry is counted.
    """

    job_id: str
    token: str
    outcome: FinishOutcome
    worker_id: str | None = None
    result: Any = None
    error: str | None = None
    retry_at: float | None = None


@dataclass(slots=True, frozen=True)
class ProgressReport:
    """A running attempt's latest progress (``jobs.make_progress``), with its lease token."""

    job_id: str
    token: str
    progress: dict[str, Any]


@dataclass(slots=True, frozen=True)
class ClaimScope:
    """What one claim may take: the types its node can run, from the queues it serves.

    ``types`` ``None``: any type. ``queues`` ``None``: every queue, merged into
    one priority order (as if there were one queue); else the queues served in
    that order, each in its own strict priority order (the batch fills from the
    first, then the next). ``limits``: at most this many jobs from a queue in
    this claim (the node's ``QUEUE_CONCURRENCY`` left). A job of a type outside
    ``types`` is never claimed: it waits for a node that can run it.
    """

    types: frozenset[str] | None = None
    queues: tuple[str, ...] | None = None
    limits: tuple[tuple[str, int], ...] = ()


@dataclass(slots=True, frozen=True)
class RateLimit:
    """At most ``jobs`` claims from a queue per ``per`` seconds, cluster-wide.

    Fixed windows on the Broker's clock (window = floor(time / per)), counted
    in the Broker by the claims themselves, so every node shares one budget
    (BullMQ's limiter).
    """

    jobs: int
    per: float


@dataclass(slots=True)
class QueueState:
    """One queue as the Broker holds it: paused, its limit, its pending jobs per type."""

    name: str
    paused: bool = False
    rate_limit: RateLimit | None = None
    pending: dict[str, int] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return sum(self.pending.values())


@dataclass(slots=True, frozen=True)
class Tombstone:
    """What the Broker remembers of a job it purged: that it ended, how, and when.

    ``restore`` answers with it instead of bringing a finished job back: a
    Store record that never saw the job's last snapshot would otherwise look
    live and be re-enqueued, completing the job a second time. Kept for
    ``TOMBSTONE_SECONDS`` after the purge.
    """

    job_id: str
    status: JobStatus
    version: int
    finished_at: float


#: How long a purged job's tombstone is kept: the longest a Store record may lag
#: behind the Broker (a Store outage, a recorder that died in its linger) and still
#: be repaired instead of resurrected. README states it as a limit.
TOMBSTONE_SECONDS = 7 * 86400.0


@dataclass(slots=True, frozen=True)
class JobQuery:
    statuses: frozenset[JobStatus] | None = None
    type: str | None = None
    created_after: float | None = None
    created_before: float | None = None
    limit: int = 50
    #: Id of the last job of the previous page; the next page holds older jobs.
    cursor: str | None = None
    #: Only the jobs waiting (or once waiting) in this named queue; ``None``: every queue.
    queue: str | None = None
    #: Only the jobs of this owner (a ``user``'s own list); ``None``: everybody's. Jobs
    #: without an owner never match a name.
    owner: str | None = None


@dataclass(slots=True)
class Page:
    jobs: list[Job]
    next_cursor: str | None


@dataclass(slots=True)
class NodeRecord:
    node_id: str
    address: str
    state: str
    worker_count: int
    started_at: float
    last_seen: float
    api_url: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class Broker(abc.ABC):
    """The queue. Implementations: memory, sqlite, redis."""

    name: str = "broker"

    def writes_records_of(self, store: Store) -> bool:
        """True when this Broker's own moves already write ``store``'s job records.

        Then every snapshot it hands back is recorded already, and the node's
        recorder copies nothing (a Redis Broker keeping a RedisStore's records
        on the same prefix; see ``RedisBroker``).
        """
        return False

    # -- producers --------------------------------------------------------
    @abc.abstractmethod
    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        """Add all jobs atomically (all or none).

        A job whose ``idempotency_key`` is already known is not added again:
        the job that holds the key is returned in its place. Jobs whose
        ``scheduled_at`` is later than ``now`` wait as ``scheduled``.

        A workflow (the first job a workflow's root, ``workflow`` set) whose
        root's key is already held files nothing: the holder comes back alone,
        ``[holder]``, so a retried workflow is never a second set of jobs.
        """

    # -- workers ------------------------------------------------------------
    @abc.abstractmethod
    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        """Take up to ``n`` pending jobs within ``scope`` (default: any), highest priority
        first, FIFO within one, skipping paused queues and those out of rate budget."""

    async def enqueue_and_claim(
        self,
        jobs: Sequence[Job],
        now: float,
        node_id: str,
        n: int,
        lease_seconds: float,
        scope: ClaimScope | None = None,
    ) -> tuple[list[Job], list[Lease] | None]:
        """``enqueue(jobs, now)`` and then ``claim(node_id, n, lease_seconds, now, scope)``:
        the stored jobs and the leases. The claim is the same claim made just after the
        enqueue (it takes what the queue order gives it, the new jobs or others before
        them), so a node that claims with its own submissions is served no sooner than
        any other claimant.

        Leases ``None``: the enqueue was answered and the claim was not (it may have
        leased jobs all the same; the caller treats it as any claim without an answer).
        An error raised means the enqueue's answer did not come, as for ``enqueue``.

        Here two moves; a Broker may make them one (Redis: one script, one round trip).
        Once the enqueue is answered, the claim is shielded from cancellation (bounded by
        the Broker's own timeouts, as its calls are never abandoned): a node stopping
        during it still hands its callers their stored jobs and the dispatcher its
        leases, where a Cancelled would have failed submissions that were filed.
        """
        stored = await self.enqueue(jobs, now)
        with trio.CancelScope(shield=True):
            try:
                leases = await self.claim(node_id, n, lease_seconds, now, scope)
            except BackendUnavailable:
                return stored, None
        return stored, leases

    @abc.abstractmethod
    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        """Extend the given (job_id, token) leases; return the ids whose lease is gone."""

    @abc.abstractmethod
    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        """Record attempt outcomes; an item with a stale token yields ``None``, changing nothing."""

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        """Set each running job's ``progress``, in one move for the batch.

        Accepted only with the current lease token, like a finish, so a
        zombie's late report never lands on a newer attempt; a refused report
        answers None. The node coalesces reports before calling this (see
        ``actors/dispatch/progress.py``): one call per interval, not one per report.
        """
        raise NotImplementedError(f"the {self.name} Broker does not keep progress")

    # -- operators ------------------------------------------------------------
    @abc.abstractmethod
    async def cancel(self, job_id: str, now: float) -> Job | None:
        """Cancel a waiting or running job (a running one loses its lease).

        Returns the job (unchanged if it was already terminal), ``None`` if unknown.
        """

    @abc.abstractmethod
    async def retry(self, job_id: str, now: float) -> Job | None:
        """Run a failed or cancelled job again from a fresh retry count.

        ``None`` if the Broker does not hold the job; ``StateConflict`` if it
        is not failed or cancelled.
        """

    @abc.abstractmethod
    async def delete(self, job_id: str) -> bool:
        """Remove a job entirely (it is cancelled first if live)."""

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]: ...

    @abc.abstractmethod
    async def depths(self) -> dict[str, int]:
        """Jobs held per status (every status key present)."""

    @abc.abstractmethod
    async def pending_by_priority(self) -> dict[int, int]:
        """Pending jobs (due, waiting for a worker) per priority, every priority present.

        What an operator watches when high-priority work starves the rest: the
        ``queue_depth_by_priority_gauge`` metric and the jobs dashboard read it.
        """

    @abc.abstractmethod
    async def queues(self) -> list[QueueState]:
        """Every queue with pending jobs, paused or rate-limited, by name."""

    @abc.abstractmethod
    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
        epoch: int | None = None,
    ) -> QueueState:
        """Pause or resume a queue and set or clear its rate limit, in one Broker move.

        Kept in the Broker, so it holds cluster-wide and across any node's
        failover. ``None`` leaves a setting as it is. ``epoch`` given: a leader
        duty's move, refused with ``FencedError`` when a newer epoch exists;
        ``None``: an operator's (admin) move. Values are absolute, never toggles,
        so a repeated request changes nothing. Setting a limit starts a fresh
        window.
        """

    @abc.abstractmethod
    async def running(self) -> list[Lease]:
        """Every running job with its lease (for the leader's and the API's view)."""

    # -- leader duties, fenced by epoch ----------------------------------------
    @abc.abstractmethod
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        """Atomically take the next fencing epoch (strictly greater than any before)."""

    @abc.abstractmethod
    async def current_epoch(self) -> int: ...

    @abc.abstractmethod
    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        """Move scheduled and retrying jobs whose time has come to pending, the first
        ``limit`` in due order; with ``grace``, only those due for at least that many
        seconds (a claim takes due jobs itself: the leader moves what no claim took)."""

    async def promote_due_count(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> int:
        """``promote_due``, answering only how many jobs it moved.

        For a leader that has no use for the jobs (its Broker writes the Store's
        records itself, so nothing is recorded): a Broker whose reply of the moved
        jobs costs work (Redis: reading each body, sending it, parsing it) answers
        with the count alone. Same move, same fencing, same limit.
        """
        return len(await self.promote_due(now, epoch, limit, grace))

    @abc.abstractmethod
    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        """Return jobs whose lease expired to pending; fail those past ``poison_limit``."""

    @abc.abstractmethod
    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        """Up to ``limit`` terminal jobs finished before ``older_than``, in the order they
        finished, as the Broker holds them (their final state): what a purge drops next.
        With ``max_bytes``, no job after the one whose document (its JSON text) brings
        the page's total to ``max_bytes`` or more: at least one job, never a page of a
        thousand 1 MiB results read in one move. The jobs in ``skip`` are neither read
        nor counted: those whose record the Store refused, which the purge keeps (else
        one of them, the oldest due and over ``max_bytes`` alone, was the whole page at
        every step and no job after it was ever purged).

        The leader writes them to a Store the Broker does not keep the records of
        before it purges exactly them (``purge_finished(only=...)``). Not fenced: a read.
        """

    @abc.abstractmethod
    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        """Drop terminal jobs finished before ``older_than`` (their record stays in the Store).

        Each leaves a ``Tombstone``; tombstones of jobs that finished before
        ``tombstones_before`` are forgotten (none when it is ``None``).

        ``only`` given: drop just these ``(job id, version)`` jobs, each only if the
        Broker still holds it finished at that version (a job retried since, or
        deleted, stays as it is), whatever ``older_than`` and ``limit`` say. The
        leader passes the jobs it read with ``finished_due`` and wrote to the Store,
        so no job leaves the Broker before its final snapshot is recorded. Returns
        how many were dropped.
        """

    @abc.abstractmethod
    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        """Put back jobs the Broker lost, fenced by ``epoch``: insert-if-absent.

        Per job: the job as the Broker holds it when it holds the id (never
        overwritten), its ``Tombstone`` when the Broker purged it (never brought
        back), else the job as inserted (waiting). Reconciliation's only write.
        """

    @abc.abstractmethod
    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        """Put back a purged job an operator retries (``job`` already reset): insert-if-absent.

        The job as the Broker holds it when it holds the id (a concurrent retry
        got there first: never overwritten); the ``Tombstone`` when the Broker
        purged the job after it *completed* (the Store's failed or cancelled
        record is behind: the job never runs again); else the job as inserted,
        waiting. Not fenced: any node's API may retry a job, and insert-if-absent
        needs no leader.
        """

    @abc.abstractmethod
    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        """True exactly once per (name, tick): periodic jobs fire once cluster-wide."""

    @abc.abstractmethod
    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        """Claim (name, tick) and enqueue ``job`` in one move, fenced by ``epoch``.

        The job as enqueued when this call fired the tick; ``None`` when the
        tick was fired before (then its job exists, or existed). A call whose
        reply was lost can be repeated: the tick fires exactly once.
        """

    # -- life cycle ---------------------------------------------------------------
    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` when the service cannot be reached."""

    async def close(self) -> None:
        """Release connections."""


class Store(abc.ABC):
    """The durable record. Implementations: memory, sqlite, redis, mongodb."""

    name: str = "store"

    @abc.abstractmethod
    async def put_many(self, jobs: Sequence[Job]) -> None:
        """Upsert snapshots; a snapshot older (lower ``version``) than the stored one is ignored.

        ``RecordRefused`` when a record cannot be stored at all (the whole batch
        may then be unwritten); ``BackendUnavailable`` when the Store cannot be reached.
        """

    @abc.abstractmethod
    async def get(self, job_id: str) -> Job | None: ...

    @abc.abstractmethod
    async def query(self, query: JobQuery) -> Page:
        """Newest first (ids are time-sortable), filtered, one page at a time."""

    @abc.abstractmethod
    async def delete(self, job_id: str) -> bool: ...

    @abc.abstractmethod
    async def count_by_status(self) -> dict[str, int]: ...

    @abc.abstractmethod
    async def put_node(self, node: NodeRecord) -> None: ...

    @abc.abstractmethod
    async def list_nodes(self) -> list[NodeRecord]: ...

    @abc.abstractmethod
    async def delete_node(self, node_id: str) -> bool: ...

    @abc.abstractmethod
    async def add_election(self, record: dict[str, Any]) -> None:
        """Append a leadership change (leader, epoch/term, algorithm, at)."""

    @abc.abstractmethod
    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""

    @abc.abstractmethod
    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        """Create or replace the periodic-job schedule named ``schedule["name"]``."""

    @abc.abstractmethod
    async def list_schedules(self) -> list[dict[str, Any]]:
        """Every stored schedule, by name."""

    @abc.abstractmethod
    async def delete_schedule(self, name: str) -> bool: ...

    async def ping(self) -> None:
        """Raise ``BackendUnavailable`` when the service cannot be reached."""

    async def close(self) -> None:
        """Release connections."""
