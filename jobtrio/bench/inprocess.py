"""A node in the benchmark's own process: the drains and the idle latency.

- drain: N noop jobs are queued in batches of 1000 while a node with
  WORKER_COUNT workers runs them; jobs/s is N over the time from the first
  enqueue to the last completion (the enqueue shares the process and CPU);
- preloaded drain (the full-queue drain): the same N jobs queued before the
  node starts, so jobs/s is the claim-run-finish-record path alone; also
  timed from the first completion to the last (within 5 ms), as the peers'
  drains are (``peer_scripts``), which leaves the node's start out;
- idle latency: one job at a time is submitted to an idle node and the time
  from its enqueue to its attempt start (the record's ``started_at`` minus
  ``created_at``) is collected; p50 and p99 are reported.

The node is built with the chosen backend as ``jobtrio serve`` builds it
(``open_backends``: on Redis one connection pool for broker and store), minus
HTTP. On Redis each run uses its own key prefix and deletes its keys
afterwards.

The node records its events for the event stream as ``jobtrio serve`` does
(``--event-stream-maxlen``, 0 to record none). With ``--event-consumers N``
the drains also serve the HTTP API and another process holds N websocket
consumers of ``/api/v1/events`` reading every event, so the figures include
what the stream costs the node with N readers attached.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import trio

from ..actors.node import Node
from ..backends.base import Broker, Store
from ..config import Settings
from ..processors import JobContext


async def open_bench_backends(
    kind: str, directory: str, redis_url: str | None, prefix: str | None = None
) -> tuple[Broker, Store]:
    """The Broker and Store of one run: memory, a fresh SQLite file, or a fresh Redis prefix."""
    if kind == "memory":
        from ..backends.memory import MemoryBroker, MemoryStore

        return MemoryBroker(), MemoryStore()
    if kind == "sqlite":
        from ..backends.sqlite import SqliteBroker, SqliteStore

        path = os.path.join(directory, f"bench-{time.monotonic_ns()}.db")
        return await SqliteBroker.open(path), await SqliteStore.open(path)
    if kind == "redis":
        if not redis_url:
            raise SystemExit("jobtrio bench: --backend redis needs --redis-url")
        from ..backends import open_backends

        settings = Settings(
            redis_url=redis_url, redis_key_prefix=prefix or f"bench{time.monotonic_ns()}"
        )
        return await open_backends(settings)
    raise SystemExit(f"jobtrio bench: unknown backend {kind!r}")


async def close_bench_backends(broker: Broker, store: Store) -> None:
    """Close both; on Redis delete the run's keys first (every one carries its prefix)."""
    from ..backends.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        await broker.delete_keyspace()
    await broker.close()
    await store.close()


#: The job type of ``--job-body incr``, and the command its processor sends to Redis.
INCR_TYPE = "bench.incr"
INCR_COMMAND = "INCR"


@asynccontextmanager
async def job_body(args: argparse.Namespace, node: Node) -> AsyncIterator[str]:
    """The job type a drain or a burst submits, its processor registered on ``node``.

    ``noop`` returns at once. ``incr`` (the default on Redis) is ``bench.incr``:
    one plain ``INCR`` on the bench's Redis over a connection of its own (the
    wire's pipelined one, ``RedisConnection.command``), the one round trip and
    the one command every peer's job body sends (``peer_scripts``), so that the
    drains compare like for like. The counter must reach the jobs run, or the
    run fails: a body that did not run would flatter the figure.
    """
    if args.job_body != "incr":
        yield "noop"
        return
    from ..backends.redis.wire import RedisConnection

    connection = RedisConnection.from_url(args.redis_url)
    key = f"benchincr{time.monotonic_ns()}"

    async def incr(ctx: Any) -> None:
        await connection.command(INCR_COMMAND, key)

    node.registry.register(INCR_TYPE, incr)
    try:
        yield INCR_TYPE
        counted = int(await connection.command("GET", key) or 0)
        if counted < args.jobs:
            raise RuntimeError(f"{INCR_TYPE} ran {counted} of {args.jobs} jobs")
    finally:
        await connection.command("DEL", key)
        await connection.close()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _serve_consumers(nursery: trio.Nursery, node: Node, consumers: int) -> trio.Process:
    """Serve the node's API here and start ``consumers`` websocket readers in another process."""
    import functools

    from hypercorn.trio import serve as hypercorn_serve

    from ..api.app import create_app
    from ..server import hypercorn_config

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = hypercorn_config(node.settings, "127.0.0.1", port)
    config.graceful_timeout = 0.1
    await nursery.start(functools.partial(hypercorn_serve, create_app(node), config))
    url = f"ws://127.0.0.1:{port}/api/v1/events"
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "jobtrio.bench",
            "--consume",
            url,
            "--event-consumers",
            str(consumers),
        ],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    ready = b""
    with trio.fail_after(30):
        while b"ready" not in ready:
            chunk = await process.stdout.receive_some(100)
            if not chunk:
                raise SystemExit("jobtrio bench: the consumers' process ended early")
            ready += chunk
    return process


