"""Retry delays, load-balancing choices, durations, ids and the supervisor."""

from __future__ import annotations

import random
import statistics

import pytest
import trio

from jobtrio.actors.supervisor import supervise
from jobtrio.balancing import Balancer, WorkerLoad
from jobtrio.durations import parse_duration
from jobtrio.jobs import IdGenerator
from jobtrio.retry import RetryPolicy

# ------------------------------------------------------------------ retry policies


def test_exponential_delays_double_until_the_cap():
    p = RetryPolicy("exponential", base_delay=1.0, max_delay=10.0, multiplier=2.0, jitter_factor=0)
    assert [p.base(n) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert p.base(10_000) == 10  # no overflow on absurd counts


def test_fixed_delay_is_constant():
    p = RetryPolicy("fixed", base_delay=0.5, max_delay=60, multiplier=3, jitter_factor=0)
    assert {p.base(n) for n in range(1, 20)} == {0.5}


@pytest.mark.parametrize("kind", ["fixed", "exponential"])
def test_jitter_stays_within_its_bounds_and_spreads(kind):
    p = RetryPolicy(kind, base_delay=2.0, max_delay=60, multiplier=2.0, jitter_factor=0.1)
    rng = random.Random(7)
    for n in (1, 2, 3):
        base = p.base(n)
        samples = [p.delay(n, rng) for _ in range(2000)]
        assert min(samples) >= base * 0.9 and max(samples) <= base * 1.1
        # both sides of the base are used, roughly evenly
        assert min(samples) < base * 0.92 and max(samples) > base * 1.08
        assert abs(statistics.mean(samples) - base) < base * 0.01


def test_jitter_is_reproducible_with_a_seed():
    p = RetryPolicy(jitter_factor=0.5)
    a = [p.delay(3, random.Random(1)) for _ in range(3)]
    b = [p.delay(3, random.Random(1)) for _ in range(3)]
    assert a == b


# ------------------------------------------------------------------ load balancing


def loads(*spec: tuple[bool, float]) -> list[WorkerLoad]:
    return [WorkerLoad(i, idle, busy, 0) for i, (idle, busy) in enumerate(spec)]


def test_round_robin_cycles_over_idle_workers():
    b = Balancer("round_robin")
    ws = loads((True, 0), (True, 0), (True, 0))
    assert [b.choose(ws, 5) for _ in range(5)] == [0, 1, 2, 0, 1]
    ws[2].idle = False
    assert [b.choose(ws, 5) for _ in range(3)] == [0, 1, 0]  # skips the busy one


def test_least_loaded_picks_the_idle_worker_that_worked_least():
    b = Balancer("least_loaded")
    ws = loads((True, 5.0), (False, 0.0), (True, 1.0), (True, 3.0))
    assert b.choose(ws, 5) == 2
    ws[2].idle = False
    assert b.choose(ws, 5) == 3


def test_random_only_picks_idle_workers_and_uses_all_of_them():
    b = Balancer("random", random.Random(3))
    ws = loads((True, 0), (False, 0), (True, 0), (True, 0))
    picks = [b.choose(ws, 5) for _ in range(300)]
    assert set(picks) == {0, 2, 3}


def test_priority_sends_high_priority_jobs_to_the_least_loaded():
    b = Balancer("priority")
    ws = loads((True, 9.0), (True, 0.5), (True, 4.0))
    assert b.choose(ws, 10) == 1  # high: least loaded
    assert b.choose(ws, 8) == 1
    assert [b.choose(ws, 3) for _ in range(3)] == [2, 0, 1]  # low: round robin after last


def test_no_idle_worker_is_an_error():
    with pytest.raises(ValueError):
        Balancer("round_robin").choose(loads((False, 0)), 5)
    with pytest.raises(ValueError):
        Balancer("fastest")


# ------------------------------------------------------------------ durations and ids


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("50ms", 0.05),
        ("1s", 1),
        ("2m", 120),
        ("1h", 3600),
        ("1m30s", 90),
        ("1.5s", 1.5),
        ("10", 10),
        ("250us", 0.00025),
    ],
)
def test_go_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "abc", "10x", "-1s", "1s2", "s", "nan"])
def test_bad_durations(text):
    with pytest.raises(ValueError):
        parse_duration(text)


