"""A redis-server under callgrind for one side of a bench script, and its counts.

``bench_redis_enqueue_callgrind.py`` and ``bench_redis_enqueue_claim_callgrind.py``
each start Redis under callgrind with its instrumentation off, run their driver (the
script itself with ``--driver URL ... PID``) in a process whose ``PYTHONPATH`` is the
tree measured, and read one dump a phase. What differs between them is the driver
and how a phase's count is divided; this is the rest, so the two count alike.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence


def totals(path: str) -> int:
    """The instructions a callgrind file counted."""
    with open(path) as f:
        for line in f:
            if line.startswith(("totals:", "summary:")):
                return int(line.split()[1])
    return 0


def run_side(
    script: str,
    tree: str,
    driver_args: Sequence[str],
    phases: Sequence[str],
    keep: str | None = None,
) -> tuple[list[int], dict[str, float]]:
    """The counts of every dump in order (the driver's first half second, idle, then
    one a phase) and the seconds the driver says each took. ``keep``: a folder to copy
    each phase's callgrind file into, for ``callgrind_annotate``."""
    from jobtrio.bench.redis_server import free_port

    binary = shutil.which("redis-server")
    assert binary is not None, "redis-server is not on the PATH"
    with tempfile.TemporaryDirectory(prefix="rediscg") as directory:
        port = free_port()
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no"]
            + [f"--callgrind-out-file={directory}/cg.%p", binary]
            + ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
            + ["--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            import redis

            client = redis.Redis(port=port)
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise SystemExit("redis-server did not start under callgrind") from None
                    time.sleep(0.2)
            client.close()
            out = subprocess.run(
                [sys.executable, script, "--driver", f"redis://127.0.0.1:{port}/0"]
                + [*driver_args, str(server.pid)],
                check=True,
                capture_output=True,
                text=True,
                env={**os.environ, "PYTHONPATH": tree},
                cwd=tree,
            )
            took = json.loads(out.stdout.strip().splitlines()[-1])
        finally:
            server.terminate()
            server.wait()
        dumps = sorted(glob.glob(f"{directory}/cg.*.*"), key=lambda p: int(p.rsplit(".", 1)[1]))
        counts = [totals(p) for p in dumps]
        if keep:
            os.makedirs(keep, exist_ok=True)
            for p, phase in zip(dumps[2:], phases, strict=False):
                shutil.copy(p, os.path.join(keep, phase.replace(" ", "-") + ".out"))
    return counts, took
