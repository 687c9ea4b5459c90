"""Named queues on Redis: the full-queue drain with 4 queues, one rate-limited, vs one queue.

    python bench/bench_queues.py                  # N=20,000, 3 runs of each, medians
    python bench/bench_queues.py --jobs 50000 --runs 5

It starts its own ``redis-server`` (AOF on, ``appendfsync everysec``, as
``bench/bench_redis.py`` does) and one node in this process (10 workers, the
default prefetch). Each run queues ``--jobs`` noop jobs before the node
starts (the preloaded, full-queue drain: claim, run, finish and record), on
an emptied server, and times until the jobs to drain have completed:

- ``one queue``: every job in ``default``: the baseline;
- ``4 queues, limit not reached``: the jobs spread round-robin over ``q0`` to
  ``q3``, ``q3`` limited to 1,000,000 jobs a second: every claim checks the
  limit and counts its window, none is held back; all N jobs drain;
- ``4 queues, q3 held at LIMIT/s``: the same, ``q3`` limited to
  ``--limit`` jobs a second: its quarter trickles out at the limit, and the
  figure is the drain of the other three queues (3N/4 jobs) while the node
  keeps claiming from all four (also printed: every job run in that time,
  q3's included);
- ``4 queues weighted``: as the first 4-queue case with ``QUEUES=q0:4,q1:3,
  q2:2,q3:1`` (each claim draws the order).

The runs of the cases are interleaved (case 1, 2, 3, 4, then again), so a
busy moment on a shared machine hurts each case alike. Prints every run and
the medians, with the node's CPU per job (``time.process_time``, less
sensitive than wall time to other load on the machine) and Redis's CPU per
job (its ``used_cpu``, enqueue included); ``--json`` for one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_redis import RedisServer  # noqa: E402

from jobtrio.actors.node import Node  # noqa: E402
from jobtrio.backends.base import RateLimit  # noqa: E402
from jobtrio.bench.inprocess import close_bench_backends, open_bench_backends  # noqa: E402
from jobtrio.config import Settings  # noqa: E402
from jobtrio.processors import JobContext, Registry  # noqa: E402

QUEUES = ("q0", "q1", "q2", "q3")
CASES = ("one queue", "4 queues, limit not reached", "4 queues, q3 held", "4 queues weighted")


async def drain(case: str, args: argparse.Namespace, redis_url: str) -> dict[str, float]:
    broker, store = await open_bench_backends("redis", "", redis_url)
    weighted = case == "4 queues weighted"
    settings = Settings(
        worker_count=args.workers,
        node_id="bench",
        queues=(QUEUES, (4, 3, 2, 1)) if weighted else ((), None),
    )
    counts: dict[str, int] = {}
    registry = Registry()

    async def counted(ctx: JobContext) -> None:
        # the noop job, counted by queue: the held case waits for three queues only
        queue = ctx.payload["q"]
        counts[queue] = counts.get(queue, 0) + 1

    registry.register("counted", counted)
    node = Node(settings, broker, store, registry)
    spread = case != "one queue"
    if spread:
        held = case == "4 queues, q3 held"
        await broker.set_queue("q3", rate_limit=RateLimit(args.limit if held else 1_000_000, 1.0))
    try:
        for i in range(0, args.jobs, 1000):
            batch = []
            for k in range(i, min(i + 1000, args.jobs)):
                queue = QUEUES[k % 4] if spread else "default"
                job: dict[str, Any] = {"type": "counted", "payload": {"q": queue}}
                if spread:
                    job["queue"] = queue
                batch.append(job)
            await node.submit_many(batch)
        held = case == "4 queues, q3 held"
        target = args.jobs - (args.jobs // 4 if held else 0)
        start = time.perf_counter()
        cpu = time.process_time()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            while (
                sum(counts.get(q, 0) for q in QUEUES[:3]) if held else node.dispatcher.finished
            ) < target:
                await trio.sleep(0.005)
            drained = time.perf_counter()
            cpu = time.process_time() - cpu
            q3_done = counts.get("q3", 0)
            node.request_stop()
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        await close_bench_backends(broker, store)
    return {
        "jobs": target,
        "jobs_per_s": target / (drained - start),
        # every job the node ran meanwhile, q3's trickle included
        "all_run_per_s": (target + (q3_done if held else 0)) / (drained - start),
        "seconds": drained - start,
        "q3_run": q3_done,
        "node_cpu_us_per_job": cpu / target * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=10)
    parser.add_argument("--limit", type=int, default=100, help="q3's jobs a second when held")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
    with tempfile.TemporaryDirectory() as directory:
        server = RedisServer(directory, appendonly=True)
        try:
            for run in range(args.runs):
                for case in CASES:
                    server.flush()
                    redis_cpu = server.cpu_seconds()
                    result = trio.run(drain, case, args, server.url)
                    # includes the enqueue before the drain: compare cases, not absolutes
                    result["redis_cpu_us_per_job"] = (
                        (server.cpu_seconds() - redis_cpu) / args.jobs * 1e6
                    )
                    results[case].append(result)
                    if not args.json:
                        print(
                            f"run {run + 1} {case}: {result['jobs']} jobs in "
                            f"{result['seconds']:.2f} s = {result['jobs_per_s']:,.0f} jobs/s "
                            f"(q3 ran {result['q3_run']:.0f}; node CPU "
                            f"{result['node_cpu_us_per_job']:.0f} us/job, Redis CPU "
                            f"{result['redis_cpu_us_per_job']:.0f} us/job incl. enqueue)",
                            flush=True,
                        )
        finally:
            server.stop()
    medians = {c: statistics.median(r["jobs_per_s"] for r in results[c]) for c in CASES}
    node_cpu = {c: statistics.median(r["node_cpu_us_per_job"] for r in results[c]) for c in CASES}
    redis_cpu = {c: statistics.median(r["redis_cpu_us_per_job"] for r in results[c]) for c in CASES}
    all_run = {c: statistics.median(r["all_run_per_s"] for r in results[c]) for c in CASES}
    base = medians["one queue"]
    if args.json:
        print(json.dumps({"runs": results, "medians": medians, "node_cpu": node_cpu}, indent=2))
        return
    print(f"\nmedians of {args.runs} runs, {args.jobs} jobs, {args.workers} workers:")
    for case in CASES:
        print(
            f"  {case:30} {medians[case]:>8,.0f} jobs/s ({medians[case] / base - 1:+.1%}), "
            f"all jobs run {all_run[case]:,.0f}/s ({all_run[case] / base - 1:+.1%}), "
            f"node CPU {node_cpu[case]:.0f} us/job, Redis CPU {redis_cpu[case]:.0f} us/job"
        )


if __name__ == "__main__":
    main()
