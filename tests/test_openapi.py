"""/openapi.json is a valid OpenAPI document that tells the truth.

Valid: openapi-spec-validator accepts it. Complete and exact: it lists every
(path, method) the app routes and nothing else. True: real responses of a
running node validate against the schemas it declares for them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from quart_trio import QuartTrio
from quart_trio.testing import TrioClient

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.openapi import openapi_path
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from tests.waiting import wait_until

IGNORED_METHODS = {"HEAD", "OPTIONS"}


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = Node(
        Settings(node_id="spec-node", worker_count=2, shutdown_grace=0.2),
        MemoryBroker(),
        MemoryStore(),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(n.run)
        yield n
        n.request_stop()


@pytest.fixture
def app(node: Node) -> QuartTrio:
    return create_app(node)


@pytest.fixture
async def spec(app: QuartTrio) -> dict[str, Any]:
    response = await app.test_client().get("/openapi.json")
    assert response.status_code == 200
    return json.loads(await response.get_data())


def app_routes(app: QuartTrio) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        for method in rule.methods or ():
            if method not in IGNORED_METHODS:
                routes.add((openapi_path(rule.rule), method.lower()))
    return routes


def spec_routes(spec: dict[str, Any]) -> set[tuple[str, str]]:
    return {(path, method) for path, ops in spec["paths"].items() for method in ops}


async def test_the_document_is_valid_openapi(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


async def test_it_lists_exactly_the_apps_routes(app: QuartTrio, spec: dict[str, Any]) -> None:
    assert spec_routes(spec) == app_routes(app)


async def test_every_operation_has_an_id_a_summary_and_error_responses(
    spec: dict[str, Any],
) -> None:
    ids = set()
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            assert op["operationId"] not in ids
            ids.add(op["operationId"])
            assert op["summary"]
            for name in (p["name"] for p in op.get("parameters", []) if p["in"] == "path"):
                assert "{" + name + "}" in path
            if path.startswith("/api/"):
                assert op["x-required-role"] in ("admin", "user", "worker"), (path, method)
                assert "401" in op["responses"] and "403" in op["responses"], (path, method)
                assert "400" in op["responses"] and "500" in op["responses"]
            else:
                assert op["security"] == []


def test_openapi_path_converts_werkzeug_rules() -> None:
    assert openapi_path("/api/v1/jobs/<job_id>/retry") == "/api/v1/jobs/{job_id}/retry"
    assert openapi_path("/x/<string:name>/<int:n>") == "/x/{name}/{n}"


# --------------------------------------------------------------------------
# real responses against the declared schemas


def response_schema(spec: dict[str, Any], path: str, method: str, status: int) -> dict[str, Any]:
    response = spec["paths"][path][method]["responses"][str(status)]
    if "$ref" in response:
        response = spec["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    return response["content"]["application/json"]["schema"]


def check(spec: dict[str, Any], path: str, method: str, status: int, instance: Any) -> None:
    schema = {**response_schema(spec, path, method, status), "components": spec["components"]}
    errors = sorted(Draft202012Validator(schema).iter_errors(instance), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


async def call(
    client: TrioClient, method: str, url: str, status: int, **kwargs: Any
) -> dict[str, Any]:
    response = await getattr(client, method)(url, **kwargs)
    data = json.loads(await response.get_data())
    assert response.status_code == status, data
    return data


async def test_real_responses_match_the_schemas(
    app: QuartTrio, node: Node, spec: dict[str, Any]
) -> None:
    client = app.test_client()
    later = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()

    job = await call(client, "post", "/api/v1/jobs", 201, json={"type": "echo"})
    check(spec, "/api/v1/jobs", "post", 201, job)

    async def completed() -> dict[str, Any] | None:
        data = await call(client, "get", f"/api/v1/jobs/{job['id']}", 200)
        return data if data["status"] == "completed" else None

    done = await wait_until(completed, message="the job to complete")
    check(spec, "/api/v1/jobs/{job_id}", "get", 200, done)

    batch = await call(
        client, "post", "/api/v1/jobs/batch", 201, json={"jobs": [{"type": "noop"}] * 3}
    )
    check(spec, "/api/v1/jobs/batch", "post", 201, batch)
    bad = await call(client, "post", "/api/v1/jobs/batch", 422, json={"jobs": [{"x": 1}]})
    check(spec, "/api/v1/jobs/batch", "post", 422, bad)
    bad = await call(client, "post", "/api/v1/jobs", 422, json={"type": "noop", "priority": 0})
    check(spec, "/api/v1/jobs", "post", 422, bad)

    page = await call(client, "get", "/api/v1/jobs?limit=2", 200)
    check(spec, "/api/v1/jobs", "get", 200, page)
    check(spec, "/api/v1/jobs", "get", 400, await call(client, "get", "/api/v1/jobs?limit=0", 400))

    waiting = await call(
        client, "post", "/api/v1/jobs", 201, json={"type": "noop", "scheduled_at": later}
    )
    cancelled = await call(client, "delete", f"/api/v1/jobs/{waiting['id']}", 200)
    check(spec, "/api/v1/jobs/{job_id}", "delete", 200, cancelled)
    retried = await call(client, "post", f"/api/v1/jobs/{waiting['id']}/retry", 200)
    check(spec, "/api/v1/jobs/{job_id}/retry", "post", 200, retried)
    conflict = await call(client, "post", f"/api/v1/jobs/{job['id']}/retry", 409)
    check(spec, "/api/v1/jobs/{job_id}/retry", "post", 409, conflict)
    deleted = await call(client, "delete", f"/api/v1/jobs/{job['id']}?purge=true", 200)
    check(spec, "/api/v1/jobs/{job_id}", "delete", 200, deleted)
    missing = await call(client, "get", f"/api/v1/jobs/{job['id']}", 404)
    check(spec, "/api/v1/jobs/{job_id}", "get", 404, missing)

    for path in (
        "/api/v1/stats",
        "/api/v1/workers",
        "/api/v1/nodes",
        "/api/v1/leader",
        "/api/v1/election",
        "/api/v1/election/algorithms",
        "/api/v1/cluster",
        "/health",
        "/ready",
    ):
        check(spec, path, "get", 200, await call(client, "get", path, 200))
    for name in ("bully", "raft", "gossip"):
        data = await call(client, "get", f"/api/v1/election/algorithms/{name}", 200)
        check(spec, "/api/v1/election/algorithms/{algorithm}", "get", 200, data)
