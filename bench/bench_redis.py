"""One node on Redis: drain, idle latency, and enqueue over HTTP and the Python client.

    python bench/bench_redis.py                    # N=50,000, 3 runs, medians
    python bench/bench_redis.py --appendonly no    # Redis without persistence
    python bench/bench_redis.py --jobs 20000 --runs 5 --json

It starts its own ``redis-server`` on a free port in a temporary directory
(AOF on, ``appendfsync everysec``: the realistic durable setting) and, in
each of ``--runs`` runs, on an emptied server:

- drain: ``--jobs`` noop jobs submitted in batches of 1000 to a Node in this
  process while it runs them, exactly as ``jobtrio bench`` does; jobs/s from
  the first enqueue to the last completion;
- preloaded drain: the same jobs queued before the node starts (the claim,
  run, finish and record path alone);
- idle queue-to-start: ``--latency-samples`` single jobs, each submitted to an
  idle node; p50 and p99 of the record's ``started_at - created_at``;
- HTTP batch enqueue: a ``jobtrio serve`` subprocess on the same Redis;
  ``--batches`` POSTs to ``/api/v1/jobs/batch`` of 1000 jobs each;
- client enqueue: ``jobtrio.client.Client.submit_many`` (1000 jobs a call),
  and single ``Client.submit`` calls, one after another and from
  ``--threads`` threads with a client each.

The enqueue measurements submit jobs scheduled an hour ahead, so the node
accepts and records them but runs nothing (``--run-jobs``: noop jobs that
run as they arrive, which takes CPU from the acceptance on a small machine).
Medians of the runs are printed as a table. Everything shares the machine:
the client and the node take CPU from each other and from Redis.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import redis
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from jobtrio.bench import inprocess as node_bench  # noqa: E402
from jobtrio.client import Client  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A private redis-server; ``flush`` empties it between runs."""

    def __init__(self, directory: str, appendonly: bool) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("bench_redis: redis-server is not on the PATH")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "everysec"]
            if appendonly
            else ["--appendonly", "no"]
        )
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + persistence
            + ["--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("bench_redis: redis-server did not start") from None
                time.sleep(0.05)

    def flush(self) -> None:
        self.client.flushall()
        if self.client.config_get("appendonly").get("appendonly") == "yes":
            self._wait_for_rewrite()
            try:
                self.client.bgrewriteaof()  # keep the AOF from growing run after run
            except redis.ResponseError:
                pass  # Redis started one of its own meanwhile: as good
            self._wait_for_rewrite()

    def _wait_for_rewrite(self) -> None:
        while True:
            info = self.client.info("persistence")
            if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                return
            time.sleep(0.05)

    def cpu_seconds(self) -> float:
        info = self.client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def stop(self) -> None:
        self.client.close()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Serve:
    """``jobtrio serve`` on Redis, on free ports; stopped with SIGTERM."""

    def __init__(self, directory: str, redis_url: str, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(directory) / "serve.log"
        env = dict(os.environ)
        env.update(
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.port),
            METRICS_PORT=str(free_port()),
            REDIS_URL=redis_url,
            WORKER_COUNT=str(workers),
            NODE_ID="bench",
            LOG_LEVEL="warning",
        )
        env_file = Path(directory) / "empty.env"
        env_file.write_text("")
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "jobtrio.cli", "serve", "--env-file", str(env_file)],
                cwd=directory,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise SystemExit(f"jobtrio serve exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("jobtrio serve did not become ready in 30s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def job_body(run_jobs: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "noop", "payload": {"source": "bench"}}
    if not run_jobs:
        body["scheduled_at"] = time.time() + 3600
    return body


def http_batches(url: str, batches: int, run_jobs: bool) -> float:
    with httpx.Client(base_url=url, timeout=120) as http:
        http.post("/api/v1/jobs/batch", json={"jobs": [job_body(run_jobs)] * 10})  # warm up
        start = time.perf_counter()
        accepted = 0
        for _ in range(batches):
            response = http.post("/api/v1/jobs/batch", json={"jobs": [job_body(run_jobs)] * 1000})
            if response.status_code != 201:
                raise SystemExit(f"batch refused: {response.status_code} {response.text[:300]}")
            accepted += response.json()["count"]
        return accepted / (time.perf_counter() - start)


def client_many(url: str, batches: int, run_jobs: bool) -> float:
    with Client(url, timeout=120) as client:
        client.submit_many([job_body(run_jobs)] * 10)
        start = time.perf_counter()
        accepted = sum(len(client.submit_many([job_body(run_jobs)] * 1000)) for _ in range(batches))
        return accepted / (time.perf_counter() - start)


def client_single(url: str, count: int, threads: int, run_jobs: bool) -> float:
    """Single ``Client.submit`` calls from ``threads`` threads, each with its own client."""
    done = [0] * threads
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads + 1)

    def work(i: int) -> None:
        try:
            with Client(url, timeout=60) as client:
                client.submit("noop", {"warm": True}, delay=None if run_jobs else 3600)
                barrier.wait()
                for _ in range(count // threads):
                    client.submit("noop", {"source": "bench"}, delay=None if run_jobs else 3600)
                    done[i] += 1
        except BaseException as exc:  # reported below, never lost in a thread
            errors.append(exc)
            barrier.abort()

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    start = time.perf_counter()
    for w in workers:
        w.join()
    if errors:
        raise SystemExit(f"single submits failed: {errors[0]!r}")
    return sum(done) / (time.perf_counter() - start)


def node_args(args: argparse.Namespace, url: str) -> argparse.Namespace:
    return argparse.Namespace(
        backend="redis",
        redis_url=url,
        jobs=args.jobs,
        workers=args.workers,
        batch=args.dispatch_batch,
        prefetch=-1,
        latency_samples=args.latency_samples,
        event_consumers=0,
        event_stream_maxlen=100_000,
    )


def one_run(args: argparse.Namespace, server: RedisServer, directory: str) -> dict[str, Any]:
    nargs = node_args(args, server.url)
    out: dict[str, Any] = {}
    server.flush()
    cpu = server.cpu_seconds()
    out["drain"] = trio.run(node_bench.drain_once, nargs, directory)
    out["drain_redis_cpu_us_per_job"] = (server.cpu_seconds() - cpu) / args.jobs * 1e6
    server.flush()
    out["preloaded"] = trio.run(node_bench.drain_once, nargs, directory, True)
    server.flush()
    out["latency"] = trio.run(node_bench.latency_once, nargs, directory)
    server.flush()
    serve = Serve(directory, server.url, args.workers)
    try:
        out["http_batch_jobs_per_s"] = http_batches(serve.url, args.batches, args.run_jobs)
        out["client_many_jobs_per_s"] = client_many(serve.url, args.batches, args.run_jobs)
        out["client_single_jobs_per_s"] = client_single(serve.url, args.singles, 1, args.run_jobs)
        out["client_threads_jobs_per_s"] = client_single(
            serve.url, args.singles, args.threads, args.run_jobs
        )
    finally:
        serve.stop()
    return out


ROWS = [
    ("drain (enqueue alongside)", "drain_jobs_per_s", "jobs/s"),
    ("drain, queue preloaded", "preloaded_drain_jobs_per_s", "jobs/s"),
    ("Redis CPU per job (drain + enqueue)", "drain_redis_cpu_us_per_job", "us"),
    ("idle queue-to-start p50", "idle_p50_ms", "ms"),
    ("idle queue-to-start p99", "idle_p99_ms", "ms"),
    ("HTTP batch enqueue (1000/request)", "http_batch_jobs_per_s", "jobs/s"),
    ("Client.submit_many (1000/call)", "client_many_jobs_per_s", "jobs/s"),
    ("Client.submit, one at a time", "client_single_jobs_per_s", "jobs/s"),
    ("Client.submit, threads", "client_threads_jobs_per_s", "jobs/s"),
]


def flatten(run: dict[str, Any]) -> dict[str, float]:
    return {
        "drain_jobs_per_s": run["drain"]["drain_jobs_per_s"],
        "preloaded_drain_jobs_per_s": run["preloaded"]["drain_jobs_per_s"],
        "drain_redis_cpu_us_per_job": run["drain_redis_cpu_us_per_job"],
        "idle_p50_ms": run["latency"]["p50_ms"],
        "idle_p99_ms": run["latency"]["p99_ms"],
        "http_batch_jobs_per_s": run["http_batch_jobs_per_s"],
        "client_many_jobs_per_s": run["client_many_jobs_per_s"],
        "client_single_jobs_per_s": run["client_single_jobs_per_s"],
        "client_threads_jobs_per_s": run["client_threads_jobs_per_s"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50_000, help="noop jobs per drain")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=10, help="WORKER_COUNT")
    parser.add_argument("--dispatch-batch", type=int, default=100, help="DISPATCH_BATCH")
    parser.add_argument("--latency-samples", type=int, default=200)
    parser.add_argument("--batches", type=int, default=10, help="1000-job batches per enqueue")
    parser.add_argument("--singles", type=int, default=2000, help="single submits per run")
    parser.add_argument("--threads", type=int, default=8, help="threads for single submits")
    parser.add_argument("--appendonly", choices=["yes", "no"], default="yes")
    parser.add_argument("--run-jobs", action="store_true", help="enqueue noop jobs that run")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jobtrio-bench-redis-") as directory:
        server = RedisServer(directory, args.appendonly == "yes")
        try:
            for i in range(args.runs):
                run = one_run(args, server, directory)
                runs.append(run)
                if not args.json:
                    flat = flatten(run)
                    print(
                        f"run {i + 1}: drain {flat['drain_jobs_per_s']:,.0f} jobs/s, "
                        f"preloaded {flat['preloaded_drain_jobs_per_s']:,.0f} jobs/s, "
                        f"idle p50 {flat['idle_p50_ms']:.2f} ms, "
                        f"HTTP batch {flat['http_batch_jobs_per_s']:,.0f} jobs/s",
                        file=sys.stderr,
                    )
        finally:
            server.stop()

    flat_runs = [flatten(r) for r in runs]
    medians = {key: statistics.median(r[key] for r in flat_runs) for _, key, _ in ROWS}
    persistence = "AOF everysec" if args.appendonly == "yes" else "no persistence"
    summary = {
        "medians": medians,
        "runs": args.runs,
        "jobs": args.jobs,
        "workers": args.workers,
        "redis": persistence,
        "enqueued_jobs": "run as they arrive" if args.run_jobs else "scheduled an hour ahead",
        "cpus": os.cpu_count(),
        "per_run": runs,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(
        f"one node on Redis ({persistence}), {args.workers} workers, {os.cpu_count()} CPUs, "
        f"{args.jobs:,} noop jobs a drain, median of {args.runs} runs"
    )
    width = max(len(label) for label, _, _ in ROWS)
    print(f"  {'measure':<{width}}  {'median':>10}  unit    runs")
    for label, key, unit in ROWS:
        values = "  ".join(f"{r[key]:.2f}" if unit == "ms" else f"{r[key]:,.0f}" for r in flat_runs)
        value = medians[key]
        shown = f"{value:.2f}" if unit == "ms" else f"{value:,.0f}"
        print(f"  {label:<{width}}  {shown:>10}  {unit:<6}  {values}")
    accepted = "accepted only" if not args.run_jobs else "run as they arrive"
    print(f"  (enqueue rows: jobs {accepted}; client and node share the machine)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
