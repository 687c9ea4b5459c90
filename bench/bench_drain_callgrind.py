"""Instructions and trio task steps a job of the node in a preloaded drain, trees alternated.

    python bench/bench_drain_callgrind.py JOBS PAIRS /src/of/A /src/of/B [--steps] [--body incr]

Each side drains JOBS preloaded jobs (``drain_once``: 10 workers, every job's body
one Redis ``INCR`` by default, as ``jobtrio bench --scenario drain --job-body incr``)
on a private ``redis-server``, with its tree first on ``sys.path``. By default it
runs under ``valgrind --tool=callgrind --collect-atstart=no``, and collection is
switched on around the drain alone (the node's start and the preload left out)
by a tiny C library built here with ``valgrind/callgrind.h``'s
``CALLGRIND_TOGGLE_COLLECT``, called through ctypes from the drain's meter: the
figure is the node process's instructions a drained job. With ``--steps`` it
runs natively with a trio ``Instrument`` instead, counting task steps
(``before_task_step``) by task name, scheduler rounds (``after_io_wait``) and the
event log's appends, a job, around the drain alone. Sides alternate in every
pair; the medians are printed. Instruction and step counts do not move with the
machine's load, which wall-clock rates on a shared machine do.
"""

from __future__ import annotations

import argparse
import collections
import ctypes
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from typing import Any

TOGGLE_C = """
#include <valgrind/callgrind.h>
void toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
"""


def _toggle_library(directory: str) -> str:
    source = os.path.join(directory, "toggle.c")
    library = os.path.join(directory, "toggle.so")
    with open(source, "w") as f:
        f.write(TOGGLE_C)
    subprocess.run(["cc", "-shared", "-fPIC", "-O2", "-o", library, source], check=True)
    return library


class StepCounter:
    """A trio instrument: task steps by task name, scheduler rounds (while ``on``)."""

    def __init__(self) -> None:
        self.on = False
        self.steps: collections.Counter[str] = collections.Counter()
        self.rounds = 0

    def before_task_step(self, task: Any) -> None:
        if self.on:
            self.steps[task.name.rpartition(".")[2]] += 1

    def after_io_wait(self, timeout: float) -> None:
        if self.on:
            self.rounds += 1


def one(jobs: int, body: str, steps: bool, library: str | None) -> None:
    """The measured side (in its own process; ``main`` starts it)."""
    import trio

    from jobtrio.backends.redis.events import RedisEventLog
    from jobtrio.bench.inprocess import drain_once
    from jobtrio.bench.redis_server import PrivateRedis

    appends = [0]
    original_append = RedisEventLog.append

    async def counted_append(self: Any, bodies: Any) -> Any:
        appends[0] += 1
        return await original_append(self, bodies)

    RedisEventLog.append = counted_append  # type: ignore[method-assign]
    counter = StepCounter()
    toggle = ctypes.CDLL(library).toggle if library else None

    class Meter:
        def start(self) -> None:
            appends[0] = 0
            if toggle is not None:
                toggle()
            if steps:
                trio.lowlevel.add_instrument(counter)  # type: ignore[arg-type]
                counter.on = True

        def stop(self, n: int) -> dict[str, float]:
            counter.on = False
            if toggle is not None:
                toggle()
            return {"appends": appends[0] / n}

    directory = tempfile.mkdtemp(prefix="bench-drain-cg-")
    redis = PrivateRedis(directory)
    args = argparse.Namespace(
        backend="redis",
        redis_url=redis.url,
        jobs=jobs,
        workers=10,
        batch=100,
        prefetch=-1,
        latency_samples=0,
        event_consumers=0,
        event_stream_maxlen=100_000,
        job_body=body,
    )
    try:
        result = trio.run(drain_once, args, directory, True, Meter())
    finally:
        redis.stop()
    out = {
        "jobs_per_s": result["drain_jobs_per_s"],
        "appends": result["appends"],
        "recorded": result["events_recorded"],
    }
    if steps:
        out["steps"] = sum(counter.steps.values()) / jobs
        out["rounds"] = counter.rounds / jobs
        out["by_task"] = {k: v / jobs for k, v in counter.steps.most_common(12)}
    print("RESULT " + json.dumps(out), flush=True)


def side(src: str, jobs: int, body: str, steps: bool, library: str, out: str) -> dict[str, Any]:
    src = os.path.abspath(src)
    python = os.path.join(src, ".venv", "bin", "python")
    if not os.path.exists(python):
        python = sys.executable
    env = {**os.environ, "PYTHONPATH": src}
    command = [python, os.path.abspath(__file__), str(jobs), "1", "--one", "--body", body]
    if steps:
        command.append("--steps")
    else:
        command = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--callgrind-out-file={out}",
            *command,
            "--library",
            library,
        ]
    done = subprocess.run(command, env=env, cwd=src, check=True, capture_output=True, text=True)
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    result: dict[str, Any] = json.loads(line[7:])
    if not steps:
        with open(out) as f:
            totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
        assert totals is not None, out
        result["instructions"] = int(totals.group(1)) / jobs
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("jobs", type=int)
    parser.add_argument("pairs", type=int)
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--steps", action="store_true")
    parser.add_argument("--body", default="incr")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--library", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        one(options.jobs, options.body, options.steps, options.library)
        return
    directory = tempfile.mkdtemp(prefix="bench-drain-cg-")
    library = _toggle_library(directory)
    figures: dict[str, list[dict[str, Any]]] = {tree: [] for tree in options.trees}
    key = "steps" if options.steps else "instructions"
    for pair in range(options.pairs):
        for i, tree in enumerate(options.trees):
            out = os.path.join(directory, f"callgrind.{pair}.{i}")
            result = side(tree, options.jobs, options.body, options.steps, library, out)
            figures[tree].append(result)
            print(f"pair {pair + 1} {tree}: {json.dumps(result)}", flush=True)
    for tree, results in figures.items():
        values = [r[key] for r in results]
        appends = [r["appends"] for r in results]
        print(
            f"{tree}: {key} a job, median {statistics.median(values):,.3f} "
            f"[{', '.join(f'{v:,.3f}' for v in values)}]; appends a job "
            f"{statistics.median(appends):.4f}"
        )


if __name__ == "__main__":
    main()
