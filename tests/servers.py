"""Real servers for tests: a private redis-server on a free port."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import redis

# Ports handed out by this process, never handed out twice.
_HANDED_OUT: set[int] = set()
# Below Linux's ephemeral range (32768-60999): the kernel never picks these for an
# outgoing connection, so a port found free here stays free until the server binds it.
# (Asking the kernel for port 0 returned an ephemeral port, which a client socket of a
# parallel test could take in between: "Address already in use" in CI.)
_PORT_RANGE = (20000, 32000)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on, outside the ephemeral range."""
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(*_PORT_RANGE)
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _HANDED_OUT.add(port)
        return port
    raise RuntimeError(f"no free port in {_PORT_RANGE}")


class RedisServer:
    """A redis-server of the test session's own, with AOF on (fsync always).

    ``restart()`` stops and starts it on the same port and data directory,
    so a test can check that what was acknowledged survives.
    """

    def __init__(self, directory: Path, port: int | None = None, extra: Sequence[str] = ()) -> None:
        """``extra``: more redis-server arguments (``--name value`` each)."""
        self.directory = directory
        self.port = port or free_port()
        self.extra = list(extra)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed; .ci/run installs it")
        self.process = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
                "--logfile",
                str(self.directory / "redis.log"),
                *self.extra,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        while True:
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.02)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def flush_functions(self) -> None:
        """Deletes every Redis Functions library: a test's prefix has libraries of its own
        (about 1.4 MB a prefix), which a session's server would otherwise keep for every
        test. Safe at any time: a node loads what it calls again. Nothing when the server
        is not running (a test stopped it)."""
        if self.process is None or self.process.poll() is not None:
            return
        client = redis.Redis(port=self.port, socket_connect_timeout=1.0, socket_timeout=10.0)
        try:
            client.function_flush("SYNC")
        except redis.ConnectionError:
            pass
        finally:
            client.close()


def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of one test's own, for the tests that change its settings or restart
    it: a module takes it as its ``server`` fixture, ``pytest.fixture(own_server, name=...)``."""
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()
