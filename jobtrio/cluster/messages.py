"""What cluster peers say to each other, and what the protocol cores ask their actor to do.

Two vocabularies live here because both are shared by every protocol core:

* **Messages** travel between nodes (SWIM membership, Raft, Bully, and the
  cluster actor's own ``job.cancel``). They are
  frozen dataclasses with a ``kind`` string, turned into plain JSON-able dicts
  by :func:`encode` and back by :func:`decode`. Every dict carries the
  protocol version ``"v"``, so a node can refuse a peer speaking another
  version with a clear reason instead of misreading it.
* **Outputs** never leave the node: :class:`Send`, :class:`SendToAddress`,
  :class:`LeaderChanged`, :class:`MemberUp`, :class:`MemberUpdated` and
  :class:`MemberDown` are what ``tick``/``step`` return for the actor to carry
  out, in order.

Bytes from a peer are untrusted input: :func:`decode` checks every field's
presence, type and bounds and raises :class:`ProtocolError` with a reason for
anything malformed, so the actor can log it, drop it and keep running. It
never raises anything else for a dict. Unknown extra keys are ignored so that a
later release can add optional fields within the same version.

The sender of a message is not part of the message: the transport knows which
peer a frame came from and passes it to ``step(sender, message, now)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, get_type_hints

#: Bumped on any incompatible change of a message's fields or meaning.
PROTOCOL_VERSION = 1

MemberState = Literal["alive", "suspect", "dead", "left"]
MEMBER_STATES: tuple[MemberState, ...] = ("alive", "suspect", "dead", "left")

MetaValue = str | int | float | bool | None
#: Small, flat, JSON-able facts a node publishes about itself (address for the
#: peer transport, API URL, worker count...). Treat as read-only.
Meta = dict[str, MetaValue]

# Bounds that keep one hostile or buggy frame from costing much memory or CPU.
MAX_ID_LENGTH = 256
MAX_TEXT_LENGTH = 2048
MAX_META_ENTRIES = 64
MAX_UPDATES = 4096
MAX_INT = 2**63 - 1


class ProtocolError(ValueError):
    """A peer sent something this node cannot accept; ``reason`` says what."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------
# membership records and SWIM messages


