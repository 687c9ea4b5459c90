"""Queues over real HTTP: the routes, the client methods and ``jobtrio queues``.

A node serves its API with hypercorn in the test's trio loop; the client
and the command line (in a worker thread) talk to it over HTTP. Pause and
rate limits are checked by what the node then claims.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import trio

from jobtrio.actors.node import Node
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.cli import main
from jobtrio.client import AsyncClient, NotFound
from jobtrio.config import Settings
from jobtrio.jobs import JobStatus
from jobtrio.processors import Registry
from tests.test_cli import Run, one_line
from tests.test_client import Served, serve_node
from tests.waiting import wait_until


def make_node() -> Node:
    settings = Settings(node_id="q-node", worker_count=2, shutdown_grace=0.2)
    return Node(settings, MemoryBroker(), MemoryStore(), Registry())


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        yield Served(node, url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], served: Served) -> Any:
    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await trio.to_thread.run_sync(main, [*args, "--url", served.url])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


async def status_of(client: AsyncClient, job_id: str) -> JobStatus:
    return (await client.get(job_id)).status


async def test_a_paused_queue_waits_until_resumed(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        view = await client.pause_queue("mail")
        assert view["paused"] is True and view["name"] == "mail"
        held = await client.submit("noop", queue="mail")
        other = await client.submit("noop")
        assert held.queue == "mail"

        async def other_done() -> bool:
            return await status_of(client, other.id) == JobStatus.COMPLETED

        await wait_until(other_done, message="the default queue's job to run")
        assert await status_of(client, held.id) == JobStatus.PENDING
        listed = await client.queues()
        [mail] = [q for q in listed["queues"] if q["name"] == "mail"]
        assert mail["paused"] and mail["pending"] == 1 and mail["pending_by_type"] == {"noop": 1}
        assert mail["nodes"] == ["q-node"] and listed["unserved"] == []
        assert (await client.resume_queue("mail"))["paused"] is False

        async def held_done() -> bool:
            return await status_of(client, held.id) == JobStatus.COMPLETED

        await wait_until(held_done, message="the resumed queue's job to run")


async def test_a_rate_limit_is_set_shown_and_cleared(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        view = await client.set_rate_limit("api", 1, 3600)
        assert view["rate_limit"] == {"jobs": 1, "per_seconds": 3600.0}
        first = await client.submit("noop", queue="api")
        second = await client.submit("noop", queue="api")

        async def first_done() -> bool:
            return await status_of(client, first.id) == JobStatus.COMPLETED

        await wait_until(first_done, message="the first job of the hour to run")
        assert await status_of(client, second.id) == JobStatus.PENDING
        assert (await client.queue("api"))["pending"] == 1
        assert (await client.clear_rate_limit("api"))["rate_limit"] is None

        async def second_done() -> bool:
            return await status_of(client, second.id) == JobStatus.COMPLETED

        await wait_until(second_done, message="the second job to run once unlimited")
        assert (await client.set_rate_limit("api", 5, "500ms"))["rate_limit"] == {
            "jobs": 5,
            "per_seconds": 0.5,
        }


async def test_an_unknown_queue_is_an_empty_running_one(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        view = await client.queue("nothing-here")
    assert view == {
        "name": "nothing-here",
        "pending": 0,
        "pending_by_type": {},
        "paused": False,
        "rate_limit": None,
        "nodes": ["q-node"],
        "unserved": [],
    }


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("GET", "/api/v1/queues/a:b", None, 400, "queue"),
        ("POST", "/api/v1/queues/%20a/pause", None, 400, "queue"),
        ("POST", "/api/v1/queues/" + "x" * 101 + "/resume", None, 400, "queue"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 0, "per": 1}, 422, "jobs"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": True, "per": 1}, 422, "jobs"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": -5}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": None}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": [1]}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": 86401}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": 10**400}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": 1e300}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 10**400, "per": 1}, 422, "jobs"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": "1", "per": 1}, 422, "jobs"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"per": 1}, 422, "jobs"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": "soon"}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": 0}, 422, "per"),
        ("PUT", "/api/v1/queues/a/rate_limit", {"jobs": 1, "per": 1, "x": 1}, 422, "x"),
        ("POST", "/api/v1/jobs", {"type": "noop", "queue": "a\x00"}, 422, "queue"),
        ("POST", "/api/v1/jobs", {"type": "noop", "queue": ""}, 422, "queue"),
    ],
)
async def test_bad_input_is_a_clear_4xx_naming_the_field(
    served: Served, method: str, path: str, body: Any, status: int, field: str
) -> None:
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.request(method, path, json=body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["field"] == field


@pytest.mark.parametrize(
    ("body", "field"), [({"jobs": 1}, "per"), ({"per": "1s"}, "jobs"), ({}, "jobs")]
)
async def test_a_missing_rate_limit_field_is_named_as_missing(
    served: Served, body: dict[str, Any], field: str
) -> None:
    """It said "per must be a duration from 0.001s to 86400s", as for a bad value."""
    async with httpx.AsyncClient(base_url=served.url) as http:
        response = await http.put("/api/v1/queues/a/rate_limit", json=body)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "missing_field" and error["field"] == field
    assert error["message"].startswith(f"{field} is missing")


async def test_the_client_names_a_missing_per(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        with pytest.raises(TypeError, match="per is missing"):
            await client.set_rate_limit("a", 10, None)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="per must be seconds"):
            await client.set_rate_limit("a", 10, [1])  # type: ignore[arg-type]
        assert (await client.queue("a"))["rate_limit"] is None


async def test_jobs_are_listed_by_queue(served: Served, cli: Any) -> None:
    """``GET /api/v1/jobs?queue=`` (and ``jobs list -q``) lists one queue's jobs; a name
    no queue could have is a 400 naming the parameter, as in the queue routes."""
    async with AsyncClient(served.url) as client:
        render = [(await client.submit("resize", queue="render")).id for _ in range(3)]
        email = (await client.submit("resize", queue="email")).id
        default = (await client.submit("resize")).id

        async def recorded() -> bool:  # the Store's records are written off the hot path
            return len([j async for j in client.list()]) == 5

        await wait_until(recorded, message="5 records in the Store")
        page = await client.list_page(queue="render", limit=2)
        assert [j.id for j in page.jobs] == render[::-1][:2]
        rest = await client.list_page(queue="render", cursor=page.next_cursor)
        assert [j.id for j in rest.jobs] == render[:1]
        assert [j.id async for j in client.list(queue="email")] == [email]
        assert [j.id async for j in client.list(queue="default")] == [default]
        assert [j.id async for j in client.list(queue="nosuch")] == []
    async with httpx.AsyncClient(base_url=served.url) as http:
        for bad in ("a\x1b[31m", "", " x", "a,b", "q" * 101):
            response = await http.get("/api/v1/jobs", params={"queue": bad})
            assert response.status_code == 400, (bad, response.text)
            assert response.json()["error"]["field"] == "queue"
        twice = await http.get("/api/v1/jobs?queue=a&queue=b")
        assert twice.status_code == 400 and twice.json()["error"]["field"] == "queue"
    run = await cli("jobs", "list", "-q", "email", "--json")
    assert run.code == 0 and [j["id"] for j in run.json()["jobs"]] == [email]
    run = await cli("jobs", "list", "--queue", "render")
    assert run.code == 0 and all(i in run.out for i in render) and email not in run.out


async def test_the_command_line(cli: Any) -> None:
    run = await cli("queues", "list")
    assert run.code == 0 and run.out.strip() == "No queues hold pending jobs or settings."
    run = await cli("queues", "pause", "render")
    assert run.code == 0, run.err
    assert run.out.strip() == "Queue render: paused, rate limit -, 0 pending"
    run = await cli("queues", "limit", "render", "10", "--per", "1s")
    assert run.out.strip() == "Queue render: paused, rate limit 10 per 1s, 0 pending"
    run = await cli("queues", "list")
    header, row = [line.split() for line in run.out.strip().splitlines()]
    assert header == ["QUEUE", "PENDING", "STATE", "RATE", "LIMIT", "NODES"]
    assert row == ["render", "0", "paused", "10", "per", "1s", "q-node"]
    run = await cli("queues", "resume", "render", "--json")
    assert run.code == 0 and '"paused": false' in run.out
    run = await cli("queues", "limit", "render", "--clear")
    assert run.out.strip() == "Queue render: running, rate limit -, 0 pending"
    run = await cli("queues", "list")
    assert run.out.strip() == "No queues hold pending jobs or settings."


@pytest.mark.parametrize(
    ("args", "message", "code"),
    [
        (["limit", "render"], "give JOBS and --per", 2),
        (["limit", "render", "10"], "--per is missing", 2),
        (["limit", "render", "--per", "1s"], "JOBS is missing", 2),
        (["limit", "render", "1", "--per", "0"], "per must be a duration", 1),
        (["limit", "render", "1", "--per", "-1s"], "is not a duration", 2),
        (["limit", "render", "10", "--per", "1s", "--clear"], "--clear takes no", 2),
        (["limit", "render", "0", "--per", "1s"], "not in the range", 2),
        (["limit", "render", "1", "--per", "soon"], "is not a duration", 2),
        (["pause"], "Missing argument 'NAME'", 2),
        (["pause", "a:b"], "separator", 1),
    ],
)
async def test_bad_commands_exit_2_or_1_with_one_line(
    cli: Any, args: list[str], message: str, code: int
) -> None:
    run = await cli("queues", *args)
    assert run.code == code, run.err
    assert message in run.err and "Traceback" not in run.err
    if code == 1:
        assert one_line(run.err).endswith(("(HTTP 400, invalid_queue)", "(HTTP 422, invalid)"))


async def test_jobtrio_stats_names_what_no_worker_can_take(cli: Any, served: Served) -> None:
    await served.node.submit({"type": "resize", "queue": "img"})
    run = await cli("stats")
    assert run.code == 0, run.err
    assert run.out.strip().splitlines()[-1] == "1 pending in img: no worker for type resize"


async def test_a_job_nobody_can_run_is_listed_as_unserved(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        job = await client.submit("resize", queue="img")
        listed = await client.queues()
        stats = await client.stats()
        with pytest.raises(NotFound):
            await client.get("0" * 26)
    expected = {"queue": "img", "type": "resize", "pending": 1}
    assert listed["unserved"] == [{**expected, "reason": "no worker for type resize"}]
    assert stats["unserved"] == listed["unserved"]
    assert job.status == JobStatus.PENDING
