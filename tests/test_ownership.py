"""Job ownership with AUTH_ENABLED=true: a ``user`` sees and changes only its own jobs.

Each test runs a node on the memory, SQLite and Redis backends: the list of a
``user`` is filtered by the Store's own query (tests/test_backend_contract.py
pins that query on every Store), the other routes by the job's recorded
owner. Another user's job answers exactly as an unknown id does.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.backends.base import Broker, Store
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.eventstream import EventFilter
from jobtrio.jobs import to_iso
from jobtrio.users import Role, Users
from tests.test_auth import CHEAP, SECRET

PASSWORDS = {
    "ada": "ada-password",
    "uma": "uma-password",
    "ula": "ula-password",
    "wes": "wes-password",
}
ROLES = {"ada": Role.ADMIN, "uma": Role.USER, "ula": Role.USER, "wes": Role.WORKER}
LATER = to_iso(time.time() + 3600)  # waits as scheduled: nothing runs it during a test


async def open_backends(kind: str, tmp_path: Path, request: pytest.FixtureRequest):
    if kind == "memory":
        return MemoryBroker(), MemoryStore()
    if kind == "sqlite":
        from jobtrio.backends.sqlite import SqliteBroker, SqliteStore

        path = str(tmp_path / "jobtrio.db")
        return await SqliteBroker.open(path), await SqliteStore.open(path)
    from jobtrio.backends.redis import RedisBroker, RedisStore

    server = request.getfixturevalue("redis_server")
    prefix = "own" + uuid.uuid4().hex[:10]
    broker = await RedisBroker.open(server.url, prefix=prefix, records=True)
    return broker, await RedisStore.open(server.url, prefix=prefix)


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def node(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Node]:
    users = Users.open_or_create(tmp_path / "users.json", CHEAP)
    for name, password in PASSWORDS.items():
        users.add(name, ROLES[name], password)
    users.save()
    broker: Broker
    store: Store
    broker, store = await open_backends(request.param, tmp_path, request)
    settings = Settings(
        node_id="own-node",
        worker_count=2,
        shutdown_grace=0.2,
        auth_enabled=True,
        jwt_secret=SECRET,
        users_file=str(tmp_path / "users.json"),
    )
    n = Node(settings, broker, store)
    async with trio.open_nursery() as nursery:
        await nursery.start(n.run)
        yield n
        n.request_stop()


class As:
    """One user's side of the API: requests with its token."""

    def __init__(self, app: QuartTrio, token: str) -> None:
        self.client = app.test_client()
        self.headers = {"Authorization": f"Bearer {token}"}

    async def __call__(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any]:
        call = getattr(self.client, method.lower())
        response = await call(path, headers=self.headers, **kwargs)
        return response.status_code, await response.get_json()

    async def submit(self, **fields: Any) -> dict[str, Any]:
        status, job = await self("POST", "/api/v1/jobs", json={"type": "noop", **fields})
        assert status == 201, job
        return job  # type: ignore[no-any-return]


async def sessions(app: QuartTrio) -> dict[str, As]:
    out = {}
    for name, password in PASSWORDS.items():
        response = await app.test_client().post(
            "/auth/login", json={"username": name, "password": password}
        )
        assert response.status_code == 200
        out[name] = As(app, (await response.get_json())["token"])
    return out


