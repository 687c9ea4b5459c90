"""Redis's instructions a job of the enqueue path (callgrind on ``redis-server``), trees alternated.

    python bench/bench_redis_enqueue_callgrind.py PAIRS /src/of/A /src/of/B ...
    python bench/bench_redis_enqueue_callgrind.py PAIRS A B --small 5 --calls 200

Each side starts a ``redis-server`` 7 (no persistence) under ``valgrind
--tool=callgrind --instr-atstart=no`` and, in a process with its tree first on
``sys.path``, opens the Broker as a node does (``open_backends``: records
kept, the server's clock) and the node's event log on the same connection.
The jobs are what a submission of the enqueue bench makes of its body (a
noop job scheduled an hour ahead, ``validate_many``), the events the
``job.submitted`` texts the event recorder appends for them. After a
warm-up, Redis is instrumented and dumped after each phase:

- ``idle``: 2 s of nothing (the server's own cron), subtracted from the rest
  by the time each took;
- ``small``: ``--calls`` enqueues of ``--small`` jobs each, as the group
  commit of single POSTs makes them (4-6 jobs a call measured at 8
  connections; each job validated alone, at its own time), then the append
  of each call's jobs' events, as the event recorder makes it;
- ``batch``: 3 enqueues of 1,000 jobs (validated at one time), then the
  append of each one's 1,000 events.

Printed for each: instructions a job, and (``small``) a call. Sides alternate
in every pair; medians last. Quote ``uptime`` (counts do not move with load).
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
BATCH = 1000
BATCHES = 3
#: What is counted, in order: the enqueues of small calls, their events' appends, the same of
#: batches.
PHASES = ("small", "small events", "batch", "batch events")


def _driver(url: str, small: int, calls: int, control: list[str]) -> dict[str, float]:
    """In the side's process: the phases against ``url``; seconds each took."""
    import trio

    from jobtrio.backends import open_backends
    from jobtrio.config import Settings
    from jobtrio.eventlog import open_event_log
    from jobtrio.events import JobEvents
    from jobtrio.eventstream import encode_jobs
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import validate_many, validate_submission

    def dump() -> None:
        subprocess.run(control + ["-d"], check=True, capture_output=True)

    async def main() -> dict[str, float]:
        settings = Settings(redis_url=url, redis_key_prefix="cg")
        broker, store = await open_backends(settings)
        log = open_event_log(broker, settings, time.time)
        assert log is not None
        ids = IdGenerator()
        body = {"type": "noop", "payload": {"source": "bench"}}

        def jobs(n: int) -> list:
            """A batch's jobs (one time), or below 100 a group commit's: each its own POST's."""
            if n >= 100:
                now = time.time()
                made, errors = validate_many(
                    [{**body, "scheduled_at": now + 3600}] * n, now, ids=ids
                )
                assert not errors
                return made
            return [
                validate_submission(
                    {**body, "scheduled_at": time.time() + 3600}, time.time(), ids=ids
                )
                for _ in range(n)
            ]

        async def enqueue(n: int) -> list[str]:
            """The jobs' enqueue; their events' texts, to append."""
            made = jobs(n)
            stored = await broker.enqueue(made, time.time())
            events = JobEvents(
                "job.submitted", "bench", [j.event_fields() for j in stored], [time.time()] * n
            )
            return encode_jobs(events)

        for _ in range(2):
            await log.append(await enqueue(BATCH))
        for _ in range(50):
            await log.append(await enqueue(small))
        subprocess.run(control + ["-i", "on"], check=True, capture_output=True)
        took: dict[str, float] = {}
        await trio.sleep(0.5)
        dump()
        started = time.monotonic()
        await trio.sleep(IDLE_SECONDS)
        dump()
        took["idle"] = time.monotonic() - started
        for name, n, count in (("small", small, calls), ("batch", BATCH, BATCHES)):
            started = time.monotonic()
            texts = [await enqueue(n) for _ in range(count)]
            dump()
            took[name] = time.monotonic() - started
            started = time.monotonic()
            for events in texts:
                await log.append(events)
            dump()
            took[name + " events"] = time.monotonic() - started
        subprocess.run(control + ["-i", "off"], check=True, capture_output=True)
        await broker.delete_keyspace()
        await store.close()
        await broker.close()
        return took

    return trio.run(main)


def side(tree: str, small: int, calls: int, keep: str | None = None) -> dict[str, float]:
    """Instructions a job of each phase (``PHASES``) of one run."""
    counts, took = redis_callgrind.run_side(__file__, tree, [str(small), str(calls)], PHASES, keep)
    # dumps: the first half second, idle, then each phase of PHASES
    idle_rate = counts[1] / took["idle"]
    jobs = {"small": small * calls, "small events": small * calls}
    jobs |= {"batch": BATCH * BATCHES, "batch events": BATCH * BATCHES}
    return {
        phase: (counts[i] - idle_rate * took[phase]) / jobs[phase]
        for i, phase in enumerate(PHASES, start=2)
    }


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--driver":
        url, small, calls, pid = argv[1], int(argv[2]), int(argv[3]), argv[4]
        took = _driver(url, small, calls, ["callgrind_control", pid])
        print(json.dumps(took))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("pairs", type=int)
    parser.add_argument("trees", nargs="+")
    parser.add_argument("--small", type=int, default=5, help="jobs a small call (default 5)")
    parser.add_argument("--calls", type=int, default=200, help="small calls (default 200)")
    parser.add_argument("--keep", help="copy each phase's callgrind file into this folder")
    args = parser.parse_args(argv)
    results: dict[str, list[dict[str, float]]] = {tree: [] for tree in args.trees}

    def line(figures: dict[str, float]) -> str:
        small = figures["small"] + figures["small events"]
        batch = figures["batch"] + figures["batch events"]
        return (
            f"calls of {args.small}: {small:,.0f} a job ({small * args.small:,.0f} a call;"
            f" enqueue {figures['small']:,.0f}, events {figures['small events']:,.0f});"
            f" batches of {BATCH}: {batch:,.0f} a job (enqueue {figures['batch']:,.0f},"
            f" events {figures['batch events']:,.0f})"
        )

    for _ in range(args.pairs):
        for tree in args.trees:
            run = side(tree, args.small, args.calls, args.keep)
            results[tree].append(run)
            print(f"{tree}: {line(run)}", flush=True)
    for tree, runs in results.items():
        print(f"median {tree}: " + line({p: statistics.median(r[p] for r in runs) for p in PHASES}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
