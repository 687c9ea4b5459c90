"""The scenarios of ``jobtrio bench``: one function per scenario, measuring one run.

Each returns a flat dict of figures for its run; ``SCENARIOS`` says which
rows of it the table shows. The runner (``jobtrio.bench``) repeats a run
``--runs`` times and reports medians; a run starts on an emptied Redis when
the bench owns the server, on a fresh prefix otherwise, and on a fresh SQLite
file.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import trio

from ..actors.node import Node
from ..client import Client
from ..config import Settings
from .inprocess import (
    START_TYPE,
    close_bench_backends,
    drain_once,
    job_body,
    latency_once,
    open_bench_backends,
    percentile,
)
from .load import Connection, offered_load, post_rate
from .redis_server import PrivateRedis, RedisCpuMeter
from .served import Served

#: Jobs per batch request and per ``Client.submit_many`` call.
BATCH = 1000
#: The memory scenario keeps at most this many jobs submitted but not finished.
MEMORY_WINDOW = 20_000
#: Jobs scheduled this far ahead are accepted and stored but not run while measured.
LATER = 3600.0


@dataclass
class Context:
    """What every run needs: the options, a scratch directory, and the Redis if any."""

    args: argparse.Namespace
    directory: str
    redis_url: str | None
    private_redis: PrivateRedis | None

    def fresh(self) -> None:
        """Empty the bench's own Redis before a measurement (a shared one is left alone)."""
        if self.private_redis is not None:
            self.private_redis.flush()

    def node_args(self) -> argparse.Namespace:
        """The options ``inprocess.drain_once`` and ``latency_once`` read."""
        a = self.args
        return argparse.Namespace(
            backend=a.backend,
            redis_url=self.redis_url,
            jobs=a.jobs,
            workers=a.workers,
            batch=a.batch,
            prefetch=a.prefetch,
            latency_samples=a.latency_samples,
            event_consumers=a.event_consumers,
            event_stream_maxlen=a.event_stream_maxlen,
            job_body=a.job_body,
        )

    def served_node(self) -> Served:
        return Served.node(self.args.backend, self.directory, self.redis_url, self.args.workers)


def _batches(jobs: int) -> list[int]:
    return [min(BATCH, jobs - i) for i in range(0, jobs, BATCH)]


def _full_drain(ctx: Context) -> dict[str, float]:
    ctx.fresh()
    meter = RedisCpuMeter(ctx.redis_url) if ctx.redis_url else None
    try:
        return trio.run(drain_once, ctx.node_args(), ctx.directory, True, meter)
    finally:
        if meter is not None:
            meter.close()


def drain(ctx: Context) -> dict[str, float]:
    """Full-queue drain (the figure), then the drain with the producer in the process."""
    full = _full_drain(ctx)
    ctx.fresh()
    alongside = trio.run(drain_once, ctx.node_args(), ctx.directory, False)
    out = {
        "full_queue_jobs_per_s": full["drain_jobs_per_s"],
        "full_queue_first_to_last_jobs_per_s": full["first_to_last_jobs_per_s"],
        "full_queue_recorded_jobs_per_s": full["recorded_jobs_per_s"],
        "with_producer_jobs_per_s": alongside["drain_jobs_per_s"],
        "in_process_enqueue_jobs_per_s": alongside["enqueue_jobs_per_s"],
    }
    for key in ("redis_cpu_us_per_job", "redis_script_us_per_job"):
        if key in full:
            out[key] = full[key]
    if ctx.args.event_consumers:
        out["consumers_received"] = alongside["consumers_received"]
        out["consumer_drops"] = alongside["consumer_drops"]
    return out


def _later() -> dict[str, Any]:
    return {"type": "noop", "payload": {"source": "bench"}, "scheduled_at": time.time() + LATER}


def enqueue(ctx: Context) -> dict[str, float]:
    """Batch enqueue over HTTP (1,000 a request) and ``Client.submit_many`` (1,000 a call).

    The jobs are scheduled an hour ahead: the node validates, stores and
    records them but runs none while it is measured, as a queue without
    workers (BullMQ's ``addBulk`` is measured the same way).
    """
    ctx.fresh()
    with ctx.served_node() as served:
        with httpx.Client(base_url=served.url, timeout=120) as http:
            http.post("/api/v1/jobs/batch", json={"jobs": [_later()] * 10})  # warm up
            start = time.perf_counter()
            for n in _batches(ctx.args.jobs):
                response = http.post("/api/v1/jobs/batch", json={"jobs": [_later()] * n})
                if response.status_code != 201:
                    raise SystemExit(
                        f"jobtrio bench: batch refused: {response.status_code} "
                        f"{response.text[:300]}"
                    )
            http_rate = ctx.args.jobs / (time.perf_counter() - start)
        with Client(served.url, timeout=120) as client:
            client.submit_many([_later()] * 10)
            start = time.perf_counter()
            for n in _batches(ctx.args.jobs):
                client.submit_many([_later()] * n)
            client_rate = ctx.args.jobs / (time.perf_counter() - start)
    return {"http_batch_jobs_per_s": http_rate, "submit_many_jobs_per_s": client_rate}


