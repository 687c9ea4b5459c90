"""``codec.encode_many`` writes a batch exactly as ``encode`` writes each job.

It takes a job's texts from the job before when their fields are equal, so
each test here is a batch whose neighbours are equal but not alike: 1, 1.0
and True, 0.0 and -0.0, dicts equal with different number types, a status
that differs, and batches of every kind of value, compared text for text.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from jobtrio.backends.redis import codec
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.123456
ids = IdGenerator(random.Random(7))


def job(**fields: Any) -> Job:
    made = validate_submission({"type": "noop", "payload": {"i": 1}}, NOW, ids=ids)
    for name, value in fields.items():
        setattr(made, name, value)
    return made


def check(jobs: list[Job], statuses: list[JobStatus] | None = None) -> None:
    statuses = statuses or [j.status for j in jobs]
    expected = [codec.encode(j, s) for j, s in zip(jobs, statuses, strict=True)]
    assert codec.encode_many(jobs, statuses) == expected


def test_a_plain_batch_is_the_texts_of_encode() -> None:
    jobs = [job(payload={"i": i, "s": "ž🐢", "id": "x", "payload": {}}) for i in range(50)]
    check(jobs)
    encoded = codec.encode_many(jobs, [j.status for j in jobs])
    assert len({id(values) for _, values in encoded}) == 50  # each job its own list


@pytest.mark.parametrize(
    ("field", "first", "then"),
    [
        ("priority", 1, True),
        ("priority", 1, 1.0),
        ("max_retries", 3, 3.0),
        ("retry_count", 0, False),
        ("version", 1, True),
        ("lease_expirations", 0, 0.0),
        ("scheduled_at", 0.0, -0.0),
        ("scheduled_at", -0.0, 0.0),
        ("scheduled_at", 5.0, 5),
        ("timeout", 2, 2.0),
        ("created_at", NOW, int(NOW)),
        ("result", {"a": 1}, {"a": 1.0}),
        ("result", {"a": 1}, {"a": True}),
        ("progress", {"fraction": 1}, {"fraction": 1.0}),
        ("dependency_results", {}, {}),
        ("depends_on", ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]),
        ("node_id", 1, 1.0),
        ("error", 1, True),
        ("owner", "u", "u"),
        ("worker_id", None, "w"),
        ("workflow", {"kind": "chain", "n": 1}, {"kind": "chain", "n": 1.0}),
    ],
)
def test_equal_but_not_alike_neighbours_keep_their_own_text(
    field: str, first: Any, then: Any
) -> None:
    jobs = [job(**{field: first}), job(**{field: then}), job(**{field: first})]
    check(jobs)


def test_a_status_that_differs_is_written() -> None:
    jobs = [job() for _ in range(4)]
    check(jobs, [JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.SCHEDULED, JobStatus.WAITING])


def test_ids_and_payloads_of_other_types_are_written_by_encode() -> None:
    check([job(), job(id=12345), job(payload=None), job(payload=[1]), job(), job()])


class _Text(str):
    pass


def test_random_batches_are_the_texts_of_encode() -> None:
    rng = random.Random(11)
    choices: dict[str, list[Any]] = {
        "type": ["noop", 'q"\\', "ž🐢\u2028", "a\x1fb", _Text("noop")],
        "priority": [1, 5, 5, True, 5.0],
        "payload": [{}, {"a": [1, 2.5, None]}, {"ž": "🐢"}, {"payload": 1}, {"x": 1e16}],
        "scheduled_at": [None, NOW + 10, NOW + 10, 0.0, -0.0, 17],
        "timeout": [None, 0.1 + 0.2, 5, 5.0],
        "idempotency_key": [None, None, 'k"ž', "k"],
        "owner": [None, "uma", 'o"ž\\'],
        "queue": ["default", "q2"],
        "result": [None, None, {"a": 1}, {"a": 1.0}, [1], 1],
        "retry_count": [0, 0, 1, False],
        "depends_on": [[], [], ["01ARZ3NDEKTSV4RRFFQ69G5FAV"]],
        "dependents": [[], [], ()],
    }
    statuses = [JobStatus.PENDING, JobStatus.SCHEDULED]
    for _ in range(200):
        size = rng.randint(1, 12)
        base = {name: rng.choice(values) for name, values in choices.items()}
        jobs = []
        for _ in range(size):
            fields = dict(base)
            for name in rng.sample(list(choices), rng.randint(0, 2)):
                fields[name] = rng.choice(choices[name])
            jobs.append(job(**fields))
        check(jobs, [rng.choice(statuses) for _ in jobs])


def test_a_lazy_job_among_them_is_read_whole() -> None:
    first = job()
    lazy = codec.lazy_job(*codec.encode(job(), JobStatus.PENDING))
    check([first, lazy, job(), dataclasses.replace(first, id="01ARZ3NDEKTSV4RRFFQ69G5FAW")])
