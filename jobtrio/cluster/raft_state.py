"""Raft's durable state: the current term and the vote cast in it.

Raft's election safety (at most one leader per term) rests on every voter
granting at most one vote per term. A voter that forgets its vote, because it
crashed and restarted while the election was still open, can vote again in the
same term for another candidate, and that term gets two leaders. So the term
and ``votedFor`` must reach stable storage before any message that depends on
them leaves the node (the Raft paper, figure 2: "updated on stable storage
before responding to RPCs"). :class:`~.raft.RaftElection` saves through a
:class:`RaftStateStore` at the end of every input, before it hands its
outputs to the actor that sends them.

Two stores: :class:`FileRaftState` (a small JSON file replaced atomically:
write a temporary file, fsync it, rename it over the old one, fsync the
directory) for real nodes, and :class:`MemoryRaftState`, the simulator's disk,
which outlives the node it belongs to so a restarted node finds what it saved.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

FORMAT = 1


class RaftStateError(ValueError):
    """The state file cannot be used (unreadable, corrupt, another node's)."""


@dataclass(frozen=True, slots=True)
class HardState:
    """What Raft must never forget: the term, and whom this node voted for in it."""

    term: int = 0
    voted_for: str | None = None


class RaftStateStore(Protocol):
    def load(self) -> HardState: ...

    def save(self, state: HardState) -> None: ...


class MemoryRaftState:
    """A store in memory: unit tests, and the simulator's per-node disk (the
    simulator keeps one per node id and hands it to every restart)."""

    def __init__(self, state: HardState | None = None) -> None:
        self.state = state or HardState()
        self.saves = 0

    def load(self) -> HardState:
        return self.state

    def save(self, state: HardState) -> None:
        self.state = state
        self.saves += 1


class FileRaftState:
    """``HardState`` in a JSON file, replaced atomically and fsynced on every save.

    Saves happen only when the term or the vote changes (a few times per
    election), so the fsync's milliseconds are paid rarely and never on the
    job path. The file names its node: a file copied from another node, or a
    data directory shared by two nodes, is refused instead of silently
    lending one node another's vote.
    """

    def __init__(self, path: str | os.PathLike[str], node_id: str) -> None:
        self.path = Path(path)
        self.node_id = node_id

    def load(self) -> HardState:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return HardState()
        except OSError as exc:
            raise RaftStateError(f"cannot read Raft state file {self.path}: {exc}") from None
        return _parse(text, self.path, self.node_id)

    def save(self, state: HardState) -> None:
        data = {
            "format": FORMAT,
            "node_id": self.node_id,
            "term": state.term,
            "voted_for": state.voted_for,
        }
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, json.dumps(data).encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # the rename itself must survive a power cut
        finally:
            os.close(dir_fd)


def _parse(text: str, path: Path, node_id: str) -> HardState:
    def bad(why: str) -> RaftStateError:
        return RaftStateError(
            f"Raft state file {path} is not valid: {why} (it holds this node's term and vote; "
            f"delete it only if this node has not voted in the current term)"
        )

    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise bad(f"not JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise bad(f"expected an object with format {FORMAT}")
    if data.get("node_id") != node_id:
        raise bad(f"it belongs to node {data.get('node_id')!r}, not {node_id!r}")
    term, vote = data.get("term"), data.get("voted_for")
    if type(term) is not int or term < 0:
        raise bad(f"term must be a non-negative integer, got {term!r}")
    if vote is not None and not isinstance(vote, str):
        raise bad(f"voted_for must be a node id or null, got {vote!r}")
    return HardState(term, vote)
