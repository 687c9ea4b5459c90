"""The Python clients against a node served over real HTTP.

The node (memory backends) and hypercorn run in the test's trio loop; the
blocking ``Client`` runs in a worker thread, as it would in a script, and
``AsyncClient`` in the loop itself. Every exception of the family is
provoked for real, not mocked, except the answers no jobtrio node gives
(a non-JSON 502 from a proxy), which use httpx's MockTransport.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar

import httpx
import pytest
import trio
from hypercorn.trio import serve as hypercorn_serve

from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.api.auth import Role
from jobtrio.api.errors import Unauthorized
from jobtrio.client import (
    AsyncClient,
    AuthenticationFailed,
    Client,
    Conflict,
    ConnectionFailed,
    InvalidJob,
    InvalidRequest,
    JobtrioError,
    NotFound,
    ServerError,
    Unavailable,
    WaitTimeout,
    job_submission,
)
from jobtrio.jobs import JobStatus
from jobtrio.server import hypercorn_config
from tests.servers import free_port
from tests.test_api import FlakyBroker, make_node
from tests.waiting import wait_until_sync

T = TypeVar("T")


class Served:
    def __init__(self, node: Node, url: str) -> None:
        self.node = node
        self.url = url


async def serve_node(nursery: trio.Nursery, node: Node, **app_kwargs: Any) -> str:
    port = free_port()
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    await nursery.start(node.run)
    await nursery.start(functools.partial(hypercorn_serve, create_app(node, **app_kwargs), config))
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node)
        yield Served(node, url)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await trio.to_thread.run_sync(functools.partial(fn, *args, **kwargs))


def later(seconds: float = 3600) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


# --------------------------------------------------------------------------
# the blocking client


async def test_submit_wait_and_get_return_typed_jobs(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            job = client.submit("echo", {"to": "user@example.com"}, priority=9, max_retries=1)
            assert job.status == JobStatus.PENDING
            assert job.priority == 9
            assert job.max_retries == 1
            done = client.wait(job.id, timeout=10)
            assert done.status is JobStatus.COMPLETED
            assert done.terminal
            assert done.result == {"to": "user@example.com"}
            assert done.created_at <= done.completed_at  # type: ignore[operator]
            assert client.get(job.id).version == done.version

    await in_thread(scenario)


async def test_delay_cancel_retry_and_purge(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            job = client.submit("noop", delay=dt.timedelta(hours=1), timeout=30)
            assert job.status == JobStatus.SCHEDULED
            assert job.scheduled_at is not None and job.timeout == 30.0
            assert client.cancel(job.id).status == JobStatus.CANCELLED
            again = client.retry(job.id)
            assert again.status in (JobStatus.PENDING, JobStatus.RUNNING, JobStatus.COMPLETED)
            assert client.wait(job.id, timeout=10).status == JobStatus.COMPLETED
            client.purge(job.id)
            with pytest.raises(NotFound):
                client.get(job.id)

    await in_thread(scenario)


async def test_an_id_is_sent_as_one_path_segment_whatever_it_holds(served: Served) -> None:
    """An id from a file or a shell cannot reach another route: unquoted, ``../jobs/X``
    cancelled job X (the URL's dot segments resolve), and a control character was an
    ``InvalidURL`` crash instead of the node's 404."""

    def scenario() -> None:
        with Client(served.url) as client:
            job = client.submit("noop", delay=dt.timedelta(hours=1))
            for hostile in (f"../jobs/{job.id}", f"./{job.id}", f"..%2Fjobs%2F{job.id}"):
                with pytest.raises(NotFound):
                    client.cancel(hostile)
                with pytest.raises(NotFound):
                    client.retry(hostile)
            assert client.get(job.id).status == JobStatus.SCHEDULED
            for hostile in ("..", ".", "\x1b[31m", "a?b#c", "\x00"):
                with pytest.raises(NotFound):
                    client.get(hostile)
                with pytest.raises(NotFound):
                    client.get_workflow(hostile)
                with pytest.raises(NotFound):
                    client.cancel_workflow(hostile)

    await in_thread(scenario)


async def test_submit_many_and_wait_many_with_progress(served: Served) -> None:
    def scenario(n: int) -> None:
        progress: list[tuple[int, int]] = []
        with Client(served.url) as client:
            jobs = client.submit_many(
                [job_submission("echo", {"i": i}, priority=1 + i % 10) for i in range(n)]
            )
            assert [j.payload["i"] for j in jobs] == list(range(n))
            done = client.wait_many(
                jobs, timeout=20, on_progress=lambda d, t: progress.append((d, t))
            )
        assert [j.id for j in done] == [j.id for j in jobs]
        assert all(j.status == JobStatus.COMPLETED for j in done)
        assert progress[-1] == (n, n)
        assert all(t == n for _, t in progress)

    await in_thread(scenario, 5)  # a GET per job
    await in_thread(scenario, 300)  # listings of finished jobs


async def test_list_fetches_pages_lazily(served: Served) -> None:
    requests: list[httpx.Request] = []

    def scenario() -> None:
        with Client(served.url) as client:
            ids = [j.id for j in client.submit_many([{"type": "noop"}] * 7)]
            client.wait_many(ids, timeout=10)

            # the list reads the store, which the recorder fills a moment later
            wait_until_sync(
                lambda: len(list(client.list(status="completed"))) == 7,
                message="7 completed jobs listed",
            )
            client._http.event_hooks["request"].append(requests.append)
            jobs = client.list(page_size=3)
            first = next(jobs)
            assert first.id == ids[-1]
            assert len(requests) == 1
            rest = list(jobs)
            assert [j.id for j in [first, *rest]] == list(reversed(ids))
            assert len(requests) == 3
            assert [j.id for j in client.list(page_size=2, limit=3)] == list(reversed(ids))[:3]
            page = client.list_page(limit=5, status=["completed"], type="noop")
            assert len(page.jobs) == 5 and page.next_cursor == page.jobs[-1].id
            assert list(client.list(status="failed")) == []
            created = dt.datetime.fromtimestamp(first.created_at, dt.UTC)
            assert list(client.list(created_after=created + dt.timedelta(seconds=1))) == []

    await in_thread(scenario)


async def test_views(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            assert client.health()["status"] == "ok"
            assert client.ready()["ready"] is True
            assert client.stats()["node_id"] == "api-node"
            assert len(client.workers()) == 3
            assert [n["node_id"] for n in client.nodes()] == ["api-node"]
            assert client.leader()["leader"] == "api-node"
            assert client.election()["algorithm"] == "bully"
            assert client.cluster()["size"] == 1

    await in_thread(scenario)


async def test_errors_carry_status_code_and_field(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            with pytest.raises(NotFound) as missing:
                client.get("01J9Z6N5G4X8W3QH2K7R1M0P9T")
            assert (missing.value.status, missing.value.code) == (404, "not_found")
            assert "01J9Z6N5G4X8W3QH2K7R1M0P9T" in str(missing.value)

            with pytest.raises(InvalidJob) as invalid:
                client.submit("noop", priority=11)
            assert (invalid.value.status, invalid.value.field) == (422, "priority")
            assert invalid.value.code == "out_of_range"

            with pytest.raises(InvalidJob) as batch:
                client.submit_many([{"type": "noop"}, {"type": "noop", "colour": "red"}])
            assert batch.value.code == "invalid_batch"
            assert batch.value.errors[0]["index"] == 1
            assert batch.value.errors[0]["field"] == "colour"

            job = client.wait(client.submit("noop").id, timeout=10)
            with pytest.raises(Conflict) as conflict:
                client.retry(job.id)
            assert conflict.value.code == "not_retryable"
            with pytest.raises(Conflict):
                client.cancel(job.id)

            with pytest.raises(InvalidRequest) as bad:
                client.list_page(limit=5000)
            assert (bad.value.status, bad.value.field) == (400, "limit")
            assert isinstance(bad.value, JobtrioError)

    await in_thread(scenario)


async def test_wait_timeout_names_the_job_and_is_a_timeout_error(served: Served) -> None:
    def scenario() -> None:
        with Client(served.url) as client:
            job = client.submit("sleep", {"seconds": 60})
            with pytest.raises(TimeoutError) as timed_out:
                client.wait(job.id, timeout=0.3)
            assert isinstance(timed_out.value, WaitTimeout)
            assert job.id in str(timed_out.value)
            assert timed_out.value.job is not None
            with pytest.raises(WaitTimeout) as many:
                client.wait_many([job], timeout=0.2)
            assert "1 of 1 jobs" in str(many.value) and job.id in str(many.value)
            client.cancel(job.id)

    await in_thread(scenario)


async def test_unavailable_when_the_queue_is_down(served: Served) -> None:
    broker = served.node.broker
    assert isinstance(broker, FlakyBroker)
    broker.down = True

    def scenario() -> None:
        with Client(served.url) as client:
            with pytest.raises(Unavailable) as down:
                client.submit("noop")
            assert down.value.status == 503
            ready = client.ready()
            assert ready["ready"] is False and ready["error"]["field"] == "broker"

    await in_thread(scenario)


async def test_connection_failed_is_one_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    def scenario() -> None:
        with Client(url, timeout=2) as client:
            with pytest.raises(ConnectionFailed) as failed:
                client.stats()
        assert failed.value.status is None
        assert str(failed.value).startswith(f"cannot reach {url}")

    await in_thread(scenario)


async def test_a_non_json_answer_is_a_jobtrio_error() -> None:
    def gateway(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad Gateway</html>")

    def scenario() -> None:
        with Client("http://proxy", transport=httpx.MockTransport(gateway)) as client:
            with pytest.raises(ServerError) as error:
                client.stats()
        assert error.value.status == 502
        assert "502" in str(error.value)

    await in_thread(scenario)


async def test_url_and_token_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"node_id": "n"})

    monkeypatch.setenv("JOBTRIO_URL", "node-7:9000")
    monkeypatch.setenv("JOBTRIO_TOKEN", "s3cret")
    with Client(transport=httpx.MockTransport(record)) as client:
        assert client.url == "http://node-7:9000"
        client.stats()
    assert seen[0].url == "http://node-7:9000/api/v1/stats"
    assert seen[0].headers["Authorization"] == "Bearer s3cret"
    assert seen[0].headers["User-Agent"].startswith("jobtrio-python")


def test_job_submission_builds_the_wire_shape() -> None:
    at = dt.datetime(2024, 1, 1, 12, 0)
    assert job_submission("email", {"a": 1}, priority=10, scheduled_at=at) == {
        "type": "email",
        "payload": {"a": 1},
        "priority": 10,
        "scheduled_at": "2024-01-01T12:00:00Z",
    }
    assert job_submission("noop", timeout=dt.timedelta(minutes=1)) == {
        "type": "noop",
        "timeout": 60.0,
    }
    with pytest.raises(ValueError, match="not both"):
        job_submission("noop", delay=1, scheduled_at=at)


async def test_the_token_reaches_the_authorizer() -> None:
    async def authorizer(request: Any, role: Role) -> None:
        if request.headers.get("Authorization") != "Bearer good":
            raise Unauthorized("bad token")

    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node, authorizer=authorizer)

        def scenario() -> None:
            with Client(url, token="bad") as client:
                with pytest.raises(AuthenticationFailed) as refused:
                    client.stats()
                assert refused.value.status == 401
            with Client(url, token="good") as client:
                assert client.stats()["node_id"] == "api-node"

        await in_thread(scenario)
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


# --------------------------------------------------------------------------
# the async client, under trio


async def test_async_client_end_to_end(served: Served) -> None:
    async with AsyncClient(served.url) as client:
        job = await client.submit("echo", {"n": 1})
        done = await client.wait(job.id, timeout=10)
        assert done.status == JobStatus.COMPLETED and done.result == {"n": 1}
        jobs = await client.submit_many([{"type": "noop"}] * 30)
        finished = await client.wait_many(jobs, timeout=20)
        assert {j.status for j in finished} == {JobStatus.COMPLETED}
        listed = [j async for j in client.list(page_size=7, limit=10)]
        assert len(listed) == 10
        waiting = await client.submit("noop", scheduled_at=later())
        assert (await client.cancel(waiting.id)).status == JobStatus.CANCELLED
        assert (await client.retry(waiting.id)).retry_count == 0
        await client.purge(waiting.id)
        with pytest.raises(NotFound):
            await client.get(waiting.id)
        sleeper = await client.submit("sleep", {"seconds": 60})
        with pytest.raises(WaitTimeout):
            await client.wait(sleeper.id, timeout=0.2)
        await client.cancel(sleeper.id)
        assert (await client.health())["status"] == "ok"
        assert (await client.ready())["ready"] is True
        assert (await client.stats())["node_id"] == "api-node"
        assert (await client.cluster())["leader"] == "api-node"
        assert len(await client.workers()) == 3
        assert len(await client.nodes()) == 1
        assert (await client.leader())["is_self"] is True
        assert (await client.election())["term"] >= 1


async def test_async_client_connection_failed() -> None:
    async with AsyncClient(f"http://127.0.0.1:{free_port()}", timeout=2) as client:
        with pytest.raises(ConnectionFailed):
            await client.stats()


def test_submit_many_sends_any_mapping_and_dicts_as_they_are() -> None:
    """A batch's dicts go into the body as they are (no copy of 1,000 dicts a call);
    another mapping, which the JSON encoder cannot write, is copied into a dict."""
    import json
    import types

    from jobtrio.client.calls import Calls

    plain = {"type": "noop", "payload": {"n": 1}}
    frozen = types.MappingProxyType({"type": "noop", "priority": 9})
    call = Calls.submit_many(iter([plain, frozen]))
    assert call.json is not None
    assert call.json["jobs"][0] is plain
    assert json.loads(json.dumps(call.json)) == {"jobs": [plain, dict(frozen)]}
