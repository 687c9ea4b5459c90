"""SWIM's member table and broadcast queue, each on its own (cluster/members.py, broadcasts.py)."""

from __future__ import annotations

from jobtrio.cluster.broadcasts import BroadcastQueue
from jobtrio.cluster.members import MemberTable
from jobtrio.cluster.messages import MemberDown, MemberUp, MemberUpdate, MemberUpdated


def table() -> MemberTable:
    return MemberTable("me", "10.0.0.1:1", {}, lambda n: 4.0)


def rec(node: str, inc: int, state: str = "alive", addr: str = "10.0.0.2:1") -> MemberUpdate:
    return MemberUpdate(node, addr, inc, state, {})  # type: ignore[arg-type]


# -- the member table ------------------------------------------------------------------


def test_a_new_live_member_is_announced_gossiped_and_probed() -> None:
    t = table()
    applied = t.apply(rec("b", 0), now=1.0)
    assert applied.output == MemberUp("b", "10.0.0.2:1", {})
    assert applied.gossip == rec("b", 0) and applied.up
    assert t.alive_ids() == {"me", "b"} and t.live_peers() == ["b"]


def test_a_dead_member_first_heard_of_is_only_remembered() -> None:
    t = table()
    applied = t.apply(rec("b", 3, "dead"), now=1.0)
    assert not applied.changed and not applied.up
    assert t.address_of("b") == "10.0.0.2:1" and t.dead_ids() == ["b"]


def test_incarnation_first_then_dead_over_suspect_over_alive() -> None:
    t = table()
    t.apply(rec("b", 1), now=0.0)
    assert not t.apply(rec("b", 1), now=1.0).changed  # nothing new
    assert not t.apply(rec("b", 0, "suspect"), now=1.0).changed  # older incarnation
    suspected = t.apply(rec("b", 1, "suspect"), now=2.0)
    assert suspected.gossip == rec("b", 1, "suspect") and suspected.output is None
    assert t.get("b").suspect_deadline == 6.0  # type: ignore[union-attr]
    assert not t.apply(rec("b", 1), now=2.5).changed  # alive must outbid, not match
    refuted = t.apply(rec("b", 2), now=3.0)
    assert refuted.gossip == rec("b", 2) and refuted.output is None
    assert t.get("b").suspect_deadline is None  # type: ignore[union-attr]
    moved = t.apply(rec("b", 3, addr="10.0.0.9:1"), now=4.0)
    assert moved.output == MemberUpdated("b", "10.0.0.9:1", {})
    died = t.apply(rec("b", 3, "dead", addr="10.0.0.9:1"), now=5.0)
    assert died.output == MemberDown("b", left=False) and died.down
    assert t.alive_ids() == {"me"}
    left = t.apply(rec("b", 3, "left", addr="10.0.0.9:1"), now=6.0)
    assert left.gossip is not None and left.output is None  # a leave outranks a failure
    assert t.left_ids() == {"b"}


def test_a_suspect_that_does_not_refute_is_declared_dead_at_its_deadline() -> None:
    t = table()
    t.apply(rec("b", 0), now=0.0)
    t.apply(rec("b", 0, "suspect"), now=1.0)
    assert t.suspects_due(4.9) == []
    [applied] = t.suspects_due(5.0)
    assert applied.output == MemberDown("b") and applied.down
    assert t.deadlines(retention=100.0) == [105.0]  # now only the reaping is due
    assert t.reap(104.0, retention=100.0) == []
    assert t.reap(105.0, retention=100.0) == ["b"] and "b" not in t


def test_a_dead_record_from_a_sync_is_only_a_suspicion() -> None:
    t = table()
    t.apply(rec("b", 0), now=0.0)
    [applied] = t.merge([rec("b", 0, "dead")], now=1.0, from_sync=True)
    assert applied.output is None and t.get("b").state == "suspect"  # type: ignore[union-attr]


def test_this_node_refutes_a_suspicion_by_raising_its_incarnation() -> None:
    t = table()
    applied = t.apply(MemberUpdate("me", "10.0.0.1:1", 0, "suspect", {}), now=1.0)
    assert t.incarnation == 1
    assert applied.gossip == MemberUpdate("me", "10.0.0.1:1", 1, "alive", {})
    assert not t.apply(MemberUpdate("me", "10.0.0.1:1", 1, "alive", {}), now=2.0).changed
    t.leave(now=3.0)
    assert t.left and "me" not in t.alive_ids()
    assert not t.apply(MemberUpdate("me", "10.0.0.1:1", 9, "dead", {}), now=4.0).changed


# -- the broadcast queue ------------------------------------------------------------------


def test_updates_go_least_sent_then_newest_first_until_their_limit() -> None:
    q = BroadcastQueue(lambda n: n, max_per_message=2)
    for node in ("a", "b", "c"):
        q.queue(rec(node, 0))
    assert [u.node_id for u in q.take(live_members=2)] == ["c", "b"]
    assert [u.node_id for u in q.take(live_members=2)] == ["a", "c"]  # a was sent least
    assert [u.node_id for u in q.pending()] == ["b", "a"]  # c went out twice: done
    assert [u.node_id for u in q.take(live_members=2)] == ["b", "a"]
    assert not q and q.take(live_members=2) == ()


def test_a_newer_update_replaces_the_waiting_one_and_starts_over() -> None:
    q = BroadcastQueue(lambda n: 3, max_per_message=8)
    q.queue(rec("a", 0))
    q.take(live_members=1)
    q.queue(rec("a", 1, "suspect"))
    assert len(q) == 1 and q.pending() == [rec("a", 1, "suspect")]
    q.discard("a")
    assert not q
