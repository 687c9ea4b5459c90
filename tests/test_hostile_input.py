"""Hostile input that once gave a 500, stored a record that broke every later
read, crashed the leader's duties or wrote escape sequences to a terminal.

Each case must end with a clear 4xx naming the problem and nothing stored
(or, for what is already stored, be reported and skipped).
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import trio
from quart_trio import QuartTrio
from quart_trio.testing.connections import WebsocketResponseError

from jobtrio.actors.node import Node
from jobtrio.schedules import Schedule
from tests.test_api import app, node  # noqa: F401 - fixtures
from tests.test_cli import Run, cli  # noqa: F401 - fixture
from tests.test_client import Served, served  # noqa: F401 - fixture
from tests.waiting import wait_until


async def post(app: QuartTrio, path: str, body: Any) -> tuple[int, dict[str, Any]]:  # noqa: F811
    response = await app.test_client().post(path, json=body)
    return response.status_code, await response.get_json()


async def stored_jobs(app: QuartTrio) -> list[dict[str, Any]]:  # noqa: F811
    response = await app.test_client().get("/api/v1/jobs")
    assert response.status_code == 200
    return (await response.get_json())["jobs"]


async def assert_nothing_stored(app: QuartTrio) -> None:  # noqa: F811
    """Records are written in batches: submit a sentinel, wait for it to be listed,
    then it must be the only job (the refused ones never reached the Store)."""
    status, sentinel = await post(app, "/api/v1/jobs", {"type": "noop"})
    assert status == 201
    with trio.fail_after(10):
        while not (jobs := await stored_jobs(app)):
            await trio.sleep(0.01)
    assert [j["id"] for j in jobs] == [sentinel["id"]]


# --------------------------------------------------------------------------
# timestamps and durations


@pytest.mark.parametrize(
    "value, words",
    [
        (1796472527002, "milliseconds"),  # Unix ms: the usual client mistake
        (1e20, "out of range"),
        (-1e12, "out of range"),
        (10**400, "out of range"),
        ("0001-01-01T00:00:00Z", "out of range"),
        ("9999-12-31T23:59:59-05:00", "out of range"),
    ],
)
async def test_out_of_range_scheduled_at_is_422_and_nothing_is_stored(
    app: QuartTrio,  # noqa: F811
    value: Any,
    words: str,
) -> None:
    status, body = await post(app, "/api/v1/jobs", {"type": "noop", "scheduled_at": value})
    assert status == 422, body
    assert body["error"]["field"] == "scheduled_at"
    assert words in body["error"]["message"]
    assert len(body["error"]["message"]) < 300
    # the batch route validates before storing anything either
    status, body = await post(
        app,
        "/api/v1/jobs/batch",
        {"jobs": [{"type": "noop"}, {"type": "noop", "scheduled_at": value}]},
    )
    assert status == 422 and body["errors"][0]["index"] == 1
    await assert_nothing_stored(app)


async def test_milliseconds_hint_gives_the_seconds(app: QuartTrio) -> None:  # noqa: F811
    _, body = await post(app, "/api/v1/jobs", {"type": "noop", "scheduled_at": 1796472527002})
    assert "1796472527.002" in body["error"]["message"]


async def test_the_edges_of_the_range_are_accepted_and_readable(app: QuartTrio) -> None:  # noqa: F811
    for value in (0, 253402300799, "9999-12-31T23:59:59Z"):
        status, body = await post(app, "/api/v1/jobs", {"type": "noop", "scheduled_at": value})
        assert status == 201, body
    with trio.fail_after(10):
        while len(jobs := await stored_jobs(app)) < 3:
            await trio.sleep(0.01)
    for job in jobs:  # each record reads back, alone and in the list
        one = await app.test_client().get(f"/api/v1/jobs/{job['id']}")
        assert one.status_code == 200


async def test_an_absurd_timeout_is_422(app: QuartTrio) -> None:  # noqa: F811
    status, body = await post(app, "/api/v1/jobs", {"type": "noop", "timeout": 1e300})
    assert status == 422 and body["error"]["field"] == "timeout"
    await assert_nothing_stored(app)


@pytest.mark.parametrize("value", ["1e20", "-1e12", "1796472527002"])
async def test_out_of_range_list_filters_are_400(app: QuartTrio, value: str) -> None:  # noqa: F811
    response = await app.test_client().get(f"/api/v1/jobs?created_after={value}")
    assert response.status_code == 400
    body = await response.get_json()
    assert body["error"]["field"] == "created_after"


# --------------------------------------------------------------------------
# schedules that can never fire


@pytest.mark.parametrize(
    "spec, field",
    [
        ({"cron": "0 0 30 2 *"}, "cron"),  # February never has a 30th
        ({"cron": "0 0 31 4 *"}, "cron"),  # nor April a 31st
        ({"every": "99999999999h"}, "every"),
        ({"every": 1e300}, "every"),
        ({"every": "9" * 5000 + "h"}, "every"),
    ],
)
async def test_a_schedule_that_never_fires_is_refused(
    app: QuartTrio,  # noqa: F811
    spec: dict[str, Any],
    field: str,
) -> None:
    status, body = await post(
        app, "/api/v1/schedules", {"name": "never", "job": {"type": "noop"}, **spec}
    )
    assert status == 422, body
    assert body["error"]["field"] == field
    assert len(body["error"]["message"]) < 300
    listed = await app.test_client().get("/api/v1/schedules")
    assert listed.status_code == 200
    assert (await listed.get_json())["schedules"] == []


async def test_a_stored_schedule_that_cannot_be_evaluated_is_reported_and_skipped(
    app: QuartTrio,  # noqa: F811
    node: Node,  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    # as an older version (or a hand edit) left them in the Store
    await node.store.put_schedule(
        {"name": "feb30", "cron": "0 0 30 2 *", "every": None, "job": {"type": "noop"}}
    )
    await node.store.put_schedule(
        {"name": "eons", "cron": None, "every": 3.6e14, "job": {"type": "noop"}}
    )
    await node.store.put_schedule({"name": "garbled", "every": "soon", "job": 7})
    await node.store.put_schedule(
        {"name": "fine", "cron": None, "every": 1.0, "job": {"type": "noop"}}
    )
    with caplog.at_level(logging.ERROR, logger="jobtrio.schedules"):
        listed = await app.test_client().get("/api/v1/schedules")
        assert listed.status_code == 200
        items = {s["name"]: s for s in (await listed.get_json())["schedules"]}
        for name in ("feb30", "eons", "garbled"):
            assert items[name]["next_tick"] is None and items[name]["problem"], items[name]
            one = await app.test_client().get(f"/api/v1/schedules/{name}")
            assert one.status_code == 200
        assert items["fine"]["next_tick"] is not None and "problem" not in items["fine"]
        # the leader's duties keep running: the good schedule fires, the bad ones are skipped
        await wait_until(lambda: node.scheduler.fired >= 1, timeout=15)
    assert node.running
    reported = {r.getMessage() for r in caplog.records}
    assert any("feb30" in m and "skipped" in m for m in reported)
    ready = await app.test_client().get("/ready")
    assert ready.status_code == 200


def test_schedule_evaluation_never_raises() -> None:
    bad = Schedule(name="x", job={}, cron="0 0 30 2 *")
    assert bad.due(1_700_000_000.0, None) is None
    assert bad.next_tick(1_700_000_000.0) is None
    huge = Schedule(name="y", job={}, every=1e300)
    assert huge.next_tick(1_700_000_000.0) is None


# --------------------------------------------------------------------------
# websocket upgrades to routes without one


@pytest.mark.parametrize("path", ["/api/v1/jobs", "/health", "/no/such/route", "/"])
async def test_a_websocket_upgrade_to_a_route_without_one_is_a_clean_404(
    app: QuartTrio,  # noqa: F811
    path: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING):
        with pytest.raises(BaseExceptionGroup) as info:
            async with app.test_client().websocket(path) as ws:
                await ws.receive()
    [error] = info.value.exceptions
    assert isinstance(error, WebsocketResponseError)
    assert error.response.status_code == 404
    body = await error.response.get_json()
    assert body["error"]["code"] == "not_found"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# --------------------------------------------------------------------------
# names with control characters; long values in messages


@pytest.mark.parametrize(
    "job",
    [
        {"type": "report\x1b[2J"},
        {"type": "title\x1b]0;pwned\x07"},
        {"type": "evil\u202etxt.exe"},
        {"type": "csi\x9b31m"},
        {"type": "noop", "idempotency_key": "k\x00ey"},
    ],
)
async def test_control_characters_in_names_are_refused(
    app: QuartTrio,  # noqa: F811
    job: dict[str, Any],
) -> None:
    status, body = await post(app, "/api/v1/jobs", job)
    assert status == 422, body
    assert "control character U+" in body["error"]["message"]
    await assert_nothing_stored(app)


async def test_control_characters_in_a_schedule_name_are_refused(app: QuartTrio) -> None:  # noqa: F811
    status, body = await post(
        app, "/api/v1/schedules", {"name": "x\x1b[2J", "every": "1m", "job": {"type": "noop"}}
    )
    assert status == 422 and body["error"]["field"] == "name"


@pytest.mark.parametrize(
    "job, field",
    [
        ({"type": "noop", "max_retries": 10**300}, "max_retries"),
        ({"type": "noop", "priority": 10**300}, "priority"),
        ({"type": "noop", "max_retries": "9" * 10000}, "max_retries"),
        ({"type": "noop", "scheduled_at": "x" * 50000}, "scheduled_at"),
    ],
)
async def test_long_values_are_cut_in_error_messages(
    app: QuartTrio,  # noqa: F811
    job: dict[str, Any],
    field: str,
) -> None:
    status, body = await post(app, "/api/v1/jobs", job)
    assert status == 422 and body["error"]["field"] == field
    assert len(body["error"]["message"]) < 300, body["error"]["message"]


async def test_a_long_unknown_parameter_is_cut(app: QuartTrio) -> None:  # noqa: F811
    response = await app.test_client().get("/api/v1/jobs?" + "z" * 5000 + "=1")
    body = await response.get_json()
    assert response.status_code == 400
    assert len(body["error"]["message"]) < 300


async def test_a_number_of_thousands_of_digits_is_named_without_python_s_advice(
    app: QuartTrio,  # noqa: F811
) -> None:
    """The message was Python's own: "... use sys.set_int_max_str_digits() to increase
    the limit", advice a client cannot follow."""
    body = b'{"type": "noop", "payload": {"n": ' + b"9" * 5000 + b"}}"
    for path in ("/api/v1/jobs", "/api/v1/jobs/batch"):
        response = await app.test_client().post(
            path, data=body, headers={"Content-Type": "application/json"}
        )
        error = (await response.get_json())["error"]
        assert response.status_code == 400 and error["code"] == "invalid_json"
        assert error["message"] == (
            f"the body holds a number of more than {sys.get_int_max_str_digits()} digits"
        )
    await assert_nothing_stored(app)


