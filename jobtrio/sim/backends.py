"""The shared Broker and Store standing in for Redis, and each node's connection to them.

One :class:`ObservedBroker` (the real ``MemoryBroker``, subclassed only to
watch, and to take time from its own clock as Redis's scripts do) and one
``MemoryStore`` live for the whole run; a crash never touches them, exactly
as a node's death leaves Redis alone. The observer records every move of a
job in the trace and judges, atomically with the move (no checkpoint lies
between the parent's atomic section and the check), the invariants that
belong to the Broker:

* a leader-only write must carry the newest fencing epoch (at most one
  leader acts at a time, whatever the election believes), and only the node
  that took an epoch writes with it (never two leaders in one epoch);
* a job is completed at most once, so never under two lease tokens, and
  nothing finishes a job that already ended;
* a lease is reaped only once the Broker's own clock has passed its expiry
  (the lease was neither claimed nor renewed within ``lease_seconds``), so
  no skew between the nodes' clocks can take a healthy lease away;
* a lease made by a lent claim whose answer was lost is handed back (or
  taken) by its node, not left to expire, unless a crash, a freeze, a cut or
  an unanswered look-up of its leases kept the node from it
  (``lent_claim_handed_back``, judged when such a lease is reaped).

It also keeps what the end-of-run checker needs and the Broker forgets: the
jobs purged (and how they ended), every job id filed under each idempotency
key, and the periodic ticks claimed.

**The Broker's clock.** The Redis Broker decides every lease and promotion
on Redis's ``TIME`` (``server_clock=True``); the ``now`` a node passes only
stamps the job. The observer does the same with the world's clock, which the
nodes' skewed clocks differ from; a claim's stamps (``started_at``, the
attempt's start, ``updated_at``) are the claiming node's ``now``, as Redis's.

Each node reaches them through a :class:`Connection`: a little latency each
way, and switches the nemesis flips: cut the node off from both (Redis
unreachable: ``BackendUnavailable``), from the Store only, slow its Store
writes (records lag), hold its requests (a frozen process: they arrive late,
all at once) or lose replies (``BackendFaults.reply_loss``: the move is
applied, the caller gets ``BackendUnavailable``, the indeterminate outcome
real clients get). When the node crashes its connection closes, so a client
request in flight through it fails too.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
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

#: The node whose request the Broker is serving (set by its ``BrokerLink``, read by the
#: observer to tell which node wrote with an epoch).
_caller: ContextVar[str | None] = ContextVar("sim_broker_caller", default=None)


@dataclass(slots=True)
class LentClaim:
    """A lent claim on its way through a node's link: the leases the Broker made for it,
    gathered in the claim's own move (the link cannot see them when the reply is lost)."""

    node_id: str
    connection: Connection
    leases: list[tuple[str, str]] = field(default_factory=list)


#: The lent claim the current request makes (set by ``BrokerLink.enqueue_and_claim``).
_lent_claim: ContextVar[LentClaim | None] = ContextVar("sim_lent_claim", default=None)


@dataclass(frozen=True, slots=True)
class UnansweredLease:
    """A lease a lent claim made whose answer never reached the node."""

    job_id: str
    node_id: str
    connection: Connection
    #: Simulated time (``trio.current_time``) of the claim's answer lost, and of the
    #: lease's expiry if nobody renews it.
    at: float
    expires: float


