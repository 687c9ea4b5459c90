"""A real multi-process cluster on loopback, for ``jobtrio cluster up`` and its siblings.

A supervisor process (``jobtrio cluster up``) starts a ``redis-server`` of its
own (AOF on, in the data folder) unless one is given, then one ``jobtrio
serve`` process per node on free ports, each logging to a file. Everything
it started is written to a state file in the data folder (PIDs with their
start times, ports, the peer secret), so ``cluster down``, ``kill``,
``restart`` and ``ps`` work from another shell, and a process is stopped by
its PID only while that PID still names the process that was started (a
recycled PID is left alone).

Nodes and Redis run in sessions of their own: Ctrl-C in the supervisor's
terminal reaches the supervisor alone, which then stops the nodes first
(SIGTERM, so running jobs get their grace) and Redis last, instead of every
process dying at once in no order.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil

STATE_FILE = "cluster.json"
#: The seed's ports, used when free; any free port otherwise.
PREFERRED_API_PORT, PREFERRED_METRICS_PORT, PREFERRED_CLUSTER_PORT = 8080, 9090, 7946
PREFERRED_REDIS_PORT = 6379


class ClusterFailure(Exception):
    """The local cluster cannot do what was asked; the message says why."""


@dataclass(slots=True)
class ProcessRef:
    """A process we started: its PID and start time, which together name it uniquely."""

    pid: int
    started: float

    @classmethod
    def of(cls, pid: int) -> ProcessRef:
        return cls(pid, psutil.Process(pid).create_time())

    def process(self) -> psutil.Process | None:
        """The live process, or None if it is gone (or its PID now names another one)."""
        try:
            proc = psutil.Process(self.pid)
            if abs(proc.create_time() - self.started) > 0.01:
                return None
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            return proc
        except psutil.Error:
            return None

    def alive(self) -> bool:
        return self.process() is not None

    def signal(self, signum: int) -> bool:
        proc = self.process()
        if proc is None:
            return False
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signum)
        return True


@dataclass(slots=True)
class NodeSpec:
    node_id: str
    api_port: int
    metrics_port: int
    cluster_port: int
    log: str
    process: ProcessRef | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def peer_address(self) -> str:
        return f"127.0.0.1:{self.cluster_port}"


@dataclass(slots=True)
class NodeOptions:
    """What every node of the cluster is started with (the flags of ``jobtrio serve``)."""

    algorithm: str = "raft"
    election_timeout: str = "1s"
    election_interval: str = "300ms"
    job_lease: str = "5s"
    shutdown_grace: str = "10s"
    workers: int | None = None
    app: str | None = None
    env_file: str | None = None
    log_level: str | None = None


@dataclass(slots=True)
class ClusterState:
    """Everything ``cluster up`` started; saved as JSON in the data folder."""

    data_dir: str
    cwd: str
    redis_url: str
    options: NodeOptions
    nodes: list[NodeSpec]
    secret: str
    supervisor: ProcessRef | None = None
    redis: ProcessRef | None = None
    ready: bool = False

    def node(self, node_id: str) -> NodeSpec:
        for node in self.nodes:
            if node.node_id == node_id:
                return node
        names = ", ".join(n.node_id for n in self.nodes)
        raise ClusterFailure(f"no node {node_id!r} in this cluster (its nodes: {names})")

    # -- persistence ------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterState:
        def ref(value: dict[str, Any] | None) -> ProcessRef | None:
            return None if value is None else ProcessRef(**value)

        nodes = [NodeSpec(**{**n, "process": ref(n.get("process"))}) for n in data.get("nodes", [])]
        return cls(
            data_dir=data["data_dir"],
            cwd=data["cwd"],
            redis_url=data["redis_url"],
            options=NodeOptions(**data["options"]),
            nodes=nodes,
            secret=data["secret"],
            supervisor=ref(data.get("supervisor")),
            redis=ref(data.get("redis")),
            ready=bool(data.get("ready")),
        )


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


@contextlib.contextmanager
def locked(data_dir: Path) -> Iterator[None]:
    """Serialize read-modify-write of the state file across the cluster commands."""
    data_dir.mkdir(parents=True, exist_ok=True)
    with open(data_dir / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load_state(data_dir: Path) -> ClusterState | None:
    path = state_path(data_dir)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ClusterFailure(f"{path} is not a cluster state file: {exc}") from None
    try:
        return ClusterState.from_json(data)
    except (KeyError, TypeError) as exc:
        raise ClusterFailure(f"{path} is not a cluster state file: missing {exc}") from None


def save_state(state: ClusterState) -> None:
    """Write atomically, readable by this user only (it holds the peer secret)."""
    path = state_path(Path(state.data_dir))
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state.to_json(), f, indent=2)
    os.replace(tmp, path)


def require_state(data_dir: Path) -> ClusterState:
    state = load_state(data_dir)
    if state is None:
        raise ClusterFailure(
            f"no cluster runs from {data_dir} (no {STATE_FILE}); start one with jobtrio cluster up"
        )
    return state


# -- ports ----------------------------------------------------------------------------


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pick_ports(preferred: Sequence[int], taken: set[int]) -> list[int]:
    """The preferred ports where they are free, any free port otherwise; all distinct."""
    chosen: list[int] = []
    for port in preferred:
        if port not in taken and _port_free(port):
            pick = port
        else:
            pick = _any_free_port()
            while pick in taken:
                pick = _any_free_port()
        taken.add(pick)
        chosen.append(pick)
    return chosen


def plan_nodes(count: int, data_dir: Path) -> list[NodeSpec]:
    taken: set[int] = set()
    api = pick_ports([PREFERRED_API_PORT + i for i in range(count)], taken)
    metrics = pick_ports([PREFERRED_METRICS_PORT + i for i in range(count)], taken)
    peers = pick_ports([PREFERRED_CLUSTER_PORT + i for i in range(count)], taken)
    logs = data_dir / "logs"
    return [
        NodeSpec(
            node_id=f"node-{i + 1}",
            api_port=api[i],
            metrics_port=metrics[i],
            cluster_port=peers[i],
            log=str(logs / f"node-{i + 1}.log"),
        )
        for i in range(count)
    ]


# -- starting and stopping processes ----------------------------------------------------


def start_redis(data_dir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """A redis-server with AOF on in ``DATA/redis``; returns it and its URL once it answers
    (``port``: this one, e.g. to restart it where the nodes look for it)."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise ClusterFailure(
            "redis-server is not installed (apt-get install redis-server), "
            "or give a Redis with --redis / REDIS_ADDR"
        )
    folder = data_dir / "redis"
    folder.mkdir(parents=True, exist_ok=True)
    if port is None:
        [port] = pick_ports([PREFERRED_REDIS_PORT], set())
    # fmt: off
    args = [
        binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
        "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
        "--logfile", str(folder / "redis.log"), "--daemonize", "no",
    ]
    # fmt: on
    proc = subprocess.Popen(
        args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 10
    import redis

    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    try:
        while True:
            if proc.poll() is not None:
                raise ClusterFailure(
                    f"redis-server exited with {proc.returncode}; see {folder / 'redis.log'}"
                )
            try:
                if client.ping():
                    return proc, url
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                proc.kill()
                raise ClusterFailure(f"redis-server did not answer on port {port} within 10s")
            time.sleep(0.05)
    finally:
        client.close()


def node_command(state: ClusterState, node: NodeSpec) -> list[str]:
    """``jobtrio serve`` with every setting of this node as a flag."""
    o = state.options
    peers = ",".join(n.peer_address for n in state.nodes)
    # fmt: off
    args = [
        sys.executable, "-m", "jobtrio.cli", "serve",
        "--node-id", node.node_id, "--host", "127.0.0.1", "--port", str(node.api_port),
        "--metrics-port", str(node.metrics_port),
        "--cluster-host", "127.0.0.1", "--cluster-port", str(node.cluster_port),
        "--peers", peers, "--redis", state.redis_url, "--algorithm", o.algorithm,
        "--election-timeout", o.election_timeout, "--election-interval", o.election_interval,
        "--job-lease", o.job_lease, "--shutdown-grace", o.shutdown_grace,
        "--data-dir", str(Path(state.data_dir) / "nodes"),
    ]
    # fmt: on
    if o.workers is not None:
        args += ["--workers", str(o.workers)]
    if o.log_level:
        args += ["--log-level", o.log_level]
    if o.app:
        args += ["--app", o.app]
    if o.env_file is not None:
        args += ["--env-file", o.env_file]
    return args


def start_node(
    state: ClusterState, node: NodeSpec, extra_env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start one node in a session of its own, appending to its log file
    (``extra_env``: variables for this node only, e.g. the chaos test's faults)."""
    Path(node.log).parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **(extra_env or {}), "CLUSTER_SECRET": state.secret}
    with open(node.log, "ab") as log:
        proc = subprocess.Popen(
            node_command(state, node),
            cwd=state.cwd,
            env=env,
            stdout=log,
            stderr=log,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    node.process = ProcessRef.of(proc.pid)
    return proc


def stop_processes(
    refs: Sequence[ProcessRef], grace: float, on_wait: Callable[[], None] | None = None
) -> None:
    """SIGTERM each, wait up to ``grace`` seconds for all, then SIGKILL what is left."""
    for ref in refs:
        ref.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while any(ref.alive() for ref in refs) and time.monotonic() < deadline:
        if on_wait is not None:
            on_wait()
        time.sleep(0.05)
    for ref in refs:
        ref.signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(ref.alive() for ref in refs) and time.monotonic() < deadline:
        if on_wait is not None:
            on_wait()
        time.sleep(0.02)


def grace_seconds(options: NodeOptions) -> float:
    from .durations import parse_duration

    # the node's own grace, plus time to hand back its jobs and close its ports
    return parse_duration(options.shutdown_grace) + 10.0


def stop_cluster(state: ClusterState, on_wait: Callable[[], None] | None = None) -> None:
    """Stop the nodes (gracefully), then Redis, if this cluster started it."""
    nodes = [n.process for n in state.nodes if n.process is not None]
    stop_processes(nodes, grace_seconds(state.options), on_wait)
    if state.redis is not None:
        stop_processes([state.redis], 10.0, on_wait)


# -- what the nodes say -----------------------------------------------------------------


@functools.cache
def http() -> httpx.Client:
    """One client for every poll: ``httpx.get`` builds a TLS context per call, which
    costs about 250 ms on a loaded 2-core machine (measured), longer than a poll period."""
    return httpx.Client(timeout=2.0)


def election_view(node: NodeSpec, timeout: float = 1.0) -> dict[str, Any] | None:
    try:
        r = http().get(node.api_url + "/api/v1/election", timeout=timeout)
    except httpx.HTTPError:
        return None
    if r.status_code != 200:
        return None
    data: dict[str, Any] = r.json()
    return data


def agreed_leader(nodes: Sequence[NodeSpec]) -> str | None:
    """The leader every given node names, if the leader is one of them, says so itself,
    and every node reports the same fencing epoch; else None."""
    views = {n.node_id: election_view(n) for n in nodes}
    if not views or any(v is None for v in views.values()):
        return None
    leaders = {v["leader"] for v in views.values() if v is not None}
    epochs = {v.get("fencing_epoch") for v in views.values() if v is not None}
    if len(leaders) != 1 or len(epochs) != 1 or None in epochs:
        return None
    [leader] = leaders
    view = views.get(leader)
    if view is None or not view.get("is_leader"):
        return None
    return str(leader)


def live_nodes(state: ClusterState) -> list[NodeSpec]:
    return [n for n in state.nodes if n.process is not None and n.process.alive()]


def new_secret() -> str:
    return secrets.token_hex(16)
