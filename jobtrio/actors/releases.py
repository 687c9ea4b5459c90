"""Tell the Store and the event stream about jobs their parents released.

The Broker settles a job's dependents inside the move that ends the job
(``backends/dependencies.py``): that move answers with the parent only, so
the released children (now due, or failed because a parent failed, and their
own children in a cascade) would reach the Store only at their next move, and
a child failed this way has none. This actor reads them back from the Broker
after the fact, records them and publishes ``job.released`` (now due) or
``job.failed``. It is off the hot path (jobs without dependents never reach
it) and only a view: the Broker's state is already right, and a reply lost
here is repaired by the leader's reconciliation.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable

from ..backends.base import BackendUnavailable, Broker
from ..events import EventBus
from ..eventstream import job_fields
from ..jobs import Job, JobStatus
from ..metrics import NodeMetrics
from .recorder import Recorder
from .signals import Wakeup

log = logging.getLogger("jobtrio.releases")

#: Jobs read back per Broker call.
BATCH = 500


class Releases:
    def __init__(
        self,
        broker: Broker,
        recorder: Recorder,
        events: EventBus,
        metrics: NodeMetrics | None = None,
        on_released: Callable[[], None] | None = None,
    ) -> None:
        self._metrics = metrics
        #: Told when a job read back is due now (the dispatcher's wake: claim it at once
        #: rather than at the next idle poll, up to 0.1 s later, a chain step each).
        self._on_released = on_released
        self._broker = broker
        self._recorder = recorder
        self._events = events
        self._parents: dict[str, list[str]] = {}  # ended job id -> its dependents
        self._wakeup = Wakeup()
        self.released = 0

    def ended(self, jobs: Iterable[Job | None]) -> None:
        """Jobs the Broker just answered for: those that ended with dependents are read."""
        for job in jobs:
            if job is not None and job.terminal and job.has_dependents():
                self._parents[job.id] = list(job.dependents)
                self._wakeup.set()

    async def run(self) -> None:
        while True:
            await self._wakeup.wait(math.inf)
            parents, self._parents = self._parents, {}
            todo = sorted({child for children in parents.values() for child in children})
            seen: set[str] = set()
            while todo:
                batch, todo = todo[:BATCH], todo[BATCH:]
                seen.update(batch)
                try:
                    held = await self._broker.get_many(batch)
                except BackendUnavailable as exc:
                    log.info("released jobs not read back (%s); reconciliation will", exc)
                    break
                jobs = list(held.values())
                self._recorder.record(jobs)
                due = any(j.status != JobStatus.WAITING and not j.terminal for j in jobs)
                if due and self._on_released is not None:
                    self._on_released()
                for job in jobs:
                    if job.status == JobStatus.WAITING:
                        continue  # still waits for another parent
                    self.released += 1
                    if self._metrics is not None:
                        outcome = "failed" if job.terminal else "released"
                        self._metrics.dependents_released.labels(outcome).inc()
                    if self._events.has_subscribers:
                        kind = "job.failed" if job.terminal else "job.released"
                        self._events.publish(kind, job=job_fields(job))
                    if job.terminal:  # failed by its parent: its own children were too
                        todo += [c for c in job.dependents if c not in seen]
