"""Periodic jobs: a job template submitted on every tick of a cron expression.

A schedule fires **exactly once per tick across the cluster**, even across a
failover: the leader computes each schedule's latest due tick and asks the
Broker to ``fire_tick(name, tick, job, epoch)``; only the first claim of a
(name, tick) succeeds, and a deposed leader's claim is fenced off by its old
epoch. The job it enqueues carries the idempotency key
``schedule:<name>:<tick>`` as a second guard.

Ticks come from a cron expression (5 fields, or 6 with seconds last, as
croniter reads them) or a fixed interval (``every``, aligned to multiples of
the interval since the Unix epoch, so every node computes the same ticks).
Missed ticks are not replayed in a burst: after an outage only the most
recent tick within ``misfire_grace`` fires (the usual cron misfire policy).

A schedule that can never fire (``0 0 30 2 *``: February has no 30th; an
interval of eleven thousand years) is refused when submitted. One that was
stored anyway (by an older version, or by hand) and cannot be evaluated is
reported (logged once, ``problem`` in the API's view) and skipped: it must
never stop the leader's other duties.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from .durations import format_duration, parse_duration
from .jobs import MAX_TIMESTAMP, ValidationError
from .submission import SubmissionLimits, validate_submission
from .text import clip

log = logging.getLogger("jobtrio.schedules")

NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.:-]{1,100}$")
DEFAULT_MISFIRE_GRACE = 60.0
SCHEDULE_FIELDS = frozenset({"name", "cron", "every", "job", "enabled", "misfire_grace"})
#: Longest interval (``every``) and misfire grace: ten years.
MAX_INTERVAL = 10 * 365 * 86400.0
#: Longest cron expression accepted (croniter's own parsing is not bounded).
MAX_CRON_LENGTH = 200


class UnevaluableSchedule(ValueError):
    """A schedule whose ticks cannot be computed (it would never fire)."""


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
    #: Why a stored schedule cannot be evaluated (it is then skipped), or None.
    problem: str | None = None

    def latest_tick(self, now: float) -> float:
        """The most recent tick at or before ``now`` (``UnevaluableSchedule`` if none)."""
        try:
            if self.every is not None:
                return _checked(math.floor(now / self.every) * self.every)
            if self.cron is None:
                raise UnevaluableSchedule("it has neither cron nor every")
            it = croniter(self.cron, now + 1e-6)
            return _checked(float(it.get_prev(float)))
        except UnevaluableSchedule:
            raise
        except (ValueError, TypeError, OverflowError, KeyError, ZeroDivisionError) as exc:
            raise UnevaluableSchedule(_reason(exc)) from None

    def first_tick_after(self, now: float) -> float:
        """The first tick after ``now`` (``UnevaluableSchedule`` if there is none)."""
        try:
            if self.every is not None:
                return _checked((math.floor(now / self.every) + 1) * self.every)
            if self.cron is None:
                raise UnevaluableSchedule("it has neither cron nor every")
            return _checked(float(croniter(self.cron, now).get_next(float)))
        except UnevaluableSchedule:
            raise
        except (ValueError, TypeError, OverflowError, KeyError, ZeroDivisionError) as exc:
            raise UnevaluableSchedule(_reason(exc)) from None

    def next_tick(self, now: float) -> float | None:
        """The first tick after ``now``, or None for a schedule that cannot be evaluated
        (reported once): what the API shows as ``next_tick``."""
        if self.problem is not None:
            _report(self, self.problem)
            return None
        try:
            return self.first_tick_after(now)
        except UnevaluableSchedule as exc:
            _report(self, str(exc))
            return None

    def due(self, now: float, last_fired: float | None) -> float | None:
        """The tick to fire now, if any: the latest one, unless too old or already fired.

        A schedule that cannot be evaluated is never due; it is logged (once)
        instead of raising, so one bad record cannot stop the leader's duties.
        """
        if self.problem is not None:
            _report(self, self.problem)
            return None
        try:
            tick = self.latest_tick(now)
        except UnevaluableSchedule as exc:
            _report(self, str(exc))
            return None
        if last_fired is not None and tick <= last_fired:
            return None
        if now - tick > self.misfire_grace:
            return None
        return tick

    def event_fields(self) -> dict[str, Any]:
        """What a ``schedule.saved`` event says: the schedule without its job's payload.

        Events never carry payloads (``Job.event_fields``): every worker-role reader of
        the stream would see them, the stream keeps EVENT_STREAM_MAXLEN events, and a
        payload of up to MAX_PAYLOAD_BYTES in one event is a websocket message larger
        than the clients take (jobtrio/api/events.py, LINES_MESSAGE_CHARS)."""
        out = self.to_dict()
        out["job"] = {k: v for k, v in self.job.items() if k != "payload"}
        return out

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "cron": self.cron,
            "every": self.every,
            "job": self.job,
            "enabled": self.enabled,
            "misfire_grace": self.misfire_grace,
            "source": self.source,
        }
        if self.problem is not None:
            out["problem"] = self.problem
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Schedule:
        """A stored schedule; one that does not make sense comes back with ``problem`` set
        (and is skipped) rather than raising, whatever the record holds."""
        name = str(data.get("name", "?"))
        try:
            job = data["job"]
            cron, every = data.get("cron"), data.get("every")
            schedule = cls(
                name=name,
                job=dict(job),
                cron=cron if isinstance(cron, str) else None,
                every=float(every) if every is not None else None,
                enabled=bool(data.get("enabled", True)),
                misfire_grace=float(data.get("misfire_grace", DEFAULT_MISFIRE_GRACE)),
                source=str(data.get("source", "api")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            return cls(name=name, job={}, enabled=False, problem=f"unreadable record: {exc}")
        if schedule.every is not None and not (0 < schedule.every <= MAX_INTERVAL):
            return _with_problem(schedule, f"every {schedule.every:g} is out of range")
        try:
            # from a fixed instant, so every node (and the simulator) reads a record alike
            schedule.first_tick_after(0.0)
        except UnevaluableSchedule as exc:
            return _with_problem(schedule, str(exc))
        return schedule


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
            "name must be 1 to 100 letters, digits or _.:- (no spaces or control characters)",
            "name",
            "invalid_type",
        )
    cron, every = data.get("cron"), data.get("every")
    if (cron is None) == (every is None):
        raise ValidationError("give exactly one of cron or every", "cron", "missing_field")
    if cron is not None:
        if not isinstance(cron, str) or len(cron) > MAX_CRON_LENGTH or not croniter.is_valid(cron):
            raise ValidationError(
                f"cron {clip(cron)} is not a cron expression such as '*/5 * * * *'", "cron"
            )
    interval: float | None = None
    if every is not None:
        try:
            interval = (
                float(every)
                if isinstance(every, int | float) and not isinstance(every, bool)
                else parse_duration(str(every)[:100])
            )
        except (ValueError, OverflowError):
            raise ValidationError(
                f"every {clip(every)} is not a duration such as 30s or 5m", "every"
            ) from None
        if not 1 <= interval <= MAX_INTERVAL:
            raise ValidationError(
                f"every {clip(every)} is out of range: from 1s to "
                f"{format_duration(MAX_INTERVAL)} (ten years)",
                "every",
                "out_of_range",
            )
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
    if (
        isinstance(grace, bool)
        or not isinstance(grace, int | float)
        or not 0 <= grace <= MAX_INTERVAL
    ):
        raise ValidationError(
            f"misfire_grace must be a number of seconds from 0 to {MAX_INTERVAL:.0f}",
            "misfire_grace",
        )
    schedule = Schedule(
        name=name,
        job=dict(job),
        cron=cron,
        every=interval,
        enabled=enabled,
        misfire_grace=float(grace),
    )
    try:
        schedule.first_tick_after(now)
    except UnevaluableSchedule as exc:
        field_name = "cron" if cron is not None else "every"
        raise ValidationError(
            f"{field_name} {clip(cron if cron is not None else every)} never fires ({exc})",
            field_name,
            "never_fires",
        ) from None
    return schedule


def _checked(tick: float) -> float:
    if not 0 <= tick <= MAX_TIMESTAMP:
        raise UnevaluableSchedule("its next tick is past the year 9999")
    return tick


def _reason(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "failed to find" in text:  # croniter's words for "no date matches"
        return "no date matches the expression"
    return clip(text, 200)


def _with_problem(schedule: Schedule, problem: str) -> Schedule:
    return Schedule(
        name=schedule.name,
        job=schedule.job,
        cron=schedule.cron,
        every=schedule.every,
        enabled=schedule.enabled,
        misfire_grace=schedule.misfire_grace,
        source=schedule.source,
        problem=problem,
    )


#: (name, problem) pairs already logged: a leader evaluates every schedule each second.
_reported: set[tuple[str, str]] = set()


def _report(schedule: Schedule, problem: str) -> None:
    key = (schedule.name, problem)
    if key not in _reported:
        _reported.add(key)
        log.error("schedule %r cannot be evaluated and is skipped: %s", schedule.name, problem)