class ObservedBroker(MemoryBroker):
    """``MemoryBroker`` with every move traced and the Broker's invariants checked."""

    def __init__(
        self, history: History, tokens: Callable[[], str], clock: Callable[[], float]
    ) -> None:
        super().__init__(tokens=tokens)
        self._history = history
        self._trace = history.trace
        #: The Broker's own clock (Redis's TIME): the world's, whatever the nodes' say.
        self._world_clock = clock
        #: Decide leases and promotions on the Broker's clock (off: the caller's ``now``,
        #: the ``two-clocks`` plant).
        self.broker_clock = True
        #: The fenced insert-if-absent restore (off: restore is a plain enqueue, the
        #: ``resurrect`` plant).
        self.fenced_restore = True
        #: Purge only the jobs the leader wrote to the Store (off: ``finished_due`` answers
        #: nothing and every purge drops jobs by age, recorded or not, as before the leader
        #: recorded them first; part of the ``resurrect`` plant).
        self.record_before_purge = True
        #: The status each job had after its last move (so the next move sees its "before").
        self.status: dict[str, JobStatus] = {}
        #: Jobs purged, with the status they had (the Broker keeps only a tombstone).
        self.purged: dict[str, JobStatus] = {}
        #: Idempotency key -> every job id ever filed under it.
        self.keys: dict[str, list[str]] = {}
        #: (schedule, tick) claimed by the Broker.
        self.ticks: set[tuple[str, float]] = set()
        #: (schedule, tick) -> the idempotency key its job was sent with.
        self.tick_keys: dict[tuple[str, float], str] = {}
        #: Job id -> (lease token, when the lease expires on the Broker's clock).
        self._deadlines: dict[str, tuple[str, float]] = {}
        self._acting: set[int] = set()
        #: Seconds ahead of the decision clock a claim takes due jobs (0; 2 s is the
        #: ``due-early`` plant: scheduled and retrying jobs are claimed before they are due).
        self.claim_early = 0.0
        #: Jobs enqueued with dependencies, and those of them claimed at least once.
        self.dependents: set[str] = set()
        self.dependents_ran: set[str] = set()
        #: Lease token -> the lease a lent claim made whose answer was lost, until its
        #: token is seen again (handed back, finished, renewed) or the lease is reaped.
        self.unanswered: dict[str, UnansweredLease] = {}

    def fault(self, kind: str, *fields: object) -> None:
        """A fault struck one of the Broker's moves (the link lost its reply)."""
        self._history.fault(kind)
        self._trace.record(f"fault.{kind}", *fields)

    def _decide_at(self, now: float) -> float:
        return self._world_clock() if self.broker_clock else now

    def _moved(self, what: str, job: Job, *extra: object) -> None:
        if job.id not in self.status and job.idempotency_key is not None:
            self.keys.setdefault(job.idempotency_key, []).append(job.id)
        self.status[job.id] = job.status
        self._trace.record("job", what, job.id, job.status, *extra)

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        out = await super().enqueue(jobs, now)
        for job in out:
            if job.id not in self.status or job.id in self.purged:
                self.purged.pop(job.id, None)
                self._moved("enqueued", job, job.idempotency_key, job.type)
            if job.depends_on:
                self.dependents.add(job.id)
        return out

    async def claim(
        self,
        node_id: str,
        n: int,
        lease_seconds: float,
        now: float,
        scope: ClaimScope | None = None,
    ) -> list[Lease]:
        at = self._decide_at(now)
        leases = await super().claim(node_id, n, lease_seconds, at + self.claim_early, scope)
        world = self._world_clock()
        lent = _lent_claim.get()
        for lease in leases:
            self._check_due(lease.job, at)
            self._stamp_claim(lease.job, now)
            self._deadlines[lease.job.id] = (lease.token, world + lease_seconds)
            self._moved("claimed", lease.job, node_id, lease.token)
            lease.expires_at = now + lease_seconds  # the caller's estimate, as Redis answers
            if lease.job.depends_on:
                self._check_dependent(lease.job)
            if lent is not None and lent.node_id == node_id:
                lent.leases.append((lease.job.id, lease.token))
        return leases

    def _stamp_claim(self, job: Job, now: float) -> None:
        """Stamp a claimed job with the claimant's clock, as Redis's claim does: its
        ``started_at``, its attempt's start and ``updated_at`` are the caller's ``now``
        (only the decisions are taken on ``TIME``). A node's hand-back of an unanswered
        claim compares ``started_at`` with its own start, on its own clock: stamped with
        the Broker's, a node ahead would leave its own leases to expire, and a node
        behind would take a previous incarnation's leases for its own."""
        for stamped in (job, self._jobs[job.id]):  # the lease's copy, and the held job
            stamped.started_at = now
            stamped.attempts[-1].started_at = now
            stamped.updated_at = now  # the claim's own touch, restamped (not a second one)

    def lent_claim_unanswered(self, claim: LentClaim, lease_seconds: float) -> None:
        """Hold the leases of a lent claim whose answer was lost until they are handed
        back or taken, to judge ``lent_claim_handed_back`` if instead they expire."""
        at = trio.current_time()
        for job_id, token in claim.leases:
            if self._deadlines.get(job_id, ("", 0.0))[0] != token:
                continue  # gone already
            self.unanswered[token] = UnansweredLease(
                job_id, claim.node_id, claim.connection, at, at + lease_seconds
            )

    def _check_handed_back(self, job_id: str, token: str) -> None:
        """A lease a lent claim made without an answer is handed back with its token
        (released, uncounted) by its node once it knows the answer lost, or taken by its
        dispatcher; it is not left to expire, unless something kept the node from it
        while the lease ran (``Connection.disturbed_between``)."""
        lease = self.unanswered.pop(token, None)
        if lease is None:
            return
        if lease.connection.disturbed_between(lease.at, lease.expires):
            self._trace.record("lent-claim.excused", job_id, token, lease.node_id)
            return
        now = trio.current_time()
        self._history.violate(
            "lent_claim_handed_back",
            now,
            f"job {job_id}'s lease {token}, made by a lent claim of {lease.node_id} whose "
            f"answer was lost at {lease.at:.3f}s, was neither handed back nor taken: it "
            f"expired and was reaped {now - lease.at:.3f}s later, though {lease.node_id} "
            "stayed up, unfrozen and in reach of the Broker meanwhile, and its look-ups of "
            "the leases it holds were answered",
        )

    def changed(self, job: Job, refile: bool) -> None:
        # a dependent released (or failed) inside its parent's move: traced like a move
        super().changed(job, refile)
        if refile:
            self._moved("released", job)

    def _check_due(self, job: Job, at: float) -> None:
        """A claim takes a scheduled or retrying job itself only once it is due on the
        decision clock (its ``scheduled_at``, the retry time for a retry). A job filed as
        pending is not judged here: whether it was due when filed was the submitting
        node's call, on its own clock (README: under skew ``scheduled_at`` shifts)."""
        before = self.status.get(job.id)
        due = job.scheduled_at
        if before in (JobStatus.SCHEDULED, JobStatus.RETRYING) and due is not None and due > at:
            self._history.violate(
                "not_before_due",
                trio.current_time(),
                f"job {job.id} ({before}) was claimed at {at:.3f}, due at {due:.3f}",
            )

    def _check_dependent(self, job: Job) -> None:
        """A dependent is claimed only once every job it depends on completed (or ended,
        under ``on_dependency_failure: run``), and never after it completed itself: judged
        in the claim's own atomic section, against the parents as they stand."""
        self.dependents_ran.add(job.id)
        held = self.view()
        for parent_id in job.depends_on:
            parent = held.get(parent_id)
            status = parent.status if parent is not None else self.purged.get(parent_id)
            ended = status is not None and status.terminal
            if status != JobStatus.COMPLETED and not (job.on_dependency_failure == "run" and ended):
                self._history.violate(
                    "dependent_after_parents",
                    trio.current_time(),
                    f"job {job.id} was claimed while its dependency {parent_id} is {status}",
                )
        if self._history.completions.get(job.id):
            self._history.violate(
                "dependent_runs_once",
                trio.current_time(),
                f"dependent job {job.id} was claimed again after it completed",
            )

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        lost = await super().renew(leases, lease_seconds, self._decide_at(now))
        world = self._world_clock()
        gone = set(lost)
        for job_id, token in leases:
            if job_id not in gone:
                self._deadlines[job_id] = (token, world + lease_seconds)
                self.unanswered.pop(token, None)  # taken: the node holds it after all
        return lost

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        out = await super().finish(items, now)
        for item, job in zip(items, out, strict=True):
            if job is not None:
                self.unanswered.pop(item.token, None)  # handed back (or finished)
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
        writer = _caller.get()
        if writer is not None and writer != holder:
            self._history.violate(
                "one_leader_per_epoch",
                trio.current_time(),
                f"{writer} wrote ({what}) with fencing epoch {epoch}, which {holder} took",
            )
        if epoch < self.epoch:
            newest = self._history.epochs.get(self.epoch, "?")
            self._history.violate(
                "one_acting_leader",
                trio.current_time(),
                f"{holder} wrote ({what}) with fencing epoch {epoch} after {newest} "
                f"took epoch {self.epoch}: two leaders acted",
            )
        if epoch not in self._acting:
            self._acting.add(epoch)
            self._trace.record("epoch.acts", epoch, holder)

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        out = await super().promote_due(self._decide_at(now), epoch, limit, grace)
        self._leader_write("promote", epoch)
        for job in out:
            self._moved("promoted", job, epoch)
        return out

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        out = await super().requeue_expired(self._decide_at(now), epoch, poison_limit, limit)
        self._leader_write("requeue", epoch)
        world = self._world_clock()
        for job in out:
            token, deadline = self._deadlines.pop(job.id, ("?", -1.0))
            self._check_handed_back(job.id, token)
            if world <= deadline:
                self._history.violate(
                    "lease_expires_on_broker_clock",
                    trio.current_time(),
                    f"job {job.id}'s lease {token} was reaped {deadline - world:.3f}s before "
                    "it expired on the Broker's clock (it was renewed in time)",
                )
            self._moved("expired", job, epoch, job.lease_expirations)
        return out

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        if not self.record_before_purge:
            only = None
        n = await super().purge_finished(older_than, epoch, limit, tombstones_before, only)
        self._leader_write("purge", epoch)
        if n:
            held = self.view()
            for job_id, status in self.status.items():
                if job_id not in held and job_id not in self.purged:
                    self.purged[job_id] = status
                    self._trace.record("job", "purged", job_id, status, epoch)
        return n

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        if not self.record_before_purge:
            await trio.lowlevel.checkpoint()
            return []
        return await super().finished_due(older_than, limit, max_bytes, skip)

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        if not self.fenced_restore:
            # the planted bug: re-enqueue, unfenced, blind to tombstones
            self._trace.record("plant", "restore as enqueue", *(j.id for j in jobs))
            enqueued: list[Job | Tombstone] = []
            for job in await self.enqueue(jobs, now):
                enqueued.append(job)
                self._moved("restored", job, epoch)
            return enqueued
        out = await super().restore(jobs, now, epoch)
        self._leader_write("restore", epoch)
        for job in out:
            if isinstance(job, Job) and job.id in self.purged:
                self.purged.pop(job.id)
            if isinstance(job, Job):
                self._moved("restored", job, epoch)
        return out

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        out = await super().fire_tick(name, tick, job, epoch, now)
        self._leader_write("tick", epoch)
        if out is None:
            self._refused_tick(name, tick)
        else:
            self.ticks.add((name, tick))
            self._trace.record("tick", "fired", name, tick, out.id, epoch)
            if out.id not in self.status:
                self._moved("enqueued", out, out.idempotency_key, out.type)
        return out

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        ok = await super().claim_tick(name, tick, epoch)
        self._leader_write("tick", epoch)
        if ok:
            self.ticks.add((name, tick))
            self._trace.record("tick", "claimed", name, tick, epoch)
        else:
            self._refused_tick(name, tick)
        return ok

    def _refused_tick(self, name: str, tick: float) -> None:
        """A tick refused as fired before must have its job already: the leader asking
        again takes the refusal as done and never fires it (the claim and the job are one
        move, so a claimed tick without a job is lost for good)."""
        self._trace.record("tick", "refused", name, tick)
        key = self.tick_keys.get((name, tick))
        if key is not None and not self.keys.get(key):
            self._history.violate(
                "tick_fires_once",
                trio.current_time(),
                f"schedule {name} tick {tick:.3f} was refused as fired, yet no job holds it",
            )

    # -- views for the checker --------------------------------------------------------------
    def snapshot(self) -> dict[str, Job]:
        return {job_id: job.copy() for job_id, job in self.view().items()}