async def test_a_user_sees_and_changes_only_its_own_jobs(node: Node) -> None:
    app = create_app(node)
    s = await sessions(app)
    mine = await s["uma"].submit(scheduled_at=LATER)
    theirs = await s["ula"].submit(scheduled_at=LATER)
    status, batch = await s["ula"](
        "POST", "/api/v1/jobs/batch", json={"jobs": [{"type": "noop", "scheduled_at": LATER}]}
    )
    assert status == 201
    by_admin = await s["ada"].submit(scheduled_at=LATER)
    assert mine["owner"] == "uma" and theirs["owner"] == "ula"
    assert batch["jobs"][0]["owner"] == "ula" and by_admin["owner"] == "ada"

    # another user's job answers as an unknown id does: 404, the same body
    unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV"
    for method, suffix in [("GET", ""), ("DELETE", ""), ("POST", "/retry")]:
        status, body = await s["uma"](method, f"/api/v1/jobs/{theirs['id']}{suffix}")
        _, none = await s["uma"](method, f"/api/v1/jobs/{unknown}{suffix}")
        assert status == 404, (method, body)
        assert body["error"]["message"].replace(theirs["id"], unknown) == none["error"]["message"]
    assert (await node.get(theirs["id"])).status == "scheduled"  # not cancelled

    # the list is the user's own, page by page (the list reads the Store: record first)
    await node.recorder.flush(5)
    status, page = await s["uma"]("GET", "/api/v1/jobs")
    assert status == 200 and [j["id"] for j in page["jobs"]] == [mine["id"]]
    status, page = await s["ula"]("GET", "/api/v1/jobs?limit=1")
    seen = [j["id"] for j in page["jobs"]]
    status, page = await s["ula"]("GET", f"/api/v1/jobs?limit=1&cursor={page['next_cursor']}")
    seen += [j["id"] for j in page["jobs"]]
    assert seen == [batch["jobs"][0]["id"], theirs["id"]] and page["next_cursor"] is None

    # its own: cancel, then retry
    status, cancelled = await s["ula"]("DELETE", f"/api/v1/jobs/{theirs['id']}")
    assert status == 200 and cancelled["status"] == "cancelled"
    assert (await s["uma"]("POST", f"/api/v1/jobs/{theirs['id']}/retry"))[0] == 404
    status, retried = await s["ula"]("POST", f"/api/v1/jobs/{theirs['id']}/retry")
    assert status == 200 and retried["owner"] == "ula"

    # admin and worker see everybody's; admin changes anybody's
    await node.recorder.flush(5)
    everybody = {mine["id"], theirs["id"], batch["jobs"][0]["id"], by_admin["id"]}
    for name in ("ada", "wes"):
        status, page = await s[name]("GET", "/api/v1/jobs")
        assert {j["id"] for j in page["jobs"]} == everybody
        assert (await s[name]("GET", f"/api/v1/jobs/{mine['id']}"))[0] == 200
    status, cancelled = await s["ada"]("DELETE", f"/api/v1/jobs/{mine['id']}")
    assert status == 200 and cancelled["owner"] == "uma"


async def test_an_idempotency_key_does_not_hand_out_another_users_job(node: Node) -> None:
    s = await sessions(create_app(node))
    first = await s["ula"].submit(scheduled_at=LATER, idempotency_key="order-1")
    status, body = await s["uma"](
        "POST", "/api/v1/jobs", json={"type": "noop", "idempotency_key": "order-1"}
    )
    assert status == 409 and body["error"]["code"] == "idempotency_key_taken"
    assert first["id"] not in json.dumps(body)
    again = await s["ula"].submit(scheduled_at=LATER, idempotency_key="order-1")
    assert again["id"] == first["id"]


async def test_a_retried_workflow_is_the_same_one_and_another_users_key_is_409(
    node: Node,
) -> None:
    """Issue 16: a workflow had no idempotency key; a retried POST filed a second set."""
    s = await sessions(create_app(node))
    step = {"type": "noop", "scheduled_at": LATER}
    spec = {"chain": [step, step], "idempotency_key": "flow-1"}
    status, first = await s["ula"]("POST", "/api/v1/workflows", json=spec)
    assert status == 201 and len(first["members"]) == 2
    status, again = await s["ula"]("POST", "/api/v1/workflows", json=spec)
    assert status == 201 and again["id"] == first["id"] and again["members"] == first["members"]
    depths = await node.broker.depths()
    assert sum(depths.values()) == 2  # no second set of jobs
    status, body = await s["uma"]("POST", "/api/v1/workflows", json=spec)
    assert status == 409 and body["error"]["code"] == "idempotency_key_taken"
    assert (
        body["error"]["field"] == "idempotency_key" and "another user" in body["error"]["message"]
    )
    assert first["id"] not in json.dumps(body)
    await s["uma"].submit(scheduled_at=LATER, idempotency_key="job-1")
    held = {"group": [step], "idempotency_key": "job-1"}
    status, body = await s["uma"]("POST", "/api/v1/workflows", json=held)
    assert status == 409 and "not a workflow" in body["error"]["message"]
    assert sum((await node.broker.depths()).values()) == 3
    for bad in ("", 5, "x" * 201, "a\x00b", ["k"]):
        status, body = await s["ula"](
            "POST", "/api/v1/workflows", json={"group": [step], "idempotency_key": bad}
        )
        assert status == 422 and body["error"]["field"] == "idempotency_key", (bad, body)
    assert sum((await node.broker.depths()).values()) == 3


