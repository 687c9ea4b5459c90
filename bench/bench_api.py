"""How fast one node accepts jobs over HTTP: single POSTs and batches.

    python bench/bench_api.py                  # 3 runs, medians
    python bench/bench_api.py --scheduled      # jobs that wait: API + enqueue only
    python bench/bench_api.py --json

It starts ``jobtrio serve`` as a subprocess on free ports with its SQLite
file in a temporary directory (the embedded default, nothing else needed),
then measures, in each of ``--runs`` runs:

- single: ``--concurrency`` trio tasks sharing one httpx connection pool
  POST one job each, back to back, for ``--duration`` seconds;
  requests/s is the 201s counted over the elapsed time;
- batch: ``--batches`` requests of ``--batch-size`` jobs each to
  ``/api/v1/jobs/batch``, one after another; jobs/s is the jobs accepted over
  the elapsed time.

Medians of the runs are printed. By default the jobs are ``noop`` and run as
they arrive, so the node accepts and processes at once, as in production;
``--scheduled`` submits them an hour ahead to measure acceptance alone. The
client shares the machine with the node, so on a small machine it takes
CPU from it: the figures are a floor, not a ceiling. No ``wrk`` is needed;
with ``--wrk`` (and wrk installed) single POSTs are also measured by wrk,
whose client costs far less CPU.
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
import time
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Node:
    """``jobtrio serve`` on free ports, in its own directory; stopped with SIGTERM."""

    def __init__(self, directory: str, workers: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(directory) / "serve.log"
        env = dict(os.environ)
        env.update(
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.port),
            METRICS_PORT=str(free_port()),
            SQLITE_PATH=str(Path(directory) / "bench.db"),
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

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"jobtrio serve exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(f"{self.url}/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise SystemExit(f"jobtrio serve did not become ready in {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def job_body(scheduled: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "noop", "payload": {"source": "bench"}}
    if scheduled:
        body["scheduled_at"] = time.time() + 3600
    return body


async def single_posts(
    url: str, concurrency: int, duration: float, scheduled: bool
) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    done = 0
    failed = 0
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        # warm up the connections and the node's code paths
        for _ in range(2 * concurrency):
            await client.post("/api/v1/jobs", json=job_body(scheduled))
        start = trio.current_time()
        deadline = start + duration

        async def worker() -> None:
            nonlocal done, failed
            while trio.current_time() < deadline:
                response = await client.post("/api/v1/jobs", json=job_body(scheduled))
                if response.status_code == 201:
                    done += 1
                else:
                    failed += 1

        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(worker)
        elapsed = trio.current_time() - start
    if failed:
        raise SystemExit(f"{failed} single POSTs were refused")
    return {"requests": done, "seconds": elapsed, "requests_per_s": done / elapsed}


WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = '%s'
wrk.headers["Content-Type"] = "application/json"
"""


def wrk_posts(url: str, concurrency: int, duration: float, scheduled: bool) -> dict[str, float]:
    """The same single POSTs from wrk (C, one thread): less client CPU taken from the node."""
    body = json.dumps(job_body(scheduled))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % body)
    try:
        result = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(duration))}s",
                "-s",
                script.name,
                f"{url}/api/v1/jobs",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        os.unlink(script.name)
    if "Non-2xx" in result.stdout:
        raise SystemExit(f"wrk saw refused POSTs:\n{result.stdout}")
    rate = float(result.stdout.split("Requests/sec:")[1].split()[0])
    return {"requests_per_s": rate}


async def batch_posts(url: str, size: int, count: int, scheduled: bool) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        await client.post("/api/v1/jobs/batch", json={"jobs": [job_body(scheduled)] * 10})
        start = trio.current_time()
        accepted = 0
        for _ in range(count):
            response = await client.post(
                "/api/v1/jobs/batch", json={"jobs": [job_body(scheduled)] * size}
            )
            if response.status_code != 201:
                raise SystemExit(f"batch refused: {response.status_code} {response.text[:300]}")
            accepted += response.json()["count"]
        elapsed = trio.current_time() - start
    return {"jobs": accepted, "seconds": elapsed, "jobs_per_s": accepted / elapsed}


async def one_run(args: argparse.Namespace, url: str) -> dict[str, Any]:
    single = await single_posts(url, args.concurrency, args.duration, args.scheduled)
    batch = await batch_posts(url, args.batch_size, args.batches, args.scheduled)
    return {"single": single, "batch": batch}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of single POSTs")
    parser.add_argument("--concurrency", type=int, default=8, help="tasks posting at once")
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--workers", type=int, default=10, help="WORKER_COUNT of the node")
    parser.add_argument("--scheduled", action="store_true", help="jobs wait an hour: no work")
    parser.add_argument(
        "--wrk", action="store_true", help="also measure single POSTs with wrk (if installed)"
    )
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.wrk and shutil.which("wrk") is None:
        parser.error("--wrk needs wrk on the PATH (apt-get install wrk)")

    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="jobtrio-bench-") as directory:
        node = Node(directory, args.workers)
        try:
            node.wait_ready()
            for i in range(args.runs):
                result = trio.run(one_run, args, node.url)
                if args.wrk:
                    result["wrk"] = wrk_posts(
                        node.url, args.concurrency, args.duration, args.scheduled
                    )
                runs.append(result)
                if not args.json:
                    extra = (
                        f", wrk {result['wrk']['requests_per_s']:,.0f} req/s" if args.wrk else ""
                    )
                    print(
                        f"run {i + 1}: single {result['single']['requests_per_s']:,.0f} req/s, "
                        f"batch {result['batch']['jobs_per_s']:,.0f} jobs/s{extra}",
                        file=sys.stderr,
                    )
        finally:
            node.stop()

    summary = {
        "single_post_requests_per_s": statistics.median(
            r["single"]["requests_per_s"] for r in runs
        ),
        "batch_jobs_per_s": statistics.median(r["batch"]["jobs_per_s"] for r in runs),
        "wrk_single_post_requests_per_s": statistics.median(
            r["wrk"]["requests_per_s"] for r in runs
        )
        if args.wrk
        else None,
        "runs": args.runs,
        "concurrency": args.concurrency,
        "batch_size": args.batch_size,
        "batches": args.batches,
        "workers": args.workers,
        "scheduled": args.scheduled,
        "cpus": os.cpu_count(),
        "per_run": runs,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    mode = "accept only (scheduled jobs)" if args.scheduled else "accept and run (noop jobs)"
    print(f"one node, SQLite, {mode}, {os.cpu_count()} CPUs, median of {args.runs} runs")
    print(
        f"  single POST   {summary['single_post_requests_per_s']:>9,.0f} requests/s"
        f"  ({args.concurrency} concurrent tasks, {args.duration:g}s each run)"
    )
    if args.wrk:
        print(
            f"  single POST   {summary['wrk_single_post_requests_per_s']:>9,.0f} requests/s"
            f"  (wrk, {args.concurrency} connections)"
        )
    print(
        f"  batch submit  {summary['batch_jobs_per_s']:>9,.0f} jobs/s"
        f"  ({args.batches} x {args.batch_size} jobs per run)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
