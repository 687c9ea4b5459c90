"""Instructions a job of the node's event path alone (callgrind), trees alternated.

    python bench/bench_events_callgrind.py ROUNDS PAIRS /src/of/A /src/of/B ...

What a drain's events cost the node besides the recorder's wake-ups and appends,
as the drain makes them: each round, four deals of one job each
(``publish_jobs("job.started", [job])``) and a finish of the four
(``publish_jobs("job.completed", jobs)``), and every third round the event
recorder's take (``EventStream._take``: the metrics, ``normalize``/``encode``
into the pending events; no log call). Each side runs under ``valgrind
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


def one(rounds: int, library: str) -> None:
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
    jobs = [Job(id=f"J{i:025d}", type="bench.incr", created_at=1.0) for i in range(4)]
    stream = EventStream(bus, MemoryEventLog(1000, time.time), NodeMetrics("bench"), time.time)
    with bus.subscribe(buffer=10**7, batches=True) as channel:

        def run(n: int) -> None:
            for k in range(n):
                for job in jobs:
                    bus.publish_jobs("job.started", [job])
                bus.publish_jobs("job.completed", jobs)
                if k % 3 == 2:
                    stream._take(channel)
            stream._take(channel)
            stream._pending.clear()

        run(50)
        toggle()
        run(rounds)
        toggle()


def side(src: str, rounds: int, library: str, out: str) -> float:
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
        ],
        env={**os.environ, "PYTHONPATH": src},
        cwd=src,
        check=True,
        capture_output=True,
    )
    with open(out) as f:
        totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    assert totals is not None, out
    return int(totals.group(1)) / (rounds * 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("rounds", type=int)
    parser.add_argument("pairs", type=int)
    parser.add_argument("trees", nargs="*")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        one(options.rounds, options.one)
        return
    directory = tempfile.mkdtemp(prefix="bench-events-cg-")
    library = _toggle_library(directory)
    figures: dict[str, list[float]] = {tree: [] for tree in options.trees}
    for pair in range(options.pairs):
        for i, tree in enumerate(options.trees):
            value = side(tree, options.rounds, library, os.path.join(directory, f"cg.{pair}.{i}"))
            figures[tree].append(value)
            print(f"pair {pair + 1} {tree}: {value:,.0f} instructions a job", flush=True)
    for tree, values in figures.items():
        print(
            f"{tree}: median {statistics.median(values):,.0f} "
            f"[{', '.join(f'{v:,.0f}' for v in values)}] instructions a job"
        )


if __name__ == "__main__":
    main()
