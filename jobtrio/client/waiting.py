"""The bookkeeping of waiting for jobs to end, apart from the polling I/O.

``wait`` and ``wait_many`` of ``Client`` and ``AsyncClient`` poll the same
way (a backoff up to a deadline, polling on through ``Unavailable``) and
differ only in how they sleep; what they wait for, and what they say when
time runs out, is kept here so the two report alike.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from ..jobs import TERMINAL_STATUSES, Job
from .errors import WaitTimeout

#: The ``status`` filter of a listing of finished jobs.
TERMINAL = ",".join(sorted(str(s) for s in TERMINAL_STATUSES))


def deadline_after(timeout: float | None) -> float | None:
    """A monotonic deadline (None: wait for ever), so a wait is not stretched or cut short
    by the wall clock moving."""
    return None if timeout is None else time.monotonic() + timeout


def wait_timeout(job_id: str, timeout: float | None, job: Job | None) -> WaitTimeout:
    """The ``WaitTimeout`` of ``wait``: the last state seen goes with it, for a caller
    that wants to know how far the job got."""
    state = f" (still {job.status})" if job is not None else ""
    return WaitTimeout(f"job {job_id} did not finish within {timeout:g}s{state}", job)


class WaitMany:
    """Bookkeeping of ``wait_many``: which jobs are still open, and how to look for them.

    With many open jobs one listing of recently finished jobs (1000 per
    request) beats a GET per job; with few, GETs are cheaper.
    """

    LIST_ABOVE = 20

    def __init__(self, jobs: Iterable[Job | str]) -> None:
        self.order: list[str] = []
        self.done: dict[str, Job] = {}
        oldest: float | None = None
        for item in jobs:
            job_id = item if isinstance(item, str) else item.id
            self.order.append(job_id)
            if isinstance(item, Job):
                if item.terminal:
                    self.done[job_id] = item
                if oldest is None or item.created_at < oldest:
                    oldest = item.created_at
        # a second of margin: the ISO round trip must never drop the oldest job
        self.since = None if oldest is None else oldest - 1.0
        self.open: list[str] = []
        self._open: set[str] = set()
        self.settle()

    @property
    def total(self) -> int:
        return len(self.order)

    @property
    def use_list(self) -> bool:
        return self.since is not None and len(self.open) > self.LIST_ABOVE

    def list_kwargs(self, cursor: str | None) -> dict[str, Any]:
        return {"status": TERMINAL, "created_after": self.since, "limit": 1000, "cursor": cursor}

    def seen(self, job: Job) -> None:
        if job.terminal and job.id in self._open:
            self.done[job.id] = job

    def settle(self) -> None:
        self.open = [i for i in dict.fromkeys(self.order) if i not in self.done]
        self._open = set(self.open)

    def timeout(self, timeout: float | None) -> WaitTimeout:
        return WaitTimeout(
            f"{len(self.open)} of {self.total} jobs did not finish within {timeout:g}s "
            f"(the first: {self.open[0]})"
        )

    def result(self) -> list[Job]:
        return [self.done[i] for i in self.order]