async def test_a_compressed_body_is_refused_naming_its_content_encoding(
    app: QuartTrio,  # noqa: F811
) -> None:
    """A gzip body was read as it came and answered "not valid UTF-8 (bad byte at offset 1)"."""
    import gzip

    for coding, body in (("gzip", gzip.compress(b'{"type": "noop"}')), ("br", b"\x0b\x07")):
        response = await app.test_client().post(
            "/api/v1/jobs",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )
        error = (await response.get_json())["error"]
        assert response.status_code == 415 and error["code"] == "unsupported_media_type"
        assert error["message"] == (
            f"Content-Encoding: {coding} is not supported; send the body uncompressed"
        )
    response = await app.test_client().post(
        "/api/v1/jobs",
        data=b'{"type": "noop"}',
        headers={"Content-Type": "application/json", "Content-Encoding": "identity"},
    )
    assert response.status_code == 201  # identity is no encoding at all
    assert (await response.get_json())["type"] == "noop"


async def test_the_cli_never_prints_a_nodes_escape_sequences(
    cli: Any,  # noqa: F811
    served: Served,  # noqa: F811
) -> None:
    hostile = "boom \x1b[2J\x1b]0;owned\x07 \x9b31m \u202eevil"
    job = await served.node.submit(
        {"type": "fail", "payload": {"message": hostile}, "max_retries": 0}
    )

    async def failed() -> bool:
        got = await served.node.get(job.id)
        return got is not None and got.status == "failed"

    with trio.fail_after(10):
        while not await failed():
            await trio.sleep(0.02)
    for args in (("jobs", "get", job.id), ("jobs", "list"), ("jobs", "get", job.id, "--json")):
        run: Run = await cli(*args)
        assert run.code == 0, run.err
        for raw in ("\x1b", "\x07", "\x9b", "\u202e"):
            assert raw not in run.out, (args, run.out)
        assert "\\x1b" in run.out or "\\u001b" in run.out


