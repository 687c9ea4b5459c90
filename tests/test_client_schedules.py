"""The Python clients' periodic-job and election methods against a node over real HTTP.

As in ``test_client.py``: the node (memory backends, plus one schedule
defined in code) and hypercorn run in the test's trio loop, the blocking
``Client`` in a worker thread and ``AsyncClient`` in the loop itself.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.client import (
    AsyncClient,
    Client,
    Conflict,
    InvalidJob,
    InvalidRequest,
    NotFound,
    schedule_submission,
)
from jobtrio.config import Settings
from jobtrio.processors import Registry
from tests.test_client import Served, in_thread, serve_node
from tests.waiting import wait_until

CODE_SCHEDULE = "nightly-report"


def make_node() -> Node:
    registry = Registry()
    registry.schedule(CODE_SCHEDULE, cron="0 6 * * *", job={"type": "noop"})
    settings = Settings(node_id="sched-node", worker_count=2, shutdown_grace=0.2)
    return Node(settings, MemoryBroker(), MemoryStore(), registry)


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        yield Served(node, url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def record_elections(node: Node, n: int) -> None:
    for epoch in range(1, n + 1):
        await node.store.add_election(
            {
                "leader": "sched-node",
                "term": epoch,
                "epoch": epoch,
                "algorithm": "bully",
                "at": 1_700_000_000.0 + epoch,
                "members": ["sched-node"],
            }
        )


def test_schedule_submission_builds_the_wire_shape() -> None:
    body = schedule_submission("beat", "noop", every="30s")
    assert body == {"name": "beat", "job": {"type": "noop"}, "every": "30s", "enabled": True}
    body = schedule_submission(
        "report",
        "email",
        {"to": "ops@example.com"},
        cron="0 6 * * *",
        priority=8,
        max_retries=2,
        timeout=dt.timedelta(minutes=1),
        enabled=False,
        misfire_grace=dt.timedelta(minutes=5),
    )
    assert body == {
        "name": "report",
        "job": {
            "type": "email",
            "payload": {"to": "ops@example.com"},
            "priority": 8,
            "max_retries": 2,
            "timeout": 60.0,
        },
        "cron": "0 6 * * *",
        "enabled": False,
        "misfire_grace": 300.0,
    }
    assert schedule_submission("x", "noop", every=dt.timedelta(seconds=90))["every"] == 90.0
    with pytest.raises(ValueError, match="exactly one of cron or every"):
        schedule_submission("x", "noop")
    with pytest.raises(ValueError, match="exactly one of cron or every"):
        schedule_submission("x", "noop", cron="* * * * *", every=5)


async def test_add_list_get_and_delete_schedules(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            saved = client.add_schedule("beat", "echo", {"n": 1}, every="30s", priority=7)
            assert saved["name"] == "beat" and saved["every"] == 30.0
            assert saved["job"] == {"type": "echo", "payload": {"n": 1}, "priority": 7}
            assert saved["source"] == "api" and saved["next_tick"].endswith("Z")
            names = [(s["name"], s["source"]) for s in client.schedules()]
            assert names == [("beat", "api"), (CODE_SCHEDULE, "code")]
            # next_tick moves on when a tick passes between the two calls (every 30 s)
            fetched = client.get_schedule("beat")
            moving = ("next_tick", "last_tick")
            assert {k: v for k, v in fetched.items() if k not in moving} == {
                k: v for k, v in saved.items() if k not in moving
            }
            assert fetched["next_tick"] >= saved["next_tick"]
            replaced = client.add_schedule("beat", "noop", cron="*/5 * * * *", enabled=False)
            assert replaced["cron"] == "*/5 * * * *" and replaced["every"] is None
            assert client.get_schedule("beat")["enabled"] is False
            client.delete_schedule("beat")
            with pytest.raises(NotFound) as missing:
                client.get_schedule("beat")
            assert missing.value.status == 404 and missing.value.code == "not_found"
            with pytest.raises(NotFound):
                client.delete_schedule("beat")
            with pytest.raises(NotFound):
                client.get_schedule("a/b")  # quoted: one path segment, no such name

    await in_thread(scenario)


async def test_schedule_errors_carry_status_code_and_field(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            with pytest.raises(InvalidJob) as invalid:
                client.add_schedule("bad", "noop", cron="every day")
            assert invalid.value.status == 422 and invalid.value.field == "cron"
            with pytest.raises(InvalidJob) as invalid:
                client.add_schedule("bad", "noop", every="5s", priority=0)
            assert invalid.value.field == "job.priority"
            with pytest.raises(Conflict) as conflict:
                client.add_schedule(CODE_SCHEDULE, "noop", every="5s")
            assert conflict.value.status == 409 and conflict.value.code == "conflict"
            assert conflict.value.field == "name"
            with pytest.raises(Conflict) as conflict:
                client.delete_schedule(CODE_SCHEDULE)
            assert "defined in code" in str(conflict.value)
            assert [s["name"] for s in client.schedules()] == [CODE_SCHEDULE]

    await in_thread(scenario)


async def test_elections_newest_first_with_a_limit(served: Served) -> None:
    def own_leadership_only() -> None:
        with Client(served.url) as client:
            [own] = client.elections()  # a node alone records its own leadership
            assert own["algorithm"] == "standalone"

    await wait_until(served.node.store.list_elections, message="the standalone record")
    await in_thread(own_leadership_only)
    await record_elections(served.node, 5)

    def scenario() -> None:
        with Client(served.url) as client:
            history = client.elections()
            assert [e["epoch"] for e in history][:5] == [5, 4, 3, 2, 1]
            assert history[0]["at"] == "2023-11-14T22:13:25.000000Z"
            assert [e["epoch"] for e in client.elections(limit=2)] == [5, 4]
            with pytest.raises(InvalidRequest) as bad:
                client.elections(limit=0)
            assert bad.value.status == 400 and bad.value.field == "limit"

    await in_thread(scenario)


async def test_async_client_schedules_and_elections(served: Served) -> None:
    await record_elections(served.node, 3)
    async with AsyncClient(served.url) as client:
        saved = await client.add_schedule("beat", "noop", every=dt.timedelta(seconds=45))
        assert saved["every"] == 45.0
        schedules: list[dict[str, Any]] = await client.schedules()
        assert [s["name"] for s in schedules] == ["beat", CODE_SCHEDULE]
        assert (await client.get_schedule("beat"))["every"] == 45.0
        with pytest.raises(Conflict):
            await client.delete_schedule(CODE_SCHEDULE)
        await client.delete_schedule("beat")
        with pytest.raises(NotFound):
            await client.get_schedule("beat")
        with pytest.raises(InvalidJob):
            await client.add_schedule("x", "noop", every="0.5s")
        assert [e["epoch"] for e in await client.elections(limit=2)] == [3, 2]
