"""QUEUES, QUEUE_CONCURRENCY and the queue field: parsing, claim scopes, unserved types."""

from __future__ import annotations

import random

import pytest

from jobtrio.config import ConfigError, Settings
from jobtrio.jobs import ValidationError
from jobtrio.queueplan import (
    QueuePlan,
    Worker,
    advertised_types,
    unserved,
    worker_from_meta,
)
from jobtrio.submission import validate_submission


def settings(**env: str) -> Settings:
    return Settings.from_env(env, dotenv_path=None)


def test_queues_default_to_every_queue_merged() -> None:
    plan = settings().queue_plan
    assert plan.queues == () and plan.order(random.Random(1)) is None
    scope = plan.scope(["a", "b"], {}, random.Random(1))
    assert scope.queues is None and scope.types == frozenset({"a", "b"}) and scope.limits == ()


def test_strict_order_is_kept_on_every_claim() -> None:
    plan = settings(QUEUES="render, email").queue_plan
    assert plan.text == "render,email"
    rng = random.Random(1)
    assert {plan.order(rng) for _ in range(50)} == {("render", "email")}


def test_weights_draw_the_order_in_proportion() -> None:
    plan = settings(QUEUES="render:3,email:1").queue_plan
    assert plan.text == "render:3,email:1"
    rng = random.Random(7)
    firsts = [plan.order(rng)[0] for _ in range(4000)]
    share = firsts.count("render") / len(firsts)
    assert 0.72 < share < 0.78  # 3 in 4
    assert all(sorted(plan.order(rng)) == ["email", "render"] for _ in range(20))


def test_concurrency_caps_what_is_left_to_hold() -> None:
    plan = settings(QUEUE_CONCURRENCY="render=2,email=5").queue_plan
    scope = plan.scope(["x"], {"render": 2, "email": 1}, random.Random(1))
    assert dict(scope.limits) == {"render": 0, "email": 4}


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("QUEUES", "render,email:1", "give every queue a weight"),
        ("QUEUES", "a,a", "named twice"),
        ("QUEUES", "a:0", "from 1 to 1000"),
        ("QUEUES", "a:x", "whole number"),
        ("QUEUES", "a,,b", "separated by commas"),
        ("QUEUES", "a\x1bb", "control character"),
        ("QUEUES", "a/b", "'/'"),
        ("QUEUE_CONCURRENCY", "render", "queue=limit"),
        ("QUEUE_CONCURRENCY", "render=0", "from 1 to 10000"),
        # a huge limit was accepted, a cap that caps nothing
        ("QUEUE_CONCURRENCY", "render=10001", "from 1 to 10000"),
        ("QUEUE_CONCURRENCY", "render=" + "9" * 5000, "from 1 to 10000"),
        ("QUEUE_CONCURRENCY", "render=1,render=2", "named twice"),
        # past int's 4,300-digit limit: was "must be a whole number", echoing all of it
        ("QUEUES", "a:" + "9" * 5000, "from 1 to 1000"),
        ("QUEUES", "a:-" + "9" * 5000, "from 1 to 1000"),
        ("QUEUE_CONCURRENCY", "render=-" + "9" * 5000, "from 1 to 10000"),
        ("QUEUE_CONCURRENCY", "render=1.5", "whole number"),
    ],
)
def test_bad_settings_are_one_clear_line(name: str, value: str, says: str) -> None:
    with pytest.raises(ConfigError) as err:
        settings(**{name: value})
    assert name in str(err.value) and says in str(err.value)
    assert len(str(err.value)) < 300 and "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("queue", "says"),
    [
        ("", "non-empty"),
        (3, "non-empty string"),
        ("x" * 101, "longer than 100"),
        ("a\x00b", "control character"),
        ("a:b", "separator"),
        ("a/b", "separator"),
        (" a", "space"),
    ],
)
def test_a_bad_queue_name_is_refused_naming_the_field(queue: object, says: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_submission({"type": "t", "queue": queue}, 0.0)
    assert err.value.field == "queue" and says in err.value.message


def test_unserved_names_the_missing_type_or_queue() -> None:
    workers = [
        Worker("gpu", frozenset({"render"}), QueuePlan(("gpu",))),
        Worker("small", frozenset({"email"}), QueuePlan()),
    ]
    pending = {"gpu": {"render": 2}, "default": {"render": 1, "email": 4, "resize": 3}}
    assert unserved(pending, workers) == [
        {
            "queue": "default",
            "type": "render",
            "pending": 1,
            "reason": "no worker serves queue default",
        },
        {"queue": "default", "type": "resize", "pending": 3, "reason": "no worker for type resize"},
    ]


def test_advertised_types_round_trip_and_too_many_mean_any() -> None:
    worker = worker_from_meta("n", {"types": advertised_types(["b", "a"]), "queues": "q:2,r:1"})
    assert worker.types == frozenset({"a", "b"}) and worker.plan.queues == ("q", "r")
    assert advertised_types([f"type-{i:05d}" for i in range(1000)]) == ""
    assert worker_from_meta("n", {"types": "", "queues": "bad,,"}).types is None
    assert worker_from_meta("n", {}).plan.serves("anything")


async def test_queue_concurrency_caps_what_a_node_holds_and_strict_order_serves_first(
    autojump_clock: object,
) -> None:
    """QUEUE_CONCURRENCY=slow=1 on 4 workers: one slow job at a time (without it the
    three slow jobs, claimed first, would run at once); QUEUES=slow,fast claims the
    slow queue first."""
    import trio

    from jobtrio.backends.memory import MemoryBroker
    from jobtrio.processors import JobContext, Registry
    from tests.test_node import running_node, terminal

    registry = Registry()
    running: dict[str, int] = {"slow": 0, "fast": 0}
    most: dict[str, int] = {"slow": 0, "fast": 0}
    order: list[str] = []

    async def run(ctx: JobContext) -> None:
        queue = ctx.payload["q"]
        order.append(queue)
        running[queue] += 1
        most[queue] = max(most[queue], running[queue])
        await trio.sleep(1)
        running[queue] -= 1

    registry.register("work", run)
    broker = MemoryBroker()
    jobs = [
        validate_submission({"type": "work", "queue": q, "payload": {"q": q}}, trio.current_time())
        for q in ["fast"] * 6 + ["slow"] * 3
    ]
    await broker.enqueue(jobs, trio.current_time())
    async with running_node(
        registry,
        broker=broker,
        worker_count=4,
        queues=(("slow", "fast"), None),
        queue_concurrency=(("slow", 1),),
    ) as node:
        for job in jobs:
            assert (await terminal(node, job.id)).status == "completed"
    assert most["slow"] == 1 and most["fast"] >= 3
    # the first four started at once hold the slow queue's job (FIFO alone: four fast)
    assert sorted(order[:4]) == ["fast", "fast", "fast", "slow"]