# --------------------------------------------------------------------------
# ports in use


@pytest.mark.parametrize("variable", ["SERVER_PORT", "METRICS_PORT"])
def test_a_port_in_use_is_one_line_naming_the_variable_and_exit_2(
    tmp_path: Path, variable: str
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            other = spare.getsockname()[1]
        env = {
            **os.environ,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(port if variable == "SERVER_PORT" else other),
            "METRICS_PORT": str(port if variable == "METRICS_PORT" else other),
            "SQLITE_PATH": str(tmp_path / "j.db"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "jobtrio.cli", "serve", "--env-file", ""],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,
        )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"{variable}={port}" in lines[0] and "in use" in lines[0]


async def test_a_raw_control_character_in_the_body_names_its_place_once(
    app: QuartTrio,  # noqa: F811
) -> None:
    # the stdlib's message for it ends in "at" ("Invalid control character at"): the
    # place follows once, not "at at line 1"
    test = app.test_client()
    response = await test.post(
        "/api/v1/jobs", data=b'{"type": "a\x01b"}', headers={"Content-Type": "application/json"}
    )
    error = (await response.get_json())["error"]
    assert response.status_code == 400, error
    assert error["message"] == (
        "the body is not valid JSON: Invalid control character at line 1 column 12"
    ), error
    await assert_nothing_stored(app)
