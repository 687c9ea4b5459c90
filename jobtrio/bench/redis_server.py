"""The Redis the benchmark runs on: its own ``redis-server``, and what Redis spent.

Without ``--redis-url`` the bench starts a ``redis-server`` of its own on a
free loopback port, without persistence (no AOF, no RDB): the figures are the
node's and the peers' cost, not the disk's. ``RedisCpuMeter`` reads Redis's
own accounting around a drain: ``used_cpu_user + used_cpu_sys`` of
``INFO cpu`` (everything the server spent, networking included) and the
``usec`` of the script calls in ``INFO commandstats`` (time inside the Lua
scripts that claim and finish jobs), each divided by the jobs drained. On
a shared ``--redis-url`` both include other clients' work.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

import redis


def free_port() -> int:
    """A loopback port nobody listens on right now (the usual small race is accepted)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrivateRedis:
    """A ``redis-server`` of the bench's own, without persistence, on a free port."""

    def __init__(self, directory: str) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit(
                "jobtrio bench: redis-server is not on the PATH; install it or pass --redis-url"
            )
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
            + ["--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    self.stop()
                    raise SystemExit("jobtrio bench: redis-server did not start") from None
                time.sleep(0.02)

    def flush(self) -> None:
        """Empty the server between runs, so no run pays for the last one's keys."""
        self.client.flushall()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def redis_cpu_seconds(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


#: Script calls in ``INFO commandstats``. The commands a script calls are counted under
#: their own names too, so summing every entry would count a script's work twice.
SCRIPT_COMMANDS = ("eval", "evalsha", "eval_ro", "evalsha_ro", "fcall", "fcall_ro")


def redis_script_seconds(client: redis.Redis) -> float:
    """Seconds Redis spent running scripts (Lua) since it started."""
    stats = client.info("commandstats")
    return (
        sum(
            float(stats[f"cmdstat_{name}"]["usec"])
            for name in SCRIPT_COMMANDS
            if f"cmdstat_{name}" in stats
        )
        / 1e6
    )


class RedisCpuMeter:
    """Redis CPU and script time between ``start`` and ``stop``, per job."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self._cpu = 0.0
        self._scripts = 0.0

    def start(self) -> None:
        self._cpu = redis_cpu_seconds(self.client)
        self._scripts = redis_script_seconds(self.client)

    def stop(self, jobs: int) -> dict[str, float]:
        cpu = redis_cpu_seconds(self.client) - self._cpu
        scripts = redis_script_seconds(self.client) - self._scripts
        return {
            "redis_cpu_us_per_job": cpu / jobs * 1e6,
            "redis_script_us_per_job": scripts / jobs * 1e6,
        }

    def close(self) -> None:
        self.client.close()
