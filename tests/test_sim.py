"""The simulator: many seeds hold every invariant, a seed replays exactly, planted bugs are caught.

The seed sweep is the point of the simulator: 90 runs (30 seeds for each
election algorithm, 3- and 5-node clusters, every fault kind) in about two
minutes on a loaded 2-core machine. A failure names each failing seed with the command that
replays it, so a red CI run is a bug report, not a flake.

The last tests pin two bugs the simulator found in the node's actors, at the
level of the actor itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import trio

from jobtrio.actors.leader import LeaderDuties
from jobtrio.actors.leadership import Leadership
from jobtrio.actors.recorder import Recorder
from jobtrio.backends.base import Finish
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.config import Settings
from jobtrio.events import EventBus
from jobtrio.jobs import JobStatus
from jobtrio.sim import SimConfig, run
from jobtrio.sim.backends import ObservedBroker
from jobtrio.sim.cli import main as sim_main
from jobtrio.sim.determinism import seeded_tokens
from jobtrio.sim.history import History
from jobtrio.sim.runner import DEFAULT_FAULTS
from jobtrio.sim.trace import Trace
from jobtrio.submission import validate_submission

SEEDS_PER_ALGORITHM = 30
SWEEP_DURATION = 8.0


def sweep_config(seed: int, algorithm: str) -> SimConfig:
    """3- and 5-node clusters; every third seed also skews the nodes' clocks."""
    faults = DEFAULT_FAULTS + ("skew",) if seed % 3 == 0 else DEFAULT_FAULTS
    return SimConfig(
        seed=seed,
        algorithm=algorithm,
        nodes=3 if seed % 2 else 5,
        duration=SWEEP_DURATION,
        faults=faults,
    )


@pytest.mark.parametrize("algorithm", ["raft", "bully", "gossip"])
def test_every_seed_holds_every_invariant(algorithm: str) -> None:
    failures = []
    dependents_ran = 0
    for seed in range(1, SEEDS_PER_ALGORITHM + 1):
        result = run(sweep_config(seed, algorithm))
        assert result.jobs_acknowledged > 0, "the clients submitted nothing"
        dependents_ran += result.jobs_dependent_ran
        if not result.ok:
            lines = [f"  {v}" for v in result.violations[:5]]
            failures.append(
                f"seed {seed}: {len(result.violations)} violation(s)\n"
                + "\n".join(lines)
                + f"\n  replay: {result.config.replay_command()}"
            )
    assert not failures, f"{len(failures)} failing seed(s) ({algorithm}):\n" + "\n".join(failures)
    # the workload's chains and chords ran, so their invariants were exercised
    assert dependents_ran > SEEDS_PER_ALGORITHM


def test_the_same_seed_gives_the_same_trace() -> None:
    config = SimConfig(seed=11, algorithm="raft", nodes=5, duration=6.0)
    first = run(config, full_trace=True)
    second = run(config, full_trace=True)
    assert first.trace_lines == second.trace_lines
    assert first.trace_digest == second.trace_digest
    assert first.events > 1000  # a real run, not an empty one
    other = run(SimConfig(seed=12, algorithm="raft", nodes=5, duration=6.0))
    assert other.trace_digest != first.trace_digest


