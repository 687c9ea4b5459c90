"""The ``jobtrio`` command line against a node served over real HTTP.

``main()`` runs in a worker thread (as the blocking CLI would in its own
process) while the node and hypercorn run in the test's trio loop; stdout
and stderr are captured. The exit code contract is checked for every
command: 0 success, 1 failure in one line, 2 usage error. The same CLI runs
as real subprocesses in ``test_e2e_server.py``.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
import trio

from jobtrio.api.auth import Role
from jobtrio.api.errors import Unauthorized
from jobtrio.cli import AT, main
from jobtrio.client import Client
from tests.servers import free_port
from tests.test_api import make_node
from tests.test_client import Served, serve_node, served  # noqa: F401 - the fixture
from tests.waiting import wait_until


class Run:
    def __init__(self, code: int, out: str, err: str) -> None:
        self.code = code
        self.out = out
        self.err = err

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], served: Served) -> Any:  # noqa: F811
    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await trio.to_thread.run_sync(main, [*args, "--url", served.url])
        captured = capsys.readouterr()
        return Run(code, captured.out, captured.err)

    return run


async def run_plain(capsys: pytest.CaptureFixture[str], *args: str) -> Run:
    capsys.readouterr()
    code = await trio.to_thread.run_sync(main, list(args))
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


# --------------------------------------------------------------------------
# submit


async def test_submit_prints_the_job(cli: Any) -> None:
    run = await cli("submit", "echo", "--payload", '{"n": 1}', "--priority", "8", "--json")
    assert run.code == 0, run.err
    job = run.json()
    assert job["type"] == "echo" and job["priority"] == 8 and job["payload"] == {"n": 1}
    run = await cli("submit", "noop")
    assert run.code == 0
    assert run.out.startswith("Submitted ") and "noop, priority 5" in run.out


async def test_submit_wait_exits_0_when_completed_and_1_when_failed(cli: Any) -> None:
    run = await cli("submit", "echo", "-p", '{"x": "y"}', "--wait", "--json")
    assert run.code == 0, run.err
    assert run.json()["status"] == "completed"
    assert run.json()["result"] == {"x": "y"}
    run = await cli("submit", "fail", "--max-retries", "0", "--wait")
    assert run.code == 1
    assert "failed" in run.out and "this job always fails" in run.out
    run = await cli("submit", "echo", "--wait")
    assert run.code == 0
    assert "completed" in run.out and "OUTCOME" in run.out  # the attempts table


async def test_submit_wait_timeout_exits_1_naming_the_job(cli: Any) -> None:
    run = await cli("submit", "sleep", "-p", '{"seconds": 30}', "--wait", "--wait-timeout", "300ms")
    assert run.code == 1
    line = one_line(run.err.split("\n", 1)[1] if run.err.startswith("Submitted") else run.err)
    assert "did not finish within 0.3s" in line


async def test_submit_payload_from_a_file_and_stdin(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "payload.json"
    path.write_text('{"from": "file"}')
    run = await cli("submit", "echo", "--payload", f"@{path}", "--json")
    assert run.json()["payload"] == {"from": "file"}
    monkeypatch.setattr("sys.stdin", io.StringIO('{"from": "stdin"}'))
    run = await cli("submit", "echo", "--payload", "@-", "--json")
    assert run.json()["payload"] == {"from": "stdin"}


async def test_submit_later_with_delay_or_at(cli: Any) -> None:
    run = await cli("submit", "noop", "--delay", "1h", "--json")
    job = run.json()
    assert job["status"] == "scheduled"
    at = "2099-01-01T12:00:00Z"
    run = await cli("submit", "noop", "--at", at, "--timeout", "2m", "--max-retries", "0", "--json")
    job = run.json()
    assert job["scheduled_at"] == "2099-01-01T12:00:00.000000Z"
    assert job["timeout"] == 120.0 and job["max_retries"] == 0
    run = await cli("submit", "noop", "--delay", "1h")
    assert "scheduled, runs in 1h" in run.out or "scheduled, runs in 59m" in run.out


async def test_submit_count_goes_through_batches_and_waits(cli: Any) -> None:
    run = await cli("submit", "echo", "--count", "1500", "--wait", "--json")
    assert run.code == 0, run.err
    data = run.json()
    assert data["count"] == 1500 and len(set(data["ids"])) == 1500
    assert data["statuses"] == {"completed": 1500}
    run = await cli("submit", "noop", "-n", "3")
    assert run.code == 0 and run.out.startswith("Submitted 3 noop jobs")


async def test_submit_idempotency_key(cli: Any) -> None:
    first = (await cli("submit", "noop", "--idempotency-key", "k1", "--json")).json()
    second = (await cli("submit", "noop", "--idempotency-key", "k1", "--json")).json()
    assert first["id"] == second["id"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["submit", "noop", "--priority", "11"], "11 is not in the range"),
        (["submit", "noop", "--delay", "soon"], "'soon' is not a duration"),
        (["submit", "noop", "--at", "noon-ish"], "is not a time"),
        (["submit", "noop", "--delay", "1s", "--at", "12:00"], "--delay or --at, not both"),
        (["submit", "noop", "--payload", "[1]"], "must be a JSON object"),
        (["submit", "noop", "--payload", "{bad"], "is not JSON"),
        (["submit", "noop", "--payload", "@/no/such/file"], "cannot read"),
        (["submit", "noop", "-n", "2", "--idempotency-key", "k"], "one job"),
        (["submit", "noop", "--wait-timeout", "1s"], "--wait-timeout needs --wait"),
        (["submit"], "Missing argument 'TYPE'"),
        (["jobs", "list", "--status", "bogus"], "'bogus' is not a status"),
        (["jobs", "list", "--limit", "0"], "0 is not in the range"),
        (["jobs", "frobnicate"], "No such command"),
        # an empty id or name was the node's 404/405 for another route, exit 1
        (["jobs", "retry", ""], "'JOB_ID': must not be empty"),
        (["jobs", "get", " "], "'JOB_ID': must not be empty"),
        (["jobs", "cancel", ""], "'JOB_ID': must not be empty"),
        (["workflows", "show", ""], "'WORKFLOW_ID': must not be empty"),
        (["workflows", "cancel", ""], "'WORKFLOW_ID': must not be empty"),
        (["queues", "pause", ""], "'NAME': must not be empty"),
        (["queues", "resume", ""], "'NAME': must not be empty"),
        (["schedules", "delete", ""], "'NAME': must not be empty"),
    ],
)
async def test_usage_errors_exit_2(cli: Any, args: list[str], message: str) -> None:
    run = await cli(*args)
    assert run.code == 2, run.err
    assert message in run.err
    assert "Traceback" not in run.err


# --------------------------------------------------------------------------
# jobs


async def test_jobs_list(cli: Any, served: Served) -> None:  # noqa: F811
    ids = [(await cli("submit", "echo", "--json")).json()["id"] for _ in range(3)]

    async def listed() -> bool:
        run = await cli("jobs", "list", "--status", "completed", "--json")
        return run.json()["count"] == 3

    await wait_until(listed, message="3 completed jobs listed")
    run = await cli("jobs", "list", "--json", "--limit", "2")
    data = run.json()
    assert set(data) == {"jobs", "next_cursor", "count"}
    assert [j["id"] for j in data["jobs"]] == ids[::-1][:2]
    run = await cli("jobs", "list", "--json", "--cursor", data["next_cursor"])
    assert [j["id"] for j in run.json()["jobs"]] == ids[:1]
    run = await cli("jobs", "list", "--all", "--json", "-t", "echo")
    assert run.json()["count"] == 3
    run = await cli("jobs", "list", "--limit", "2")
    assert run.code == 0
    assert "ID" in run.out and "STATUS" in run.out and ids[-1] in run.out
    assert "QUEUE" not in run.out  # every job in default: no column for it
    assert "--cursor" in run.err
    run = await cli("jobs", "list", "-s", "failed,cancelled")
    assert run.code == 0 and "No jobs." in run.err
    queued = (await cli("submit", "echo", "-q", "render", "--wait", "--json")).json()["id"]
    run = await cli("jobs", "list", "--limit", "2")
    assert "QUEUE" in run.out and queued in run.out and ids[-1] in run.out  # ids never cut
    assert "render" in run.out and "default" in run.out
    after = (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)).isoformat()
    run = await cli("jobs", "list", "--created-after", after, "--json")
    assert run.json()["count"] == 0


async def test_jobs_get(cli: Any) -> None:
    job = (await cli("submit", "echo", "-p", '{"k": 1}', "--wait", "--json")).json()
    run = await cli("jobs", "get", job["id"], "--json")
    assert run.json()["id"] == job["id"]
    run = await cli("jobs", "get", job["id"])
    assert run.code == 0
    assert job["id"] in run.out and "completed" in run.out and '{"k": 1}' in run.out
    assert "OUTCOME" in run.out


async def test_jobs_get_unknown_exits_1_with_one_line(cli: Any) -> None:
    run = await cli("jobs", "get", "01J9Z6N5G4X8W3QH2K7R1M0P9T")
    assert run.code == 1
    assert one_line(run.err) == (
        "jobtrio: no job with id '01J9Z6N5G4X8W3QH2K7R1M0P9T' (HTTP 404, not_found)"
    )
    assert run.out == ""


async def test_jobs_cancel_retry_and_purge(cli: Any) -> None:
    job = (await cli("submit", "noop", "--delay", "1h", "--json")).json()
    run = await cli("jobs", "cancel", job["id"])
    assert run.code == 0 and "cancelled" in run.out
    run = await cli("jobs", "retry", job["id"], "--json")
    assert run.code == 0 and run.json()["retry_count"] == 0
    run = await cli("jobs", "watch", job["id"], "--interval", "50ms")
    assert run.code == 0 and "completed" in run.out
    run = await cli("jobs", "retry", job["id"])
    assert run.code == 1
    assert "only failed or cancelled jobs can be retried (HTTP 409, not_retryable)" in one_line(
        run.err
    )
    run = await cli("jobs", "cancel", job["id"])
    assert run.code == 1 and "(HTTP 409, job_finished)" in one_line(run.err)
    run = await cli("jobs", "cancel", job["id"], "--purge", "--json")
    assert run.code == 0 and run.json() == {"id": job["id"], "deleted": True}
    run = await cli("jobs", "get", job["id"])
    assert run.code == 1


async def test_jobs_watch_one_job(cli: Any) -> None:
    job = (await cli("submit", "sleep", "-p", '{"seconds": 0.3}', "--json")).json()
    run = await cli("jobs", "watch", job["id"], "--interval", "50ms", "--json")
    assert run.code == 0
    states = [json.loads(line)["status"] for line in run.out.splitlines()]
    assert states[-1] == "completed"
    assert len(states) == len(set(states))
    failing = (await cli("submit", "fail", "--max-retries", "0", "--json")).json()
    run = await cli("jobs", "watch", failing["id"], "--interval", "50ms")
    assert run.code == 1
    assert "failed" in run.out.splitlines()[-1]
    sleeper = (await cli("submit", "sleep", "-p", '{"seconds": 30}', "--json")).json()
    run = await cli("jobs", "watch", sleeper["id"], "--interval", "50ms", "--timeout", "300ms")
    assert run.code == 1
    assert f"job {sleeper['id']} is still" in one_line(run.err)


async def test_jobs_watch_follows_the_list(cli: Any, served: Served) -> None:  # noqa: F811
    with Client(served.url) as client:
        await trio.to_thread.run_sync(lambda: client.submit("noop", delay=3600))

    async def later_submit() -> None:
        await trio.sleep(0.3)
        with Client(served.url) as client:
            await trio.to_thread.run_sync(lambda: client.submit("echo", {"late": True}))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(later_submit)
        run = await cli("jobs", "watch", "--interval", "100ms", "--timeout", "1.5s", "--json")
    assert run.code == 0
    events = [json.loads(line) for line in run.out.splitlines()]
    assert events[0]["type"] == "noop" and events[0]["status"] == "scheduled"
    late = [e for e in events if e["type"] == "echo"]
    assert late and late[-1]["status"] == "completed"


# --------------------------------------------------------------------------
# cluster and stats


async def test_cluster_status(cli: Any) -> None:
    run = await cli("cluster", "status")
    assert run.code == 0
    assert "api-node" in run.out and "leader" in run.out and "bully" in run.out
    assert "memory: up" in run.out
    run = await cli("cluster", "status", "--json")
    data = run.json()
    assert data["leader"] == "api-node" and data["health"]["status"] == "ok"


async def test_stats(cli: Any) -> None:
    await cli("submit", "echo", "--wait")
    run = await cli("stats")
    assert run.code == 0
    assert "completed" in run.out and "workers" in run.out and "3 idle of 3" in run.out
    run = await cli("stats", "--json")
    assert run.json()["node_id"] == "api-node"


# --------------------------------------------------------------------------
# reaching a node


async def test_an_unreachable_node_is_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["stats"], ["jobs", "list"], ["submit", "noop"], ["cluster", "status"]):
        run = await run_plain(capsys, *args, "--url", url)
        assert run.code == 1
        line = one_line(run.err)
        assert line.startswith(f"jobtrio: cannot reach {url}")
        assert "JOBTRIO_URL" in line


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://node:8080", "a node speaks http:// or https://, not ftp://"),
        ("http://[::1", "is not a URL"),
        ("http://127.0.0.1:99999", "the port must be from 1 to 65535"),
        ("http://", "names no host"),
        ("not a node", "is not a host name"),
    ],
)
async def test_a_url_that_names_no_node_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, url: str, message: str
) -> None:
    # said as the flag's error, not as a failed connection or an "unexpected error"
    run = await run_plain(capsys, "jobs", "list", "--url", url)
    assert run.code == 2 and message in run.err and "Traceback" not in run.err, run.err
    monkeypatch.setenv("JOBTRIO_URL", url)
    run = await run_plain(capsys, "stats")
    assert run.code == 2 and message in run.err, run.err
    with pytest.raises(ValueError, match=re.escape(message)):
        Client(url)


async def test_url_and_token_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def authorizer(request: Any, role: Role) -> None:
        if request.headers.get("Authorization") != "Bearer t0ken":
            raise Unauthorized("a valid token is required")

    node = make_node()
    async with trio.open_nursery() as nursery:
        url = await serve_node(nursery, node, authorizer=authorizer)
        monkeypatch.setenv("JOBTRIO_URL", url)
        run = await run_plain(capsys, "stats")
        assert run.code == 1
        assert one_line(run.err) == "jobtrio: a valid token is required (HTTP 401, unauthorized)"
        monkeypatch.setenv("JOBTRIO_TOKEN", "t0ken")
        run = await run_plain(capsys, "stats", "--json")
        assert run.code == 0 and json.loads(run.out)["node_id"] == "api-node"
        node.request_stop()
        await node.stopped.wait()
        nursery.cancel_scope.cancel()


async def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    run = await run_plain(capsys, "--help")
    assert run.code == 0 and "submit" in run.out and "serve" in run.out
    run = await run_plain(capsys, "--version")
    assert run.code == 0 and "jobtrio" in run.out
    run = await run_plain(capsys)
    assert run.code == 2


def test_at_accepts_a_time_of_day_as_its_next_occurrence() -> None:
    now = dt.datetime.now().astimezone()
    at = AT.convert("00:00", None, None)
    assert now < at <= now + dt.timedelta(days=1)
    assert at.hour == 0 and at.minute == 0
    utc = AT.convert("2030-05-01T10:00:00Z", None, None)
    assert utc == dt.datetime(2030, 5, 1, 10, tzinfo=dt.UTC)


async def test_bench_passes_its_arguments_through(capsys: pytest.CaptureFixture[str]) -> None:
    run = await run_plain(capsys, "bench", "--help")
    assert run.code == 0 and "--backend" in run.out
    run = await run_plain(capsys, "bench", "--backend", "paxos")
    assert run.code == 2 and "invalid choice" in run.err
    # nothing to measure is a usage error naming the flag, not an IndexError
    for flag, value in (("--latency-samples", "0"), ("--runs", "-1"), ("--jobs", "x")):
        run = await run_plain(capsys, "bench", flag, value)
        assert run.code == 2 and f"argument {flag}:" in run.err, run.err
    run = await run_plain(
        capsys,
        "bench",
        "--backend",
        "memory",
        "--jobs",
        "200",
        "--runs",
        "1",
        "--latency-samples",
        "5",
        "--json",
    )
    assert run.code == 0 and json.loads(run.out)["backend"] == "memory"


async def test_a_bug_is_one_line_unless_debugging(
    cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Client) -> dict[str, Any]:
        raise KeyError("queue")

    monkeypatch.setattr(Client, "stats", broken)
    run = await cli("stats")
    assert run.code == 1
    assert one_line(run.err) == (
        "jobtrio: unexpected error: KeyError: 'queue' (JOBTRIO_DEBUG=1 shows the traceback)"
    )
