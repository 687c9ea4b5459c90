"""Workflows on a real Redis, two nodes sharing it, one stopping mid-run.

Every job records when its processor ran (both nodes live in this process),
so the test checks what the simulator's checker checks, on the real Lua:
no dependent started before all its parents had completed, none ran twice,
none was left waiting; every chord's callback got every result.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict

import pytest
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.redis import RedisBroker, RedisStore
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus
from jobtrio.processors import JobContext, Registry
from jobtrio.workflows import chain, chord, group
from tests.servers import RedisServer
from tests.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_two_nodes_run_chains_and_chords_exactly_once(redis_server: RedisServer):
    prefix = "flows" + uuid.uuid4().hex[:8]
    runs: dict[str, list[tuple[float, float]]] = defaultdict(list)
    registry = Registry()

    @registry.processor("step")
    async def step(ctx: JobContext) -> int:
        began = time.monotonic()
        await trio.sleep(0.005)
        runs[ctx.job_id].append((began, time.monotonic()))
        return ctx.payload["n"] + sum(ctx.results or [])

    nodes = []
    for name in ("a", "b"):
        broker = await RedisBroker.open(redis_server.url, prefix=prefix, records=True)
        store = await RedisStore.open(redis_server.url, prefix=prefix)
        settings = Settings(node_id=name, worker_count=4, job_lease=5.0, shutdown_grace=5.0)
        nodes.append(Node(settings, broker, store, registry))

    def s(n: int) -> dict:
        return {"type": "step", "payload": {"n": n}}

    specs = []
    for i in range(12):
        specs.append(chord([s(k) for k in range(5)], s(100 * i)))
        specs.append(chain(s(1), group(s(2), s(3)), s(4), s(5)))
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        views = []
        for i, spec in enumerate(specs):
            views.append(await nodes[i % 2].submit_workflow(spec))
            if i == len(specs) // 2:
                nodes[0].request_stop()  # one node leaves mid-run; the other carries on
        survivor = nodes[1]

        async def all_ended():
            got = [await survivor.get_workflow(v["id"]) for v in views]
            return got if all(g["status"] != "running" for g in got) else None

        ended = await wait_until(all_ended, timeout=120, interval=0.1, message="workflows")
        survivor.request_stop()

    by_id = {job["id"]: job for view in ended for job in view["jobs"]}
    assert all(view["status"] == "completed" for view in ended)
    for job_id, job in by_id.items():
        assert len(runs[job_id]) == 1, f"{job_id} ran {len(runs[job_id])} times"
        started = runs[job_id][0][0]
        for parent in job["depends_on"]:
            assert runs[parent][0][1] <= started, f"{job_id} started before {parent} ended"
    for i in range(0, len(ended), 2):
        callback = ended[i]["jobs"][-1]
        assert callback["result"] == 100 * (i // 2) + sum(range(5))
        chained = ended[i + 1]["jobs"]
        assert [j["result"] for j in chained] == [1, 3, 4, 11, 16]
    # the records (the Broker writes them in the same moves) agree
    store = nodes[1].store
    for job_id in by_id:
        record = await store.get(job_id)
        assert record is not None and record.status == JobStatus.COMPLETED
    for node in nodes:
        await node.broker.close()
        await node.store.close()
