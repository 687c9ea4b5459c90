"""Bully election with epochs, driven message by message."""

from __future__ import annotations

import random

from jobtrio.cluster.bully import BullyElection
from jobtrio.cluster.election import ElectionTiming, make_election, rank_key
from jobtrio.cluster.messages import (
    BullyAnswer,
    BullyCoordinator,
    BullyElect,
    LeaderChanged,
    Send,
)
from tests.cluster_harness import Network

T = 1.0
TIMING = ElectionTiming.from_settings(T, 0.25)


def ids(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def machine(me: str, names: list[str], seed: int = 0) -> BullyElection:
    return BullyElection(me, [p for p in names if p != me], TIMING, random.Random(seed))


def cluster(n: int, seed: int = 1) -> Network:
    net = Network(seed=seed)
    names = ids(n)
    for i, me in enumerate(names):
        net.add(me, machine(me, names, seed * 100 + i))
    net.start()
    return net


def elect(net: Network, limit: float = 10 * T) -> str:
    net.run_until_true(lambda: net.agreed_leader() is not None, limit)
    leader = net.agreed_leader()
    assert leader is not None
    return leader


def test_rank_is_natural_order_of_ids() -> None:
    assert rank_key("node-10") > rank_key("node-9")
    assert rank_key("b") > rank_key("a")
    assert rank_key("node-2") > rank_key("node-1a") > rank_key("node-1")
    assert rank_key("node-01") != rank_key("node-1")  # distinct ids never tie


def test_first_election_highest_wins() -> None:
    net = cluster(4)
    took = net.run_until_true(lambda: net.agreed_leader() is not None, 5 * T)
    # A fresh node listens for a full timeout before running an election.
    assert T <= took <= T + TIMING.answer_timeout + 0.1
    assert net.agreed_leader() == "n4"
    assert all(net.nodes[n].term == 1 for n in net.nodes)
    for n in net.nodes:
        assert [o for _, _, o in net.leader_changes(n)] == [LeaderChanged("n4", 1)]


def test_ids_compare_naturally_in_an_election() -> None:
    names = ["node-9", "node-10", "node-2"]
    net = Network()
    for me in names:
        net.add(me, machine(me, names))
    net.start()
    assert elect(net) == "node-10"


def test_leader_loss_and_reelection() -> None:
    net = cluster(4)
    elect(net)
    net.crash("n4")
    crashed_at = net.now
    net.run_until_true(lambda: net.agreed_leader() == "n3", 5 * T)
    assert net.now - crashed_at <= T + TIMING.heartbeat + TIMING.answer_timeout + 0.1
    assert all(net.nodes[n].term == 2 for n in net.up())


def test_returning_higher_node_takes_over() -> None:
    net = cluster(3)
    elect(net)
    net.crash("n3")
    net.run_until_true(lambda: net.agreed_leader() == "n2", 5 * T)
    assert net.nodes["n2"].term == 2
    net.run_for(3 * T)
    # n3 comes back as a fresh process: no memory of epochs.
    net.restart("n3", machine("n3", ids(3), seed=42))
    returned_at = net.now
    net.run_until_true(lambda: net.agreed_leader() == "n3", 5 * T)
    # It learned epoch 2 from n2's heartbeat and bullied in above it, without
    # waiting out a full election timeout.
    assert net.now - returned_at <= TIMING.heartbeat + 0.1
    assert all(net.nodes[n].term == 3 for n in net.nodes)
    net.run_for(5 * T)
    assert net.agreed_leader() == "n3"


def test_stale_coordinator_is_ignored_and_told_the_newer_epoch() -> None:
    node = machine("n1", ids(3))
    node.tick(0.0)
    node.step("n2", BullyCoordinator(epoch=5), 0.1)
    assert (node.leader, node.term) == ("n2", 5)
    # A deposed n3 still heartbeating epoch 3: ignored, and answered with 5.
    out = node.step("n3", BullyCoordinator(epoch=3), 0.2)
    assert out == [Send("n3", BullyAnswer(epoch=5))]
    assert (node.leader, node.term) == ("n2", 5)


def test_a_stale_leader_learns_and_reruns_the_election() -> None:
    """n3 claims with an old epoch (it missed epochs up to 7); the ANSWER
    carrying the newer epoch makes it claim again above it, and n1 follows."""
    net = Network()
    net.add("n1", machine("n1", ["n1", "n3"]))
    net.add("n3", machine("n3", ["n1", "n3"]))
    net.start()
    net.now = 2 * T
    net.call("n1", lambda m, now: m.step("n2", BullyCoordinator(epoch=7), now))
    assert net.nodes["n1"].leader == "n2"
    net.tick("n3")  # silent for T: n3 has nobody above it and claims epoch 1
    assert net.nodes["n3"].term == 1
    net.run_for(0.1)
    answers = [e for e in net.delivered if isinstance(e.message, BullyAnswer)]
    assert [(e.src, e.dst, e.message.epoch) for e in answers] == [("n1", "n3", 7)]
    assert net.agreed_leader() == "n3"
    assert net.nodes["n1"].term == net.nodes["n3"].term == 8


def test_same_epoch_rival_claims_settle_by_rank() -> None:
    node = machine("n1", ids(3))
    node.tick(0.0)
    node.step("n3", BullyCoordinator(epoch=4), 0.1)
    assert node.step("n2", BullyCoordinator(epoch=4), 0.2) == []
    assert node.leader == "n3"
    node2 = machine("n1", ids(3))
    node2.tick(0.0)
    node2.step("n2", BullyCoordinator(epoch=4), 0.1)
    node2.step("n3", BullyCoordinator(epoch=4), 0.2)
    assert node2.leader == "n3"


def test_lower_claimant_is_bullied() -> None:
    node = machine("n3", ids(3))
    node.tick(0.0)
    out = node.step("n1", BullyCoordinator(epoch=2), 0.1)
    # Nobody above n3: it claims right away, above the epoch it just saw.
    assert node.is_leader and node.term == 3
    assert Send("n1", BullyCoordinator(3)) in out and Send("n2", BullyCoordinator(3)) in out


def test_election_answered_by_a_higher_node_then_waits_for_coordinator() -> None:
    node = machine("n1", ids(3))
    node.tick(0.0)
    out = node.tick(T)  # no leader heard for T
    assert out == [Send("n2", BullyElect(0)), Send("n3", BullyElect(0))]
    assert node.state == "electing"
    node.step("n2", BullyAnswer(epoch=0), T + 0.01)
    assert node.state == "waiting"
    # Past the answer timeout it does not claim: someone above is alive.
    assert node.tick(T + TIMING.answer_timeout + 0.01) == []
    assert node.state == "waiting"
    # No COORDINATOR within the coordinator timeout: retry the election.
    out = node.tick(T + 0.01 + TIMING.coordinator_timeout)
    assert out == [Send("n2", BullyElect(0)), Send("n3", BullyElect(0))]
    node.step("n3", BullyCoordinator(epoch=1), T + 1.2)
    assert (node.leader, node.term, node.state) == ("n3", 1, "follower")


def test_election_from_a_lower_node_is_answered() -> None:
    follower = machine("n2", ids(3))
    follower.tick(0.0)
    out = follower.step("n1", BullyElect(0), 0.1)
    # Answer, then run its own election upwards.
    assert out == [Send("n1", BullyAnswer(0)), Send("n3", BullyElect(0))]
    # A sitting leader answers and re-asserts itself: no new epoch.
    leader = machine("n3", ids(3))
    leader.tick(0.0)
    leader.tick(T)
    assert leader.is_leader and leader.term == 1
    out = leader.step("n1", BullyElect(1), T + 0.1)
    assert out == [Send("n1", BullyAnswer(1)), Send("n1", BullyCoordinator(1))]
    assert leader.term == 1


def test_leader_heartbeats_every_interval() -> None:
    net = cluster(3)
    elect(net)
    start = len(net.delivered)
    net.run_for(10 * T)
    beats = [e for e in net.delivered[start:] if isinstance(e.message, BullyCoordinator)]
    assert len(beats) == 2 * 10 * T / TIMING.heartbeat  # to each of 2 peers
    assert net.agreed_leader() == "n3"


def test_partition_each_side_elects_then_highest_wins_after_heal() -> None:
    net = cluster(4)
    elect(net)
    net.partition(["n1", "n2"], ["n3", "n4"])
    net.run_for(5 * T)
    # No quorum in Bully: the cut-off side elects its own leader (fencing
    # epochs from the Broker are what keep it from acting twice).
    assert net.agreed_leader(["n1", "n2"]) == "n2"
    assert net.agreed_leader(["n3", "n4"]) == "n4"
    net.heal()
    net.run_for(3 * T)
    assert net.agreed_leader() == "n4"
    epochs = {net.nodes[n].term for n in net.nodes}
    assert len(epochs) == 1 and epochs.pop() > 2


def test_membership_loss_of_leader_triggers_election_at_once() -> None:
    node = machine("n2", ids(3))
    node.tick(0.0)
    node.step("n3", BullyCoordinator(epoch=1), 0.1)
    node.membership_changed(frozenset({"n1", "n2", "n3"}), 0.2)
    out = node.membership_changed(frozenset({"n1", "n2"}), 0.3)
    # No waiting for the heartbeat timeout. n3 stays a peer (it may return),
    # so it is asked first; when it does not answer, n2 claims.
    assert Send("n3", BullyElect(1)) in out and node.leader is None
    assert LeaderChanged(None, 1) in out
    node.tick(0.3 + TIMING.answer_timeout)
    assert node.is_leader and node.term == 2


def test_membership_adds_peers_and_leader_greets_newcomers() -> None:
    leader = machine("n2", ["n1", "n2"])
    leader.tick(0.0)
    leader.tick(T)
    assert leader.is_leader
    out = leader.membership_changed(frozenset({"n0", "n1", "n2"}), T + 0.1)
    assert out == [Send("n0", BullyCoordinator(1))]
    out = leader.membership_changed(frozenset({"n0", "n1", "n2", "n5"}), T + 0.2)
    # A higher newcomer: defer to it by running an election.
    assert Send("n5", BullyElect(1)) in out
    assert leader.peers == {"n0", "n1", "n5"}
    leader.membership_changed(frozenset({"n1", "n2"}), T + 0.3, left=frozenset({"n5"}))
    assert leader.peers == {"n0", "n1"}


def test_factory_builds_bully() -> None:
    node = make_election("bully", "a", ["b"], TIMING, random.Random(1))
    assert isinstance(node, BullyElection) and node.algorithm == "bully"


def _chaotic_run(seed: int) -> list[tuple[float, str, str, str, dict[str, object]]]:
    net = Network(seed=seed, jitter=0.02, loss=0.1)
    names = ids(5)
    for i, me in enumerate(names):
        net.add(me, machine(me, names, seed * 100 + i))
    net.start()
    net.run_for(10 * T)
    net.crash("n5")
    net.run_for(10 * T)
    return net.trace


def test_same_seed_same_outputs() -> None:
    assert _chaotic_run(3) == _chaotic_run(3)
    assert _chaotic_run(3) != _chaotic_run(4)
