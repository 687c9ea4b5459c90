"""Raft leader election (no log), after etcd-io/raft's ``raft.go``.

Only the election half of Raft is needed: the cluster's durable state lives in
the Broker and the Store, and the leader's writes are fenced by an epoch taken
from the Broker. What Raft adds over Bully is that a leader needs a *majority*
of the voters, so a minority partition can never elect one, and terms give a
total order to leaderships.

Behaviour follows etcd (with ``PreVote`` and ``CheckQuorum`` on):

* Followers that hear nothing from a leader for a randomized timeout in
  [T, 2T) start a **pre-vote** for ``term + 1`` without changing their own
  term. Only if a majority would vote do they become candidates, bump the term
  and ask for real votes. A node cut off in a minority therefore never inflates
  its term, and cannot depose a stable leader when it comes back.
* Voters refuse (pre-)votes for a higher term while they are *in lease*:
  they heard from a leader less than T ago. A healthy cluster ignores one
  node's impatience.
* **CheckQuorum**: every T a leader counts the voters that answered its
  heartbeats since the last check; without a majority it steps down, so an
  isolated leader stops believing it leads.
* Heartbeats (empty AppendEntries) go out every ``heartbeat``; a heartbeat
  from an older term is answered with our term so a stale leader learns and
  steps down.

**Voting configuration.** The voters are a fixed configuration
(``CLUSTER_PEERS`` plus this node's own address in production), never the
failure detector's view: a view shrinks when nodes die or a partition
starts, and a quorum computed from it lets a minority elect (with 5 nodes,
a node restarted while 3 were unreachable would see a cluster of 2). The
quorum is a majority of the configuration whatever SWIM says. SWIM only tells
which node id is at which configured address (``key_of``); each configured
address holds one vote, so a node restarted under a new id cannot vote twice
for the same seat. A node outside the configuration gets heartbeats and
follows the leader, but its votes do not count and it gets no vote.
Changing the configuration means changing ``CLUSTER_PEERS`` on every node;
there is no joint consensus, so change it one node at a time.

**Durable term and vote.** ``term`` and ``votedFor`` are saved through a
:class:`~.raft_state.RaftStateStore` at the end of every input that changed
them, before the outputs are returned, so no vote or vote request leaves the
node before the state it depends on is on disk. A node restarted inside an
election reloads its vote and cannot vote twice in one term.

**CheckQuorum rounds.** Each CheckQuorum period is a numbered round; the
leader's heartbeats carry the round and responses echo it. Only responses to
this round's heartbeats count, so a response delayed past the check (sent
while the follower could still hear the leader, delivered after it stopped)
cannot keep an isolated leader in office for another period.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from typing import Literal

from .election import ElectionTiming
from .messages import (
    LeaderChanged,
    Message,
    Output,
    RaftHeartbeat,
    RaftHeartbeatResponse,
    RaftVote,
    RaftVoteResponse,
    Send,
)
from .raft_state import HardState, MemoryRaftState, RaftStateStore

RaftState = Literal["follower", "pre_candidate", "candidate", "leader"]


class RaftElection:
    """One node's Raft election state machine.

    ``peers`` with ``me`` form the voting configuration. By default they are
    node ids; with ``my_key`` and ``key_of`` they are addresses (``my_key``
    is this node's, ``key_of`` maps a node id to its address, or ``None``
    while unknown), which is how the cluster actor runs it: the configuration
    is ``CLUSTER_PEERS``, known before any node id is.
    """

    algorithm = "raft"

    def __init__(
        self,
        me: str,
        peers: Iterable[str],
        timing: ElectionTiming,
        rng: random.Random,
        *,
        pre_vote: bool = True,
        check_quorum: bool = True,
        my_key: str | None = None,
        key_of: Callable[[str], str | None] | None = None,
        state: RaftStateStore | None = None,
    ) -> None:
        self._me = me
        self._timing = timing
        self._rng = rng
        self._pre_vote = pre_vote
        self._check_quorum = check_quorum
        peers = tuple(peers)
        self._my_key = me if my_key is None else my_key
        self._key_of: Callable[[str], str | None] = key_of or _same
        self._configuration = frozenset({self._my_key, *peers})
        # Node ids to send to: the configured ids when keys are ids, else those
        # membership reports (the leader heartbeats non-voters too, so they follow).
        self._members: set[str] = {me, *peers} if key_of is None else {me}
        self._store = state if state is not None else MemoryRaftState()
        saved = self._store.load()
        self._saved = saved
        self._term = saved.term
        self._vote: str | None = saved.voted_for
        self._state: RaftState = "follower"
        self._lead: str | None = None
        self._votes: dict[str, bool] = {}
        self._recent_active: set[str] = {me}
        self._round = 0
        self._started = False
        # All times are absolute, in the caller's clock.
        self._election_reset_at = 0.0
        self._randomized_timeout = timing.timeout
        self._next_heartbeat = 0.0
        self._next_check_quorum = 0.0
        self._reported: tuple[str | None, int] = (None, self._term)
        self._out: list[Output] = []

    # ------------------------------------------------------------ properties

    @property
    def leader(self) -> str | None:
        return self._lead

    @property
    def term(self) -> int:
        return self._term

    @property
    def is_leader(self) -> bool:
        return self._state == "leader"

    @property
    def state(self) -> RaftState:
        return self._state

    @property
    def voted_for(self) -> str | None:
        return self._vote

    @property
    def configuration(self) -> frozenset[str]:
        """The voters' keys (addresses in production), this node's included."""
        return self._configuration

    @property
    def voters(self) -> frozenset[str]:
        """Node ids currently known to hold a seat in the configuration."""
        return frozenset(n for n in self._members if self._key(n) in self._configuration)

    @property
    def quorum(self) -> int:
        return len(self._configuration) // 2 + 1

    # ------------------------------------------------------------ inputs

    def tick(self, now: float) -> list[Output]:
        """Advance timers: heartbeats and CheckQuorum for a leader, the
        election timeout for everyone else."""
        self._ensure_started(now)
        if self._state == "leader":
            if now >= self._next_check_quorum:
                self._next_check_quorum = now + self._timing.timeout
                # The leader's own lease restarts with every check, as etcd's
                # electionElapsed does.
                self._election_reset_at = now
                if self._check_quorum:
                    if self._seats(self._recent_active) < self.quorum:
                        self._become_follower(now, self._term, None)
                    else:
                        self._recent_active = {self._me}
                        self._round += 1
                        # Open the new round at once: its window must hold heartbeats.
                        self._next_heartbeat = now
            if self._state == "leader" and now >= self._next_heartbeat:
                self._broadcast_heartbeat(now)
        elif now >= self._election_reset_at + self._randomized_timeout:
            self._election_reset_at = now
            self._campaign(now, pre=self._pre_vote)
        return self._flush()

    def step(self, sender: str, message: Message, now: float) -> list[Output]:
        """Handle one message from ``sender``; non-Raft messages are ignored."""
        self._ensure_started(now)
        if sender != self._me and isinstance(
            message, RaftVote | RaftVoteResponse | RaftHeartbeat | RaftHeartbeatResponse
        ):
            self._step(sender, message, now)
        return self._flush()

    def membership_changed(
        self, alive_ids: frozenset[str], now: float, left: frozenset[str] = frozenset()
    ) -> list[Output]:
        """Learn which node ids exist, to send to them; the quorum does not change.

        A newly seen node hears a heartbeat at once if we lead, so it does
        not start an election of its own.
        """
        self._ensure_started(now)
        new = sorted(set(alive_ids) - self._members - set(left))
        self._members |= set(new)
        self._members -= set(left) - {self._me}
        if self._state == "leader":
            for node in new:
                self._out.append(Send(node, RaftHeartbeat(self._term, self._round)))
        elif self._state in ("pre_candidate", "candidate"):
            # A voter's address may just have become known: its answer counts now.
            self._check_votes(now)
        return self._flush()

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (``None`` before the first
        call)."""
        if not self._started:
            return None
        if self._state == "leader":
            return min(self._next_heartbeat, self._next_check_quorum)
        return self._election_reset_at + self._randomized_timeout

    # ------------------------------------------------------------ internals

    def _key(self, node: str) -> str | None:
        return self._my_key if node == self._me else self._key_of(node)

    def _seats(self, nodes: Iterable[str]) -> int:
        """How many configured seats these node ids hold (one per key)."""
        keys = {self._key(n) for n in nodes}
        return len(keys & self._configuration)

    def _ensure_started(self, now: float) -> None:
        if not self._started:
            self._started = True
            self._reset(now, self._term)

    def _flush(self) -> list[Output]:
        saved = HardState(self._term, self._vote)
        if saved != self._saved:
            # Durable before anything that depends on it leaves the node.
            self._store.save(saved)
            self._saved = saved
        current = (self._lead, self._term)
        if current != self._reported and (self._lead is not None or self._reported[0] is not None):
            self._out.append(LeaderChanged(self._lead, self._term))
        self._reported = current
        out, self._out = self._out, []
        return out

    def _reset(self, now: float, term: int) -> None:
        if term != self._term:
            self._term = term
            self._vote = None
        self._lead = None
        self._election_reset_at = now
        # Randomized in [T, 2T) so that, after a split vote, one candidate
        # usually times out well before the others and wins the next term.
        self._randomized_timeout = self._timing.timeout * (1.0 + self._rng.random())
        self._votes = {}
        self._recent_active = {self._me}

    def _become_follower(self, now: float, term: int, lead: str | None) -> None:
        self._reset(now, term)
        self._lead = lead
        self._state = "follower"

    def _become_pre_candidate(self) -> None:
        # Like etcd: neither term nor vote changes, so a failed pre-vote
        # leaves no trace that could disrupt anyone.
        self._votes = {}
        self._lead = None
        self._state = "pre_candidate"

    def _become_candidate(self, now: float) -> None:
        self._reset(now, self._term + 1)
        self._vote = self._me
        self._state = "candidate"

    def _become_leader(self, now: float) -> None:
        self._reset(now, self._term)
        self._lead = self._me
        self._state = "leader"
        self._round += 1
        self._next_check_quorum = now + self._timing.timeout
        self._broadcast_heartbeat(now)

    def _broadcast_heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self._timing.heartbeat
        for node in sorted(self._members - {self._me}):
            self._out.append(Send(node, RaftHeartbeat(self._term, self._round)))

    def _campaign(self, now: float, *, pre: bool) -> None:
        if self._state == "leader":
            return
        if pre:
            self._become_pre_candidate()
            message = RaftVote(term=self._term + 1, pre_vote=True)
        else:
            self._become_candidate(now)
            message = RaftVote(term=self._term, pre_vote=False)
        self._votes[self._me] = True
        if self._check_votes(now):
            return
        for node in sorted(self.voters - {self._me}):
            self._out.append(Send(node, message))

    def _check_votes(self, now: float) -> bool:
        """Act on the tally; True if the campaign ended (won or lost)."""
        granted = self._seats(n for n, ok in self._votes.items() if ok)
        rejected = self._seats(n for n, ok in self._votes.items() if not ok)
        if granted >= self.quorum:
            if self._state == "pre_candidate":
                self._campaign(now, pre=False)
            else:
                self._become_leader(now)
            return True
        if rejected > len(self._configuration) - self.quorum:
            self._become_follower(now, self._term, None)
            return True
        return False

    def _step(
        self,
        sender: str,
        msg: RaftVote | RaftVoteResponse | RaftHeartbeat | RaftHeartbeatResponse,
        now: float,
    ) -> None:
        if isinstance(msg, RaftVote) and self._key(sender) not in self._configuration:
            # Not a voter here (or its address is not known yet): no vote, and
            # its term does not disrupt ours.
            self._out.append(Send(sender, RaftVoteResponse(self._term, False, msg.pre_vote)))
            return
        if msg.term > self._term:
            if isinstance(msg, RaftVote):
                in_lease = (
                    self._check_quorum
                    and self._lead is not None
                    and now - self._election_reset_at < self._timing.timeout
                )
                if in_lease:
                    # We heard from a live leader within the minimum timeout:
                    # this candidate is impatient or was cut off. Ignore it
                    # without even adopting its term.
                    return
            if isinstance(msg, RaftVote) and msg.pre_vote:
                pass  # a pre-vote never changes our term
            elif isinstance(msg, RaftVoteResponse) and msg.pre_vote and msg.granted:
                pass  # the term is bumped when the pre-vote wins
            else:
                lead = sender if isinstance(msg, RaftHeartbeat) else None
                self._become_follower(now, msg.term, lead)
        elif msg.term < self._term:
            if isinstance(msg, RaftHeartbeat):
                # A stale leader (e.g. back from a partition): tell it our
                # term so it steps down instead of heartbeating forever.
                self._out.append(Send(sender, RaftHeartbeatResponse(self._term, msg.round)))
            elif isinstance(msg, RaftVote) and msg.pre_vote:
                self._out.append(
                    Send(sender, RaftVoteResponse(self._term, granted=False, pre_vote=True))
                )
            return

        if isinstance(msg, RaftVote):
            self._handle_vote_request(sender, msg, now)
        elif self._state == "leader":
            if isinstance(msg, RaftHeartbeatResponse) and msg.round == self._round:
                self._recent_active.add(sender)
        elif self._state in ("pre_candidate", "candidate"):
            if isinstance(msg, RaftHeartbeat):
                self._become_follower(now, msg.term, sender)
                self._handle_heartbeat(sender, msg, now)
            elif isinstance(msg, RaftVoteResponse) and msg.pre_vote == (
                self._state == "pre_candidate"
            ):
                expected = self._term + 1 if msg.pre_vote else self._term
                if msg.granted and msg.term != expected:
                    return  # a grant left over from an earlier campaign
                self._votes.setdefault(sender, msg.granted)
                self._check_votes(now)
        elif isinstance(msg, RaftHeartbeat):
            self._handle_heartbeat(sender, msg, now)

    def _handle_vote_request(self, sender: str, msg: RaftVote, now: float) -> None:
        can_vote = (
            self._vote == sender
            or (self._vote is None and self._lead is None)
            or (msg.pre_vote and msg.term > self._term)
        )
        if can_vote:
            self._out.append(Send(sender, RaftVoteResponse(msg.term, True, msg.pre_vote)))
            if not msg.pre_vote:
                self._election_reset_at = now
                self._vote = sender
        else:
            self._out.append(Send(sender, RaftVoteResponse(self._term, False, msg.pre_vote)))

    def _handle_heartbeat(self, sender: str, msg: RaftHeartbeat, now: float) -> None:
        self._election_reset_at = now
        self._lead = sender
        self._out.append(Send(sender, RaftHeartbeatResponse(self._term, msg.round)))


def _same(node_id: str) -> str:
    return node_id