@dataclass(slots=True)
class BackendFaults:
    """The knobs on every node's link to the backends at once."""

    #: Chance that the reply to any Broker or Store call is lost (the call applied).
    reply_loss: float = 0.0
    #: Chance that the reply to a lent claim is lost, on top of ``reply_loss`` (the
    #: ``lent-claim-loss`` fault), drawn from ``lent_rng``.
    lent_claim_loss: float = 0.0
    lent_rng: random.Random | None = None

    def lent_reply_lost(self) -> bool:
        return (
            self.lent_claim_loss > 0
            and self.lent_rng is not None
            and self.lent_rng.random() < self.lent_claim_loss
        )


class Connection:
    """One node incarnation's link to the backends: latency, outages, death."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        faults: BackendFaults | None = None,
        network: trio.Nursery | None = None,
    ) -> None:
        self.node_id = node_id
        self._rng = rng
        self._faults = faults or BackendFaults()
        #: Where requests sent while frozen travel: they land even if the caller gave up.
        self._network = network
        #: Both backends unreachable.
        self.cut = False
        #: The Store alone unreachable.
        self.store_cut = False
        #: Seconds each Store write takes to land (records lag).
        self.store_lag = 0.0
        #: Set while the node is frozen: its requests wait (in the network) until it thaws.
        self.frozen: trio.Event | None = None
        #: When the node crashed (``close``), on ``trio.current_time``.
        self.closed_at: float | None = None
        #: When (``trio.current_time``) something kept this node from the Broker: a call
        #: refused for a cut, or held by a freeze (at the hold and at the landing); in order.
        self._disturbed: list[float] = []
        #: (when, answered) of each look-up of the leases held (``Broker.running``), the
        #: first step of a hand-back; in order.
        self._lookups: list[tuple[float, bool]] = []

    def note_lookup(self, answered: bool) -> None:
        self._lookups.append((trio.current_time(), answered))

    def disturbed_between(self, start: float, end: float) -> bool:
        """Whether something kept the node from handing back, from ``start`` (the claim's
        answer lost) to ``end`` (its leases' expiry): it crashed, froze, was cut off
        from the Broker, or its look-ups of the leases it holds went unanswered before
        one was answered (an answered one shows the hand-back its leases)."""
        if self.closed_at is not None and self.closed_at <= end:
            return True
        i = bisect_left(self._disturbed, start)
        if i < len(self._disturbed) and self._disturbed[i] <= end:
            return True
        j = bisect_left(self._lookups, (start, False))
        if j < len(self._lookups):  # the hand-back's first look-up
            at, answered = self._lookups[j]
            return at <= end and not answered
        return False

    @property
    def closed(self) -> bool:
        return self.closed_at is not None

    def close(self) -> None:
        """The node crashed: every call through this connection fails from now on."""
        if self.closed_at is None:
            self.closed_at = trio.current_time()

    def _check(self, backend: str) -> None:
        if self.closed:
            raise BackendUnavailable(backend, f"connection of {self.node_id} closed")
        if self.cut:
            if backend == "broker":
                self._disturbed.append(trio.current_time())
            raise BackendUnavailable(backend, f"{self.node_id} is cut off from it")
        if self.store_cut and backend == "store":
            raise BackendUnavailable(backend, f"{self.node_id} is cut off from the Store")

    async def call(self, backend: str, fn: Callable[[], Awaitable[T]]) -> T:
        # The request's trip is the memory backend's own checkpoint before it
        # moves; the reply's trip is a sleep, during which a crash or a cut can
        # lose it. One sleep per call, not two: each costs a scheduler round.
        self._check(backend)
        frozen = self.frozen
        if frozen is not None and self._network is not None:
            self._disturbed.append(trio.current_time())
            result = await self._held(frozen, fn)
            self._disturbed.append(trio.current_time())  # it landed when the node thawed
        else:
            token = _caller.set(self.node_id)
            try:
                result = await fn()
            finally:
                _caller.reset(token)
        await trio.sleep(self._rng.uniform(0.0002, 0.002))
        self._check(backend)  # the reply never arrived: applied, but the caller cannot know
        loss = self._faults.reply_loss
        if loss > 0 and self._rng.random() < loss:
            raise BackendUnavailable(backend, f"the reply to {self.node_id} was lost")
        return result

    async def _held(self, thawed: trio.Event, fn: Callable[[], Awaitable[T]]) -> T:
        """A request sent by a frozen node: it is on its way, and lands when the node
        thaws, even if the caller was cancelled meanwhile (as bytes in a socket do)."""
        assert self._network is not None
        done = trio.Event()
        results: list[T] = []
        errors: list[Exception] = []

        async def land() -> None:
            await thawed.wait()
            _caller.set(self.node_id)  # this task's own context
            try:
                results.append(await fn())
            except Exception as exc:  # handed to the caller, as the reply
                errors.append(exc)
            done.set()

        self._network.start_soon(land)
        await done.wait()
        if errors:
            raise errors[0]
        return results[0]

    def lent_reply_lost(self) -> bool:
        """Whether the ``lent-claim-loss`` fault loses this lent claim's reply."""
        return self._faults.lent_reply_lost()

    async def lag(self) -> None:
        """A Store write's extra trip while records lag."""
        if self.store_lag > 0:
            await trio.sleep(self.store_lag)


class BrokerLink(Broker):
    """The shared Broker as one node reaches it.

    ``split_ticks`` is the ``tick-at-most-once`` plant: a tick is claimed in one
    round trip and its job enqueued in a second, as before ``fire_tick``, so a
    failure or a lost reply between the two loses the tick.
    """

    def __init__(
        self,
        broker: ObservedBroker,
        connection: Connection,
        *,
        split_ticks: bool = False,
        one_move_enqueue_claim: bool = True,
        hand_back_sees_lent: bool = True,
    ) -> None:
        self._b = broker
        self._c = connection
        self.name = broker.name
        self._split_ticks = split_ticks
        self._one_move_enqueue_claim = one_move_enqueue_claim
        self._hand_back_sees_lent = hand_back_sees_lent

    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        return await self._c.call("broker", lambda: self._b.enqueue(jobs, now))

    async def enqueue_and_claim(
        self,
        jobs: Sequence[Job],
        now: float,
        node_id: str,
        n: int,
        lease_seconds: float,
        scope: ClaimScope | None = None,
    ) -> tuple[list[Job], list[Lease] | None]:
        """A lent claim with its enqueue. ``one_move_enqueue_claim``: one move, one reply
        (Redis's enqueue_claim.lua: a lost reply leaves the callers and the dispatcher
        without the answer of either, though both moves were made); else the Broker's
        default, an enqueue then a claim, each with its own reply (memory, SQLite)."""
        trace = self._b._trace
        trace.record("lent-claim", node_id, n, "one-move" if self._one_move_enqueue_claim else "")
        lent = LentClaim(node_id, self._c)
        context = _lent_claim.set(lent)  # the claim's move files its leases in ``lent``
        try:
            if not self._one_move_enqueue_claim:
                stored, leases = await super().enqueue_and_claim(
                    jobs, now, node_id, n, lease_seconds, scope
                )
                if leases is not None and self._c.lent_reply_lost():
                    self._b.fault("lent-claim-loss", node_id)
                    leases = None  # the claim's reply lost, the enqueue's answered
            else:
                stored, leases = await self._c.call(
                    "broker",
                    lambda: self._b.enqueue_and_claim(jobs, now, node_id, n, lease_seconds, scope),
                )
                if self._c.lent_reply_lost():
                    self._b.fault("lent-claim-loss", node_id)
                    raise BackendUnavailable("broker", f"the reply to {node_id} was lost")
        except BackendUnavailable:
            trace.record("lent-claim.unanswered", node_id)
            self._b.lent_claim_unanswered(lent, lease_seconds)
            raise
        finally:
            _lent_claim.reset(context)
        if leases is None:
            trace.record("lent-claim.unanswered", node_id)
            self._b.lent_claim_unanswered(lent, lease_seconds)
        return stored, leases

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
        """Every lease held. The dispatcher's hand-back of an unanswered claim looks its
        leases up here: a lost reply keeps them from it (``Connection.note_lookup``).
        Without ``hand_back_sees_lent`` (the ``no-hand-back`` plant) the answer leaves out
        the leases of lent claims whose answer was lost, as a dispatcher that forgot to
        hand those back would."""
        try:
            leases = await self._c.call("broker", self._b.running)
        except BackendUnavailable:
            self._c.note_lookup(False)
            raise
        self._c.note_lookup(True)
        if self._hand_back_sees_lent:
            return leases
        hidden = self._b.unanswered
        return [lease for lease in leases if lease.token not in hidden]

    async def acquire_epoch(self, node_id: str, now: float) -> int:
        return await self._c.call("broker", lambda: self._b.acquire_epoch(node_id, now))

    async def current_epoch(self) -> int:
        return await self._c.call("broker", self._b.current_epoch)

    async def promote_due(
        self, now: float, epoch: int, limit: int = 1000, grace: float = 0.0
    ) -> list[Job]:
        return await self._c.call("broker", lambda: self._b.promote_due(now, epoch, limit, grace))

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        return await self._c.call(
            "broker", lambda: self._b.requeue_expired(now, epoch, poison_limit, limit)
        )

    async def finished_due(
        self,
        older_than: float,
        limit: int = 1000,
        max_bytes: int | None = None,
        skip: Sequence[str] = (),
    ) -> list[Job]:
        return await self._c.call(
            "broker", lambda: self._b.finished_due(older_than, limit, max_bytes, skip)
        )

    async def purge_finished(
        self,
        older_than: float,
        epoch: int,
        limit: int = 1000,
        tombstones_before: float | None = None,
        only: Sequence[tuple[str, int]] | None = None,
    ) -> int:
        return await self._c.call(
            "broker",
            lambda: self._b.purge_finished(older_than, epoch, limit, tombstones_before, only),
        )

    async def restore(self, jobs: Sequence[Job], now: float, epoch: int) -> list[Job | Tombstone]:
        return await self._c.call("broker", lambda: self._b.restore(jobs, now, epoch))

    async def revive(self, job: Job, now: float) -> Job | Tombstone:
        return await self._c.call("broker", lambda: self._b.revive(job, now))

    async def fire_tick(
        self, name: str, tick: float, job: Job, epoch: int, now: float
    ) -> Job | None:
        if job.idempotency_key is not None:
            self._b.tick_keys[(name, tick)] = job.idempotency_key
        if self._split_ticks:
            if not await self.claim_tick(name, tick, epoch):
                return None
            [stored] = await self.enqueue([job], now)
            return stored
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
        await self._c.lag()
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
