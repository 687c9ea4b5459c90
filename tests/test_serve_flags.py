"""``jobtrio serve`` flags: each overrides its environment variable, and says which.

The flags are parsed by config.py exactly as the variables are, so a bad
value fails the same way (exit 2, one line), naming the flag too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobtrio.cli import SERVE_FLAGS
from jobtrio.config import ENVIRONMENT_VARIABLES, Settings
from tests.servers import RedisServer, free_port
from tests.waiting import wait_until_sync

JOBTRIO = Path(sys.executable).parent / "jobtrio"


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return {**env, **extra}


@pytest.fixture
def started() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes a test starts; killed at teardown whatever happened."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_every_flag_names_a_real_variable_in_help() -> None:
    result = subprocess.run(
        [str(JOBTRIO), "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean_env(), "COLUMNS": "200"},
    )
    assert result.returncode == 0
    for spec in SERVE_FLAGS:
        assert spec.variable in ENVIRONMENT_VARIABLES, spec
        assert spec.flag in result.stdout
        assert f"[env: {spec.variable}" in result.stdout, spec.flag


def test_flags_win_over_the_environment_and_the_env_file(
    tmp_path: Path, started: list[subprocess.Popen[bytes]], redis_server: RedisServer
) -> None:
    env_port, flag_port, metrics_port = free_port(), free_port(), free_port()
    (tmp_path / ".env").write_text("NODE_ID=from-dotenv\nWORKER_COUNT=7\n")
    log = open(tmp_path / "serve.log", "wb")
    proc = subprocess.Popen(
        [
            str(JOBTRIO),
            "serve",
            "--port",
            str(flag_port),
            "--host",
            "127.0.0.1",
            "--metrics-port",
            str(metrics_port),
            "--node-id",
            "from-flag",
            "--workers",
            "3",
            "--redis",
            redis_server.url,
            "--key-prefix",
            "flags" + str(flag_port),
        ],
        env=clean_env(SERVER_PORT=str(env_port), NODE_ID="from-env", REDIS_ADDR="127.0.0.1:1"),
        cwd=tmp_path,
        stdout=log,
        stderr=log,
    )
    started.append(proc)

    def health() -> dict | None:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()
        try:
            r = httpx.get(f"http://127.0.0.1:{flag_port}/health", timeout=1)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    body = wait_until_sync(health, timeout=20, message="the node on --port")
    assert body["node_id"] == "from-flag"
    # --redis with a URL set REDIS_URL and cleared the environment's REDIS_ADDR
    assert body["storage"].startswith("redis")
    assert all(b["healthy"] for b in body["backends"]), body
    stats = httpx.get(f"http://127.0.0.1:{flag_port}/api/v1/stats", timeout=2).json()
    assert stats["workers"]["total"] == 3
    assert httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).status_code == 200
    # nothing listens on the environment's SERVER_PORT
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{env_port}/health", timeout=1)
    # the image's HEALTHCHECK: the same settings find the node, and nothing else
    check = subprocess.run(
        [str(JOBTRIO), "healthcheck", "--env-file", ""],
        env=clean_env(SERVER_PORT=str(flag_port)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == f"http://127.0.0.1:{flag_port}/health: ok"
    nothing = subprocess.run(
        [str(JOBTRIO), "healthcheck", "--env-file", ""],
        env=clean_env(SERVER_PORT=str(env_port)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert nothing.returncode == 1
    assert nothing.stderr.startswith(f"jobtrio: http://127.0.0.1:{env_port}/health: ")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["--port", "abc"],
            "jobtrio: --port: SERVER_PORT='abc' is not valid: expected an integer from 1 to 65535",
        ),
        (
            ["--algorithm", "paxos"],
            "jobtrio: --algorithm: ELECTION_ALGORITHM='paxos' is not valid: "
            "expected one of bully, raft, gossip",
        ),
        (
            ["--redis", "nohost"],
            "jobtrio: --redis: REDIS_ADDR='nohost' is not valid: "
            "expected host:port with a port from 1 to 65535",
        ),
        (
            ["--port", "7000", "--cluster-port", "7000"],
            "jobtrio: --cluster-port: CLUSTER_PORT=7000 is not valid: it must differ from "
            "SERVER_PORT",
        ),
    ],
)
def test_a_bad_flag_exits_2_naming_flag_and_variable(
    tmp_path: Path, args: list[str], line: str
) -> None:
    result = subprocess.run(
        [str(JOBTRIO), "serve", "--env-file", "", *args],
        env=clean_env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]


async def test_serve_freezes_its_start_up_heap_only_when_asked(tmp_path: Path) -> None:
    """``jobtrio serve`` leaves its start-up objects out of full collections (a node spent
    11% less CPU a batched job); ``serve`` called by a program or a test leaves its
    collector alone."""
    import functools
    import gc

    import trio

    from jobtrio.server import serve

    def settings(name: str) -> Settings:
        return Settings(
            node_id=name,
            server_host="127.0.0.1",
            server_port=free_port(),
            metrics_port=0,
            worker_count=1,
            shutdown_grace=0.1,
            sqlite_path=str(tmp_path / f"{name}.db"),
        )

    gc.unfreeze()
    try:
        for name, freeze in (("plain", False), ("frozen", True)):
            async with trio.open_nursery() as nursery:
                node = await nursery.start(
                    functools.partial(
                        serve, settings(name), handle_signals=False, freeze_heap=freeze
                    )
                )
                assert (gc.get_freeze_count() > 0) is freeze
                node.request_stop()
    finally:
        gc.unfreeze()


def test_jobtrio_serve_asks_for_the_frozen_heap(monkeypatch: pytest.MonkeyPatch) -> None:
    import trio

    from jobtrio.cli import main

    ran: list[object] = []
    monkeypatch.setattr(trio, "run", lambda fn, *args: ran.append(fn))
    for name in ENVIRONMENT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert main(["serve", "--env-file", "", "--port", str(free_port())]) == 0
    [call] = ran
    assert call.keywords == {"freeze_heap": True}  # type: ignore[attr-defined]
