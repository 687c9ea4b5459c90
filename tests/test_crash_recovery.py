"""Kill a real node process with SIGKILL and check that no accepted job is lost.

The node runs on the embedded SQLite default, exactly as ``jobtrio serve``
does on a fresh machine. Jobs are queued and running when the process dies;
after a restart every one of them completes (the running ones once their
lease expires and the restarted node's leader duties requeue them).
"""

from __future__ import annotations

import httpx
import pytest

from tests.nodeproc import HTTP, NodeProcess
from tests.waiting import wait_until_sync

pytestmark = pytest.mark.slow


def node(tmp_path, **env: str) -> NodeProcess:
    settings = {
        "SQLITE_PATH": str(tmp_path / "jobtrio.db"),
        "JOB_LEASE": "1s",
        "WORKER_COUNT": "4",
        "NODE_ID": "crashy",
        **env,
    }
    return NodeProcess(settings, tmp_path / "node.log", app="tests.crash_app:registry")


def test_sigkill_loses_no_accepted_job(tmp_path):
    first = node(tmp_path).start()
    ids = [first.submit({"type": "slow", "payload": {"seconds": 1.0}})["id"] for _ in range(40)]

    def some_running_or_done() -> bool:
        statuses = [first.get(i)["status"] for i in ids]
        return "running" in statuses and "pending" in statuses

    wait_until_sync(some_running_or_done, timeout=20, message="jobs to start running")
    first.kill()

    second = node(tmp_path, SERVER_PORT=str(first.port)).start()
    try:

        def all_completed() -> bool:
            return all(second.get(i)["status"] == "completed" for i in ids)

        wait_until_sync(all_completed, timeout=90, interval=0.5, message="all jobs to complete")
        jobs = [second.get(i) for i in ids]
        # some attempts were cut off by the kill and show up as lost leases
        lost = [j for j in jobs if any(a["outcome"] == "lost" for a in j["attempts"])]
        assert lost, "expected at least one job to have been running at the kill"
        for job in lost:
            assert job["attempts"][-1]["outcome"] == "completed"
        assert second.terminate() == 0
    finally:
        if second.exited() is None:
            second.kill()


def test_poison_job_that_kills_its_node_is_failed_after_the_limit(tmp_path):
    env = {"POISON_LIMIT": "2"}
    n = node(tmp_path, **env).start()
    port = str(n.port)
    # filed in a paused queue, so that the answer comes back before any claim: submitted
    # straight, the claim could kill the node while it still wrote the 201 (seen in CI)
    queue = n.url + "/api/v1/queues/poison"
    assert HTTP.post(queue + "/pause").status_code == 200
    job_id = n.submit({"type": "crash-node", "queue": "poison"})["id"]
    try:
        HTTP.post(queue + "/resume")
    except httpx.HTTPError:
        pass  # the claim killed it before it answered: resumed all the same
    crashes = 0

    def crashed_or_failed(n: NodeProcess) -> str | None:
        if n.exited() is not None:
            return "crashed"
        try:
            return "failed" if n.get(job_id)["status"] == "failed" else None
        except (httpx.HTTPError, AssertionError):
            return "crashed" if n.exited() is not None else None  # still starting

    # each claim of the job kills the node; restart it until the poison limit fails the job
    while (state := wait_until_sync(lambda n=n: crashed_or_failed(n), timeout=30)) == "crashed":
        crashes += 1
        assert crashes <= 3, "the poison limit did not stop the crashes"
        # it may claim the job and die again before it even answers HTTP
        n = node(tmp_path, SERVER_PORT=port, **env).launch()
    try:
        assert state == "failed"
        job = n.get(job_id)
        assert crashes == 2
        assert job["lease_expirations"] == 2
        assert "poison limit 2" in job["error"]
        assert [a["outcome"] for a in job["attempts"]] == ["lost", "lost"]
        # the node survives and keeps working
        other = n.submit({"type": "echo", "payload": {"ok": True}})["id"]
        wait_until_sync(lambda: n.get(other)["status"] == "completed", timeout=20)
        assert n.terminate() == 0
    finally:
        if n.exited() is None:
            n.kill()
