"""Dependencies through a node: results handed on, releases recorded and published,
an unknown parent refused with a 400. Memory backends under trio's MockClock."""

from __future__ import annotations

import trio

from jobtrio.api.app import create_app
from jobtrio.backends.base import JobQuery
from jobtrio.jobs import JobStatus
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node, terminal
from tests.waiting import wait_until


def registry_with_steps() -> Registry:
    registry = Registry()

    @registry.processor("add")
    async def add(ctx: JobContext) -> int:
        before = sum(ctx.results or [])
        return before + ctx.payload.get("n", 0)

    return registry


async def test_a_dependent_runs_after_its_parent_with_its_result(autojump_clock):
    async with running_node(registry_with_steps()) as node:
        with node.events.subscribe() as events:
            gate = await node.submit({"type": "sleep", "payload": {"seconds": 5}})
            a = await node.submit({"type": "add", "payload": {"n": 2}, "depends_on": [gate.id]})
            b = await node.submit(
                {"type": "add", "payload": {"n": 3}, "depends_on": [a.id], "receive_results": True}
            )
            assert a.status == b.status == JobStatus.WAITING
            done = await terminal(node, b.id)
            kinds = []
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                if event.get("job", {}).get("job_id") == b.id:
                    kinds.append(event["type"])
        first = await node.get(a.id)
        assert first.completed_at <= done.started_at
        assert done.status == JobStatus.COMPLETED and done.result == 5
        assert kinds.index("job.released") < kinds.index("job.started")

        # the Store's record moved on too (the Broker released b inside a's finish)
        async def recorded():
            record = await node.store.get(b.id)
            return record if record is not None and record.terminal else None

        await wait_until(recorded, timeout=30, message="b's record")


async def test_a_failed_parent_fails_the_dependent_and_its_record(autojump_clock):
    async with running_node() as node:
        parent = await node.submit({"type": "fail", "max_retries": 0})
        child = await node.submit({"type": "noop", "depends_on": [parent.id]})
        done = await terminal(node, child.id)
        assert done.status == JobStatus.FAILED
        assert done.error == f"dependency {parent.id} failed"
        assert done.attempts == []  # never ran

        async def recorded():
            record = await node.store.get(child.id)
            return record if record is not None and record.terminal else None

        assert (await wait_until(recorded, timeout=30, message="record")).error == done.error


async def test_unknown_parent_is_a_400_naming_it(autojump_clock):
    async with running_node() as node:
        client = create_app(node).test_client()
        ghost = "01J9Z6N5G4X8W3QH2K7R1M0P9T"
        response = await client.post("/api/v1/jobs", json={"type": "noop", "depends_on": [ghost]})
        assert response.status_code == 400
        body = await response.get_json()
        assert body["error"]["code"] == "unknown_dependency"
        assert body["error"]["field"] == "depends_on" and ghost in body["error"]["message"]
        bad = await client.post("/api/v1/jobs", json={"type": "noop", "depends_on": ["x"]})
        assert bad.status_code == 422
        assert "'x', which is not a job id" in (await bad.get_json())["error"]["message"]
        # the same job alongside others: only it is refused
        ok = await client.post("/api/v1/jobs", json={"type": "noop"})
        assert ok.status_code == 201


async def test_metrics_count_workflows_and_released_dependents(autojump_clock):
    from tests.test_metrics import scrape, value

    async with running_node() as node:
        view = await node.submit_workflow(
            {"chain": [{"type": "noop"}, {"type": "fail", "max_retries": 0}, {"type": "noop"}]}
        )

        async def ended():
            got = await node.get_workflow(view["id"])
            return got if got["status"] != "running" else None

        await wait_until(ended, timeout=60, message="the workflow")

        async def counted():
            m = scrape(node.metrics.render().decode())
            return m if value(m, "jobs_dependents_released_total", outcome="failed") else None

        m = await wait_until(counted, timeout=30, message="the released count")
    assert value(m, "workflows_submitted_total") == 1
    # the fail step was released by the first, the last failed by the fail step
    assert value(m, "jobs_dependents_released_total", outcome="released") == 1
    assert value(m, "jobs_dependents_released_total", outcome="failed") == 1


async def test_a_batch_naming_an_unknown_parent_is_refused_whole(autojump_clock):
    async with running_node() as node:
        client = create_app(node).test_client()
        ghost = "01J9Z6N5G4X8W3QH2K7R1M0P9T"
        response = await client.post(
            "/api/v1/jobs/batch",
            json={"jobs": [{"type": "noop"}, {"type": "noop", "depends_on": [ghost]}]},
        )
        assert response.status_code == 400
        assert (await response.get_json())["error"]["code"] == "unknown_dependency"
        assert (await node.list(JobQuery())).jobs == []


async def test_a_released_job_wakes_the_dispatcher(autojump_clock):
    async with running_node() as node:
        woken = []
        wake = node.dispatcher.wake
        node.dispatcher.wake = lambda: (woken.append(1), wake())[1]  # type: ignore[method-assign]
        parent = await node.submit({"type": "sleep", "payload": {"seconds": 1}})
        child = await node.submit({"type": "noop", "depends_on": [parent.id]})
        woken.clear()
        await terminal(node, child.id)
        assert woken  # the release, not only the next idle poll, started the claim
