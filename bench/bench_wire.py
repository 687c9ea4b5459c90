"""What Redis script calls cost the node: process CPU per EVALSHA, and per drained job.

    python bench/bench_wire.py [CALLS] [--tasks N]
    python bench/bench_wire.py --drain incr|noop [--jobs N]

Starts a private redis-server (no persistence). The first form has N trio
tasks (default 10) each call a one-line ``INCR`` script through
``RedisConnection.script`` (the path of every Broker move, Store write and
the bench's ``--job-body incr``) until CALLS calls are done (default 20,000),
and prints calls/s and this process's CPU (user + system, ``getrusage``) per
call. The second drains a full queue of N jobs (default 20,000) as
``jobtrio bench --backend redis --scenario drain`` does (10 workers, the
given job body) and prints this process's CPU per drained job, measured
around the drain alone (the node's start and the preload left out), with
Redis's CPU per job, and the Broker's and the event log's script calls per
job during the drain (claims, finishes, event-log appends; each carries
1/that many jobs or events). Compare two source trees with PYTHONPATH, in
alternated pairs.
"""

from __future__ import annotations

import argparse
import functools
import resource
import tempfile
import time
from typing import Any

import trio

from jobtrio.backends.redis.broker import RedisBroker
from jobtrio.backends.redis.events import RedisEventLog
from jobtrio.backends.redis.wire import RedisConnection
from jobtrio.bench.inprocess import drain_once
from jobtrio.bench.redis_server import PrivateRedis, RedisCpuMeter


def cpu_seconds() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def measure(url: str, calls: int, tasks: int) -> None:
    conn = RedisConnection.from_url(url)
    script = conn.client.register_script("return redis.call('INCR', KEYS[1])")
    await conn.script(script, ["k"], [])  # loads it, opens a connection
    each = calls // tasks

    async def task() -> None:
        for _ in range(each):
            await conn.script(script, ["k"], [])

    (user0, system0), start = cpu_seconds(), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(task)
    (user1, system1), elapsed = cpu_seconds(), time.perf_counter() - start
    done = each * tasks
    user = (user1 - user0) / done * 1e6
    system = (system1 - system0) / done * 1e6
    print(
        f"{tasks} tasks: {done / elapsed:,.0f} calls/s, process CPU {user + system:.1f} us "
        f"a call (user {user:.1f}, system {system:.1f})"
    )
    await conn.close()


#: The script calls counted during a drain: (class, method) by the name printed.
COUNTED = {
    "claims": (RedisBroker, "claim"),
    "enqueue_and_claims": (RedisBroker, "enqueue_and_claim"),
    "finishes": (RedisBroker, "finish"),
    "appends": (RedisEventLog, "append"),
}


def count_calls(calls: dict[str, int]) -> None:
    """Count each call of the ``COUNTED`` methods in ``calls`` (from now on, this process)."""
    for name, (cls, method) in COUNTED.items():
        original = getattr(cls, method)

        def counting(*args: Any, _original: Any = original, _name: str = name, **kw: Any) -> Any:
            calls[_name] += 1
            return _original(*args, **kw)

        setattr(cls, method, functools.wraps(original)(counting))


class ProcessAndRedisCpu:
    """The drain's meter: this process's CPU and Redis's, per job, and script calls per job."""

    def __init__(self, url: str) -> None:
        self.redis = RedisCpuMeter(url)
        self.before = (0.0, 0.0)
        self.calls = dict.fromkeys(COUNTED, 0)
        self.calls_before = dict(self.calls)
        count_calls(self.calls)

    def start(self) -> None:
        self.redis.start()
        self.calls_before = dict(self.calls)
        self.before = cpu_seconds()

    def stop(self, jobs: int) -> dict[str, float]:
        user, system = cpu_seconds()
        out = self.redis.stop(jobs)
        out["node_user_us_per_job"] = (user - self.before[0]) / jobs * 1e6
        out["node_system_us_per_job"] = (system - self.before[1]) / jobs * 1e6
        for name, n in self.calls.items():
            out[f"{name}_per_job"] = (n - self.calls_before[name]) / jobs
        return out


def drain(url: str, body: str, jobs: int, directory: str) -> None:
    args = argparse.Namespace(
        backend="redis",
        redis_url=url,
        jobs=jobs,
        workers=10,
        batch=100,
        prefetch=-1,
        latency_samples=0,
        event_consumers=0,
        event_stream_maxlen=100_000,
        job_body=body,
    )
    meter = ProcessAndRedisCpu(url)
    try:
        result = trio.run(drain_once, args, directory, True, meter)
    finally:
        meter.redis.close()
    user, system = result["node_user_us_per_job"], result["node_system_us_per_job"]
    print(
        f"drain {body}: {result['drain_jobs_per_s']:,.0f} jobs/s, node CPU {user + system:.1f} "
        f"us a job (user {user:.1f}, system {system:.1f}), "
        f"Redis CPU {result['redis_cpu_us_per_job']:.1f} us a job; script calls a job: "
        + ", ".join(f"{name} {result[f'{name}_per_job']:.4f}" for name in COUNTED)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("calls", nargs="?", type=int, default=20_000)
    parser.add_argument("--tasks", type=int, default=10)
    parser.add_argument("--drain", choices=("incr", "noop"))
    parser.add_argument("--jobs", type=int, default=20_000)
    options = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="bench-wire-")
    redis = PrivateRedis(directory)
    try:
        if options.drain:
            drain(redis.url, options.drain, options.jobs, directory)
        else:
            trio.run(measure, redis.url, options.calls, options.tasks)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
