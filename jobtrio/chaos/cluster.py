"""The processes a chaos run starts and hurts: one redis-server and N ``jobtrio serve`` nodes.

Built from ``jobtrio.localcluster`` (the same commands ``jobtrio cluster up``
runs), plus what a nemesis needs: kill, pause, resume and restart one node,
restart Redis on its port and data folder, and cut a node off from its peers
through the test-only partition file (``jobtrio.testfaults``). The state
file is kept current, so ``jobtrio cluster down --data-dir DIR`` stops
whatever a chaos run that died hard left behind; ``close`` stops it all
itself, also after a failure.
"""

from __future__ import annotations

import contextlib
import random
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from ..localcluster import (
    ClusterFailure,
    ClusterState,
    NodeOptions,
    NodeSpec,
    ProcessRef,
    agreed_leader,
    election_view,
    locked,
    new_secret,
    save_state,
    start_node,
    start_redis,
    state_path,
    stop_processes,
)
from ..testfaults import CLOCK_OFFSET_ENV, PARTITION_FILE_ENV

#: Settings every chaos node runs with: short retry delays and a short purge
#: TTL, so retries, purges and reconciliation all happen inside a short run.
NODE_ENV = {
    "RETRY_BASE_DELAY": "200ms",
    "RETRY_MAX_DELAY": "1s",
    "RETRY_JITTER_FACTOR": "0.1",
    "FINISHED_JOB_TTL": "20s",
    "WORKER_COUNT": "4",
}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll ``condition`` until truthy; ``ClusterFailure`` naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise ClusterFailure(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _free_port(taken: set[int]) -> int:
    """A free port below Linux's ephemeral range (32768-60999).

    A port the kernel picked for ``bind(0)`` is ephemeral: any outgoing connection
    (a client of the run) may take it before the node binds it.
    """
    rng = random.Random()
    while True:
        port = rng.randrange(20000, 32000)
        if port in taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        taken.add(port)
        return port


def _plan_nodes(count: int, data_dir: Path) -> list[NodeSpec]:
    """Nodes on free ports the OS picks, never ``cluster up``'s preferred 8080.., 7946..:
    a nemesis frees a port each time it kills a node, and a ``cluster up`` started
    meanwhile in another folder would take it."""
    taken: set[int] = set()
    return [
        NodeSpec(
            node_id=f"node-{i + 1}",
            api_port=_free_port(taken),
            metrics_port=_free_port(taken),
            cluster_port=_free_port(taken),
            log=str(data_dir / "logs" / f"node-{i + 1}.log"),
        )
        for i in range(count)
    ]


class ChaosCluster:
    """Redis and the nodes of one chaos run, in ``data_dir``."""

    def __init__(
        self,
        data_dir: Path,
        nodes: int,
        *,
        job_lease: float,
        clock_skew: float = 0.0,
    ) -> None:
        self.data_dir = data_dir
        self.job_lease = job_lease
        data_dir.mkdir(parents=True, exist_ok=True)
        env_file = data_dir / "chaos.env"
        env_file.write_text("".join(f"{k}={v}\n" for k, v in NODE_ENV.items()))
        self.state = ClusterState(
            data_dir=str(data_dir),
            cwd=str(Path.cwd()),
            redis_url="",
            options=NodeOptions(
                job_lease=f"{job_lease:g}s", shutdown_grace="2s", env_file=str(env_file)
            ),
            nodes=_plan_nodes(nodes, data_dir),
            secret=new_secret(),
        )
        #: The last node runs with its clock off by this many seconds, restarts included.
        self.skewed = self.state.nodes[-1].node_id if clock_skew else None
        self.clock_skew = clock_skew
        self._children: list[subprocess.Popen[bytes]] = []
        self._paused: set[str] = set()
        self._redis_port = 0

    # -- whole cluster ---------------------------------------------------------------

    @property
    def nodes(self) -> list[NodeSpec]:
        return self.state.nodes

    def start(self, leader_timeout: float = 120.0) -> str:
        """Start Redis and every node; return the leader they agree on."""
        self._redis_port = _free_port(set())
        self._start_redis()
        for node in self.nodes:
            self.start_node(node.node_id)
        wait_for(
            lambda: agreed_leader(self.nodes), leader_timeout, "the nodes to agree on a leader"
        )
        return str(agreed_leader(self.nodes))

    def close(self) -> None:
        """Stop everything this run started (resumed first, so SIGTERM reaches it)."""
        for node in self.nodes:
            self.heal(node.node_id)
            if node.process is not None:
                node.process.signal(signal.SIGCONT)
        self._paused.clear()
        stop_processes([n.process for n in self.nodes if n.process is not None], grace=5.0)
        if self.state.redis is not None:
            stop_processes([self.state.redis], grace=10.0)
        for child in self._children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=5)
        self._children.clear()
        with locked(self.data_dir):
            state_path(self.data_dir).unlink(missing_ok=True)

    def leader(self) -> str | None:
        return agreed_leader(self.live_nodes())

    def live_nodes(self) -> list[NodeSpec]:
        return [
            n
            for n in self.nodes
            if n.node_id not in self._paused and n.process is not None and n.process.alive()
        ]

    # -- one node ----------------------------------------------------------------------

    def node(self, node_id: str) -> NodeSpec:
        return self.state.node(node_id)

    def start_node(self, node_id: str) -> None:
        node = self.node(node_id)
        env = {PARTITION_FILE_ENV: str(self.partition_file(node_id))}
        if node_id == self.skewed:
            env[CLOCK_OFFSET_ENV] = repr(self.clock_skew)
        proc = start_node(self.state, node, env)
        self._children.append(proc)
        self._save()
        # up only once it answers: a node that exits instead (its port taken meanwhile)
        # stops the run with its log, rather than letting its jobs look lost
        wait_for(
            lambda: proc.poll() is not None or election_view(node) is not None,
            120.0,
            f"{node_id} to answer after starting",
        )
        if proc.poll() is not None:
            raise ClusterFailure(
                f"{node_id} exited with {proc.returncode} while starting; see {node.log}"
            )

    def kill(self, node_id: str) -> None:
        """SIGKILL the node and wait until it is gone."""
        ref = self._ref(node_id)
        ref.signal(signal.SIGKILL)
        self._paused.discard(node_id)
        wait_for(lambda: not ref.alive(), 30.0, f"{node_id} to die after SIGKILL")
        self._reap()

    def pause(self, node_id: str) -> None:
        self._ref(node_id).signal(signal.SIGSTOP)
        self._paused.add(node_id)

    def resume(self, node_id: str) -> None:
        self._ref(node_id).signal(signal.SIGCONT)
        self._paused.discard(node_id)

    def partition_file(self, node_id: str) -> Path:
        return self.data_dir / f"partitioned-{node_id}"

    def cut_off(self, node_id: str) -> None:
        self.partition_file(node_id).touch()

    def heal(self, node_id: str) -> None:
        self.partition_file(node_id).unlink(missing_ok=True)

    # -- Redis -------------------------------------------------------------------------

    def restart_redis(self) -> None:
        """Stop Redis (SIGTERM: it writes out its AOF) and start it again on its port."""
        if self.state.redis is not None:
            stop_processes([self.state.redis], grace=10.0)
        self._reap()
        self._start_redis()

    def _start_redis(self) -> None:
        proc, url = start_redis(self.data_dir, self._redis_port)
        self._children.append(proc)
        self.state.redis = ProcessRef.of(proc.pid)
        self.state.redis_url = url
        self._save()

    # -- bookkeeping -------------------------------------------------------------------

    def _ref(self, node_id: str) -> ProcessRef:
        ref = self.node(node_id).process
        if ref is None:
            raise ClusterFailure(f"{node_id} was never started")
        return ref

    def _reap(self) -> None:
        self._children = [c for c in self._children if c.poll() is None]

    def _save(self) -> None:
        with locked(self.data_dir):
            save_state(self.state)
