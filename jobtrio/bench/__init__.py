"""``jobtrio bench``: how fast one node drains, accepts, promotes and answers; its memory.

    jobtrio bench --backend redis --scenario all --json bench.json
    jobtrio bench --scenario drain,enqueue --backend redis --compare bullmq,dramatiq,celery

Scenarios (``--scenario``, a comma-separated list or ``all``; default drain):

- drain: ``--jobs`` jobs queued, then drained by one node in this
  process (jobs/s); then the same with the producer submitting alongside. On
  Redis also Redis's CPU and script time per job of the full-queue drain.
  Each job does one INCR on the bench's Redis there (``--job-body incr``, like
  every peer's job body), or nothing (``noop``, the default elsewhere);
- enqueue: ``POST /api/v1/jobs/batch`` with 1,000 jobs a request and
  ``Client.submit_many`` with 1,000 a call, against a node served by
  hypercorn in a subprocess (jobs/s);
- burst: ``--jobs`` jobs sharing one ``scheduled_at``: jobs/s from that due
  time until all completed, and its ratio to a full-queue drain of as many
  jobs in the same run;
- latency: single ``POST /api/v1/jobs`` from ``--clients`` connections
  (jobs/s) against a trivial quart-trio POST route on the same hypercorn
  settings (the framework's ceiling), both measured in the run; the time
  from each client's send to its job's start at ``--rate`` jobs/s offered
  (p50, p99); and the idle queue-to-start of a node in this process;
- memory: the served node's RSS idle and after each of ``--memory-counts``
  completed jobs.

Every run is printed, with the median of ``--runs``. On Redis without
``--redis-url`` the bench starts its own ``redis-server`` without
persistence. ``--compare`` runs BullMQ, Dramatiq and Celery on the same Redis
(see ``jobtrio.bench.peers``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import trio

from .inprocess import consume, drain_once, latency_once
from .redis_server import PrivateRedis
from .scenarios import ROWS, SCENARIOS, Context, Row, memory_rows

#: ``jobtrio bench --help``'s first line.
DESCRIPTION = (
    "Measure one node: the drain of a full queue, batch enqueue over HTTP, a burst of due "
    "jobs, single POSTs against the framework's ceiling, queue-to-start, memory; and with "
    "--compare the same drain and enqueue by BullMQ, Dramatiq and Celery on the same Redis."
)

__all__ = ["DESCRIPTION", "add_arguments", "drain_once", "latency_once", "main"]

DEFAULT_MEMORY_COUNTS = (100_000, 1_000_000)


def _at_least_one(text: str) -> int:
    """An argparse type: a whole number of 1 or more (0 jobs or runs measure nothing)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _zero_or_more(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def _positive_number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _scenarios(text: str) -> list[str]:
    """``all`` or a comma-separated list of scenario names, in the order given."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown) or repr(text)}; "
            f"choose from {', '.join(SCENARIOS)} or all"
        )
    return list(dict.fromkeys(names))


def _counts(text: str) -> list[int]:
    """Increasing whole numbers of 1 or more, comma-separated."""
    try:
        counts = [int(n) for n in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated list of whole numbers"
        ) from None
    if any(c < 1 for c in counts) or counts != sorted(set(counts)):
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be 1 or more and increasing")
    return counts


def _peers(text: str) -> list[str]:
    from .peers import PEERS

    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown peer {', '.join(unknown) or repr(text)}; choose from {', '.join(PEERS)}"
        )
    return list(dict.fromkeys(names))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--scenario",
        type=_scenarios,
        default=["drain"],
        metavar="LIST",
        help=f"Scenarios to run: {', '.join(SCENARIOS)}, comma-separated, or all (default drain).",
    )
    parser.add_argument(
        "--backend",
        choices=["sqlite", "memory", "redis"],
        default="sqlite",
        help="Backend of the node (default sqlite, a fresh file a run).",
    )
    parser.add_argument(
        "--redis-url",
        metavar="URL",
        default=os.environ.get("REDIS_URL"),
        help="Redis to use (default REDIS_URL; unset: the bench starts its own redis-server).",
    )
    parser.add_argument(
        "--jobs",
        metavar="N",
        type=_at_least_one,
        default=20_000,
        help="Noop jobs per drain, enqueue measurement and burst (default 20000).",
    )
    parser.add_argument(
        "--workers", metavar="N", type=_at_least_one, default=10, help="WORKER_COUNT (default 10)."
    )
    parser.add_argument(
        "--batch",
        metavar="N",
        type=_at_least_one,
        default=100,
        help="DISPATCH_BATCH (default 100).",
    )
    parser.add_argument(
        "--prefetch",
        metavar="N",
        type=int,
        default=-1,
        help="DISPATCH_PREFETCH (default -1: automatic).",
    )
    parser.add_argument(
        "--runs",
        metavar="N",
        type=_at_least_one,
        default=3,
        help="Runs of each scenario (default 3).",
    )
    parser.add_argument(
        "--clients",
        metavar="N",
        type=_at_least_one,
        default=8,
        help="latency: concurrent connections sending single POSTs (default 8).",
    )
    parser.add_argument(
        "--post-seconds",
        metavar="SECONDS",
        type=_positive_number,
        default=3.0,
        help="latency: seconds each single-POST rate is measured for (default 3).",
    )
    parser.add_argument(
        "--rate",
        metavar="JOBS_PER_S",
        type=_positive_number,
        default=500.0,
        help="latency: jobs/s offered for the queue-to-start figures (default 500).",
    )
    parser.add_argument(
        "--rate-jobs",
        metavar="N",
        type=_at_least_one,
        default=2500,
        help="latency: jobs offered at --rate (default 2500).",
    )
    parser.add_argument(
        "--latency-samples",
        metavar="N",
        type=_at_least_one,
        default=200,
        help="latency: single jobs sent to an idle node in this process (default 200).",
    )
    parser.add_argument(
        "--memory-counts",
        type=_counts,
        default=list(DEFAULT_MEMORY_COUNTS),
        metavar="N,N",
        help="memory: completed jobs at which RSS is read (default 100000,1000000).",
    )
    parser.add_argument(
        "--compare",
        type=_peers,
        metavar="LIST",
        help=(
            "Also run these peers on the same Redis, comma-separated: bullmq, dramatiq, celery "
            "(adds the drain and enqueue scenarios)."
        ),
    )
    parser.add_argument(
        "--peers-cache",
        default=os.path.join(os.path.expanduser("~"), ".cache", "jobtrio-bench"),
        metavar="DIR",
        help="Where the peers' venvs and node folder are set up (default ~/.cache/jobtrio-bench).",
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="FILE",
        help="Write the result as JSON to FILE, or to stdout without FILE (then no table).",
    )
    parser.add_argument(
        "--event-consumers",
        metavar="N",
        type=_zero_or_more,
        default=0,
        help="drain: websocket consumers of the event stream reading during the drains.",
    )
    parser.add_argument(
        "--event-stream-maxlen",
        metavar="N",
        type=_zero_or_more,
        default=100_000,
        help="EVENT_STREAM_MAXLEN of the node (default 100000; 0: it records no events).",
    )
    parser.add_argument(
        "--job-body",
        choices=["incr", "noop"],
        help="drain and burst: what each job does. incr (the default on Redis): one INCR on "
        "the bench's Redis, the one round trip of every peer's job body; noop: nothing.",
    )
    parser.add_argument("--consume", metavar="URL", help=argparse.SUPPRESS)


def _median(values: list[float]) -> float:
    clean = [v for v in values if isinstance(v, int | float) and not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


def _format(value: float, unit: str) -> str:
    if not isinstance(value, int | float) or math.isnan(value):
        return "-"
    if unit == "%":
        return f"{value * 100:+.1f}"
    if unit == "x":
        return f"{value:.2f}"
    if unit in ("ms", "us", "MiB"):
        return f"{value:.2f}" if value < 100 else f"{value:,.0f}"
    return f"{value:,.0f}"


def _rows(name: str, args: argparse.Namespace) -> list[Row]:
    return memory_rows(args.memory_counts) if name == "memory" else ROWS[name]


def _print_table(result: dict[str, Any], args: argparse.Namespace, file: Any) -> None:
    m = result["machine"]
    print(
        f"jobtrio bench: backend {result['backend']}{result['redis_note']}, "
        f"{result['workers']} workers, {result['jobs']:,} {result['job_body']} jobs, "
        f"median of {result['runs']} "
        f"run{'s' if result['runs'] != 1 else ''}; {m['cpus']} CPUs, "
        f"load {m['load_before']} before, {m['load_after']} after",
        file=file,
    )
    labels = [label for name in result["scenarios"] for label, _, _ in _rows(name, args)]
    width = max([len(label) for label in labels] + [20])
    for name, scenario in result["scenarios"].items():
        print(f"\n{name}", file=file)
        print(f"  {'measure':<{width}}  {'median':>10}  {'unit':<6}  runs", file=file)
        for label, key, unit in _rows(name, args):
            if key not in scenario["median"]:
                continue
            runs = "  ".join(_format(r.get(key, math.nan), unit) for r in scenario["runs"])
            shown = _format(scenario["median"][key], unit)
            print(f"  {label:<{width}}  {shown:>10}  {unit:<6}  {runs}", file=file)
    if "peers" in result:
        from .peers import print_comparison

        print_comparison(result, file)


def _clean(value: Any) -> Any:
    """NaN is not JSON: figures that do not apply become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value


class BenchFailed(Exception):
    """A scenario could not finish; the message says which run and why, in one line."""


def _reason(exc: BaseException) -> str:
    """The innermost cause of a failure: a group of one is unwrapped to it."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _selected(args: argparse.Namespace) -> list[str]:
    """The scenarios to run; the peers are compared on the drain and the enqueue."""
    names = list(args.scenario)
    if getattr(args, "compare", None):
        names += [n for n in ("drain", "enqueue") if n not in names]
    return names


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every selected scenario (then each peer) once per run, ``--runs`` times, and the medians.

    Runs are interleaved (run 1 of everything, then run 2...), so a change in
    the machine's load lands on every figure alike instead of on one of them.
    """
    from . import peers as peer_module

    load_before = _load()
    progress = sys.stderr
    names = _selected(args)
    compare = getattr(args, "compare", None) or []
    with tempfile.TemporaryDirectory(prefix="jobtrio-bench-") as directory:
        private: PrivateRedis | None = None
        redis_url = args.redis_url
        if (args.backend == "redis" or compare) and not redis_url:
            private = PrivateRedis(directory)
            redis_url = private.url
        try:
            ctx = Context(args, directory, redis_url if args.backend == "redis" else None, private)
            prepared = peer_module.prepare_all(args, progress) if compare else {}
            runs: dict[str, list[dict[str, float]]] = {name: [] for name in names}
            peer_runs: dict[str, list[dict[str, float]]] = {}
            for i in range(args.runs):
                for name in names:
                    try:
                        figures = SCENARIOS[name](ctx)
                    except (SystemExit, KeyboardInterrupt):
                        raise
                    except BaseException as exc:
                        raise BenchFailed(
                            f"jobtrio bench: {name} run {i + 1} failed: {_reason(exc)}"
                        ) from exc
                    runs[name].append(figures)
                    shown = ", ".join(
                        f"{label.strip()} {_format(figures[key], unit)} {unit}"
                        for label, key, unit in _rows(name, args)[:2]
                        if key in figures
                    )
                    print(f"{name} run {i + 1}/{args.runs}: {shown}", file=progress, flush=True)
                for peer, ready in prepared.items():
                    if isinstance(ready, str):
                        continue
                    assert redis_url is not None
                    try:
                        figures = peer_module.run_once(ready, args, redis_url, private)
                    except peer_module.Skipped as exc:
                        prepared[peer] = str(exc)
                        print(f"{peer}: skipped, {exc}", file=progress, flush=True)
                        continue
                    peer_runs.setdefault(peer, []).append(figures)
                    print(
                        f"{peer} run {i + 1}/{args.runs}: "
                        f"drain {_format(figures['drain_jobs_per_s'], 'jobs/s')} jobs/s, "
                        f"enqueue {_format(figures['enqueue_jobs_per_s'], 'jobs/s')} jobs/s",
                        file=progress,
                        flush=True,
                    )
            scenarios: dict[str, Any] = {}
            for name, rows in runs.items():
                keys = dict.fromkeys(k for r in rows for k in r)
                scenarios[name] = {
                    "median": {k: _median([r.get(k, math.nan) for r in rows]) for k in keys},
                    "runs": rows,
                }
            result: dict[str, Any] = {
                "backend": args.backend,
                "redis_note": (
                    " (own redis-server, no persistence)"
                    if private is not None and args.backend == "redis"
                    else ""
                ),
                "workers": args.workers,
                "jobs": args.jobs,
                "job_body": args.job_body,
                "runs": args.runs,
                "scenarios": scenarios,
            }
            if compare:
                result["peers"] = peer_module.summarize(prepared, peer_runs)
        finally:
            if private is not None:
                private.stop()
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": load_before,
        "load_after": _load(),
        "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return _clean(result)


def main(args: argparse.Namespace) -> int:
    if args.consume:
        trio.run(consume, args.consume, args.event_consumers)
        return 0
    if args.job_body is None:
        args.job_body = "incr" if args.backend == "redis" else "noop"
    elif args.job_body == "incr" and args.backend != "redis":
        print(
            f"jobtrio bench: --job-body incr needs --backend redis (not {args.backend})",
            file=sys.stderr,
        )
        return 2
    if args.json not in (None, "-") and not os.path.isdir(os.path.dirname(args.json) or "."):
        print(f"jobtrio bench: --json {args.json}: no such directory", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except BenchFailed as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.json == "-":
        print(json.dumps(result))
        return 0
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    _print_table(result, args, sys.stdout)
    return 0
