"""What one script call costs the node on each way jobtrio could reach Redis from trio.

    python bench/bench_redis_clients.py --redis-url redis://127.0.0.1:6379/0
    python bench/bench_redis_clients.py --calls 5000 --json

The question it answers: could redis-py's own asyncio client replace the
connection jobtrio writes itself (``jobtrio/backends/redis/wire.py``)?
redis-py's asyncio client needs an asyncio loop, which trio is not; the only
way to run it inside a trio program is ``trio-asyncio`` (an asyncio loop on
top of trio), measured here when it is installed (``pip install
trio-asyncio``; jobtrio does not depend on it).

Each way runs the same EVALSHA (a script that hands back its argument) one
call after another: a small call (100 bytes each way) and a batch-sized one
(40 KB each way, about what claiming or finishing 100 jobs moves). Figures
are CPU microseconds of this process per call (``time.process_time``, which
other processes on the machine disturb much less than wall time) and wall
microseconds per call, the best of ``--repeats``.

- ``wire``: trio's own sockets and hiredis (what jobtrio uses for scripts);
- ``threads``: redis-py's sync client through ``trio.to_thread`` (jobtrio's
  path for TLS, Sentinel and other commands);
- ``asyncio-on-trio``: redis-py's asyncio client under ``trio-asyncio``;
- ``asyncio-native``: the same client on a plain asyncio loop, for reference
  (not a way for a trio program).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import redis
import redis.asyncio
import trio

from jobtrio.backends.redis.wire import RedisConnection, WireOptions

ECHO = "return ARGV[1]"


def _measure(calls: int, repeats: int, once: Callable[[], Any]) -> tuple[float, float]:
    """Best CPU and wall microseconds per call of ``calls`` sequential calls."""
    best_cpu = best_wall = float("inf")
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        once()
        best_cpu = min(best_cpu, (time.process_time() - cpu) / calls * 1e6)
        best_wall = min(best_wall, (time.perf_counter() - wall) / calls * 1e6)
    return best_cpu, best_wall


async def _loop(calls: int, call: Callable[[], Awaitable[Any]], arg: str) -> None:
    for _ in range(calls):
        reply = await call()
        assert len(reply) == len(arg)


def trio_way(url: str, arg: str, calls: int, repeats: int, threads: bool) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        connection = RedisConnection.from_url(url)
        if threads:
            connection = RedisConnection(connection.client)  # no WireOptions: threads
        assert (connection.wire is None) == threads
        script = connection.client.register_script(ECHO)

        async def call() -> Any:
            return await connection.script(script, ["k"], [arg])

        results = []
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            await _loop(calls, call, arg)
            results.append(
                (
                    (time.process_time() - cpu) / calls * 1e6,
                    (time.perf_counter() - wall) / calls * 1e6,
                )
            )
        await connection.close()
        return min(r[0] for r in results), min(r[1] for r in results)

    return trio.run(main)


def asyncio_native(url: str, arg: str, calls: int, repeats: int) -> tuple[float, float]:
    async def main() -> tuple[float, float]:
        client = redis.asyncio.Redis.from_url(url)
        script = client.register_script(ECHO)

        async def call() -> Any:
            return await script(keys=["k"], args=[arg])

        results = []
        for _ in range(repeats):
            cpu, wall = time.process_time(), time.perf_counter()
            await _loop(calls, call, arg)
            results.append(
                (
                    (time.process_time() - cpu) / calls * 1e6,
                    (time.perf_counter() - wall) / calls * 1e6,
                )
            )
        await client.aclose()
        return min(r[0] for r in results), min(r[1] for r in results)

    return asyncio.run(main())


def asyncio_directly_on_trio(url: str) -> str:
    """What happens when redis-py's asyncio client is awaited from trio as it is."""

    async def main() -> None:
        client = redis.asyncio.Redis.from_url(url)
        await client.ping()

    try:
        trio.run(main)
    except BaseException as exc:  # the point is to report what it raised
        return f"{type(exc).__name__}: {exc}"[:200]
    return "it worked"


def asyncio_on_trio(url: str, arg: str, calls: int, repeats: int) -> tuple[float, float] | None:
    try:
        import trio_asyncio  # type: ignore[import-not-found]
    except ImportError:
        return None

    async def main() -> tuple[float, float]:
        async with trio_asyncio.open_loop():
            client = redis.asyncio.Redis.from_url(url)
            script = client.register_script(ECHO)

            async def call() -> Any:
                return await trio_asyncio.aio_as_trio(script)(keys=["k"], args=[arg])

            results = []
            for _ in range(repeats):
                cpu, wall = time.process_time(), time.perf_counter()
                await _loop(calls, call, arg)
                results.append(
                    (
                        (time.process_time() - cpu) / calls * 1e6,
                        (time.perf_counter() - wall) / calls * 1e6,
                    )
                )
            await trio_asyncio.aio_as_trio(client.aclose)()
            return min(r[0] for r in results), min(r[1] for r in results)

    return trio.run(main)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if WireOptions.from_url(args.redis_url) is None:
        raise SystemExit("bench_redis_clients: --redis-url must be a plain redis:// URL")
    out: dict[str, Any] = {"directly_on_trio": asyncio_directly_on_trio(args.redis_url)}
    for name, size in (("small", 100), ("batch", 40_000)):
        arg = "x" * size
        calls = args.calls if size < 1000 else max(1, args.calls // 5)
        rows = {
            "wire": trio_way(args.redis_url, arg, calls, args.repeats, threads=False),
            "threads": trio_way(args.redis_url, arg, calls, args.repeats, threads=True),
            "asyncio-on-trio": asyncio_on_trio(args.redis_url, arg, calls, args.repeats),
            "asyncio-native": asyncio_native(args.redis_url, arg, calls, args.repeats),
        }
        out[name] = {
            k: None if v is None else {"cpu_us": v[0], "wall_us": v[1]} for k, v in rows.items()
        }
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    print(f"redis-py's asyncio client awaited from trio as it is: {out['directly_on_trio']}")
    for name in ("small", "batch"):
        print(f"{name} call (CPU us / wall us per call, best of {args.repeats}):")
        for way, v in out[name].items():
            text = (
                "not installed (pip install trio-asyncio)"
                if v is None
                else (f"{v['cpu_us']:8.1f} / {v['wall_us']:8.1f}")
            )
            print(f"  {way:16s} {text}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
