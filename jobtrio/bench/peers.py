"""``jobtrio bench --compare``: BullMQ, Dramatiq and Celery on the same Redis, in the same run.

Each peer is set up once in a folder of the cache (``--peers-cache``,
default ``~/.cache/jobtrio-bench``) from a pinned version: a venv for the
Python ones (``pip install``), a node folder for BullMQ (``npm install``);
a ``.ready`` file records what was installed, so a rerun starts at once. A
peer whose tool is missing (no ``npm`` or ``node`` on the PATH) or whose
install fails is skipped with one line saying why; the others still run.

Every peer runs the same job: a no-op body doing one Redis round trip (an
``INCR`` of a counter), one process, ``--workers`` of concurrency, against
the bench's Redis, ``--jobs`` jobs:

- drain: the jobs are queued first (untimed), then one worker process runs
  them; jobs/s from the first completion seen to the last (so the worker's
  start-up is not counted);
- enqueue: BullMQ ``addBulk`` of 1,000 jobs a call; Dramatiq ``send()`` and
  Celery ``apply_async()`` one job a call (they have no bulk enqueue).

The scripts are ``jobtrio/bench/peer_scripts/``; each prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from .redis_server import PrivateRedis


@dataclass(frozen=True)
class Peer:
    name: str
    version: str
    #: What the peer's enqueue figure is.
    enqueue: str
    #: How its drain's worker runs.
    worker: str
    script: str
    #: pip requirements (Python peers) or npm dependencies (BullMQ).
    requirements: tuple[str, ...] = ()
    npm: dict[str, str] = field(default_factory=dict)


PEERS: dict[str, Peer] = {
    "bullmq": Peer(
        "bullmq",
        "6.7.6",
        enqueue="addBulk, 1,000 a call",
        worker="one Node.js Worker, concurrency --workers",
        script="bullmq_bench.mjs",
        npm={"bullmq": "6.7.6", "ioredis": "5.9.3"},
    ),
    "dramatiq": Peer(
        "dramatiq",
        "2.2.1",
        enqueue="send(), one a call",
        worker="one Worker process, --workers threads",
        script="dramatiq_bench.py",
        requirements=("dramatiq[redis]==2.2.1",),
    ),
    "celery": Peer(
        "celery",
        "5.7.0",
        enqueue="apply_async(), one a call",
        worker="one worker process, --pool threads, --concurrency --workers",
        script="celery_bench.py",
        requirements=("celery[redis]==5.7.0",),
    ),
}

#: Longest a peer's install may take.
INSTALL_TIMEOUT = 900


class Skipped(Exception):
    """The peer cannot run here; the message says why, in one line."""


@dataclass
class Prepared:
    peer: Peer
    folder: Path
    command: list[str]


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no output"


def _install(folder: Path, recipe: str, steps: list[list[str]]) -> None:
    """Run ``steps`` in ``folder`` unless its ``.ready`` already records ``recipe``."""
    marker = folder / ".ready"
    if marker.exists() and marker.read_text() == recipe:
        return
    folder.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    for step in steps:
        try:
            done = subprocess.run(
                step, cwd=folder, capture_output=True, text=True, timeout=INSTALL_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise Skipped(f"{Path(step[0]).name} took more than {INSTALL_TIMEOUT} s") from None
        if done.returncode != 0:
            raise Skipped(
                f"{' '.join(Path(step[0]).name if i == 0 else a for i, a in enumerate(step[:3]))} "
                f"failed: {_last_line(done.stderr or done.stdout)}"
            )
    marker.write_text(recipe)


def prepare(peer: Peer, cache: Path) -> Prepared:
    """The peer's folder, set up if need be, and the command that runs its script."""
    folder = cache / f"{peer.name}-{peer.version}"
    if peer.npm:
        npm, node = shutil.which("npm"), shutil.which("node")
        if npm is None or node is None:
            raise Skipped(f"{'npm' if npm is None else 'node'} is not on the PATH")
        folder.mkdir(parents=True, exist_ok=True)
        package = {"private": True, "type": "module", "dependencies": peer.npm}
        (folder / "package.json").write_text(json.dumps(package, indent=2))
        _install(
            folder,
            json.dumps(package),
            [[npm, "install", "--no-audit", "--no-fund", "--loglevel=error"]],
        )
        command = [node, peer.script]
    else:
        python = folder / "venv" / "bin" / "python"
        _install(
            folder,
            json.dumps(peer.requirements),
            [
                [sys.executable, "-m", "venv", "--clear", "venv"],
                [str(python), "-m", "pip", "install", "-q", *peer.requirements],
            ],
        )
        command = [str(python), peer.script]
    script = resources.files("jobtrio.bench").joinpath("peer_scripts", peer.script)
    (folder / peer.script).write_text(script.read_text())
    return Prepared(peer, folder, command)


