"""Gossip election: highest-ranked member of the SWIM view, with a settle time."""

from __future__ import annotations

import random

from jobtrio.cluster.election import ElectionTiming, make_election
from jobtrio.cluster.gossip_election import GossipElection
from jobtrio.cluster.messages import LeaderChanged, RaftHeartbeat
from jobtrio.cluster.swim import Swim, SwimTiming
from tests.cluster_harness import ClusterNode, Network

T = 3.0
TIMING = ElectionTiming.from_settings(T, 0.5)  # settle = min(T/2, 2 * 0.5) = 1s
SETTLE = TIMING.settle


def view(*names: str) -> frozenset[str]:
    return frozenset(names)


def machine(me: str = "n2") -> GossipElection:
    return GossipElection(me, [], TIMING, random.Random(0))


def test_settle_derives_from_the_settings() -> None:
    assert SETTLE == 1.0
    assert ElectionTiming.from_settings(15.0, 1.0).settle == 2.0  # seed's gossip profile
    assert ElectionTiming.from_settings(10.0, 30.0).settle == 5.0


def test_first_leader_after_the_view_settles() -> None:
    node = machine()
    assert node.membership_changed(view("n1", "n2", "n3"), 0.0) == []
    assert node.pending == "n3" and node.next_deadline() == SETTLE
    assert node.tick(SETTLE - 0.01) == []
    assert node.tick(SETTLE) == [LeaderChanged("n3", 1)]
    assert (node.leader, node.term, node.is_leader) == ("n3", 1, False)
    assert node.next_deadline() is None


def test_changes_below_the_top_do_not_delay_it() -> None:
    node = machine()
    node.membership_changed(view("n2", "n3"), 0.0)
    node.membership_changed(view("n1", "n2", "n3"), 0.5)  # a lower node joins
    assert node.tick(SETTLE) == [LeaderChanged("n3", 1)]


def test_a_flapping_top_restarts_the_wait() -> None:
    node = machine()
    node.membership_changed(view("n2", "n3"), 0.0)
    node.membership_changed(view("n2", "n5"), 0.5)
    node.membership_changed(view("n2", "n3"), 0.9)
    assert node.tick(SETTLE) == []
    assert node.tick(0.9 + SETTLE) == [LeaderChanged("n3", 1)]


def test_leader_loss_drops_at_once_then_next_settles() -> None:
    node = machine("n1")
    node.membership_changed(view("n1", "n2", "n3"), 0.0)
    node.tick(SETTLE)
    assert node.leader == "n3"
    out = node.membership_changed(view("n1", "n2"), 5.0)
    assert out == [LeaderChanged(None, 2)]
    assert node.tick(5.0 + SETTLE) == [LeaderChanged("n2", 3)]
    # Alone: it leads itself, and the term counts every change seen here.
    node.membership_changed(view("n1"), 10.0, left=view("n2"))
    assert node.tick(10.0 + SETTLE) == [LeaderChanged("n1", 5)]
    assert node.is_leader


def test_a_higher_member_joining_takes_over_after_settling() -> None:
    node = machine("n1")
    node.membership_changed(view("n1", "n2"), 0.0)
    node.tick(SETTLE)
    assert node.leader == "n2"
    node.membership_changed(view("n1", "n2", "n9"), 3.0)
    assert node.leader == "n2"  # still settling
    assert node.tick(3.0 + SETTLE) == [LeaderChanged("n9", 2)]


def test_this_node_is_always_in_its_own_view() -> None:
    node = machine("n9")
    node.membership_changed(view("n1"), 0.0)
    assert node.view == {"n1", "n9"}
    node.tick(SETTLE)
    assert node.is_leader


def test_no_messages_of_its_own() -> None:
    node = machine()
    assert node.step("n1", RaftHeartbeat(term=3), 0.0) == []
    assert node.tick(0.0) == []  # the view ({n2} from no peers) is only settling
    assert node.term == 0


def test_factory_builds_gossip() -> None:
    node = make_election("gossip", "a", ["b"], TIMING, random.Random(1))
    assert isinstance(node, GossipElection) and node.algorithm == "gossip"
    assert node.view == {"a", "b"}


# ------------------------------------------------------------------ with SWIM


def cluster(n: int, seed: int = 1) -> Network:
    net = Network(seed=seed, jitter=0.005)
    names = [f"n{i}" for i in range(1, n + 1)]
    for i, me in enumerate(names):
        rng = random.Random(seed * 100 + i)
        swim = Swim(me, f"addr:{me}", {}, SwimTiming(), rng)
        net.add(me, ClusterNode(swim, GossipElection(me, [], TIMING, rng)))
    net.start()
    for me in names:
        net.call(me, lambda m, now: m.join(["addr:n1"], now))
    return net


def test_cluster_converges_on_the_highest_member() -> None:
    net = cluster(6)
    took = net.run_until_true(lambda: net.agreed_leader() == "n6", 10.0)
    assert took < SETTLE + 2.0
    # Once converged, leadership does not flap.
    changes = len(net.leader_changes())
    net.run_for(60.0)
    assert net.agreed_leader() == "n6"
    assert len(net.leader_changes()) == changes


def test_leader_failure_moves_leadership_to_the_next_highest() -> None:
    net = cluster(5)
    net.run_until_true(lambda: net.agreed_leader() == "n5", 10.0)
    terms_before = {n: net.nodes[n].election.term for n in net.nodes}
    net.crash("n5")
    crashed_at = net.now
    net.run_until_true(lambda: net.agreed_leader() == "n4", 30.0)
    # SWIM detection (probe round + suspicion timeout), then the settle time.
    took = net.now - crashed_at
    assert took <= 5 * 1.0 + SwimTiming().suspicion_timeout(5) + SETTLE + 1.0
    # The term moved on everywhere (leader None, then n4): it is local,
    # but it always changes with the leader.
    assert all(net.nodes[n].election.term > terms_before[n] for n in net.up())


def test_graceful_leave_of_the_leader_hands_over_quickly() -> None:
    net = cluster(4)
    net.run_until_true(lambda: net.agreed_leader() == "n4", 10.0)
    net.call("n4", lambda m, now: m.leave(now))
    net.crash("n4")
    took = net.run_until_true(lambda: net.agreed_leader() == "n3", 10.0)
    assert took <= SETTLE + 0.5  # no suspicion timeout to sit out


def test_same_seed_same_outputs() -> None:
    def run(seed: int) -> list[tuple[float, str, str, str, dict[str, object]]]:
        net = cluster(5, seed)
        net.loss = 0.05
        net.run_for(10.0)
        net.crash("n5")
        net.run_for(15.0)
        return net.trace

    assert run(3) == run(3)
    assert run(3) != run(4)
