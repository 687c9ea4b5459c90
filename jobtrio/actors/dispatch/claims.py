"""The claim loop: take jobs from the Broker only when workers will soon be free.

The loop takes a batch from the Broker only when workers are idle
(credit-based: never more jobs than idle workers plus a small prefetch, so
nothing waits long on a node while another could run it), holds each lease
in the in-flight table and has the dealer deal the jobs to workers.

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

While the loop waits for work after an empty claim, it lends its next claim
to the node's group commit (``lend_claim``), which makes it with an enqueue
in one Broker call and hands the leases back (``claim_answered``). A claim
the loop makes after such a wait (a poll, or a wake-up) is a probe: a group
commit that comes while one is in flight waits for its answer
(``probe_in_flight``) and then borrows the claim, instead of enqueueing alone
and waking the loop for a claim of its own (on Redis the enqueue could not
go out before the probe's answer anyway: the node's calls share one
pipelined connection; at 500 single submissions a second a fifth of the
jobs came that way, each waiting for the probe, the enqueue, and a claim).
"""

from __future__ import annotations

import heapq
import logging
import math
import random
from collections.abc import Callable
from dataclasses import dataclass

import trio

from ...backends.base import BackendUnavailable, Broker, ClaimScope, Finish, Lease
from ...backoff import Backoff
from ...config import Settings
from ...processors import Registry
from ..recorder import Recorder
from ..signals import Wakeup
from .dealer import Dealer
from .flights import Flights, Report, released
from .health import BROKER_RETRY, BrokerHealth

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
#: at (``Claims.due_at``), at most this many (later ones are found by the poll).
DUE_TIMES_KEPT = 64


@dataclass(slots=True, frozen=True)
class ClaimOffer:
    """A claim the dispatcher lends its node's group commit (``Claims.lend_claim``):
    made with an enqueue in one Broker call (``Broker.enqueue_and_claim``), answered by
    ``Claims.claim_answered``."""

    node_id: str
    n: int
    lease_seconds: float
    scope: ClaimScope


