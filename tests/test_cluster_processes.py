"""Real clusters: separate ``jobtrio serve`` processes over real websockets and a real Redis.

Each test starts its nodes as subprocesses (``tests/nodeproc.py``), on free
ports, sharing the session's redis-server under a key prefix of their own so
no two tests see each other's queues. Only the public HTTP API is used to
observe them, as an operator would: what every node's ``/api/v1/leader`` and
``/api/v1/nodes`` say, and what the job records say about their attempts.

Timings are shrunk so each test runs in seconds: ELECTION_TIMEOUT=1s,
ELECTION_INTERVAL=0.3s (SWIM then probes every 0.2s) and JOB_LEASE=1s.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.nodeproc import HTTP, NodeProcess
from tests.servers import RedisServer, free_port
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow

ALGORITHMS = ("bully", "raft", "gossip")
SECRET = "cluster-test-secret"
APP = "tests.crash_app:registry"
SLOW_SECONDS = 3.0  # long enough to be caught running on the leader when it dies


class Cluster:
    """The nodes of one test's cluster, all sharing one Redis key prefix."""

    def __init__(self, tmp_path: Path, redis: RedisServer, algorithm: str) -> None:
        self.tmp_path = tmp_path
        self.redis_url = redis.url
        self.algorithm = algorithm
        self.prefix = "c" + uuid.uuid4().hex[:12]
        self.nodes: dict[str, NodeProcess] = {}
        self.addresses: dict[str, str] = {}

    def prepare(
        self,
        node_id: str,
        peers: list[str] | None = None,
        secret: str = SECRET,
        port: int | None = None,
    ) -> NodeProcess:
        """A node not started yet; ``peers`` are node ids whose cluster ports it dials first."""
        port = port or free_port()
        self.addresses[node_id] = f"127.0.0.1:{port}"
        seeds = [self.addresses[p] for p in peers or [] if p in self.addresses]
        env = {
            "NODE_ID": node_id,
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.prefix,
            "ELECTION_ALGORITHM": self.algorithm,
            "ELECTION_TIMEOUT": "1s",
            "ELECTION_INTERVAL": "0.3s",
            "CLUSTER_PORT": str(port),
            "CLUSTER_HOST": "127.0.0.1",
            "CLUSTER_PEERS": ",".join(seeds),
            "CLUSTER_SECRET": secret,
            "JOB_LEASE": "1s",
            "WORKER_COUNT": "2",
            "RETRY_BASE_DELAY": "0.1s",
            "SHUTDOWN_GRACE": "5s",
        }
        node = NodeProcess(env, self.tmp_path / f"{node_id}.log", app=APP)
        self.nodes[node_id] = node
        return node

    def start(self, ids: list[str]) -> None:
        """Start nodes that all name each other as peers (a statically configured cluster)."""
        ports = {node_id: free_port() for node_id in ids}
        for node_id in ids:
            self.addresses[node_id] = f"127.0.0.1:{ports[node_id]}"
        for node_id in ids:
            self.prepare(node_id, [p for p in ids if p != node_id], port=ports[node_id])
        for node_id in ids:
            self.nodes[node_id].launch()
        for node_id in ids:
            wait_until_sync(
                self.nodes[node_id].healthy, timeout=20, message=f"{node_id} to answer /health"
            )

    def live(self) -> dict[str, NodeProcess]:
        return {i: n for i, n in self.nodes.items() if n.exited() is None}

    def stop_all(self) -> None:
        for node in self.nodes.values():
            if node.exited() is None:
                node.kill()


MakeCluster = Callable[[str], Cluster]


@pytest.fixture
def cluster_factory(tmp_path: Path, redis_server: RedisServer) -> Iterator[MakeCluster]:
    """Clusters whose processes are killed at the end of the test, whatever happened."""
    made: list[Cluster] = []

    def make(algorithm: str) -> Cluster:
        cluster = Cluster(tmp_path, redis_server, algorithm)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in made:
            cluster.stop_all()


def api(node: NodeProcess, path: str) -> dict[str, Any]:
    r = HTTP.get(node.url + path, timeout=2)
    r.raise_for_status()
    return r.json()


