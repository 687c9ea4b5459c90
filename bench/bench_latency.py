"""Where queue-to-start goes: each single POST's time split, the node's CPU, its long stalls.

    python bench/bench_latency.py [--rate 250] [--jobs 2500] [--instrument FILE]
    python bench/bench_latency.py --in-process [--rate 250] [--jobs 2000]

The first form serves a node as ``jobtrio bench --scenario latency`` does
(``jobtrio.bench.served``: hypercorn in a process of its own, on a private
redis-server), offers ``--jobs`` single ``POST /api/v1/jobs`` at ``--rate``
a second after 500 to warm up, each sent on a keep-alive connection as the
scenario's client does, and prints queue-to-start (the client's send to the
wall-clock time a worker ran the job: its ``bench.start`` processor answers
it, as in the scenario) p50 and p99 with its parts: the send to the route's
validation (``created_at``: hypercorn and Quart), the validation to the
worker's start, and the start to the answer read by the client (negative
when the answer came first); the node's CPU (user + system) and Redis's per
job; and, for the worst 1%, whether they came in clusters (a stall of the
whole node) or one by one.

``--instrument FILE`` runs the node with a trio Instrument that writes to
FILE every scheduler batch (from the end of one I/O wait to the start of the
next) longer than 3 ms: its wall time, this thread's CPU time in it, the
tasks that ran longest, garbage collections over 0.5 ms, major page faults
and involuntary context switches; and a histogram of batch lengths. A batch
whose wall time is far above its CPU time, without faults or context
switches, is time the process's CPU was not running it at all.

``--in-process`` drives one node in this process (no HTTP) with single
``Node.submit`` calls at the rate, each in a task of its own, and times each
from the call to its processor running on a worker (the real start, later
than ``started_at`` by the claim's round trip), with this process's CPU and
Redis's per job and the Broker calls per job by operation.

``--in-process --hops`` submits one job at a time to the idle node (as the
latency scenario's idle rows do) and prints, for each hop of its way, the
median time from the submit call: the group commit's enqueue and its batch,
the claim lent, the Broker's call, the wire's request, its yield before the
send, the send, the wait for the reply and its reading, the Broker's answer,
the leases dealt, the submitter going on and the processor running; then
Redis's own time for each script (its SLOWLOG, every call logged). The
marks cost about 1 us each (they wrap the methods from outside).

Compare two source trees with PYTHONPATH, in alternated pairs; on a loaded
machine run under ``chrt -f 10`` (every process it starts inherits it).
"""

from __future__ import annotations

import argparse
import collections
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil
import redis
import trio

from jobtrio.bench.inprocess import START_TYPE, percentile
from jobtrio.bench.load import Connection
from jobtrio.bench.redis_server import PrivateRedis, redis_cpu_seconds
from jobtrio.bench.served import Served
from jobtrio.jobs import parse_time

BODY = json.dumps({"type": START_TYPE, "payload": {"source": "bench"}}).encode()
#: Keep-alive connections opened before the offered load (the scenario opens 4).
PREOPENED = 4
#: Most requests in flight at once (the scenario's MAX_CONNECTIONS).
MAX_IN_FLIGHT = 32


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


async def offer(host: str, port: int, rate: float, count: int) -> list[dict[str, Any]]:
    """``count`` single POSTs at ``rate`` a second, open loop; one row of times per job."""
    idle = [await Connection.open(host, port) for _ in range(PREOPENED)]
    slots = trio.Semaphore(MAX_IN_FLIGHT)
    rows: list[dict[str, Any]] = []

    async def one() -> None:
        at = time.time()
        async with slots:
            c = idle.pop() if idle else await Connection.open(host, port)
            status, answer = await c.send(c.build("POST", "/api/v1/jobs", BODY))
            if status != 201:
                raise SystemExit(f"POST /api/v1/jobs: {status} {answer[:300]!r}")
            rows.append({"at": at, "answered": time.time(), "id": json.loads(answer)["id"]})
            idle.append(c)

    start = trio.current_time()
    async with trio.open_nursery() as nursery:
        for i in range(count):
            await trio.sleep_until(start + i / rate)
            nursery.start_soon(one)
    for c in idle:
        await c.aclose()
    return rows


