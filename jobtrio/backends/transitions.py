"""The state changes of a job, as pure functions on a ``Job``.

Brokers that hold jobs as Python objects (memory, SQLite) apply exactly these
functions inside their atomic section, so the two cannot drift apart; the
Redis broker does the same moves in Lua and the contract suite holds all of
them to one behaviour.
"""

from __future__ import annotations

from ..jobs import Attempt, Job, JobStatus
from .base import Finish

POISON_ERROR = "lease expired {n} times (poison limit {limit}); the job may crash its worker"
CANCELLED_ERROR = "cancelled"


def waiting_status(job: Job, now: float) -> JobStatus:
    """Where a job waits when (re-)enqueued: scheduled if it starts later."""
    if job.scheduled_at is not None and job.scheduled_at > now:
        return JobStatus.SCHEDULED
    return JobStatus.PENDING


def claim(job: Job, node_id: str, now: float) -> None:
    job.status = JobStatus.RUNNING
    job.started_at = now
    job.node_id = node_id
    job.worker_id = None
    job.attempts.append(
        Attempt(number=len(job.attempts) + 1, node_id=node_id, worker_id=None, started_at=now)
    )
    job.touch(now)


def _close_attempt(
    job: Job, now: float, outcome: str, error: str | None, worker: str | None
) -> None:
    if job.attempts and job.attempts[-1].ended_at is None:
        attempt = job.attempts[-1]
        attempt.ended_at = now
        attempt.outcome = outcome
        attempt.error = error
        if worker is not None:
            attempt.worker_id = worker


def finish(job: Job, item: Finish, now: float) -> None:
    """Apply a worker's report; the caller has checked the lease token."""
    if item.worker_id is not None:
        job.worker_id = item.worker_id
    _close_attempt(job, now, item.outcome, item.error, item.worker_id)
    if item.outcome == "completed":
        job.status = JobStatus.COMPLETED
        job.result = item.result
        job.error = None
        job.completed_at = now
    elif item.outcome == "released":
        job.status = JobStatus.PENDING
        job.attempts.pop()  # an attempt handed back unrun is not an attempt
    elif item.retry_at is not None:
        job.status = JobStatus.RETRYING
        job.retry_count += 1
        job.error = item.error
        job.scheduled_at = item.retry_at
    else:
        job.status = JobStatus.FAILED
        job.error = item.error
        job.completed_at = now
    job.touch(now)


def cancel(job: Job, now: float) -> bool:
    """Cancel a live job; False (unchanged) if it is already terminal."""
    if job.terminal:
        return False
    _close_attempt(job, now, "cancelled", CANCELLED_ERROR, None)
    job.status = JobStatus.CANCELLED
    job.error = CANCELLED_ERROR
    job.completed_at = now
    job.touch(now)
    return True


def retry(job: Job, now: float) -> None:
    """A failed or cancelled job runs again from scratch (its history is kept)."""
    job.status = JobStatus.PENDING
    job.retry_count = 0
    job.lease_expirations = 0
    job.error = None
    job.result = None
    job.completed_at = None
    job.scheduled_at = None
    job.touch(now)


def promote(job: Job, now: float) -> None:
    job.status = JobStatus.PENDING
    job.touch(now)


def expire(job: Job, now: float, poison_limit: int) -> None:
    """A running job's lease ran out: back to pending, or failed past the poison limit."""
    job.lease_expirations += 1
    _close_attempt(job, now, "lost", "lease expired", None)
    if job.lease_expirations >= poison_limit:
        job.status = JobStatus.FAILED
        job.error = POISON_ERROR.format(n=job.lease_expirations, limit=poison_limit)
        job.completed_at = now
    else:
        job.status = JobStatus.PENDING
    job.touch(now)
