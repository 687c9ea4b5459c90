"""Send attempts' outcomes to the Broker in batches, and account for the answers.

One ``Broker.finish`` call carries many outcomes, each with its lease token
(a refused one means the lease moved on: the Broker's copy is recorded
instead). On a busy node the finisher lingers a moment for more
(``FINISH_LINGER``, see there): jobs that await I/O end a few at a time, and
one call each few jobs cost more than the jobs' own work; a lone outcome goes
at once. The answered jobs are recorded, counted in the metrics, published
as events and told to the node (``on_ended``), and their entries leave the
in-flight table.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import trio

from ...backends.base import BackendUnavailable, Broker
from ...backoff import Backoff
from ...events import EventBus
from ...jobs import Job
from ...metrics import NodeMetrics
from ..recorder import Recorder
from ..signals import Wakeup
from .flights import Flights, Report
from .health import BROKER_RETRY, BrokerHealth

log = logging.getLogger("jobtrio.dispatcher")

#: Longest the finisher holds outcomes for more to share their Broker call (one script
#: call is 20-50 us of this node's CPU plus the script's fixed cost in Redis, whatever it
#: carries). It lingers only when at least ``FINISH_FLURRY`` outcomes came together (jobs
#: are ending in numbers: a lone job's outcome, or one of a few long jobs', goes at once),
#: while a worker still runs a job, and while the node claims (a drain or a stop sends
#: at once); it stops at ``FINISH_TARGET`` outcomes or when no worker runs a job. A
#: tenth of ``PREFETCH_HORIZON``, the wait the claim side already accepts: with jobs that
#: do one Redis round trip, outcomes came in sixes and a finish per six jobs.
FINISH_LINGER = 0.002
#: Outcomes arriving together that make the finisher linger (see ``FINISH_LINGER``).
FINISH_FLURRY = 2
#: Outcomes a lingering finisher waits for before it sends (a noop drain's finishes carry
#: about 32 without lingering; more gains little: the fixed cost is then a few us a job).
FINISH_TARGET = 64


class Finisher:
    def __init__(
        self,
        broker: Broker,
        flights: Flights,
        reports: trio.MemoryReceiveChannel[Report],
        recorder: Recorder,
        events: EventBus,
        metrics: NodeMetrics,
        health: BrokerHealth,
        capacity: Wakeup,
        clock: Callable[[], float],
        lingering_pays: Callable[[], bool],
        on_ended: Callable[[list[Job]], None] | None = None,
    ) -> None:
        self._broker = broker
        self._flights = flights
        self._reports_recv = reports
        self._recorder = recorder
        self._events = events
        self._metrics = metrics
        self._health = health
        #: Set after each batch: its entries left the table (the claim loop may claim).
        self._capacity = capacity
        self._clock = clock
        #: Whether waiting for more outcomes can pay now: the node claims and a worker
        #: runs a job (else no more come soon, or a stop wants them sent at once).
        self._lingering_pays = lingering_pays
        #: Told of every job a finish answered for (the node's ``Releases``: a job that
        #: ended with dependents released them in the Broker).
        self._on_ended = on_ended
        #: Outcomes taken and held while lingering (not sent yet: a crash leaves them to
        #: ``take_unsent``); the linger's scope.
        self._lingering: list[Report] = []
        self._linger_scope: trio.CancelScope | None = None
        self._metric_children: dict[tuple[str, str], tuple[Any, Any]] = {}
        self.finished = 0

    def send_now(self) -> None:
        """Stop lingering: the outcomes held for company go now (a drain began)."""
        if self._linger_scope is not None:
            self._linger_scope.cancel()

    def take_unsent(self) -> list[Report]:
        """After a crash cancelled ``run``: the outcomes it held or had not yet taken,
        for the next run (they are sent again from the queue)."""
        unsent, self._lingering = self._lingering, []
        self._linger_scope = None
        while True:
            try:
                unsent.append(self._reports_recv.receive_nowait())
            except trio.WouldBlock:
                break
        return unsent

    async def run(self) -> None:
        """Send outcomes as they come, until cancelled (see the module doc)."""
        backoff = Backoff(*BROKER_RETRY)
        receive_more = self._receive_more
        while True:
            reports = [await self._reports_recv.receive()]
            receive_more(reports)
            if (
                len(reports) >= FINISH_FLURRY
                and self._lingering_pays()
                and len(reports) < FINISH_TARGET
            ):
                await self._linger(reports)
            to_send = [r for r in reports if r.finish is not None]
            if to_send and self._events.company_wanted:
                # the event recorder waits to append with our call: it makes its call in
                # the round we yield (shielded: the outcomes taken are not dropped), and
                # the two go to the Broker together (see ``EventBus.company``)
                self._events.company()
                await trio.lowlevel.cancel_shielded_checkpoint()
            while to_send:
                try:
                    results = await self._broker.finish(
                        [r.finish for r in to_send],  # type: ignore[misc]
                        self._clock(),
                    )
                    break
                except BackendUnavailable as exc:
                    self._health.mark(False, str(exc))
                    await trio.sleep(backoff.next())
            else:
                results = []
            backoff.reset()
            self._account(to_send, results)
            refused = [r.job.id for r, job in zip(to_send, results, strict=True) if job is None]
            if refused:
                await self._record_current(refused)
            let_go = self._flights.let_go
            for report in reports:
                let_go(report.job)  # if the entry is this attempt's
            self._metrics.worker_active.set(len(self._flights))
            self._capacity.set()

    def _receive_more(self, reports: list[Report]) -> None:
        """Add the outcomes queued now to ``reports`` (at most 1000 in all)."""
        receive = self._reports_recv.receive_nowait
        while len(reports) < 1000:
            try:
                reports.append(receive())
            except trio.WouldBlock:
                break

    async def _linger(self, reports: list[Report]) -> None:
        """Gather outcomes into ``reports`` for up to ``FINISH_LINGER`` (see there)."""
        self._lingering = reports  # left set if a crash cancels us: see ``take_unsent``
        with trio.move_on_after(FINISH_LINGER) as self._linger_scope:
            while len(reports) < FINISH_TARGET and self._lingering_pays():
                reports.append(await self._reports_recv.receive())
                self._receive_more(reports)
        self._lingering, self._linger_scope = [], None

    async def _record_current(self, job_ids: list[str]) -> None:
        """Record what the Broker holds for jobs whose outcome it refused.

        A refusal means the lease moved on (cancelled, requeued), or that an
        earlier try of this very call succeeded and only its reply was lost
        (an outage): either way the Broker's copy is the truth to record.
        """
        try:
            current = await self._broker.get_many(job_ids)
        except BackendUnavailable:
            return  # the leader's reconciliation and later snapshots catch up
        self._recorder.record(current.values())

    def _metric_pair(self, outcome: str, job_type: str) -> tuple[Any, Any]:
        key = (outcome, job_type)
        pair = self._metric_children.get(key)
        if pair is None:
            pair = (
                self._metrics.jobs_total.labels(outcome),
                self._metrics.job_processing_duration.labels(job_type, outcome),
            )
            self._metric_children[key] = pair
        return pair

    def _account(self, reports: list[Report], results: list[Job | None]) -> None:
        done: list[Job] = []
        durations: dict[tuple[str, str], list[float]] = {}
        for report, job in zip(reports, results, strict=True):
            outcome = report.finish.outcome  # type: ignore[union-attr]
            if job is None:
                log.info("outcome of job %s refused: its lease had moved on", report.job.id)
                continue
            done.append(job)
            key = (outcome, job.type)
            spent = durations.get(key)
            if spent is None:
                durations[key] = [report.duration]
            else:
                spent.append(report.duration)
        publish_finished(self._events, done)
        self.finished += len(done)
        for (outcome, job_type), spent in durations.items():
            counter, histogram = self._metric_pair(outcome, job_type)
            counter.inc(len(spent))
            if outcome != "released":
                histogram.observe_many(spent)
        self._recorder.record(done)
        if self._on_ended is not None:
            self._on_ended(done)


def publish_finished(events: EventBus, done: list[Job]) -> None:
    """``job.<status>`` of each finished job, in order: one batch a run of one status
    (usually the whole list: every job of a drain completes)."""
    if not done or not events.has_subscribers:
        return
    publish, start = events.publish_jobs, 0
    status = done[0].status
    for i in range(1, len(done)):
        if done[i].status != status:
            publish(f"job.{status}", done[start:i])
            start, status = i, done[i].status
    publish(f"job.{status}", done[start:] if start else done)
