"""Copy job snapshots into the Store in batches.

The Broker already holds every accepted job, so the Store write is off the
critical path: snapshots queue here, newer versions replace older ones of
the same job while they wait (a short linger lets the snapshots of a job that
ran in milliseconds collapse into one write), and one ``put_many`` writes a
batch. When the
Store is down the batch waits and is retried with backoff; nothing is
dropped, and memory stays bounded by the number of distinct live jobs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from ..backends.base import BackendUnavailable, Store
from ..jobs import Job
from .signals import Wakeup

log = logging.getLogger("jobtrio.recorder")


class Recorder:
    def __init__(self, store: Store, batch: int = 1000, linger: float = 0.02) -> None:
        self._store = store
        self._batch = batch
        self._linger = linger
        self._pending: dict[str, Job] = {}
        self._wakeup = Wakeup()
        self._idle = trio.Event()
        self._idle.set()
        self.written = 0
        self.healthy = True
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def record(self, jobs: Iterable[Job]) -> None:
        pending = self._pending
        for job in jobs:
            old = pending.get(job.id)
            if old is None or job.version >= old.version:
                pending[job.id] = job
        if pending:
            if self._idle.is_set():
                self._idle = trio.Event()
            self._wakeup.set()

    def record_one(self, job: Job) -> None:
        self.record((job,))

    async def flush(self, timeout: float) -> bool:
        """Wait until everything recorded so far is written; False on timeout."""
        with trio.move_on_after(timeout):
            await self._idle.wait()
            return True
        return False

    async def run(self) -> None:
        backoff = 0.05
        while True:
            if not self._pending:
                self._idle.set()
                await self._wakeup.wait(1.0)
                continue
            if len(self._pending) < self._batch and self._linger:
                # let a fast job's submitted/running/completed snapshots collapse into one write
                await trio.sleep(self._linger)
            keys = list(self._pending)[: self._batch]
            batch = [self._pending[k] for k in keys]
            try:
                await self._store.put_many(batch)
            except BackendUnavailable as exc:
                if self.healthy:
                    log.warning("store unavailable, %d records wait: %s", self.backlog, exc)
                self.healthy = False
                self.last_error = str(exc)
                await trio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            if not self.healthy:
                log.info("store is back; writing %d waiting records", self.backlog)
            self.healthy = True
            self.last_error = None
            backoff = 0.05
            for k, job in zip(keys, batch, strict=True):
                # drop only if no newer snapshot arrived while we were writing
                if self._pending.get(k) is job:
                    del self._pending[k]
            self.written += len(batch)
