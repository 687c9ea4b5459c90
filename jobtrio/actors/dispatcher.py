"""Claim jobs when workers are free, hand each to a worker, report outcomes.

The dispatcher is one actor made of parts, one concept a module under
``actors/dispatch/``, that share one table of in-flight attempts
(``Flights``) and talk through a small method surface, a channel of outcomes
and two wake-ups (no part edits another's state):

- the claim loop (``Claims``) takes a batch from the Broker only when
  workers are idle, with an adaptive prefetch, and lends its claim to the
  node's group commit while it waits for work;
- the dealer (``Dealer``) holds the claimed jobs in a local priority queue
  and deals each to an idle worker with the configured load-balancing
  strategy;
- ``WORKER_COUNT`` worker loops (``Workers``) each run one attempt at a
  time under a cancel scope carrying the job's timeout, and send its outcome
  to the finisher;
- the finisher (``Finisher``) sends outcomes to the Broker in batches, with
  the lease token, and records, counts and publishes the jobs it gets back;
- progress reports are coalesced into one Broker move an interval
  (``ProgressReports``).

This class wires them, runs their loops in one nursery (restarted whole by
the node's supervisor after a crash, see ``_recover``) and is the face the
rest of the node uses: the lease heartbeat renews the table's leases, a
cancel request interrupts an attempt, and a graceful stop drains.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable
from typing import Any

import trio

from ..backends.base import (
    Broker,
    Lease,
)
from ..balancing import Balancer
from ..config import Settings
from ..events import EventBus
from ..eventstream import job_fields
from ..jobs import Job
from ..metrics import NodeMetrics
from ..processors import Registry
from .dispatch.claims import ClaimOffer, Claims
from .dispatch.dealer import Dealer
from .dispatch.finisher import Finisher
from .dispatch.flights import (
    LEASE_LOST,
    SHUTDOWN,
    Flights,
    Report,
    unstarted,
)
from .dispatch.gcpace import young_generation
from .dispatch.health import BrokerHealth
from .dispatch.progress import ProgressReports
from .dispatch.workers import Workers
from .recorder import Recorder
from .signals import Wakeup

log = logging.getLogger("jobtrio.dispatcher")

#: How long a stopping node waits, past the grace, for interrupted attempts to be handed
#: back (at least a lease: after that the leases expire and the leader requeues anyway).
HAND_BACK_TIMEOUT = 5.0


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
        self._events = events
        self._metrics = metrics
        self._clock = clock
        self._rng = rng or random.Random()
        self._flights = Flights()
        self._capacity = Wakeup()
        self._health = BrokerHealth(metrics)
        self._reports_send, reports_recv = trio.open_memory_channel[Report](math.inf)
        self._dealer = Dealer(
            node_id,
            settings.worker_count,
            Balancer(settings.load_balancer_strategy, self._rng),
            self._reports_send,
            recorder,
            events,
            metrics,
            clock,
        )
        self.workers = self._dealer.workers
        self._claims = Claims(
            node_id,
            settings,
            broker,
            registry,
            self._flights,
            self._dealer,
            self._reports_send,
            recorder,
            self._health,
            self._capacity,
            clock,
            self._rng,
            self.leases_lost,
        )
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
            self._claims.worker_freed,
        )

    # -- views for other actors ---------------------------------------------------
    @property
    def claimed(self) -> int:
        """Jobs this node's claims brought (its own and the lent ones)."""
        return self._claims.claimed

    @property
    def handed_back(self) -> int:
        """Jobs handed back after claims whose answer was lost."""
        return self._claims.handed_back

    @property
    def expired_at_start(self) -> int:
        """Leases of this node's previous process let run out before its first claim."""
        return self._claims.expired_at_start

    @property
    def prefetch_window(self) -> int:
        """How many jobs beyond its idle workers this node claims now."""
        return self._claims.prefetch_window

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
        self._claims.wake()

    def due_at(self, at: float) -> None:
        """Scheduled jobs this node accepted come due at ``at`` (``Claims.due_at``)."""
        self._claims.due_at(at)

    def lend_claim(self) -> ClaimOffer | None:
        """A claim for the group commit to make with its enqueue (``Claims.lend_claim``)."""
        return self._claims.lend_claim()

    def probe_in_flight(self) -> trio.Event | None:
        """Set once the claim loop's probe in flight is answered (``Claims.probe_in_flight``)."""
        return self._claims.probe_in_flight()

    def claim_answered(self, offer: ClaimOffer, leases: list[Lease] | None) -> None:
        """The lent claim's leases, or None if no answer came (``Claims.claim_answered``)."""
        self._claims.claim_answered(offer, leases)

    def waits_for_worker(self, job_id: str) -> bool:
        """``job_id`` is dealt to a worker here that has not taken it up yet (its task
        is woken and runs in trio's next scheduling round)."""
        flight = self._flights.get(job_id)
        return flight is not None and flight.worker >= 0 and not flight.begun

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
        self._claims.wake()
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
        with young_generation():  # claims make hundreds of objects at once (see gcpace)
            async with trio.open_nursery() as nursery:
                self._workers.start(nursery)
                nursery.start_soon(self._finisher.run)
                nursery.start_soon(self._progress.run)
                task_status.started()
                await self._claims.run()
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
        self._claims.restarted()
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

    def _lingering_pays(self) -> bool:
        """Whether the finisher may wait for more outcomes: the node claims and a worker
        runs a job."""
        return self._dealer.claiming and self._dealer.working()
