"""Periodic jobs: a job template submitted on every tick of a cron expression.

A schedule fires **exactly once per tick across the cluster**, even across a
failover: the leader computes each schedule's latest due tick and asks the
Broker to ``claim_tick(name, tick, epoch)``; only the first claim of a
(name, tick) succeeds, and a deposed leader's claim is fenced off by its old
epoch. The job it enqueues carries the idempotency key
``schedule:<name>:<tick>`` as a second guard.

Ticks come from a cron expression (5 fields, or 6 with seconds last, as
croniter reads them) or a fixed interval (``every``, aligned to multiples of
the interval since the Unix epoch, so every node computes the same ticks).
Missed ticks are not replayed in a burst: after an outage only the most
recent tick within ``misfire_grace`` fires (the usual cron misfire policy).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from .durations import parse_duration
from .jobs import SubmissionLimits, ValidationError, validate_submission

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
DEFAULT_MISFIRE_GRACE = 60.0
SCHEDULE_FIELDS = frozenset({"name", "cron", "every", "job", "enabled", "misfire_grace"})


@dataclass(frozen=True, slots=True)
class Schedule:
    name: str
    job: dict[str, Any]
    cron: str | None = None
    every: float | None = None
    enabled: bool = True
    misfire_grace: float = DEFAULT_MISFIRE_GRACE
    #: "api" (stored, editable over HTTP) or "code" (registered with a processor).
    source: str = "api"
    extra: dict[str, Any] = field(default_factory=dict)

    def latest_tick(self, now: float) -> float:
        """The most recent tick at or before ``now``."""
        if self.every is not None:
            return math.floor(now / self.every) * self.every
        assert self.cron is not None
        it = croniter(self.cron, now + 1e-6)
        return float(it.get_prev(float))

    def next_tick(self, now: float) -> float:
        if self.every is not None:
            return (math.floor(now / self.every) + 1) * self.every
        assert self.cron is not None
        return float(croniter(self.cron, now).get_next(float))

    def due(self, now: float, last_fired: float | None) -> float | None:
        """The tick to fire now, if any: the latest one, unless too old or already fired."""
        tick = self.latest_tick(now)
        if last_fired is not None and tick <= last_fired:
            return None
        if now - tick > self.misfire_grace:
            return None
        return tick

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "every": self.every,
            "job": self.job,
            "enabled": self.enabled,
            "misfire_grace": self.misfire_grace,
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        return cls(
            name=data["name"],
            job=dict(data["job"]),
            cron=data.get("cron"),
            every=data.get("every"),
            enabled=bool(data.get("enabled", True)),
            misfire_grace=float(data.get("misfire_grace", DEFAULT_MISFIRE_GRACE)),
            source=data.get("source", "api"),
        )


def validate_schedule(
    data: Any, now: float, limits: SubmissionLimits = SubmissionLimits()
) -> Schedule:
    """A schedule from client input, or ``ValidationError`` naming the field."""
    if not isinstance(data, Mapping):
        raise ValidationError("a schedule must be a JSON object", None, "invalid_type")
    for key in data:
        if key not in SCHEDULE_FIELDS:
            allowed = ", ".join(sorted(SCHEDULE_FIELDS))
            raise ValidationError(
                f"unknown field {key!r}; a schedule accepts {allowed}", key, "unknown_field"
            )
    name = data.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ValidationError(
            "name must be 1 to 100 letters, digits or _.:-", "name", "invalid_type"
        )
    cron, every = data.get("cron"), data.get("every")
    if (cron is None) == (every is None):
        raise ValidationError("give exactly one of cron or every", "cron", "missing_field")
    if cron is not None:
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise ValidationError(
                f"cron {cron!r} is not a cron expression such as '*/5 * * * *'", "cron"
            )
    interval: float | None = None
    if every is not None:
        try:
            interval = (
                float(every)
                if isinstance(every, int | float) and not isinstance(every, bool)
                else parse_duration(str(every))
            )
        except ValueError:
            raise ValidationError(
                f"every {every!r} is not a duration such as 30s or 5m", "every"
            ) from None
        if interval < 1:
            raise ValidationError("every must be at least 1s", "every", "out_of_range")
    job = data.get("job")
    if not isinstance(job, Mapping):
        raise ValidationError("job must be a JSON object (a job submission)", "job")
    if "scheduled_at" in job or "idempotency_key" in job:
        raise ValidationError(
            "a scheduled job sets neither scheduled_at nor idempotency_key", "job"
        )
    try:
        validate_submission(job, now, limits)
    except ValidationError as exc:
        raise ValidationError(
            f"job: {exc.message}", f"job.{exc.field}" if exc.field else "job", exc.code
        ) from None
    enabled = data.get("enabled", True)
    if not isinstance(enabled, bool):
        raise ValidationError("enabled must be true or false", "enabled", "invalid_type")
    grace = data.get("misfire_grace", DEFAULT_MISFIRE_GRACE)
    if isinstance(grace, bool) or not isinstance(grace, int | float) or grace < 0:
        raise ValidationError(
            "misfire_grace must be a non-negative number of seconds", "misfire_grace"
        )
    return Schedule(
        name=name,
        job=dict(job),
        cron=cron,
        every=interval,
        enabled=enabled,
        misfire_grace=float(grace),
    )
