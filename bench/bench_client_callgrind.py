"""Instructions a job of the caller of ``Client.submit_many`` (callgrind), trees alternated.

    python bench/bench_client_callgrind.py CALLS PAIRS /src/of/A /src/of/B ...

One served node on a private ``redis-server`` (``jobtrio.bench.served``, as
``jobtrio bench --scenario enqueue`` runs it, from this checkout) answers
every side. Each side's caller runs under ``valgrind --tool=callgrind`` with
its tree first on ``sys.path``: two warm-up calls of ``submit_many`` (1,000
noop jobs scheduled an hour ahead, as the enqueue scenario sends them), then
CALLS calls, the only ones counted (``--toggle-collect`` on the C function
``itertools.starmap`` steps through, which nothing else in the caller uses:
a run of no calls counts a few hundred instructions). Sides alternate in
every pair; the medians are printed. Instruction counts do not move with the
machine's load, which wall-clock rates on a shared machine do.
"""

from __future__ import annotations

import itertools
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

BATCH = 1000


def measure(url: str, calls: int) -> None:
    """The counted caller (run under callgrind by ``main``)."""
    import collections

    from jobtrio.client import Client

    later = time.time() + 3600
    job = {"type": "noop", "payload": {"source": "bench"}, "scheduled_at": later}
    with Client(url, timeout=600) as client:
        for _ in range(2):
            client.submit_many([job] * BATCH)

        def send(n: int) -> None:
            client.submit_many([job] * n)

        # only what runs inside starmap_next is counted (--toggle-collect)
        collections.deque(itertools.starmap(send, itertools.repeat((BATCH,), calls)), 0)


def side(url: str, calls: int, src: str, out: str) -> int:
    src = os.path.abspath(src)
    env = {**os.environ, "PYTHONPATH": src}
    subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            "--toggle-collect=starmap_next",
            f"--callgrind-out-file={out}",
            sys.executable,
            os.path.abspath(__file__),
            "--one",
            url,
            str(calls),
        ],
        env=env,
        cwd=src,
        check=True,
        capture_output=True,
    )
    with open(out) as f:
        totals = re.search(r"^(?:summary|totals): (\d+)", f.read(), re.M)
    assert totals is not None, out
    return int(totals.group(1))


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        measure(argv[1], int(argv[2]))
        return
    if len(argv) < 3:
        raise SystemExit(__doc__)
    calls, pairs, trees = int(argv[0]), int(argv[1]), argv[2:]
    from jobtrio.bench.redis_server import PrivateRedis
    from jobtrio.bench.served import Served

    res: dict[str, list[float]] = {t: [] for t in trees}
    print("load:", os.getloadavg(), time.strftime("%H:%M:%S", time.gmtime()), flush=True)
    with tempfile.TemporaryDirectory() as directory:
        redis = PrivateRedis(directory)
        try:
            with Served.node("redis", directory, redis.url, 10) as served:
                for p in range(pairs):
                    for i, tree in enumerate(trees):
                        out = os.path.join(directory, f"callgrind.{p}.{i}")
                        per_job = side(served.url, calls, tree, out) / (calls * BATCH)
                        res[tree].append(per_job)
                        print(p, tree, f"{per_job / 1000:.2f}k instructions a job", flush=True)
                        keep = os.environ.get("KEEP_CALLGRIND")
                        if keep:
                            os.replace(out, f"{keep}.{p}.{i}")
        finally:
            redis.stop()
    print("load:", os.getloadavg(), time.strftime("%H:%M:%S", time.gmtime()))
    for tree, rs in res.items():
        runs = [f"{r / 1000:.2f}k" for r in rs]
        print("median", tree, f"{statistics.median(rs) / 1000:.2f}k", runs)


if __name__ == "__main__":
    main(sys.argv[1:])
