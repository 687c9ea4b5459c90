"""The ready queue, and the workers it deals to.

Claimed jobs wait here in a local priority queue (best first, FIFO within
a priority) until a worker is idle; the configured load-balancing strategy
chooses among the idle workers. Both the claim loop (after a claim) and a
worker that just finished deal: the finishing worker gets the job the
strategy deals to it back at once instead of through its inbox.

Dealing stops for good when the node stops claiming (``stop``): a stopping
node hands the jobs still waiting back to the Broker unrun.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable

import trio

from ...balancing import Balancer
from ...events import EventBus
from ...jobs import Job
from ...metrics import NodeMetrics
from ..recorder import Recorder
from .flights import InFlight, Report, WorkerState, unstarted


class Dealer:
    def __init__(
        self,
        node_id: str,
        worker_count: int,
        balancer: Balancer,
        reports: trio.MemorySendChannel[Report],
        recorder: Recorder,
        events: EventBus,
        metrics: NodeMetrics,
        clock: Callable[[], float],
    ) -> None:
        self.workers = [WorkerState(i, f"{node_id}/w{i}") for i in range(worker_count)]
        self._balancer = balancer
        self._reports = reports
        self._recorder = recorder
        self._events = events
        self._metrics = metrics
        #: The queue-wait histogram's one series, looked up once: a deal is often one job
        #: (a worker that just finished takes the next), and the lookup per deal cost more
        #: than the observation.
        self._queue_wait = metrics.queue_wait.labels()
        self._clock = clock
        #: Claimed, not yet started: (-priority, seq, attempt), a local priority queue.
        self._ready: list[tuple[int, int, InFlight]] = []
        self._seq = itertools.count()
        self._idle = len(self.workers)
        self._claiming = True
        #: Attempts dealt to a worker so far (the claim side measures its rate by it).
        self.started = 0

    @property
    def claiming(self) -> bool:
        """The node still takes work (no stop has begun)."""
        return self._claiming

    @property
    def idle(self) -> int:
        return self._idle

    @property
    def waiting(self) -> int:
        """Claimed jobs no worker has started."""
        return len(self._ready)

    def working(self) -> bool:
        """A worker runs a job."""
        return self._idle < len(self.workers)

    def push(self, flight: InFlight) -> None:
        """Queue a claimed attempt for a worker."""
        job = flight.lease.job
        heapq.heappush(self._ready, (-job.priority, next(self._seq), flight))

    def deal(self, me: WorkerState | None = None) -> InFlight | None:
        """Deal ready jobs, best first, to idle workers with the strategy.

        ``me`` is the calling worker, just idle: a job the strategy deals to it
        is returned for it to run at once instead of going through its inbox.
        """
        ready = self._ready
        if not ready or not self._idle or not self._claiming:
            return None
        now = self._clock()
        started: list[Job] = []
        waits: list[float] = []
        mine = None
        workers, choose = self.workers, self._balancer.choose
        while ready and self._idle:
            flight = heapq.heappop(ready)[2]
            job = flight.lease.job
            if flight.interrupted is not None:  # cancelled or lost while it waited
                flight.finished = True
                self._reports.send_nowait(Report(None, job, -1, 0.0))
                continue
            # the strategy chooses among the idle workers; the one that just finished is
            # often the only one, and then it is the whole list without a scan
            if self._idle == 1 and me is not None and not me.busy:
                idle = [me]
            else:
                idle = [w for w in workers if not w.busy]
            worker = workers[choose(idle, job.priority)]
            worker.busy = True
            self._idle -= 1
            worker.job_id = job.id
            worker.job_type = job.type
            worker.started_at = now
            flight.worker = worker.index
            job.worker_id = worker.worker_id
            if job.attempts:
                job.attempts[-1].worker_id = worker.worker_id
            if worker is me:
                mine = flight
            else:
                worker.inbox.send_nowait(flight)
            started.append(job)
            due = job.scheduled_at if job.scheduled_at is not None else job.created_at
            waits.append(now - due if now > due else 0.0)
        if started:
            self._queue_wait.observe_many(waits)
            self.started += len(started)
            self._recorder.record(started)
            self._metrics.worker_active.set(len(workers) - self._idle)
            self._events.publish_jobs("job.started", started)
        return mine

    def free(self, worker: WorkerState) -> None:
        """``worker`` ended its attempt: it is idle again."""
        worker.busy = False
        self._idle += 1
        worker.job_id = worker.job_type = worker.started_at = None

    def stop(self) -> None:
        """Deal no more (a stop began; ``hand_back_ready`` then empties the queue)."""
        self._claiming = False

    def hand_back_ready(self) -> None:
        """Hand back every claimed job no worker has started (graceful stop)."""
        while self._ready:
            flight = heapq.heappop(self._ready)[2]
            flight.finished = True
            self._reports.send_nowait(Report(unstarted(flight), flight.lease.job, -1, 0.0))

    def reset(self) -> None:
        """Forget the queue and every worker's attempt (a restart after a crash, whose
        caller hands back every attempt of the table)."""
        self._ready.clear()
        for worker in self.workers:
            worker.busy = False
            worker.job_id = worker.job_type = worker.started_at = None
            worker.pending = worker.running = None
        self._idle = len(self.workers)
