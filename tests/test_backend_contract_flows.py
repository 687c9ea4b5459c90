"""The Broker contract for progress and job dependencies, on every backend.

Kept apart from test_backend_contract.py (same fixtures: tests/conftest.py
parameterizes ``broker`` over memory, SQLite and a real Redis).
"""

from __future__ import annotations

import pytest
import trio

from jobtrio.backends.base import Finish, ProgressReport
from jobtrio.backends.dependencies import UnknownDependency
from jobtrio.jobs import IdGenerator, Job, JobStatus, make_progress
from jobtrio.submission import validate_submission
from jobtrio.workflows import build as build_workflow

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


# --------------------------------------------------------------------------- dependencies


def dependent(*parents: Job, **fields) -> Job:
    return make(depends_on=[p.id for p in parents], **fields)


async def run_one(broker, outcome: str = "completed", result=None, now: float = NOW):
    [lease] = await broker.claim("n", 1, 30, now)
    [done] = await broker.finish(
        [Finish(lease.job.id, lease.token, outcome, result=result, error="boom")], now + 1
    )
    return done


async def test_a_dependent_waits_until_all_its_parents_completed(broker):
    a, b = make(priority=10), make(priority=9)
    c = dependent(a, b, receive_results=True)
    await broker.enqueue([a, b], NOW)
    [waiting] = await broker.enqueue([c], NOW)
    assert waiting.status == JobStatus.WAITING and waiting.waiting_for == [a.id, b.id]
    assert (await broker.get(a.id)).dependents == [c.id]
    assert (await broker.depths())["waiting"] == 1
    first = await run_one(broker, result={"a": 1})
    assert first.id == a.id
    got = await broker.get(c.id)
    assert got.status == JobStatus.WAITING and got.waiting_for == [b.id]
    await run_one(broker, result=2)
    released = await broker.get(c.id)
    assert released.status == JobStatus.PENDING and released.waiting_for == []
    assert released.dependency_results == {a.id: {"a": 1}, b.id: 2}
    assert released.results == [{"a": 1}, 2]
    [lease] = await broker.claim("n", 5, 30, NOW + 2)
    assert lease.job.id == c.id and lease.job.results == [{"a": 1}, 2]


async def test_a_failed_parent_fails_its_dependents_naming_it_and_the_cascade(broker):
    a = make(max_retries=0)
    b = dependent(a)
    c = dependent(b)
    await broker.enqueue([a, b, c], NOW)  # one batch, parents first
    await run_one(broker, outcome="failed")
    got_b, got_c = await broker.get(b.id), await broker.get(c.id)
    assert got_b.status == JobStatus.FAILED and got_b.error == f"dependency {a.id} failed"
    assert got_c.status == JobStatus.FAILED and got_c.error == f"dependency {b.id} failed"
    assert await broker.claim("n", 5, 30, NOW + 2) == []


async def test_a_retrying_parent_is_not_an_ended_one(broker):
    a = make(max_retries=1)
    b = dependent(a)
    await broker.enqueue([a, b], NOW)
    [lease] = await broker.claim("n", 1, 30, NOW)
    await broker.finish([Finish(a.id, lease.token, "failed", error="x", retry_at=NOW + 1)], NOW + 1)
    assert (await broker.get(b.id)).status == JobStatus.WAITING


async def test_run_on_dependency_failure_lets_the_dependent_run(broker):
    a = make(max_retries=0)
    b = dependent(a, on_dependency_failure="run", receive_results=True)
    await broker.enqueue([a, b], NOW)
    await run_one(broker, outcome="failed")
    got = await broker.get(b.id)
    assert got.status == JobStatus.PENDING and got.dependency_results == {a.id: None}


async def test_cancelling_a_parent_fails_its_dependents_and_a_waiting_job_cancels(broker):
    a, x = make(), make()
    b = dependent(a)
    c = dependent(x)
    await broker.enqueue([a, x, b, c], NOW)
    await broker.cancel(a.id, NOW + 1)
    got = await broker.get(b.id)
    assert got.status == JobStatus.FAILED and got.error == f"dependency {a.id} cancelled"
    cancelled = await broker.cancel(c.id, NOW + 1)
    assert cancelled.status == JobStatus.CANCELLED
    await run_one(broker, now=NOW + 2)  # x completes: c stays cancelled
    assert (await broker.get(c.id)).status == JobStatus.CANCELLED


