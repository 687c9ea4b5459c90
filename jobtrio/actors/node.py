"""A node: the supervisor of one actor tree, and the facade the surfaces call.

``Node.run`` opens one nursery holding the recorder, the dispatcher (with
its workers), the lease heartbeat, the elector, the cluster actor (when in
a cluster) and the leader duties, each under ``supervise`` so a crash
restarts the actor instead of killing the node. ``request_stop`` begins a
graceful stop: claiming ends, running attempts get ``SHUTDOWN_GRACE`` to
finish, the rest go back to the queue, the recorder flushes, then the tree
is cancelled whole.

The REST API, the CLI and the simulator use the public methods below
(``submit``, ``get``, ``cancel``...) and never an actor's internals.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import trio

from ..backends import transitions
from ..backends.base import (
    BackendUnavailable,
    Broker,
    JobQuery,
    Page,
    QueueState,
    RateLimit,
    StateConflict,
    Store,
    Tombstone,
)
from ..cluster.members import MemberView
from ..config import Settings
from ..eventlog import open_event_log
from ..events import EventBus
from ..eventstream import EventStream, job_fields
from ..jobs import IdGenerator, Job, JobStatus, ValidationError, to_iso
from ..metrics import NodeMetrics, peer_message_kinds
from ..observer import NodeObserver
from ..processors import Registry
from ..queueplan import Worker, unserved, worker_from_meta
from ..schedules import Schedule, validate_schedule
from ..submission import SubmissionLimits, validate_many, validate_submission
from ..text import error_text
from ..tls import peer_http_verify
from ..workflows import build as build_workflow
from ..workflows import view as workflow_view
from .cluster import ClusterActor, ClusterSeams
from .dispatch.flights import CANCELLED
from .dispatcher import Dispatcher
from .elector import Elector
from .heartbeat import lease_heartbeat
from .leader import LeaderDuties
from .leadership import Leadership
from .recorder import Recorder
from .releases import Releases
from .scheduler import Scheduler
from .submitter import GroupCommit
from .supervisor import supervise

log = logging.getLogger("jobtrio.node")

#: Seconds a stopping node gives the transport to deliver its leave to the peers
#: (a few frames on open connections): they then see it leave, not die.
LEAVE_DELIVERY_GRACE = 0.2
#: Seconds a stopping node waits for the recorder to write what it holds; what is
#: left after that is reconciled by the leader from the Broker.
STOP_FLUSH_TIMEOUT = 10.0
#: Seconds a purge waits for snapshots on their way to the Store, which would
#: otherwise write the purged record back after the delete.
PURGE_FLUSH_TIMEOUT = 5.0
#: Scheduling rounds ``submit_many``'s ``meanwhile`` waits for the store task to have sent
#: its batch (see ``Node._enqueue_meanwhile``).
_ROUNDS_BEFORE_MEANWHILE = 3
#: Seconds one backend may take to answer the health check's ping.
HEALTH_PING_TIMEOUT = 2.0

#: Runs as a supervised actor of the node: ``(node) -> None``, until cancelled.
Actor = Callable[["Node"], Awaitable[None]]


class BatchValidationError(ValueError):
    """Some items of a batch are invalid; nothing of the batch was accepted."""

    def __init__(self, errors: list[tuple[int, ValidationError]]) -> None:
        super().__init__(f"{len(errors)} job(s) of the batch are invalid")
        self.errors = errors


class JobNotFound(LookupError):
    def __init__(self, job_id: str) -> None:
        super().__init__(f"no job with id {job_id!r}")
        self.job_id = job_id


class WorkflowNotFound(LookupError):
    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r}")
        self.workflow_id = workflow_id


class KeyHeldByJob(LookupError):
    """A workflow's ``idempotency_key`` is held by a job that is not a workflow's root."""

    def __init__(self, key: str, job: Job) -> None:
        super().__init__(f"idempotency_key {key!r} belongs to job {job.id}, not a workflow")
        self.key = key
        self.job = job


@dataclass(slots=True)
class BackendHealth:
    name: str
    kind: str
    healthy: bool
    error: str | None


def wall_clock() -> float:
    return time.time()


class Node:
    def __init__(
        self,
        settings: Settings,
        broker: Broker,
        store: Store,
        registry: Registry | None = None,
        *,
        clock: Callable[[], float] = wall_clock,
        rng: random.Random | None = None,
        cluster: ClusterActor | None = None,
        extra_actors: Sequence[tuple[str, Actor]] = (),
    ) -> None:
        self.settings = settings
        #: httpx's ``verify`` for calls to peers' APIs (TLS_CA_FILE), made at first use.
        self._peer_verify: ssl.SSLContext | bool | None = None
        self.node_id = settings.node_id
        self.broker = broker
        self.store = store
        self.registry = registry or Registry()
        self.clock = clock
        self.rng = rng or random.Random()
        self.ids = IdGenerator(self.rng if rng is not None else None)
        self.limits = SubmissionLimits(
            max_payload_bytes=settings.max_payload_bytes, default_max_retries=settings.max_retries
        )
        self.events = EventBus(self.node_id, clock)
        self.metrics = NodeMetrics(self.node_id)
        self.metrics.instrument_backend(broker, "broker")
        self.metrics.instrument_backend(store, "store")
        if cluster is not None:
            self.metrics.instrument_transport(cluster.transport, peer_message_kinds())
        #: The websocket event stream's source: this node's events, into the (cluster's) log.
        self.event_stream = EventStream(
            self.events, open_event_log(broker, settings, clock), self.metrics, clock
        )
        self.observer = NodeObserver(self)
        self.leadership = Leadership(self.node_id, settings.election_algorithm)
        self.recorder = Recorder(store, copies=not broker.writes_records_of(store))
        self.group_commit = GroupCommit(
            broker,
            clock,
            on_committed=self._wake_for,
            # the dispatcher is made below: looked up when a batch commits
            lend_claim=lambda: self.dispatcher.lend_claim(),
            claim_answered=lambda offer, leases: self.dispatcher.claim_answered(offer, leases),
            probe_in_flight=lambda: self.dispatcher.probe_in_flight(),
        )
        # the dispatcher is made below: its wake is looked up when a job is released
        self.releases = Releases(
            broker, self.recorder, self.events, self.metrics, lambda: self.dispatcher.wake()
        )
        self.dispatcher = Dispatcher(
            self.node_id,
            settings,
            broker,
            self.registry,
            self.recorder,
            self.events,
            self.metrics,
            clock,
            self.rng,
            on_ended=self.releases.ended,
        )
        self.duties = LeaderDuties(
            settings,
            broker,
            store,
            self.recorder,
            self.leadership,
            self.events,
            clock,
            on_jobs_ready=self.dispatcher.wake,
        )
        self.scheduler = Scheduler(
            broker,
            store,
            self.registry,
            self.recorder,
            self.events,
            self.ids,
            self.limits,
            on_jobs_ready=self.dispatcher.wake,
        )
        self.duties.extra_duties.append(self.scheduler)
        self.cluster = cluster
        leading = {
            "leadership": self.leadership,
            "broker": broker,
            "store": store,
            "events": self.events,
            "metrics": self.metrics,
            "clock": clock,
            "retake_after": settings.election_timeout,
        }
        if cluster is None:
            self.elector = Elector.alone(self.node_id, **leading)
        else:
            self.elector = Elector(
                self.node_id,
                settings.election_algorithm,
                current=cluster.current_verdict,
                members=cluster.alive_sorted,
                **leading,  # type: ignore[arg-type]
            )
        self._extra_actors = list(extra_actors)
        self._stop = trio.Event()
        self.stopped = trio.Event()
        self.started_at: float | None = None
        self.stopping = False
        self.running = False

    # -- life cycle ----------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self.started_at = self.clock()
        async with trio.open_nursery() as nursery:

            def start(name: str, fn: Callable[[], Awaitable[object]]) -> None:
                nursery.start_soon(
                    lambda: supervise(name, fn, on_restart=self._on_restart), name=name
                )

            start("event-stream", self.event_stream.run)
            start("observer", self.observer.run)
            start("recorder", self.recorder.run)
            start("group-commit", self.group_commit.run)
            start("dispatcher", self.dispatcher.run)
            start("releases", self.releases.run)
            start(
                "heartbeat",
                lambda: lease_heartbeat(
                    self.broker, self.dispatcher, self.settings.job_lease, self.clock
                ),
            )
            start("elector", self.elector.run)
            if self.cluster is not None:
                seams = ClusterSeams(
                    on_verdict=self.elector.verdict,
                    on_cancel=lambda job_id: self.dispatcher.interrupt(job_id, CANCELLED),
                    events=self.events,
                    store=self.store,
                    leadership=self.leadership,
                    clock=self.clock,
                )
                start("cluster", lambda: self.cluster.run(seams))  # type: ignore[union-attr]
            start("leader-duties", self.duties.run)
            for name, actor in self._extra_actors:
                start(name, lambda actor=actor: actor(self))
            self.running = True
            task_status.started()
            await self._stop.wait()
            self.stopping = True
            log.info("stopping: running jobs get %.1fs to finish", self.settings.shutdown_grace)
            self.events.publish("node.stopping")
            await self.dispatcher.drain(self.settings.shutdown_grace)
            if self.cluster is not None:
                self.cluster.leave()
                await trio.sleep(LEAVE_DELIVERY_GRACE)
            if not await self.recorder.flush(STOP_FLUSH_TIMEOUT):
                log.warning("store still has %d records waiting at stop", self.recorder.backlog)
            nursery.cancel_scope.cancel()
        self.running = False
        self.stopped.set()

    def request_stop(self) -> None:
        self._stop.set()

    def _on_restart(self, name: str, exc: BaseException, restarts: int) -> None:
        self.metrics.actor_restarts.labels(name).inc()
        self.events.publish(
            "actor.restarted", actor=name, error=error_text(repr(exc)), restarts=restarts
        )

    # -- jobs ------------------------------------------------------------------------
    def _validate(self, data: Any) -> Job:
        return validate_submission(data, self.clock(), self.limits, self.ids)

    async def submit(self, data: Any, owner: str | None = None) -> Job:
        """Validate and enqueue one job; returns it as accepted (or the idempotent original).

        ``owner``: the submitting user when auth is on (see ``Job.owner``).
        """
        job = self._validate(data)
        job.owner = owner
        if job.depends_on:
            # alone, not in a shared group commit: an unknown parent refuses this job only
            [stored] = await self.broker.enqueue([job], self.clock())
            self._accepted([stored])
        else:
            [stored] = await self.group_commit.enqueue([job])
            self._accepted([stored], woken=True)  # by the group commit's own hook
            if self.dispatcher.waits_for_worker(stored.id):
                # A claim lent to the group commit leased the job with its enqueue, and
                # its worker was woken in the same round as this caller, which trio runs
                # in an order it draws at random: the worker takes it up first, so that
                # its start does not wait for this caller's answer (an HTTP route's,
                # hundreds of us). Shielded: the job is durable, its answer is owed.
                await trio.lowlevel.cancel_shielded_checkpoint()
        return stored

    async def submit_many(
        self,
        items: Sequence[Any],
        owner: str | None = None,
        meanwhile: Callable[[list[Job]], None] | None = None,
    ) -> list[Job]:
        """All or nothing: every item is validated before any is enqueued, in one move.

        The jobs are accepted at one time (one clock reading, their created_at): one
        time a batch is one time's text to write, for every job's record and answer.

        ``meanwhile(jobs)`` is called with the validated jobs while the Broker stores
        them (see ``_enqueue_meanwhile``) when the Broker hands back the very jobs it
        stored as given (``hands_back_sent_jobs``, the Redis Broker's; the others hand
        back copies, for which nothing made from the jobs beforehand is of use); any
        other job it hands back holds its idempotency key or was changed."""
        jobs, errors = validate_many(items, self.clock(), self.limits, self.ids)
        if errors:
            raise BatchValidationError(errors)
        if owner is not None:  # a new job's owner is None
            for job in jobs:
                job.owner = owner
        trouble = None
        if meanwhile is None or not getattr(self.broker, "hands_back_sent_jobs", False):
            stored = await self.broker.enqueue(jobs, self.clock())
        else:
            stored, trouble = await self._enqueue_meanwhile(jobs, meanwhile)
        self._accepted(stored)
        if trouble is not None:  # the jobs are stored and accepted, as when it came after
            raise trouble
        return stored

    async def _enqueue_meanwhile(
        self, jobs: list[Job], meanwhile: Callable[[list[Job]], None]
    ) -> tuple[list[Job], Exception | None]:
        """``broker.enqueue(jobs)``, calling ``meanwhile(jobs)`` while the Broker works.

        Why: a batch's answer (1,000 ``to_dict`` and their JSON, ~2 us a job) was built
        after the Broker's reply, while Redis, which runs the enqueue script meanwhile
        (~20 us a job), waited; now the store task encodes and sends the script first
        and the answer is built while Redis runs it. The store task yields once
        before its bytes go out (the wire's checkpoint, then the send) and trio runs
        the tasks of a scheduling round in random order, so ``meanwhile`` waits
        ``_ROUNDS_BEFORE_MEANWHILE`` rounds: two are the store task's, the third is
        after its send. When the send waits (a busy wire, a full socket buffer) the
        overlap is smaller, never wrong: nothing here depends on the order. What
        ``meanwhile`` raises is returned, to be raised once the jobs are accepted:
        the store it ran beside is not cut short by it.
        """
        stored: list[Job] = []
        failed: list[Exception] = []

        async def store() -> None:
            try:
                stored.extend(await self.broker.enqueue(jobs, self.clock()))
            except Exception as exc:  # raised below as it came, outside the nursery's group
                failed.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(store)
            for _ in range(_ROUNDS_BEFORE_MEANWHILE):
                await trio.lowlevel.checkpoint()
            try:
                meanwhile(jobs)
            except Exception as exc:
                trouble: Exception | None = exc
            else:
                trouble = None
        if failed:
            raise failed[0]
        return stored, trouble

    def _wake_for(self, jobs: list[Job], claimed: bool = False) -> None:
        # ``claimed``: a claim went with the enqueue (the group commit's), and the
        # dispatcher has woken itself if it wants more than it took.
        # Only a job that can run now is worth a claim now: one that waits for its time
        # is taken by a claim once due (this node's claim loop asks at the first due time
        # of a batch without pending jobs; otherwise it polls while idle, and the leader
        # promotes what no claim took); one that waits for its dependencies is released
        # by its parent's finish; a claim per submission of such jobs was a Broker call
        # for nothing
        if any(job.status is JobStatus.PENDING for job in jobs):
            if not claimed:
                self.dispatcher.wake()
        else:
            first = min(
                (
                    j.scheduled_at
                    for j in jobs
                    if j.status is JobStatus.SCHEDULED and j.scheduled_at is not None
                ),
                default=None,
            )
            if first is not None:
                self.dispatcher.due_at(first)

    def _accepted(self, jobs: list[Job], woken: bool = False) -> None:
        self.recorder.record(jobs)
        if not woken:
            self._wake_for(jobs)
        self.events.publish_jobs("job.submitted", jobs)

    async def get(self, job_id: str) -> Job | None:
        """The freshest view: the Broker's live copy if newer than the Store's record."""
        live = await self.broker.get(job_id)
        try:
            record = await self.store.get(job_id)
        except BackendUnavailable:
            record = None
            if live is None:
                raise
        if live is None:
            return record
        if record is None or live.version >= record.version:
            return live
        return record

    async def list(self, query: JobQuery) -> Page:
        return await self.store.query(query)

    async def cancel(self, job_id: str) -> Job:
        """Cancel a waiting or running job; ``StateConflict`` if it already ended."""
        job = await self.broker.cancel(job_id, self.clock())
        if job is None:
            record = await self.store.get(job_id)
            if record is None:
                raise JobNotFound(job_id)
            if record.terminal:
                raise StateConflict(record, f"job {job_id} is already {record.status}")
            raise StateConflict(record, f"job {job_id} is not held by the broker")
        if job.status != JobStatus.CANCELLED:
            raise StateConflict(job, f"job {job_id} is already {job.status}")
        # cancelling twice is harmless: the second call returns the cancelled job
        self.dispatcher.interrupt(job_id, CANCELLED)
        if self.cluster is not None:
            self.cluster.broadcast_cancel(job_id)
        self.recorder.record_one(job)
        self.releases.ended([job])
        self.events.publish("job.cancelled", job=job_fields(job))
        return job

    async def retry(self, job_id: str) -> Job:
        """Run a failed or cancelled job again (``StateConflict`` otherwise).

        A job the Broker purged comes back from its Store record through
        ``Broker.revive``, insert-if-absent: a retry racing this one, or a job
        whose tombstone says it completed after the record was written, is
        never overwritten or run again.
        """
        now = self.clock()
        job = await self.broker.retry(job_id, now)
        if job is None:
            record = await self.store.get(job_id)
            if record is None:
                raise JobNotFound(job_id)
            if record.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
                raise StateConflict(
                    record, f"job {job_id} is {record.status}, not failed or cancelled"
                )
            transitions.retry(record, now)
            revived = await self.broker.revive(record, now)
            if isinstance(revived, Tombstone):  # the record was behind: it completed
                raise StateConflict(
                    replace(record, status=revived.status),
                    f"job {job_id} is {revived.status}, not failed or cancelled",
                )
            job = revived
        self.recorder.record_one(job)
        self.dispatcher.wake()
        self.events.publish("job.retried", job=job_fields(job))
        return job

    # -- workflows ----------------------------------------------------------------------
    async def submit_workflow(self, spec: Any, owner: str | None = None) -> dict[str, Any]:
        """Validate a chain, group or chord (``workflows.py``) and enqueue its jobs in one
        all-or-none move; returns the workflow's view (its id is its first job's).

        With an ``idempotency_key`` the Broker holds already, nothing is filed and the
        answer is the workflow that holds it (``KeyHeldByJob`` if a plain job does)."""
        jobs = build_workflow(spec, self.clock(), self.limits, self.ids)
        for job in jobs:
            job.owner = owner
        stored = await self.broker.enqueue(jobs, self.clock())
        if stored[0].id != jobs[0].id:  # the root's key was held: a retried submission
            holder = stored[0]
            if holder.workflow is None or holder.workflow_id != holder.id:
                assert jobs[0].idempotency_key is not None
                raise KeyHeldByJob(jobs[0].idempotency_key, holder)
            return await self.get_workflow(holder.id)
        self._accepted(stored)
        self.metrics.workflows_submitted.inc()
        return workflow_view(stored[0], {job.id: job for job in stored})

    async def get_workflow(self, workflow_id: str) -> dict[str, Any]:
        """The workflow's view: its state and every member as the Broker (or, once purged
        there, the Store) holds it; ``WorkflowNotFound`` if ``workflow_id`` is none."""
        root = await self.get(workflow_id)
        if root is None or root.workflow is None or root.workflow_id != root.id:
            raise WorkflowNotFound(workflow_id)
        ids = list(root.workflow.get("members") or [])
        members = await self.broker.get_many(ids)
        for job_id in ids:
            if job_id not in members:
                record = await self.store.get(job_id)
                if record is not None:
                    members[job_id] = record
        return workflow_view(root, members)

    async def cancel_workflow(self, workflow_id: str) -> dict[str, Any]:
        """Cancel every member that has not ended, the last first (so a waiting member is
        cancelled rather than failed by its cancelled parent); returns the view."""
        before = await self.get_workflow(workflow_id)
        for job in reversed(before["jobs"]):
            if job["status"] in ("completed", "failed", "cancelled"):
                continue
            try:
                await self.cancel(job["id"])
            except (StateConflict, JobNotFound):
                pass  # it ended meanwhile
        return await self.get_workflow(workflow_id)

    async def purge(self, job_id: str) -> bool:
        """Cancel if live, then delete the job from the Broker and the Store."""
        in_broker = await self.broker.get(job_id)
        if in_broker is not None and not in_broker.terminal:
            cancelled = await self.broker.cancel(job_id, self.clock())
            self.dispatcher.interrupt(job_id, CANCELLED)
            self.releases.ended([cancelled])
        removed = await self.broker.delete(job_id)
        # a snapshot on its way to the store would resurrect the record: flush first
        await self.recorder.flush(PURGE_FLUSH_TIMEOUT)
        removed = await self.store.delete(job_id) or removed
        return removed

    # -- periodic jobs ------------------------------------------------------------------
    async def put_schedule(self, data: Any) -> Schedule:
        """Create or replace a stored schedule (``ValidationError`` for bad input)."""
        schedule = validate_schedule(data, self.clock(), self.limits)
        if any(s.name == schedule.name for s in self.registry.schedules()):
            raise ValidationError(
                f"schedule {schedule.name!r} is defined in code and cannot be replaced",
                "name",
                "conflict",
            )
        await self.store.put_schedule(schedule.to_dict())
        self.events.publish("schedule.saved", schedule=schedule.event_fields())
        return schedule

    async def list_schedules(self) -> list[dict[str, Any]]:
        """Code and stored schedules, each with its next tick."""
        now = self.clock()
        by_name = {s.name: s for s in self.registry.schedules()}
        for d in await self.store.list_schedules():
            by_name.setdefault(d["name"], Schedule.from_dict(d))
        return [
            {**s.to_dict(), "next_tick": to_iso(s.next_tick(now))}
            for s in sorted(by_name.values(), key=lambda s: s.name)
        ]

    async def delete_schedule(self, name: str) -> bool:
        removed = await self.store.delete_schedule(name)
        if removed:
            self.events.publish("schedule.deleted", schedule=name)
        return removed

    # -- views -----------------------------------------------------------------------------
    async def backend_health(self) -> list[BackendHealth]:
        out = []
        for kind, backend in (("broker", self.broker), ("store", self.store)):
            try:
                with trio.fail_after(HEALTH_PING_TIMEOUT):
                    await backend.ping()
                out.append(BackendHealth(backend.name, kind, True, None))
            except (BackendUnavailable, trio.TooSlowError) as exc:
                out.append(BackendHealth(backend.name, kind, False, str(exc) or "timed out"))
        return out

    def queue_workers(self) -> list[Worker]:
        """What each live node runs (types, queues): this node's own, its peers' from the
        member meta they advertise."""
        me = Worker(self.node_id, frozenset(self.registry.types()), self.settings.queue_plan)
        if self.cluster is None:
            return [me]
        return [me] + [
            worker_from_meta(m.node_id, m.meta)
            for m in self.cluster.members()
            if m.node_id != self.node_id and m.state in ("alive", "suspect")
        ]

    async def queue_views(self, name: str | None = None) -> list[dict[str, Any]]:
        """Every queue the Broker knows (pending, paused, limited), with who serves it
        (``name``: that queue only, listed even when the Broker holds nothing of it)."""
        states = await self.broker.queues()
        if name is not None:
            states = [q for q in states if q.name == name] or [QueueState(name)]
        workers = self.queue_workers()
        missing = unserved({q.name: q.pending for q in states}, workers)
        out = []
        for q in states:
            out.append(
                {
                    "name": q.name,
                    "pending": q.depth,
                    "pending_by_type": dict(sorted(q.pending.items())),
                    "paused": q.paused,
                    "rate_limit": None
                    if q.rate_limit is None
                    else {"jobs": q.rate_limit.jobs, "per_seconds": q.rate_limit.per},
                    "nodes": sorted(w.node_id for w in workers if w.plan.serves(q.name)),
                    "unserved": [u for u in missing if u["queue"] == q.name],
                }
            )
        return out

    async def set_queue(
        self,
        name: str,
        *,
        paused: bool | None = None,
        rate_limit: RateLimit | None = None,
        clear_rate_limit: bool = False,
    ) -> dict[str, Any]:
        """An operator's pause, resume or rate limit of a queue (one Broker move, so it
        holds cluster-wide and survives any node's failover); the queue as it now is."""
        await self.broker.set_queue(
            name, paused=paused, rate_limit=rate_limit, clear_rate_limit=clear_rate_limit
        )
        [view] = await self.queue_views(name)
        return view

    async def stats(self) -> dict[str, Any]:
        depths = await self.broker.depths()
        for state, n in depths.items():
            self.metrics.queue_depth.labels(state).set(n)
        queues = await self.queue_views()
        try:
            records = await self.store.count_by_status()
        except BackendUnavailable:
            records = None
        view = self.leadership.view
        return {
            "node_id": self.node_id,
            "queue": depths,
            "records": records,
            "workers": {
                "total": len(self.dispatcher.workers),
                "busy": len(self.dispatcher.workers) - self.dispatcher.idle_workers(),
                "idle": self.dispatcher.idle_workers(),
            },
            "in_flight": self.dispatcher.in_flight,
            "claimed": self.dispatcher.claimed,
            "finished": self.dispatcher.finished,
            "store_backlog": self.recorder.backlog,
            "leader": view.leader_id,
            "is_leader": self.leadership.is_leader,
            "uptime_seconds": None if self.started_at is None else self.clock() - self.started_at,
            "strategy": self.settings.load_balancer_strategy,
            "processors": self.registry.types(),
            "queues": {q["name"]: {"pending": q["pending"], "paused": q["paused"]} for q in queues},
            "unserved": [u for q in queues for u in q["unserved"]],
        }

    def workers(self) -> list[dict[str, Any]]:
        return self.dispatcher.worker_views()

    # -- the cluster as this node sees it (a single node until the cluster joins) ----
    async def members(self) -> list[dict[str, Any]]:
        """Every member of the cluster with its state, address, workers and last contact."""
        leader = self.leadership.view.leader_id
        if self.cluster is None:
            return [
                {
                    "node_id": self.node_id,
                    "state": "alive",
                    "address": f"{self.settings.server_host}:{self.settings.server_port}",
                    "api_url": None,
                    "worker_count": self.settings.worker_count,
                    "incarnation": 0,
                    "last_contact": to_iso(self.clock()),
                    "last_contact_seconds_ago": 0.0,
                    "is_leader": leader == self.node_id,
                    "self": True,
                }
            ]
        now = trio.current_time()
        wall = self.clock()

        def ago(m: MemberView) -> float:
            if m.node_id == self.node_id or m.last_contact is None:
                return 0.0
            return round(max(0.0, now - m.last_contact), 3)

        return [
            {
                "node_id": m.node_id,
                "state": m.state,
                "address": m.address,
                "api_url": m.meta.get("api_url"),
                "worker_count": m.meta.get("workers"),
                "incarnation": m.incarnation,
                "last_contact": to_iso(wall - ago(m)),
                "last_contact_seconds_ago": ago(m),
                "is_leader": leader == m.node_id,
                "self": m.node_id == self.node_id,
            }
            for m in sorted(self.cluster.members(), key=lambda m: m.node_id)
        ]

    def election_info(self) -> dict[str, Any]:
        view = self.leadership.view
        return {
            "algorithm": self.settings.election_algorithm,
            "leader": view.leader_id,
            "term": view.term,
            "epoch": view.epoch,
            "is_leader": view.epoch is not None,
            "since": view.since,
            "changes": self.leadership.changes,
            "election_timeout": self.settings.election_timeout,
            "election_interval": self.settings.election_interval,
            "clustered": self.cluster is not None,
        }

    async def cluster_workers(self) -> list[dict[str, Any]]:
        """Workers of every live node, each with its current job (peers asked over HTTP)."""
        workers = self.workers()
        if self.cluster is None:
            return workers
        peers = [
            m
            for m in self.cluster.members()
            if m.node_id != self.node_id
            and m.state in ("alive", "suspect")
            and m.meta.get("api_url")
        ]
        if not peers:
            return workers
        import httpx

        results: dict[str, list[dict[str, Any]]] = {}

        async def fetch(client: httpx.AsyncClient, member: Any) -> None:
            url = f"{member.meta['api_url']}/api/v1/workers"
            try:
                r = await client.get(url, params={"scope": "local"})
                r.raise_for_status()
                results[member.node_id] = list(r.json().get("workers", []))
            except (httpx.HTTPError, ValueError, AttributeError) as exc:
                results[member.node_id] = [
                    {
                        "node_id": member.node_id,
                        "status": "unreachable",
                        "error": type(exc).__name__,
                    }
                ]

        if self._peer_verify is None:  # built once: a context costs milliseconds
            self._peer_verify = peer_http_verify(self.settings)
        async with httpx.AsyncClient(
            timeout=2.0, headers=self.peer_headers(), verify=self._peer_verify
        ) as client:
            async with trio.open_nursery() as nursery:
                for member in peers:
                    nursery.start_soon(fetch, client, member)
        for member in sorted(results):
            workers.extend(results[member])
        return workers

    def peer_headers(self) -> dict[str, str]:
        """Headers a node sends to a peer's HTTP API (auth is added by the security layer)."""
        return {}
