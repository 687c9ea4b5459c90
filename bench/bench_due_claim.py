"""Redis CPU per job of taking a burst of due jobs: promotion then claims, or claims alone.

    python bench/bench_due_claim.py redis://127.0.0.1:PORT 20000 5

No node, no workers: the Broker moves alone, as ``open_backends`` makes it for
Redis (records kept by the Broker, decisions on Redis's clock). Each round
enqueues N noop jobs due a little ahead, waits until they are due, then either

- ``promote``: the leader's promotion (``promote_due_count`` in steps of
  ``PROMOTE_STEP``) and then claims of ``DISPATCH_BATCH`` until none is left,
  as a leader that promotes at once and the workers after it; or
- ``claim``: claims of ``DISPATCH_BATCH`` alone (a claim takes due jobs itself),

and reports Redis's CPU (``used_cpu_user + used_cpu_sys``) per job over the
moves. The two kinds alternate, so the pairs see the same load. Only a Broker
whose claim takes due jobs can run ``claim``; ``promote`` runs on any.
"""

from __future__ import annotations

import statistics
import sys
import time

import positional  # bench/positional.py: this script's folder is first on sys.path
import redis
import trio

from jobtrio.actors.leader import PROMOTE_STEP
from jobtrio.bench.inprocess import close_bench_backends, open_bench_backends
from jobtrio.bench.redis_server import redis_cpu_seconds

BATCH = 100


async def once(url: str, n: int, kind: str) -> float:
    rc = redis.Redis.from_url(url)
    rc.flushall()
    broker, store = await open_bench_backends("redis", "/tmp", url)
    try:
        due = time.time() + 1.0 + n / 2000  # scheduled (ahead) when enqueued
        for i in range(0, n, 1000):
            await broker.enqueue([_job(due) for _ in range(min(1000, n - i))], time.time())
        if time.time() >= due:
            raise SystemExit("the enqueue overran the due time: fewer jobs")
        await trio.sleep(due - time.time() + 0.05)
        epoch = await broker.acquire_epoch("bench", time.time())
        before = redis_cpu_seconds(rc)
        if kind == "promote":
            while await broker.promote_due_count(time.time(), epoch, PROMOTE_STEP):
                pass
            print(
                f"  promotion alone {(redis_cpu_seconds(rc) - before) / n * 1e6:.1f} us/job",
                flush=True,
            )
        taken = 0
        while True:
            leases = await broker.claim("bench", BATCH, 60.0, time.time())
            if not leases:
                break
            taken += len(leases)
        spent = redis_cpu_seconds(rc) - before
        assert taken == n, (taken, n)
        return spent / n * 1e6
    finally:
        await close_bench_backends(broker, store)


def _job(due: float):  # type: ignore[no-untyped-def]
    from jobtrio.submission import validate_submission

    return validate_submission({"type": "noop", "scheduled_at": due}, time.time())


def main(argv: list[str]) -> None:
    url, (n, rounds), _ = positional.parse(__doc__, argv, ("jobs", "rounds"), trees=False)
    import os

    print("load:", os.getloadavg(), flush=True)
    out: dict[str, list[float]] = {"promote": [], "claim": []}
    for r in range(rounds):
        for kind in out:
            us = trio.run(once, url, n, kind)
            out[kind].append(us)
            print(r, kind, f"redis {us:.1f} us/job", flush=True)
    print("load:", os.getloadavg())
    for kind, values in out.items():
        print(
            "median", kind, f"{statistics.median(values):.1f} us/job", [round(v, 1) for v in values]
        )


if __name__ == "__main__":
    main(sys.argv[1:])
