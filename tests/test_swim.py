"""SWIM membership, driven message by message through the in-test network."""

from __future__ import annotations

import random

import pytest

from jobtrio.cluster.messages import (
    Ack,
    Gossip,
    Join,
    MemberDown,
    MemberUp,
    MemberUpdate,
    MemberUpdated,
    Ping,
    PingReq,
    Send,
    SendToAddress,
    Sync,
)
from jobtrio.cluster.swim import Swim, SwimTiming
from tests.cluster_harness import Network

TIMING = SwimTiming()  # memberlist LAN: probe 1s, timeout 0.5s, 3 indirect, mult 4


def ids(n: int) -> list[str]:
    return [f"n{i}" for i in range(1, n + 1)]


def node(me: str, seed: int = 0, **meta: object) -> Swim:
    return Swim(me, f"addr:{me}", {"workers": 4, **meta}, TIMING, random.Random(seed))


def cluster(n: int, seed: int = 1, **net_kwargs: float) -> Network:
    """n nodes that all joined through n1's address and converged."""
    net = Network(seed=seed, **net_kwargs)
    names = ids(n)
    for i, me in enumerate(names):
        net.add(me, node(me, seed * 100 + i))
    net.start()
    for me in names:
        net.call(me, lambda m, now: m.join(["addr:n1"], now))
    net.run_until_true(lambda: everyone_sees(net, set(names)), 10.0)
    return net


def everyone_sees(net: Network, alive: set[str], among: list[str] | None = None) -> bool:
    return all(net.nodes[n].alive_ids() == alive for n in (among or net.up()))


def state_of(net: Network, observer: str, subject: str) -> str:
    return next(m.state for m in net.nodes[observer].members() if m.node_id == subject)


def downs(net: Network, subject: str) -> list[tuple[str, MemberDown]]:
    return [(n, o) for _, n, o in net.events if isinstance(o, MemberDown) and o.node_id == subject]


# ------------------------------------------------------------------ timing


def test_timing_formulas_follow_memberlist() -> None:
    assert TIMING.suspicion_timeout(3) == 4.0  # log10 scale floors at 1
    assert TIMING.suspicion_timeout(100) == pytest.approx(8.0)
    assert TIMING.retransmit_limit(3) == 4  # 4 * ceil(log10(4))
    assert TIMING.retransmit_limit(50) == 8
    fast = SwimTiming.scaled(0.2)
    assert (fast.probe_interval, fast.probe_timeout) == (0.2, 0.1)
    assert fast.suspicion_timeout(3) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="probe_timeout"):
        SwimTiming(probe_interval=1.0, probe_timeout=1.0)


# ------------------------------------------------------------------ join


def test_join_via_a_seed_then_everyone_knows_everyone() -> None:
    net = Network(seed=5)
    names = ids(6)
    for i, me in enumerate(names):
        net.add(me, node(me, i, api=f"http://{me}:8080"))
    net.start()
    out = net.call("n2", lambda m, now: m.join(["addr:n1"], now))
    # Only an address is known: the join goes to it, not to an id.
    assert out == [SendToAddress("addr:n1", Join(_rec("n2")))]
    for me in names[2:]:
        net.call(me, lambda m, now: m.join(["addr:n1", "addr:n2"], now))
    took = net.run_until_true(lambda: everyone_sees(net, set(names)), 10.0)
    assert took < 2.0
    # Every node announced every other exactly once, with its meta.
    for me in names:
        ups = [o for _, n, o in net.events if n == me and isinstance(o, MemberUp)]
        assert sorted(o.node_id for o in ups) == sorted(set(names) - {me})
        assert {o.node_id: o.meta["api"] for o in ups} == {
            n: f"http://{n}:8080" for n in names if n != me
        }
    view = {m.node_id: m for m in net.nodes["n6"].members()}
    assert view["n3"].address == "addr:n3" and view["n3"].state == "alive"
    assert view["n3"].meta == {"workers": 4, "api": "http://n3:8080"}
    assert view["n1"].last_contact is not None
    assert net.nodes["n6"].address_of("n4") == "addr:n4"
    assert net.nodes["n6"].address_of("nobody") is None


def _rec(me: str) -> MemberUpdate:
    return MemberUpdate(me, f"addr:{me}", 0, "alive", {"workers": 4, "api": f"http://{me}:8080"})