async def served_run(served: Served, client: redis.Redis, rate: float, count: int) -> None:
    await offer(served.host, served.port, rate, 500)  # warm up
    node = psutil.Process(served.process.pid)
    before, redis_before = node.cpu_times(), redis_cpu_seconds(client)
    rows = await offer(served.host, served.port, rate, count)
    c = await Connection.open(served.host, served.port)
    try:
        with trio.fail_after(max(60.0, count / 50)):
            while (await c.get_json("/api/v1/stats"))["finished"] < count + 500:
                await trio.sleep(0.02)
        after, redis_after = node.cpu_times(), redis_cpu_seconds(client)
        for row in rows:
            record = await c.get_json(f"/api/v1/jobs/{row['id']}")
            row["created"] = parse_time(record["created_at"], "created_at")
            row["started"] = float(record["result"]["started"])  # the worker ran it
    finally:
        await c.aclose()
    cpu = (after.user + after.system) - (before.user + before.system)
    rows.sort(key=lambda r: r["started"] - r["at"])
    total = [r["started"] - r["at"] for r in rows]
    print(
        f"{count} jobs at {rate:g}/s: queue-to-start p50 {ms(percentile(total, 0.5))} ms, "
        f"p99 {ms(percentile(total, 0.99))} ms; node CPU {cpu / count * 1e6:.0f} us/job, "
        f"Redis CPU {(redis_after - redis_before) / count * 1e6:.0f} us/job"
    )
    worst = rows[-max(1, len(rows) // 100) :]
    parts = (
        ("send -> validation", lambda r: r["created"] - r["at"]),
        ("validation -> start", lambda r: r["started"] - r["created"]),
        ("start -> answer read", lambda r: r["answered"] - r["started"]),
    )
    for name, part in parts:
        values = [part(r) for r in rows]
        worst_values = sorted(part(r) for r in worst)
        print(
            f"  {name:21s} p50 {ms(percentile(values, 0.5))} p99 {ms(percentile(values, 0.99))}"
            f" ms; in the worst 1%: median {ms(worst_values[len(worst_values) // 2])},"
            f" max {ms(worst_values[-1])} ms"
        )
    first = min(r["at"] for r in rows)
    times = sorted(r["at"] - first for r in worst)
    clustered = sum(
        1
        for i, t in enumerate(times)
        if (i and t - times[i - 1] < 0.05) or (i + 1 < len(times) and times[i + 1] - t < 0.05)
    )
    print(
        f"  the worst 1% ({len(worst)}): {clustered} within 50 ms of another; sent at "
        + " ".join(f"{t:.2f}" for t in times)
        + " s"
    )


# -- the instrumented node (``--child``: run by the served process) -------------------------


class Stalls(trio.abc.Instrument):
    """Writes every scheduler batch longer than ``LONG`` seconds (see the module doc)."""

    LONG = 0.003

    def __init__(self, out: Any) -> None:
        self.out = out
        self.start: float | None = None
        self.cpu = 0.0
        self.faults = self.switches = 0
        self.steps: collections.Counter[str] = collections.Counter()
        self.step_start = 0.0
        self.count = 0
        self.collections: list[str] = []
        self.lengths: collections.Counter[int] = collections.Counter()
        self._gc_start = 0.0
        gc.callbacks.append(self._gc)

    def _gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        elif (took := time.perf_counter() - self._gc_start) > 0.0005:
            self.collections.append(f"gen{info['generation']} {ms(took)} ms")

    @staticmethod
    def _counters() -> tuple[int, int]:
        with open("/proc/self/stat") as f:
            faults = int(f.read().rsplit(")", 1)[1].split()[9])
        switches = 0
        with open("/proc/thread-self/status") as f:
            for line in f:
                if line.startswith("nonvoluntary_ctxt_switches"):
                    switches = int(line.split()[1])
        return faults, switches

    def after_io_wait(self, timeout: float) -> None:
        self.start = time.perf_counter()
        self.cpu = time.thread_time()
        self.faults, self.switches = self._counters()
        self.steps.clear()
        self.count = 0
        self.collections = []

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.step_start = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        self.steps[task.name.rsplit(".", 1)[-1][:60]] += time.perf_counter() - self.step_start
        self.count += 1

    def before_io_wait(self, timeout: float) -> None:
        if self.start is None:
            return
        took = time.perf_counter() - self.start
        self.lengths[min(int(took * 1000), 20)] += 1
        if took > self.LONG:
            faults, switches = self._counters()
            top = ", ".join(f"{k} {ms(v)}" for k, v in self.steps.most_common(5))
            self.out.write(
                f"{time.time():.3f} batch {ms(took)} ms wall, "
                f"{ms(time.thread_time() - self.cpu)} ms CPU, {self.count} steps, "
                f"major faults +{faults - self.faults}, involuntary switches "
                f"+{switches - self.switches}, gc {self.collections}: {top}\n"
            )
        self.start = None

    def after_run(self) -> None:
        lengths = {
            f"{k}-{k + 1} ms" if k < 20 else "20+ ms": n for k, n in sorted(self.lengths.items())
        }
        self.out.write(f"batches by length: {json.dumps(lengths)}\n")
        self.out.flush()


def child(argv: list[str]) -> int:
    """``jobtrio.bench.child`` with the ``Stalls`` instrument on its trio run."""
    from jobtrio.bench import child as served_child

    out = open(os.environ["BENCH_LATENCY_INSTRUMENT"], "w")
    run = trio.run

    def instrumented(fn: Any, *args: Any) -> Any:
        return run(fn, *args, instruments=[Stalls(out)])

    served_child.trio.run = instrumented  # type: ignore[attr-defined]
    try:
        return served_child.main(argv)
    finally:
        out.close()


def instrumented_popen(popen: Any) -> Any:
    """``subprocess.Popen`` for ``Served``, running the node through ``child`` above."""

    def start(args: list[str], **kwargs: Any) -> Any:
        if args[1:3] == ["-m", "jobtrio.bench.child"]:
            args = [args[0], os.path.abspath(__file__), "--child", *args[3:]]
        return popen(args, **kwargs)

    return start


# -- in process ---------------------------------------------------------------------------


async def in_process(url: str, client: redis.Redis, rate: float, count: int) -> None:
    from jobtrio.actors.node import Node
    from jobtrio.bench.inprocess import close_bench_backends, open_bench_backends
    from jobtrio.config import Settings
    from jobtrio.processors import JobContext, Registry

    broker, store = await open_bench_backends("redis", ".", url)
    began: dict[str, float] = {}
    sent: dict[str, float] = {}
    registry = Registry()

    async def probe(ctx: JobContext) -> None:
        began[ctx.job_id] = time.perf_counter()

    registry.register("probe", probe)
    node = Node(Settings(worker_count=10, node_id="bench"), broker, store, registry)

    async def one() -> None:
        at = time.perf_counter()
        job = await node.submit({"type": "probe"})
        sent[job.id] = at

    async def phase(n: int) -> None:
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            for i in range(n):
                await trio.sleep_until(start + i / rate)
                nursery.start_soon(one)
        with trio.fail_after(60):
            while len(began) < len(sent):
                await trio.sleep(0.01)

    def calls() -> dict[str, float]:
        out: dict[str, float] = {}
        for metric in node.metrics.backend_calls.collect():
            for sample in metric.samples:
                if sample.name.endswith("_count") and sample.labels["backend"] == "broker":
                    out[sample.labels["operation"]] = sample.value
        return out

    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await phase(300)  # warm up
            sent.clear()
            began.clear()
            calls_before = calls()
            cpu, redis_cpu = time.process_time(), redis_cpu_seconds(client)
            await phase(count)
            cpu, redis_cpu = time.process_time() - cpu, redis_cpu_seconds(client) - redis_cpu
            calls_after = calls()
            node.request_stop()
    finally:
        await close_bench_backends(broker, store)
    waits = [began[j] - sent[j] for j in sent]
    per_job = {
        op: round((n - calls_before.get(op, 0)) / count, 2)
        for op, n in sorted(calls_after.items())
        if n > calls_before.get(op, 0)
    }
    print(
        f"{count} jobs at {rate:g}/s in process: submit to the worker's start p50 "
        f"{ms(percentile(waits, 0.5))} ms, p99 {ms(percentile(waits, 0.99))} ms; process CPU "
        f"{cpu / count * 1e6:.0f} us/job, Redis CPU {redis_cpu / count * 1e6:.0f} us/job; "
        f"Broker calls a job (timed ones; enqueue_and_claim is not): {per_job}"
    )


# -- hop by hop (``--in-process --hops``) -------------------------------------------------

#: The marks of the current sample: (perf_counter, hop); None between samples.
_marks: list[tuple[float, str]] | None = None


def _mark(hop: str) -> None:
    if _marks is not None:
        _marks.append((time.perf_counter(), hop))


def _wrap_async(owner: Any, name: str, before: str, after: str | None = None) -> None:
    """Mark ``before`` each call of ``owner.name`` (a coroutine function) and ``after`` it."""
    fn = getattr(owner, name)

    async def wrapped(*args: Any, **kwargs: Any) -> Any:
        _mark(before)
        out = await fn(*args, **kwargs)
        if after is not None:
            _mark(after)
        return out

    setattr(owner, name, wrapped)


def _wrap_sync(owner: Any, name: str, before: str, after: str | None = None) -> None:
    fn = getattr(owner, name)

    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _mark(before)
        out = fn(*args, **kwargs)
        if after is not None:
            _mark(after)
        return out

    setattr(owner, name, wrapped)


async def hops(url: str, client: redis.Redis, samples: int) -> None:
    """One job at a time to an idle node: the median time from the submit call to each hop."""
    global _marks
    from jobtrio.actors.node import Node
    from jobtrio.actors.submitter import GroupCommit
    from jobtrio.backends.redis import wire
    from jobtrio.bench.inprocess import close_bench_backends, open_bench_backends
    from jobtrio.config import Settings
    from jobtrio.processors import JobContext

    _wrap_async(GroupCommit, "_commit", "group commit takes the batch")
    _wrap_async(wire.RedisConnection, "script", "script packed by the wire")
    _wrap_async(wire.RedisConnection, "_request", "packed, to the wire's room")
    _wrap_async(wire._Wire, "request", "wire request", "wire answer")
    _wrap_async(wire._Wire, "_flush", "send")
    _wrap_async(trio.lowlevel, "wait_readable", "wait for the reply", "readable")
    _wrap_async(trio.lowlevel, "cancel_shielded_checkpoint", "yield", "yield back")
    broker, store = await open_bench_backends("redis", ".", url)
    node = Node(Settings(worker_count=10, node_id="bench"), broker, store)
    _wrap_async(node.group_commit, "enqueue", "group commit enqueue", "submitter goes on")
    _wrap_async(broker, "enqueue_and_claim", "Broker call", "Broker answer")
    _wrap_async(broker, "enqueue", "Broker call (enqueue alone)", "Broker answer")
    _wrap_sync(node.dispatcher, "lend_claim", "lend the claim", "claim lent")
    _wrap_sync(node.dispatcher, "claim_answered", "leases to the dispatcher", "leases dealt")
    began: list[float] = []

    async def probe(ctx: JobContext) -> None:
        _mark("processor runs")
        began.append(time.perf_counter())

    node.registry.register("probe", probe)
    timelines: list[list[tuple[float, str]]] = []
    client.config_set("slowlog-log-slower-than", 0)
    client.config_set("slowlog-max-len", 10 * samples + 1000)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(node.run)
            await trio.sleep(0.2)  # let the node settle into its idle poll
            for i in range(samples + 50):
                if i == 50:  # after 50 to warm up
                    timelines.clear()
                    client.slowlog_reset()
                before = node.dispatcher.finished
                _marks = [(time.perf_counter(), "submit call")]
                await node.submit({"type": "probe"})
                while node.dispatcher.finished == before:
                    await trio.sleep(0.0005)
                timelines.append(_marks)
                _marks = None
                await trio.sleep(0.01)  # idle again before the next one
            logged = client.slowlog_get(10 * samples + 1000)  # before the keys' deletion
            node.request_stop()
    finally:
        await close_bench_backends(broker, store)
    firsts: dict[str, list[float]] = collections.defaultdict(list)
    for marks in timelines:
        t0 = marks[0][0]
        seen: set[str] = set()
        for at, hop in marks:
            if hop not in seen:
                seen.add(hop)
                firsts[hop].append((at - t0) * 1e6)
    waits = [
        next(at for at, hop in m if hop == "processor runs") - m[0][0]
        for m in timelines
        if any(hop == "processor runs" for _, hop in m)
    ]
    print(
        f"{len(timelines)} jobs one at a time: submit to the processor running p50 "
        f"{ms(percentile(waits, 0.5))} ms, p99 {ms(percentile(waits, 0.99))} ms; "
        "median us from the submit call (jobs that passed the hop):"
    )
    last = 0.0
    for hop, values in sorted(firsts.items(), key=lambda kv: percentile(kv[1], 0.5)):
        at = percentile(values, 0.5)
        print(f"  {at:8.1f} (+{at - last:6.1f})  {hop} ({len(values)})")
        last = at
    by_script: dict[str, list[int]] = collections.defaultdict(list)
    for entry in logged:
        words = entry["command"].split()
        if words and words[0] in (b"FCALL", b"EVALSHA") and len(words) > 1:
            by_script[words[1].decode()[:40]].append(entry["duration"])
    print("Redis's time a script call (SLOWLOG, us): median, p90, calls")
    for name, values in sorted(by_script.items(), key=lambda kv: -len(kv[1])):
        values.sort()
        print(
            f"  {name:40s} {values[len(values) // 2]:5d} {values[len(values) * 9 // 10]:5d}"
            f" {len(values):6d}"
        )


def main() -> int:
    if sys.argv[1:2] == ["--child"]:
        return child(sys.argv[2:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=250.0, help="jobs/s offered (250)")
    parser.add_argument("--jobs", type=int, default=2500, help="jobs measured (2500)")
    parser.add_argument("--instrument", metavar="FILE", help="log the node's long batches here")
    parser.add_argument("--in-process", action="store_true", help="no HTTP: Node.submit calls")
    parser.add_argument(
        "--hops", action="store_true", help="with --in-process: idle, one job at a time, hop by hop"
    )
    args = parser.parse_args()
    if args.rate <= 0 or args.jobs < 1:
        parser.error("--rate must be above 0 and --jobs at least 1")
    with tempfile.TemporaryDirectory() as directory:
        server = PrivateRedis(directory)
        try:
            if args.in_process and args.hops:
                trio.run(hops, server.url, server.client, args.jobs)
                return 0
            if args.in_process:
                trio.run(in_process, server.url, server.client, args.rate, args.jobs)
                return 0
            if args.instrument:
                os.environ["BENCH_LATENCY_INSTRUMENT"] = os.path.abspath(args.instrument)
                subprocess.Popen = instrumented_popen(subprocess.Popen)  # type: ignore[misc]
            with Served.node("redis", directory, server.url, 10) as served:
                trio.run(served_run, served, server.client, args.rate, args.jobs)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
