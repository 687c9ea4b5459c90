"""A chaos test of the real processes: ``jobtrio chaos`` and ``tests/chaos``.

A real redis-server (AOF on) and N real ``jobtrio serve`` nodes on
loopback (``cluster``), client threads submitting mixed jobs to random
nodes (``workload``), a nemesis killing, pausing, cutting off nodes and
restarting Redis while one node's clock is off (``nemesis``), and a checker
comparing what the clients were told with what the cluster holds once every
fault is healed (``checker``). ``run_chaos`` ties them together and always
stops every process it started. docs/chaos.md has the details.
"""

from __future__ import annotations

import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..client import Client, JobtrioError, NotFound
from ..jobs import Job
from .checker import Verdict, check
from .cluster import ChaosCluster, wait_for
from .nemesis import FAULTS, FaultRecord, Nemesis
from .workload import SCHEDULE_TYPE, History, Workload

__all__ = ["FAULTS", "ChaosOptions", "ChaosResult", "run_chaos"]

#: The nodes' POISON_LIMIT (their default).
POISON_LIMIT = 5


@dataclass(slots=True)
class ChaosOptions:
    data_dir: Path
    nodes: int = 3
    #: Seconds of workload under faults.
    duration: float = 30.0
    seed: int | None = None
    faults: Sequence[str] = FAULTS
    #: Seconds of calm between two faults.
    fault_interval: float = 3.0
    #: Seconds the last node's clock is ahead (0: no skew).
    clock_skew: float = 5.0
    job_lease: float = 3.0
    clients: int = 3
    #: Submissions a second, all clients together.
    rate: float = 10.0
    #: Seconds between the run's schedule's ticks.
    schedule_every: float = 2.0
    #: Seconds to wait, after healing, for every job to finish.
    settle_timeout: float = 180.0


@dataclass(slots=True)
class ChaosResult:
    seed: int
    run_id: str
    verdict: Verdict
    faults: list[FaultRecord] = field(default_factory=list)
    seconds: float = 0.0


def run_chaos(options: ChaosOptions, log: Callable[[str], None] = lambda line: None) -> ChaosResult:
    """One run; every process started is stopped before this returns or raises."""
    seed = options.seed if options.seed is not None else secrets.randbits(32)
    rng = random.Random(seed)
    run_id = f"chaos-{seed}-{secrets.token_hex(3)}"
    started = time.monotonic()
    log(f"seed {seed}, run {run_id}, {options.nodes} nodes, data in {options.data_dir}")
    cluster = ChaosCluster(
        options.data_dir,
        options.nodes,
        job_lease=options.job_lease,
        clock_skew=options.clock_skew,
    )
    nemesis = Nemesis(
        cluster, random.Random(rng.getrandbits(64)), options.faults, options.fault_interval, log
    )
    try:
        leader = cluster.start()
        log(
            f"leader {leader}; {cluster.skewed or 'no node'} runs with its clock "
            f"{options.clock_skew:+g}s off"
        )
        urls = [n.api_url for n in cluster.nodes]
        history = History(run_id)
        schedule = f"{run_id}-every"
        _call(
            urls,
            lambda c: c.add_schedule(
                schedule,
                SCHEDULE_TYPE,
                {"chaos": run_id, "kind": "schedule"},
                every=options.schedule_every,
                max_retries=3,
            ),
        )
        workload = Workload(
            urls, history, random.Random(rng.getrandbits(64)), options.rate, options.clients, log
        )
        stop = threading.Event()
        errors: list[BaseException] = []
        threads = [
            threading.Thread(target=_guarded(f, stop, errors), args=(stop,), daemon=True)
            for f in (workload.run, nemesis.run)
        ]
        for t in threads:
            t.start()
        stop.wait(options.duration)  # the run's length, not a wait for a condition
        stop.set()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
        log(
            f"{time.monotonic() - started:7.1f}s workload stopped: "
            f"{len(history.acknowledged)} acknowledged, "
            f"{len(history.indeterminate)} indeterminate; healing"
        )
        nemesis.heal_all()
        wait_for(cluster.leader, 120.0, "a leader after healing")
        _call(urls, lambda c: c.delete_schedule(schedule))
        records, listed = _settle(urls, history, options.settle_timeout, log)
        verdict = check(
            history,
            records,
            listed,
            poison_limit=POISON_LIMIT,
            schedule_every=options.schedule_every,
        )
        return ChaosResult(seed, run_id, verdict, nemesis.history, time.monotonic() - started)
    finally:
        cluster.close()


def _guarded(
    fn: Callable[[threading.Event], None], stop: threading.Event, errors: list[BaseException]
) -> Callable[[threading.Event], None]:
    """``fn`` for a thread: an exception stops the run and is raised by the runner."""

    def run(event: threading.Event) -> None:
        try:
            fn(event)
        except BaseException as exc:
            errors.append(exc)
            stop.set()

    return run


def _call(urls: Sequence[str], fn: Callable[[Client], object], timeout: float = 60.0) -> None:
    """``fn`` on any node that answers, trying them in turn until ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        for url in urls:
            with Client(url, timeout=5.0) as client:
                try:
                    fn(client)
                    return
                except NotFound:
                    return  # deleting what is gone already
                except JobtrioError as exc:
                    if exc.status is not None and exc.status < 500:
                        raise
                    last = exc
        if time.monotonic() > deadline:
            raise RuntimeError(f"no node answered within {timeout:g}s: {last}")
        time.sleep(0.2)


def _get(clients: Sequence[Client], job_id: str) -> Job | None | bool:
    """The job's record, None when a node says it does not exist, False when none answers."""
    for client in clients:
        try:
            return client.get(job_id)
        except NotFound:
            return None
        except JobtrioError:
            continue
    return False


def _list_run(clients: Sequence[Client], run_id: str) -> list[Job] | None:
    """Every job whose payload names this run, or None when no node could list them."""
    for client in clients:
        try:
            return [j for j in client.list(page_size=500) if j.payload.get("chaos") == run_id]
        except JobtrioError:
            continue
    return None


def _settle(
    urls: Sequence[str], history: History, timeout: float, log: Callable[[str], None]
) -> tuple[dict[str, Job | None], list[Job]]:
    """Final records of the acknowledged jobs and the run's listed jobs, polled until
    all are finished or ``timeout`` passes (what is unfinished then is stuck).

    One listing reads every job of the run a page at a time; an acknowledged job the
    listing misses is read on its own, and is lost only if a node says it is unknown."""
    clients = [Client(url, timeout=10.0) for url in urls]
    deadline = time.monotonic() + timeout
    records: dict[str, Job | None] = {}
    listed: list[Job] = []
    try:
        while True:
            found = _list_run(clients, history.run_id)
            if found is not None:
                listed = found
                by_id = {job.id: job for job in listed}
                for job_id in history.acknowledged:
                    job = by_id.get(job_id)
                    if job is None:
                        one = _get(clients, job_id)
                        if one is False:
                            continue  # no node answered: read it next round
                        job = one  # type: ignore[assignment]
                    records[job_id] = job
                done = all(j.terminal for j in listed) and all(
                    isinstance(records.get(i), Job) and records[i].terminal  # type: ignore[union-attr]
                    for i in history.acknowledged
                )
                if done:
                    break
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)  # the poll period of a wait with a deadline
        unfinished = sum(1 for j in records.values() if j is None or not j.terminal)
        log(f"records read; {unfinished} acknowledged jobs unfinished or unknown")
        return records, listed
    finally:
        for client in clients:
            client.close()