def test_a_seed_replays_in_another_process_whatever_its_hash_seed(tmp_path) -> None:
    """The printed replay command must reproduce the run, even under another PYTHONHASHSEED."""
    for hash_seed, algorithm in (("1", "bully"), ("2", "raft"), ("3", "gossip")):
        here = run(SimConfig(seed=5, algorithm=algorithm, nodes=3, duration=4.0), full_trace=True)
        trace = tmp_path / f"{algorithm}.trace"
        out = subprocess.run(
            [sys.executable, "-m", "jobtrio.sim", "--seed", "5", "--nodes", "3"]
            + ["--duration", "4", "--algorithm", algorithm, "--json", "--trace", str(trace)],
            env={**os.environ, "PYTHONHASHSEED": hash_seed},
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        there = json.loads(out.stdout)["trace_digest"]
        if there != here.trace_digest:
            assert here.trace_lines is not None
            theirs = trace.read_text().splitlines()
            i = next(
                (
                    i
                    for i, (a, b) in enumerate(zip(here.trace_lines, theirs, strict=False))
                    if a != b
                ),
                min(len(theirs), len(here.trace_lines)),
            )
            context = "\n".join(
                [
                    *here.trace_lines[max(0, i - 5) : i + 2],
                    "--- the other process:",
                    *theirs[i : i + 2],
                ]
            )
            raise AssertionError(f"{algorithm}: traces part at event {i}:\n{context}")


def _first_caught(plant: str, faults: tuple[str, ...], invariant: str) -> SimConfig:
    for seed in range(1, 11):
        config = SimConfig(
            seed=seed, algorithm="bully", nodes=5, duration=15.0, faults=faults, plant=plant
        )
        result = run(config)
        if any(v.invariant == invariant for v in result.violations):
            return config
    raise AssertionError(f"the planted {plant} bug went unnoticed for 10 seeds")


@pytest.mark.parametrize(
    "plant, faults, invariant",
    [
        ("fencing", ("partition", "crash"), "one_acting_leader"),
        ("lease-tokens", ("broker",), "completed_once"),
    ],
)
def test_a_planted_bug_is_caught_with_its_replay_command(
    plant: str, faults: tuple[str, ...], invariant: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _first_caught(plant, faults, invariant)
    # without the plant, the same seed is clean: the violation is the bug's
    clean = run(dataclasses.replace(config, plant=None))
    assert clean.ok, clean.violations

    argv = config.replay_command().split()[2:]
    assert sim_main(argv) == 1
    out = capsys.readouterr().out
    assert invariant in out
    assert f"replay: jobtrio sim --seed {config.seed} " in out
    assert f"--plant {plant}" in out


def test_json_line_has_the_documented_fields(capsys: pytest.CaptureFixture[str]) -> None:
    from jobtrio.cli import main as jobtrio_main

    code = jobtrio_main(["sim", "--seed", "3", "--nodes", "3", "--duration", "3", "--json"])
    assert code == 0
    [line] = capsys.readouterr().out.splitlines()
    data = json.loads(line)
    for key in (
        "seed",
        "algorithm",
        "nodes",
        "trace_digest",
        "violations",
        "jobs_submitted",
        "jobs_completed",
        "jobs_lost",
        "jobs_dependent",
        "jobs_dependent_ran",
        "simulated_seconds",
        "wall_seconds",
    ):
        assert key in data
    assert data["seed"] == 3 and data["nodes"] == 3 and data["violations"] == []
    assert data["simulated_seconds"] > 3


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert sim_main(["--faults", "meteor"]) == 2
    assert sim_main(["--seeds", "9..3"]) == 2
    assert sim_main(["--nodes", "0"]) == 2
    assert sim_main(["--plant", "raft-minority", "--algorithm", "bully"]) == 2
    # these crashed the run with a traceback (negative or NaN seconds to trio, no worker)
    for args, why in (
        (["--duration", "-5"], "duration must be over 0"),
        (["--duration", "nan"], "not nan"),
        (["--workers", "0"], "workers must be from 1 to 100"),
        (["--clients", "-1"], "clients must be from 0 to 50"),
    ):
        capsys.readouterr()
        assert sim_main(args) == 2, args
        assert why in capsys.readouterr().err, args


# -- bugs the simulator found, pinned at the actor level ----------------------------------


def _duties(
    broker: MemoryBroker,
    store: MemoryStore,
    leadership: Leadership,
    recorder: Recorder | None = None,
) -> LeaderDuties:
    return LeaderDuties(
        Settings(node_id="n1"),
        broker,
        store,
        recorder or Recorder(store),
        leadership,
        EventBus("n1"),
        lambda: 1_000_000.0 + trio.current_time(),
        on_jobs_ready=lambda: None,
    )


async def test_fenced_leader_duties_stop_instead_of_crashing(autojump_clock: object) -> None:
    """``_lead``'s nursery wrapped FencedError in an ExceptionGroup that ``except
    FencedError`` missed: the supervisor restarted the duties with backoff in a loop
    (``jobtrio sim --seed 1 --algorithm bully --duration 20``)."""
    broker, store = MemoryBroker(), MemoryStore()
    leadership = Leadership("n1", "bully")
    epoch = await broker.acquire_epoch("n1", 0.0)
    leadership.set("n1", 1, epoch, 0.0)
    duties = _duties(broker, store, leadership)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(duties.run)
        await trio.sleep(0.5)
        await broker.acquire_epoch("n2", 0.0)  # another node leads now
        await trio.sleep(0.5)
        assert duties.fenced == 1
        assert duties.last_fenced == epoch
        nursery.cancel_scope.cancel()


async def test_reconcile_refreshes_a_record_the_broker_moved_past(autojump_clock: object) -> None:
    """A node finished a job, then died before its recorder wrote the snapshot: the Store
    said ``running`` forever (``jobtrio sim --seed 2 --algorithm raft --duration 20``)."""
    broker, store = MemoryBroker(), MemoryStore()
    job = validate_submission({"type": "quick"}, 0.0)
    await broker.enqueue([job], 0.0)
    [lease] = await broker.claim("n2", 1, 30.0, 1.0)
    await store.put_many([lease.job])  # the record says running...
    [done] = await broker.finish([Finish(job.id, lease.token, "completed")], 2.0)
    assert done is not None  # ...and the snapshot saying completed died with n2

    leadership = Leadership("n1", "raft")
    epoch = await broker.acquire_epoch("n1", 0.0)
    leadership.set("n1", 1, epoch, 0.0)
    recorder = Recorder(store)
    duties = _duties(broker, store, leadership, recorder)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        await duties.reconcile(epoch, 1000.0)
        assert await recorder.flush(5.0)
        nursery.cancel_scope.cancel()
    record = await store.get(job.id)
    assert record is not None and record.status == JobStatus.COMPLETED
    assert record.version == done.version


def test_a_fenced_gossip_leader_that_still_leads_retakes_an_epoch() -> None:
    """After a partition, the rival that took a newer epoch followed n5 again, but n5,
    fenced and still elected, never took a new epoch: nobody acted, scheduled and
    retrying jobs were never promoted. The cluster actor now retakes one."""
    result = run(SimConfig(seed=2, algorithm="gossip", nodes=5, duration=20.0))
    assert result.ok, [str(v) for v in result.violations]
    assert result.converged_after is not None and result.drained_after is not None


def test_a_voter_restarted_inside_an_election_keeps_its_vote() -> None:
    """Raft's term and vote used to live in memory: n3 voted for n2 in term 2,
    crashed, restarted empty and voted for n1 in term 2 too, and the simulator
    filed the two leaders as a known issue. They are on the node's disk now,
    which the simulator keeps across restarts: the seed is clean, strictly;
    with the disk wiped at each restart (the planted bug) a node votes twice
    in one term."""
    config = SimConfig(
        seed=43,
        algorithm="raft",
        nodes=3,
        duration=8.0,
        faults=("crash", "reorder", "election-restart", "candidate-restart"),
        strict=True,
    )
    result = run(config)
    assert result.ok, [str(v) for v in result.violations]
    assert result.known_issues == []
    amnesia = run(dataclasses.replace(config, plant="raft-amnesia"))
    assert "one_vote_per_term" in {v.invariant for v in amnesia.violations}


def test_a_job_whose_every_snapshot_died_with_its_node_keeps_its_record() -> None:
    """Seed 100004 under Raft: job 01HF7YB38QBJNH7JY5FJME04AG's every snapshot died in
    the recorders of nodes cut off from the Store, then crashed, and the leader purged
    it: no record of it ever reached the Store (``store_has_every_job``, a known
    limitation until the purge wrote finished jobs to the Store before letting them go).
    """
    result = run(SimConfig(seed=100004, algorithm="raft", strict=True))
    assert result.ok, [str(v) for v in result.violations]
    assert result.known_issues == []
    assert result.drained_after is not None


def test_a_livelock_stops_the_run_instead_of_hanging_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task that loops without sleeping freezes the MockClock; the watchdog ends the run."""
    from jobtrio.sim import workload

    async def spin(ctx: object) -> None:
        while True:
            await trio.lowlevel.checkpoint()

    monkeypatch.setattr(workload, "_quick", spin)
    result = run(SimConfig(seed=1, algorithm="raft", nodes=3, duration=5.0, faults=()))
    assert "no_livelock" in {v.invariant for v in result.violations}


async def test_a_job_reissued_to_the_node_still_running_it_is_not_run_twice(
    autojump_clock: object,
) -> None:
    """The node was cut off from the Broker past its lease; the leader requeued the job
    and the same node claimed it again while its first attempt still ran. The table of
    attempts, keyed by job id, lost track and the dispatcher died of a KeyError, taking
    the node with it (``jobtrio sim --seed 305 --nodes 7 --algorithm bully --duration 40
    --clients 4``). Now the stale attempt stops and the new lease is handed back."""
    from jobtrio.actors.dispatcher import Dispatcher
    from jobtrio.metrics import NodeMetrics
    from jobtrio.processors import Registry

    running = 0
    most = 0

    async def slow(ctx: object) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        try:
            await trio.sleep(2.0)
        finally:
            running -= 1
        return "done"

    registry = Registry(builtins=False)
    registry.register("slow", slow)
    broker, store = MemoryBroker(), MemoryStore()
    settings = Settings(node_id="n1", worker_count=2, job_lease=1.0)
    dispatcher = Dispatcher(
        "n1",
        settings,
        broker,
        registry,
        Recorder(store),
        EventBus("n1"),
        NodeMetrics("n1"),
        trio.current_time,
    )
    job = validate_submission({"type": "slow"}, 0.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(dispatcher.run)
        await broker.enqueue([job], trio.current_time())
        dispatcher.wake()
        await trio.sleep(0.5)
        assert running == 1
        epoch = await broker.acquire_epoch("leader", trio.current_time())
        [expired] = await broker.requeue_expired(trio.current_time() + 5.0, epoch, 5)
        assert expired.status == JobStatus.PENDING  # n1 never heard: it was cut off
        dispatcher.wake()
        await trio.sleep(10.0)
        nursery.cancel_scope.cancel()
    assert most == 1
    final = await broker.get(job.id)
    assert final is not None and final.status == JobStatus.COMPLETED


def test_a_lost_reply_to_a_one_move_enqueue_and_claim_hands_its_leases_back() -> None:
    """A node's group commit makes its dispatcher's lent claim with the enqueue; on every
    other node in one move, as Redis's enqueue_claim.lua (``BrokerLink``). When the one
    reply is lost, the jobs were filed and leased all the same: each leased job is handed
    back by its node with that claim's token (released, uncounted), not left to its lease,
    and the run holds every invariant (none lost, none completed twice)."""
    result = run(SimConfig(seed=100000, algorithm="raft", strict=True), full_trace=True)
    assert result.ok, [str(v) for v in result.violations[:5]]
    lines = [line.split() for line in result.trace_lines or []]
    lost: list[tuple[int, str, list[tuple[str, str]]]] = []  # (line, node, (job, token))
    open_moves: dict[str, tuple[int, list[tuple[str, str]]]] = {}
    for i, f in enumerate(lines):
        if f[1:2] == ["lent-claim"] and f[-1] == "one-move":
            open_moves[f[2]] = (i, [])
        elif f[1:3] == ["job", "claimed"] and f[5] in open_moves:
            open_moves[f[5]][1].append((f[3], f[6]))
        elif f[1:2] == ["lent-claim.unanswered"] and f[2] in open_moves:
            start, leased = open_moves.pop(f[2])
            if leased:
                lost.append((i, f[2], leased))
        elif f[1:2] == ["lent-claim"]:
            open_moves.pop(f[2], None)
    assert lost, "no one-move enqueue_and_claim lost its reply after leasing a job"
    for i, _node, leased in lost:
        for job_id, token in leased:
            after = [f for f in lines[i:] if f[1:2] == ["job"] and f[3] == job_id]
            assert after[0][2:] == ["finished", job_id, "pending", "released", token], after[:3]


def test_the_simulated_broker_stamps_a_claim_with_the_claimants_clock() -> None:
    """Redis's claim stamps ``started_at``, the attempt's start and ``updated_at`` with the
    caller's ``now`` and decides the lease on its own ``TIME``. The simulated Broker
    stamped them with its own clock, which the node's hand-back of an unanswered claim
    compares with its own start on its own clock: under skew a node ahead took its own
    leases for a previous incarnation's and left them to expire."""
    world = [1000.0]

    async def main() -> None:
        broker = ObservedBroker(History(Trace()), tokens=seeded_tokens(1), clock=lambda: world[0])
        job = validate_submission({"type": "quick"}, 990.0)
        await broker.enqueue([job], 990.0)
        [lease] = await broker.claim("n1", 1, 2.0, 1005.0)  # n1's clock is 5 s ahead
        for stamped in (lease.job, broker.view()[job.id], await broker.get(job.id)):
            assert stamped is not None
            assert stamped.started_at == 1005.0
            assert stamped.attempts[-1].started_at == 1005.0
            assert stamped.updated_at == 1005.0
        epoch = await broker.acquire_epoch("n2", 0.0)
        world[0] = 1001.9  # the lease runs 2 s on the Broker's clock, whatever n1's says
        assert await broker.requeue_expired(0.0, epoch, 5) == []
        world[0] = 1002.1
        [expired] = await broker.requeue_expired(0.0, epoch, 5)
        assert expired.id == job.id and expired.lease_expirations == 1

    trio.run(main)


def test_under_skew_a_node_hands_back_the_leases_of_its_lost_lent_claims() -> None:
    """``lent_claim_handed_back`` under skew: a node whose clock runs ahead hands back the
    leases of a lent claim whose reply was lost, as on Redis. With claims stamped on the
    Broker's clock (before the fix above), n4's lost lent claim at 9.9 s was left to
    expire on this seed (and the invariant failed on 9 of seeds 100000..100019 with
    these faults, 0 since)."""
    config = SimConfig(seed=100004, faults=("skew", "crash", "reply-loss"), strict=True)
    result = run(config, full_trace=True)
    assert result.ok, [str(v) for v in result.violations[:5]]
    lines = result.trace_lines or []
    assert sum(" lent-claim.unanswered " in line for line in lines) >= 5
    assert not any(" lent-claim.excused " in line for line in lines)
