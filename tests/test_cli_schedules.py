"""``jobtrio schedules`` against a node served over real HTTP.

Same harness as ``test_cli.py``: ``main()`` runs in a worker thread while
the node (with one schedule defined in code) and hypercorn run in the
test's trio loop. The exit-code contract is checked for every subcommand:
0 success, 1 a refusal or an unreachable node in one line, 2 a usage error.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import trio

from jobtrio.cli import main
from tests.servers import free_port
from tests.test_cli import Run, one_line, run_plain
from tests.test_client import Served, serve_node
from tests.test_client_schedules import CODE_SCHEDULE, make_node


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


async def test_add_list_and_delete(cli: Any, served: Served) -> None:
    run = await cli("schedules", "add", "heartbeat", "--every", "30s", "--type", "noop")
    assert run.code == 0, run.err
    assert run.out.startswith("Saved schedule heartbeat (every 30s, job noop); next tick: ")
    run = await cli("schedules", "list")
    assert run.code == 0
    header, *rows = [line.rstrip() for line in run.out.strip().splitlines()]
    assert header.split() == ["NAME", "WHEN", "JOB", "NEXT", "TICK", "SOURCE"]
    assert rows[0].startswith("heartbeat") and "every 30s" in rows[0] and rows[0].endswith("api")
    assert rows[1].startswith(CODE_SCHEDULE) and "cron 0 6 * * *" in rows[1]
    assert rows[1].endswith("code")
    run = await cli("schedules", "delete", "heartbeat")
    assert run.code == 0 and run.out.strip() == "Deleted schedule heartbeat."
    assert [s["name"] for s in await served.node.list_schedules()] == [CODE_SCHEDULE]


async def test_json_output_is_the_apis_shapes(cli: Any, tmp_path: Path) -> None:
    payload = tmp_path / "payload.json"
    payload.write_text('{"to": "ops@example.com"}')
    run = await cli(
        "schedules",
        "add",
        "report",
        "--cron",
        "0 6 * * *",
        "-t",
        "email",
        "--payload",
        f"@{payload}",
        "--priority",
        "8",
        "--max-retries",
        "2",
        "--timeout",
        "1m",
        "--misfire-grace",
        "5m",
        "--disabled",
        "--json",
    )
    assert run.code == 0, run.err
    saved = run.json()
    assert saved == {
        "name": "report",
        "cron": "0 6 * * *",
        "every": None,
        "job": {
            "type": "email",
            "payload": {"to": "ops@example.com"},
            "priority": 8,
            "max_retries": 2,
            "timeout": 60.0,
        },
        "enabled": False,
        "misfire_grace": 300.0,
        "source": "api",
        "next_tick": saved["next_tick"],
    }
    run = await cli("schedules", "list", "--json")
    listed = run.json()
    assert listed["count"] == 2
    assert [s["name"] for s in listed["schedules"]] == [CODE_SCHEDULE, "report"]
    assert listed["schedules"][1] == saved
    run = await cli("schedules", "list")
    assert "disabled" in run.out and "email (priority 8)" in run.out
    run = await cli("schedules", "delete", "report", "--json")
    assert run.code == 0 and run.json() == {"name": "report", "deleted": True}


async def test_refusals_exit_1_with_one_line(cli: Any) -> None:
    run = await cli("schedules", "delete", "nope")
    assert run.code == 1
    assert one_line(run.err) == "jobtrio: no schedule named 'nope' (HTTP 404, not_found)"
    run = await cli("schedules", "delete", CODE_SCHEDULE)
    assert run.code == 1
    line = one_line(run.err)
    assert "defined in code" in line and line.endswith("(HTTP 409, conflict)")
    run = await cli("schedules", "add", CODE_SCHEDULE, "--every", "1m", "--type", "noop")
    assert run.code == 1 and one_line(run.err).endswith("(HTTP 409, conflict)")
    run = await cli("schedules", "add", "x", "--cron", "every day", "--type", "noop")
    assert run.code == 1
    line = one_line(run.err)
    assert "is not a cron expression" in line and line.endswith("(HTTP 422, invalid)")
    run = await cli("schedules", "add", "bad name", "--every", "1m", "--type", "noop")
    assert run.code == 1 and one_line(run.err).endswith("(HTTP 422, invalid_type)")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "--type", "noop"], "exactly one of --cron or --every"),
        (["add", "x", "--cron", "* * * * *", "--every", "1m", "-t", "noop"], "exactly one"),
        (["add", "x", "--every", "1m"], "Missing option '--type'"),
        (["add", "x", "--every", "soon", "-t", "noop"], "'soon' is not a duration"),
        (["add", "x", "--every", "1m", "-t", "noop", "--priority", "11"], "not in the range"),
        (["add", "x", "--every", "1m", "-t", "noop", "--payload", "{bad"], "is not JSON"),
        (["add", "x", "--every", "1m", "-t", "noop", "--payload", "[1]"], "a JSON object"),
        (["add", "--every", "1m", "-t", "noop"], "Missing argument 'NAME'"),
        (["delete"], "Missing argument 'NAME'"),
        (["rename", "x"], "No such command"),
    ],
)
async def test_usage_errors_exit_2(cli: Any, args: list[str], message: str) -> None:
    run = await cli("schedules", *args)
    assert run.code == 2, run.err
    assert message in run.err
    assert "Traceback" not in run.err


async def test_an_unreachable_node_is_exit_1_with_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    for args in (["list"], ["add", "x", "--every", "1m", "-t", "noop"], ["delete", "x"]):
        run = await run_plain(capsys, "schedules", *args, "--url", url)
        assert run.code == 1
        line = one_line(run.err)
        assert line.startswith(f"jobtrio: cannot reach {url}")


async def test_url_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, served: Served
) -> None:
    monkeypatch.setenv("JOBTRIO_URL", served.url)
    run = await run_plain(capsys, "schedules", "list", "--json")
    assert run.code == 0 and run.json()["count"] == 1


async def test_python_m_jobtrio_cli_knows_the_schedules_group() -> None:
    result = await trio.run_process(
        [sys.executable, "-m", "jobtrio.cli", "schedules", "--help"], capture_stdout=True
    )
    assert b"add" in result.stdout and b"delete" in result.stdout


async def test_help_lists_the_group(capsys: pytest.CaptureFixture[str]) -> None:
    run = await run_plain(capsys, "--help")
    assert run.code == 0 and "schedules" in run.out