def test_ids_sort_by_creation_and_are_unique():
    gen = IdGenerator(random.Random(1))
    ids = [gen.new(1_700_000_000 + i / 10_000) for i in range(5000)]
    assert ids == sorted(ids) and len(set(ids)) == 5000
    same_ms = [gen.new(1_800_000_000.0) for _ in range(100)]
    assert same_ms == sorted(same_ms) and len(set(same_ms)) == 100
    assert all(len(i) == 26 for i in ids)


# ------------------------------------------------------------------ supervisor


async def test_supervisor_restarts_a_crashing_actor_with_backoff(autojump_clock):
    runs = []
    restarts = []

    async def actor():
        runs.append(trio.current_time())
        if len(runs) < 4:
            raise RuntimeError(f"crash {len(runs)}")

    await supervise(
        "flaky",
        actor,
        on_restart=lambda n, e, k: restarts.append((n, str(e), k)),
        initial_backoff=0.1,
    )
    assert len(runs) == 4
    assert restarts == [("flaky", "crash 1", 1), ("flaky", "crash 2", 2), ("flaky", "crash 3", 3)]
    gaps = [round(b - a, 3) for a, b in zip(runs, runs[1:], strict=False)]
    assert gaps == [0.1, 0.2, 0.4]


async def test_supervisor_lets_cancellation_through(autojump_clock):
    async def forever():
        await trio.sleep_forever()

    with trio.move_on_after(1) as scope:
        await supervise("forever", forever)
    assert scope.cancelled_caught


# ------------------------------------------------------------------ submissions


def test_nesting_depth_is_counted_one_way_for_payloads_and_bodies():
    from jobtrio.submission import nested_deeper_than

    def nest(levels: int) -> object:
        value: object = {}
        for i in range(levels - 1):
            value = [value] if i % 2 else {"k": value}
        return value

    assert not nested_deeper_than(nest(64), 64)  # {} alone is one level
    assert nested_deeper_than(nest(65), 64)
    assert not nested_deeper_than("a scalar", 0)
    assert nested_deeper_than([1, 2, {"x": [[]]}], 3)
    assert not nested_deeper_than([1, 2, {"x": [[]]}], 4)
    assert nested_deeper_than(nest(100_000), 64)  # no recursion, however deep


def test_a_memory_broker_leases_with_the_tokens_it_is_given():
    from jobtrio.backends.memory import MemoryBroker
    from jobtrio.submission import validate_submission

    tokens = iter(["t1", "t2"])
    broker = MemoryBroker(tokens=lambda: next(tokens))

    async def claim_two() -> list[str]:
        jobs = [validate_submission({"type": "x"}, 1.0) for _ in range(2)]
        await broker.enqueue(jobs, 1.0)
        return [lease.token for lease in await broker.claim("n1", 2, 30.0, 1.0)]

    assert trio.run(claim_two) == ["t1", "t2"]


def test_payload_nesting_and_lone_surrogates_are_refused():
    from jobtrio.jobs import ValidationError
    from jobtrio.submission import validate_submission

    deep: dict = {}
    cursor = deep
    for _ in range(70):
        cursor["a"] = {}
        cursor = cursor["a"]
    with pytest.raises(ValidationError, match="nested deeper than 64"):
        validate_submission({"type": "x", "payload": deep}, 1.0)
    with pytest.raises(ValidationError, match="surrogate"):
        validate_submission({"type": "x", "payload": {"s": "\ud800"}}, 1.0)
    ok = validate_submission({"type": "x", "payload": {"l": [1, {"t": "é"}]}}, 1.0)
    assert ok.payload == {"l": [1, {"t": "é"}]}