async def _burst_once(ctx: Context) -> float:
    """Due-to-all-completed jobs/s of ``--jobs`` jobs (``--job-body``) with one ``scheduled_at``."""
    a = ctx.args
    broker, store = await open_bench_backends(a.backend, ctx.directory, ctx.redis_url)
    settings = Settings(
        worker_count=a.workers,
        node_id="bench",
        dispatch_batch=a.batch,
        dispatch_prefetch=a.prefetch,
    )
    node = Node(settings, broker, store)
    body = ctx.node_args()
    try:
        async with job_body(body, node) as job_type, trio.open_nursery() as nursery:
            await nursery.start(node.run)
            # far enough ahead for the whole enqueue (in-process: tens of thousands a second)
            due = time.time() + 1.0 + a.jobs / 5000
            for n in _batches(a.jobs):
                await node.submit_many([{"type": job_type, "scheduled_at": due}] * n)
            if time.time() >= due:
                raise SystemExit("jobtrio bench: the burst's enqueue overran its due time")
            while node.dispatcher.finished < a.jobs:
                await trio.sleep(0.005)
            done = time.time()
            node.request_stop()
            await node.stopped.wait()
            nursery.cancel_scope.cancel()
    finally:
        await close_bench_backends(broker, store)
    return a.jobs / (done - due)


def burst(ctx: Context) -> dict[str, float]:
    """A burst of due jobs, and a full-queue drain of as many in the same run for the ratio."""
    ctx.fresh()
    rate = trio.run(_burst_once, ctx)
    full = _full_drain(ctx)["drain_jobs_per_s"]
    return {"burst_jobs_per_s": rate, "drain_jobs_per_s": full, "burst_to_drain": rate / full}


async def _queue_to_start(served: Served, rate: float, count: int) -> tuple[float, float]:
    """p50 and p99 ms from each POST's send to a worker running its job, at ``rate`` jobs/s
    offered (the served node's ``bench.start`` processor answers the time it ran)."""
    body = json.dumps({"type": START_TYPE, "payload": {"source": "bench"}}).encode()
    sent = await offered_load(served.host, served.port, "/api/v1/jobs", body, rate, count)
    c = await Connection.open(served.host, served.port)
    try:
        with trio.fail_after(max(60.0, count / 100)):
            while (await c.get_json("/api/v1/stats"))["finished"] < count:
                await trio.sleep(0.02)
        waits = []
        for at, job_id in sent:
            record = await c.get_json(f"/api/v1/jobs/{job_id}")
            result = record.get("result")
            if record.get("status") != "completed" or not isinstance(result, dict):
                raise RuntimeError(f"{START_TYPE} job {job_id} did not complete: {record}")
            waits.append(float(result["started"]) - at)
    finally:
        await c.aclose()
    return percentile(waits, 0.5) * 1000, percentile(waits, 0.99) * 1000


#: The single-POST rates are measured in this many alternating slices of ours and the ceiling.
SLICES = 4


def latency(ctx: Context) -> dict[str, float]:
    """Single POSTs against the framework's ceiling, queue-to-start under load and idle.

    The node and the ceiling both serve throughout; their single-POST rates are
    taken in alternating slices, so a change in the machine's load during the
    run falls on both alike.
    """
    a = ctx.args
    later = json.dumps(_later()).encode()
    ctx.fresh()
    ours: list[float] = []
    top: list[float] = []
    with Served.ceiling() as ceiling, ctx.served_node() as served:
        for _ in range(SLICES):
            for target, rates in ((ceiling, top), (served, ours)):
                rates.append(
                    trio.run(
                        post_rate,
                        target.host,
                        target.port,
                        "/api/v1/jobs",
                        later,
                        a.clients,
                        a.post_seconds / SLICES,
                    )
                )
        ceiling.stop()
        p50, p99 = trio.run(_queue_to_start, served, a.rate, a.rate_jobs)
    ctx.fresh()
    idle = trio.run(latency_once, ctx.node_args(), ctx.directory)
    single, ceiling_rate = sum(ours) / SLICES, sum(top) / SLICES
    return {
        "single_post_jobs_per_s": single,
        "ceiling_requests_per_s": ceiling_rate,
        "post_to_ceiling": single / ceiling_rate,
        "loaded_p50_ms": p50,
        "loaded_p99_ms": p99,
        "idle_p50_ms": idle["p50_ms"],
        "idle_p99_ms": idle["p99_ms"],
    }


