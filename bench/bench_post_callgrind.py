"""Instructions a single ``POST /api/v1/jobs`` in the served node (callgrind), trees alternated.

    python bench/bench_post_callgrind.py POSTS PAIRS /src/of/A /src/of/B ...
    python bench/bench_post_callgrind.py POSTS 1 ceiling

Each side serves ``python -m jobtrio.bench.child node`` (``ceiling``: the
trivial quart-trio route of the latency scenario) on a private
``redis-server``, under ``valgrind --tool=callgrind --instr-atstart=no``, its
tree first on ``sys.path``. The bench's lean client (``jobtrio.bench.load``)
sends 300 warm-up POSTs of the latency scenario's body (a noop job an hour
ahead) from 8 connections; then the node is instrumented, left idle 10 s
(dumped: its idle rate), sent POSTS POSTs (dumped), and stopped.

Under callgrind a request takes some 50 times longer, so the node's work by
the second (the claim loop's idle poll and the leader's tick, 10 Hz each)
would be counted into each request: this harness slows both to 0.2 Hz on
every side alike. Printed: instructions a POST, and the same less the idle
rate times the POSTs' duration; sides alternate in every pair, medians last.
"""

from __future__ import annotations

import glob
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

import redis_callgrind  # bench/redis_callgrind.py: this script's folder is first on sys.path

CLIENTS = 8
WARM_UP = 300
IDLE_SECONDS = 10.0


def child(argv: list[str]) -> int:
    """The served process: ``jobtrio.bench.child`` with the idle loops slowed."""
    from jobtrio.actors import leader
    from jobtrio.actors.dispatch import claims

    claims.IDLE_POLL_MAX = 5.0  # type: ignore[misc]
    init = leader.LeaderDuties.__init__

    def slow_tick(self: leader.LeaderDuties, *args: object, **kwargs: object) -> None:
        kwargs["tick"] = 5.0
        init(self, *args, **kwargs)  # type: ignore[arg-type]

    leader.LeaderDuties.__init__ = slow_tick  # type: ignore[method-assign]
    from jobtrio.bench.child import main

    return main(argv)


def side(tree: str, posts: int) -> tuple[float, float]:
    """(instructions a POST, the same less the idle rate) of one served process."""
    import trio

    from jobtrio.bench.load import Connection
    from jobtrio.bench.redis_server import PrivateRedis, free_port

    ceiling = tree == "ceiling"
    with tempfile.TemporaryDirectory(prefix="postcg") as directory:
        redis = None if ceiling else PrivateRedis(directory)
        port = free_port()
        args = ["ceiling" if ceiling else "node", "--port", str(port)]
        if redis is not None:
            args += ["--backend", "redis", "--directory", directory]
            args += ["--redis-url", redis.url, "--prefix", "postcg"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        if not ceiling:
            env["PYTHONPATH"] = tree
        process = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            + [f"--callgrind-out-file={directory}/cg.%p", sys.executable, __file__, "--child"]
            + args,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=directory,
        )
        try:
            assert process.stdout is not None
            if process.stdout.readline().strip() != b"ready":
                raise SystemExit(f"{tree}: the served process did not start")
            body = json.dumps(
                {"type": "noop", "payload": {"source": "bench"}, "scheduled_at": time.time() + 3600}
            ).encode()

            async def send(count: int) -> None:
                connections = [await Connection.open("127.0.0.1", port) for _ in range(CLIENTS)]
                request = connections[0].build("POST", "/api/v1/jobs", body)
                left = [count]

                async def client(c: Connection) -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        status, answer = await c.send(request)
                        if status != 201:
                            raise RuntimeError(f"POST: {status} {answer[:200]!r}")

                async with trio.open_nursery() as nursery:
                    for c in connections:
                        nursery.start_soon(client, c)
                for c in connections:
                    await c.aclose()

            def control(*what: str) -> None:
                subprocess.run(
                    ["callgrind_control", *what, str(process.pid)],
                    check=True,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )

            trio.run(send, WARM_UP)
            time.sleep(3)
            control("-i", "on")
            time.sleep(IDLE_SECONDS)
            control("-d")
            started = time.monotonic()
            trio.run(send, posts)
            control("-d")
            took = time.monotonic() - started
            control("-i", "off")
        finally:
            process.terminate()
            process.wait()
            if redis is not None:
                redis.stop()
        idle = redis_callgrind.totals(glob.glob(f"{directory}/cg.*.1")[0]) / IDLE_SECONDS
        busy = redis_callgrind.totals(glob.glob(f"{directory}/cg.*.2")[0])
    return busy / posts, (busy - idle * took) / posts


def main(argv: list[str]) -> int:
    if argv and argv[0] == "--child":
        return child(argv[1:])
    posts, pairs, trees = int(argv[0]), int(argv[1]), argv[2:]
    results: dict[str, list[tuple[float, float]]] = {tree: [] for tree in trees}
    for _ in range(pairs):
        for tree in trees:
            raw, less_idle = side(tree, posts)
            results[tree].append((raw, less_idle))
            print(f"{tree}: {raw:,.0f} a POST, {less_idle:,.0f} less idle", flush=True)
    for tree, runs in results.items():
        raw = statistics.median(r for r, _ in runs)
        less_idle = statistics.median(i for _, i in runs)
        print(f"median {tree}: {raw:,.0f} a POST, {less_idle:,.0f} less idle")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
