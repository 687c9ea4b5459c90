"""The checker: what the clients were told against what the cluster holds at the end.

Sans-IO: it takes the ``History`` and the final records (read after every
fault was healed and the jobs had time to finish) and counts, Jepsen style:

- ``acknowledged``: submissions answered 201;
- ``completed``, ``failed_as_designed`` (``fail`` and ``timeout`` jobs),
  ``cancelled``: acknowledged jobs that ended as their kind allows;
- ``poisoned``: ended ``failed`` by the poison limit (their leases expired
  ``POISON_LIMIT`` times, which killing and pausing nodes can cause): allowed
  by README, reported apart so a rise is visible;
- ``lost``: acknowledged, but no node knows the job at the end;
- ``unexpected``: ended in a state its kind does not allow, or a job of
  this run nobody submitted, or a valid request refused;
- ``completed_twice``: a record with more than one completed attempt;
- ``stuck``: not finished when the run gave up waiting.

``lost``, ``unexpected``, ``completed_twice`` and ``stuck`` must be 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..jobs import Job
from .workload import KINDS, SCHEDULE_TYPE, History

MUST_BE_ZERO = ("lost", "unexpected", "completed_twice", "stuck")


@dataclass(slots=True)
class Counts:
    acknowledged: int = 0
    completed: int = 0
    failed_as_designed: int = 0
    cancelled: int = 0
    poisoned: int = 0
    lost: int = 0
    unexpected: int = 0
    completed_twice: int = 0
    stuck: int = 0
    #: Submissions never answered, and how many of them exist at the end anyway.
    indeterminate: int = 0
    indeterminate_found: int = 0
    #: Jobs the run's schedule submitted, and how many of them did not complete.
    schedule_jobs: int = 0
    #: Ticks between the first and the last fired that never fired (informational).
    schedule_ticks_missed: int = 0


@dataclass(slots=True)
class Verdict:
    counts: Counts
    #: One line per job that counts against the run: id, kind, what is wrong.
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(getattr(self.counts, name) == 0 for name in MUST_BE_ZERO)

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"ok": self.ok, "counts": asdict(self.counts), "problems": self.problems}


def _describe(job: Job) -> str:
    attempts = ", ".join(f"{a.node_id}:{a.outcome}" for a in job.attempts)
    return (
        f"status={job.status} retries={job.retry_count} lease_expirations="
        f"{job.lease_expirations} error={job.error!r} attempts=[{attempts}]"
    )


def _tick(job: Job) -> float | None:
    """The tick a schedule's job is for: its idempotency key is ``schedule:NAME:TICK``."""
    key = job.idempotency_key or ""
    try:
        return float(key.rsplit(":", 1)[1]) if key.startswith("schedule:") else None
    except (IndexError, ValueError):
        return None


def check(
    history: History,
    records: Mapping[str, Job | None],
    listed: Iterable[Job],
    *,
    poison_limit: int,
    schedule_every: float | None = None,
) -> Verdict:
    """``records``: every acknowledged id's final record (None: no node knows it);
    ``listed``: every job of this run the cluster lists (its payload names the run)."""
    counts = Counts(
        acknowledged=len(history.acknowledged), indeterminate=len(history.indeterminate)
    )
    problems: list[str] = [f"client error: {e}" for e in history.errors]
    counts.unexpected += len(history.errors)

    for job_id, sub in history.acknowledged.items():
        job = records.get(job_id)
        if job is None:
            counts.lost += 1
            problems.append(f"lost {job_id} ({sub.kind}): acknowledged, unknown at the end")
            continue
        if sum(1 for a in job.attempts if a.outcome == "completed") > 1:
            counts.completed_twice += 1
            problems.append(f"completed twice {job_id} ({sub.kind}): {_describe(job)}")
        status = str(job.status)
        if not job.terminal:
            counts.stuck += 1
            problems.append(f"stuck {job_id} ({sub.kind}): {_describe(job)}")
            continue
        allowed = set(KINDS[sub.kind])
        if sub.cancel_requested:
            allowed |= {"cancelled", "completed"}
        if status == "failed" and job.lease_expirations >= poison_limit:
            counts.poisoned += 1
        elif status not in allowed:
            counts.unexpected += 1
            problems.append(f"unexpected {job_id} ({sub.kind}) ended {status}: {_describe(job)}")
        elif status == "completed":
            counts.completed += 1
        elif status == "failed":
            counts.failed_as_designed += 1
        else:
            counts.cancelled += 1

    keys = set(history.indeterminate)
    ticks: list[float] = []
    for job in listed:
        if job.type == SCHEDULE_TYPE:
            counts.schedule_jobs += 1
            tick = _tick(job)
            if tick is not None:
                ticks.append(tick)
            if job.terminal and str(job.status) != "completed":
                counts.unexpected += 1
                problems.append(f"unexpected schedule job {job.id}: {_describe(job)}")
            elif not job.terminal:
                counts.stuck += 1
                problems.append(f"stuck schedule job {job.id}: {_describe(job)}")
            continue
        if job.id in history.acknowledged:
            continue
        if job.idempotency_key in keys:
            counts.indeterminate_found += 1
            kind = history.indeterminate[job.idempotency_key]
            if job.terminal and str(job.status) not in KINDS[kind]:
                if not (str(job.status) == "failed" and job.lease_expirations >= poison_limit):
                    counts.unexpected += 1
                    problems.append(
                        f"unexpected {job.id} ({kind}, indeterminate): {_describe(job)}"
                    )
            continue
        counts.unexpected += 1
        problems.append(f"unexpected {job.id}: nobody submitted it: {_describe(job)}")

    twice = len(ticks) - len(set(ticks))
    if twice:
        counts.unexpected += twice
        problems.append(f"{twice} schedule ticks fired more than once")
    if schedule_every and len(ticks) >= 2:
        ticks.sort()
        span = round((ticks[-1] - ticks[0]) / schedule_every) + 1
        counts.schedule_ticks_missed = max(0, span - len(set(ticks)))
    return Verdict(counts, problems)