def test_own_address_in_seed_list_is_skipped_and_joins_retry() -> None:
    net = Network()
    net.add("n1", node("n1"))
    net.add("n2", node("n2", 1))
    net.start()
    net.crash("n1")  # the seed is not up yet
    out = net.call("n2", lambda m, now: m.join(["addr:n2", "addr:n1"], now))
    assert [o.address for o in out if isinstance(o, SendToAddress)] == ["addr:n1"]
    net.run_for(3.0)
    net.restart("n1", node("n1"))
    net.run_until_true(lambda: everyone_sees(net, {"n1", "n2"}), TIMING.join_retry_interval + 1)
    joins = [e for e in net.trace if e[2] == "to-address"]
    assert len(joins) >= 2  # the first was lost, a retry got through


def test_seed_replies_to_the_joiner_address_with_full_state() -> None:
    seed = node("n1")
    seed.tick(0.0)
    joiner = _rec("n9")
    out = seed.step("n9", Join(joiner), 0.1)
    assert out[0] == MemberUp("n9", "addr:n9", joiner.meta)
    reply = out[1]
    assert isinstance(reply, SendToAddress) and reply.address == "addr:n9"
    assert isinstance(reply.message, Sync) and not reply.message.reply
    assert {m.node_id for m in reply.message.members} == {"n1", "n9"}


# ------------------------------------------------------------------ failure detection


def test_failure_detected_and_disseminated_to_all() -> None:
    net = cluster(8)
    net.run_for(5.0)
    net.crash("n5")
    crashed_at = net.now
    others = [n for n in ids(8) if n != "n5"]
    net.run_until_true(lambda: everyone_sees(net, set(others)), 30.0)
    took = net.now - crashed_at
    # One probe round to notice (at most a full round of 7 probes on the
    # unlucky node), then the suspicion timeout; far from the 30s limit.
    assert took <= 7 * TIMING.probe_interval + TIMING.suspicion_timeout(8) + 1.0
    reporters = sorted(n for n, o in downs(net, "n5"))
    assert reporters == sorted(others)  # each node said MemberDown once
    assert all(not o.left for _, o in downs(net, "n5"))
    assert all(state_of(net, n, "n5") == "dead" for n in others)
    # Nobody else was wrongly declared dead along the way.
    assert all(o.node_id == "n5" for _, _, o in net.events if isinstance(o, MemberDown))


def test_suspect_first_then_dead_after_the_suspicion_timeout() -> None:
    net = cluster(3)
    net.crash("n3")
    net.run_until_true(lambda: state_of(net, "n1", "n3") == "suspect", 10.0)
    suspected_at = net.now
    # Still counted alive while only suspected: elections must not react yet.
    assert "n3" in net.nodes["n1"].alive_ids()
    net.run_until_true(lambda: state_of(net, "n1", "n3") == "dead", 10.0)
    assert net.now - suspected_at == pytest.approx(TIMING.suspicion_timeout(3), abs=0.1)


def test_indirect_probe_saves_a_node_behind_a_bad_link() -> None:
    net = cluster(4)
    net.block("n1", "n2")  # only this one link is bad
    net.run_for(30.0)
    # n1's direct pings to n2 fail, but ping-req through n3/n4 gets acks.
    relayed = [e for e in net.delivered if isinstance(e.message, PingReq) and e.src == "n1"]
    assert relayed
    assert not downs(net, "n2") and not downs(net, "n1")
    assert everyone_sees(net, set(ids(4)))


def test_suspicion_refuted_by_a_live_but_slow_node() -> None:
    net = cluster(5)
    net.run_for(3.0)
    # n2 stalls: nothing reaches it for a bit more than a probe interval.
    net.drop = lambda e: e.dst == "n2"
    net.run_until_true(
        lambda: any(state_of(net, n, "n2") == "suspect" for n in ids(5) if n != "n2"), 20.0
    )
    net.drop = None
    net.run_for(3 * TIMING.suspicion_timeout(5))
    assert not downs(net, "n2")  # never declared dead
    assert net.nodes["n2"].incarnation >= 1  # it refuted
    for n in ids(5):
        view = {m.node_id: m for m in net.nodes[n].members()}
        assert view["n2"].state == "alive"
        assert view["n2"].incarnation == net.nodes["n2"].incarnation


