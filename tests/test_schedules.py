"""Periodic jobs: cron and interval ticks, validation, and once per tick across leaders."""

from __future__ import annotations

import pytest
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.base import JobQuery
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus, ValidationError
from jobtrio.processors import JobContext, Registry
from jobtrio.schedules import Schedule, validate_schedule

EPOCH0 = 1_700_000_000.0


def clock() -> float:
    return EPOCH0 + trio.current_time()


def test_interval_ticks_align_and_misfires_are_not_replayed():
    s = Schedule(name="beat", job={"type": "noop"}, every=10.0, misfire_grace=5.0)
    assert s.latest_tick(1003.0) == 1000.0 and s.next_tick(1003.0) == 1010.0
    assert s.due(1003.0, None) == 1000.0
    assert s.due(1003.0, 1000.0) is None  # already fired
    assert s.due(1008.0, None) is None  # 8 s late: beyond the grace, skipped
    assert s.due(1012.0, 1000.0) == 1010.0  # only the latest tick, never a burst


def test_cron_ticks():
    s = Schedule(name="five", job={"type": "noop"}, cron="*/5 * * * *")
    assert s.latest_tick(1_700_000_003.0) == 1_699_999_800.0
    assert s.next_tick(1_700_000_003.0) == 1_700_000_100.0
    seconds = Schedule(name="s", job={"type": "noop"}, cron="* * * * * */10")
    assert seconds.latest_tick(1_700_000_013.0) == 1_700_000_010.0


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"name": "x", "cron": "nope", "job": {"type": "noop"}}, "cron"),
        ({"name": "x", "every": "soon", "job": {"type": "noop"}}, "every"),
        ({"name": "x", "every": 0.5, "job": {"type": "noop"}}, "every"),
        ({"name": "x", "job": {"type": "noop"}}, "cron"),
        ({"name": "x", "cron": "* * * * *", "every": 5, "job": {"type": "noop"}}, "cron"),
        ({"name": "bad name!", "every": 5, "job": {"type": "noop"}}, "name"),
        ({"name": "x", "every": 5, "job": {"type": "noop", "priority": 99}}, "job.priority"),
        ({"name": "x", "every": 5, "job": {"payload": {}}}, "job.type"),
        ({"name": "x", "every": 5, "job": {"type": "noop"}, "color": "red"}, "color"),
    ],
)
def test_invalid_schedules_name_the_field(spec, field):
    with pytest.raises(ValidationError) as err:
        validate_schedule(spec, 0.0)
    assert err.value.field == field


async def test_stored_schedule_fires_once_per_tick(autojump_clock):
    ran: list[float] = []
    registry = Registry()

    @registry.processor("beat")
    async def beat(ctx: JobContext) -> None:
        ran.append(clock())

    node = Node(Settings(worker_count=2), MemoryBroker(), MemoryStore(), registry, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await node.put_schedule({"name": "beat", "every": "10s", "job": {"type": "beat"}})
        await trio.sleep(95)
        node.request_stop()
    # 9 or 10 ticks in 95 s depending on where the first one falls; never two per tick
    ticks = [int(t // 10) for t in ran]
    assert len(ticks) == len(set(ticks)) and 9 <= len(ticks) <= 10
    listed = await node.list_schedules()
    assert listed[0]["name"] == "beat" and listed[0]["next_tick"] is not None


async def test_code_schedule_fires_once_per_tick_across_a_failover(autojump_clock):
    """Two leaders one after the other (new epoch each) never fire the same tick twice."""
    broker, store = MemoryBroker(), MemoryStore()
    ran: list[str] = []

    def registry() -> Registry:
        r = Registry()

        @r.processor("tick", schedule="* * * * * */10")
        async def tick(ctx: JobContext) -> None:
            ran.append(ctx.job_id)

        return r

    for name in ("first", "second"):
        node = Node(Settings(node_id=name, worker_count=1), broker, store, registry(), clock=clock)
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(34)  # the second leader starts mid-period, its tick already fired
            node.request_stop()
    jobs = [await broker.get(i) for i in ran]
    keys = [j.idempotency_key for j in jobs]
    assert len(keys) == len(set(keys)), keys
    assert all(j.status == JobStatus.COMPLETED for j in jobs)
    assert 6 <= len(ran) <= 8


async def test_schedule_in_code_cannot_be_replaced_over_the_api():
    r = Registry()
    r.schedule("fixed", job={"type": "noop"}, every=60)
    node = Node(Settings(), MemoryBroker(), MemoryStore(), r)
    with pytest.raises(ValidationError):
        await node.put_schedule({"name": "fixed", "every": 5, "job": {"type": "noop"}})


async def test_a_schedule_in_code_wins_over_a_stored_one_of_the_same_name(autojump_clock):
    store = MemoryStore()
    await store.put_schedule(
        {"name": "x", "every": 10.0, "cron": None, "job": {"type": "echo", "payload": {"v": "old"}}}
    )
    registry = Registry()
    registry.schedule("x", job={"type": "echo", "payload": {"v": "code"}}, every=10)
    broker = MemoryBroker()
    node = Node(Settings(worker_count=1), broker, store, registry, clock=clock)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        await trio.sleep(25)
        node.request_stop()
    depths = await broker.depths()
    page = await store.query(JobQuery(limit=100))
    assert page.jobs and {j.payload["v"] for j in page.jobs} == {"code"}
    assert depths["completed"] == len(page.jobs)
