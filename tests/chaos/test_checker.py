"""The chaos checker on hand-made histories: each count it must keep at 0 can be non-zero."""

from __future__ import annotations

from jobtrio.chaos.checker import check
from jobtrio.chaos.workload import History, Submitted
from jobtrio.jobs import Attempt, Job, JobStatus

RUN = "chaos-test"


def _job(job_id: str, status: str, *outcomes: str, **fields: object) -> Job:
    attempts = [
        Attempt(i + 1, "node-1", "w", float(i), float(i) + 0.5, o) for i, o in enumerate(outcomes)
    ]
    return Job(
        id=job_id,
        type=str(fields.pop("type", "noop")),
        status=JobStatus(status),
        payload={"chaos": RUN},
        attempts=attempts,
        **fields,  # type: ignore[arg-type]
    )


def _history(**kinds: str) -> History:
    history = History(RUN)
    for job_id, kind in kinds.items():
        history.acknowledged[job_id] = Submitted(job_id, kind)
    return history


def test_a_clean_history_counts_each_outcome():
    history = _history(a="noop", b="flaky", c="fail", d="timeout", e="cancel")
    records = {
        "a": _job("a", "completed", "completed"),
        "b": _job("b", "completed", "failed", "lost", "completed"),
        "c": _job("c", "failed", "failed"),
        "d": _job("d", "failed", "timeout"),
        "e": _job("e", "cancelled", "cancelled"),
    }
    verdict = check(history, records, records.values(), poison_limit=5)
    c = verdict.counts
    assert verdict.ok, verdict.problems
    assert (c.acknowledged, c.completed, c.failed_as_designed, c.cancelled) == (5, 2, 2, 1)


def test_lost_unexpected_twice_and_stuck_are_each_caught():
    history = _history(lost="noop", bad="noop", twice="sleep", stuck="flaky", poison="sleep")
    records = {
        "lost": None,
        "bad": _job("bad", "failed", "failed"),
        "twice": _job("twice", "completed", "completed", "completed"),
        "stuck": _job("stuck", "running", "failed"),
        "poison": _job("poison", "failed", *["lost"] * 5, lease_expirations=5),
    }
    stranger = _job("stranger", "completed", "completed")
    listed = [j for j in records.values() if j is not None] + [stranger]
    verdict = check(history, records, listed, poison_limit=5)
    c = verdict.counts
    assert not verdict.ok
    assert (c.lost, c.unexpected, c.completed_twice, c.stuck, c.poisoned) == (1, 2, 1, 1, 1)
    text = "\n".join(verdict.problems)
    for job_id in ("lost", "bad", "twice", "stuck", "stranger"):
        assert job_id in text


def test_a_requested_cancel_allows_cancelled_and_an_indeterminate_job_is_judged_too():
    history = _history(a="noop")
    history.acknowledged["a"].cancel_requested = True
    history.indeterminate["key-1"] = "fail"
    records = {"a": _job("a", "cancelled", "cancelled")}
    late = _job("late", "completed", "completed", idempotency_key="key-1")
    verdict = check(history, records, [records["a"], late], poison_limit=5)
    assert verdict.counts.indeterminate_found == 1
    assert verdict.counts.unexpected == 1 and "late" in verdict.problems[0]


def test_schedule_ticks_fired_twice_or_missed_are_counted():
    def tick(job_id: str, at: int) -> Job:
        return _job(
            job_id, "completed", "completed", type="echo", idempotency_key=f"schedule:s:{at}"
        )

    listed = [tick("t1", 100), tick("t2", 102), tick("t3", 102), tick("t4", 108)]
    verdict = check(_history(), {}, listed, poison_limit=5, schedule_every=2.0)
    assert verdict.counts.schedule_jobs == 4
    assert verdict.counts.unexpected == 1  # tick 102 twice
    assert verdict.counts.schedule_ticks_missed == 2  # 104 and 106
