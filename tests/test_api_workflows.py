"""Workflows over the REST API: chain, group, chord (nested too), state, cancel, errors.

One node on the memory backends under trio's MockClock (autojump); the
Quart test client calls the routes in the same loop.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio

from jobtrio.api.app import create_app
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node
from tests.waiting import wait_until


def steps() -> Registry:
    registry = Registry()

    @registry.processor("add")
    async def add(ctx: JobContext) -> int:
        # a dependency that failed under on_dependency_failure=run hands on None
        return sum(r for r in ctx.results or [] if r is not None) + ctx.payload.get("n", 0)

    @registry.processor("hold")
    async def hold(ctx: JobContext) -> int:
        await trio.sleep(3600)
        return 0

    return registry


@pytest.fixture
async def api(autojump_clock) -> AsyncIterator:
    async with running_node(steps()) as node:
        yield create_app(node).test_client()


async def finished(api, workflow_id: str) -> dict:
    async def done():
        view = await (await api.get(f"/api/v1/workflows/{workflow_id}")).get_json()
        return view if view["status"] != "running" else None

    return await wait_until(done, timeout=120, message=f"workflow {workflow_id}")


def add(n: int) -> dict:
    return {"type": "add", "payload": {"n": n}}


async def test_a_chain_runs_in_order_handing_results_on(api):
    response = await api.post("/api/v1/workflows", json={"chain": [add(1), add(2), add(3)]})
    assert response.status_code == 201, await response.get_data()
    view = await response.get_json()
    assert response.headers["Location"] == f"/api/v1/workflows/{view['id']}"
    assert view["kind"] == "chain" and view["status"] == "running"
    assert [j["status"] for j in view["jobs"]] == ["pending", "waiting", "waiting"]
    assert view["jobs"][0]["id"] == view["id"] == view["members"][0]
    assert all(j["workflow_id"] == view["id"] for j in view["jobs"])
    done = await finished(api, view["id"])
    assert done["status"] == "completed" and done["counts"] == {"completed": 3}
    # each step saw its parent's result, so it ran after the parent completed; the
    # timestamps cannot show it: started_at is the claiming node's clock when its claim
    # left, which may be read a moment before the parent's finish (and, across nodes,
    # is skewed), so comparing completed_at with started_at failed 1 run in 10
    assert [j["result"] for j in done["jobs"]] == [1, 3, 6]
    first, second, third = done["jobs"]
    assert second["dependency_results"] == {first["id"]: 1}
    assert third["dependency_results"] == {second["id"]: 3}


async def test_a_chord_callback_receives_every_result_and_groups_nest(api):
    spec = {
        "chain": [
            add(1),
            {"chord": {"group": [add(10), add(20), add(30)], "callback": add(0)}},
            {"group": [add(100), add(200)]},
        ]
    }
    view = await (await api.post("/api/v1/workflows", json=spec)).get_json()
    done = await finished(api, view["id"])
    assert done["status"] == "completed"
    results = [j["result"] for j in done["jobs"]]
    # the chord's members each got the chain's first result (1); the callback all three
    assert results[:5] == [1, 11, 21, 31, 63]
    assert results[5:] == [163, 263]
    callback = done["jobs"][4]
    assert callback["depends_on"] == [j["id"] for j in done["jobs"][1:4]]


async def test_a_failing_step_fails_the_rest_naming_it(api):
    spec = {"chain": [add(1), {"type": "fail", "max_retries": 0}, add(2)]}
    view = await (await api.post("/api/v1/workflows", json=spec)).get_json()
    done = await finished(api, view["id"])
    assert done["status"] == "failed"
    assert [j["status"] for j in done["jobs"]] == ["completed", "failed", "failed"]
    assert done["jobs"][2]["error"] == f"dependency {done['jobs'][1]['id']} failed"
    assert done["jobs"][2]["attempts"] == []
    # with run, the step after a failure runs anyway
    spec = {"chain": [{"type": "fail", "max_retries": 0}, add(5)], "on_dependency_failure": "run"}
    view = await (await api.post("/api/v1/workflows", json=spec)).get_json()
    done = await finished(api, view["id"])
    assert [j["status"] for j in done["jobs"]] == ["failed", "completed"]
    assert done["jobs"][1]["result"] == 5


async def test_cancelling_a_workflow_cancels_what_has_not_finished(api):
    spec = {"chain": [add(1), {"type": "hold"}, add(2), add(3)]}
    view = await (await api.post("/api/v1/workflows", json=spec)).get_json()

    async def holding():
        got = await (await api.get(f"/api/v1/workflows/{view['id']}")).get_json()
        return got if got["jobs"][1]["status"] == "running" else None

    await wait_until(holding, timeout=60, message="the hold step to run")
    response = await api.delete(f"/api/v1/workflows/{view['id']}")
    assert response.status_code == 200
    after = await response.get_json()
    assert after["status"] == "cancelled"
    assert [j["status"] for j in after["jobs"]] == [
        "completed",
        "cancelled",
        "cancelled",
        "cancelled",
    ]


async def test_bad_workflows_are_refused_naming_the_place(api):
    cases = [
        ({"chain": [add(1), {"type": "add", "priority": 99}]}, "workflow.chain[1].priority"),
        ({"chain": []}, "workflow.chain"),
        ({"group": [add(1)], "chain": [add(2)]}, "workflow"),
        ({"chain": [{"type": "add", "depends_on": []}]}, "workflow.chain[0].depends_on"),
        ({"chord": {"group": [add(1)]}}, "workflow.chord"),
        ({"group": [add(1)], "pass_results": True}, "workflow"),
        ({"group": [add(1)], "on_dependency_failure": "maybe"}, "on_dependency_failure"),
        ({"chain": [5]}, "workflow.chain[0]"),
    ]
    for spec, field in cases:
        response = await api.post("/api/v1/workflows", json=spec)
        assert response.status_code == 422, spec
        assert (await response.get_json())["error"]["field"] == field, spec
    response = await api.post(
        "/api/v1/workflows", json={"group": [{**add(1), "idempotency_key": "k"}]}
    )
    error = (await response.get_json())["error"]
    assert error["field"] == "workflow.group[0].idempotency_key"
    assert "give the workflow one, at its top level" in error["message"]
    too_many = {"group": [add(1)] * 1001}
    response = await api.post("/api/v1/workflows", json=too_many)
    assert response.status_code == 422
    assert "at most 1000 jobs" in (await response.get_json())["error"]["message"]


async def test_workflows_nest_at_most_16_levels_as_documented(api):
    """docs/api.md: "at most 16 levels of nesting"; 17 nested workflows were accepted."""

    def nest(levels: int) -> dict:
        spec: dict = add(1)
        for _ in range(levels):
            spec = {"chain": [spec]}
        return spec

    async def held() -> dict:  # the Broker's counts: the Store's records arrive later
        return (await (await api.get("/api/v1/stats")).get_json())["queue"]

    assert (await api.post("/api/v1/workflows", json=nest(16))).status_code == 201
    before = await held()
    response = await api.post("/api/v1/workflows", json=nest(17))
    assert response.status_code == 422
    error = (await response.get_json())["error"]
    assert error["field"] == "workflow" + ".chain[0]" * 16
    assert "deeper than 16 levels" in error["message"]
    assert await held() == before  # nothing stored


async def test_unknown_workflows_are_404(api):
    assert (await api.get("/api/v1/workflows/nope")).status_code == 404
    job = await (await api.post("/api/v1/jobs", json=add(1))).get_json()
    response = await api.get(f"/api/v1/workflows/{job['id']}")  # a job, not a workflow
    assert response.status_code == 404
    assert (await api.delete(f"/api/v1/workflows/{job['id']}")).status_code == 404


async def test_a_chord_whose_gathered_results_exceed_max_payload_bytes_fails_naming_it(
    autojump_clock,
):
    """A chord's callback got every member's result as its input with no bound: now more
    than MAX_PAYLOAD_BYTES of them together fail it without running (or retrying)."""
    ran: list[str] = []
    registry = Registry()

    @registry.processor("blob")
    async def blob(ctx: JobContext) -> str:
        return "x" * 60  # 62 bytes as JSON

    @registry.processor("gather")
    async def gather(ctx: JobContext) -> int:
        ran.append(ctx.job_id)
        return len(ctx.results or [])

    async with running_node(registry, max_payload_bytes=200) as node:
        api = create_app(node).test_client()
        small = {"chord": {"group": [{"type": "blob"}] * 3, "callback": {"type": "gather"}}}
        big = {"chord": {"group": [{"type": "blob"}] * 4, "callback": {"type": "gather"}}}
        fits = await (await api.post("/api/v1/workflows", json=small)).get_json()
        over = await (await api.post("/api/v1/workflows", json=big)).get_json()
        assert (await finished(api, fits["id"]))["status"] == "completed"  # 3 * 62 bytes
        view = await finished(api, over["id"])
        assert view["status"] == "failed" and view["counts"] == {"completed": 4, "failed": 1}
        callback = view["jobs"][-1]
        assert callback["error"] == (
            "the results of its 4 dependencies are 248 bytes as JSON together; "
            "the limit on a job's input is 200 (MAX_PAYLOAD_BYTES)"
        )
        assert len(callback["attempts"]) == 1 and ran == [fits["members"][-1]]


async def test_a_result_at_max_result_bytes_is_handed_on_down_a_chain(autojump_clock):
    """With MAX_RESULT_BYTES == MAX_PAYLOAD_BYTES, a result at the limit is a next step's
    whole input: it fits (measured as the list [result], 2 bytes more, it did not)."""
    registry = Registry()

    @registry.processor("fill")
    async def fill(ctx: JobContext) -> str:
        return "x" * 198  # 200 bytes as JSON: the limit

    @registry.processor("take")
    async def take(ctx: JobContext) -> int:
        return len((ctx.results or [""])[0])

    async with running_node(registry, max_payload_bytes=200, max_result_bytes=200) as node:
        api = create_app(node).test_client()
        spec = {"chain": [{"type": "fill"}, {"type": "take"}]}
        flow = await (await api.post("/api/v1/workflows", json=spec)).get_json()
        done = await finished(api, flow["id"])
        assert done["status"] == "completed" and done["jobs"][-1]["result"] == 198