class Claims:
    def __init__(
        self,
        node_id: str,
        settings: Settings,
        broker: Broker,
        registry: Registry,
        flights: Flights,
        dealer: Dealer,
        reports: trio.MemorySendChannel[Report],
        recorder: Recorder,
        health: BrokerHealth,
        capacity: Wakeup,
        clock: Callable[[], float],
        rng: random.Random,
        leases_lost: Callable[[list[str]], None],
    ) -> None:
        self.node_id = node_id
        self._settings = settings
        self._broker = broker
        self._registry = registry
        self._flights = flights
        self._dealer = dealer
        self._reports_send = reports
        self._recorder = recorder
        self._health = health
        #: Set when a worker is free or outcomes left the table: the window may want jobs.
        self._capacity = capacity
        self._clock = clock
        self._rng = rng
        #: Stops the attempt of a job the Broker re-issued (see ``_take``).
        self._leases_lost = leases_lost
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
        #: This incarnation's first moment on its own clock: a lease whose job was claimed
        #: before it is a previous incarnation's (see ``_hand_back_unanswered``).
        self._since = clock()
        #: The previous incarnation's leases (job id, token), let run out before the
        #: first claim: never handed back uncounted, whatever their started_at says (that
        #: process may have run on a host whose clock was ahead of this one's). By token:
        #: the same job claimed again by this incarnation is this incarnation's.
        self._previous_leases: set[tuple[str, str]] = set()
        #: A claim failed without an answer: it may have leased jobs all the same.
        self._claim_unanswered = False
        #: The claim loop waits for work after an empty claim (a claim may be lent then).
        self._loop_idle = False
        #: Set when a lent claim is answered; None while no claim is lent.
        self._lent: trio.Event | None = None
        #: Set when the probe in flight is answered; None while no probe is in flight.
        self._probe: trio.Event | None = None
        #: The types and the scope of a plan without weights or caps (see ``_scope``).
        self._fixed_scope: tuple[list[str], ClaimScope] | None = None
        #: The leases of this node's previous incarnation are still to be let go of.
        self._previous_to_expire = True
        self.handed_back = 0
        self.expired_at_start = 0
        self.claimed = 0

    def restarted(self) -> None:
        """The dispatcher runs again after a crash of its old run (see ``Dispatcher._recover``)."""
        # A claim lent to the group commit (``_lent``) stays lent: its answer comes all the
        # same (claim_answered), and the new loop waits for it as the old one did instead
        # of claiming beside it
        self._loop_idle = False

    @property
    def prefetch_window(self) -> int:
        """How many jobs beyond its idle workers this node claims now (see the module doc)."""
        return self._window

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

    def worker_freed(self) -> None:
        """A worker is free again: the claim loop claims if the window wants jobs."""
        if self.wanted():
            self._capacity.set()

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

    def wanted(self) -> int:
        """How many jobs to claim now: 0 until the ready queue is half spent."""
        window, waiting = self._window, self._dealer.waiting
        want = self._dealer.idle + window - waiting
        if want <= 0 or (waiting and want < window // 2):
            return 0
        return want

    async def run(self) -> None:
        """Claim while the node takes work; hand back the unstarted jobs when it stops."""
        poll = Backoff(IDLE_POLL_FIRST, IDLE_POLL_MAX)
        backoff = Backoff(*BROKER_RETRY)
        probing = False  # the next claim follows a wait for work (see the module doc)
        while self._dealer.claiming:
            self._update_window()
            want = self.wanted()
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
                scope = self._scope()
                if probing:
                    self._probe = trio.Event()
                try:
                    leases = await self._broker.claim(
                        self.node_id, asked, self._settings.job_lease, asked_at, scope
                    )
                finally:
                    self._probe_answered()
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
                probing = True
                continue
            poll.reset()
            probing = False
            self._take(leases)
            if not self._dealer.claiming:  # drain started while we were claiming
                break
            self._dealer.deal()
            if len(leases) < asked:
                # the Broker had no more for this node: a claim at once would come back
                # empty (one a job at a few hundred jobs/s); wait as after an empty claim,
                # from the first poll (a wake-up still claims at once)
                await self._wait_for_work(poll.next(), asked_at)
                probing = True
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
                self._leases_lost([lease.job.id])
                self._reports_send.send_nowait(Report(released(lease), lease.job, -1, 0.0))
                continue
            push(flight)

    def probe_in_flight(self) -> trio.Event | None:
        """Set once the loop's probe in flight is answered (None: no probe is in flight).

        Once it is set, the loop waits for work again (an empty or short answer) or
        has jobs to deal: a ``lend_claim`` then lends the claim or says no, as ever.
        """
        return self._probe

    def _probe_answered(self) -> None:
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.set()

    def _scope(self) -> ClaimScope:
        """The next claim's scope (``QueuePlan.scope``). A plan without weights or caps
        (the default: every queue) draws nothing and holds nothing, so its scope changes
        only with the types this node runs: kept, not rebuilt for each claim (3.2 of a
        lent claim's 5.5 us hot, most of its 22-25 us on an idle node's cold path)."""
        plan, types = self._plan, self._registry.types()
        if plan.weights is not None or plan.concurrency:
            return plan.scope(types, self._flights.held, self._rng)
        kept = self._fixed_scope
        if kept is None or kept[0] != types:
            kept = self._fixed_scope = (types, plan.scope(types, self._flights.held, self._rng))
        return kept[1]

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
        want = self.wanted()
        if not want:
            return None
        offer = ClaimOffer(
            self.node_id,
            min(want, self._settings.dispatch_batch),
            self._settings.job_lease,
            self._scope(),
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
            self._previous_leases.update(previous)
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
        left to expire and count, since one of them may be the job that killed it:
        those let run out at start by their tokens, and any other by its start
        before this incarnation's.
        """
        previous = self._previous_leases
        mine = [
            lease
            for lease in await self._broker.running()
            if lease.job.node_id == self.node_id
            and lease.job.id not in self._flights
            and (lease.job.id, lease.token) not in previous
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
