"""``jobtrio bench``: drain throughput and queue-to-start latency of one node.

Three measurements, each repeated and reported as the median of the runs:

- drain: N noop jobs are queued in batches of 1000 while a node with
  WORKER_COUNT workers runs them; jobs/s is N over the time from the first
  enqueue to the last completion (the enqueue shares the process and CPU);
- preloaded drain: the same N jobs queued before the node starts, so jobs/s
  is the claim-run-finish-record path alone;
- idle latency: one job at a time is submitted to an idle node and the time
  from its enqueue to its attempt start (the record's ``started_at`` minus
  ``created_at``) is collected; p50 and p99 are reported.

The node runs in this process with the chosen backend (embedded SQLite by
default), built by ``open_backends`` exactly as ``jobtrio serve`` builds it
(on Redis: one connection pool for broker and store), minus HTTP. On Redis
each run uses its own key prefix and deletes its keys afterwards.

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
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import trio

from .actors.node import Node
from .backends.base import Broker, Store
from .config import Settings


async def _backends(kind: str, directory: str, redis_url: str | None) -> tuple[Broker, Store]:
    if kind == "memory":
        from .backends.memory import MemoryBroker, MemoryStore

        return MemoryBroker(), MemoryStore()
    if kind == "sqlite":
        from .backends.sqlite import SqliteBroker, SqliteStore

        path = os.path.join(directory, f"bench-{time.monotonic_ns()}.db")
        return await SqliteBroker.open(path), await SqliteStore.open(path)
    if kind == "redis":
        if not redis_url:
            raise SystemExit("jobtrio bench: --backend redis needs --redis-url")
        from .backends import open_backends

        settings = Settings(redis_url=redis_url, redis_key_prefix=f"bench{time.monotonic_ns()}")
        return await open_backends(settings)
    raise SystemExit(f"jobtrio bench: unknown backend {kind!r}")


async def _close(broker: Broker, store: Store) -> None:
    """Close both; on Redis delete the run's keys first (every one carries its prefix)."""
    from .backends.redis import RedisBroker

    if isinstance(broker, RedisBroker):
        await broker.delete_keyspace()
    await broker.close()
    await store.close()


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _serve_consumers(nursery: trio.Nursery, node: Node, consumers: int) -> trio.Process:
    """Serve the node's API here and start ``consumers`` websocket readers in another process."""
    import functools

    from hypercorn.trio import serve as hypercorn_serve

    from .api.app import create_app
    from .server import hypercorn_config

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


async def drain_once(
    args: argparse.Namespace, directory: str, preload: bool = False
) -> dict[str, float]:
    broker, store = await _backends(args.backend, directory, args.redis_url)
    settings = Settings(
        worker_count=args.workers,
        node_id="bench",
        dispatch_batch=args.batch,
        dispatch_prefetch=args.prefetch,
        event_stream_maxlen=args.event_stream_maxlen,
    )
    node = Node(settings, broker, store)
    consumers: trio.Process | None = None

    async def enqueue() -> None:
        for i in range(0, args.jobs, 1000):
            await node.submit_many([{"type": "noop"}] * min(1000, args.jobs - i))

    try:
        start = time.perf_counter()
        if preload:
            await enqueue()  # the node is not running: nothing is claimed yet
            start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            if args.event_consumers:
                consumers = await _serve_consumers(nursery, node, args.event_consumers)
                start = time.perf_counter() if not preload else start
            if not preload:
                await enqueue()
            enqueued = time.perf_counter()
            while node.dispatcher.finished < args.jobs:
                await trio.sleep(0.005)
            drained = time.perf_counter()
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
        await _close(broker, store)
    return {
        "jobs": args.jobs,
        "enqueue_jobs_per_s": args.jobs / (enqueued - start) if not preload else math.nan,
        "drain_jobs_per_s": args.jobs / (drained - start),
        "recorded_jobs_per_s": args.jobs / (recorded - start),
        "events_recorded": node.event_stream.recorded,
        "consumers_received": sum(report.get("received", [])),
        "consumer_drops": sum(report.get("drops", [])),
    }


