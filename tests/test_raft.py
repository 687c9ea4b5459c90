"""Raft election, driven message by message through the in-test network."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from jobtrio.cluster.election import Election, ElectionTiming, make_election
from jobtrio.cluster.messages import (
    LeaderChanged,
    RaftHeartbeat,
    RaftHeartbeatResponse,
    RaftVote,
    RaftVoteResponse,
    Send,
)
from jobtrio.cluster.raft import RaftElection
from tests.cluster_harness import Envelope, Network

T = 1.0
TIMING = ElectionTiming.from_settings(T, 0.25)


def ids(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def cluster(n: int, seed: int = 1, **kwargs: bool) -> Network:
    net = Network(seed=seed)
    names = ids(n)
    for i, me in enumerate(names):
        peers = [p for p in names if p != me]
        net.add(me, RaftElection(me, peers, TIMING, random.Random(seed * 100 + i), **kwargs))
    net.start()
    return net


def terms(net: Network) -> dict[str, int]:
    return {n: net.nodes[n].term for n in net.up()}


def assert_one_leader_per_term(net: Network) -> None:
    """Election safety: no term ever has two nodes that claimed leadership."""
    claimed: dict[int, set[str]] = defaultdict(set)
    for _, node, change in net.leader_changes():
        if change.leader == node:
            claimed[change.term].add(node)
    for term, leaders in claimed.items():
        assert len(leaders) == 1, f"term {term} had leaders {leaders}"


def elect(net: Network, limit: float = 10 * T) -> str:
    net.run_until_true(lambda: net.agreed_leader() is not None, limit)
    leader = net.agreed_leader()
    assert leader is not None
    return leader


def test_timing_follows_settings() -> None:
    timing = ElectionTiming.from_settings(5.0, 2.0)  # the seed's raft profile
    assert (timing.timeout, timing.heartbeat) == (5.0, 2.0)
    # A heartbeat interval above the timeout would depose healthy leaders.
    assert ElectionTiming.from_settings(10.0, 30.0).heartbeat == 5.0
    with pytest.raises(ValueError, match="heartbeat"):
        ElectionTiming(timeout=1.0, heartbeat=1.0)


def test_single_node_elects_itself_after_the_randomized_timeout() -> None:
    net = cluster(1)
    net.run_for(0.99 * T)
    assert net.nodes["n1"].leader is None
    net.run_for(1.1 * T)
    node = net.nodes["n1"]
    assert node.is_leader and node.term == 1
    assert net.leader_changes("n1")[-1][2] == LeaderChanged("n1", 1)


def test_first_election_three_nodes() -> None:
    net = cluster(3)
    took = net.run_until_true(lambda: net.agreed_leader() is not None, 5 * T)
    assert T <= took < 2 * T + 0.5, took
    leader = net.agreed_leader()
    assert set(terms(net).values()) == {1}
    # Everyone reported the same leader and term exactly once.
    for n in net.up():
        assert [o for _, _, o in net.leader_changes(n)] == [LeaderChanged(leader, 1)]
    assert_one_leader_per_term(net)


def test_randomized_timeouts_are_in_t_2t() -> None:
    rng = random.Random(7)
    node = RaftElection("a", ["b", "c"], TIMING, rng)
    deadlines = []
    for i in range(200):
        node.step("b", RaftHeartbeat(term=i + 1), now=float(i * 10))  # new term: re-randomized
        deadlines.append(node.next_deadline() - i * 10)
    assert min(deadlines) >= T and max(deadlines) < 2 * T
    assert max(deadlines) - min(deadlines) > 0.5 * T  # actually spread out


def test_leader_loss_and_reelection() -> None:
    net = cluster(5)
    old = elect(net)
    old_term = net.nodes[old].term
    net.crash(old)
    took = net.run_until_true(lambda: net.agreed_leader() is not None, 10 * T)
    new = net.agreed_leader()
    assert new != old
    assert took < 2 * T + 1.0
    assert all(t > old_term for t in terms(net).values())
    assert_one_leader_per_term(net)


def test_heartbeats_keep_a_stable_leader() -> None:
    net = cluster(3)
    leader = elect(net)
    before = len(net.events)
    net.run_for(50 * T)
    assert net.agreed_leader() == leader
    assert len(net.events) == before  # no flapping, no term churn


def test_split_vote_resolves_after_randomized_timeouts() -> None:
    net = cluster(4)  # quorum 3
    net.hold = True
    net.now = 2 * T  # past every node's timeout; only a and b notice
    net.tick("n1")
    net.tick("n2")
    assert net.nodes["n1"].state == net.nodes["n2"].state == "pre_candidate"

    def is_pre(e: Envelope) -> bool:
        return isinstance(e.message, RaftVote | RaftVoteResponse) and e.message.pre_vote

    net.release(lambda e: is_pre(e) and isinstance(e.message, RaftVote))
    net.release(is_pre)  # the grants: pre-votes leave no trace, both may pass
    assert net.nodes["n1"].state == net.nodes["n2"].state == "candidate"
    assert net.nodes["n1"].term == net.nodes["n2"].term == 1

    def vote(src: str, dst: str) -> bool:
        return net.release(
            lambda e: e.src == src and e.dst == dst and isinstance(e.message, RaftVote)
        )

    # n3 hears n1 first, n4 hears n2 first: two votes each, neither a majority.
    assert vote("n1", "n3") and vote("n2", "n4")
    net.release(lambda e: isinstance(e.message, RaftVote))
    net.release()  # all the responses
    assert net.nodes["n3"].voted_for == "n1" and net.nodes["n4"].voted_for == "n2"
    assert not any(net.nodes[n].is_leader for n in net.nodes)
    assert net.nodes["n1"].state == net.nodes["n2"].state == "follower"
    assert set(terms(net).values()) == {1}

    net.flush_held()
    leader = elect(net)
    assert net.nodes[leader].term >= 2
    assert_one_leader_per_term(net)


def test_a_node_votes_once_per_term() -> None:
    node = RaftElection("c", ["a", "b"], TIMING, random.Random(1))
    node.tick(0.0)
    first = node.step("a", RaftVote(term=1, pre_vote=False), 0.1)
    second = node.step("b", RaftVote(term=1, pre_vote=False), 0.2)
    again = node.step("a", RaftVote(term=1, pre_vote=False), 0.3)  # a retransmission
    assert first == [Send("a", RaftVoteResponse(1, granted=True, pre_vote=False))]
    assert second == [Send("b", RaftVoteResponse(1, granted=False, pre_vote=False))]
    assert again == [Send("a", RaftVoteResponse(1, granted=True, pre_vote=False))]
    # A pre-vote for a later term is granted without recording anything.
    pre = node.step("b", RaftVote(term=2, pre_vote=True), 0.4)
    assert pre == [Send("b", RaftVoteResponse(2, granted=True, pre_vote=True))]
    assert node.term == 1 and node.voted_for == "a"


def test_stale_term_messages_are_ignored_and_answered() -> None:
    node = RaftElection("c", ["a", "b"], TIMING, random.Random(1))
    node.tick(0.0)
    node.step("a", RaftHeartbeat(term=5), 0.1)
    assert (node.leader, node.term) == ("a", 5)
    # An old leader from term 3 is told about term 5 and changes nothing here.
    out = node.step("b", RaftHeartbeat(term=3), 0.2)
    assert out == [Send("b", RaftHeartbeatResponse(term=5))]
    assert (node.leader, node.term) == ("a", 5)
    # A stale pre-vote is rejected with our term; a stale vote is dropped.
    assert node.step("b", RaftVote(term=4, pre_vote=True), 0.3) == [
        Send("b", RaftVoteResponse(5, granted=False, pre_vote=True))
    ]
    assert node.step("b", RaftVote(term=4, pre_vote=False), 0.3) == []
    assert node.step("b", RaftVoteResponse(2, True, False), 0.3) == []


def test_stale_leader_steps_down_when_it_hears_a_newer_term() -> None:
    leader = RaftElection("a", [], TIMING, random.Random(1))
    leader.tick(0.0)
    leader.tick(2 * T)
    assert leader.is_leader and leader.term == 1
    leader.membership_changed(frozenset({"a", "b", "c"}), 2 * T)
    out = leader.step("b", RaftHeartbeatResponse(term=4), 2 * T + 0.1)
    assert not leader.is_leader and leader.term == 4 and leader.leader is None
    assert LeaderChanged(None, 4) in out


def test_minority_cannot_elect_and_majority_moves_on() -> None:
    net = cluster(5)
    old = elect(net)
    old_term = net.nodes[old].term
    minority = [old, next(n for n in net.nodes if n != old)]
    majority = [n for n in net.nodes if n not in minority]
    net.partition(minority, majority)
    net.run_for(30 * T)
    # The old leader noticed it lost its quorum; nobody in the minority leads.
    assert not any(net.nodes[n].is_leader for n in minority)
    assert all(net.nodes[n].leader is None for n in minority)
    # PreVote: the minority never got past the pre-vote, so its term is frozen.
    assert all(net.nodes[n].term == old_term for n in minority)
    new = net.agreed_leader(majority)
    assert new in majority and net.nodes[new].term > old_term
    assert_one_leader_per_term(net)
    # After healing, the minority follows the majority's leader without a new election.
    new_term = net.nodes[new].term
    net.heal()
    net.run_for(3 * T)
    assert net.agreed_leader() == new and set(terms(net).values()) == {new_term}


def test_check_quorum_steps_down_an_isolated_leader() -> None:
    net = cluster(3)
    leader = elect(net)
    isolated_at = net.now
    net.isolate(leader)
    net.run_until_true(lambda: not net.nodes[leader].is_leader, 3 * T)
    # Stepped down within two check periods, and reported it.
    assert net.now - isolated_at <= 2 * T + 0.1
    assert net.leader_changes(leader)[-1][2].leader is None
    assert net.nodes[leader].leader is None


def test_without_check_quorum_an_isolated_leader_keeps_believing() -> None:
    net = cluster(3, check_quorum=False)
    leader = elect(net)
    net.isolate(leader)
    net.run_for(10 * T)
    assert net.nodes[leader].is_leader  # what CheckQuorum exists to prevent


def test_prevote_keeps_a_rejoining_node_from_disrupting_the_leader() -> None:
    net = cluster(5)
    leader = elect(net)
    term = net.nodes[leader].term
    wanderer = next(n for n in net.nodes if n != leader)
    net.isolate(wanderer)
    net.run_for(20 * T)  # many election timeouts on its own
    assert net.nodes[wanderer].term == term  # pre-votes failed, term untouched
    net.heal()
    net.run_for(5 * T)
    assert net.agreed_leader() == leader
    assert set(terms(net).values()) == {term}
    assert_one_leader_per_term(net)


def test_without_prevote_a_rejoining_node_disrupts_the_leader() -> None:
    """The contrast case: the behaviour PreVote and the lease check remove."""
    net = cluster(5, pre_vote=False, check_quorum=False)
    leader = elect(net)
    term = net.nodes[leader].term
    wanderer = next(n for n in net.nodes if n != leader)
    net.isolate(wanderer)
    net.run_for(20 * T)
    assert net.nodes[wanderer].term > term + 5
    net.heal()
    net.run_for(5 * T)
    assert min(terms(net).values()) > term  # everyone was dragged to a new term
    assert_one_leader_per_term(net)


def test_followers_in_lease_ignore_higher_term_votes() -> None:
    node = RaftElection("c", ["a", "b"], TIMING, random.Random(1))
    node.tick(0.0)
    node.step("a", RaftHeartbeat(term=1), 0.1)
    # Within T of hearing the leader: ignored outright, term kept.
    assert node.step("b", RaftVote(term=2, pre_vote=True), 0.5) == []
    assert node.step("b", RaftVote(term=2, pre_vote=False), 0.5) == []
    assert node.term == 1 and node.leader == "a"
    # After T of silence the lease is over and the pre-vote is granted.
    assert node.step("b", RaftVote(term=2, pre_vote=True), 0.1 + T) == [
        Send("b", RaftVoteResponse(2, granted=True, pre_vote=True))
    ]


def test_quorum_comes_from_the_configuration_not_the_membership_view() -> None:
    node = RaftElection("a", ["b", "c", "d"], TIMING, random.Random(1))
    assert node.quorum == 3
    node.membership_changed(frozenset({"a", "e"}), 0.0)  # e appears; b, c, d not seen alive
    assert node.configuration == {"a", "b", "c", "d"} and node.quorum == 3
    assert "e" not in node.voters
    node.membership_changed(frozenset({"a"}), 1.0, left=frozenset({"c", "d", "e"}))
    assert node.configuration == {"a", "b", "c", "d"} and node.quorum == 3


def test_a_lonely_node_never_elects_itself() -> None:
    """The quorum of a configured three is two, whatever the node sees: alone it
    keeps pre-voting and its term never moves."""
    node = make_election("raft", "a", ["b", "c"], TIMING, random.Random(1))
    node.tick(0.0)
    for i in range(1, 50):
        node.tick(i * 2 * T)
    assert not node.is_leader and node.term == 0
    # It still votes, so it never blocks a cluster that can reach it.
    assert node.step("b", RaftVote(term=1, pre_vote=False), 100 * T) == [
        Send("b", RaftVoteResponse(1, granted=True, pre_vote=False))
    ]


def test_a_node_outside_the_configuration_follows_but_gets_no_vote() -> None:
    net = cluster(3)
    leader = elect(net)
    names = ids(4)
    # n4 lists everyone, the others do not list n4: it is not one of their voters.
    net.add("n4", RaftElection("n4", names[:3], TIMING, random.Random(99)))
    net.tick("n4")
    for n in ids(3):
        net.call(n, lambda m, now: m.membership_changed(frozenset(names), now))
    net.run_for(5 * T)
    assert net.agreed_leader() == leader
    assert net.nodes[leader].quorum == 2
    other = next(n for n in ids(3) if n != leader)
    out = net.nodes[other].step("n4", RaftVote(term=99, pre_vote=True), net.now + 2 * T)
    assert out == [Send("n4", RaftVoteResponse(net.nodes[other].term, False, True))]


def test_non_raft_messages_are_ignored() -> None:
    from jobtrio.cluster.messages import BullyCoordinator

    node = RaftElection("a", ["b"], TIMING, random.Random(1))
    assert node.step("b", BullyCoordinator(epoch=9), 0.0) == []
    assert node.step("a", RaftHeartbeat(term=9), 0.0) == []  # from ourselves: nonsense
    assert node.term == 0


def test_factory_builds_raft() -> None:
    node = make_election("raft", "a", ["b", "c"], TIMING, random.Random(1))
    assert isinstance(node, RaftElection) and node.algorithm == "raft"
    for algorithm in ("raft", "bully", "gossip"):
        machine = make_election(algorithm, "a", ["b"], TIMING, random.Random(1))
        assert isinstance(machine, Election) and machine.algorithm == algorithm
        assert (machine.leader, machine.term, machine.is_leader) == (None, 0, False)
    with pytest.raises(ValueError, match="unknown election algorithm"):
        make_election("paxos", "a", [], TIMING, random.Random(1))


def _chaotic_run(seed: int) -> list[tuple[float, str, str, str, dict[str, object]]]:
    net = Network(seed=seed, jitter=0.01, loss=0.05)
    names = ids(5)
    for i, me in enumerate(names):
        net.add(me, RaftElection(me, names, TIMING, random.Random(seed * 100 + i)))
    net.start()
    net.run_for(10 * T)
    net.crash(net.agreed_leader() or "n1")
    net.run_for(10 * T)
    assert_one_leader_per_term(net)
    return net.trace


def test_same_seed_same_outputs() -> None:
    assert _chaotic_run(3) == _chaotic_run(3)
    assert _chaotic_run(3) != _chaotic_run(4)


def test_only_a_leader_greets_a_newly_seen_node_and_only_that_node() -> None:
    """A leader heartbeats a node it has just seen, so the newcomer follows at once
    instead of campaigning; a follower says nothing (a heartbeat from it would
    claim a leadership it does not have)."""
    follower = RaftElection("b", ["a", "c"], TIMING, random.Random(1))
    follower.tick(0.0)
    assert follower.membership_changed(frozenset({"a", "b", "c", "d"}), 0.1) == []
    leader = RaftElection("a", ["b", "c"], TIMING, random.Random(1))
    leader.tick(0.0)
    leader.tick(2 * T)
    leader.step("b", RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)
    leader.step("b", RaftVoteResponse(1, granted=True, pre_vote=False), 2 * T)
    assert leader.is_leader
    out = leader.membership_changed(frozenset({"a", "b", "c", "d"}), 2 * T + 0.1)
    assert out == [Send("d", RaftHeartbeat(1, 1))]


# -- found by the mutation run (cosmic-ray): behaviour no test pinned ----------------------


def _leader(me: str = "a", peers: tuple[str, ...] = ("b", "c"), **kwargs: object) -> RaftElection:
    node = RaftElection(me, list(peers), TIMING, random.Random(1), **kwargs)  # type: ignore[arg-type]
    node.tick(0.0)
    node.tick(2 * T)
    voter = peers[0]
    node.step(voter, RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)
    node.step(voter, RaftVoteResponse(1, granted=True, pre_vote=False), 2 * T)
    assert node.is_leader
    return node


def test_check_quorum_runs_when_the_tick_comes_late() -> None:
    """A real actor ticks when it gets round to it, not at the exact deadline."""
    node = _leader()
    node.tick(2 * T + 1.37 * T)  # past the check, never exactly at it; nobody answered
    assert not node.is_leader


def test_the_tick_that_steps_a_leader_down_sends_no_heartbeat() -> None:
    node = _leader()
    out = node.tick(3 * T)
    assert not node.is_leader
    assert not any(isinstance(o, Send) and isinstance(o.message, RaftHeartbeat) for o in out)


def test_an_unanswered_pre_vote_is_tried_again_at_the_next_timeout() -> None:
    node = RaftElection("a", ["b", "c"], TIMING, random.Random(1))
    node.tick(0.0)
    first = node.tick(2 * T)
    assert node.state == "pre_candidate" and len(first) == 2
    again = node.tick(4 * T + 0.01)  # past any timeout in [T, 2T): nobody answered
    assert node.state == "pre_candidate" and node.term == 0
    assert again == first  # the same pre-votes, sent again


def test_votes_count_once_the_voters_addresses_are_known() -> None:
    """In production the configuration is addresses, and which node id is at which
    address arrives with membership: grants from ids not yet placed wait, and
    count (several at once) when membership places them."""
    where: dict[str, str] = {}
    node = RaftElection(
        "n1", ["h2:1", "h3:1"], TIMING, random.Random(1), my_key="h1:1", key_of=where.get
    )
    assert node.quorum == 2
    node.tick(0.0)
    assert node.tick(2 * T) == []  # no voter id known: nobody to ask yet
    node.step("n2", RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)
    node.step("n3", RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)
    assert node.state == "pre_candidate"  # n2, n3: not known to hold seats
    where.update({"n2": "h2:1", "n3": "h3:1"})
    out = node.membership_changed(frozenset({"n1", "n2", "n3"}), 2 * T + 0.1)
    assert node.state == "candidate" and node.term == 1
    assert {o.to for o in out if isinstance(o, Send)} == {"n2", "n3"}


def test_the_lease_holds_for_t_after_the_last_heartbeat_at_any_clock_value() -> None:
    node = RaftElection("c", ["a", "b"], TIMING, random.Random(1))
    node.tick(1000.0)
    node.step("a", RaftHeartbeat(term=1), 1000.0)
    assert node.step("b", RaftVote(term=2, pre_vote=True), 1000.0 + 0.5 * T) == []
    assert node.step("b", RaftVote(term=2, pre_vote=True), 1000.0 + 1.5 * T) == [
        Send("b", RaftVoteResponse(2, granted=True, pre_vote=True))
    ]


def test_a_candidate_counts_real_votes_only() -> None:
    """Late pre-vote grants (which record nothing at the voter) must never make a
    candidate leader; late real-vote refusals must not end a pre-vote; a heartbeat
    response reaching a candidate is ignored."""
    node = RaftElection("a", ["b", "c"], TIMING, random.Random(1))
    node.tick(0.0)
    node.tick(2 * T)
    node.step("b", RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)
    assert node.state == "candidate" and node.term == 1
    node.step("c", RaftVoteResponse(1, granted=True, pre_vote=True), 2 * T)  # late pre-vote
    node.step("c", RaftHeartbeatResponse(1), 2 * T)
    assert node.state == "candidate"
    node.step("b", RaftVoteResponse(1, granted=False, pre_vote=False), 2 * T)
    node.step("c", RaftVoteResponse(1, granted=False, pre_vote=False), 2 * T)
    assert node.state == "follower" and node.term == 1
    node.tick(6 * T)  # pre-vote for term 2; the term-1 refusals arrive again, late
    assert node.state == "pre_candidate"
    node.step("b", RaftVoteResponse(1, granted=False, pre_vote=False), 6 * T)
    node.step("c", RaftVoteResponse(1, granted=False, pre_vote=False), 6 * T)
    assert node.state == "pre_candidate"


def test_node_ids_compare_by_value_as_they_arrive_from_the_wire() -> None:
    """Decoded messages carry fresh string objects: the candidate we voted for is
    recognised on a retransmission, and our own id is ours whatever object holds it."""

    def fresh(text: str) -> str:
        copy = "".join(list(text))
        assert copy == text and copy is not text  # equal, not identical
        return copy

    node = RaftElection("node-c", ["node-a", "node-b"], TIMING, random.Random(1))
    node.tick(0.0)
    node.step(fresh("node-a"), RaftVote(term=1, pre_vote=False), 0.1)
    again = node.step(fresh("node-a"), RaftVote(term=1, pre_vote=False), 0.2)
    assert again == [Send("node-a", RaftVoteResponse(1, granted=True, pre_vote=False))]
    assert node.step(fresh("node-c"), RaftHeartbeat(term=9), 0.3) == []
    assert node.term == 1
