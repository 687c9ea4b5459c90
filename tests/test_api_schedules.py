"""Periodic-job schedules and the leadership history over the REST API.

Every status code each route can answer, in the one error shape, against a
running in-memory node (as ``test_api.py`` does); real responses are also
checked against the OpenAPI schemas declared for them. The last test posts
a schedule over HTTP and watches it fire, under trio's MockClock so that
minutes of schedule pass in milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from quart import Request
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.auth import Role
from jobtrio.api.errors import Unauthorized
from jobtrio.backends.base import BackendUnavailable
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.processors import JobContext, Registry
from tests.test_api import MAX_PAYLOAD, body, expect_error
from tests.test_openapi import check
from tests.waiting import wait_until

CODE_SCHEDULE = "nightly-report"


class FlakyStore(MemoryStore):
    """A memory store whose schedules and elections can be 'down'."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailable("flaky", "connection refused by 10.0.0.8:27017")

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        self._check()
        await super().put_schedule(schedule)

    async def list_schedules(self) -> list[dict[str, Any]]:
        self._check()
        return await super().list_schedules()

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        self._check()
        return await super().list_elections(limit)


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    registry = Registry()
    registry.schedule(CODE_SCHEDULE, cron="0 6 * * *", job={"type": "noop"})
    settings = Settings(
        node_id="sched-node", worker_count=2, shutdown_grace=0.2, max_payload_bytes=MAX_PAYLOAD
    )
    n = Node(settings, MemoryBroker(), FlakyStore(), registry)
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


@pytest.fixture
async def spec(client: TrioClient) -> dict[str, Any]:
    return await body(await client.get("/openapi.json"))


HEARTBEAT = {"name": "heartbeat", "every": "30s", "job": {"type": "noop", "priority": 3}}


async def post(client: TrioClient, data: Any) -> Any:
    return await client.post("/api/v1/schedules", json=data)


# --------------------------------------------------------------------------
# POST /api/v1/schedules


async def test_post_creates_a_schedule_that_is_listed_and_readable(
    client: TrioClient, spec: dict[str, Any]
) -> None:
    response = await post(client, HEARTBEAT)
    created = await body(response)
    assert response.status_code == 201, created
    assert response.headers["Location"] == "/api/v1/schedules/heartbeat"
    assert created["name"] == "heartbeat" and created["every"] == 30.0
    assert created["cron"] is None and created["source"] == "api"
    assert created["enabled"] is True and created["misfire_grace"] == 60.0
    assert created["job"] == {"type": "noop", "priority": 3}
    assert created["next_tick"].endswith("Z")
    check(spec, "/api/v1/schedules", "post", 201, created)

    response = await client.get("/api/v1/schedules")
    listed = await body(response)
    assert response.status_code == 200
    assert listed["count"] == 2
    assert [s["name"] for s in listed["schedules"]] == ["heartbeat", CODE_SCHEDULE]
    assert listed["schedules"][0] == created
    check(spec, "/api/v1/schedules", "get", 200, listed)

    response = await client.get("/api/v1/schedules/heartbeat")
    assert response.status_code == 200
    assert await body(response) == created
    check(spec, "/api/v1/schedules/{name}", "get", 200, created)


async def test_post_with_the_same_name_replaces_the_schedule(client: TrioClient) -> None:
    assert (await post(client, HEARTBEAT)).status_code == 201
    replacement = {
        "name": "heartbeat",
        "cron": "*/5 * * * *",
        "job": {"type": "echo", "payload": {"n": 1}},
        "enabled": False,
        "misfire_grace": 5,
    }
    response = await post(client, replacement)
    assert response.status_code == 201
    got = await body(await client.get("/api/v1/schedules/heartbeat"))
    assert got["cron"] == "*/5 * * * *" and got["every"] is None
    assert got["enabled"] is False and got["misfire_grace"] == 5.0
    assert got["job"] == {"type": "echo", "payload": {"n": 1}}
    assert (await body(await client.get("/api/v1/schedules")))["count"] == 2


