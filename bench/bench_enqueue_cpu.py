"""CPU per job of the enqueue path: node, client and Redis, over HTTP batches and submit_many.

    python bench/bench_enqueue_cpu.py redis://127.0.0.1:PORT 20000 4
    python bench/bench_enqueue_cpu.py redis://127.0.0.1:PORT 20000 4 /src/of/A /src/of/B ...

A served node (``jobtrio.bench.served``, as ``jobtrio bench --scenario
enqueue`` runs it) on the given Redis; noop jobs scheduled an hour ahead,
1,000 a request. Two kinds: ``http`` posts the batches to
``/api/v1/jobs/batch`` with httpx (as the bench does), ``client`` calls
``Client.submit_many``. For each: jobs/s, the served node's CPU per job
(psutil, until its event stream has written every job's event), this
process's CPU per job (the caller: body encoding, answer decoding) and
Redis's ``used_cpu_user + used_cpu_sys`` per job.

Given source trees (each holding the ``jobtrio`` package), every round runs
A, then B, ... each in its own process with that tree first on ``sys.path``
and as its working directory (the served node inherits both): alternated A/B
pairs. Quote ``uptime``.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time

import positional  # bench/positional.py: this script's folder is first on sys.path

KINDS = ("http", "client")
FIELDS = ("jobs/s", "node us/job", "client us/job", "redis us/job")
BATCH = 1000


def run(url: str, n: int) -> dict[str, list[float]]:
    import tempfile

    import httpx
    import psutil
    import redis

    from jobtrio.bench.redis_server import redis_cpu_seconds
    from jobtrio.bench.served import Served
    from jobtrio.client import Client

    rc = redis.Redis.from_url(url)
    rc.flushall()
    out: dict[str, list[float]] = {}
    later = time.time() + 3600
    job = {"type": "noop", "payload": {"source": "bench"}, "scheduled_at": later}
    with tempfile.TemporaryDirectory() as directory:
        with Served.node("redis", directory, url, 10) as served:
            node = psutil.Process(served.process.pid)
            with (
                httpx.Client(base_url=served.url, timeout=120) as http,
                Client(served.url, timeout=120) as client,
            ):
                for kind in KINDS:

                    def send(k: int, kind: str = kind) -> None:
                        if kind == "http":
                            r = http.post("/api/v1/jobs/batch", json={"jobs": [job] * k})
                            assert r.status_code == 201, r.text[:300]
                        else:
                            client.submit_many([job] * k)

                    for _ in range(2):
                        send(BATCH)  # warm up
                    time.sleep(0.3)
                    c0, r0 = node.cpu_times(), redis_cpu_seconds(rc)
                    p0, t0 = time.process_time(), time.perf_counter()
                    for _ in range(n // BATCH):
                        send(BATCH)
                    t1, p1 = time.perf_counter(), time.process_time()
                    time.sleep(0.3)  # the node's event stream writes the last batch's events
                    c1, r1 = node.cpu_times(), redis_cpu_seconds(rc)
                    node_cpu = (c1.user + c1.system) - (c0.user + c0.system)
                    out[kind] = [
                        n / (t1 - t0),
                        node_cpu / n * 1e6,
                        (p1 - p0) / n * 1e6,
                        (r1 - r0) / n * 1e6,
                    ]
    return out


def one(url: str, n: int, src: str | None) -> dict[str, list[float]]:
    if src is None:
        return run(url, n)
    # the tree is also the child's working directory: the served node is started with
    # ``python -m``, which puts its working directory first on sys.path, so started from a
    # checkout every side's node ran that checkout's code whatever PYTHONPATH said
    src = os.path.abspath(src)
    env = {**os.environ, "PYTHONPATH": src}
    text = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--one", url, str(n)],
        env=env,
        cwd=src,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(text.splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        import jobtrio

        print(jobtrio.__file__, file=sys.stderr)
        print(json.dumps(run(argv[1], int(argv[2]))))
        return
    url, (n, pairs), trees = positional.parse(__doc__, argv, ("jobs", "pairs"))
    sides: dict[str, str | None] = {"ABCDEFGH"[i]: src for i, src in enumerate(trees)}
    sides = sides or {"": None}
    res: dict[tuple[str, str], list[list[float]]] = {(s, k): [] for s in sides for k in KINDS}
    print("load:", os.getloadavg(), time.strftime("%H:%M:%S", time.gmtime()), flush=True)
    for p in range(pairs):
        for side, src in sides.items():
            r = one(url, n, src)
            for kind in KINDS:
                res[side, kind].append(r[kind])
                f = r[kind]
                print(
                    p,
                    side,
                    kind,
                    f"{f[0]:.0f} jobs/s node {f[1]:.1f} client {f[2]:.1f} redis {f[3]:.1f} us",
                    flush=True,
                )
    print("load:", os.getloadavg(), time.strftime("%H:%M:%S", time.gmtime()))
    for (side, kind), rs in res.items():
        med = [statistics.median(r[i] for r in rs) for i in range(len(FIELDS))]
        figures = ", ".join(f"{f} {m:.1f}" for f, m in zip(FIELDS, med, strict=True))
        total = med[1] + med[2] + med[3]
        print("median", side, kind, figures, f"total {total:.1f} us/job")


if __name__ == "__main__":
    main(sys.argv[1:])