def agreed_leader(
    nodes: dict[str, NodeProcess], algorithm: str, same_epoch: bool = True
) -> str | None:
    """The one leader every given node names, if they all name the same live one.

    ``same_epoch``: also require every node to report the same fencing epoch
    (not when an outsider on the same Redis keeps taking newer ones).
    """
    leaders, epochs = set(), set()
    for node in nodes.values():
        try:
            view = api(node, "/api/v1/leader")
            election = api(node, "/api/v1/election")
        except httpx.HTTPError:
            return None
        assert election["algorithm"] == algorithm
        leaders.add(view["leader"])
        epochs.add(election["fencing_epoch"])
    # every node reports the same leader and the same fencing epoch (a gossip term is local)
    if len(leaders) != 1 or (same_epoch and len(epochs) != 1):
        return None
    [leader] = leaders
    if leader not in nodes:
        return None
    # the leader itself only says so once it holds a fencing epoch
    if not api(nodes[leader], "/api/v1/election")["is_leader"]:
        return None
    return leader


def wait_for_leader(nodes: dict[str, NodeProcess], algorithm: str, timeout: float = 20.0) -> str:
    return wait_until_sync(
        lambda: agreed_leader(nodes, algorithm),
        timeout=timeout,
        message=f"{sorted(nodes)} to agree on a leader",
    )


def member_states(node: NodeProcess) -> dict[str, str]:
    return {m["node_id"]: m["state"] for m in api(node, "/api/v1/nodes")["nodes"]}


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_leader_failover_loses_no_job(cluster_factory: MakeCluster, algorithm: str) -> None:
    """SIGKILL the leader mid-work: a new leader is agreed and every job still completes.

    The jobs cut off on the dead node come back when their lease expires (the
    new leader's duty), so their attempts read: lost on the dead node, then
    completed on a survivor. No job completes twice.
    """
    cluster: Cluster = cluster_factory(algorithm)
    ids = ["node-1", "node-2", "node-3"]
    cluster.start(ids)
    leader = wait_for_leader(cluster.live(), algorithm)

    # submitted at the leader: a node that takes a submission while idle leases it in the
    # same call (the group commit's lent claim), so the leader runs slow jobs at once;
    # submitted elsewhere, they reached the leader only if its idle poll won some
    entry = cluster.nodes[leader]
    slow = [
        entry.submit({"type": "slow", "payload": {"seconds": SLOW_SECONDS}})["id"] for _ in range(9)
    ]
    fast = [entry.submit({"type": "echo", "payload": {"n": i}})["id"] for i in range(20)]

    def running_on_leader() -> list[str]:
        found = []
        for job_id in slow:
            job = entry.get(job_id)
            if job["status"] == "running" and job["attempts"][-1]["node_id"] == leader:
                found.append(job_id)
        return found

    wait_until_sync(running_on_leader, timeout=15, message=f"slow jobs to run on {leader}")
    victims = running_on_leader()
    cluster.nodes[leader].kill()

    survivors = cluster.live()
    new_leader = wait_for_leader(survivors, algorithm)
    assert new_leader != leader

    front = next(iter(survivors.values()))
    every = slow + fast

    def all_completed() -> bool:
        return all(front.get(i)["status"] == "completed" for i in every)

    wait_until_sync(all_completed, timeout=40, interval=0.25, message="every job to complete")
    assert victims, "no slow job was running on the leader when it was killed"
    for job_id in victims:
        attempts = front.get(job_id)["attempts"]
        outcomes = [(a["outcome"], a["node_id"]) for a in attempts]
        assert ("lost", leader) in outcomes, outcomes
        assert attempts[-1]["outcome"] == "completed", outcomes
        assert attempts[-1]["node_id"] in survivors, outcomes
        assert front.get(job_id)["result"]["ran_on"] in survivors
    for job_id in every:
        outcomes = [a["outcome"] for a in front.get(job_id)["attempts"]]
        assert outcomes.count("completed") == 1, (job_id, outcomes)
    # the survivors still agree after all that
    assert agreed_leader(survivors, algorithm) == new_leader


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_node_joins_and_another_leaves(cluster_factory: MakeCluster, algorithm: str) -> None:
    """Membership changes at run time: every node's /nodes converges on the same view."""
    cluster: Cluster = cluster_factory(algorithm)
    ids = ["node-1", "node-2", "node-3"]
    cluster.start(ids)
    wait_for_leader(cluster.live(), algorithm)

    # the joiner knows one live peer only; SWIM tells it (and everyone) the rest
    cluster.prepare("node-4", peers=["node-2"]).start()
    everyone = [*ids, "node-4"]

    def all_alive_everywhere() -> bool:
        return all(
            all(member_states(node).get(i) == "alive" for i in everyone)
            for node in cluster.live().values()
        )

    wait_until_sync(all_alive_everywhere, timeout=15, message="node-4 to be alive everywhere")
    leader = wait_for_leader(cluster.live(), algorithm)

    leaver = next(i for i in ids if i != leader and i != "node-2")
    assert cluster.nodes[leaver].terminate() == 0
    stayers = [i for i in everyone if i != leaver]

    def converged() -> bool:
        for node in cluster.live().values():
            states = member_states(node)
            if states.get(leaver) != "left":
                return False
            if any(states.get(i) != "alive" for i in stayers):
                return False
        return True

    wait_until_sync(converged, timeout=15, message=f"{leaver} to show left everywhere")
    assert wait_for_leader(cluster.live(), algorithm) in stayers
    # a graceful leave is not a failure: it stays "left" (never "dead") everywhere
    for node in cluster.live().values():
        assert member_states(node)[leaver] == "left"


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_the_leader_leaves_gracefully_and_the_rest_elect_another(
    cluster_factory: MakeCluster, algorithm: str
) -> None:
    """A rolling restart stops the leader with SIGTERM; the other two must carry on.

    Raft once waited forever here: its bootstrap guard (CLUSTER_SIZE, by
    default the CLUSTER_PEERS count) kept counting the node that had left.
    """
    cluster: Cluster = cluster_factory(algorithm)
    ids = ["node-1", "node-2", "node-3"]
    cluster.start(ids)
    leader = wait_for_leader(cluster.live(), algorithm)
    assert cluster.nodes[leader].terminate() == 0

    survivors = cluster.live()
    assert wait_for_leader(survivors, algorithm, timeout=10) != leader
    for node in survivors.values():
        assert member_states(node)[leader] == "left"
    # the new leader acts: a due job no claim takes (a type no node runs) is promoted by
    # leader duties only (a claim takes a due job it can run itself)
    due = time.time() + 0.3
    job_ids = [n.submit({"type": UNRUN, "scheduled_at": due})["id"] for n in survivors.values()]
    assert_promoted(next(iter(survivors.values())), job_ids)


