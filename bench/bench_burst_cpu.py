"""Node and Redis CPU per job: a full-queue drain beside a burst of due jobs.

    python bench/bench_burst_cpu.py redis://127.0.0.1:PORT 20000 4
    python bench/bench_burst_cpu.py redis://127.0.0.1:PORT 20000 4 /src/of/A /src/of/B ...

One node in this process, 10 workers, noop jobs. The drain submits N jobs,
then starts the node: timed from its start to the last completion. The burst
starts the node, submits N jobs with one ``scheduled_at`` a little ahead,
and is timed from that moment to the last completion (the workers' claims take
them as they come due; the leader promotes what no claim took within its
grace, counted as "promoted"). Node CPU is this process's
``time.process_time()`` over the timed part, Redis's its ``used_cpu_user +
used_cpu_sys``; the Redis is flushed before each run.

Given source trees (each holding the ``jobtrio`` package), every round
runs A, then B, ... (drain then burst each), each in its own process with that
tree first on ``sys.path``: CPU per job in alternated A/B pairs, as
docs/benchmarks.md describes. Quote ``uptime`` beside the figures.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import positional  # bench/positional.py: this script's folder is first on sys.path

KINDS = ("drain", "burst")
FIELDS = ("jobs/s", "node us/job", "redis us/job", "promoted by the leader")


async def run(url: str, n: int, kind: str) -> tuple[float, float, float, int]:
    import redis
    import trio

    from jobtrio.actors.node import Node
    from jobtrio.bench.inprocess import close_bench_backends, open_bench_backends
    from jobtrio.bench.redis_server import redis_cpu_seconds
    from jobtrio.config import Settings

    rc = redis.Redis.from_url(url)
    rc.flushall()
    broker, store = await open_bench_backends("redis", "/tmp", url)
    settings = Settings(worker_count=10, node_id="bench", dispatch_batch=100, dispatch_prefetch=-1)
    node = Node(settings, broker, store)
    batch = 1000
    try:
        async with trio.open_nursery() as nursery:
            if kind == "drain":
                for i in range(0, n, batch):
                    await node.submit_many([{"type": "noop"}] * min(batch, n - i))
                cpu0, r0, t0 = time.process_time(), redis_cpu_seconds(rc), time.time()
                await nursery.start(node.run)
            else:
                await nursery.start(node.run)
                due = time.time() + 1.0 + n / 5000
                job = {"type": "noop", "scheduled_at": due}
                for i in range(0, n, batch):
                    await node.submit_many([job] * min(batch, n - i))
                await trio.sleep(max(0.0, due - time.time() - 0.05))
                cpu0, r0, t0 = time.process_time(), redis_cpu_seconds(rc), due
            while node.dispatcher.finished < n:
                await trio.sleep(0.005)
            t1, cpu1, r1 = time.time(), time.process_time(), redis_cpu_seconds(rc)
            node.request_stop()
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        await close_bench_backends(broker, store)
    return n / (t1 - t0), (cpu1 - cpu0) / n * 1e6, (r1 - r0) / n * 1e6, node.duties.promoted


def one(url: str, n: int, kind: str, src: str | None) -> tuple[float, float, float, int]:
    """One run in this process, or in a child with ``src`` first on its path."""
    if src is None:
        import trio

        return trio.run(run, url, n, kind)
    env = {**os.environ, "PYTHONPATH": src}
    out = subprocess.run(
        [sys.executable, __file__, "--one", url, str(n), kind],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return tuple(json.loads(out.splitlines()[-1]))  # type: ignore[return-value]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        import trio

        print(json.dumps(trio.run(run, argv[1], int(argv[2]), argv[3])))
        return
    url, (n, pairs), trees = positional.parse(__doc__, argv, ("jobs", "pairs"))
    sides: dict[str, str | None] = {"ABCDEFGH"[i]: src for i, src in enumerate(trees)}
    sides = sides or {"": None}
    res: dict[tuple[str, str], list[tuple[float, float, float, int]]] = {
        (side, kind): [] for side in sides for kind in KINDS
    }
    print("load:", os.getloadavg(), flush=True)
    for p in range(pairs):
        for side, src in sides.items():
            for kind in KINDS:
                r = one(url, n, kind, src)
                res[side, kind].append(r)
                print(
                    p,
                    side,
                    kind,
                    f"{r[0]:.0f} jobs/s node {r[1]:.1f} us redis {r[2]:.1f} us promoted {r[3]}",
                )
    print("load:", os.getloadavg())
    for (side, kind), rs in res.items():
        med = [statistics.median(r[i] for r in rs) for i in range(4)]
        figures = ", ".join(f"{f} {m:.1f}" for f, m in zip(FIELDS, med, strict=True))
        print("median", side, kind, figures)
    for side in sides:
        ratios = [b[0] / d[0] for d, b in zip(res[side, "drain"], res[side, "burst"], strict=True)]
        print(side, "burst/drain jobs/s per pair:", [round(r, 2) for r in ratios])
        print(side, f"median ratio {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main(sys.argv[1:])
