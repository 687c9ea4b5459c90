"""Two real nodes with different processors on one Redis: each job runs where it can.

``gpu-1`` is built with the ``render`` processor and serves ``QUEUES=gpu,default``;
``mail-1`` is built with ``mail`` and serves every queue. Both claim from the
same Redis. Every job must run on the node that has its processor, none may
fail for a missing one, and a job neither can run waits, listed as unserved
by both nodes (each learns the other's types from the cluster membership).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.nodeproc import HTTP
from tests.test_cluster_processes import Cluster, MakeCluster, cluster_factory, wait_for_leader
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow
__all__ = ["cluster_factory"]  # the fixture, used by name


def start_two(cluster: Cluster) -> None:
    from tests.servers import free_port

    ids = ["gpu-1", "mail-1"]
    ports = {node_id: free_port() for node_id in ids}
    for node_id in ids:
        cluster.addresses[node_id] = f"127.0.0.1:{ports[node_id]}"
    builds = {
        "gpu-1": ("tests.queue_apps:gpu", {"QUEUES": "gpu,default"}),
        "mail-1": ("tests.queue_apps:mail", {}),
    }
    for node_id in ids:
        node = cluster.prepare(node_id, [p for p in ids if p != node_id], port=ports[node_id])
        node.app, extra = builds[node_id]
        node.env.update(extra)
    for node_id in ids:
        cluster.nodes[node_id].launch()
    for node_id in ids:
        wait_until_sync(cluster.nodes[node_id].healthy, timeout=20, message=f"{node_id} up")


def test_each_job_runs_on_a_node_that_can_run_it(
    cluster_factory: MakeCluster, tmp_path: Path
) -> None:
    cluster = cluster_factory("bully")
    start_two(cluster)
    nodes = cluster.nodes
    wait_for_leader(nodes, "bully")
    gpu, mail = nodes["gpu-1"], nodes["mail-1"]
    jobs: dict[str, str] = {}
    for i in range(30):
        via = gpu if i % 2 else mail  # submitted through either node
        jobs[via.submit({"type": "render", "queue": "gpu", "max_retries": 0})["id"]] = "gpu-1"
        jobs[via.submit({"type": "mail", "max_retries": 0})["id"]] = "mail-1"
    orphan = mail.submit({"type": "resize"})["id"]

    def all_done() -> bool:
        return all(gpu.get(j)["status"] in ("completed", "failed") for j in jobs)

    wait_until_sync(all_done, timeout=30, message="every render and mail job to end")
    for job_id, where in jobs.items():
        job = gpu.get(job_id)
        assert job["status"] == "completed", job
        assert [a["node_id"] for a in job["attempts"]] == [where], job
        assert job["result"] == {"ran_on": where}

    held = mail.get(orphan)
    assert held["status"] == "pending" and held["attempts"] == []

    def both_report_it() -> bool:
        for node in (gpu, mail):
            unserved = HTTP.get(node.url + "/api/v1/queues", timeout=5).json()["unserved"]
            if unserved != [
                {
                    "queue": "default",
                    "type": "resize",
                    "pending": 1,
                    "reason": "no worker for type resize",
                }
            ]:
                return False
        return True

    # the membership (and with it the peer's types) converges within a few probes
    wait_until_sync(both_report_it, timeout=15, message="both nodes to list resize as unserved")
    [gpu_queue] = [
        q
        for q in HTTP.get(mail.url + "/api/v1/queues", timeout=5).json()["queues"]
        if q["name"] == "default"
    ]
    assert gpu_queue["nodes"] == ["gpu-1", "mail-1"]
