"""A node served over HTTP in a process of its own, and the framework's ceiling beside it.

The HTTP scenarios (enqueue, latency, memory) talk to a real hypercorn
serving the node's API app (``create_app``) with ``jobtrio serve``'s
hypercorn settings, in a subprocess, so the client's CPU is not the node's.
It is ``jobtrio serve`` minus the metrics port and the cluster, and it takes
any bench backend (``jobtrio serve`` has no memory backend). On Redis the
process uses a key prefix of its own and deletes its keys when it stops.

``ceiling`` serves a trivial quart-trio app on the same hypercorn settings:
``POST /api/v1/jobs`` parses the JSON body and answers 201 with a small JSON
object. What that route serves is the most any route of the framework can,
so ``POST /api/v1/jobs`` is measured against it in the same run.

    python -m jobtrio.bench.child node --backend sqlite --directory /tmp/x --port 8099
    python -m jobtrio.bench.child ceiling --port 8098

Each prints ``ready`` on stdout once it serves, and stops at SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import psutil

from .redis_server import free_port


class Served:
    """The parent's handle on one served process: its URL, its RSS, its stop."""

    def __init__(self, mode: str, extra: list[str]) -> None:
        self.port = free_port()
        self.host = "127.0.0.1"
        self.url = f"http://{self.host}:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "jobtrio.bench.child", mode, "--port", str(self.port)] + extra,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()  # "ready", or b"" if it died first
        if line.strip() != b"ready":
            self.stop()
            raise SystemExit(f"jobtrio bench: the {mode} process did not start (see above)")

    @classmethod
    def node(cls, backend: str, directory: str, redis_url: str | None, workers: int) -> Served:
        extra = ["--backend", backend, "--directory", directory, "--workers", str(workers)]
        if redis_url:
            extra += ["--redis-url", redis_url, "--prefix", f"benchhttp{time.monotonic_ns()}"]
        return cls("node", extra)

    @classmethod
    def ceiling(cls) -> Served:
        return cls("ceiling", [])

    def rss_bytes(self) -> int:
        return int(psutil.Process(self.process.pid).memory_info().rss)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
