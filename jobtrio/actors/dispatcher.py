"""Claim jobs when workers are free, hand each to a worker, report outcomes.

Three loops share one table of in-flight attempts, all in this actor:

- the claim loop takes a batch from the Broker only when workers are idle
  (credit-based: never more jobs than idle workers plus a small prefetch, so
  nothing waits long on a node while another could run it), and deals each
  job to a worker with the configured load-balancing strategy;
- ``WORKER_COUNT`` worker loops each run one attempt at a time under a
  cancel scope carrying the job's timeout; a worker that finishes deals the
  ready jobs itself, and runs the one the strategy deals to it without a
  channel hop. A worker keeps one cancel scope for attempt after attempt
  until one is cancelled or times out (then it opens a new one): entering
  and leaving a scope per attempt cost more than a noop job's own work;
- the finisher sends outcomes to the Broker in batches (one round trip for
  many jobs), with the lease token, and records the jobs it gets back. On a
  busy node it lingers a moment for more (``FINISH_LINGER``, see there): jobs
  that await I/O end a few at a time, and one call each few jobs cost more
  than the jobs' own work; a lone outcome goes at once.

The table is also what the lease heartbeat renews, what a cancel request
interrupts and what a graceful shutdown hands back.

The prefetch (``DISPATCH_PREFETCH``, -1 by default) adapts when left at -1:
``WORKER_COUNT`` jobs, or what this node starts in ``PREFETCH_HORIZON``
seconds plus twice the last claim's round trip at its recent rate if that is
more (at most two claim batches). Short jobs then come in claims of tens
instead of a handful (per-call costs were most of a noop job's cost on
Redis), while a claimed job still waits here about ``PREFETCH_HORIZON`` plus
a claim's round trip at most, and long jobs keep the plain credit. The round
trip counts because the next claim goes out when half the window is left: a
window that the workers empty before a slow claim comes back leaves them
idle, and their lower rate then shrinks the window further (while a leader
promoted a burst of due jobs, each claim waited 20-40 ms behind a promotion
step and came back with 6-20 jobs: the workers ran 750 jobs/s).

Progress reports (``JobContext.progress``) are coalesced: a report only
replaces the job's latest one in a table here, and a fourth loop writes the
table in one ``Broker.progress`` move, then waits ``PROGRESS_INTERVAL`` before
the next. A processor reporting a thousand times a second costs the Broker
four writes a second; jobs that do not report cost nothing.
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio

from ..backends.base import (
    BackendUnavailable,
    Broker,
    ClaimScope,
    Finish,
    Lease,
)
from ..backoff import Backoff
from ..balancing import Balancer
from ..config import Settings
from ..events import EventBus
from ..eventstream import job_fields
from ..jobs import Job
from ..metrics import NodeMetrics
from ..processors import Registry
from .dispatch.dealer import Dealer
from .dispatch.finisher import Finisher
from .dispatch.flights import (
    LEASE_LOST,
    SHUTDOWN,
    Flights,
    Report,
    released,
    unstarted,
)
from .dispatch.health import BROKER_RETRY, BrokerHealth
from .dispatch.progress import ProgressReports
from .dispatch.workers import Workers
from .recorder import Recorder
from .signals import Wakeup

log = logging.getLogger("jobtrio.dispatcher")

#: Seconds of this node's recent start rate it may claim ahead (automatic prefetch).
PREFETCH_HORIZON = 0.02
#: Seconds over which the start rate is measured.
RATE_INTERVAL = 0.05
#: An empty claim polls again after 1 ms, doubling to 100 ms: a node that just ran
#: out of work finds a new burst at once, an idle one asks the Broker ten times a second.
#: A claim that came back short (the Broker had no more) waits the first poll too.
IDLE_POLL_FIRST, IDLE_POLL_MAX = 0.001, 0.1
#: Due times of scheduled jobs this node accepted that an idle claim loop asks the Broker
#: at (``Dispatcher.due_at``), at most this many (later ones are found by the poll).
DUE_TIMES_KEPT = 64
#: How long a stopping node waits, past the grace, for interrupted attempts to be handed
#: back (at least a lease: after that the leases expire and the leader requeues anyway).
HAND_BACK_TIMEOUT = 5.0


@dataclass(slots=True, frozen=True)
class ClaimOffer:
    """A claim the dispatcher lends its node's group commit (``Dispatcher.lend_claim``):
    made with an enqueue in one Broker call (``Broker.enqueue_and_claim``), answered by
    ``Dispatcher.claim_answered``."""

    node_id: str
    n: int
    lease_seconds: float
    scope: ClaimScope


class Dispatcher:
    def __init__(
        self,
        node_id: str,
        settings: Settings,
        broker: Broker,
        registry: Registry,
        recorder: Recorder,
        events: EventBus,
        metrics: NodeMetrics,
        clock: Callable[[], float],
        rng: random.Random | None = None,
        on_ended: Callable[[list[Job]], None] | None = None,
    ) -> None:
        self.node_id = node_id
        self._settings = settings
        self._broker = broker
        self._registry = registry
        self._recorder = recorder
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._balancer = Balancer(settings.load_balancer_strategy, self._rng)
        self._flights = Flights()
        #: QUEUES and QUEUE_CONCURRENCY
        self._plan = settings.queue_plan
        self._prefetch = settings.prefetch
        self._auto_prefetch = settings.dispatch_prefetch < 0
        self._max_window = max(self._prefetch, 2 * settings.dispatch_batch)
        self._window = self._prefetch
        self._rate = 0.0
        self._rate_since = -math.inf
        self._rate_started = 0
        #: Seconds the last claim took to come back (the window covers its round trip).
        self._claim_latency = 0.0
        self._wakeup = Wakeup()
        #: Heap of the due times ``due_at`` was told (this node's clock), not yet asked at.
        self._due_times: list[float] = []
        self._capacity = Wakeup()
        self._drained = trio.Event()
        self._health = BrokerHealth(metrics)
        self._reports_send, reports_recv = trio.open_memory_channel[Report](math.inf)
        self._dealer = Dealer(
            node_id,
            settings.worker_count,
            self._balancer,
            self._reports_send,
            recorder,
            events,
            metrics,
            clock,
        )
        self.workers = self._dealer.workers
        self._finisher = Finisher(
            broker,
            self._flights,
            reports_recv,
            recorder,
            events,
            metrics,
            self._health,
            self._capacity,
            clock,
            self._lingering_pays,
            on_ended,
        )
        self._progress = ProgressReports(broker, self._flights, recorder, events, clock)
        self._workers = Workers(
            node_id,
            settings,
            registry,
            self._dealer,
            self._reports_send,
            self._progress,
            clock,
            self._rng,
            self._worker_freed,
        )
        #: This incarnation's first moment on its own clock: a lease whose job was claimed
        #: before it is a previous incarnation's (see ``_hand_back_unanswered``).
        self._since = clock()
        #: A claim failed without an answer: it may have leased jobs all the same.
        self._claim_unanswered = False
        #: The claim loop waits for work after an empty claim (a claim may be lent then).
        self._loop_idle = False
        #: Set when a lent claim is answered; None while no claim is lent.
        self._lent: trio.Event | None = None
        #: The leases of this node's previous incarnation are still to be let go of.
        self._previous_to_expire = True
        self.handed_back = 0
        self.expired_at_start = 0
        self.claimed = 0

    # -- views for other actors ---------------------------------------------------
    @property
    def started(self) -> int:
        """Attempts dealt to this node's workers."""
        return self._dealer.started

    @property
    def finished(self) -> int:
        """Outcomes the Broker accepted from this node."""
        return self._finisher.finished

    @property
    def broker_healthy(self) -> bool:
        return self._health.healthy

    @property
    def last_error(self) -> str | None:
        return self._health.last_error

    def leases(self) -> list[tuple[str, str]]:
        """(job_id, token) of every attempt this node holds, for the heartbeat."""
        return self._flights.leases()

    @property
    def in_flight(self) -> int:
        return len(self._flights)

    def idle_workers(self) -> int:
        return self._dealer.idle

    @property
    def prefetch_window(self) -> int:
        """How many jobs beyond its idle workers this node claims now (see the module doc)."""
        return self._window

    def worker_views(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [
            {
                "id": w.worker_id,
                "node_id": self.node_id,
                "status": "busy" if w.busy else "idle",
                "current_job": w.job_id,
                "current_job_type": w.job_type,
                "running_for": None if w.started_at is None else round(now - w.started_at, 3),
                "jobs_done": w.jobs_done,
                "busy_seconds": round(w.busy_seconds, 3),
            }
            for w in self.workers
        ]

    # -- commands -----------------------------------------------------------------------
    def wake(self) -> None:
        """New work may be waiting: claim now instead of at the next poll."""
        self._wakeup.set()

    def due_at(self, at: float) -> None:
        """Scheduled jobs this node accepted come due at ``at`` (this node's clock): an idle
        claim loop asks the Broker then (a claim takes due jobs itself), not at its next
        poll, up to ``IDLE_POLL_MAX`` later. No claim now (a wait in progress is not
        cut short: the next, at most ``IDLE_POLL_MAX`` away, is timed to the due time)."""
        due = self._due_times
        if at not in due and len(due) < DUE_TIMES_KEPT:
            heapq.heappush(due, at)

    def _idle_wait(self, poll: float, asked_at: float) -> float:
        """How long an idle claim loop waits: the poll, or less to ask at a due time."""
        due = self._due_times
        while due and due[0] <= asked_at:  # the claim just made looked at these
            heapq.heappop(due)
        if not due:
            return poll
        return max(0.0, min(poll, due[0] - self._clock()))

    def interrupt(self, job_id: str, reason: str) -> bool:
        """Stop a local attempt (a cancel request or a lost lease)."""
        return self._flights.interrupt(job_id, reason)

    def leases_lost(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            flight = self._flights.get(job_id)
            if self.interrupt(job_id, LEASE_LOST):
                self._metrics.lease_lost.inc()
                if flight is not None:
                    self._events.publish("job.lease_lost", job=job_fields(flight.lease.job))
                log.warning("lease of job %s lost; its attempt is abandoned", job_id)

    async def drain(self, grace: float) -> None:
        """Stop claiming, let running attempts finish for ``grace`` seconds, hand back the rest."""
        self._dealer.stop()
        self._wakeup.set()
        self._capacity.set()
        self._finisher.send_now()
        self._dealer.hand_back_ready()
        with trio.move_on_after(grace):
            while self._flights:
                await self._capacity.wait(0.05)
        for job_id in self._flights.job_ids():
            self.interrupt(job_id, SHUTDOWN)
        with trio.move_on_after(max(HAND_BACK_TIMEOUT, self._settings.job_lease)):
            while self._flights:
                await self._capacity.wait(0.05)
        if self._flights:
            log.warning(
                "%d attempts could not be handed back; their leases will expire",
                len(self._flights),
            )

    # -- the actor --------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Claim, run and report until cancelled; the node's supervisor restarts it on a crash."""
        self._recover()
        async with trio.open_nursery() as nursery:
            self._workers.start(nursery)
            nursery.start_soon(self._finisher.run)
            nursery.start_soon(self._progress.run)
            task_status.started()
            await self._claim_loop()
            # claiming stopped (drain); keep workers and finisher until drained
            await trio.sleep_forever()

    def _recover(self) -> None:
        """Start clean after a crash of an earlier ``run`` (a no-op the first time).

        The crash cancelled every worker and the finisher. Outcomes still
        queued for the finisher go to the new one; every other attempt in the
        table (unstarted, cut off, or whose outcome the crashed finisher held)
        is handed back to the Broker as released, so no lease stays renewed by
        the heartbeat for an attempt nobody runs. A handed-back job that had in
        fact completed runs again: delivery is at least once.
        """
        queued = self._finisher.take_unsent()
        # A claim lent to the group commit (``_lent``) stays lent: its answer comes all the
        # same (claim_answered), and the new loop waits for it as the old one did instead
        # of claiming beside it
        self._loop_idle = False
        if not self._flights and not queued:
            return
        reported = {id(r.job) for r in queued}
        for report in queued:
            self._reports_send.send_nowait(report)
        for flight in self._flights:
            if id(flight.lease.job) not in reported:
                flight.finished = True
                report = Report(unstarted(flight), flight.lease.job, -1, 0.0)
                self._reports_send.send_nowait(report)
        self._dealer.reset()
        log.warning("restarted after a crash: %d attempts handed back", len(self._flights))

    def _worker_freed(self) -> None:
        """A worker is free again: the claim loop claims if the window wants jobs."""
        if self._claim_wanted():
            self._capacity.set()

    def _lingering_pays(self) -> bool:
        """Whether the finisher may wait for more outcomes: the node claims and a worker
        runs a job."""
        return self._dealer.claiming and self._dealer.working()

    def _update_window(self) -> None:
        """Re-measure the start rate and size the prefetch from it (see the module doc)."""
        if not self._auto_prefetch:
            return
        now = trio.current_time()
        elapsed = now - self._rate_since
        if elapsed < RATE_INTERVAL:
            return
        if elapsed < math.inf:
            rate = (self._dealer.started - self._rate_started) / elapsed
            # rise at once, fall by halves: a pause between bursts keeps most of the window
            self._rate = rate if rate >= self._rate else (self._rate + rate) / 2
        self._rate_since, self._rate_started = now, self._dealer.started
        window = int(self._rate * (PREFETCH_HORIZON + 2 * self._claim_latency))
        self._window = max(self._prefetch, min(self._max_window, window))

    def _claim_wanted(self) -> int:
        """How many jobs to claim now: 0 until the ready queue is half spent."""
        window, waiting = self._window, self._dealer.waiting
        want = self._dealer.idle + window - waiting
        if want <= 0 or (waiting and want < window // 2):
            return 0
        return want

    async def _claim_loop(self) -> None:
        poll = Backoff(IDLE_POLL_FIRST, IDLE_POLL_MAX)
        backoff = Backoff(*BROKER_RETRY)
        while self._dealer.claiming:
            self._update_window()
            want = self._claim_wanted()
            if not want:
                await self._capacity.wait(1.0)
                continue
            if self._lent is not None:  # the group commit is making a claim for us
                await self._lent.wait()
                continue
            try:
                if self._previous_to_expire:
                    await self._expire_previous_incarnation()
                if self._claim_unanswered:
                    await self._hand_back_unanswered()
                sent = trio.current_time()
                asked_at = self._clock()
                asked = min(want, self._settings.dispatch_batch)
                leases = await self._broker.claim(
                    self.node_id,
                    asked,
                    self._settings.job_lease,
                    asked_at,
                    self._plan.scope(self._registry.types(), self._flights.held, self._rng),
                )
            except BackendUnavailable as exc:
                self._claim_unanswered = True
                self._health.mark(False, str(exc))
                await trio.sleep(backoff.next())
                continue
            backoff.reset()
            self._claim_latency = trio.current_time() - sent
            health = self._health
            if health.last_error is not None or not health.marked:
                health.mark(True, None)  # once, not per claim: labels() is a lookup
            if not leases:
                await self._wait_for_work(poll.next(), asked_at)
                continue
            poll.reset()
            self._take(leases)
            if not self._dealer.claiming:  # drain started while we were claiming
                break
            self._dealer.deal()
            if len(leases) < asked:
                # the Broker had no more for this node: a claim at once would come back
                # empty (one a job at a few hundred jobs/s); wait as after an empty claim,
                # from the first poll (a wake-up still claims at once)
                await self._wait_for_work(poll.next(), asked_at)
        self._dealer.hand_back_ready()

    async def _wait_for_work(self, poll: float, asked_at: float) -> None:
        """Wait for a wake-up, the poll or a due time; a claim may be lent meanwhile."""
        self._loop_idle = True
        try:
            await self._wakeup.wait(self._idle_wait(poll, asked_at))
        finally:
            self._loop_idle = False

    def _take(self, leases: list[Lease]) -> None:
        """Hold the leases a claim brought (each job ready for a worker)."""
        self.claimed += len(leases)
        hold, push = self._flights.hold, self._dealer.push
        for lease in leases:
            flight = hold(lease)
            if flight is None:
                # The Broker re-issued a job whose older attempt is still here, so
                # that lease is gone (it expired while we were cut off): stop the old
                # attempt and hand this lease back. One table entry per job, never
                # two runs at once (jobtrio sim --seed 305 --nodes 7 --algorithm
                # bully --duration 40 --clients 4 died of a KeyError here).
                self.leases_lost([lease.job.id])
                self._reports_send.send_nowait(Report(released(lease), lease.job, -1, 0.0))
                continue
            push(flight)

    def lend_claim(self) -> ClaimOffer | None:
        """A claim for the group commit to make with its enqueue, or None.

        Lent only while the claim loop waits for work after an empty claim (so
        the jobs a submission brings are what it would claim next) and wants
        jobs; the loop then claims nothing until ``claim_answered``. The claim
        is the one the loop would make (its size, lease and scope).
        """
        if (
            not self._loop_idle
            or self._lent is not None
            or not self._dealer.claiming
            or self._claim_unanswered
            or self._previous_to_expire
        ):
            return None
        self._update_window()
        want = self._claim_wanted()
        if not want:
            return None
        offer = ClaimOffer(
            self.node_id,
            min(want, self._settings.dispatch_batch),
            self._settings.job_lease,
            self._plan.scope(self._registry.types(), self._flights.held, self._rng),
        )
        self._lent = trio.Event()  # once the offer is made: a lent claim is always answered
        return offer

    def claim_answered(self, offer: ClaimOffer, leases: list[Lease] | None) -> None:
        """The lent claim's leases (None: no answer came; it may have leased jobs, which
        the loop hands back before its next claim, as after its own unanswered claims)."""
        lent, self._lent = self._lent, None
        if leases is None:
            self._claim_unanswered = True
            self.wake()
        elif leases:
            self._take(leases)
            if self._dealer.claiming:
                self._dealer.deal()
            else:  # drain started meanwhile: the loop has handed back its own already
                self._dealer.hand_back_ready()
            if len(leases) == offer.n:  # more may be waiting: the loop claims again
                self.wake()
        if lent is not None:
            lent.set()

    async def _expire_previous_incarnation(self) -> None:
        """Let the leases this node's previous process held run out now, before the first claim.

        That process is dead (a node id runs one process at a time), so its
        leases (the jobs it was running and those it had prefetched) would only
        wait out ``JOB_LEASE`` before the leader's reaper hands them back. Each is
        renewed for zero seconds with its own token, the same token-checked move
        the heartbeat makes: a lease the reaper or another node got to first is
        left alone, and the rest go back at the leader's next duty tick, counted
        as expirations toward ``POISON_LIMIT`` as before, since the Broker cannot
        tell a prefetched job from the one that may have killed the process.
        Before the first claim, every lease under this id that this dispatcher
        does not hold is the previous process's: no clocks are compared.
        """
        previous = [
            (lease.job.id, lease.token)
            for lease in await self._broker.running()
            if lease.job.node_id == self.node_id and lease.job.id not in self._flights
        ]
        if previous:
            lost = await self._broker.renew(previous, 0.0, self._clock())
            self.expired_at_start = len(previous) - len(lost)
            log.warning(
                "let %d leases of this node's previous process run out (to be requeued now)",
                self.expired_at_start,
            )
        self._previous_to_expire = False

    async def _hand_back_unanswered(self) -> None:
        """Hand back at once the jobs a claim leased to this node without its reply arriving.

        A claim that failed (a lost reply, a Redis timeout) may have leased jobs
        all the same. Left alone, their leases would expire and each expiry
        counts toward ``POISON_LIMIT``: a flaky link would fail healthy jobs as
        poison. They are the leases under this node's id that it does not hold,
        claimed since this incarnation started (on its own clock); they go back
        unrun and uncounted (``released``). A previous incarnation's leases are
        left to expire and count, since one of them may be the job that killed it.
        """
        mine = [
            lease
            for lease in await self._broker.running()
            if lease.job.node_id == self.node_id
            and lease.job.id not in self._flights
            and lease.job.started_at is not None
            and lease.job.started_at >= self._since
        ]
        if mine:
            released = await self._broker.finish(
                [Finish(lease.job.id, lease.token, "released") for lease in mine], self._clock()
            )
            back = [job for job in released if job is not None]
            self.handed_back += len(back)
            self._recorder.record(back)
            log.warning("handed back %d jobs a claim without an answer had leased", len(back))
        self._claim_unanswered = False