async def latency_once(args: argparse.Namespace, directory: str) -> dict[str, float]:
    broker, store = await _backends(args.backend, directory, args.redis_url)
    settings = Settings(worker_count=args.workers, node_id="bench")
    node = Node(settings, broker, store)
    waits: list[float] = []
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(0.2)  # let the node settle into its idle poll
            for _ in range(args.latency_samples):
                before = node.dispatcher.finished
                job = await node.submit({"type": "noop"})
                while node.dispatcher.finished == before:
                    await trio.sleep(0.0005)
                done = await node.broker.get(job.id)
                assert done is not None and done.started_at is not None
                waits.append(done.started_at - done.created_at)
                await trio.sleep(0.01)  # idle again before the next one
            node.request_stop()
    finally:
        await _close(broker, store)
    return {
        "p50_ms": _percentile(waits, 0.5) * 1000,
        "p99_ms": _percentile(waits, 0.99) * 1000,
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as directory:
        drains = [await drain_once(args, directory) for _ in range(args.runs)]
        preloaded = [await drain_once(args, directory, preload=True) for _ in range(args.runs)]
        latencies = [await latency_once(args, directory) for _ in range(args.runs)]

    def median(rows: list[dict[str, float]], key: str) -> float:
        return statistics.median(r[key] for r in rows)

    return {
        "backend": args.backend,
        "workers": args.workers,
        "jobs": args.jobs,
        "runs": args.runs,
        "enqueue_jobs_per_s": median(drains, "enqueue_jobs_per_s"),
        "drain_jobs_per_s": median(drains, "drain_jobs_per_s"),
        "recorded_jobs_per_s": median(drains, "recorded_jobs_per_s"),
        "preloaded_drain_jobs_per_s": median(preloaded, "drain_jobs_per_s"),
        "idle_queue_to_start_p50_ms": median(latencies, "p50_ms"),
        "idle_queue_to_start_p99_ms": median(latencies, "p99_ms"),
        "per_run": {"drain": drains, "preloaded": preloaded, "latency": latencies},
    }


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (0 jobs or runs measure nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=["sqlite", "memory", "redis"], default="sqlite")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--jobs", type=_at_least_one, default=20_000)
    parser.add_argument("--workers", type=_at_least_one, default=10)
    parser.add_argument("--batch", type=_at_least_one, default=100, help="DISPATCH_BATCH")
    parser.add_argument(
        "--prefetch", type=int, default=-1, help="DISPATCH_PREFETCH (-1: automatic)"
    )
    parser.add_argument("--runs", type=_at_least_one, default=3)
    parser.add_argument("--latency-samples", type=_at_least_one, default=200)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--event-consumers",
        type=int,
        default=0,
        help="websocket consumers of the event stream reading during the drains",
    )
    parser.add_argument(
        "--event-stream-maxlen",
        type=int,
        default=100_000,
        help="EVENT_STREAM_MAXLEN of the node (0: it records no events)",
    )
    parser.add_argument("--consume", metavar="URL", help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    if args.consume:
        trio.run(consume, args.consume, args.event_consumers)
        return 0
    result = trio.run(run, args)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"backend {result['backend']}, {result['workers']} workers, "
        f"{result['jobs']} noop jobs, median of {result['runs']} runs, "
        f"{args.event_consumers} event-stream consumers"
    )
    print(f"  enqueue         {result['enqueue_jobs_per_s']:>10,.0f} jobs/s")
    print(f"  drain           {result['drain_jobs_per_s']:>10,.0f} jobs/s")
    print(f"  recorded        {result['recorded_jobs_per_s']:>10,.0f} jobs/s (store caught up)")
    print(f"  drain preloaded {result['preloaded_drain_jobs_per_s']:>10,.0f} jobs/s (queue full)")
    print(
        f"  idle queue-to-start p50 {result['idle_queue_to_start_p50_ms']:.2f} ms, "
        f"p99 {result['idle_queue_to_start_p99_ms']:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="jobtrio bench")
    add_arguments(p)
    sys.exit(main(p.parse_args()))
