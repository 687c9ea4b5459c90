"""The real thing: ``jobtrio serve`` as a process, driven by the client and the CLI.

The node runs on free ports with its SQLite file in a temporary directory
and the example processors (``--app examples.processors:registry``, which
also proves that import path works from the repository root). It is driven
by the blocking Python client and by ``jobtrio`` subprocesses, as a user
would; SIGTERM must stop it cleanly with exit code 0.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobtrio.client import Client, Conflict, NotFound
from jobtrio.config import ENVIRONMENT_VARIABLES
from jobtrio.jobs import JobStatus
from tests.servers import free_port
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent
JOBTRIO = Path(sys.executable).parent / "jobtrio"


class NodeProcess:
    """One ``jobtrio serve`` subprocess on free ports, stopped by SIGTERM."""

    def __init__(self, directory: Path, **settings: str) -> None:
        self.directory = directory
        self.port = free_port()
        self.metrics_port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
        env.pop("JOBTRIO_URL", None)
        env.pop("JOBTRIO_TOKEN", None)
        env.update(
            SERVER_HOST="127.0.0.1",
            SERVER_PORT=str(self.port),
            METRICS_PORT=str(self.metrics_port),
            SQLITE_PATH=str(directory / "jobtrio.db"),
            NODE_ID="e2e-node",
            WORKER_COUNT="4",
            SHUTDOWN_GRACE="1s",
            **settings,
        )
        self.env = env
        self.env_file = directory / "empty.env"
        self.env_file.write_text("")
        self.log = directory / "serve.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [
                    str(JOBTRIO),
                    "serve",
                    "--app",
                    "examples.processors:registry",
                    "--env-file",
                    str(self.env_file),
                ],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

        def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"jobtrio serve exited early:\n{self.log.read_text()}")
            try:
                return httpx.get(f"{self.url}/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until_sync(healthy, timeout=timeout, message=f"{self.url}/health to answer 200")

    def terminate(self, timeout: float = 30.0) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("e2e"))
    proc.start()
    try:
        yield proc
    finally:
        proc.kill()


def jobtrio(
    node: NodeProcess, *args: str, url: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(JOBTRIO), *args, "--url", url or node.url],
        cwd=node.directory,
        env=node.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


# --------------------------------------------------------------------------
# the Python client


def test_the_client_drives_a_real_node(node: NodeProcess) -> None:
    with Client(node.url) as client:
        health = client.health()
        assert health["status"] == "ok" and health["storage"] == "sqlite"
        assert "thumbnail" in client.stats()["processors"]

        job = client.submit("thumbnail", {"width": 1600, "height": 1200}, priority=9)
        done = client.wait(job.id, timeout=20)
        assert done.status == JobStatus.COMPLETED
        assert done.result["width"] == 160 and done.result["height"] == 120

        hook = client.wait(client.submit("webhook", {"url": "https://e.example"}).id, timeout=20)
        assert hook.result == {"delivered_to": "https://e.example", "attempt": 1}

        batch = client.submit_many([{"type": "echo", "payload": {"i": i}} for i in range(200)])
        finished = client.wait_many(batch, timeout=30)
        assert [j.result for j in finished] == [{"i": i} for i in range(200)]

        waiting = client.submit("noop", delay=3600)
        assert client.cancel(waiting.id).status == JobStatus.CANCELLED
        client.retry(waiting.id)
        assert client.wait(waiting.id, timeout=20).status == JobStatus.COMPLETED
        with pytest.raises(Conflict):
            client.cancel(waiting.id)
        client.purge(waiting.id)
        with pytest.raises(NotFound):
            client.get(waiting.id)

        wait_until_sync(
            lambda: len(list(client.list(type="echo", status="completed"))) == 200,
            message="200 echo jobs recorded",
        )
        assert client.cluster()["leader"] == "e2e-node"


def test_metrics_are_served_on_their_own_port(node: NodeProcess) -> None:
    with Client(node.url) as client:
        client.wait(client.submit("noop").id, timeout=20)
    text = httpx.get(f"http://127.0.0.1:{node.metrics_port}/metrics", timeout=5).text
    assert "jobs_submitted_total" in text
    assert "job_processing_duration_seconds" in text


# --------------------------------------------------------------------------
# the command line, as subprocesses


def test_cli_submit_wait_get_list_cancel_stats(node: NodeProcess) -> None:
    run = jobtrio(node, "submit", "echo", "--payload", '{"hello": "world"}', "--wait", "--json")
    assert run.returncode == 0, run.stderr
    job = json.loads(run.stdout)
    assert job["status"] == "completed" and job["result"] == {"hello": "world"}

    run = jobtrio(node, "jobs", "get", job["id"], "--json")
    assert run.returncode == 0
    assert json.loads(run.stdout)["id"] == job["id"]

    def listed() -> bool:
        run = jobtrio(node, "jobs", "list", "--type", "echo", "--limit", "1000", "--json")
        return job["id"] in {j["id"] for j in json.loads(run.stdout)["jobs"]}

    wait_until_sync(listed, timeout=20, message="the job to be listed")

    run = jobtrio(node, "submit", "fail", "--max-retries", "0", "--wait")
    assert run.returncode == 1
    assert "failed" in run.stdout

    run = jobtrio(node, "submit", "noop", "--delay", "1h", "--json")
    later = json.loads(run.stdout)
    assert later["status"] == "scheduled"
    run = jobtrio(node, "jobs", "cancel", later["id"], "--json")
    assert run.returncode == 0 and json.loads(run.stdout)["status"] == "cancelled"
    run = jobtrio(node, "jobs", "cancel", job["id"])
    assert run.returncode == 1
    assert run.stderr.strip().endswith("(HTTP 409, job_finished)")

    run = jobtrio(node, "submit", "noop", "--count", "2500", "--wait", "--json")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["statuses"] == {"completed": 2500}

    run = jobtrio(node, "stats", "--json")
    assert run.returncode == 0
    stats = json.loads(run.stdout)
    assert stats["node_id"] == "e2e-node" and stats["workers"]["total"] == 4

    run = jobtrio(node, "cluster", "status")
    assert run.returncode == 0 and "e2e-node" in run.stdout


def test_cli_failures_are_one_line_with_exit_1_or_2(node: NodeProcess) -> None:
    run = jobtrio(node, "jobs", "get", "01J9Z6N5G4X8W3QH2K7R1M0P9T")
    assert run.returncode == 1
    assert run.stderr.splitlines() == [
        "jobtrio: no job with id '01J9Z6N5G4X8W3QH2K7R1M0P9T' (HTTP 404, not_found)"
    ]
    run = jobtrio(node, "stats", url=f"http://127.0.0.1:{free_port()}")
    assert run.returncode == 1
    assert len(run.stderr.splitlines()) == 1 and "cannot reach" in run.stderr
    run = jobtrio(node, "submit", "noop", "--priority", "0")
    assert run.returncode == 2
    for result in (run,):
        assert "Traceback" not in result.stderr


# --------------------------------------------------------------------------
# stopping


def test_sigterm_stops_the_node_with_exit_0(tmp_path: Path) -> None:
    proc = NodeProcess(tmp_path)
    proc.start()
    try:
        with Client(proc.url) as client:
            running = client.submit("sleep", {"seconds": 60})
            wait_until_sync(
                lambda: client.get(running.id).status == JobStatus.RUNNING,
                message="the sleep job to run",
            )
        assert proc.terminate(timeout=30) == 0
        log = proc.log.read_text()
        assert "received SIGTERM: stopping gracefully" in log
        assert "Traceback" not in log
    finally:
        proc.kill()
