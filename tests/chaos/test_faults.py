"""The test-only fault seams the chaos run uses: clock offset, partition switch, flaky jobs."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import trio

from jobtrio.chaos.cluster import ChaosCluster
from jobtrio.cluster.transport import WebsocketTransport
from jobtrio.config import ENVIRONMENT_VARIABLES, ConfigError
from jobtrio.processors import JobContext, ProcessorFailure, Registry
from jobtrio.testfaults import (
    CLOCK_OFFSET_ENV,
    PARTITION_FILE_ENV,
    clock_offset,
    partition_switch,
    wall_clock,
)
from tests.servers import free_port
from tests.waiting import wait_until


def test_no_offset_is_the_real_clock_itself():
    assert wall_clock({}) is time.time
    assert clock_offset({CLOCK_OFFSET_ENV: " "}) == 0.0


def test_an_offset_shifts_every_reading():
    clock = wall_clock({CLOCK_OFFSET_ENV: "-2.5"})
    before = time.time()
    reading = clock()
    after = time.time()
    assert before - 2.5 <= reading <= after - 2.5


@pytest.mark.parametrize("bad", ["soon", "nan", "1e12"])
def test_a_bad_offset_is_a_config_error_naming_the_variable(bad: str):
    with pytest.raises(ConfigError, match=CLOCK_OFFSET_ENV):
        clock_offset({CLOCK_OFFSET_ENV: bad})


def test_the_partition_switch_follows_its_file(tmp_path: Path):
    assert partition_switch({}) is None
    flag = tmp_path / "cut"
    switch = partition_switch({PARTITION_FILE_ENV: str(flag)})
    assert switch is not None and not switch()
    flag.touch()
    assert switch()
    flag.unlink()
    assert not switch()


async def _transport(nursery: trio.Nursery, node_id: str, flag: Path | None) -> WebsocketTransport:
    cut = None if flag is None else partition_switch({PARTITION_FILE_ENV: str(flag)})
    t = WebsocketTransport(node_id, "", "s3cret", host="127.0.0.1", port=0, cut_off=cut)
    port = await nursery.start(t.run)
    t.advertise = f"127.0.0.1:{port}"
    return t


async def test_a_cut_off_transport_drops_both_ways_until_healed(tmp_path: Path):
    flag = tmp_path / "cut"
    async with trio.open_nursery() as nursery:
        a = await _transport(nursery, "a", flag)
        b = await _transport(nursery, "b", None)
        a.set_address("b", b.advertise)
        b.set_address("a", a.advertise)
        flag.touch()
        a.send("b", {"n": "out while cut"})
        assert a.dropped == 1
        b.send("a", {"n": "in while cut"})
        await wait_until(lambda: a.dropped == 2, timeout=10, message="a to drop b's message")
        flag.unlink()
        b.send("a", {"n": "in after heal"})
        got = await a.receive()
        assert got.message == {"n": "in after heal"}
        a.send("b", {"n": "out after heal"})
        assert (await b.receive()).message == {"n": "out after heal"}
        nursery.cancel_scope.cancel()


def _ctx(retry_count: int, payload: dict[str, object]) -> JobContext:
    return JobContext("j", "flaky", payload, 5, retry_count + 1, retry_count, 3, "n", "w")


async def test_flaky_fails_its_first_attempts_then_succeeds():
    flaky = Registry().get("flaky").fn
    for retry_count in (0, 1):
        with pytest.raises(ProcessorFailure, match=f"failure {retry_count + 1} of 2"):
            await flaky(_ctx(retry_count, {"failures": 2}))  # type: ignore[misc]
    assert await flaky(_ctx(2, {"failures": 2})) == {"failed_first": 2}  # type: ignore[misc]
    with pytest.raises(ValueError, match="payload.failures"):
        await flaky(_ctx(0, {"failures": "two"}))  # type: ignore[misc]


def test_serve_refuses_a_bad_clock_offset_with_exit_2_naming_it(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    env[CLOCK_OFFSET_ENV] = "soon"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "jobtrio.cli",
            "serve",
            "--env-file",
            "",
            "--port",
            str(free_port()),
            "--metrics-port",
            str(free_port()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert result.returncode == 2, result.stderr
    assert f"{CLOCK_OFFSET_ENV}='soon' is not a number of seconds" in result.stderr
    assert "Traceback" not in result.stderr


def test_cluster_down_stops_what_a_chaos_run_that_died_left(tmp_path: Path):
    """A runner killed hard never reaches ``close``: its state file lets
    ``jobtrio cluster down`` stop the nodes and Redis (a paused node included)."""
    cluster = ChaosCluster(tmp_path, 1, job_lease=3.0)
    try:
        cluster.start()
        cluster.pause("node-1")
        refs = [cluster.node("node-1").process, cluster.state.redis]
        assert all(ref is not None and ref.alive() for ref in refs)
        result = subprocess.run(
            [
                str(Path(sys.executable).parent / "jobtrio"),
                "cluster",
                "down",
                "--data-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert not any(ref is not None and ref.alive() for ref in refs)
    finally:
        cluster.close()
    assert not (tmp_path / "cluster.json").exists()