def test_a_node_refutes_suspicion_piggybacked_on_a_ping() -> None:
    n2 = node("n2")
    n2.tick(0.0)
    n2.step("n1", Gossip((_rec("n1"),)), 0.0)
    accusation = MemberUpdate("n2", "addr:n2", 0, "suspect", {"workers": 4})
    out = n2.step("n1", Ping(7, "n2", (accusation,)), 0.5)
    assert len(out) == 1 and isinstance(out[0], Send) and isinstance(out[0].message, Ack)
    ack = out[0].message
    assert ack.seq == 7
    refutation = next(u for u in ack.updates if u.node_id == "n2")
    assert (refutation.state, refutation.incarnation) == ("alive", 1)
    # An older accusation does not bump it again.
    n2.step("n1", Gossip((accusation,)), 0.6)
    assert n2.incarnation == 1


def test_ping_for_another_node_is_not_acked() -> None:
    n2 = node("n2")
    n2.tick(0.0)
    assert n2.step("n1", Ping(1, "n7", ()), 0.1) == []


def test_ping_req_is_relayed_and_the_ack_forwarded() -> None:
    helper = node("n3")
    helper.tick(0.0)
    helper.step("n1", Gossip((_rec("n1"), _rec("n2"))), 0.0)
    out = helper.step("n1", PingReq(41, "n2", "addr:n2", ()), 0.1)
    ping = next(o for o in out if isinstance(o, Send) and isinstance(o.message, Ping))
    assert ping.to == "n2" and ping.message.target == "n2"
    out = helper.step("n2", Ack(ping.message.seq, ()), 0.2)
    fwd = next(o for o in out if isinstance(o, Send))
    assert fwd.to == "n1" and isinstance(fwd.message, Ack) and fwd.message.seq == 41


# ------------------------------------------------------------------ leave, restart, partitions


def test_graceful_leave_is_known_everywhere_at_once() -> None:
    net = cluster(5)
    out = net.call("n4", lambda m, now: m.leave(now))
    assert {o.to for o in out if isinstance(o, Send)} == {"n1", "n2", "n3", "n5"}
    left_at = net.now
    net.run_for(0.5)
    rest = ["n1", "n2", "n3", "n5"]
    assert everyone_sees(net, set(rest), rest)
    assert sorted(n for n, o in downs(net, "n4")) == rest
    assert all(o.left for _, o in downs(net, "n4"))
    assert all(state_of(net, n, "n4") == "left" for n in rest)
    assert net.now - left_at < TIMING.probe_interval
    # The leaver is inert, and nobody probes it or suspects it afterwards.
    assert net.nodes["n4"].has_left and net.nodes["n4"].next_deadline() is None
    assert "n4" not in net.nodes["n4"].alive_ids()
    net.run_for(30.0)
    assert len(downs(net, "n4")) == 4


def test_restarted_node_rejoins_with_a_higher_incarnation() -> None:
    net = cluster(4)
    net.crash("n3")
    net.run_until_true(lambda: everyone_sees(net, {"n1", "n2", "n4"}), 30.0)
    net.restart("n3", Swim("n3", "addr:n3b", {"workers": 8}, TIMING, random.Random(9)))
    net.addresses["addr:n3b"] = "n3"
    net.call("n3", lambda m, now: m.join(["addr:n1"], now))
    net.run_until_true(lambda: everyone_sees(net, set(ids(4))), 10.0)
    # Its incarnation-0 join lost against the "dead at 0" record; it refuted.
    assert net.nodes["n3"].incarnation >= 1
    for n in ("n1", "n2", "n4"):
        view = {m.node_id: m for m in net.nodes[n].members()}
        assert view["n3"].address == "addr:n3b" and view["n3"].meta == {"workers": 8}
    ups = [(n, o) for _, n, o in net.events if isinstance(o, MemberUp) and o.node_id == "n3"]
    assert {n for n, o in ups if o.address == "addr:n3b"} == {"n1", "n2", "n4"}


def test_partition_heals_by_reconnecting_to_dead_members() -> None:
    net = cluster(4)
    net.partition(["n1", "n2"], ["n3", "n4"])
    net.run_until_true(
        lambda: (
            everyone_sees(net, {"n1", "n2"}, ["n1", "n2"])
            and everyone_sees(net, {"n3", "n4"}, ["n3", "n4"])
        ),
        60.0,
    )
    net.heal()
    took = net.run_until_true(lambda: everyone_sees(net, set(ids(4))), 60.0)
    assert took <= TIMING.reconnect_interval + 5.0


