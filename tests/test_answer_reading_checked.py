"""The client's checked reading of an answer's jobs (``_checked_jobs``: msgspec checks the
kinds a node writes while it reads, each job built without a call) against the reading
before it (``job_of`` of each job of the JSON), field by field and type by type, for any
jobs a node may answer with: text outside ASCII, nested JSON, integers past 64 bits,
None fields, attempts, every status and time. ``test_answer_reading`` holds the odd
answers it refuses (they are read as before)."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtrio.client import AsyncClient, Client
from jobtrio.client.answers import _checked_jobs, job_of, read_jobs, read_page
from jobtrio.client.calls import Calls
from jobtrio.jobs import Attempt, Job, JobStatus
from tests import strategies
from tests.test_client import Served, in_thread, served  # noqa: F401 (the fixture)

NOW = 1_765_000_000.123456
_CALL = Calls.submit_many([{"type": "t"}])
_PAGE = Calls.list_page({})

json_values = strategies.json_values()
times = st.sampled_from([NOW, 0.0, 17, 1.5, NOW + 3600.5, 253402300799.0])
maybe_times = st.none() | times
texts = st.text(max_size=8)


@st.composite
def attempts(draw: st.DrawFn) -> Attempt:
    return Attempt(
        draw(st.integers(1, 2**70)),
        draw(texts),
        draw(st.none() | texts),
        draw(times),
        draw(maybe_times),
        draw(st.none() | st.sampled_from(["completed", "failed", "lost"])),
        draw(st.none() | texts),
    )


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    return Job(
        draw(st.text(min_size=1, max_size=8)),
        draw(st.text(min_size=1, max_size=8)),
        priority=draw(st.integers(-(2**70), 2**70)),
        payload=draw(st.dictionaries(texts, json_values, max_size=3)),
        status=draw(st.sampled_from(list(JobStatus))),
        created_at=draw(times),
        updated_at=draw(times),
        scheduled_at=draw(maybe_times),
        started_at=draw(maybe_times),
        completed_at=draw(maybe_times),
        retry_count=draw(st.integers(0, 2**70)),
        max_retries=draw(st.integers(-1, 100)),
        timeout=draw(st.none() | st.floats(0.001, 1e20) | st.integers(1, 2**70)),
        result=draw(json_values),
        error=draw(st.none() | texts),
        node_id=draw(st.none() | texts),
        worker_id=draw(st.none() | texts),
        attempts=draw(st.lists(attempts(), max_size=2)),
        idempotency_key=draw(st.none() | st.text(min_size=1, max_size=5)),
        lease_expirations=draw(st.integers(0, 5)),
        progress=draw(st.none() | st.dictionaries(texts, json_values, max_size=2)),
        depends_on=draw(st.lists(texts, max_size=2)),
        on_dependency_failure=draw(st.none() | st.sampled_from(["fail", "run"])),
        workflow_id=draw(st.none() | texts),
        workflow=draw(st.none() | st.dictionaries(texts, json_values, max_size=2)),
        waiting_for=draw(st.lists(texts, max_size=2)),
        dependents=draw(st.lists(texts, max_size=2)),
        dependency_results=draw(st.none() | st.dictionaries(texts, json_values, max_size=2)),
        version=draw(st.integers(0, 2**70)),
        owner=draw(st.none() | texts),
        queue=draw(st.sampled_from(["default", "q", "caf\u00e9"])),
    )


def shape(value: Any) -> Any:
    """``value`` with the type of everything in it (``True == 1`` and ``0.0 == -0.0``
    must not hide a difference), a job or an attempt field by field."""
    if isinstance(value, Job | Attempt):
        return (type(value), [(name, shape(getattr(value, name))) for name in value.__slots__])
    if isinstance(value, list):
        return (list, [shape(v) for v in value])
    if isinstance(value, dict):
        return (dict, [(shape(k), shape(v)) for k, v in value.items()])
    if isinstance(value, float):
        return (float, math.copysign(1.0, value), repr(value))
    return (type(value), value)


def _old(body: bytes) -> list[Job]:
    return [job_of(j) for j in json.loads(body)["jobs"]]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(jobs(), max_size=4), st.booleans())
def test_a_nodes_jobs_are_read_checked_as_before(batch: list[Job], ascii_only: bool) -> None:
    body = json.dumps(
        {"jobs": [job.to_dict() for job in batch], "count": len(batch)}, ensure_ascii=ascii_only
    ).encode()
    checked = _checked_jobs(httpx.Response(201, content=body))
    assert checked is not None  # read the checked way: what a node writes is
    assert shape(checked[0]) == shape(_old(body))
    assert shape(read_jobs(httpx.Response(201, content=body), _CALL)) == shape(_old(body))
    page = read_page(httpx.Response(200, content=body), _PAGE)
    assert shape(page.jobs) == shape(_old(body))
    # each job holds lists of its own, as before (never one list shared by two jobs)
    lists = [id(v) for job in checked[0] for v in vars_lists(job)]
    assert len(lists) == len(set(lists))


def vars_lists(job: Job) -> list[list[Any]]:
    return [job.attempts, job.depends_on, job.waiting_for, job.dependents]


def test_a_batch_of_the_bench_is_read_checked() -> None:
    """The answer ``submit_many`` gets for the enqueue scenario's jobs."""
    job = Job("01M98WD8MSE1ECGVP7MDKBS7BT", "noop", payload={"source": "bench"})
    job.status, job.created_at, job.updated_at = JobStatus.SCHEDULED, NOW, NOW
    job.scheduled_at, job.version = NOW + 3600, 1
    body = json.dumps({"jobs": [job.to_dict()] * 3, "count": 3}).encode()
    checked = _checked_jobs(httpx.Response(201, content=body))
    assert checked is not None
    assert checked[0] == [job] * 3
    assert shape(checked[0]) == shape(_old(body))