async def consume(url: str, consumers: int) -> None:
    """``--consume``: hold ``consumers`` websocket readers on ``url`` until terminated.

    Each reads every event; one dropped for being slow (4001) reconnects from
    the last id it saw, as the Python client does. At SIGTERM it prints what
    each received and how often it was dropped.
    """
    from trio_websocket import ConnectionClosed, open_websocket_url

    received = [0] * consumers
    drops = [0] * consumers

    async def reader(i: int, task_status: trio.TaskStatus[None]) -> None:
        last = None
        while True:
            query = "?lines=true" + (f"&since={last}" if last else "")
            async with open_websocket_url(url + query) as ws:
                await ws.get_message()  # stream.ready: subscribed
                if last is None:
                    task_status.started()
                try:
                    while True:
                        message = await ws.get_message()
                        lines = message.split("\n")
                        received[i] += len(lines)
                        last = json.loads(lines[-1]).get("id") or last
                except ConnectionClosed as exc:
                    if exc.reason.code != 4001:
                        await trio.sleep_forever()  # the node stopped: wait for SIGTERM
                    drops[i] += 1

    async with trio.open_nursery() as nursery:
        for i in range(consumers):
            await nursery.start(reader, i)
        print("ready", flush=True)
        with trio.open_signal_receiver(signal.SIGTERM) as signals:
            async for _ in signals:
                break
        print(json.dumps({"received": received, "drops": drops}), flush=True)
        nursery.cancel_scope.cancel()


class Meter(Protocol):
    """Something measured around the drain alone (Redis CPU): ``start`` then ``stop``."""

    def start(self) -> None: ...

    def stop(self, jobs: int) -> dict[str, float]: ...


async def drain_once(
    args: argparse.Namespace,
    directory: str,
    preload: bool = False,
    meter: Meter | None = None,
) -> dict[str, float]:
    broker, store = await open_bench_backends(args.backend, directory, args.redis_url)
    settings = Settings(
        worker_count=args.workers,
        node_id="bench",
        dispatch_batch=args.batch,
        dispatch_prefetch=args.prefetch,
        event_stream_maxlen=args.event_stream_maxlen,
    )
    node = Node(settings, broker, store)
    consumers: trio.Process | None = None

    async def enqueue(job_type: str) -> None:
        for i in range(0, args.jobs, 1000):
            await node.submit_many([{"type": job_type}] * min(1000, args.jobs - i))

    try:
        async with job_body(args, node) as job_type:
            start = time.perf_counter()
            if preload:
                await enqueue(job_type)  # the node is not running: nothing is claimed yet
                start = time.perf_counter()
            if meter is not None:
                meter.start()
            async with trio.open_nursery() as nursery:
                await nursery.start(node.run)
                if args.event_consumers:
                    consumers = await _serve_consumers(nursery, node, args.event_consumers)
                    start = time.perf_counter() if not preload else start
                if not preload:
                    await enqueue(job_type)
                enqueued = time.perf_counter()
                first = math.nan  # a short drain may end before a poll sees one done
                while (finished := node.dispatcher.finished) < args.jobs:
                    if finished and math.isnan(first):
                        first = time.perf_counter()
                    await trio.sleep(0.001 if math.isnan(first) else 0.005)
                drained = time.perf_counter()
                metered = meter.stop(args.jobs) if meter is not None else {}
                await node.recorder.flush(60)
                recorded = time.perf_counter()
                report: dict[str, Any] = {}
                if consumers is not None:
                    consumers.terminate()
                    assert consumers.stdout is not None
                    output = b""
                    with trio.move_on_after(10):
                        while chunk := await consumers.stdout.receive_some(65536):
                            output += chunk
                    await consumers.wait()
                    report = json.loads(output.decode().strip().splitlines()[-1])
                node.request_stop()
                await node.stopped.wait()
                nursery.cancel_scope.cancel()
    finally:
        if consumers is not None and consumers.returncode is None:
            consumers.kill()
        await close_bench_backends(broker, store)
    return {
        "jobs": args.jobs,
        "enqueue_jobs_per_s": args.jobs / (enqueued - start) if not preload else math.nan,
        "drain_jobs_per_s": args.jobs / (drained - start),
        # as the peers' drains are timed: from the first completion to the last
        "first_to_last_jobs_per_s": (args.jobs - 1) / (drained - first),
        "recorded_jobs_per_s": args.jobs / (recorded - start),
        "events_recorded": node.event_stream.recorded,
        "consumers_received": sum(report.get("received", [])),
        "consumer_drops": sum(report.get("drops", [])),
        **metered,
    }


#: The job type the loaded queue-to-start submits to the served node (``child``): its
#: result is the wall-clock time a worker began running it. A job's ``started_at`` is
#: when its claim was asked for, before the claim's round trip, and a node whose
#: workers wait asks that claim with the enqueue: it would flatter the figure.
START_TYPE = "bench.start"


async def started_now(ctx: JobContext) -> dict[str, float]:
    return {"started": time.time()}


#: The job type the idle latency submits: its processor notes when a worker runs it.
LATENCY_TYPE = "bench.latency"


async def latency_once(args: argparse.Namespace, directory: str) -> dict[str, float]:
    """Single jobs submitted one at a time to an idle node, each timed from the submit
    call to its processor running on a worker (the real start: a job's ``started_at``
    is the time its claim was asked for, before the claim's round trip)."""
    broker, store = await open_bench_backends(args.backend, directory, args.redis_url)
    settings = Settings(worker_count=args.workers, node_id="bench")
    node = Node(settings, broker, store)
    started: list[float] = []

    async def mark(ctx: JobContext) -> None:
        started.append(time.perf_counter())

    node.registry.register(LATENCY_TYPE, mark)
    waits: list[float] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(0.2)  # let the node settle into its idle poll
            for _ in range(args.latency_samples):
                before = node.dispatcher.finished
                sent = time.perf_counter()
                await node.submit({"type": LATENCY_TYPE})
                while node.dispatcher.finished == before:
                    await trio.sleep(0.0005)
                waits.append(started[-1] - sent)
                await trio.sleep(0.01)  # idle again before the next one
            node.request_stop()
    finally:
        await close_bench_backends(broker, store)
    return {
        "p50_ms": percentile(waits, 0.5) * 1000,
        "p99_ms": percentile(waits, 0.99) * 1000,
    }