def test_meta_update_spreads_as_member_updated() -> None:
    net = cluster(4)
    net.call("n2", lambda m, now: m.update_meta({"workers": 16}, now))
    net.run_for(3.0)
    for n in ("n1", "n3", "n4"):
        assert {m.node_id: m.meta for m in net.nodes[n].members()}["n2"] == {"workers": 16}
        assert any(
            isinstance(o, MemberUpdated) and o.node_id == "n2" and o.meta == {"workers": 16}
            for _, who, o in net.events
            if who == n
        )


# ------------------------------------------------------------------ merging rules


def test_incarnation_precedence() -> None:
    n1 = node("n1")
    n1.tick(0.0)
    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 3, "alive", {}),)), 0.0)

    def n2_state() -> tuple[str, int]:
        m = next(m for m in n1.members() if m.node_id == "n2")
        return m.state, m.incarnation

    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 2, "suspect", {}),)), 0.1)
    assert n2_state() == ("alive", 3)  # older news loses
    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 3, "suspect", {}),)), 0.2)
    assert n2_state() == ("suspect", 3)  # same incarnation: suspect beats alive
    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 3, "alive", {}),)), 0.3)
    assert n2_state() == ("suspect", 3)  # refuting takes a higher incarnation
    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 4, "alive", {}),)), 0.4)
    assert n2_state() == ("alive", 4)
    out = n1.step("n9", Gossip((MemberUpdate("n2", "a2", 4, "dead", {}),)), 0.5)
    assert n2_state() == ("dead", 4) and out == [MemberDown("n2")]
    out = n1.step("n9", Gossip((MemberUpdate("n2", "a2", 4, "left", {}),)), 0.6)
    assert n2_state() == ("left", 4) and out == []  # no second MemberDown


def test_remote_dead_in_a_sync_is_only_a_suspicion() -> None:
    n1 = node("n1")
    n1.tick(0.0)
    n1.step("n9", Gossip((MemberUpdate("n2", "a2", 0, "alive", {}),)), 0.0)
    n1.step("n9", Sync((MemberUpdate("n2", "a2", 0, "dead", {}),), reply=False), 0.1)
    assert next(m.state for m in n1.members() if m.node_id == "n2") == "suspect"


def test_hostile_updates_do_not_crash_or_corrupt() -> None:
    n1 = node("n1")
    n1.tick(0.0)
    weird = (
        MemberUpdate("ghost", "ag", 5, "suspect", {}),  # unknown and suspect
        MemberUpdate("gone", "ax", 1, "left", {}),  # unknown and left
        MemberUpdate("n1", "elsewhere", 0, "alive", {"evil": True}),  # lies about us
    )
    out = n1.step("n9", Gossip(weird), 0.1)
    assert MemberUp("ghost", "ag", {}) in out
    assert "gone" not in n1.alive_ids()
    assert n1.incarnation == 1  # refuted the conflicting record about itself
    me = next(m for m in n1.members() if m.node_id == "n1")
    assert me.address == "addr:n1" and me.meta == {"workers": 4}
    assert n1.step("n1", Gossip(weird), 0.2) == []  # "from ourselves": ignored


def test_piggyback_is_bounded_and_retransmissions_limited() -> None:
    n1 = node("n1")
    n1.tick(0.0)
    many = tuple(MemberUpdate(f"m{i}", f"a{i}", 0, "alive", {}) for i in range(20))
    n1.step("n9", Gossip(many), 0.0)
    out = n1.step("m0", Ping(1, "n1", ()), 0.1)
    assert len(out[0].message.updates) == TIMING.max_piggyback
    sent = 0
    for i in range(200):
        sent += len(n1.step("m0", Ping(i, "n1", ()), 0.1)[0].message.updates)
    # Each of the 21 pending updates (20 + n1's own) is sent retransmit_limit
    # times in all, then dropped.
    limit = TIMING.retransmit_limit(21)
    assert sent + TIMING.max_piggyback == 21 * limit


# ------------------------------------------------------------------ determinism


def _chaotic_run(seed: int) -> list[tuple[float, str, str, str, dict[str, object]]]:
    net = Network(seed=seed, jitter=0.01, loss=0.05)
    for i, me in enumerate(ids(6)):
        net.add(me, node(me, seed * 100 + i))
    net.start()
    for me in ids(6):
        net.call(me, lambda m, now: m.join(["addr:n1"], now))
    net.run_for(10.0)
    net.crash("n4")
    net.run_for(15.0)
    return net.trace


def test_same_seed_same_outputs() -> None:
    assert _chaotic_run(3) == _chaotic_run(3)
    assert _chaotic_run(3) != _chaotic_run(4)