@dataclass(frozen=True, slots=True)
class MemberUpdate:
    """One node's state as some peer believes it: the unit SWIM gossips.

    A record is whole (address and meta ride along with every state) so that a
    node hearing of a member for the first time, even as ``suspect``, can
    reach it. Records about one node are ordered by ``incarnation``, which
    only that node itself increments (to refute a suspicion, to announce new
    meta, or to leave).
    """

    node_id: str
    address: str
    incarnation: int
    state: MemberState
    meta: Meta = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe. ``target`` names the node meant, so a ping that reaches a
    reused address (a restarted node under another id) is not acked."""

    kind: ClassVar[str] = "swim.ping"
    seq: int
    target: str
    updates: tuple[MemberUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a ping (or, relayed, to a ping-req) with the same ``seq``."""

    kind: ClassVar[str] = "swim.ack"
    seq: int
    updates: tuple[MemberUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask a helper to probe ``target`` for us: tells a dead node from a bad
    link between us and it. ``target_address`` lets a helper that has not yet
    heard of the target still reach it."""

    kind: ClassVar[str] = "swim.ping_req"
    seq: int
    target: str
    target_address: str
    updates: tuple[MemberUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class Join:
    """Sent to a seed *address* by a node that knows no ids yet; the seed
    answers with a full :class:`Sync` of its view."""

    kind: ClassVar[str] = "swim.join"
    member: MemberUpdate


@dataclass(frozen=True, slots=True)
class Sync:
    """Full-state push (memberlist's push-pull). With ``reply`` set the
    receiver answers with its own full state, which is how two views that
    drifted apart (a healed partition, a restarted node) converge."""

    kind: ClassVar[str] = "swim.sync"
    members: tuple[MemberUpdate, ...]
    reply: bool


@dataclass(frozen=True, slots=True)
class Gossip:
    """Updates pushed outside the probe cycle (periodic fan-out, leave)."""

    kind: ClassVar[str] = "swim.gossip"
    updates: tuple[MemberUpdate, ...]


# --------------------------------------------------------------------------
# Raft (leader election only: no log)


@dataclass(frozen=True, slots=True)
class RaftVote:
    """RequestVote. With ``pre_vote`` the term is the one the candidate
    *would* use; nobody changes term or records a vote for it."""

    kind: ClassVar[str] = "raft.vote"
    term: int
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class RaftVoteResponse:
    kind: ClassVar[str] = "raft.vote_resp"
    term: int
    granted: bool
    pre_vote: bool


@dataclass(frozen=True, slots=True)
class RaftHeartbeat:
    """Empty AppendEntries: asserts leadership for ``term``. ``round`` numbers
    the leader's CheckQuorum period, echoed in the response."""

    kind: ClassVar[str] = "raft.heartbeat"
    term: int
    round: int = 0


@dataclass(frozen=True, slots=True)
class RaftHeartbeatResponse:
    """Lets the leader count who is still reachable (CheckQuorum), and tells a
    stale leader about a newer term."""

    kind: ClassVar[str] = "raft.heartbeat_resp"
    term: int
    #: The heartbeat's round: a response to an earlier round does not count now.
    round: int = 0


# --------------------------------------------------------------------------
# Bully


@dataclass(frozen=True, slots=True)
class BullyElect:
    """The ELECTION message, sent to every higher-ranked peer: "I am
    starting an election"."""

    kind: ClassVar[str] = "bully.election"
    epoch: int


@dataclass(frozen=True, slots=True)
class BullyAnswer:
    """ "I outrank you and I am alive; wait for my COORDINATOR". Also sent in
    reply to a stale COORDINATOR, carrying the higher epoch the claimant
    missed."""

    kind: ClassVar[str] = "bully.answer"
    epoch: int


@dataclass(frozen=True, slots=True)
class BullyCoordinator:
    """ "I lead for ``epoch``"; repeated every heartbeat interval."""

    kind: ClassVar[str] = "bully.coordinator"
    epoch: int


# --------------------------------------------------------------------------
# jobs


@dataclass(frozen=True, slots=True)
class CancelJob:
    """A job was cancelled through the sender: whoever runs it, stop its attempt now
    rather than at the next lease renewal (the Broker has already moved the job)."""

    kind: ClassVar[str] = "job.cancel"
    job_id: str


Message = (
    Ping
    | Ack
    | PingReq
    | Join
    | Sync
    | Gossip
    | RaftVote
    | RaftVoteResponse
    | RaftHeartbeat
    | RaftHeartbeatResponse
    | BullyElect
    | BullyAnswer
    | BullyCoordinator
    | CancelJob
)

SWIM_MESSAGES = (Ping, Ack, PingReq, Join, Sync, Gossip)
RAFT_MESSAGES = (RaftVote, RaftVoteResponse, RaftHeartbeat, RaftHeartbeatResponse)
BULLY_MESSAGES = (BullyElect, BullyAnswer, BullyCoordinator)
JOB_MESSAGES = (CancelJob,)

MESSAGE_TYPES: dict[str, type[Any]] = {
    cls.kind: cls for cls in (*SWIM_MESSAGES, *RAFT_MESSAGES, *BULLY_MESSAGES, *JOB_MESSAGES)
}


# --------------------------------------------------------------------------
# outputs: what a protocol core asks its actor to do


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver ``message`` to the node ``to`` (a node id; the actor resolves
    its address, e.g. with ``Swim.address_of``)."""

    to: str
    message: Message


@dataclass(frozen=True, slots=True)
class SendToAddress:
    """Deliver ``message`` to a transport address whose node id is unknown
    (seed addresses at join time, a reply to a joining node)."""

    address: str
    message: Message


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """The leader this node believes in changed (``None``: no leader known),
    or the same leader now leads under a new ``term``. ``term`` is the
    algorithm's own epoch/term; the fencing epoch comes from the Broker."""

    leader: str | None
    term: int


@dataclass(frozen=True, slots=True)
class MemberUp:
    """A node became reachable (new, or back from dead/left)."""

    node_id: str
    address: str
    meta: Meta


@dataclass(frozen=True, slots=True)
class MemberUpdated:
    """A live member announced a new address or meta (e.g. a restart)."""

    node_id: str
    address: str
    meta: Meta


@dataclass(frozen=True, slots=True)
class MemberDown:
    """A member was confirmed dead, or (``left``) announced a graceful leave."""

    node_id: str
    left: bool = False


Output = Send | SendToAddress | LeaderChanged | MemberUp | MemberUpdated | MemberDown


# --------------------------------------------------------------------------
# encoding


def encode(msg: Message) -> dict[str, Any]:
    """A plain dict (JSON-able) for ``msg``, with its ``kind`` and version."""
    if type(msg) not in _SCHEMAS:
        raise TypeError(f"not a cluster message: {type(msg).__name__}")
    out: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": msg.kind}
    for name, _ in _SCHEMAS[type(msg)]:
        out[name] = _to_plain(getattr(msg, name))
    return out


def decode(data: object) -> Message:
    """The message in ``data``; :class:`ProtocolError` if it is not one."""
    if not isinstance(data, dict):
        raise ProtocolError(f"message must be an object, got {type(data).__name__}")
    if "v" not in data:
        raise ProtocolError("missing protocol version 'v'")
    version = data["v"]
    if type(version) is not int or version != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {version!r} (speak {PROTOCOL_VERSION})")
    kind = data.get("kind")
    if not isinstance(kind, str):
        raise ProtocolError("missing or non-string 'kind'")
    cls = MESSAGE_TYPES.get(kind)
    if cls is None:
        raise ProtocolError(f"unknown message kind {kind[:64]!r}")
    return _build(cls, data, kind)


def _to_plain(value: object) -> Any:
    if isinstance(value, MemberUpdate):
        return {
            "node_id": value.node_id,
            "address": value.address,
            "incarnation": value.incarnation,
            "state": value.state,
            "meta": dict(value.meta),
        }
    if isinstance(value, tuple):
        return [_to_plain(v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def _build(cls: type[Any], data: dict[str, Any], where: str) -> Any:
    kwargs: dict[str, Any] = {}
    for name, convert in _SCHEMAS[cls]:
        if name not in data:
            raise ProtocolError(f"{where}: missing field {name!r}")
        kwargs[name] = convert(data[name], f"{where}.{name}")
    return cls(**kwargs)


# Converters take the raw value and a dotted path for the error message.


def _conv_int(value: object, where: str) -> int:
    if type(value) is not int:
        raise ProtocolError(f"{where}: expected an integer, got {type(value).__name__}")
    if not 0 <= value <= MAX_INT:
        raise ProtocolError(f"{where}: {value} is out of range 0..2**63-1")
    return value


def _conv_bool(value: object, where: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(f"{where}: expected a boolean, got {type(value).__name__}")
    return value


def _conv_str(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise ProtocolError(f"{where}: expected a string, got {type(value).__name__}")
    if not value:
        raise ProtocolError(f"{where}: must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise ProtocolError(f"{where}: longer than {MAX_ID_LENGTH} characters")
    return value


def _conv_state(value: object, where: str) -> MemberState:
    if value not in MEMBER_STATES or not isinstance(value, str):
        raise ProtocolError(f"{where}: expected one of {', '.join(MEMBER_STATES)}, got {value!r}")
    return value  # type: ignore[return-value]


def _conv_meta(value: object, where: str) -> Meta:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    if len(value) > MAX_META_ENTRIES:
        raise ProtocolError(f"{where}: more than {MAX_META_ENTRIES} entries")
    out: Meta = {}
    for key, item in value.items():
        if not isinstance(key, str) or not key or len(key) > MAX_ID_LENGTH:
            raise ProtocolError(f"{where}: keys must be non-empty short strings")
        if item is None or type(item) in (bool, int):
            pass
        elif type(item) is float:
            if not math.isfinite(item):
                raise ProtocolError(f"{where}.{key}: numbers must be finite")
        elif isinstance(item, str):
            if len(item) > MAX_TEXT_LENGTH:
                raise ProtocolError(f"{where}.{key}: longer than {MAX_TEXT_LENGTH} characters")
        else:
            raise ProtocolError(
                f"{where}.{key}: expected a string, number, boolean or null, "
                f"got {type(item).__name__}"
            )
        out[key] = item
    return out


def _conv_update(value: object, where: str) -> MemberUpdate:
    if not isinstance(value, dict):
        raise ProtocolError(f"{where}: expected an object, got {type(value).__name__}")
    return _build(MemberUpdate, value, where)


def _conv_updates(value: object, where: str) -> tuple[MemberUpdate, ...]:
    if not isinstance(value, list):
        raise ProtocolError(f"{where}: expected a list, got {type(value).__name__}")
    if len(value) > MAX_UPDATES:
        raise ProtocolError(f"{where}: more than {MAX_UPDATES} entries")
    return tuple(_conv_update(item, f"{where}[{i}]") for i, item in enumerate(value))


_CONVERTERS: dict[object, Any] = {
    int: _conv_int,
    bool: _conv_bool,
    str: _conv_str,
    MemberState: _conv_state,
    Meta: _conv_meta,
    MemberUpdate: _conv_update,
    tuple[MemberUpdate, ...]: _conv_updates,
}


def _schema(cls: type[Any]) -> list[tuple[str, Any]]:
    """Field converters from the dataclass annotations, computed once, so a
    new message only needs its dataclass to be encodable and checked."""
    hints = get_type_hints(cls)
    return [(f.name, _CONVERTERS[hints[f.name]]) for f in fields(cls)]


_SCHEMAS: dict[type[Any], list[tuple[str, Any]]] = {
    cls: _schema(cls) for cls in (MemberUpdate, *MESSAGE_TYPES.values())
}
