"""The REST API through Quart's test client, against a running in-memory node.

Every route, every status code it can answer, and the one error shape
(``{"error": {"code", "message", "field"}}``) for each way a request can be
wrong. The node runs for real (dispatcher, workers, recorder), so jobs
complete, fail and get cancelled as they would in production.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from quart import Request, request
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.auth import Role
from jobtrio.api.context import BATCH_BODY_BYTES
from jobtrio.api.errors import Forbidden, Unauthorized
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.jobs import Job
from tests.waiting import wait_until

MAX_PAYLOAD = 2048


class FlakyBroker(MemoryBroker):
    """A memory broker whose service can be 'down' for pings and submissions."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("flaky", "connection refused by 10.0.0.7:6379")

    async def ping(self) -> None:
        self._check()

    async def enqueue(self, jobs: Any, now: float) -> list[Job]:
        self._check()
        return await super().enqueue(jobs, now)


def make_node(**changes: Any) -> Node:
    settings = Settings(
        node_id="api-node",
        worker_count=3,
        shutdown_grace=0.2,
        max_payload_bytes=MAX_PAYLOAD,
        **changes,
    )
    return Node(settings, FlakyBroker(), MemoryStore())


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = make_node()
    async with trio.open_nursery() as nursery:
        await nursery.start(n.run)
        yield n
        n.request_stop()


@pytest.fixture
def app(node: Node) -> QuartTrio:
    return create_app(node)


@pytest.fixture
def client(app: QuartTrio) -> TrioClient:
    return app.test_client()  # type: ignore[return-value]


async def body(response: Any) -> Any:
    return json.loads(await response.get_data())


async def expect_error(
    response: Any, status: int, code: str, field: str | None = None
) -> dict[str, Any]:
    """Assert the one error shape; return the error object."""
    data = await body(response)
    assert response.status_code == status, data
    assert set(data) >= {"error"}
    error = data["error"]
    assert set(error) == {"code", "message", "field"}
    assert error["code"] == code, error
    assert error["field"] == field, error
    assert isinstance(error["message"], str) and error["message"]
    assert "Traceback" not in error["message"]
    return error


async def submit(client: TrioClient, **job: Any) -> dict[str, Any]:
    response = await client.post("/api/v1/jobs", json=job)
    data = await body(response)
    assert response.status_code == 201, data
    return data


