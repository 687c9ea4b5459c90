"""Review of the client's checked reading (``_checked_jobs`` / ``jobs_from_checked_rows``)
against the untyped one (``job_from_wire_values`` of each row) on the awkward answers a
Hypothesis run of node-made jobs seldom draws: a payload, a queue or a list that is null
or of another kind, a null time, a time ``_iso_seconds`` maps to 0.0, a bad time in
each field, bools and floats where ints go, ints past 64 bits, unknown statuses. Each
answer the checked reading accepts must give the same jobs (field by field, type by
type) or the same error; the ones it refuses are read the untyped way by design.

And a guard on the positional builds: ``Job``'s 31 fields are passed by position in
``jobs_from_checked_rows``, ``_from_wire`` and ``Job.from_dict``; a row whose every field
holds a value of its own must come out with each value under its own name, so a
reordering of ``Job``'s fields (even with ``_FROM_DICT_ORDER`` updated to match) or of
one of those calls fails here."""

from __future__ import annotations

import copy
import json
from typing import Any

import httpx
import pytest

from jobtrio.client.answers import _checked_jobs, _read_jobs_answer, _row_values
from jobtrio.client.errors import JobtrioError
from jobtrio.jobs import (
    WIRE_KEYS,
    Job,
    JobStatus,
    job_from_wire_values,
    jobs_from_checked_rows,
    parse_time,
)

EPOCH = "1970-01-01T00:00:00Z"  # parse_time remembers it as 0.0: falsy in the memo
BASE = Job("j1", "t").to_dict() | {
    "created_at": "2024-01-01T00:00:00Z",
    "updated_at": "2024-01-01T00:00:01Z",
}
ATTEMPT = {
    "number": 1,
    "node_id": "n",
    "worker_id": None,
    "started_at": "2024-01-01T00:00:00Z",
    "ended_at": None,
    "outcome": None,
    "error": None,
}

AWKWARD: dict[str, list[Any]] = {
    "payload": [None, {}, [], 0, "", "x", False, {"a": [1, {"b": None}]}, 2**70],
    "created_at": [None, EPOCH, "1970-01-01T00:00:00+00:00", " 2024-01-01T00:00:00z ",
                   "bad", "10000-01-01T00:00:00Z", 5, 0.0, True, [], {}],
    "updated_at": [None, EPOCH, "bad", []],
    "scheduled_at": [None, EPOCH, "1970-01-01T00:00:00", "bad", 0],
    "started_at": [None, EPOCH, "bad", 1.0],
    "completed_at": [None, EPOCH, "bad"],
    "status": ["pending", "PENDING", "weird", 1, None, "completed", "waiting"],
    "priority": [0, -1, True, False, 1.0, 1.5, 2**63, 2**64, 2**70, -(2**70), None, "1"],
    "retry_count": [True, 3.0, 2**65],
    "max_retries": [False, 2**64 - 1],
    "lease_expirations": [True, 1e3],
    "version": [0, True, 2**80, 1.0, None],
    "attempts": [[], None, {}, "", 0, [ATTEMPT], [ATTEMPT, ATTEMPT], [1], "x"],
    "depends_on": [[], None, {}, "", "ab", ["a"], 0, {"a": 1}],
    "waiting_for": [[], None, "ab", {}],
    "dependents": [[], None, "ab", {"x": 1}],
    "queue": [None, "", "q", 0, []],
    "timeout": [None, 1, 1.5, True, "x"],
    "id": ["", 1, None],
    "type": [None, 2],
    "owner": [None, "", "ü"],
}  # fmt: skip
CASES = [(key, value) for key, values in AWKWARD.items() for value in values]


def untyped(body: bytes) -> list[Job] | str:
    """What the reading before the checked one made of ``body``: jobs or the error."""
    answer = _read_jobs_answer(body)
    try:
        return [job_from_wire_values(_row_values(row)) for row in answer.jobs]
    except (KeyError, TypeError, ValueError) as exc:
        return f"the node sent something that is not a job: {exc}"