async def test_parents_already_ended_at_submit_time(broker):
    done, failed = make(), make(max_retries=0)
    await broker.enqueue([done], NOW)
    await run_one(broker, result="r")
    await broker.enqueue([failed], NOW)
    await run_one(broker, outcome="failed")
    [due] = await broker.enqueue([dependent(done, receive_results=True)], NOW + 5)
    assert due.status == JobStatus.PENDING and due.dependency_results == {done.id: "r"}
    [dead] = await broker.enqueue([dependent(done, failed)], NOW + 5)
    assert dead.status == JobStatus.FAILED and dead.error == f"dependency {failed.id} failed"
    [runs] = await broker.enqueue([dependent(failed, on_dependency_failure="run")], NOW + 5)
    assert runs.status == JobStatus.PENDING
    # a purged parent counts as it ended (its tombstone)
    epoch = await broker.acquire_epoch("leader", NOW)
    assert await broker.purge_finished(NOW + 100, epoch) == 3  # with the dead dependent
    [after] = await broker.enqueue([dependent(done)], NOW + 200)
    assert after.status == JobStatus.PENDING


async def test_an_unknown_parent_is_refused_and_nothing_is_inserted(broker):
    ok = make()
    ghost = make()  # never enqueued
    with pytest.raises(UnknownDependency) as caught:
        await broker.enqueue([ok, dependent(ghost)], NOW)
    assert caught.value.dependency == ghost.id
    assert await broker.get(ok.id) is None


async def test_a_scheduled_dependent_waits_for_its_time_too(broker):
    a = make()
    b = dependent(a, scheduled_at=NOW + 60)
    await broker.enqueue([a, b], NOW)
    await run_one(broker)
    got = await broker.get(b.id)
    assert got.status == JobStatus.SCHEDULED
    epoch = await broker.acquire_epoch("leader", NOW)
    assert [j.id for j in await broker.promote_due(NOW + 61, epoch)] == [b.id]


async def test_deleting_a_live_parent_releases_its_dependents(broker):
    a = make()
    b = dependent(a)
    await broker.enqueue([a, b], NOW)
    assert await broker.delete(a.id)
    got = await broker.get(b.id)
    assert got.status == JobStatus.FAILED and got.error == f"dependency {a.id} cancelled"


async def test_a_chord_releases_its_callback_once_with_every_result(broker):
    group = [make(payload={"n": i}) for i in range(5)]
    callback = dependent(*group, receive_results=True)
    await broker.enqueue([*group, callback], NOW)
    leases = await broker.claim("n", 10, 30, NOW)
    assert sorted(lease.job.id for lease in leases) == sorted(j.id for j in group)
    for lease in leases:
        assert (await broker.get(callback.id)).status == JobStatus.WAITING
        await broker.finish(
            [Finish(lease.job.id, lease.token, "completed", result=lease.job.payload["n"])],
            NOW + 1,
        )
        # a repeated finish (a retried reply) changes nothing
        await broker.finish([Finish(lease.job.id, lease.token, "completed")], NOW + 1)
    got = await broker.get(callback.id)
    assert got.status == JobStatus.PENDING and got.results == [0, 1, 2, 3, 4]
    [lease] = await broker.claim("n", 10, 30, NOW + 2)
    assert lease.job.id == callback.id
    assert await broker.claim("n", 10, 30, NOW + 2) == []


async def test_a_payload_spelling_the_dependency_fields_changes_nothing(broker):
    # on Redis these fields sit in the job's body after the payload: the scripts must read
    # the job's own, not a payload key of the same name
    a = make(max_retries=0)
    fake = {"a": 1, "depends_on": ["01J9Z6N5G4X8W3QH2K7R1M0P9T"], "on_dependency_failure": "run"}
    b = dependent(a, payload=fake)
    await broker.enqueue([a, b], NOW)
    assert (await broker.get(b.id)).waiting_for == [a.id]
    await run_one(broker, outcome="failed")
    got = await broker.get(b.id)
    assert got.status == JobStatus.FAILED and got.error == f"dependency {a.id} failed"
    assert got.payload == fake