def prepare_all(args: argparse.Namespace, progress: TextIO) -> dict[str, Prepared | str]:
    """Each requested peer ready to run, or the one-line reason it is skipped."""
    cache = Path(args.peers_cache).expanduser()
    out: dict[str, Prepared | str] = {}
    for name in args.compare:
        peer = PEERS[name]
        print(f"{name} {peer.version}: setting up in {cache}", file=progress, flush=True)
        try:
            out[name] = prepare(peer, cache)
        except (Skipped, OSError) as exc:
            out[name] = str(exc)
            print(f"{name}: skipped, {exc}", file=progress, flush=True)
    return out


def _run_script(prepared: Prepared, mode: str, url: str, jobs: int, workers: int) -> float:
    prefix = f"jbpeer{prepared.peer.name}{time.monotonic_ns()}"
    command = [*prepared.command, mode, url, prefix, str(jobs), str(workers)]
    try:
        done = subprocess.run(
            command,
            cwd=prepared.folder,
            capture_output=True,
            text=True,
            timeout=max(600.0, jobs / 20),
        )
    except subprocess.TimeoutExpired:
        raise Skipped(f"its {mode} did not end in time") from None
    if done.returncode != 0:
        raise Skipped(f"its {mode} failed: {_last_line(done.stderr or done.stdout)}")
    value = json.loads(done.stdout.strip().splitlines()[-1])["jobs_per_s"]
    return math.nan if value is None else float(value)


def run_once(
    prepared: Prepared, args: argparse.Namespace, url: str, private: PrivateRedis | None
) -> dict[str, float]:
    """One run of a peer: its drain, then its enqueue, each on an emptied Redis if it is ours."""
    out = {}
    for mode in ("drain", "enqueue"):
        if private is not None:
            private.flush()
        out[f"{mode}_jobs_per_s"] = _run_script(prepared, mode, url, args.jobs, args.workers)
    return out


def summarize(
    prepared: dict[str, Prepared | str], runs: dict[str, list[dict[str, float]]]
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, ready in prepared.items():
        peer = PEERS[name]
        entry: dict[str, Any] = {
            "version": peer.version,
            "enqueue": peer.enqueue,
            "worker": peer.worker,
            "skipped": ready if isinstance(ready, str) else None,
            "runs": runs.get(name, []),
        }
        if entry["runs"]:
            entry["median"] = {
                key: statistics.median(r[key] for r in entry["runs"])
                for key in ("drain_jobs_per_s", "enqueue_jobs_per_s")
            }
        out[name] = entry
    return out


def _figure(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def _ratio(ours: float | None, theirs: float | None) -> str:
    if ours is None or theirs is None or math.isnan(ours) or math.isnan(theirs) or not theirs:
        return "-"
    return f"{ours / theirs:.2f}x"


def print_comparison(result: dict[str, Any], file: TextIO) -> None:
    """Ours beside each peer's, medians of the same run, with jobtrio / peer ratios."""
    scenarios = result["scenarios"]
    drain = scenarios.get("drain", {}).get("median", {})
    enqueue = scenarios.get("enqueue", {}).get("median", {})
    rows = [
        ("drain, ours from node start", drain.get("full_queue_jobs_per_s"), "drain_jobs_per_s"),
        (
            "drain, first to last done",
            drain.get("full_queue_first_to_last_jobs_per_s"),
            "drain_jobs_per_s",
        ),
        ("enqueue: HTTP batch vs peer", enqueue.get("http_batch_jobs_per_s"), "enqueue_jobs_per_s"),
        (
            "enqueue: submit_many vs peer",
            enqueue.get("submit_many_jobs_per_s"),
            "enqueue_jobs_per_s",
        ),
    ]
    peers = {n: p for n, p in result["peers"].items() if not p["skipped"]}
    print("\ncompared on the same Redis, jobs/s (medians; ratio = jobtrio / peer)", file=file)
    header = f"  {'measure':<30}  {'jobtrio':>9}"
    for name, p in peers.items():
        header += f"  {name + ' ' + p['version']:>15}  {'ratio':>6}"
    print(header, file=file)
    for label, ours, key in rows:
        line = f"  {label:<30}  {_figure(ours):>9}"
        for p in peers.values():
            theirs = p.get("median", {}).get(key)
            line += f"  {_figure(theirs):>15}  {_ratio(ours, theirs):>6}"
        print(line, file=file)
    for name, p in result["peers"].items():
        if p["skipped"]:
            print(f"  {name}: skipped, {p['skipped']}", file=file)
            continue
        drains = ", ".join(_figure(r["drain_jobs_per_s"]) for r in p["runs"])
        enqueues = ", ".join(_figure(r["enqueue_jobs_per_s"]) for r in p["runs"])
        print(
            f"  {name} runs: drain {drains}; enqueue ({p['enqueue']}) {enqueues}; {p['worker']}",
            file=file,
        )
