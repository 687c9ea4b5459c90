"""The short chaos run: real ``jobtrio serve`` nodes and a real redis-server under faults.

The long form is ``jobtrio chaos --duration 10m`` (docs/chaos.md). Here a
seeded nemesis injects each fault at least once while clients submit mixed
jobs; the checker must find nothing lost, unexpected, completed twice or
stuck, and every process the run started must be gone afterwards, whatever
happened. ``JOBTRIO_CHAOS_SEED`` replaces the fixed seeds.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path

import psutil
import pytest

from jobtrio.chaos import FAULTS, ChaosOptions, run_chaos

pytestmark = pytest.mark.slow


def _our_processes() -> list[psutil.Process]:
    """Our live child processes (the nodes and Redis run in sessions of their own,
    but stay our children)."""
    alive = []
    for proc in psutil.Process().children(recursive=True):
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


@pytest.mark.parametrize(
    ("nodes", "duration", "faults", "seed"),
    [
        pytest.param(3, 25.0, FAULTS, 1501, id="3-nodes-every-fault"),
        pytest.param(5, 12.0, ("kill", "partition"), 1502, id="5-nodes-kill-partition"),
    ],
)
def test_no_job_is_lost_duplicated_or_stuck_under_faults(
    tmp_path: Path, nodes: int, duration: float, faults: Sequence[str], seed: int
):
    before = {p.pid for p in _our_processes()}
    seed = int(os.environ.get("JOBTRIO_CHAOS_SEED", seed))
    lines: list[str] = []
    options = ChaosOptions(
        data_dir=tmp_path,
        nodes=nodes,
        duration=duration,
        seed=seed,
        faults=faults,
        fault_interval=2.0,
        clock_skew=5.0,
        job_lease=3.0,
        rate=8.0,
    )
    try:
        result = run_chaos(options, log=lines.append)
    finally:
        left = [p for p in _our_processes() if p.pid not in before]
        assert not left, f"the chaos run left processes behind: {left}"
    counts = result.verdict.counts
    story = "\n".join(lines + result.verdict.problems)
    where = f"seed {seed} (JOBTRIO_CHAOS_SEED={seed}), logs in {tmp_path / 'logs'}"
    assert result.verdict.ok, f"{dataclasses.asdict(counts)}\n{story}\n{where}"
    assert {f.fault for f in result.faults} == set(faults), f"not every fault ran:\n{story}"
    # the run did real work of every kind, so a 0 above means something
    assert counts.acknowledged >= 40, story
    assert counts.completed > 0 and counts.failed_as_designed > 0, story
    assert counts.schedule_jobs > 0, story
