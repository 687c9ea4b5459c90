"""Wire format of cluster messages: round trips, and refusal of anything malformed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from jobtrio.cluster.messages import (
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    Ack,
    BullyAnswer,
    BullyCoordinator,
    BullyElect,
    CancelJob,
    Gossip,
    Join,
    MemberUpdate,
    Ping,
    PingReq,
    ProtocolError,
    RaftHeartbeat,
    RaftHeartbeatResponse,
    RaftVote,
    RaftVoteResponse,
    Send,
    Sync,
    decode,
    encode,
)

ALICE = MemberUpdate("alice", "10.0.0.1:7946", 3, "alive", {"api": "http://a:8080", "workers": 4})
BOB = MemberUpdate("bob", "10.0.0.2:7946", 0, "suspect", {})

SAMPLES = [
    Ping(1, "bob", (ALICE, BOB)),
    Ack(1, ()),
    PingReq(2, "bob", "10.0.0.2:7946", (ALICE,)),
    Join(ALICE),
    Sync((ALICE, BOB), reply=True),
    Gossip((BOB,)),
    RaftVote(term=4, pre_vote=True),
    RaftVoteResponse(term=4, granted=False, pre_vote=False),
    RaftHeartbeat(term=4),
    RaftHeartbeatResponse(term=4),
    BullyElect(epoch=2),
    BullyAnswer(epoch=2),
    BullyCoordinator(epoch=3),
    CancelJob("job-1"),
]


def test_every_kind_has_a_sample() -> None:
    assert sorted(MESSAGE_TYPES) == sorted(m.kind for m in SAMPLES)
    assert sorted(MESSAGE_TYPES) == [
        "bully.answer",
        "bully.coordinator",
        "bully.election",
        "job.cancel",
        "raft.heartbeat",
        "raft.heartbeat_resp",
        "raft.vote",
        "raft.vote_resp",
        "swim.ack",
        "swim.gossip",
        "swim.join",
        "swim.ping",
        "swim.ping_req",
        "swim.sync",
    ]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.kind)
def test_round_trip_through_json(msg: Any) -> None:
    wire = encode(msg)
    assert wire["v"] == PROTOCOL_VERSION and wire["kind"] == msg.kind
    assert decode(json.loads(json.dumps(wire))) == msg


def test_encoding_is_plain_data() -> None:
    wire = encode(Ping(5, "bob", (ALICE,)))
    assert wire == {
        "v": 1,
        "kind": "swim.ping",
        "seq": 5,
        "target": "bob",
        "updates": [
            {
                "node_id": "alice",
                "address": "10.0.0.1:7946",
                "incarnation": 3,
                "state": "alive",
                "meta": {"api": "http://a:8080", "workers": 4},
            }
        ],
    }


def test_unknown_extra_keys_are_tolerated() -> None:
    wire = encode(RaftHeartbeat(7)) | {"added_in_a_later_release": True}
    assert decode(wire) == RaftHeartbeat(7)


def test_encode_refuses_non_messages() -> None:
    with pytest.raises(TypeError):
        encode(Send("a", RaftHeartbeat(1)))  # type: ignore[arg-type]


def ping(**overrides: Any) -> dict[str, Any]:
    return encode(Ping(1, "bob", (ALICE,))) | overrides


def with_update(**overrides: Any) -> dict[str, Any]:
    update = encode(Ping(1, "bob", (ALICE,)))["updates"][0] | overrides
    return ping(updates=[update])


MALFORMED = [
    ("not-an-object", ["v", 1], "must be an object"),
    ("null", None, "must be an object"),
    ("no-version", {"kind": "swim.ping"}, "missing protocol version"),
    ("wrong-version", ping(v=2), "unsupported protocol version 2"),
    ("version-as-string", ping(v="1"), "unsupported protocol version '1'"),
    ("version-as-bool", ping(v=True), "unsupported protocol version True"),
    ("no-kind", {"v": 1}, "missing or non-string 'kind'"),
    ("kind-not-string", {"v": 1, "kind": 7}, "missing or non-string 'kind'"),
    ("unknown-kind", {"v": 1, "kind": "swim.pong"}, "unknown message kind 'swim.pong'"),
    ("missing-field", {"v": 1, "kind": "raft.heartbeat"}, "raft.heartbeat: missing field 'term'"),
    ("int-as-string", encode(RaftHeartbeat(1)) | {"term": "1"}, "term: expected an integer"),
    ("int-as-float", encode(RaftHeartbeat(1)) | {"term": 1.0}, "term: expected an integer"),
    ("int-as-bool", encode(RaftHeartbeat(1)) | {"term": True}, "term: expected an integer"),
    ("negative-int", encode(RaftHeartbeat(1)) | {"term": -1}, "out of range"),
    ("huge-int", encode(RaftHeartbeat(1)) | {"term": 2**64}, "out of range"),
    ("bool-as-int", encode(RaftVote(1, True)) | {"pre_vote": 1}, "pre_vote: expected a boolean"),
    ("empty-string", ping(target=""), "target: must not be empty"),
    ("long-string", ping(target="x" * 300), "target: longer than 256"),
    ("string-as-list", ping(target=["bob"]), "target: expected a string"),
    ("updates-not-list", ping(updates={"a": 1}), "updates: expected a list"),
    ("update-not-object", ping(updates=[3]), "updates[0]: expected an object"),
    ("update-missing-field", ping(updates=[{"node_id": "a"}]), "updates[0]: missing field"),
    ("update-null-field", with_update(address=None), "updates[0].address: expected a string"),
    ("bad-state", with_update(state="zombie"), "updates[0].state: expected one of"),
    ("state-unhashable", with_update(state=["alive"]), "updates[0].state: expected one of"),
    ("meta-not-object", with_update(meta=[1]), "updates[0].meta: expected an object"),
    ("meta-nested", with_update(meta={"a": {"b": 1}}), "meta.a: expected a string, number"),
    ("meta-nan", with_update(meta={"a": float("nan")}), "meta.a: numbers must be finite"),
    ("meta-empty-key", with_update(meta={"": 1}), "keys must be non-empty"),
    ("meta-too-big", with_update(meta={f"k{i}": i for i in range(65)}), "more than 64 entries"),
    ("too-many-updates", ping(updates=[encode(Join(ALICE))["member"]] * 5000), "more than 4096"),
    ("join-member-missing", {"v": 1, "kind": "swim.join"}, "swim.join: missing field 'member'"),
]


@pytest.mark.parametrize(
    ("data", "reason"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED]
)
def test_malformed_messages_raise_protocol_error_with_a_reason(data: Any, reason: str) -> None:
    with pytest.raises(ProtocolError) as info:
        decode(data)
    assert reason in info.value.reason
    assert str(info.value) == info.value.reason


def test_protocol_error_is_a_value_error() -> None:
    assert issubclass(ProtocolError, ValueError)


def test_decode_never_raises_anything_else_on_junk() -> None:
    """Fuzz decode with mutated valid messages: ProtocolError or a message, nothing else."""
    import random

    rng = random.Random(1)
    junk: list[Any] = [None, 0, -1, 1.5, "", "x", [], {}, [1], {"a": 1}, True, 2**70]
    for _ in range(3000):
        wire = encode(rng.choice(SAMPLES))
        target = wire
        if wire.get("updates") and rng.random() < 0.5:
            target = wire["updates"][0]  # mutate inside a member record
        key = rng.choice(list(target))
        mutated = dict(target)
        if rng.random() < 0.2:
            del mutated[key]
        else:
            mutated[key] = rng.choice(junk)
        if target is not wire:
            mutated = wire | {"updates": [mutated]}
        try:
            decode(mutated)
        except ProtocolError:
            pass


def _random_message(rng: Any, names: list[str]) -> Any:
    def num() -> int:
        return rng.choice([0, 1, 2, 3, rng.randrange(0, 50), 2**63 - 1])

    def update() -> MemberUpdate:
        state = rng.choice(["alive", "suspect", "dead", "left"])
        node = rng.choice(names)
        return MemberUpdate(node, f"addr:{rng.choice(names)}", num(), state, {"w": num()})

    def updates() -> tuple[MemberUpdate, ...]:
        return tuple(update() for _ in range(rng.randrange(0, 4)))

    return rng.choice(
        [
            lambda: Ping(num(), rng.choice(names), updates()),
            lambda: Ack(num(), updates()),
            lambda: PingReq(num(), rng.choice(names), f"addr:{rng.choice(names)}", updates()),
            lambda: Join(update()),
            lambda: Sync(updates(), reply=rng.random() < 0.5),
            lambda: Gossip(updates()),
            lambda: RaftVote(num(), rng.random() < 0.5),
            lambda: RaftVoteResponse(num(), rng.random() < 0.5, rng.random() < 0.5),
            lambda: RaftHeartbeat(num()),
            lambda: RaftHeartbeatResponse(num()),
            lambda: BullyElect(num()),
            lambda: BullyAnswer(num()),
            lambda: BullyCoordinator(num()),
        ]
    )()


@pytest.mark.parametrize("kind", ["swim", "raft", "bully", "gossip"])
def test_machines_survive_arbitrary_valid_messages(kind: str) -> None:
    """Peers are untrusted: whatever well-formed message arrives from whoever,
    in whatever order, a machine neither raises nor stops scheduling itself."""
    import random

    from jobtrio.cluster.election import ElectionTiming, make_election
    from jobtrio.cluster.swim import Swim, SwimTiming

    names = ["me", "a", "b", "c", "zz"]
    for seed in range(20):
        rng = random.Random(seed)
        if kind == "swim":
            machine: Any = Swim("me", "addr:me", {}, SwimTiming(), random.Random(seed))
        else:
            timing = ElectionTiming.from_settings(1.0, 0.25)
            machine = make_election(kind, "me", ["a", "b"], timing, random.Random(seed))
        now = 0.0
        machine.tick(now)
        for _ in range(300):
            now += rng.choice([0.0, 0.001, 0.1, 0.7])
            if rng.random() < 0.2:
                machine.tick(now)
                deadline = machine.next_deadline()
                assert deadline is None or deadline > now
            else:
                machine.step(rng.choice(names), _random_message(rng, names), now)
            if kind != "swim" and rng.random() < 0.05:
                alive = frozenset(rng.sample(names, rng.randrange(0, 5)))
                machine.membership_changed(alive, now, frozenset(rng.sample(names, 1)))


def test_a_cancel_request_is_checked_like_any_message() -> None:
    assert decode({"v": PROTOCOL_VERSION, "kind": "job.cancel", "job_id": "j1"}) == CancelJob("j1")
    with pytest.raises(ProtocolError, match="job.cancel.job_id: expected a string"):
        decode({"v": PROTOCOL_VERSION, "kind": "job.cancel", "job_id": 7})
    with pytest.raises(ProtocolError, match="missing field 'job_id'"):
        decode({"v": PROTOCOL_VERSION, "kind": "job.cancel"})
