"""What one Redis script call costs the node: process CPU per EVALSHA over the wire.

    python bench/bench_wire.py [CALLS]

Starts a private redis-server (no persistence), then 10 trio tasks each call a
one-line ``INCR`` script through ``RedisConnection.script`` (the path of every
Broker move, Store write and the bench's ``--job-body incr``) until CALLS calls
are done (default 20,000), and prints calls/s and this process's CPU (user +
system, ``getrusage``) per call. Compare two checkouts with PYTHONPATH, in
alternated pairs.
"""

from __future__ import annotations

import resource
import sys
import tempfile
import time

import trio

from jobtrio.backends.redis.wire import RedisConnection
from jobtrio.bench.redis_server import PrivateRedis

TASKS = 10


async def measure(url: str, calls: int) -> None:
    conn = RedisConnection.from_url(url)
    script = conn.client.register_script("return redis.call('INCR', KEYS[1])")
    await conn.script(script, ["k"], [])  # loads it, opens a connection
    each = calls // TASKS

    async def task() -> None:
        for _ in range(each):
            await conn.script(script, ["k"], [])

    before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    async with trio.open_nursery() as nursery:
        for _ in range(TASKS):
            nursery.start_soon(task)
    after, elapsed = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter() - start
    done = each * TASKS
    user = (after.ru_utime - before.ru_utime) / done * 1e6
    system = (after.ru_stime - before.ru_stime) / done * 1e6
    print(
        f"{done / elapsed:,.0f} calls/s, process CPU {user + system:.1f} us a call "
        f"(user {user:.1f}, system {system:.1f})"
    )
    await conn.close()


def main() -> None:
    calls = int(sys.argv[1]) if len(sys.argv) > 1 else 20_000
    redis = PrivateRedis(tempfile.mkdtemp(prefix="bench-wire-"))
    try:
        trio.run(measure, redis.url, calls)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