@pytest.mark.parametrize("algorithm", ALGORITHMS)
def test_a_peer_with_the_wrong_secret_cannot_join(
    cluster_factory: MakeCluster, algorithm: str
) -> None:
    """CLUSTER_SECRET keeps a peer out of the membership, and so out of the elections.

    It guards the peer port only: the outsider here shares the Redis, so it
    still runs jobs, and (bully, gossip) leads a cluster of its own.
    """
    cluster: Cluster = cluster_factory(algorithm)
    ids = ["node-1", "node-2", "node-3"]
    cluster.start(ids)
    leader = wait_for_leader(cluster.live(), algorithm)
    members = cluster.live()

    # node-9 would outrank everyone (bully, gossip) if it got in; it shares the Redis too
    intruder = cluster.prepare("node-9", peers=ids, secret="not-the-secret").start()

    def refused_everywhere() -> bool:
        return all(
            "refused a peer connection" in cluster.nodes[i].log_path.read_text() for i in ids
        )

    wait_until_sync(refused_everywhere, timeout=10, message="every node to refuse node-9")
    # it keeps trying (join retries, probes); watch several election timeouts
    deadline = time.monotonic() + 3.0
    while time.monotonic() < deadline:
        for node in members.values():
            assert "node-9" not in member_states(node)
        assert agreed_leader(members, algorithm, same_epoch=False) == leader
        time.sleep(0.1)
    assert set(member_states(intruder)) == {"node-9"}

    # the cluster keeps working: jobs submitted anywhere complete
    job_ids = [members[i].submit({"type": "echo", "payload": {"i": i}})["id"] for i in ids]
    assert_completes(members[ids[0]], job_ids)

    # node-9 shares the Broker: under bully and gossip it leads its cluster of one
    # and takes a newer fencing epoch, which fences off the real leader's duties.
    # Once it is gone the real leader must act again: a due job no claim takes (a type
    # no node runs) is only promoted by a leader's duties.
    intruder.kill()
    assert agreed_leader(members, algorithm, same_epoch=False) == leader
    due = time.time() + 0.5
    job_ids = [members[i].submit({"type": UNRUN, "scheduled_at": due})["id"] for i in ids]
    assert_promoted(members[ids[0]], job_ids)


#: A job type no node has a processor for: no claim takes it, only the leader promotes it.
UNRUN = "nobody-runs-this"


def assert_promoted(node: NodeProcess, job_ids: list[str], timeout: float = 15) -> None:
    wait_until_sync(
        lambda: all(node.get(j)["status"] == "pending" for j in job_ids),
        timeout=timeout,
        message=f"jobs {job_ids} to be promoted",
    )


def assert_completes(node: NodeProcess, job_ids: list[str], timeout: float = 15) -> None:
    wait_until_sync(
        lambda: all(node.get(j)["status"] == "completed" for j in job_ids),
        timeout=timeout,
        message=f"jobs {job_ids} to complete",
    )