async def get_job(client: TrioClient, job_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/jobs/{job_id}")
    assert response.status_code == 200
    return await body(response)


async def wait_status(client: TrioClient, job_id: str, *statuses: str) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        job = await get_job(client, job_id)
        return job if job["status"] in statuses else None

    return await wait_until(reached, timeout=10, message=f"job {job_id} to be {statuses}")


def future(seconds: float = 3600) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


# --------------------------------------------------------------------------
# POST /api/v1/jobs


async def test_submit_returns_201_with_the_job_and_its_location(client: TrioClient) -> None:
    response = await client.post(
        "/api/v1/jobs",
        json={
            "type": "echo",
            "priority": 7,
            "payload": {"recipient": "user@example.com"},
            "max_retries": 2,
            "timeout": 5,
            "idempotency_key": "k-1",
        },
    )
    job = await body(response)
    assert response.status_code == 201
    assert response.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert response.headers["X-Jobtrio-Node"] == "api-node"
    assert job["type"] == "echo"
    assert job["priority"] == 7
    assert job["payload"] == {"recipient": "user@example.com"}
    assert job["max_retries"] == 2
    assert job["timeout"] == 5.0
    assert job["status"] == "pending"
    assert job["created_at"].endswith("Z")
    done = await wait_status(client, job["id"], "completed")
    assert done["result"] == {"recipient": "user@example.com"}


async def test_submit_defaults_and_the_seed_example(client: TrioClient) -> None:
    job = await submit(
        client,
        type="email",
        priority=5,
        payload={"recipient": "user@example.com", "subject": "Test Job"},
        max_retries=3,
    )
    assert job["priority"] == 5
    minimal = await submit(client, type="noop")
    assert minimal["priority"] == 5
    assert minimal["max_retries"] == 3
    assert minimal["payload"] == {}


async def test_submit_with_the_same_idempotency_key_returns_the_first_job(
    client: TrioClient,
) -> None:
    first = await submit(client, type="noop", idempotency_key="order-42")
    second = await submit(client, type="noop", idempotency_key="order-42")
    assert second["id"] == first["id"]


async def test_submit_scheduled_in_the_future_waits_as_scheduled(client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    assert job["status"] == "scheduled"
    assert job["scheduled_at"] is not None


@pytest.mark.parametrize(
    ("job", "code", "field"),
    [
        ({"type": "noop", "colour": "red"}, "unknown_field", "colour"),
        ({"type": "noop", "id": "01J9Z6N5G4X8W3QH2K7R1M0P9T"}, "read_only_field", "id"),
        ({"type": "noop", "status": "completed"}, "read_only_field", "status"),
        ({"type": "noop", "retry_count": 9}, "read_only_field", "retry_count"),
        ({"payload": {}}, "missing_field", "type"),
        ({"type": ""}, "invalid_type", "type"),
        ({"type": 42}, "invalid_type", "type"),
        ({"type": "x" * 201}, "invalid", "type"),
        ({"type": "noop", "priority": "high"}, "invalid_type", "priority"),
        ({"type": "noop", "priority": True}, "invalid_type", "priority"),
        ({"type": "noop", "priority": 0}, "out_of_range", "priority"),
        ({"type": "noop", "priority": 11}, "out_of_range", "priority"),
        ({"type": "noop", "priority": 2.5}, "invalid_type", "priority"),
        ({"type": "noop", "payload": [1, 2]}, "invalid_type", "payload"),
        ({"type": "noop", "payload": "text"}, "invalid_type", "payload"),
        ({"type": "noop", "max_retries": -1}, "out_of_range", "max_retries"),
        ({"type": "noop", "max_retries": "3"}, "invalid_type", "max_retries"),
        ({"type": "noop", "timeout": 0}, "invalid_type", "timeout"),
        ({"type": "noop", "timeout": "10s"}, "invalid_type", "timeout"),
        ({"type": "noop", "scheduled_at": "tomorrow"}, "invalid", "scheduled_at"),
        ({"type": "noop", "idempotency_key": ""}, "invalid", "idempotency_key"),
    ],
)
async def test_submit_refuses_invalid_jobs_with_422_naming_the_field(
    client: TrioClient, job: dict[str, Any], code: str, field: str
) -> None:
    response = await client.post("/api/v1/jobs", json=job)
    await expect_error(response, 422, code, field)


@pytest.mark.parametrize(
    ("raw", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "invalid_json"),
        (b'{"type": "noop",}', "application/json", 400, "invalid_json"),
        (b"", "application/json", 400, "empty_body"),
        (b"   \n", "application/json", 400, "empty_body"),
        (
            b'{"type": "noop", "payload": {"x": "\xff\xfe"}}',
            "application/json",
            400,
            "invalid_json",
        ),
        (b'{"type": "noop", "payload": {"x": NaN}}', "application/json", 400, "invalid_json"),
        (b'{"type": "noop", "payload": {"x": Infinity}}', "application/json", 400, "invalid_json"),
        (b'{"type": "noop", "type": "email"}', "application/json", 400, "invalid_json"),
        (b'{"type": "noop", "payload": {"s": "\\ud800"}}', "application/json", 400, "invalid_json"),
        (
            b'{"type": "noop", "payload": ' + b"[" * 100 + b"]" * 100 + b"}",
            None,
            400,
            "invalid_json",
        ),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "invalid_json"),
        (b'{"type": "noop", "payload": {"n": ' + b"9" * 5000 + b"}}", None, 400, "invalid_json"),
        (b'[{"type": "noop"}]', "application/json", 422, "invalid_type"),
        (b'"noop"', "application/json", 422, "invalid_type"),
        (b"null", "application/json", 422, "invalid_type"),
        (b"42", "application/json", 422, "invalid_type"),
        (b'{"type": "noop"}', "text/plain", 415, "unsupported_media_type"),
        (b"type=noop", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"type": "noop"}', "application/json; charset=latin-1", 415, "unsupported_media_type"),
    ],
)
async def test_submit_refuses_bodies_that_are_not_a_json_object(
    client: TrioClient, raw: bytes, content_type: str | None, status: int, code: str
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/api/v1/jobs", data=raw, headers=headers)
    error = await expect_error(response, status, code)
    if code == "invalid_json" and raw.startswith(b"{not"):
        assert "line 1 column 2" in error["message"]


async def test_submit_accepts_json_without_a_content_type_and_with_a_bom(
    client: TrioClient,
) -> None:
    response = await client.post("/api/v1/jobs", data=b'{"type": "noop"}')
    assert response.status_code == 201
    response = await client.post(
        "/api/v1/jobs",
        data='\ufeff{"type": "noop", "payload": {"name": "Zoë 🚀"}}'.encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )
    job = await body(response)
    assert response.status_code == 201, job
    assert job["payload"] == {"name": "Zoë 🚀"}


async def test_a_body_larger_than_the_limit_is_413_in_our_shape(client: TrioClient) -> None:
    big = json.dumps({"type": "noop", "payload": {"blob": "x" * (MAX_PAYLOAD + 70 * 1024)}})
    response = await client.post(
        "/api/v1/jobs", data=big.encode(), headers={"Content-Type": "application/json"}
    )
    error = await expect_error(response, 413, "payload_too_large")
    assert str(MAX_PAYLOAD + 64 * 1024) in error["message"]


async def test_a_batch_larger_than_quarts_max_content_length_is_413_in_our_shape(
    client: TrioClient,
) -> None:
    raw = b'{"jobs": [' + b" " * (BATCH_BODY_BYTES + 1) + b"]}"
    response = await client.post(
        "/api/v1/jobs/batch", data=raw, headers={"Content-Type": "application/json"}
    )
    error = await expect_error(response, 413, "payload_too_large")
    assert str(BATCH_BODY_BYTES) in error["message"]


async def test_submit_while_the_queue_is_down_is_503_without_internal_text(
    node: Node, client: TrioClient
) -> None:
    node.broker.down = True  # type: ignore[attr-defined]
    response = await client.post("/api/v1/jobs", json={"type": "noop"})
    error = await expect_error(response, 503, "unavailable")
    assert error["message"] == "the queue is unavailable; try again shortly"
    assert "10.0.0.7" not in json.dumps(await body(response))
    assert response.headers["Retry-After"] == "1"


async def test_submit_refuses_query_parameters(client: TrioClient) -> None:
    response = await client.post("/api/v1/jobs?priority=9", json={"type": "noop"})
    await expect_error(response, 400, "unknown_parameter", "priority")


# --------------------------------------------------------------------------
# GET /api/v1/jobs/{id}


async def test_get_returns_the_job_with_its_attempts(client: TrioClient) -> None:
    job = await submit(client, type="echo", payload={"n": 1})
    done = await wait_status(client, job["id"], "completed")
    assert done["id"] == job["id"]
    assert len(done["attempts"]) == 1
    assert done["attempts"][0]["outcome"] == "completed"
    assert done["node_id"] == "api-node"
    # ids are case-insensitive
    lower = await client.get(f"/api/v1/jobs/{job['id'].lower()}")
    assert lower.status_code == 200


@pytest.mark.parametrize(
    "job_id", ["01J9Z6N5G4X8W3QH2K7R1M0P9T", "nope", "x" * 500, "01J9Z6N5G4X8W3QH2K7R1M0P9%21"]
)
async def test_get_unknown_id_is_404(client: TrioClient, job_id: str) -> None:
    response = await client.get(f"/api/v1/jobs/{job_id}")
    error = await expect_error(response, 404, "not_found")
    assert "no job with id" in error["message"]


# --------------------------------------------------------------------------
# GET /api/v1/jobs


async def list_jobs(client: TrioClient, query: str = "") -> dict[str, Any]:
    response = await client.get(f"/api/v1/jobs{query}")
    data = await body(response)
    assert response.status_code == 200, data
    assert set(data) == {"jobs", "next_cursor", "count"}
    assert data["count"] == len(data["jobs"])
    return data


async def recorded(node: Node, n: int) -> None:
    async def all_recorded() -> bool:
        counts = await node.store.count_by_status()
        return sum(counts.values()) >= n

    await wait_until(all_recorded, message=f"{n} job records in the store")


async def test_list_is_an_empty_page_not_null(client: TrioClient) -> None:
    data = await list_jobs(client)
    assert data == {"jobs": [], "next_cursor": None, "count": 0}


async def test_list_pages_newest_first_with_a_cursor(node: Node, client: TrioClient) -> None:
    ids = [(await submit(client, type="noop"))["id"] for _ in range(7)]
    await recorded(node, 7)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = await list_jobs(client, query)
        pages += 1
        seen += [j["id"] for j in page["jobs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert page["count"] == 3
    assert pages == 3
    assert seen == list(reversed(ids))


async def test_list_default_limit_is_50_and_1000_is_allowed(node: Node, client: TrioClient) -> None:
    response = await client.post(
        "/api/v1/jobs/batch", json={"jobs": [{"type": "noop"} for _ in range(60)]}
    )
    assert response.status_code == 201
    await recorded(node, 60)
    page = await list_jobs(client)
    assert page["count"] == 50
    assert page["next_cursor"] is not None
    page = await list_jobs(client, "?limit=1000")
    assert page["count"] == 60
    assert page["next_cursor"] is None


async def test_list_filters_by_several_statuses_and_type(node: Node, client: TrioClient) -> None:
    scheduled = await submit(client, type="noop", scheduled_at=future())
    failed = await submit(client, type="fail", max_retries=0)
    completed = await submit(client, type="echo")
    await wait_status(client, failed["id"], "failed")
    await wait_status(client, completed["id"], "completed")

    async def listed(query: str, expected: set[str]) -> bool:
        return {j["id"] for j in (await list_jobs(client, query))["jobs"]} == expected

    await wait_until(
        lambda: listed("?status=failed,scheduled", {scheduled["id"], failed["id"]}),
        message="failed and scheduled jobs listed",
    )
    assert await listed("?status=failed&status=scheduled", {scheduled["id"], failed["id"]})
    assert await listed("?status=completed", {completed["id"]})
    assert await listed("?type=fail", {failed["id"]})
    assert await listed("?type=fail&status=completed", set())


async def test_list_filters_by_creation_time(node: Node, client: TrioClient) -> None:
    job = await submit(client, type="noop")
    await recorded(node, 1)
    created = dt.datetime.fromisoformat(job["created_at"].replace("Z", "+00:00"))
    before = (created - dt.timedelta(seconds=1)).isoformat().replace("+00:00", "Z")
    after = (created + dt.timedelta(seconds=1)).isoformat()
    assert (await list_jobs(client, f"?created_after={before}"))["count"] == 1
    assert (await list_jobs(client, f"?created_before={before}"))["count"] == 0
    # an unencoded '+' of the offset arrives as a space and is still understood
    assert (await list_jobs(client, f"?created_before={after}"))["count"] == 1
    assert (await list_jobs(client, f"?created_after={created.timestamp() + 5}"))["count"] == 0


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("?limit=0", "invalid_parameter", "limit"),
        ("?limit=1001", "invalid_parameter", "limit"),
        ("?limit=abc", "invalid_parameter", "limit"),
        ("?limit=-5", "invalid_parameter", "limit"),
        ("?limit=1.5", "invalid_parameter", "limit"),
        ("?limit=10&limit=20", "invalid_parameter", "limit"),
        ("?cursor=not-a-cursor", "invalid_cursor", "cursor"),
        ("?cursor=" + "Z" * 27, "invalid_cursor", "cursor"),
        ("?status=done", "invalid_parameter", "status"),
        ("?status=pending,bogus", "invalid_parameter", "status"),
        ("?created_after=yesterday", "invalid_parameter", "created_after"),
        ("?created_after=nan", "invalid_parameter", "created_after"),
        ("?created_before=2024-13-01", "invalid_parameter", "created_before"),
        ("?stauts=failed", "unknown_parameter", "stauts"),
    ],
)
async def test_list_refuses_bad_query_parameters_with_400(
    client: TrioClient, query: str, code: str, field: str
) -> None:
    response = await client.get(f"/api/v1/jobs{query}")
    error = await expect_error(response, 400, code, field)
    if field == "limit" and "&" not in query:
        assert "1 to 1000" in error["message"]
    if field == "status":
        assert "pending, scheduled, running" in error["message"]


async def test_list_with_a_cursor_past_the_end_is_an_empty_page(client: TrioClient) -> None:
    data = await list_jobs(client, "?cursor=00000000000000000000000000")
    assert data == {"jobs": [], "next_cursor": None, "count": 0}


# --------------------------------------------------------------------------
# POST /api/v1/jobs/batch


async def test_batch_accepts_all_jobs_atomically(node: Node, client: TrioClient) -> None:
    items = [{"type": "echo", "payload": {"i": i}, "priority": 1 + i % 10} for i in range(25)]
    response = await client.post("/api/v1/jobs/batch", json={"jobs": items})
    data = await body(response)
    assert response.status_code == 201, data
    assert data["count"] == 25
    assert [j["payload"]["i"] for j in data["jobs"]] == list(range(25))
    assert len({j["id"] for j in data["jobs"]}) == 25
    for job in data["jobs"][:3]:
        await wait_status(client, job["id"], "completed")


async def test_a_batchs_jobs_share_one_created_at_and_sort_as_sent(
    node: Node, client: TrioClient
) -> None:
    """One clock reading a batch (its texts are written once for all its jobs); the ids,
    not the times, keep the order sent."""
    items = [{"type": "noop", "payload": {"i": i}} for i in range(300)]
    response = await client.post("/api/v1/jobs/batch", json={"jobs": items})
    jobs = (await body(response))["jobs"]
    assert response.status_code == 201
    assert len({(j["created_at"], j["updated_at"]) for j in jobs}) == 1
    assert jobs[0]["created_at"] == jobs[0]["updated_at"]
    ids = [j["id"] for j in jobs]
    assert ids == sorted(ids) and len(set(ids)) == 300


async def test_batch_with_one_bad_item_is_422_and_accepts_nothing(
    node: Node, client: TrioClient
) -> None:
    items: list[Any] = [{"type": "noop"} for _ in range(5)]
    items[3] = {"type": "noop", "priority": 99}
    items[4] = "not a job"
    response = await client.post("/api/v1/jobs/batch", json={"jobs": items})
    data = await body(response)
    assert response.status_code == 422
    assert data["error"]["code"] == "invalid_batch"
    assert data["error"]["field"] == "jobs"
    assert data["errors"] == [
        {
            "index": 3,
            "field": "priority",
            "code": "out_of_range",
            "message": "priority must be from 1 to 10, got 99",
        },
        {
            "index": 4,
            "field": None,
            "code": "invalid_type",
            "message": "a job must be a JSON object",
        },
    ]
    depths = await node.broker.depths()
    assert sum(depths.values()) == 0


@pytest.mark.parametrize(
    ("batch", "code", "field"),
    [
        ({}, "missing_field", "jobs"),
        ({"jobs": []}, "empty_batch", "jobs"),
        ({"jobs": {"type": "noop"}}, "invalid_type", "jobs"),
        ({"jobs": [{"type": "noop"}], "atomic": False}, "unknown_field", "atomic"),
    ],
)
async def test_batch_refuses_malformed_batches(
    client: TrioClient, batch: dict[str, Any], code: str, field: str
) -> None:
    response = await client.post("/api/v1/jobs/batch", json=batch)
    await expect_error(response, 422, code, field)


async def test_batch_of_10000_jobs_is_accepted(node: Node, client: TrioClient) -> None:
    response = await client.post("/api/v1/jobs/batch", json={"jobs": [{"type": "noop"}] * 10_000})
    assert response.status_code == 201
    assert (await body(response))["count"] == 10_000


async def test_batch_refuses_an_array_body(client: TrioClient) -> None:
    response = await client.post("/api/v1/jobs/batch", json=[{"type": "noop"}])
    await expect_error(response, 422, "invalid_type")


# --------------------------------------------------------------------------
# DELETE /api/v1/jobs/{id}


async def test_cancel_a_queued_job(client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    response = await client.delete(f"/api/v1/jobs/{job['id']}")
    data = await body(response)
    assert response.status_code == 200, data
    assert data["status"] == "cancelled"
    assert (await get_job(client, job["id"]))["status"] == "cancelled"
    # cancelling again is harmless
    again = await client.delete(f"/api/v1/jobs/{job['id']}")
    assert again.status_code == 200
    assert (await body(again))["status"] == "cancelled"


async def test_cancel_a_running_job_stops_it(node: Node, client: TrioClient) -> None:
    job = await submit(client, type="sleep", payload={"seconds": 60})
    await wait_status(client, job["id"], "running")
    response = await client.delete(f"/api/v1/jobs/{job['id']}")
    data = await body(response)
    assert response.status_code == 200, data
    assert data["status"] == "cancelled"
    await wait_until(
        lambda: node.dispatcher.idle_workers() == len(node.dispatcher.workers),
        message="the worker to be freed",
    )
    final = await get_job(client, job["id"])
    assert final["status"] == "cancelled"
    assert final["attempts"][-1]["outcome"] == "cancelled"


async def test_cancel_a_finished_job_is_409(client: TrioClient) -> None:
    job = await submit(client, type="noop")
    await wait_status(client, job["id"], "completed")
    response = await client.delete(f"/api/v1/jobs/{job['id']}")
    error = await expect_error(response, 409, "job_finished")
    assert "already completed" in error["message"]
    failed = await submit(client, type="fail", max_retries=0)
    await wait_status(client, failed["id"], "failed")
    response = await client.delete(f"/api/v1/jobs/{failed['id']}")
    await expect_error(response, 409, "job_finished")


async def test_cancel_unknown_is_404(client: TrioClient) -> None:
    response = await client.delete("/api/v1/jobs/01J9Z6N5G4X8W3QH2K7R1M0P9T")
    await expect_error(response, 404, "not_found")


async def test_purge_deletes_the_record(node: Node, client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    await recorded(node, 1)
    response = await client.delete(f"/api/v1/jobs/{job['id']}?purge=true")
    data = await body(response)
    assert response.status_code == 200, data
    assert data == {"id": job["id"], "deleted": True}
    await expect_error(await client.get(f"/api/v1/jobs/{job['id']}"), 404, "not_found")
    assert (await list_jobs(client))["count"] == 0
    response = await client.delete(f"/api/v1/jobs/{job['id']}?purge=true")
    await expect_error(response, 404, "not_found")


async def test_purge_needs_a_boolean(client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    response = await client.delete(f"/api/v1/jobs/{job['id']}?purge=maybe")
    await expect_error(response, 400, "invalid_parameter", "purge")
    response = await client.delete(f"/api/v1/jobs/{job['id']}?force=1")
    await expect_error(response, 400, "unknown_parameter", "force")


# --------------------------------------------------------------------------
# POST /api/v1/jobs/{id}/retry


async def test_retry_a_failed_job_runs_it_again(client: TrioClient) -> None:
    job = await submit(client, type="fail", max_retries=0)
    await wait_status(client, job["id"], "failed")
    response = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    data = await body(response)
    assert response.status_code == 200, data
    assert data["status"] in ("pending", "running", "failed")
    assert data["retry_count"] == 0

    async def ran_twice() -> bool:
        return len((await get_job(client, job["id"]))["attempts"]) == 2

    await wait_until(ran_twice, message="a second attempt")


async def test_retry_a_cancelled_job(client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    await client.delete(f"/api/v1/jobs/{job['id']}")
    response = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    assert response.status_code == 200
    await wait_status(client, job["id"], "completed")


async def test_retry_a_completed_job_is_409(client: TrioClient) -> None:
    job = await submit(client, type="noop")
    await wait_status(client, job["id"], "completed")
    response = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    error = await expect_error(response, 409, "not_retryable")
    assert "only failed or cancelled" in error["message"]


async def test_retry_a_waiting_job_is_409(client: TrioClient) -> None:
    job = await submit(client, type="noop", scheduled_at=future())
    response = await client.post(f"/api/v1/jobs/{job['id']}/retry")
    await expect_error(response, 409, "not_retryable")


async def test_retry_unknown_is_404(client: TrioClient) -> None:
    response = await client.post("/api/v1/jobs/01J9Z6N5G4X8W3QH2K7R1M0P9T/retry")
    await expect_error(response, 404, "not_found")


# --------------------------------------------------------------------------
# node and cluster views


async def test_stats(client: TrioClient) -> None:
    job = await submit(client, type="noop")
    await wait_status(client, job["id"], "completed")
    response = await client.get("/api/v1/stats")
    data = await body(response)
    assert response.status_code == 200
    assert data["node_id"] == "api-node"
    assert data["workers"]["total"] == 3
    assert set(data["queue"]) >= {"pending", "running", "completed", "failed"}
    assert "sleep" in data["processors"]
    assert data["leader"] == "api-node"


async def test_workers_and_nodes(client: TrioClient) -> None:
    job = await submit(client, type="sleep", payload={"seconds": 60})
    await wait_status(client, job["id"], "running")
    data = await body(await client.get("/api/v1/workers"))
    assert data["count"] == 3
    busy = [w for w in data["workers"] if w["status"] == "busy"]
    assert [w["current_job"] for w in busy] == [job["id"]]
    data = await body(await client.get("/api/v1/nodes"))
    assert data["count"] == 1
    [member] = data["nodes"]
    assert member["node_id"] == "api-node"
    assert member["state"] == "alive"
    assert member["self"] is True and member["is_leader"] is True
    data = await body(await client.get("/api/v1/workers?scope=local"))
    assert data["scope"] == "local" and data["count"] == 3
    response = await client.get("/api/v1/workers?scope=galaxy")
    await expect_error(response, 400, "invalid_parameter", "scope")
    await client.delete(f"/api/v1/jobs/{job['id']}")


async def test_leader_and_election(client: TrioClient) -> None:
    data = await body(await client.get("/api/v1/leader"))
    assert data["leader"] == "api-node"
    assert data["is_self"] is True
    assert data["algorithm"] == "bully"
    assert data["since"].endswith("Z")
    data = await body(await client.get("/api/v1/election"))
    assert data["algorithm"] == "bully"
    assert data["leader"] == "api-node"
    assert data["is_leader"] is True
    assert data["epoch"] >= 1
    assert data["election_timeout"] == 10.0


@pytest.mark.parametrize("name", ["bully", "raft", "gossip", "RAFT"])
async def test_election_algorithm_descriptions(client: TrioClient, name: str) -> None:
    response = await client.get(f"/api/v1/election/algorithms/{name}")
    data = await body(response)
    assert response.status_code == 200
    assert data["name"] == name.lower()
    assert data["best_for"]
    assert set(data["settings"]) == {"ELECTION_TIMEOUT", "ELECTION_INTERVAL"}
    assert isinstance(data["properties"]["quorum"], bool)
    assert data["current"] is (name.lower() == "bully")


async def test_unknown_election_algorithm_is_404_with_the_allowed_list(
    client: TrioClient,
) -> None:
    response = await client.get("/api/v1/election/algorithms/paxos")
    error = await expect_error(response, 404, "unknown_algorithm")
    assert "bully, raft, gossip" in error["message"]
    data = await body(await client.get("/api/v1/election/algorithms"))
    assert [a["name"] for a in data["algorithms"]] == ["bully", "raft", "gossip"]
    assert data["current"] == "bully"


async def test_cluster_view(client: TrioClient) -> None:
    data = await body(await client.get("/api/v1/cluster"))
    assert data["node_id"] == "api-node"
    assert data["leader"] == "api-node"
    assert data["is_leader"] is True
    assert data["algorithm"] == "bully"
    assert data["term"] >= 1 and data["epoch"] >= 1
    assert data["size"] == data["alive"] == 1
    assert data["storage"] == "memory"
    assert [m["node_id"] for m in data["members"]] == ["api-node"]


async def test_views_refuse_unknown_parameters(client: TrioClient) -> None:
    for path in ("/api/v1/stats", "/api/v1/cluster", "/api/v1/jobs/01J9Z6N5G4X8W3QH2K7R1M0P9T"):
        response = await client.get(f"{path}?verbose=1")
        await expect_error(response, 400, "unknown_parameter", "verbose")


# --------------------------------------------------------------------------
# probes


async def test_health_and_ready_when_all_is_well(client: TrioClient) -> None:
    response = await client.get("/health")
    data = await body(response)
    assert response.status_code == 200
    assert data["status"] == "ok"
    assert data["node_id"] == "api-node"
    assert data["leader"] == "api-node"
    assert [(b["kind"], b["healthy"]) for b in data["backends"]] == [
        ("broker", True),
        ("store", True),
    ]
    response = await client.get("/ready")
    data = await body(response)
    assert response.status_code == 200
    assert data["ready"] is True


async def test_a_backend_down_degrades_health_and_fails_ready(
    node: Node, client: TrioClient
) -> None:
    node.broker.down = True  # type: ignore[attr-defined]
    response = await client.get("/health")
    data = await body(response)
    assert response.status_code == 200
    assert data["status"] == "degraded"
    assert data["backends"][0]["healthy"] is False
    response = await client.get("/ready")
    data = await body(response)
    assert response.status_code == 503
    assert data["ready"] is False
    assert data["error"]["code"] == "backend_unavailable"
    assert data["error"]["field"] == "broker"
    assert "the broker (memory) is down" in data["error"]["message"]
    node.broker.down = False  # type: ignore[attr-defined]
    assert (await client.get("/ready")).status_code == 200


async def test_health_is_503_once_the_node_stops(node: Node, client: TrioClient) -> None:
    node.request_stop()
    await node.stopped.wait()
    response = await client.get("/health")
    assert response.status_code == 503
    assert (await body(response))["status"] in ("stopping", "starting")
    response = await client.get("/ready")
    assert response.status_code == 503


# --------------------------------------------------------------------------
# routing, method and internal errors


async def test_unknown_route_and_method_are_json(client: TrioClient) -> None:
    response = await client.get("/api/v2/jobs")
    error = await expect_error(response, 404, "not_found")
    assert "/api/v2/jobs" in error["message"]
    response = await client.put("/api/v1/jobs", json={"type": "noop"})
    error = await expect_error(response, 405, "method_not_allowed")
    assert "GET, POST" in error["message"]
    assert "POST" in response.headers["Allow"]
    response = await client.patch("/api/v1/jobs/01J9Z6N5G4X8W3QH2K7R1M0P9T")
    await expect_error(response, 405, "method_not_allowed")


async def test_a_bug_is_a_generic_500_and_is_logged(
    node: Node, client: TrioClient, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    async def broken() -> dict[str, Any]:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(node, "stats", broken)
    with caplog.at_level(logging.ERROR, logger="jobtrio.api"):
        response = await client.get("/api/v1/stats")
    error = await expect_error(response, 500, "internal")
    assert "secret" not in json.dumps(await body(response))
    assert "internal error" in error["message"]
    assert any("secret internal detail" in r.getMessage() or r.exc_info for r in caplog.records)


# --------------------------------------------------------------------------
# the seam for authentication


async def test_an_authorizer_guards_every_api_route_but_not_the_probes(node: Node) -> None:
    seen: list[Role] = []

    async def authorizer(request: Request, role: Role) -> None:
        seen.append(role)
        token = request.headers.get("Authorization", "")
        if not token:
            raise Unauthorized()
        if token != "Bearer admin":
            raise Forbidden(f"this needs the {role} role")

    client = create_app(node, authorizer=authorizer).test_client()
    response = await client.get("/api/v1/jobs")
    await expect_error(response, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == "Bearer"
    response = await client.post(
        "/api/v1/jobs", json={"type": "noop"}, headers={"Authorization": "Bearer user"}
    )
    await expect_error(response, 403, "forbidden")
    response = await client.get("/api/v1/jobs", headers={"Authorization": "Bearer admin"})
    assert response.status_code == 200
    assert set(seen) == {Role.USER, Role.WORKER}  # POST needs a user, GET a worker
    for probe in ("/health", "/ready", "/openapi.json"):
        assert (await client.get(probe)).status_code == 200


async def test_a_requests_blueprints_are_quarts(app: QuartTrio) -> None:
    """``TimedRequest.blueprints`` keeps each endpoint's, which Quart works out again for
    each hook: the same names for every route, and none for a path no route serves."""
    adapter = app.url_map.bind("localhost")
    seen = set()
    for rule in app.url_map.iter_rules():
        if getattr(rule, "websocket", False):
            continue
        path = adapter.build(rule.endpoint, dict.fromkeys(rule.arguments, "A" * 26))
        method = sorted(rule.methods or {"GET"})[0]
        for _ in range(2):  # the first request of an endpoint keeps its names, the next reads them
            async with app.test_request_context(path, method=method):
                current = request._get_current_object()  # type: ignore[attr-defined]
                assert current.url_rule is not None
                assert current.blueprints == Request.blueprints.fget(current)  # type: ignore[attr-defined]
        seen.add(tuple(current.blueprints))
    assert ("jobs",) in seen and ("schedules",) in seen
    async with app.test_request_context("/no/such/path"):
        assert request.url_rule is None
        assert request.blueprints == []