# --------------------------------------------------------------------------- workflows


@pytest.mark.parametrize(
    "spec",
    [
        {"chain": [{"type": "a"}, {"type": "b"}, {"type": "c"}]},
        {"group": [{"type": "a"}, {"type": "b"}]},  # no dependencies: the plain enqueue path
        {"chord": {"group": [{"type": "a"}, {"type": "b"}], "callback": {"type": "c"}}},
        {"group": [{"type": "a"}]},  # one job
    ],
)
async def test_a_retried_workflow_with_its_key_files_nothing_new(broker, spec):
    """The same key again hands back the workflow's root alone: no second set of jobs.
    Without the rule a group was filed twice and a chain's steps again after its root."""
    first = build_workflow({**spec, "idempotency_key": "wf-1"}, NOW, ids=ids)
    stored = await broker.enqueue(first, NOW)
    assert [j.id for j in stored] == [j.id for j in first]
    before = await broker.depths()
    again = build_workflow({**spec, "idempotency_key": "wf-1"}, NOW + 1, ids=ids)
    [held] = await broker.enqueue(again, NOW + 1)
    assert held.id == first[0].id and held.workflow == first[0].workflow
    assert await broker.depths() == before
    assert await broker.get_many([j.id for j in again]) == {}
    other = build_workflow({**spec, "idempotency_key": "wf-2"}, NOW + 2, ids=ids)
    assert [j.id for j in await broker.enqueue(other, NOW + 2)] == [j.id for j in other]


async def test_a_workflow_whose_key_a_plain_job_holds_files_nothing(broker):
    [job] = await broker.enqueue([make(idempotency_key="k")], NOW)
    flow = build_workflow({"chain": [{"type": "a"}, {"type": "b"}], "idempotency_key": "k"}, NOW)
    [held] = await broker.enqueue(flow, NOW)
    assert held.id == job.id and held.workflow is None
    assert await broker.get_many([j.id for j in flow]) == {}


async def test_concurrent_submissions_of_one_keyed_workflow_file_one_set(broker):
    """Two submissions with one key at once (a client's retry racing its first try): the
    key is checked and the jobs filed in one Broker move, so one set is filed and both
    answers name its root."""
    spec = {"chain": [{"type": "a"}, {"type": "b"}], "idempotency_key": "race"}
    flows = [build_workflow(spec, NOW, ids=ids) for _ in range(4)]
    answers: list[list[Job]] = []

    async def submit(flow: list[Job]) -> None:
        answers.append(await broker.enqueue(flow, NOW))

    async with trio.open_nursery() as nursery:
        for flow in flows:
            nursery.start_soon(submit, flow)
    assert len({answer[0].id for answer in answers}) == 1
    assert sorted(len(answer) for answer in answers) == [1, 1, 1, 2]
    assert sum((await broker.depths()).values()) == 2


async def test_a_workflow_key_answers_whatever_it_holds_and_is_free_once_its_root_is_gone(
    broker,
):
    """As documented (docs/api.md, workflows): the body is not compared (a different
    workflow, or a plain job, sent with a held key is answered with the workflow's root);
    the key is held by the first job only, so once that job is purged (it ends first in a
    chain) the same key files a new workflow."""
    spec = {"chain": [{"type": "a"}, {"type": "b"}], "idempotency_key": "wf"}
    first = build_workflow(spec, NOW, ids=ids)
    await broker.enqueue(first, NOW)
    other = build_workflow({"group": [{"type": "z"}], "idempotency_key": "wf"}, NOW, ids=ids)
    [held] = await broker.enqueue(other, NOW)
    assert held.id == first[0].id and held.type == "a"
    [same] = await broker.enqueue([make("z", idempotency_key="wf")], NOW)
    assert same.id == first[0].id
    epoch = await broker.acquire_epoch("leader", NOW)
    done = await run_one(broker)
    assert done.id == first[0].id
    assert await broker.purge_finished(NOW + 10, epoch, only=[(done.id, done.version)]) == 1
    assert (await broker.get(first[1].id)).status == JobStatus.PENDING  # still to run
    again = build_workflow(spec, NOW + 10, ids=ids)
    assert [j.id for j in await broker.enqueue(again, NOW + 10)] == [j.id for j in again]
