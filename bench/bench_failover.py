"""Failover time per election algorithm, measured on real node processes.

Failover here is what a client feels: the time from the leader's SIGKILL until
every survivor's ``GET /api/v1/leader`` names the same new leader (and the new
leader names itself, which it does only once it holds a fencing epoch from the
Broker). Each run starts a fresh 3-node cluster (``jobtrio serve`` processes,
real websockets on loopback, a private redis-server on a free port), waits for
agreement, kills the leader and polls every survivor every ``--poll`` seconds.

    .venv/bin/python bench/bench_failover.py                  # all three, 7 runs each
    .venv/bin/python bench/bench_failover.py --runs 5 raft    # one algorithm

Run from the repository root. The default timings are ELECTION_TIMEOUT=1s and
ELECTION_INTERVAL=0.3s; SWIM's probe period derives from them (0.2s).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx

REPO = Path(__file__).resolve().parent.parent
ALGORITHMS = ("raft", "bully", "gossip")
TARGETS = {"raft": 2.0, "bully": 2.0, "gossip": 5.0}
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A throwaway redis-server without persistence: the bench measures elections, not disks."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench_failover: redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory)]
        + ["--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, url
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("bench_failover: redis-server did not start")
        time.sleep(0.02)


@dataclass
class Node:
    node_id: str
    proc: subprocess.Popen[bytes]
    url: str

    def leader(self, client: httpx.Client) -> str | None:
        try:
            return client.get(self.url + "/api/v1/leader").json()["leader"]
        except (httpx.HTTPError, ValueError, KeyError):
            return None

    def alive(self) -> bool:
        return self.proc.poll() is None


def start_cluster(
    args: argparse.Namespace, algorithm: str, redis_url: str, directory: Path
) -> list[Node]:
    ids = [f"node-{i}" for i in range(1, args.nodes + 1)]
    cluster_ports = {i: free_port() for i in ids}
    prefix = "bench" + uuid.uuid4().hex[:10]
    nodes = []
    for node_id in ids:
        http_port = free_port()
        env = {
            **os.environ,
            "PYTHONPATH": str(REPO),
            "NODE_ID": node_id,
            "SERVER_HOST": "127.0.0.1",
            "SERVER_PORT": str(http_port),
            "METRICS_PORT": "0",
            "LOG_LEVEL": "info",
            "REDIS_URL": redis_url,
            "REDIS_KEY_PREFIX": prefix,
            "ELECTION_ALGORITHM": algorithm,
            "ELECTION_TIMEOUT": f"{args.timeout}s",
            "ELECTION_INTERVAL": f"{args.interval}s",
            "CLUSTER_HOST": "127.0.0.1",
            "CLUSTER_PORT": str(cluster_ports[node_id]),
            "CLUSTER_PEERS": ",".join(f"127.0.0.1:{cluster_ports[p]}" for p in ids if p != node_id),
            "CLUSTER_SECRET": "bench-secret",
            "WORKER_COUNT": "1",
        }
        log = open(directory / f"{algorithm}-{node_id}.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobtrio.cli", "serve"],
            env=env,
            cwd=directory,
            stdout=log,
            stderr=log,
        )
        nodes.append(Node(node_id, proc, f"http://127.0.0.1:{http_port}"))
    return nodes


def agreement(nodes: list[Node], client: httpx.Client, exclude: str | None) -> str | None:
    """The leader every given node names, if they agree on one that is not ``exclude``."""
    seen = {n.leader(client) for n in nodes}
    if len(seen) == 1:
        [leader] = seen
        if leader is not None and leader != exclude:
            return leader
    return None


def wait(condition: Callable[[], T | None], timeout: float, poll: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)


def one_run(args: argparse.Namespace, algorithm: str, redis_url: str, directory: Path) -> float:
    nodes = start_cluster(args, algorithm, redis_url, directory)
    try:
        with httpx.Client(timeout=1.0) as client:
            leader = wait(
                lambda: agreement(nodes, client, None), 30, 0.05, "a first leader to be agreed"
            )
            # let the cluster settle (every member alive everywhere) before the kill
            time.sleep(args.settle)
            leader = wait(lambda: agreement(nodes, client, None), 10, 0.05, "agreement")
            victim = next(n for n in nodes if n.node_id == leader)
            survivors = [n for n in nodes if n is not victim]
            killed_at = time.monotonic()
            victim.proc.send_signal(signal.SIGKILL)
            wait(
                lambda: agreement(survivors, client, leader),
                30,
                args.poll,
                "the survivors to agree on a new leader",
            )
            return time.monotonic() - killed_at
    finally:
        for n in nodes:
            if n.alive():
                n.proc.kill()
            n.proc.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "algorithms", nargs="*", metavar="ALGORITHM", help="raft, bully, gossip (default: all)"
    )
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=1.0, help="ELECTION_TIMEOUT, seconds")
    parser.add_argument("--interval", type=float, default=0.3, help="ELECTION_INTERVAL, seconds")
    parser.add_argument("--poll", type=float, default=0.02, help="leader poll period, seconds")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds before the kill")
    args = parser.parse_args(argv)
    args.algorithms = args.algorithms or list(ALGORITHMS)
    for name in args.algorithms:
        if name not in ALGORITHMS:
            parser.error(f"unknown algorithm {name!r}; expected one of {', '.join(ALGORITHMS)}")

    print(
        f"failover = leader SIGKILL -> all {args.nodes - 1} survivors name one new leader; "
        f"ELECTION_TIMEOUT={args.timeout}s ELECTION_INTERVAL={args.interval}s, "
        f"poll {args.poll * 1000:.0f}ms, {args.runs} runs"
    )
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
        directory = Path(tmp)
        redis, redis_url = start_redis(directory)
        try:
            for algorithm in args.algorithms:
                results[algorithm] = []
                for run in range(args.runs):
                    took = one_run(args, algorithm, redis_url, directory)
                    results[algorithm].append(took)
                    print(f"  {algorithm:7s} run {run + 1}: {took:.3f}s", flush=True)
        finally:
            redis.kill()
            redis.wait()

    print()
    print(f"{'algorithm':10s} {'median':>8s} {'min':>8s} {'max':>8s} {'target':>8s}")
    missed = 0
    for algorithm, times in results.items():
        median = statistics.median(times)
        target = TARGETS[algorithm]
        ok = "ok" if median < target else "MISSED"
        missed += median >= target
        print(
            f"{algorithm:10s} {median:7.3f}s {min(times):7.3f}s {max(times):7.3f}s "
            f"{'<' + format(target, 'g') + 's':>8s} {ok}"
        )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