def memory(ctx: Context) -> dict[str, float]:
    """The served node's RSS idle and after each of ``--memory-counts`` completed jobs."""
    ctx.fresh()
    counts: list[int] = ctx.args.memory_counts
    out: dict[str, float] = {}
    with ctx.served_node() as served, httpx.Client(base_url=served.url, timeout=120) as http:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:  # let start-up allocations settle
            http.get("/api/v1/stats")
            time.sleep(0.1)
        out["rss_idle_mib"] = served.rss_bytes() / 2**20
        submitted = 0
        body = {"type": "noop"}

        def finished() -> int:
            return int(http.get("/api/v1/stats").json()["finished"])

        for target in counts:
            while submitted < target:
                n = min(BATCH, target - submitted)
                if submitted + n - finished() > MEMORY_WINDOW:
                    time.sleep(0.05)
                    continue
                response = http.post("/api/v1/jobs/batch", json={"jobs": [body] * n})
                if response.status_code != 201:
                    raise SystemExit(f"jobtrio bench: batch refused: {response.status_code}")
                submitted += n
            while finished() < target:
                time.sleep(0.05)
            out[f"rss_after_{target}_mib"] = served.rss_bytes() / 2**20
    if len(counts) >= 2:
        out["last_growth"] = (
            out[f"rss_after_{counts[-1]}_mib"] / out[f"rss_after_{counts[-2]}_mib"] - 1
        )
    return out


Row = tuple[str, str, str]


def memory_rows(counts: list[int]) -> list[Row]:
    rows: list[Row] = [("node RSS idle", "rss_idle_mib", "MiB")]
    rows += [(f"node RSS after {c:,} completed", f"rss_after_{c}_mib", "MiB") for c in counts]
    if len(counts) >= 2:
        rows.append((f"growth {counts[-2]:,} -> {counts[-1]:,}", "last_growth", "%"))
    return rows


SCENARIOS: dict[str, Callable[[Context], dict[str, float]]] = {
    "drain": drain,
    "enqueue": enqueue,
    "burst": burst,
    "latency": latency,
    "memory": memory,
}

ROWS: dict[str, list[Row]] = {
    "drain": [
        ("drain of a full queue", "full_queue_jobs_per_s", "jobs/s"),
        ("  first to last completion", "full_queue_first_to_last_jobs_per_s", "jobs/s"),
        ("  same, store caught up", "full_queue_recorded_jobs_per_s", "jobs/s"),
        ("drain, producer in the process", "with_producer_jobs_per_s", "jobs/s"),
        ("  its in-process enqueue", "in_process_enqueue_jobs_per_s", "jobs/s"),
        ("Redis CPU per job (full drain)", "redis_cpu_us_per_job", "us"),
        ("Redis time in scripts per job", "redis_script_us_per_job", "us"),
        ("event-stream events received", "consumers_received", "events"),
        ("event-stream consumer drops", "consumer_drops", "drops"),
    ],
    "enqueue": [
        ("POST /api/v1/jobs/batch, 1,000 a request", "http_batch_jobs_per_s", "jobs/s"),
        ("Client.submit_many, 1,000 a call", "submit_many_jobs_per_s", "jobs/s"),
    ],
    "burst": [
        ("burst: due to all completed", "burst_jobs_per_s", "jobs/s"),
        ("  full-queue drain, same run", "drain_jobs_per_s", "jobs/s"),
        ("  burst / drain", "burst_to_drain", "x"),
    ],
    "latency": [
        ("single POST /api/v1/jobs", "single_post_jobs_per_s", "jobs/s"),
        ("  trivial quart-trio POST (ceiling)", "ceiling_requests_per_s", "req/s"),
        ("  POST / ceiling", "post_to_ceiling", "x"),
        ("queue-to-start at offered rate, p50", "loaded_p50_ms", "ms"),
        ("queue-to-start at offered rate, p99", "loaded_p99_ms", "ms"),
        ("idle queue-to-start p50 (in process)", "idle_p50_ms", "ms"),
        ("idle queue-to-start p99 (in process)", "idle_p99_ms", "ms"),
    ],
}