@pytest.mark.parametrize(
    ("data", "code", "field"),
    [
        ({"name": "x", "cron": "nope", "job": {"type": "noop"}}, "invalid", "cron"),
        ({"name": "x", "every": "soon", "job": {"type": "noop"}}, "invalid", "every"),
        ({"name": "x", "every": 0.5, "job": {"type": "noop"}}, "out_of_range", "every"),
        ({"name": "x", "job": {"type": "noop"}}, "missing_field", "cron"),
        (
            {"name": "x", "cron": "* * * * *", "every": "5s", "job": {"type": "noop"}},
            "missing_field",
            "cron",
        ),
        ({"name": "bad name!", "every": "5s", "job": {"type": "noop"}}, "invalid_type", "name"),
        ({"every": "5s", "job": {"type": "noop"}}, "invalid_type", "name"),
        ({"name": "x", "every": "5s"}, "invalid", "job"),
        ({"name": "x", "every": "5s", "job": {"payload": {}}}, "missing_field", "job.type"),
        (
            {"name": "x", "every": "5s", "job": {"type": "noop", "priority": 11}},
            "out_of_range",
            "job.priority",
        ),
        (
            {"name": "x", "every": "5s", "job": {"type": "noop", "idempotency_key": "k"}},
            "invalid",
            "job",
        ),
        (
            {"name": "x", "every": "5s", "job": {"type": "noop"}, "enabled": "yes"},
            "invalid_type",
            "enabled",
        ),
        (
            {"name": "x", "every": "5s", "job": {"type": "noop"}, "misfire_grace": -1},
            "invalid",
            "misfire_grace",
        ),
        (
            {"name": "x", "every": "5s", "job": {"type": "noop"}, "colour": "red"},
            "unknown_field",
            "colour",
        ),
    ],
)
async def test_post_refuses_invalid_schedules_with_422_naming_the_field(
    client: TrioClient, spec: dict[str, Any], data: dict[str, Any], code: str, field: str
) -> None:
    response = await post(client, data)
    await expect_error(response, 422, code, field)
    check(spec, "/api/v1/schedules", "post", 422, await body(response))
    assert (await body(await client.get("/api/v1/schedules")))["count"] == 1  # nothing saved


async def test_post_refuses_bodies_that_are_not_a_json_object(client: TrioClient) -> None:
    url = "/api/v1/schedules"
    await expect_error(await client.post(url, data=b"{nope"), 400, "invalid_json")
    await expect_error(await client.post(url, data=b""), 400, "empty_body")
    await expect_error(await client.post(url, json=[HEARTBEAT]), 422, "invalid_type")
    response = await client.post(url, data=b"name=x", headers={"Content-Type": "text/plain"})
    await expect_error(response, 415, "unsupported_media_type")
    big = {**HEARTBEAT, "job": {"type": "noop", "payload": {"x": "a" * (MAX_PAYLOAD + 70_000)}}}
    await expect_error(await post(client, big), 413, "payload_too_large")
    response = await client.post(f"{url}?force=1", json=HEARTBEAT)
    await expect_error(response, 400, "unknown_parameter", "force")


async def test_a_payload_over_the_limit_inside_the_body_limit_is_413(client: TrioClient) -> None:
    data = {**HEARTBEAT, "job": {"type": "noop", "payload": {"x": "a" * MAX_PAYLOAD}}}
    error = await expect_error(await post(client, data), 413, "payload_too_large", "job.payload")
    assert str(MAX_PAYLOAD) in error["message"]


async def test_a_schedule_defined_in_code_cannot_be_replaced_or_deleted(
    client: TrioClient, spec: dict[str, Any]
) -> None:
    response = await post(client, {**HEARTBEAT, "name": CODE_SCHEDULE})
    error = await expect_error(response, 409, "conflict", "name")
    assert "defined in code" in error["message"]
    check(spec, "/api/v1/schedules", "post", 409, await body(response))

    response = await client.delete(f"/api/v1/schedules/{CODE_SCHEDULE}")
    error = await expect_error(response, 409, "conflict", "name")
    assert "defined in code" in error["message"]
    check(spec, "/api/v1/schedules/{name}", "delete", 409, await body(response))

    code = await body(await client.get(f"/api/v1/schedules/{CODE_SCHEDULE}"))
    assert code["source"] == "code" and code["cron"] == "0 6 * * *"


# --------------------------------------------------------------------------
# GET and DELETE /api/v1/schedules/{name}


@pytest.mark.parametrize("name", ["missing", "bad%20name!", "x" * 101])
async def test_get_an_unknown_schedule_is_404(
    client: TrioClient, spec: dict[str, Any], name: str
) -> None:
    response = await client.get(f"/api/v1/schedules/{name}")
    error = await expect_error(response, 404, "not_found")
    assert "no schedule named" in error["message"]
    check(spec, "/api/v1/schedules/{name}", "get", 404, await body(response))