async def test_a_users_event_stream_carries_only_its_own_jobs(node: Node) -> None:
    app = create_app(node)
    s = await sessions(app)
    headers = s["uma"].headers
    async with app.test_client().websocket("/api/v1/events?kind=job", headers=headers) as ws:
        ready = json.loads(await ws.receive())
        assert ready["filters"]["owner"] == ["uma"]
        theirs = await s["ula"].submit(scheduled_at=LATER)
        mine = await s["uma"].submit(scheduled_at=LATER)
        event = json.loads(await ws.receive())
        assert event["job_id"] == mine["id"] and event["owner"] == "uma", (event, theirs)


def test_the_owner_filter_leaves_out_other_users_job_events_only() -> None:
    only_uma = EventFilter(owner="uma")
    assert not only_uma.everything
    assert only_uma.matches({"kind": "job.completed", "job_id": "X", "owner": "uma"})
    assert not only_uma.matches({"kind": "job.completed", "job_id": "X", "owner": "ula"})
    assert not only_uma.matches({"kind": "job.completed", "job_id": "X", "owner": None})
    assert only_uma.matches({"kind": "leader.changed", "leader": "n1"})
    assert EventFilter().matches({"kind": "job.completed", "job_id": "X", "owner": "ula"})


async def test_a_user_depends_only_on_its_own_jobs_and_pays_one_read_an_id(
    node: Node, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another user's job is as unknown as a missing one to ``depends_on`` (its result would
    leak through ``receive_results``); the check reads each distinct id once and leaves a
    list over the limit to validation (one read an entry made a batch repeating one id
    take 23 s before its 422)."""
    app = create_app(node)
    s = await sessions(app)
    mine = await s["uma"].submit(scheduled_at=LATER)
    theirs = await s["ula"].submit(scheduled_at=LATER)
    status, body = await s["uma"](
        "POST", "/api/v1/jobs", json={"type": "noop", "depends_on": [theirs["id"]]}
    )
    assert status == 400 and body["error"]["code"] == "unknown_dependency", body
    assert theirs["id"] in body["error"]["message"]
    assert (await s["uma"].submit(depends_on=[mine["id"]]))["owner"] == "uma"
    assert (await s["ula"].submit(depends_on=[theirs["id"]]))["owner"] == "ula"

    reads: list[str] = []
    get = node.get

    async def counted(job_id: str) -> Any:
        reads.append(job_id)
        return await get(job_id)

    monkeypatch.setattr(node, "get", counted)
    twice = {"type": "noop", "depends_on": [mine["id"], mine["id"].lower()]}
    status, body = await s["uma"]("POST", "/api/v1/jobs", json=twice)
    assert status == 422 and "twice" in body["error"]["message"], body
    assert reads == [mine["id"]]
    reads.clear()
    repeated = {"type": "noop", "depends_on": [mine["id"]] * 5000}
    status, body = await s["uma"]("POST", "/api/v1/jobs/batch", json={"jobs": [repeated] * 20})
    assert status == 422 and "the limit is 1000" in body["error"]["message"], body
    assert reads == []
