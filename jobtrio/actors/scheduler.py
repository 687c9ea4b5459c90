"""The leader duty that fires periodic jobs (see ``jobtrio/schedules.py``).

Schedules come from two places: code (``Registry.schedule`` /
``processor(..., schedule=...)``) and the Store (``POST /api/v1/schedules``),
re-read every few seconds so any node's API can change them. Each tick of
each schedule is fired by one Broker move, ``fire_tick``, that claims the tick
and enqueues its job together under the leader's fencing epoch: it fires
exactly once across the cluster, including across a failover. A tick is only
marked fired here once that move answered, so a move that failed (or whose
reply was lost) is repeated on the next pass, and the Broker's claim makes
the repeat harmless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ..backends.base import BackendUnavailable, Broker, Store
from ..events import EventBus
from ..jobs import IdGenerator, Job, ValidationError
from ..processors import Registry
from ..schedules import Schedule
from ..submission import SubmissionLimits, validate_submission
from .recorder import Recorder

log = logging.getLogger("jobtrio.scheduler")


class Scheduler:
    def __init__(
        self,
        broker: Broker,
        store: Store,
        registry: Registry,
        recorder: Recorder,
        events: EventBus,
        ids: IdGenerator,
        limits: SubmissionLimits,
        on_jobs_ready: Callable[[], None],
        refresh_every: float = 5.0,
    ) -> None:
        self._broker = broker
        self._store = store
        self._registry = registry
        self._recorder = recorder
        self._events = events
        self._ids = ids
        self._limits = limits
        self._on_jobs_ready = on_jobs_ready
        self._refresh_every = refresh_every
        self._schedules: list[Schedule] = list(registry.schedules())
        self._next_refresh = 0.0
        self._last_fired: dict[str, float] = {}
        self.fired = 0

    async def __call__(self, epoch: int, now: float) -> None:
        if now >= self._next_refresh:
            try:
                stored = [Schedule.from_dict(d) for d in await self._store.list_schedules()]
            except BackendUnavailable as exc:
                log.warning("schedules not refreshed: %s", exc)
            else:
                # a schedule defined in code wins over a stored one of the same name,
                # as the API shows it
                by_name = {s.name: s for s in stored}
                by_name.update({s.name: s for s in self._registry.schedules()})
                self._schedules = list(by_name.values())
            self._next_refresh = now + self._refresh_every
        for schedule in self._schedules:
            if not schedule.enabled:
                continue
            tick = schedule.due(now, self._last_fired.get(schedule.name))
            if tick is None:
                continue
            job = self._job_for(schedule, tick, now)
            if job is None:
                self._last_fired[schedule.name] = tick
                continue
            stored = await self._broker.fire_tick(schedule.name, tick, job, epoch, now)
            self._last_fired[schedule.name] = tick
            if stored is None:
                continue  # fired before: by another leader, or by this one before a lost reply
            self.fired += 1
            self._recorder.record_one(stored)
            self._events.publish(
                "schedule.fired", schedule=schedule.name, tick=tick, job=stored.to_dict()
            )
            self._on_jobs_ready()

    def _job_for(self, schedule: Schedule, tick: float, now: float) -> Job | None:
        data = dict(schedule.job)
        data["idempotency_key"] = f"schedule:{schedule.name}:{tick:.0f}"
        try:
            return validate_submission(data, now, self._limits, self._ids)
        except ValidationError as exc:
            log.error(
                "schedule %s has an invalid job (%s); tick %s skipped", schedule.name, exc, tick
            )
            return None
