"""Instructions a job of the node's event path alone (callgrind), trees alternated.

    python bench/bench_events_callgrind.py ROUNDS PAIRS /src/of/A ... [--finish N] [--take K]

What a drain's events cost the node besides the recorder's wake-ups and appends,
as the drain makes them: each round, N deals of one job each (four by default;
``publish_jobs("job.started", [job])``) and a finish of the N
(``publish_jobs("job.completed", jobs)``), and every Kth round (third) the event
recorder's take (``EventStream._take``: the metrics, ``normalize``/``encode``
into the pending events; no log call). A native 5,000-job ``INCR`` drain (stop
30) made deals of 1.01 jobs, finishes of 41 and a take every 20 jobs: ``--finish
40 --take 1`` is nearer it than the defaults (stop 29's). Each side runs under ``valgrind
--tool=callgrind --collect-atstart=no`` with its tree first on ``sys.path``;
collection is switched on around the ROUNDS rounds alone (after 50 unmeasured)
by ``bench_drain_callgrind.py``'s toggle library. Prints the instructions a job
(two events), the medians last.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_drain_callgrind import _toggle_library


def one(rounds: int, library: str, finish: int = 4, take: int = 3) -> None:
    """The measured side (run under callgrind by ``main``)."""
    import itertools
    import time

    from jobtrio.eventlog import MemoryEventLog
    from jobtrio.events import EventBus
    from jobtrio.eventstream import EventStream
    from jobtrio.jobs import Job
    from jobtrio.metrics import NodeMetrics

    toggle = ctypes.CDLL(library).toggle
    clock = itertools.count(1_700_000_000.0, 0.0001).__next__  # a distinct time a deal
    bus = EventBus("bench", clock)
    jobs = [Job(id=f"J{i:025d}", type="bench.incr", created_at=1.0) for i in range(finish)]
    stream = EventStream(bus, MemoryEventLog(1000, time.time), NodeMetrics("bench"), time.time)
    with bus.subscribe(buffer=10**7, batches=True) as channel:

        def run(n: int) -> None:
            for k in range(n):
                for job in jobs:
                    bus.publish_jobs("job.started", [job])
                bus.publish_jobs("job.completed", jobs)
                if k % take == take - 1:
                    stream._take(channel)
            stream._take(channel)
            stream._pending.clear()

        run(50)
        toggle()
        run(rounds)
        toggle()


def side(src: str, rounds: int, library: str, out: str, finish: int, take: int) -> float:
    src = os.path.abspath(src)
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--callgrind-out-file={out}",
            sys.executable,
            os.path.abspath(__file__),
            str(rounds),
            "1",
            "--one",
            library,
            "--finish",
            str(finish),
            "--take",
            str(take),
        ],
        env={**os.environ, "PYTHONPATH": src},
        cwd=src,
        check=True,
        capture_output=True,
    )
    with open(out) as f:
        totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    assert totals is not None, out
    return int(totals.group(1)) / (rounds * finish)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("pairs", type=int)
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--finish", type=int, default=4, help="jobs a finish (and deals a round)")
    parser.add_argument("--take", type=int, default=3, help="rounds between the recorder's takes")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        one(options.rounds, options.one, options.finish, options.take)
        return
    directory = tempfile.mkdtemp(prefix="bench-events-cg-")
    library = _toggle_library(directory)
    figures: dict[str, list[float]] = {tree: [] for tree in options.trees}
    for pair in range(options.pairs):
        for i, tree in enumerate(options.trees):
            out = os.path.join(directory, f"cg.{pair}.{i}")
            value = side(tree, options.rounds, library, out, options.finish, options.take)
            figures[tree].append(value)
            print(f"pair {pair + 1} {tree}: {value:,.0f} instructions a job", flush=True)
    for tree, values in figures.items():
        print(
            f"{tree}: median {statistics.median(values):,.0f} "
            f"[{', '.join(f'{v:,.0f}' for v in values)}] instructions a job"
        )


if __name__ == "__main__":
    main()