async def test_delete_removes_the_schedule_then_is_404(
    client: TrioClient, spec: dict[str, Any]
) -> None:
    assert (await post(client, HEARTBEAT)).status_code == 201
    response = await client.delete("/api/v1/schedules/heartbeat")
    deleted = await body(response)
    assert response.status_code == 200
    assert deleted == {"name": "heartbeat", "deleted": True}
    check(spec, "/api/v1/schedules/{name}", "delete", 200, deleted)
    names = [s["name"] for s in (await body(await client.get("/api/v1/schedules")))["schedules"]]
    assert names == [CODE_SCHEDULE]
    response = await client.delete("/api/v1/schedules/heartbeat")
    await expect_error(response, 404, "not_found")
    check(spec, "/api/v1/schedules/{name}", "delete", 404, await body(response))
    await expect_error(await client.get("/api/v1/schedules/heartbeat"), 404, "not_found")


async def test_schedule_routes_refuse_unknown_parameters(client: TrioClient) -> None:
    for url in ("/api/v1/schedules?all=1", "/api/v1/schedules/heartbeat?all=1"):
        await expect_error(await client.get(url), 400, "unknown_parameter", "all")
    response = await client.delete("/api/v1/schedules/heartbeat?purge=true")
    await expect_error(response, 400, "unknown_parameter", "purge")


async def test_unsupported_methods_are_405_in_our_shape(client: TrioClient) -> None:
    response = await client.put("/api/v1/schedules/heartbeat", json=HEARTBEAT)
    error = await expect_error(response, 405, "method_not_allowed")
    assert "DELETE, GET" in error["message"]
    await expect_error(await client.delete("/api/v1/schedules"), 405, "method_not_allowed")
    await expect_error(await client.post("/api/v1/elections"), 405, "method_not_allowed")


# --------------------------------------------------------------------------
# GET /api/v1/elections


async def test_a_single_node_records_its_own_leadership(client: TrioClient) -> None:
    async def recorded() -> dict[str, Any] | None:
        page = await body(await client.get("/api/v1/elections"))
        return page if page["count"] else None

    page = await wait_until(recorded, message="the standalone leadership record")
    assert page["count"] == 1
    [record] = page["elections"]
    assert record["algorithm"] == "standalone" and record["members"] == [record["leader"]]


async def test_elections_newest_first_with_iso_times_and_a_limit(
    node: Node, client: TrioClient, spec: dict[str, Any]
) -> None:
    await wait_until(node.store.list_elections, message="the node's own leadership record")
    for epoch in range(1, 61):
        await node.store.add_election(
            {
                "leader": f"node-{epoch % 3}",
                "term": epoch,
                "epoch": epoch,
                "algorithm": "raft",
                "at": 1_700_000_000.0 + epoch,
                "members": ["node-0", "node-1", "node-2"],
            }
        )
    response = await client.get("/api/v1/elections")
    page = await body(response)
    assert response.status_code == 200
    check(spec, "/api/v1/elections", "get", 200, page)
    assert page["count"] == 50  # the default limit
    assert [e["epoch"] for e in page["elections"]] == list(range(60, 10, -1))
    newest = page["elections"][0]
    assert newest["at"] == "2023-11-14T22:14:20.000000Z"
    assert newest["leader"] == "node-0" and newest["members"] == ["node-0", "node-1", "node-2"]
    page = await body(await client.get("/api/v1/elections?limit=3"))
    assert [e["epoch"] for e in page["elections"]] == [60, 59, 58] and page["count"] == 3
    page = await body(await client.get("/api/v1/elections?limit=1000"))
    assert page["count"] == 61  # with the node's own standalone leadership, recorded first
    assert page["elections"][-1]["algorithm"] == "standalone"


@pytest.mark.parametrize(
    ("query", "code", "field"),
    [
        ("limit=0", "invalid_parameter", "limit"),
        ("limit=1001", "invalid_parameter", "limit"),
        ("limit=ten", "invalid_parameter", "limit"),
        ("limit=1&limit=2", "invalid_parameter", "limit"),
        ("leader=node-1", "unknown_parameter", "leader"),
    ],
)
async def test_elections_refuses_bad_parameters_with_400(
    client: TrioClient, spec: dict[str, Any], query: str, code: str, field: str
) -> None:
    response = await client.get(f"/api/v1/elections?{query}")
    await expect_error(response, 400, code, field)
    check(spec, "/api/v1/elections", "get", 400, await body(response))


