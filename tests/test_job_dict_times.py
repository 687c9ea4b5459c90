"""A job's REST shape (``Job.to_dict``) gives each of its times its own text.

``to_dict`` takes a time already written from ``to_iso``'s memory (a batch's jobs
share their times): each field must look up its own time, whatever else is
remembered. A job that ran has five different times, all remembered once its
answer was written before.
"""

from __future__ import annotations

import pytest

from jobtrio.jobs import Job, JobStatus, iso_text, to_iso

T = 1_700_000_000.0


@pytest.mark.parametrize("remembered", [False, True], ids=["new", "remembered"])
def test_each_time_of_a_job_is_written_as_its_own(remembered: bool) -> None:
    job = Job(
        id="01HF7YAT3VJ3TH6DRRPSRWY48D",
        type="t",
        status=JobStatus.COMPLETED,
        created_at=T + 0.25,
        updated_at=T + 5.5,
        scheduled_at=T + 1.125,
        started_at=T + 2.0,
        completed_at=T + 5.5,
    )
    times = {
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "scheduled_at": job.scheduled_at,
        "started_at": job.started_at,
        "completed_at": job.completed_at,
    }
    if remembered:
        for ts in times.values():
            to_iso(ts)
    for _ in range(2):  # and once more, all of them now remembered
        written = job.to_dict()
        assert {name: written[name] for name in times} == {
            name: iso_text(ts) for name, ts in times.items()
        }
        assert written["status"] == "completed"
