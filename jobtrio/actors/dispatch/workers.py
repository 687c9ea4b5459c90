"""The worker loops: each runs one attempt at a time, with the job's timeout.

``WORKER_COUNT`` loops each run one attempt at a time under a cancel scope
carrying the job's timeout; a worker that finishes deals the ready jobs
itself, and runs the one the strategy deals to it without a channel hop. A
worker keeps one cancel scope for attempt after attempt until one is
cancelled or times out (then it opens a new one): entering and leaving a
scope per attempt cost more than a noop job's own work.

An attempt's outcome (a ``Finish`` with the lease token, or None when the
Broker has moved the job on) goes to the finisher as a ``Report``.
"""

from __future__ import annotations

import functools
import math
import random
from collections.abc import Callable

import trio

from ...backends.base import Finish
from ...config import Settings
from ...payloads import PayloadError, from_payload
from ...processors import JobContext, Registry, UnknownJobType, run_processor
from ...retry import RetryPolicy
from ...text import error_text
from .dealer import Dealer
from .flights import SHUTDOWN, InFlight, Report, WorkerState, released, unstarted
from .progress import ProgressReports
from .results import gathered_problem, result_problem

#: A worker dealt its next job directly (it just finished one) runs it without yielding
#: first until WORKER_SLICE_JOBS jobs or WORKER_SLICE seconds have passed since a worker
#: last came back from a yield (whichever comes first; a clock that stands still, as a
#: simulation's, counts jobs). A yield a job cost 4 us of a noop job's 50-60 us of node
#: CPU; the claim loop, the finisher and the node's I/O now wait at most about
#: WORKER_COUNT turns of (WORKER_SLICE_JOBS + 1) jobs or WORKER_SLICE (5 ms for 10
#: workers), where they waited WORKER_COUNT jobs: far inside the claim's prefetch
#: horizon (PREFETCH_HORIZON, 20 ms). A job that awaits yields anyway, and its
#: worker counts that as the slice's yield (trio rescheduled its task: see
#: ``_UNYIELDED``): with the slice's own yields on top of the jobs' waits, the
#: ``INCR`` drain's workers passed through the scheduler 1.61 times a job, 1.15 without.
WORKER_SLICE = 0.0005
WORKER_SLICE_JOBS = 8


#: What a worker's task holds as its ``custom_sleep_data`` while an attempt runs. trio
#: sets that attribute to None whenever it reschedules a task (its documented contract,
#: ``trio.lowlevel.Task.custom_sleep_data``), so an attempt after which it is None passed
#: through the scheduler: every other task had its turn while it waited. Anything else
#: there (the mark, or what a body's own sleep primitive left without sleeping) counts as
#: no yield, the safe side.
_UNYIELDED = object()


