"""Redis's instructions for an idle node's one-job enqueue-and-claim (callgrind, ``redis-server``).

    python bench/bench_redis_enqueue_claim_callgrind.py PAIRS /src/of/A /src/of/B ...
    python bench/bench_redis_enqueue_claim_callgrind.py 1 A --keep /tmp/cg  # callgrind_annotate

Each side starts a ``redis-server`` 7 (no persistence) under ``valgrind
--tool=callgrind --instr-atstart=no`` and, in a process with its tree first on
``sys.path``, opens the Broker as a node does (``open_backends``: records
kept, the server's clock). Each round is what an idle node's submit of one job
makes: ``enqueue_and_claim`` of one job validated at its own time (a noop job,
due now) with the claim an idle node of 10 workers lends (20 jobs, its types
only), which leases that job. After a warm-up (50 of them, each finished) Redis is
instrumented and dumped after each phase:

- ``idle``: 2 s of nothing (the server's own cron), subtracted from the rest
  by the time each took;
- ``enqueue_claim``: ``--calls`` enqueue-and-claims, one after the other (the
  node then holds their leases: the leases' set has its table from the warm-up);
- ``finish``: their finishes, one a call.

Printed: instructions an enqueue-and-claim and a finish. Sides alternate in
every pair; medians last. Quote ``uptime`` (counts do not move with load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import redis_callgrind  # bench/redis_callgrind.py: this script's folder is first on sys.path

IDLE_SECONDS = 2.0
#: what an idle node of 10 workers lends: idle workers plus its prefetch window
CLAIM_N = 20
LEASE_SECONDS = 30.0


def _driver(url: str, calls: int, control: list[str]) -> dict[str, float]:
    """In the side's process: the phases against ``url``; seconds each took."""
    import trio

    from jobtrio.backends import open_backends
    from jobtrio.backends.base import ClaimScope, Finish
    from jobtrio.config import Settings
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import validate_submission

    def dump() -> None:
        subprocess.run(control + ["-d"], check=True, capture_output=True)

    async def main() -> dict[str, float]:
        settings = Settings(redis_url=url, redis_key_prefix="cg")
        broker, store = await open_backends(settings)
        ids = IdGenerator()
        body = {"type": "noop", "payload": {"source": "bench"}}
        scope = ClaimScope(types=frozenset({"noop"}))

        async def enqueue_claim() -> list:
            job = validate_submission(dict(body), time.time(), ids=ids)
            _, leases = await broker.enqueue_and_claim(
                [job], time.time(), "node-1", CLAIM_N, LEASE_SECONDS, scope
            )
            assert leases is not None and len(leases) == 1
            return leases

        async def finish(leases: list) -> None:
            lease = leases[0]
            item = Finish(lease.job.id, lease.token, "completed", "worker-1", result=None)
            await broker.finish([item], time.time())

        for _ in range(50):
            await finish(await enqueue_claim())
        subprocess.run(control + ["-i", "on"], check=True, capture_output=True)
        took: dict[str, float] = {"enqueue_claim": 0.0, "finish": 0.0}
        await trio.sleep(0.5)
        dump()
        started = time.monotonic()
        await trio.sleep(IDLE_SECONDS)
        dump()
        took["idle"] = time.monotonic() - started
        held = []
        started = time.monotonic()
        for _ in range(calls):
            held.append(await enqueue_claim())
        dump()
        took["enqueue_claim"] = time.monotonic() - started
        started = time.monotonic()
        for leases in held:
            await finish(leases)
        dump()
        took["finish"] = time.monotonic() - started
        subprocess.run(control + ["-i", "off"], check=True, capture_output=True)
        await broker.delete_keyspace()
        await store.close()
        await broker.close()
        return took

    return trio.run(main)


PHASES = ("enqueue_claim", "finish")


def side(tree: str, calls: int, keep: str | None = None) -> dict[str, float]:
    """Instructions a call of each phase (``PHASES``) of one run."""
    counts, took = redis_callgrind.run_side(__file__, tree, [str(calls)], PHASES, keep)
    idle_rate = counts[1] / took["idle"]
    return {
        phase: (counts[i] - idle_rate * took[phase]) / calls
        for i, phase in enumerate(PHASES, start=2)
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--driver":
        url, calls, pid = argv[1], int(argv[2]), argv[3]
        print(json.dumps(_driver(url, calls, ["callgrind_control", pid])))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pairs", type=int)
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--calls", type=int, default=200, help="rounds (default 200)")
    parser.add_argument("--keep", help="copy each phase's callgrind file into this folder")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {tree: [] for tree in args.trees}

    def line(figures: dict[str, float]) -> str:
        return (
            f"enqueue_claim {figures['enqueue_claim']:,.0f} a call,"
            f" finish {figures['finish']:,.0f} a call"
        )

    for _ in range(args.pairs):
        for tree in args.trees:
            run = side(tree, args.calls, args.keep)
            results[tree].append(run)
            print(f"{tree}: {line(run)}", flush=True)
    for tree, runs in results.items():
        print(f"median {tree}: " + line({p: statistics.median(r[p] for r in runs) for p in PHASES}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