# --------------------------------------------------------------------------
# the store down, and the auth seam


async def test_a_store_outage_is_503_without_internal_text(
    node: Node, client: TrioClient, spec: dict[str, Any]
) -> None:
    assert isinstance(node.store, FlakyStore)
    node.store.down = True
    calls = [
        ("get", "/api/v1/schedules", {}),
        ("post", "/api/v1/schedules", {"json": HEARTBEAT}),
        ("get", "/api/v1/schedules/heartbeat", {}),
        ("delete", "/api/v1/schedules/heartbeat", {}),
        ("get", "/api/v1/elections", {}),
    ]
    for method, url, kwargs in calls:
        response = await getattr(client, method)(url, **kwargs)
        await expect_error(response, 503, "unavailable")
        assert response.headers["Retry-After"] == "1"
        assert "10.0.0.8" not in json.dumps(await body(response))
        path = "/api/v1/schedules/{name}" if url.endswith("heartbeat") else url
        check(spec, path, method, 503, await body(response))


async def test_schedules_are_read_by_users_and_changed_by_admins(node: Node) -> None:
    seen: list[tuple[str, Role]] = []

    async def authorizer(request: Request, role: Role) -> None:
        seen.append((f"{request.method} {request.path}", role))
        if not request.headers.get("Authorization"):
            raise Unauthorized()

    client = create_app(node, authorizer=authorizer).test_client()
    calls = [
        ("get", "/api/v1/schedules", {}),
        ("post", "/api/v1/schedules", {"json": HEARTBEAT}),
        ("get", "/api/v1/schedules/heartbeat", {}),
        ("delete", "/api/v1/schedules/heartbeat", {}),
        ("get", "/api/v1/elections", {}),
    ]
    for method, url, kwargs in calls:
        response = await getattr(client, method)(url, **kwargs)
        await expect_error(response, 401, "unauthorized")
    assert dict(seen) == {
        "GET /api/v1/schedules": Role.USER,
        "POST /api/v1/schedules": Role.ADMIN,  # schedules are the deployment's, like code
        "GET /api/v1/schedules/heartbeat": Role.USER,
        "DELETE /api/v1/schedules/heartbeat": Role.ADMIN,
        "GET /api/v1/elections": Role.USER,
    }
    token = {"Authorization": "Bearer t"}
    response = await client.post("/api/v1/schedules", json=HEARTBEAT, headers=token)
    assert response.status_code == 201


# --------------------------------------------------------------------------
# end to end: a schedule posted over HTTP fires

EPOCH0 = 1_700_000_000.0


def mock_wall_clock() -> float:
    return EPOCH0 + trio.current_time()


async def test_a_schedule_posted_over_http_fires_once_per_tick(autojump_clock: Any) -> None:
    ran: list[float] = []
    registry = Registry()

    @registry.processor("beat")
    async def beat(ctx: JobContext) -> None:
        ran.append(mock_wall_clock())

    node = Node(
        Settings(node_id="clock-node", worker_count=2, shutdown_grace=0.2),
        MemoryBroker(),
        MemoryStore(),
        registry,
        clock=mock_wall_clock,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        client = create_app(node).test_client()
        data = {"name": "beat", "every": "10s", "job": {"type": "beat", "payload": {"n": 1}}}
        response = await client.post("/api/v1/schedules", json=data)
        assert response.status_code == 201, await body(response)

        async def completed() -> list[dict[str, Any]] | None:
            page = await body(await client.get("/api/v1/jobs?type=beat&status=completed"))
            return page["jobs"] if page["count"] >= 3 else None

        # mock seconds: three 10 s ticks, plus up to 5 s for the leader to re-read schedules
        jobs = await wait_until(completed, timeout=60, interval=1, message="three ticks to run")
        response = await client.delete("/api/v1/schedules/beat")
        assert response.status_code == 200
        node.request_stop()

    keys = [job["idempotency_key"] for job in jobs]
    assert len(set(keys)) == len(keys)
    assert all(key.startswith("schedule:beat:") for key in keys)
    ticks = sorted(float(key.rsplit(":", 1)[1]) for key in keys)
    assert all(t % 10 == 0 for t in ticks)
    assert [b - a for a, b in zip(ticks, ticks[1:], strict=False)] == [10.0] * (len(ticks) - 1)
    assert all(job["payload"] == {"n": 1} for job in jobs)
    assert len(ran) >= 3 and len({int(t // 10) for t in ran}) == len(ran)
