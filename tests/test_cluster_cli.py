"""``jobtrio cluster up|down|kill|restart|ps|drill`` as a user runs them: real processes.

Each test runs ``jobtrio cluster up`` as a subprocess in its own folder (so the
nodes and the redis-server it starts all have that folder as their working
directory), talks to the nodes over HTTP only, and drives failover with
``jobtrio cluster kill`` from "another shell". Orphans are checked two ways:
every PID the cluster recorded or that descended from the supervisor is gone,
and no process at all is left working in the test's folder. Whatever happens,
the fixture kills what is left at teardown.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import redis

from jobtrio.config import ENVIRONMENT_VARIABLES
from tests.servers import RedisServer
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow

JOBTRIO = Path(sys.executable).parent / "jobtrio"
#: one client: httpx.get() builds a TLS context per call (about 250 ms on a loaded machine)
HTTP = httpx.Client(timeout=5)


def clean_env() -> dict[str, str]:
    """The environment without any node setting (a developer's REDIS_ADDR must not leak in)."""
    import os

    return {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}


class LocalCluster:
    """One ``jobtrio cluster up`` subprocess and the folder it runs in."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.data_dir = folder / "cluster"
        self.output = folder / "up.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, float] = {}  # pid -> create time, of everything it started

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Another shell: a ``jobtrio cluster ...`` command against the same data folder."""
        return subprocess.run(
            [str(JOBTRIO), "cluster", *args, "--data-dir", str(self.data_dir)],
            cwd=self.folder,
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def up(self, *args: str, env: dict[str, str] | None = None) -> LocalCluster:
        """Start ``cluster up``; ``env`` reaches its nodes (they inherit its environment)."""
        with open(self.output, "wb") as out:
            self.proc = subprocess.Popen(
                [str(JOBTRIO), "cluster", "up", "--data-dir", str(self.data_dir), *args],
                cwd=self.folder,
                env={**clean_env(), "COLUMNS": "250", **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        wait_until_sync(self.ready, timeout=90, interval=0.1, message="cluster up to be ready")
        self.remember()
        return self

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def state(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.data_dir / "cluster.json").read_text())
        except (FileNotFoundError, ValueError):
            return None

    def ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"cluster up exited with {self.proc.returncode}:\n{self.text()}")
        state = self.state()
        return bool(state and state["ready"])

    def nodes(self) -> dict[str, dict[str, Any]]:
        result = self.run("ps", "--json")
        assert result.returncode == 0, result.stderr
        return {n["node_id"]: n for n in json.loads(result.stdout)["nodes"]}

    def remember(self) -> None:
        """Note every process the cluster runs now: the state file's and the supervisor's tree."""
        state = self.state() or {}
        refs = [state.get("redis")] + [n.get("process") for n in state.get("nodes", [])]
        for ref in refs:
            if ref:
                self.seen[ref["pid"]] = ref["started"]
        if self.proc is not None:
            try:
                for child in psutil.Process(self.proc.pid).children(recursive=True):
                    self.seen[child.pid] = child.create_time()
            except psutil.NoSuchProcess:
                pass

    def survivors(self) -> list[str]:
        """What is still running of what we saw, or of anything working in our folder."""
        left = []
        for pid, started in self.seen.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - started) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                    left.append(f"{pid} {' '.join(p.cmdline())}")
            except psutil.Error:
                pass
        for p in psutil.process_iter(["pid", "cwd", "cmdline", "status"]):
            cwd = p.info.get("cwd") or ""
            if cwd.startswith(str(self.folder)) and p.info["status"] != psutil.STATUS_ZOMBIE:
                left.append(f"{p.info['pid']} (cwd {cwd}) {' '.join(p.info['cmdline'] or [])}")
        return sorted(set(left))

    def kill_everything(self) -> None:
        self.remember()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid, started in self.seen.items():
            try:
                p = psutil.Process(pid)
                if abs(p.create_time() - started) < 0.01:
                    p.kill()
            except psutil.Error:
                pass
        for p in psutil.process_iter(["cwd"]):
            if (p.info.get("cwd") or "").startswith(str(self.folder)):
                try:
                    p.kill()
                except psutil.Error:
                    pass


@pytest.fixture
def local_cluster(tmp_path: Path) -> Iterator[LocalCluster]:
    cluster = LocalCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.kill_everything()


def election(node: dict[str, Any]) -> dict[str, Any] | None:
    try:
        r = HTTP.get(node["api_url"] + "/api/v1/election", timeout=2)
    except httpx.HTTPError:
        return None
    return r.json() if r.status_code == 200 else None


def agreed(nodes: list[dict[str, Any]]) -> str | None:
    """The leader every node names, which says so itself, with one fencing epoch everywhere."""
    views = [election(n) for n in nodes]
    if any(v is None for v in views):
        return None
    leaders = {v["leader"] for v in views if v}
    epochs = {v["fencing_epoch"] for v in views if v}
    if len(leaders) != 1 or len(epochs) != 1:
        return None
    [leader] = leaders
    named = [v for n, v in zip(nodes, views, strict=True) if n["node_id"] == leader]
    return leader if named and named[0] and named[0]["is_leader"] else None


def submit(node: dict[str, Any], job: dict[str, Any]) -> str:
    r = HTTP.post(node["api_url"] + "/api/v1/jobs", json=job, timeout=5)
    assert r.status_code == 201, r.text
    return r.json()["id"]


def get(node: dict[str, Any], job_id: str) -> dict[str, Any]:
    r = HTTP.get(f"{node['api_url']}/api/v1/jobs/{job_id}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def outcomes_of(job: dict[str, Any]) -> list[tuple[str, str]]:
    return [(a["outcome"], a["node_id"]) for a in job["attempts"]]


def test_up_elects_runs_jobs_survives_a_killed_leader_and_sigint_leaves_no_process(
    local_cluster: LocalCluster,
) -> None:
    # no prefetch: a node holds only the jobs it runs, so the leader surely gets some
    local_cluster.up(
        "--nodes",
        "3",
        "--algorithm",
        "raft",
        "--job-lease",
        "2s",
        "--workers",
        "2",
        env={"DISPATCH_PREFETCH": "0"},
    )
    out = local_cluster.text()
    nodes = local_cluster.nodes()
    assert sorted(nodes) == ["node-1", "node-2", "node-3"]
    # the table printed once they agreed: every node's URLs, and the dashboard serves
    for node in nodes.values():
        assert node["api_url"] in out and node["metrics_url"] in out
    assert f"Dashboard: {nodes['node-1']['dashboard_url']}" in out
    page = HTTP.get(nodes["node-1"]["dashboard_url"], timeout=5)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert HTTP.get(nodes["node-2"]["metrics_url"], timeout=5).status_code == 200

    leader = wait_until_sync(lambda: agreed(list(nodes.values())), timeout=10, message="leader")
    assert f"leader: {leader}" in out

    # submitted to the leader, which wakes its own workers first: it has jobs when it dies
    # (12 jobs of 4 s for 6 workers: two rounds, so the leader is busy for a while)
    front = nodes[leader]
    slow = [submit(front, {"type": "sleep", "payload": {"seconds": 4}}) for _ in range(12)]
    fast = [submit(front, {"type": "echo", "payload": {"n": i}}) for i in range(20)]

    def running_on_leader() -> list[str]:
        found = []
        for job_id in slow:
            job = get(front, job_id)
            if job["status"] == "running" and job["attempts"][-1]["node_id"] == leader:
                found.append(job_id)
        return found

    victims = wait_until_sync(running_on_leader, timeout=20, message=f"a job running on {leader}")
    killed = local_cluster.run("kill", "leader")
    assert killed.returncode == 0, killed.stderr
    assert killed.stdout.startswith(f"killed {leader} (pid {nodes[leader]['process']['pid']})")
    assert not psutil.pid_exists(nodes[leader]["process"]["pid"]) or (
        psutil.Process(nodes[leader]["process"]["pid"]).status() == psutil.STATUS_ZOMBIE
    )

    survivors = [n for i, n in nodes.items() if i != leader]
    entry = survivors[0]
    new_leader = wait_until_sync(
        lambda: agreed(survivors), timeout=20, message="the survivors to agree on a leader"
    )
    assert new_leader != leader

    every = slow + fast
    wait_until_sync(
        lambda: all(get(entry, j)["status"] == "completed" for j in every),
        timeout=60,
        interval=0.25,
        message="every job to complete",
    )
    for job_id in every:
        outcomes = [a["outcome"] for a in get(entry, job_id)["attempts"]]
        assert outcomes.count("completed") == 1, (job_id, outcomes)
    # the jobs the leader was running when it died ran again elsewhere, after their lease
    rerun = [j for j in slow if ("lost", leader) in outcomes_of(get(entry, j))]
    assert rerun, f"none of {victims} was still running on {leader} when it was killed"
    for job_id in rerun:
        assert get(entry, job_id)["attempts"][-1]["node_id"] != leader
    # the supervisor saw it all
    wait_until_sync(
        lambda: (
            f"{leader} stopped" in local_cluster.text()
            and f"leader: {new_leader}" in local_cluster.text()
        ),
        timeout=10,
        message="the supervisor to report the crash and the new leader",
    )
    ps = local_cluster.nodes()
    assert ps[leader]["process"]["running"] is False
    assert ps[new_leader]["is_leader"] is True

    # Ctrl-C: every process it started stops, and the state file goes
    local_cluster.remember()
    assert len(local_cluster.seen) >= 3  # redis and the two live nodes at least
    assert local_cluster.proc is not None
    local_cluster.proc.send_signal(signal.SIGINT)
    assert local_cluster.proc.wait(timeout=60) == 0, local_cluster.text()
    assert local_cluster.survivors() == []
    assert local_cluster.state() is None
    assert "stopped" in local_cluster.text().splitlines()[-1]


def test_restart_ps_and_down_from_another_shell(local_cluster: LocalCluster) -> None:
    local_cluster.up("--nodes", "2", "--algorithm", "bully", "--shutdown-grace", "2s")
    # one cluster per folder
    again = local_cluster.run("up", "--nodes", "2")
    assert again.returncode == 1
    assert "already runs from" in again.stderr and "jobtrio cluster down" in again.stderr

    before = local_cluster.nodes()["node-1"]["process"]["pid"]
    restarted = local_cluster.run("restart", "node-1")
    assert restarted.returncode == 0, restarted.stderr
    after = local_cluster.nodes()["node-1"]
    assert after["process"]["running"] and after["process"]["pid"] != before
    local_cluster.remember()
    # the restarted node rejoined: both nodes agree on one leader again
    nodes = list(local_cluster.nodes().values())
    wait_until_sync(lambda: agreed(nodes), timeout=20, message="the two nodes to agree again")

    unknown = local_cluster.run("kill", "node-9")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "jobtrio: no node 'node-9' in this cluster (its nodes: node-1, node-2)"
    )

    down = local_cluster.run("down")
    assert down.returncode == 0, down.stderr
    assert local_cluster.proc is not None
    assert local_cluster.proc.wait(timeout=30) == 0
    assert local_cluster.survivors() == []
    nothing = local_cluster.run("down")
    assert nothing.returncode == 0 and "nothing to stop" in nothing.stderr


def test_commands_without_a_cluster_say_so(tmp_path: Path) -> None:
    cluster = LocalCluster(tmp_path)
    for command in (["ps"], ["kill", "node-1"], ["restart", "node-1"]):
        result = cluster.run(*command)
        assert result.returncode == 1, command
        assert result.stderr.startswith(f"jobtrio: no cluster runs from {cluster.data_dir}")
        assert "Traceback" not in result.stderr


def test_drill_times_a_failover_and_completes_every_job(local_cluster: LocalCluster) -> None:
    result = subprocess.run(
        [
            str(JOBTRIO),
            "cluster",
            "drill",
            "--algorithm",
            "gossip",
            "--jobs",
            "12",
            "--data-dir",
            str(local_cluster.data_dir),
            "--json",
        ],
        cwd=local_cluster.folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    [row] = report["results"]
    assert row["ok"] and row["algorithm"] == "gossip"
    assert row["completed"] == 12
    assert row["new_leader"] and row["failover_seconds"] > 0
    assert local_cluster.survivors() == []


def test_down_stops_what_a_killed_supervisor_left(local_cluster: LocalCluster) -> None:
    """SIGKILL the supervisor: its nodes and Redis run on (own sessions); down stops them."""
    local_cluster.up("--nodes", "2", "--algorithm", "bully", "--shutdown-grace", "2s")
    local_cluster.remember()
    assert local_cluster.proc is not None
    local_cluster.proc.kill()
    local_cluster.proc.wait(timeout=10)
    running = [n for n in local_cluster.nodes().values() if n["process"]["running"]]
    assert len(running) == 2  # orphaned, not dead: down must find them
    down = local_cluster.run("down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.startswith("stopped the processes of ")
    assert local_cluster.survivors() == []
    assert local_cluster.state() is None


def test_up_fails_in_one_message_when_a_node_cannot_start(local_cluster: LocalCluster) -> None:
    result = subprocess.run(
        [
            str(JOBTRIO),
            "cluster",
            "up",
            "--nodes",
            "2",
            "--app",
            "no_such_module:registry",
            "--data-dir",
            str(local_cluster.data_dir),
        ],
        cwd=local_cluster.folder,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "exited while starting; its log:" in result.stderr
    assert "no_such_module" in result.stderr
    assert "Traceback" not in result.stderr
    assert local_cluster.survivors() == []
    assert local_cluster.state() is None


def test_up_uses_a_given_redis_and_leaves_it_running(
    local_cluster: LocalCluster, redis_server: RedisServer
) -> None:
    prefix = f"given{redis_server.port}x{time.monotonic_ns()}"
    local_cluster.up("--nodes", "1", "--redis", redis_server.url, env={"REDIS_KEY_PREFIX": prefix})
    ps = json.loads(local_cluster.run("ps", "--json").stdout)
    assert ps["redis"] == {"url": redis_server.url, "process": None}
    assert not (local_cluster.data_dir / "redis").exists()
    [node] = ps["nodes"]
    job_id = submit(node, {"type": "echo", "payload": {"n": 1}})
    wait_until_sync(lambda: get(node, job_id)["status"] == "completed", timeout=15)
    # the job went through the given Redis, under the prefix the nodes inherited
    assert redis.Redis(port=redis_server.port).keys(f"*{prefix}*")
    assert local_cluster.run("down").returncode == 0
    assert local_cluster.survivors() == []
    assert redis.Redis(port=redis_server.port).ping()  # not ours to stop
