"""The Broker contract for progress and job dependencies, on every backend.

Kept apart from test_backend_contract.py (same fixtures: tests/conftest.py
parameterizes ``broker`` over memory, SQLite and a real Redis).
"""

from __future__ import annotations

from jobtrio.backends.base import Finish, ProgressReport
from jobtrio.jobs import IdGenerator, Job, JobStatus, make_progress, validate_submission

NOW = 1_700_000_000.0
ids = IdGenerator()


def make(job_type: str = "noop", now: float = NOW, **fields) -> Job:
    return validate_submission({"type": job_type, **fields}, now, ids=ids)


# --------------------------------------------------------------------------- progress


async def test_progress_is_kept_with_the_current_lease_only(broker):
    await broker.enqueue([make()], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    report = make_progress(0.4, "resized 4/10", NOW + 1)
    [stale] = await broker.progress(
        [ProgressReport(lease.job.id, "not-the-token", report)], NOW + 1
    )
    assert stale is None
    assert (await broker.get(lease.job.id)).progress is None
    [job] = await broker.progress([ProgressReport(lease.job.id, lease.token, report)], NOW + 1)
    assert job.progress == {"fraction": 0.4, "message": "resized 4/10", "at": NOW + 1}
    assert job.status == JobStatus.RUNNING and job.version > lease.job.version
    later = make_progress(0.9, None, NOW + 2)
    await broker.progress([ProgressReport(lease.job.id, lease.token, later)], NOW + 2)
    got = await broker.get(lease.job.id)
    assert got.progress == later
    # the last report stays on the record once the job ends; the lease's end refuses more
    [done] = await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 3)
    assert done.status == JobStatus.COMPLETED and done.progress == later
    assert await broker.progress([ProgressReport(lease.job.id, lease.token, report)], NOW + 4) == [
        None
    ]
    assert (await broker.get(lease.job.id)).progress == later