AWKWARD = [
    {"type": "noop", "payload": {"s": "caf\u00e9 \U0001f600 \u2028", "n": [{"x": [None, 1.5]}]}},
    {"type": "noop", "payload": {"big": 2**70, "neg": -(2**63), "f": 1e300, "z": -0.0}},
    {"type": "noop", "priority": 9, "timeout": 2.5, "idempotency_key": "k\u00e9", "queue": "q"},
    {"type": "noop", "receive_results": True},
]
LATER = "2099-01-01T00:00:00Z"


def batch_after(first: Job) -> list[dict[str, Any]]:
    """``AWKWARD`` three times, scheduled far ahead, the last of each depending on ``first``."""
    items = [{**item, "scheduled_at": LATER} for item in AWKWARD]
    items[-1]["depends_on"] = [first.id]
    return items * 3


async def test_both_clients_submit_many_as_before(served: Served) -> None:  # noqa: F811
    """Against a served node: each client's ``submit_many`` gives, field by field and
    type by type, the jobs the reading before made of the node's very answer."""

    def sync() -> tuple[list[Job], bytes]:
        bodies: list[bytes] = []
        with Client(served.url) as client:
            batch = batch_after(client.submit("noop", scheduled_at=LATER))
            client._http.event_hooks["response"].append(lambda r: bodies.append(r.read()))
            return client.submit_many(batch), bodies[-1]

    jobs, body = await in_thread(sync)
    assert _checked_jobs(httpx.Response(201, content=body)) is not None
    assert shape(jobs) == shape(_old(body)) and len(jobs) == 3 * len(AWKWARD)

    bodies: list[bytes] = []

    async def keep(response: httpx.Response) -> None:
        bodies.append(await response.aread())

    async with AsyncClient(served.url) as client:
        batch = batch_after(await client.submit("noop", scheduled_at=LATER))
        client._http.event_hooks["response"].append(keep)
        jobs = await client.submit_many(batch)
    assert _checked_jobs(httpx.Response(201, content=bodies[-1])) is not None
    assert shape(jobs) == shape(_old(bodies[-1])) and len(jobs) == 3 * len(AWKWARD)
    assert jobs[-1].depends_on and jobs[1].payload["big"] == 2**70
