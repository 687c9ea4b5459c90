"""Run ``jobtrio serve`` as a real process for tests, and talk to it over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx

from tests.servers import free_port
from tests.waiting import wait_until_sync

REPO = Path(__file__).resolve().parent.parent

#: One client for every call: ``httpx.get`` builds a client, and with it a TLS context,
#: per call (about 290 ms each on a loaded 2-core machine), enough to miss a job that runs
#: for a second. No keep-alive, so a killed and restarted node on the same port is never
#: asked over a dead connection.
HTTP = httpx.Client(timeout=5, limits=httpx.Limits(max_keepalive_connections=0))


class NodeProcess:
    def __init__(self, env: dict[str, str], log_path: Path, app: str | None = None) -> None:
        self.port = int(env.get("SERVER_PORT") or free_port())
        self.env = {
            **os.environ,
            "METRICS_PORT": "0",
            "LOG_LEVEL": "info",
            **env,
            "SERVER_PORT": str(self.port),
            "SERVER_HOST": "127.0.0.1",
            "PYTHONPATH": str(REPO),
        }
        self.log_path = log_path
        self.app = app
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> NodeProcess:
        self.launch()
        wait_until_sync(self.healthy, timeout=timeout, message=f"node on {self.url} to answer")
        return self

    def launch(self) -> NodeProcess:
        """Start the process without waiting for it to answer."""
        args = [sys.executable, "-m", "jobtrio.cli", "serve"]
        if self.app:
            args += ["--app", self.app]
        log = open(self.log_path, "ab")
        # run in the test's own folder: no stray .env is read, relative paths stay there
        self.proc = subprocess.Popen(
            args, env=self.env, cwd=self.log_path.parent, stdout=log, stderr=log
        )
        return self

    def healthy(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"node exited with {self.proc.returncode}; see {self.log_path}")
        try:
            return HTTP.get(self.url + "/health", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def submit(self, job: dict) -> dict:
        r = HTTP.post(self.url + "/api/v1/jobs", json=job, timeout=5)
        assert r.status_code == 201, r.text
        return r.json()

    def get(self, job_id: str) -> dict:
        r = HTTP.get(f"{self.url}/api/v1/jobs/{job_id}", timeout=5)
        assert r.status_code == 200, r.text
        return r.json()
