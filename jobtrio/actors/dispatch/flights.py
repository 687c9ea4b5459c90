"""The table of a node's in-flight attempts, and the records that travel with them.

One entry a claimed job, from its claim until the finisher has its
outcome's answer from the Broker: the claim loop adds entries, the workers
run them, the finisher removes them. The table is also what the lease
heartbeat renews, what a cancel request interrupts and what a graceful
shutdown hands back, so one entry per job, never two runs at once.

It also counts the jobs held per queue (claimed, not yet finished), which
the claim loop's scope needs for ``QUEUE_CONCURRENCY``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import trio

from ...backends.base import Finish, Lease
from ...jobs import Job

#: Why an attempt was interrupted from outside (its outcome is not reported as a failure).
CANCELLED, LEASE_LOST, SHUTDOWN = "cancelled", "lease lost", "shutdown"


@dataclass(slots=True)
class InFlight:
    lease: Lease
    worker: int
    scope: trio.CancelScope | None = None
    interrupted: str | None = None
    finished: bool = False  # the outcome is on its way to the Broker
    begun: bool = False  # a worker took it up (``Dispatcher.waits_for_worker``)


@dataclass(slots=True)
class WorkerState:
    index: int
    worker_id: str
    busy: bool = False
    job_id: str | None = None
    job_type: str | None = None
    started_at: float | None = None
    busy_seconds: float = 0.0
    jobs_done: int = 0
    inbox: Any = field(default=None, repr=False)
    #: Dealt to this worker directly, not started yet.
    pending: InFlight | None = field(default=None, repr=False)
    #: The attempt running under the worker's cancel scope, with its timeout and start.
    running: InFlight | None = field(default=None, repr=False)
    timeout: float | None = None
    began: float = 0.0

    @property
    def idle(self) -> bool:
        return not self.busy


@dataclass(slots=True)
class Report:
    """An attempt's outcome on its way to the finisher."""

    finish: Finish | None  # None: nothing to tell the Broker (the lease is gone)
    job: Job
    worker: int
    duration: float


def released(lease: Lease, worker_id: str | None = None) -> Finish:
    """The outcome that hands an attempt back unrun: the job waits again, no retry counted."""
    return Finish(lease.job.id, lease.token, "released", worker_id)


def unstarted(flight: InFlight) -> Finish | None:
    """What to tell the Broker of an attempt that will not start here.

    Handed back (released) when the node is stopping; nothing when it was
    cancelled or its lease was lost, since the Broker has moved the job on.
    """
    if flight.interrupted in (None, SHUTDOWN):
        return released(flight.lease)
    return None


class Flights:
    """The in-flight table: job id -> its attempt here, and the jobs held per queue."""

    def __init__(self) -> None:
        self._table: dict[str, InFlight] = {}
        self._held: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._table)

    def __contains__(self, job_id: str) -> bool:
        return job_id in self._table

    def __iter__(self) -> Iterator[InFlight]:
        return iter(self._table.values())

    def get(self, job_id: str) -> InFlight | None:
        return self._table.get(job_id)

    def job_ids(self) -> list[str]:
        return list(self._table)

    @property
    def held(self) -> Mapping[str, int]:
        """Jobs held per queue (claimed, not yet finished), for the claim's scope."""
        return self._held

    def leases(self) -> list[tuple[str, str]]:
        """(job_id, token) of every attempt this node holds, for the heartbeat."""
        return [(i, f.lease.token) for i, f in self._table.items()]

    def hold(self, lease: Lease) -> InFlight | None:
        """Enter a claimed lease; None if the job has an attempt here already (the
        Broker re-issued it, so the older lease is gone: the caller settles both)."""
        job = lease.job
        if job.id in self._table:
            return None
        flight = InFlight(lease, -1)
        self._table[job.id] = flight
        queue = job.queue
        self._held[queue] = self._held.get(queue, 0) + 1
        return flight

    def let_go(self, job: Job) -> None:
        """Drop ``job``'s entry once its outcome is answered, if the entry is this
        attempt's (the same ``Job`` object): a newer attempt's stays."""
        flight = self._table.get(job.id)
        if flight is not None and flight.lease.job is job:
            del self._table[job.id]
            left = self._held.get(job.queue, 0) - 1
            if left > 0:
                self._held[job.queue] = left
            else:
                self._held.pop(job.queue, None)

    def interrupt(self, job_id: str, reason: str) -> bool:
        """Stop a local attempt (a cancel request, a lost lease, a stop)."""
        flight = self._table.get(job_id)
        if flight is None or flight.finished:
            return False
        flight.interrupted = reason
        if flight.scope is not None:
            flight.scope.cancel()
        return True
