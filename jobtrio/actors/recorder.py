"""Copy job snapshots into the Store in batches.

The Broker already holds every accepted job, so the Store write is off the
critical path: snapshots queue here, newer versions replace older ones of
the same job while they wait, and one ``put_many`` writes a batch. When the
Store is down the batch waits and is retried with backoff; nothing is
dropped, and memory stays bounded by the number of distinct live jobs. A
snapshot the Store refuses for good (``RecordRefused``) is left out, logged
and counted, so that it cannot hold back every other record; the same
snapshot offered again (the leader's reconciliation does, at every pass) is
dropped without a write or another log line.

When a snapshot is written depends on whether it can still be superseded:

- a live snapshot (pending, scheduled, running, retrying) lingers until it is
  ``linger`` seconds old, so that a job which runs in milliseconds has its
  submitted and running snapshots replaced by its final one and is written
  once, not three times (on Redis the Store write costs as much server time
  as the claim or the finish of the job);
- a final snapshot (completed, failed, cancelled) has nothing to wait for;
  it waits a quarter of the linger only so that the finals of many jobs share
  one write (written one finisher batch at a time, they made ten times as
  many Store calls for the same records).

A job's place in the queue is its first unwritten snapshot's arrival, so a
job whose state keeps changing still reaches the Store within ``linger``.

When the Broker writes the Store's records itself in every move
(``Broker.writes_records_of``: Redis as the whole backend), every snapshot the
node sees is recorded already: the recorder is built with ``copies=False``
and takes nothing in.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable

import trio

from ..backends.base import BackendUnavailable, RecordRefused, Store
from ..backoff import Backoff
from ..jobs import TERMINAL_STATUSES, Job
from .signals import Wakeup

log = logging.getLogger("jobtrio.recorder")

#: (first, maximum) seconds between tries of a batch while the Store is down.
STORE_RETRY = (0.05, 5.0)

#: Refused snapshots (job id, version) remembered, so that the same one offered again
#: is dropped without a write or a log line (the newest ones kept past this many).
REFUSED_MEMORY = 10_000


async def put_what_the_store_takes(
    store: Store, jobs: list[Job]
) -> list[tuple[Job, RecordRefused]]:
    """Write ``jobs``; those the Store refuses for good are left out and returned with why.

    A record the Store cannot hold (``RecordRefused``: a MongoDB document over
    16 MiB, e.g. a chord's callback holding its group's results) fails the
    whole batch it is in, and it would fail the same way on every retry: the
    batch's writer (this node's recorder, the leader's purge) would retry it
    forever and write no record at all. So the batch is halved until each
    refused record stands alone, and everything else is written (about
    2 log2(batch) more writes per refused record). ``BackendUnavailable``
    passes through: then nothing is known to be refused.
    """
    try:
        await store.put_many(jobs)
    except RecordRefused as exc:
        if len(jobs) == 1:
            return [(jobs[0], exc)]
    else:
        return []
    half = len(jobs) // 2
    return [
        *await put_what_the_store_takes(store, jobs[:half]),
        *await put_what_the_store_takes(store, jobs[half:]),
    ]


class Recorder:
    def __init__(
        self, store: Store, batch: int = 1000, linger: float = 0.02, *, copies: bool = True
    ) -> None:
        self._store = store
        #: False when the Broker writes the records itself: ``record`` then keeps nothing.
        self.copies = copies
        self._batch = batch
        self._linger = linger
        #: id -> (newest snapshot, arrival of the first unwritten one); in arrival order.
        self._pending: dict[str, tuple[Job, float]] = {}
        #: id -> when its snapshot became final (arrival order): these wait less.
        self._final: dict[str, float] = {}
        self._wakeup = Wakeup()
        self._idle = trio.Event()
        self._idle.set()
        self.written = 0
        #: Snapshots the Store refused for good (``RecordRefused``), left out.
        self.refused = 0
        #: (id, version) of those, oldest first: the leader's reconciliation offers the
        #: same snapshot again at every pass (the Store keeps the job's last live record).
        self._refused_keys: dict[tuple[str, int], None] = {}
        self.healthy = True
        self.last_error: str | None = None

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def record(self, jobs: Iterable[Job]) -> None:
        if not self.copies:
            return
        pending, final = self._pending, self._final
        wake = not pending  # the writer sleeps until something arrives
        now = trio.current_time()
        for job in jobs:
            entry = pending.get(job.id)
            if entry is None:
                pending[job.id] = (job, now)
            elif job.version >= entry[0].version:
                pending[job.id] = (job, entry[1])
            else:
                continue  # an older snapshot than the one waiting
            if job.status in TERMINAL_STATUSES and job.id not in final:
                final[job.id] = now
                wake = wake or len(final) == 1  # the writer may be sleeping a whole linger
        if pending:
            if self._idle.is_set():
                self._idle = trio.Event()
            if wake:
                self._wakeup.set()

    def record_one(self, job: Job) -> None:
        self.record((job,))

    async def flush(self, timeout: float) -> bool:
        """Wait until everything recorded so far is written; False on timeout."""
        with trio.move_on_after(timeout):
            await self._idle.wait()
            return True
        return False

    def _next_due(self) -> float:
        """When the oldest snapshot of either kind is due (the same sums ``_due`` compares)."""
        at = next(iter(self._pending.values()))[1] + self._linger
        if self._final:
            at = min(at, next(iter(self._final.values())) + self._linger / 4)
        return at

    def _due(self) -> dict[str, Job]:
        """The next batch: final snapshots, then live ones older than the linger."""
        pending, limit = self._pending, self._batch
        batch: dict[str, Job] = {}
        now, linger = trio.current_time(), self._linger
        if self._final and next(iter(self._final.values())) + linger / 4 <= now:
            for key in self._final:
                entry = pending.get(key)
                if entry is not None:
                    batch[key] = entry[0]
                    if len(batch) >= limit:
                        return batch
        for key, (job, since) in pending.items():
            if since + linger > now:  # the very expression run() sleeps until
                break  # arrival order: every later one is younger still
            batch[key] = job
            if len(batch) >= limit:
                break
        return batch

    async def run(self) -> None:
        backoff = Backoff(*STORE_RETRY)
        while True:
            if not self._pending:
                self._final.clear()
                self._idle.set()
                await self._wakeup.wait(1.0)
                continue
            batch = self._due()
            if not batch:
                with trio.move_on_at(self._next_due()):
                    await self._wakeup.wait(math.inf)
                continue
            known = self._refused_keys
            jobs = [job for job in batch.values() if (job.id, job.version) not in known]
            try:
                refused = await put_what_the_store_takes(self._store, jobs) if jobs else []
            except BackendUnavailable as exc:
                if self.healthy:
                    log.warning("store unavailable, %d records wait: %s", self.backlog, exc)
                self.healthy = False
                self.last_error = str(exc)
                await trio.sleep(backoff.next())
                continue
            if not self.healthy:
                log.info("store is back; writing %d waiting records", self.backlog)
            self.healthy = True
            self.last_error = None
            backoff.reset()
            for job, why in refused:
                # dropped like a written one: retrying the batch would block every record
                log.error("record of job %s (version %d) left out: %s", job.id, job.version, why)
                self.refused += 1
                known[(job.id, job.version)] = None
                if len(known) > REFUSED_MEMORY:
                    del known[next(iter(known))]
            pending, final = self._pending, self._final
            for key, job in batch.items():
                # drop only if no newer snapshot arrived while we were writing
                entry = pending.get(key)
                if entry is not None and entry[0] is job:
                    del pending[key]
                    final.pop(key, None)
            self.written += len(jobs) - len(refused)