class Workers:
    def __init__(
        self,
        node_id: str,
        settings: Settings,
        registry: Registry,
        dealer: Dealer,
        reports: trio.MemorySendChannel[Report],
        progress: ProgressReports,
        clock: Callable[[], float],
        rng: random.Random,
        on_free: Callable[[], None],
    ) -> None:
        self.node_id = node_id
        self._settings = settings
        self._registry = registry
        self._dealer = dealer
        self._reports_send = reports
        self._progress = progress
        self._clock = clock
        self._rng = rng
        #: Told each time a worker is free again (the claim side may want to claim).
        self._on_free = on_free
        self._retry = RetryPolicy.from_settings(settings)
        self._limiter = trio.CapacityLimiter(settings.worker_count)
        #: When a worker last yielded before a job (trio's clock), and the jobs run since
        #: without one (see ``WORKER_SLICE``).
        self._yielded_at = -math.inf
        self._unyielded = 0

    def start(self, nursery: trio.Nursery) -> None:
        """Start one loop a worker, each with its inbox (the dealer's way to it)."""
        for worker in self._dealer.workers:
            send, recv = trio.open_memory_channel[InFlight](1)
            worker.inbox = send
            nursery.start_soon(self._worker_loop, worker, recv)

    async def _worker_loop(
        self, worker: WorkerState, inbox: trio.MemoryReceiveChannel[InFlight]
    ) -> None:
        while True:
            with trio.CancelScope() as scope:
                await self._work(worker, inbox, scope)  # leaves only by cancellation
            # The scope caught a cancellation: the running attempt was interrupted or
            # timed out (or, rarely, one that had just returned was: nothing runs then).
            flight = worker.running
            if flight is not None:
                worker.running = flight.scope = None
                self._attempt_done(worker, flight, self._cut_off(worker, flight))

    async def _work(
        self,
        worker: WorkerState,
        inbox: trio.MemoryReceiveChannel[InFlight],
        scope: trio.CancelScope,
    ) -> None:
        """Run attempt after attempt under ``scope``; nothing but an attempt cancels it."""
        task = trio.lowlevel.current_task()
        while True:
            if worker.pending is None:
                flight = await inbox.receive()
                now = self._yielded_at = trio.current_time()
                self._unyielded = 0
            else:
                # dealt to us directly: yield first, as the inbox would, so that the claim
                # loop and the finisher keep pace with back-to-back short jobs, once a
                # WORKER_SLICE (see there); an attempt that awaited I/O (a job's Redis
                # round trip) was that yield: everything else ran while it waited
                now = trio.current_time()
                if task.custom_sleep_data is None:
                    self._yielded_at = now
                    self._unyielded = 0
                elif self._unyielded >= WORKER_SLICE_JOBS or now - self._yielded_at >= WORKER_SLICE:
                    await trio.lowlevel.checkpoint()
                    now = self._yielded_at = trio.current_time()
                    self._unyielded = 0
                else:
                    self._unyielded += 1
                flight, worker.pending = worker.pending, None
            task.custom_sleep_data = _UNYIELDED
            worker.began = now
            flight.begun = True
            if flight.interrupted is not None or not self._dealer.claiming:
                finish = unstarted(flight)
            else:
                finish = await self._attempt(worker, flight, scope)
            self._attempt_done(worker, flight, finish)

    def _attempt_done(self, worker: WorkerState, flight: InFlight, finish: Finish | None) -> None:
        duration = trio.current_time() - worker.began
        dealer = self._dealer
        flight.finished = True
        dealer.free(worker)
        worker.busy_seconds += duration
        worker.jobs_done += 1
        self._reports_send.send_nowait(Report(finish, flight.lease.job, worker.index, duration))
        worker.pending = dealer.deal(worker)
        self._on_free()

    async def _attempt(
        self, worker: WorkerState, flight: InFlight, scope: trio.CancelScope
    ) -> Finish | None:
        lease = flight.lease
        job = lease.job
        try:
            processor = self._registry.get(job.type)
        except UnknownJobType as exc:
            # no retry on this node can help: fail now with the reason
            error: str | None = error_text(str(exc))
            return Finish(job.id, lease.token, "failed", worker.worker_id, error=error)
        data = None
        if processor.payload_type is not None:
            try:
                data = from_payload(processor.payload_type, job.payload)
            except PayloadError as exc:
                # the payload will not change on a retry: fail now, naming the field
                error = error_text(f"PayloadError: {exc}")
                return Finish(job.id, lease.token, "failed", worker.worker_id, error=error)
            except Exception as exc:
                # the processor's own payload class refused it (a __post_init__ check):
                # that will not change on a retry either; escaping here crashed the
                # dispatcher, and again each time a lease brought the job back
                error = describe(exc)
                return Finish(job.id, lease.token, "failed", worker.worker_id, error=error)
        if job.dependency_results:
            # the results will not change on a retry either: fail now, saying why
            error = gathered_problem(job, self._settings.max_payload_bytes)
            if error is not None:
                return Finish(job.id, lease.token, "failed", worker.worker_id, error=error)
        ctx = JobContext(
            job_id=job.id,
            type=job.type,
            payload=job.payload,
            priority=job.priority,
            attempt=len(job.attempts),
            retry_count=job.retry_count,
            max_retries=job.max_retries,
            node_id=self.node_id,
            worker_id=worker.worker_id,
            data=data,
            results=job.results,
            reporter=None
            if processor.mode == "process"
            else functools.partial(self._progress.report, job.id, lease.token),
        )
        timeout = job.timeout if job.timeout is not None else processor.default_timeout
        worker.timeout = timeout
        outcome, result, error = "completed", None, None
        # From here until the scope is cleared, interrupt() may cancel the scope: the
        # Cancelled leaves _work and _worker_loop reports the attempt (see _cut_off).
        worker.running = flight
        flight.scope = scope
        if timeout is not None:
            scope.deadline = worker.began + timeout
        try:
            if processor.mode == "async":  # one coroutine frame less per job
                result = await processor.fn(ctx)  # type: ignore[misc]
            else:
                result = await run_processor(processor, ctx, self._limiter)
        except (Exception, SystemExit) as exc:
            # SystemExit: a processor's sys.exit() (async or thread mode) is its failure; it
            # stopped the whole node, and the next node to lease the job after it
            outcome, error = "failed", describe(exc)
        if timeout is not None:
            scope.deadline = math.inf  # before any checkpoint: a finished attempt is not cut off
        worker.running = flight.scope = None
        if outcome == "completed":
            error = result_problem(result, self._settings.max_result_bytes)
            if error is not None:  # never sent: the Broker holds no part of it
                outcome = "failed"
        if outcome == "completed":
            return Finish(job.id, lease.token, "completed", worker.worker_id, result=result)
        return self._failed(worker, flight, outcome, error)

    def _cut_off(self, worker: WorkerState, flight: InFlight) -> Finish | None:
        """The outcome of an attempt whose scope was cancelled while it ran."""
        if flight.interrupted == SHUTDOWN:
            return released(flight.lease, worker.worker_id)
        if flight.interrupted is not None:
            return None  # cancelled or lease lost: the Broker already moved on
        timeout = worker.timeout  # only a deadline or interrupt() cancels the scope
        why = "interrupted" if timeout is None else f"timed out after {timeout:g}s"
        return self._failed(worker, flight, "timeout", why)

    def _failed(
        self, worker: WorkerState, flight: InFlight, outcome: str, error: str | None
    ) -> Finish:
        job = flight.lease.job
        retry_at = None
        if job.retry_count < job.max_retries:
            retry_at = self._clock() + self._retry.delay(job.retry_count + 1, self._rng)
        return Finish(
            job.id,
            flight.lease.token,
            outcome,  # type: ignore[arg-type]
            worker.worker_id,
            error=error,
            retry_at=retry_at,  # type: ignore[arg-type]
        )


def describe(exc: BaseException) -> str:
    """A processor's exception as the job's error (``error_text``: cut, valid Unicode)."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception as broken:  # a processor's own exception class whose __str__ fails
        text = f"(its message could not be read: {type(broken).__name__})"
    return error_text(f"{name}: {text}" if text else name)