def checked(body: bytes) -> list[Job] | str | None:
    try:
        read = _checked_jobs(httpx.Response(200, content=body))
    except JobtrioError as exc:
        return str(exc)
    return None if read is None else read[0]


def shape(read: list[Job] | str) -> Any:
    if isinstance(read, str):
        return read
    return [[(key, type(v := getattr(job, key)), repr(v)) for key in WIRE_KEYS] for job in read]


@pytest.mark.parametrize(("key", "value"), CASES, ids=[f"{k}={v!r}" for k, v in CASES])
@pytest.mark.parametrize("second", [False, True], ids=["alone", "before-another"])
def test_an_awkward_job_is_read_checked_as_before(key: str, value: Any, second: bool) -> None:
    parse_time(EPOCH, "created_at")  # the memo holds 0.0 for it, as after any epoch read
    job = copy.deepcopy(BASE) | {key: value}
    jobs = [job, BASE | {"id": "j2"}] if second else [job]
    body = json.dumps({"jobs": jobs, "next_cursor": None}).encode()
    got = checked(body)
    if got is None:  # refused: read the untyped way, as before (test_answer_reading)
        return
    assert shape(got) == shape(untyped(body))


def test_the_checked_reading_takes_what_a_node_writes() -> None:
    """The edges above are not all refused: the checked reading is exercised by them."""
    accepted = [
        (key, value)
        for key, value in CASES
        if checked(json.dumps({"jobs": [BASE | {key: value}]}).encode()) is not None
    ]
    assert len(accepted) >= 40, accepted


class _Row:
    """A row as msgspec reads it: ``WIRE_KEYS`` as attributes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


def _distinct_values() -> dict[str, Any]:
    """Each field a value no other field holds (kinds as a node writes them)."""
    values: dict[str, Any] = {}
    for i, key in enumerate(WIRE_KEYS):
        values[key] = f"v{i}-{key}"
    times = ["2024-01-01T00:00:01Z", "2024-01-01T00:00:02Z", "2024-01-01T00:00:03Z",
             "2024-01-01T00:00:04Z", "2024-01-01T00:00:05Z"]  # fmt: skip
    for key, text in zip(("created_at", "updated_at", "scheduled_at", "started_at",
                          "completed_at"), times, strict=True):  # fmt: skip
        values[key] = text
    for i, key in enumerate(("priority", "retry_count", "max_retries", "lease_expirations",
                             "version")):  # fmt: skip
        values[key] = 101 + i
    values["status"] = JobStatus.RUNNING
    values["attempts"] = []
    for key in ("depends_on", "waiting_for", "dependents"):
        values[key] = [f"{key}-id"]
    for key in ("payload", "progress", "workflow", "dependency_results"):
        values[key] = {key: 1}
    values["timeout"] = 7.5
    values["result"] = ["result"]
    return values


def test_every_positional_build_puts_each_value_under_its_own_name() -> None:
    values = _distinct_values()
    expected = {key: values[key] for key in WIRE_KEYS}
    for key in ("created_at", "updated_at", "scheduled_at", "started_at", "completed_at"):
        expected[key] = parse_time(values[key], key)
    wire = tuple(values[key] for key in WIRE_KEYS)
    as_text = dict(values, status=str(values["status"]))
    builds = {
        "jobs_from_checked_rows": jobs_from_checked_rows([_Row(values)], lambda _: wire)[0],
        "job_from_wire_values": job_from_wire_values(tuple(as_text[k] for k in WIRE_KEYS)),
        "Job.from_dict": Job.from_dict(as_text),
    }
    for name, job in builds.items():
        wrong = {key: getattr(job, key) for key in WIRE_KEYS if getattr(job, key) != expected[key]}
        assert not wrong, (name, wrong)
