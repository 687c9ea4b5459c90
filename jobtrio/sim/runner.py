"""Run a whole cluster in one trio run: real nodes, a simulated world, two phases.

Each simulated node is the production code: a ``Node`` (recorder,
dispatcher and workers, lease heartbeat, leader duties) whose elector is a
``ClusterActor`` driving the real SWIM and election state machines over a
:class:`~.network.SimTransport`. Only the world around them is simulated:
the clock (``MockClock``, autojumping, so idle time costs nothing), the
network, the shared Broker/Store (the memory backends, standing in for
Redis), the clients, and the nemesis that injects faults.

A run has the two phases of TigerBeetle's VOPR:

1. **Safety** (``duration`` simulated seconds): clients submit and cancel
   jobs while the nemesis partitions, crashes and restarts nodes, drops,
   duplicates and reorders messages and cuts nodes off from the Broker. The
   invariants that can break at any moment are checked as events happen.
2. **Liveness**: every fault is healed and every crashed node restarted;
   then all live nodes must agree on one acting leader within
   ``converge_within``, and every acknowledged job must reach a terminal
   state within ``drain_within``. Lost, unexpected and unfinished jobs are
   judged at the end (:mod:`.checker`).

A crash cancels the node's scope: its actors die without their graceful
stop (no drain, no leave, no final flush), its leases are left to expire,
and a restart builds a fresh ``Node`` with the same id, empty memory and a
new generation of seeds, on the same shared Broker and Store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import trio
import trio.testing

from ..actors.cluster import ClusterActor, ClusterConfig
from ..actors.node import JobNotFound, Node
from ..backends.memory import MemoryStore
from ..cluster.election import ElectionTiming
from ..cluster.raft_state import MemoryRaftState
from ..config import ELECTION_ALGORITHMS, Settings
from ..schedules import Schedule, validate_schedule
from .backends import BackendFaults, BrokerLink, Connection, ObservedBroker, StoreLink
from .checker import check_end
from .determinism import EPOCH, derive, deterministic_scheduling, rng, seeded_tokens
from .history import History, Violation
from .network import PARTITIONS, NetworkFaults, SimNetwork, address_of
from .observed_election import ObservedElection
from .plants import PLANTS, SwimQuorumRaft
from .trace import Trace
from .workload import Client, ClientConfig, NodeDown, sim_registry

FAULT_KINDS = (
    "partition",
    "crash",
    "loss",
    "dup",
    "reorder",
    "broker",
    "store",
    "reply-loss",
    "pause",
    "skew",
    "election-restart",
    "candidate-restart",
    "lent-claim-loss",
)
#: ``skew`` (each node's wall clock off by up to ``MAX_SKEW``) is opt-in: it changes every
#: lease and timestamp of a run, so seeds replay differently with and without it.
#: ``candidate-restart`` is opt-in too: elections take much longer under it.
DEFAULT_FAULTS = (
    "partition",
    "crash",
    "loss",
    "dup",
    "reorder",
    "broker",
    "store",
    "reply-loss",
    "pause",
    "election-restart",
    "lent-claim-loss",
)
#: Faults not drawn by the nemesis's timer: ``skew`` is set at start,
#: ``election-restart`` strikes when a Raft node votes or asks for votes (it
#: crashes then and restarts within the election timeout, inside the election), and
#: ``lent-claim-loss`` when a node's group commit makes a lent claim.
_EVENT_FAULTS = ("skew", "election-restart", "candidate-restart", "lent-claim-loss")
#: Under ``lent-claim-loss``, the chance that the reply to a lent claim is lost during
#: the safety phase (whatever ``reply-loss`` does): every run then has lent claims whose
#: leases the node must hand back, not only those that meet a ``reply-loss`` window.
LENT_CLAIM_LOSS = 0.1
#: Chance that a real vote granted crashes the voter, and that a real vote request
#: crashes the candidate (lower: with every candidate crashing, a 5-node cluster
#: rarely elects anyone; ``candidate-restart`` makes it 1).
ELECTION_RESTART_CHANCE = {"voter": 1.0, "candidate": 0.2}
#: How long (s) such a node stays down: back within the election it voted in.
ELECTION_RESTART_DOWN = (0.01, 0.2)
#: The simulated lease (``JOB_LEASE``): short, so a run sees many expire.
JOB_LEASE = 2.0
#: Each node's clock is off by up to this much either way: three leases, so a
#: leader ahead and a worker behind differ by six.
MAX_SKEW = 3 * JOB_LEASE
#: Finished jobs are purged this long after they end (``FINISHED_JOB_TTL``), and the
#: leader purges and reconciles every ``HOUSEKEEPING`` seconds, looking at records
#: untouched for ``RECONCILE_SETTLE``: a short run purges and reconciles many times.
FINISHED_JOB_TTL = 1.0
HOUSEKEEPING = 1.0
RECONCILE_SETTLE = 2.0
#: The periodic schedules every run fires (stored at start, deleted when the faults
#: heal so that the Store can settle): name -> interval in seconds.
SCHEDULES = {"tick-1s": 1.0, "tick-2s": 2.0}
#: The longest extra delay (s) a message gets while ``reorder`` is on: long enough for
#: two candidates' vote requests to cross, which is when a voter's memory matters.
REORDER_MAX = 1.0
#: How many of the nemesis's pauses and crashes strike the leader rather than any node.
PAUSE_LEADER = 0.7
CRASH_LEADER = 0.8


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int
    nodes: int = 5
    algorithm: str = "raft"
    #: Simulated seconds of the safety phase (faults at random).
    duration: float = 30.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    #: After healing: all live nodes agree on one acting leader within this.
    converge_within: float = 30.0
    #: After healing: every acknowledged job is terminal within this.
    drain_within: float = 90.0
    clients: int = 2
    workers: int = 3
    plant: str | None = None
    #: Count known limitations as violations (``History.known_issue``; none today).
    strict: bool = False
    #: End the run at the first violation of one of these invariants, without the
    #: end-of-run checks (a planted bug's test needs only to see it caught; the trace
    #: up to there is the same).
    stop_at: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.algorithm not in ELECTION_ALGORITHMS:
            raise ValueError(f"algorithm must be one of {', '.join(ELECTION_ALGORITHMS)}")
        if not 1 <= self.nodes <= 50:
            raise ValueError("nodes must be from 1 to 50")
        # (not a < b <= c: NaN fails every comparison, so it is caught too)
        if not 0 < self.duration <= 3600:
            raise ValueError(f"duration must be over 0 and at most 3600 s, not {self.duration}")
        if not 0 <= self.clients <= 50:
            raise ValueError(f"clients must be from 0 to 50, not {self.clients}")
        if not 1 <= self.workers <= 100:
            raise ValueError(f"workers must be from 1 to 100, not {self.workers}")
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if self.plant is not None and self.plant not in PLANTS:
            raise ValueError(f"plant must be one of {', '.join(PLANTS)}")
        if self.plant in ("raft-amnesia", "raft-minority") and self.algorithm != "raft":
            raise ValueError(f"the {self.plant} plant needs --algorithm raft")

    def replay_command(self) -> str:
        parts = [
            "jobtrio sim",
            f"--seed {self.seed}",
            f"--nodes {self.nodes}",
            f"--algorithm {self.algorithm}",
            f"--duration {self.duration:g}",
            f"--faults {','.join(self.faults) or 'none'}",
        ]
        defaults = {f.name: f.default for f in dataclasses.fields(SimConfig)}
        if self.clients != defaults["clients"]:
            parts.append(f"--clients {self.clients}")
        if self.workers != defaults["workers"]:
            parts.append(f"--workers {self.workers}")
        if self.plant:
            parts.append(f"--plant {self.plant}")
        if self.strict:
            parts.append("--strict")
        return " ".join(parts)


@dataclass(slots=True)
class SimResult:
    config: SimConfig
    trace_digest: str
    violations: list[Violation]
    known_issues: list[Violation]
    jobs_submitted: int
    jobs_acknowledged: int
    jobs_completed: int
    jobs_lost: int
    simulated_seconds: float
    wall_seconds: float
    events: int
    faults: dict[str, int]
    network: dict[str, int]
    converged_after: float | None
    drained_after: float | None
    trace_tail: list[str] = field(default_factory=list)
    trace_lines: list[str] | None = None
    #: Jobs enqueued with ``depends_on`` (chain steps, chord callbacks), and how many of
    #: them were claimed (ran) at least once.
    jobs_dependent: int = 0
    jobs_dependent_ran: int = 0

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_json(self) -> dict[str, Any]:
        return {
            "seed": self.config.seed,
            "algorithm": self.config.algorithm,
            "nodes": self.config.nodes,
            "duration": self.config.duration,
            "faults": list(self.config.faults),
            "plant": self.config.plant,
            "ok": self.ok,
            "trace_digest": self.trace_digest,
            "violations": [v.to_dict() for v in self.violations],
            "known_issues": [v.to_dict() for v in self.known_issues],
            "jobs_submitted": self.jobs_submitted,
            "jobs_acknowledged": self.jobs_acknowledged,
            "jobs_completed": self.jobs_completed,
            "jobs_lost": self.jobs_lost,
            "jobs_dependent": self.jobs_dependent,
            "jobs_dependent_ran": self.jobs_dependent_ran,
            "simulated_seconds": round(self.simulated_seconds, 3),
            "wall_seconds": round(self.wall_seconds, 3),
            "events": self.events,
            "fault_counts": self.faults,
            "network": self.network,
            "converged_after": _round(self.converged_after),
            "drained_after": _round(self.drained_after),
            "replay": self.config.replay_command(),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


@dataclass(slots=True)
class NodeSlot:
    node_id: str
    generation: int = 0
    node: Node | None = None
    connection: Connection | None = None
    scope: trio.CancelScope | None = None
    up: bool = False
    #: Raft's term and vote, on a disk that outlives every generation of the node.
    disk: MemoryRaftState = field(default_factory=MemoryRaftState)


class Simulation:
    def __init__(self, config: SimConfig, *, full_trace: bool = False) -> None:
        self.config = config
        self.seed = config.seed
        self.trace = Trace(full=full_trace)
        self.history = History(self.trace, strict=config.strict)
        if config.stop_at:
            self.history.on_violation = self._stop
        self.broker = ObservedBroker(
            self.history, tokens=seeded_tokens(config.seed), clock=self.wall
        )
        if config.plant == "fencing":
            self.broker.check_fencing = False
        elif config.plant == "lease-tokens":
            self.broker.check_lease_tokens = False
        elif config.plant == "resurrect":
            # the purge records a job before it lets it go, so no record of a purged job
            # stays live: reconciliation finds nothing to resurrect unless that is off too
            self.broker.fenced_restore = False
            self.broker.record_before_purge = False
        elif config.plant == "two-clocks":
            self.broker.broker_clock = False
        elif config.plant == "dependencies-early":
            self.broker.check_dependencies = False
        elif config.plant == "due-early":
            self.broker.claim_early = 2.0
        self.history.raft_voters = config.nodes
        self.backend_faults = BackendFaults(lent_rng=rng(config.seed, "lent-claim-loss"))
        self.store = MemoryStore()
        self.node_ids = [f"n{i}" for i in range(1, config.nodes + 1)]
        self.network = SimNetwork(self.node_ids, self.seed, self.trace)
        self.registry = sim_registry()
        self.slots = {n: NodeSlot(n) for n in self.node_ids}
        self.settings_base = Settings(
            worker_count=config.workers,
            election_algorithm=config.algorithm,
            election_timeout=1.0,
            election_interval=0.25,
            cluster_port=7946,
            cluster_size=config.nodes,
            job_lease=JOB_LEASE,
            poison_limit=5,
            shutdown_grace=1.0,
            retry_base_delay=0.2,
            retry_max_delay=2.0,
            max_retries=3,
            dispatch_batch=10,
            finished_job_ttl=FINISHED_JOB_TTL,
            metrics_enabled=False,
        )
        self.converged_after: float | None = None
        self.ended_at = 0.0
        self.drained_after: float | None = None
        self._nursery: trio.Nursery | None = None
        #: The safety phase's nursery (None outside it): faults start only there.
        self._chaos: trio.Nursery | None = None
        self._election_restarts = rng(self.seed, "election-restart")
        self._election_restart_pending = False
        self._knob_tokens: dict[str, int] = {}
        #: The run ended early, at a violation it was told to stop at (``stop_at``).
        self.stopped = False

    # -- the world's clock, as nodes see it ---------------------------------------------
    @staticmethod
    def wall() -> float:
        return EPOCH + trio.current_time()

    def _node_clock(self, node_id: str, generation: int) -> Callable[[], float]:
        """The node's wall clock: the world's, off by a fixed skew when ``skew`` is on."""
        if "skew" not in self.config.faults:
            return self.wall
        offset = rng(self.seed, "skew", node_id, generation).uniform(-MAX_SKEW, MAX_SKEW)
        return lambda: EPOCH + trio.current_time() + offset

    # -- nodes ----------------------------------------------------------------------------
    def _settings(self, node_id: str) -> Settings:
        return self.settings_base.replace(
            node_id=node_id,
            cluster_advertise=address_of(node_id),
            cluster_peers=tuple(address_of(n) for n in self.node_ids),
        )

    def start_node(self, node_id: str) -> None:
        assert self._nursery is not None
        slot = self.slots[node_id]
        slot.generation += 1
        gen = slot.generation
        settings = self._settings(node_id)
        transport = self.network.attach(node_id)
        cluster = ClusterActor(
            ClusterConfig(
                node_id=node_id,
                advertise=settings.advertise,
                seeds=tuple(a for a in settings.cluster_peers if a != settings.advertise),
                algorithm=settings.election_algorithm,
                election_timeout=settings.election_timeout,
                election_interval=settings.election_interval,
                api_url=f"http://{node_id}.sim:8080",
                worker_count=settings.worker_count,
            ),
            transport,
            rng=rng(self.seed, "cluster", node_id, gen),
            # The node's disk: what it saved survives the crash (unless the plant wipes it).
            raft_state=MemoryRaftState() if self.config.plant == "raft-amnesia" else slot.disk,
        )
        if self.config.plant == "raft-minority":
            cluster.election = SwimQuorumRaft(
                node_id,
                cluster.election.configuration,  # type: ignore[attr-defined]
                ElectionTiming.from_settings(settings.election_timeout, settings.election_interval),
                rng(self.seed, "plant", node_id, gen),
                my_key=settings.advertise,
                key_of=cluster.swim.address_of,
                state=slot.disk,
            )
        cluster.election = ObservedElection(
            cluster.election,
            node_id,
            self.history,
            lambda role: self._election_restart(node_id, role),
        )
        connection = Connection(
            node_id, rng(self.seed, "connection", node_id, gen), self.backend_faults, self._nursery
        )
        node = Node(
            settings,
            BrokerLink(
                self.broker,
                connection,
                split_ticks=self.config.plant == "tick-at-most-once",
                # every other node makes a lent claim with its enqueue in one move, as on
                # Redis; the others in two, as the Broker's default (memory, SQLite)
                one_move_enqueue_claim=self.node_ids.index(node_id) % 2 == 0,
                hand_back_sees_lent=self.config.plant != "no-hand-back",
            ),
            StoreLink(self.store, connection),
            self.registry,
            clock=self._node_clock(node_id, gen),
            rng=rng(self.seed, "node", node_id, gen),
            cluster=cluster,
        )
        node.duties.housekeeping_every = HOUSEKEEPING
        node.duties.reconcile_settle = RECONCILE_SETTLE
        slot.node, slot.connection, slot.up = node, connection, True
        slot.scope = trio.CancelScope()
        self.trace.record("node.start", node_id, gen, f"{node.clock() - self.wall():+.6f}")
        self._nursery.start_soon(self._run_node, slot, node, slot.scope)

    async def _run_node(self, slot: NodeSlot, node: Node, scope: trio.CancelScope) -> None:
        with scope:
            try:
                await node.run()
            except Exception as exc:  # a node must never die of its own accord
                self.history.violate(
                    "nodes_do_not_die", trio.current_time(), f"{slot.node_id} died: {exc!r}"
                )
                self._down(slot)

    def _down(self, slot: NodeSlot) -> None:
        slot.up = False
        if slot.connection is not None:
            self.thaw(slot.node_id, slot.connection)
            slot.connection.close()
        self.network.detach(slot.node_id)

    def crash(self, node_id: str) -> None:
        slot = self.slots[node_id]
        if not slot.up:
            return
        self.trace.record("fault.crash", node_id, slot.generation)
        self.history.fault("crash")
        assert slot.scope is not None
        slot.scope.cancel()
        self._down(slot)

    def restart(self, node_id: str) -> None:
        if not self.slots[node_id].up:
            self.trace.record("heal.restart", node_id)
            self.history.restarts.append((trio.current_time(), node_id))
            self.start_node(node_id)

    def _election_restart(self, node_id: str, role: str) -> None:
        """Maybe crash a node that just voted or asked for votes, and restart it
        within the election timeout: its vote must survive (Raft's durable
        state), or the term can get a second leader. One at a time."""
        chaos = self._chaos
        faults = self.config.faults
        if role == "candidate" and "candidate-restart" in faults:
            chance = 1.0
        elif "election-restart" in faults:
            chance = ELECTION_RESTART_CHANCE[role]
        else:
            return
        if chaos is None:
            return
        r = self._election_restarts
        if self._election_restart_pending or r.random() >= chance:
            return
        self._election_restart_pending = True
        down_for = r.uniform(*ELECTION_RESTART_DOWN)
        self.trace.record("fault.election-restart", node_id, f"{down_for:.3f}")
        self.history.fault("election-restart")

        async def crash_and_restart() -> None:
            await trio.sleep(0)  # after the vote left: the actor sends it on return
            self.crash(node_id)
            await trio.sleep(down_for)
            self._election_restart_pending = False
            self.restart(node_id)

        chaos.start_soon(crash_and_restart)

    def up_nodes(self) -> list[str]:
        return [n for n in self.node_ids if self.slots[n].up]

    # -- clients ------------------------------------------------------------------------------
    async def call(self, node_id: str, op: str, arg: Any) -> Any:
        """One request from a client to a node, over a client link with its own latency."""
        slot = self.slots[node_id]
        if not slot.up or slot.node is None:
            raise NodeDown(node_id)
        node = slot.node
        await trio.sleep(0.001)
        if slot.node is not node or not slot.up:
            raise NodeDown(node_id)
        if op == "submit":
            result = await node.submit(arg)
        elif op == "cancel":
            try:
                result = await node.cancel(arg)
            except JobNotFound:
                if arg in self.broker.purged:
                    # purged, yet no record: the leader writes the record before the purge
                    self.history.violate(
                        "store_has_every_job",
                        trio.current_time(),
                        f"cancel of acknowledged job {arg} on {node_id}: not found (purged "
                        f"{self.broker.purged[arg]}, no record of it in the Store)",
                    )
                else:
                    self.history.violate(
                        "no_lost_jobs",
                        trio.current_time(),
                        f"cancel of acknowledged job {arg} on {node_id}: not found",
                    )
                raise NodeDown(node_id) from None
        else:
            raise ValueError(op)
        await trio.sleep(0.001)
        if slot.node is not node or not slot.up:
            raise NodeDown(node_id)  # the reply was lost with the node
        return result

    # -- the nemesis --------------------------------------------------------------------------
    def _knob(self, name: str) -> int:
        """A token so that only the latest fault on a knob heals it."""
        self._knob_tokens[name] = self._knob_tokens.get(name, 0) + 1
        return self._knob_tokens[name]

    async def _later(self, delay: float, fn: Callable[[], None]) -> None:
        await trio.sleep(delay)
        fn()

    async def nemesis(self, r: random.Random, nursery: trio.Nursery) -> None:
        kinds = tuple(k for k in self.config.faults if k not in _EVENT_FAULTS)
        if not kinds:
            await trio.sleep_forever()
        net = self.network
        while True:
            await trio.sleep(r.uniform(0.5, 3.0))
            kind = r.choice(kinds)
            self.history.fault(kind)
            if kind == "partition":
                if net.partition is not None:
                    net.heal_partition()
                    continue
                shape = r.choice(PARTITIONS)
                name, links = shape(self.node_ids, r)
                net.partition_links(name, links)
                token = self._knob("partition")

                def heal(token: int = token) -> None:
                    if self._knob_tokens["partition"] == token:
                        net.heal_partition()

                nursery.start_soon(self._later, r.uniform(1.0, 8.0), heal)
            elif kind == "crash":
                up = self.up_nodes()
                if len(up) <= 1:
                    continue
                leader = self.history.epochs.get(self.broker.epoch)
                victim = leader if leader in up and r.random() < CRASH_LEADER else r.choice(up)
                self.crash(victim)
                nursery.start_soon(
                    self._later, r.uniform(0.5, 8.0), lambda v=victim: self.restart(v)
                )
            elif kind == "store":
                up = self.up_nodes()
                if not up:
                    continue
                victim = r.choice(up)
                conn = self.slots[victim].connection
                assert conn is not None
                if r.random() < 0.5:
                    conn.store_cut = True
                    self.trace.record("fault.store", victim, "cut")
                else:
                    conn.store_lag = r.uniform(1.0, 6.0)
                    self.trace.record("fault.store", victim, f"lag {conn.store_lag:.3f}")

                def store_back(conn: Connection = conn, victim: str = victim) -> None:
                    if conn.store_cut or conn.store_lag:
                        conn.store_cut, conn.store_lag = False, 0.0
                        self.trace.record("heal.store", victim)

                nursery.start_soon(self._later, r.uniform(0.5, 6.0), store_back)
            elif kind == "reply-loss":
                loss = r.uniform(0.05, 0.3)
                self.backend_faults.reply_loss = loss
                self.trace.record("fault.reply-loss", f"{loss:.3f}")
                token = self._knob("reply-loss")

                def replies_back(token: int = token) -> None:
                    if self._knob_tokens["reply-loss"] == token:
                        self.backend_faults.reply_loss = 0.0
                        self.trace.record("heal.reply-loss")

                nursery.start_soon(self._later, r.uniform(1.0, 6.0), replies_back)
            elif kind == "pause":
                up = self.up_nodes()
                leader = self.history.epochs.get(self.broker.epoch)
                if leader in up and r.random() < PAUSE_LEADER:
                    victim = leader
                elif up:
                    victim = r.choice(up)
                else:
                    continue
                self.pause(victim, r.uniform(1.0, 5.0), nursery)
            elif kind == "broker":
                up = self.up_nodes()
                if not up:
                    continue
                victim = r.choice(up)
                conn = self.slots[victim].connection
                assert conn is not None
                conn.cut = True
                self.trace.record("fault.broker", victim)

                def reconnect(conn: Connection = conn, victim: str = victim) -> None:
                    if conn.cut:
                        conn.cut = False
                        self.trace.record("heal.broker", victim)

                nursery.start_soon(self._later, r.uniform(0.5, 5.0), reconnect)
            else:
                attr = {"loss": "loss", "dup": "duplicate", "reorder": "reorder"}[kind]
                value = r.uniform(0.05, 0.4) if kind != "reorder" else r.uniform(0.01, REORDER_MAX)
                setattr(net.faults, attr, value)
                self.trace.record(f"fault.{kind}", f"{value:.3f}")
                token = self._knob(kind)

                def reset(attr: str = attr, kind: str = kind, token: int = token) -> None:
                    if self._knob_tokens[kind] == token:
                        setattr(net.faults, attr, 0.0)
                        self.trace.record(f"heal.{kind}")

                nursery.start_soon(self._later, r.uniform(1.0, 6.0), reset)

    def pause(self, node_id: str, seconds: float, nursery: trio.Nursery) -> None:
        """Freeze a node as SIGSTOP would: no message in or out, and its Broker and
        Store requests held until it thaws, when they all land late."""
        slot = self.slots[node_id]
        conn = slot.connection
        if conn is None or conn.frozen is not None:
            return
        thawed = trio.Event()
        conn.frozen = thawed
        self.network.freeze(node_id)
        self.trace.record("fault.pause", node_id, f"{seconds:.3f}")

        def thaw(conn: Connection = conn) -> None:
            self.thaw(node_id, conn)

        nursery.start_soon(self._later, seconds, thaw)

    def thaw(self, node_id: str, conn: Connection) -> None:
        if conn.frozen is not None:
            conn.frozen.set()
            conn.frozen = None
            self.network.thaw(node_id)

    def schedule(self, name: str, every: float) -> Schedule:
        """A periodic schedule as an operator would store it through the API."""
        return validate_schedule(
            {
                "name": name,
                "every": every,
                "job": {"type": "quick", "payload": {"n": 0, "seconds": 0.05}},
            },
            self.wall(),
        )

    def heal_all(self) -> None:
        self.network.heal_partition()
        self.network.faults = NetworkFaults()
        self.backend_faults.reply_loss = 0.0
        self.backend_faults.lent_claim_loss = 0.0
        for name in list(self._knob_tokens):
            self._knob(name)  # orphan pending heals
        for slot in self.slots.values():
            if slot.connection is not None:
                slot.connection.cut = False
                slot.connection.store_cut = False
                slot.connection.store_lag = 0.0
                self.thaw(slot.node_id, slot.connection)
        for node_id in self.node_ids:
            self.restart(node_id)
        self.trace.record("heal.all")

    # -- the run ---------------------------------------------------------------------------------
    async def main(self) -> None:
        config = self.config
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self.network.run)
            for name, every in SCHEDULES.items():
                await self.store.put_schedule(self.schedule(name, every).to_dict())
            for node_id in self.node_ids:
                self.start_node(node_id)
            # phase 1: safety, faults at random while clients work
            async with trio.open_nursery() as chaos:
                self._chaos = chaos
                for i in range(config.clients):
                    client = Client(
                        f"c{i + 1}",
                        self.history,
                        rng(self.seed, "client", i),
                        lambda: self.node_ids,
                        self.call,
                        self.wall,
                        ClientConfig(),
                        deps=rng(self.seed, "deps", i),
                    )
                    chaos.start_soon(client.run)
                chaos.start_soon(self.nemesis, rng(self.seed, "nemesis"), chaos)
                if "lent-claim-loss" in config.faults:
                    self.backend_faults.lent_claim_loss = LENT_CLAIM_LOSS
                await trio.sleep(config.duration)
                chaos.cancel_scope.cancel()
            self._chaos = None
            # phase 2: liveness, everything healed
            healed_at = trio.current_time()
            self.trace.record("phase", "liveness")
            self.heal_all()
            for name in SCHEDULES:  # the ticks stop, so that the Store can settle
                await self.store.delete_schedule(name)
            await self._converge(healed_at)
            await self._drain(healed_at)
            await self._settle_store()
            self.ended_at = trio.current_time()
            self.trace.record("phase", "end")
            nursery.cancel_scope.cancel()
        self._nursery = None

    def _stop(self, violation: Violation) -> None:
        if violation.invariant not in self.config.stop_at:
            return
        self.stopped = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def livelocked(self, task: str, steps: int) -> None:
        now = trio.current_time()
        self.history.violate(
            "no_livelock",
            now,
            f"simulated time stuck at {now:.6f}s for {steps} task steps (last: {task})",
        )
        self.ended_at = now
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    def leader_agreed(self) -> str | None:
        """The one acting leader every live node names, if there is one."""
        nodes = [self.slots[n].node for n in self.up_nodes()]
        views = {node.leadership.view.leader_id for node in nodes if node is not None}
        if len(views) != 1:
            return None
        (leader,) = views
        if leader is None or not self.slots[leader].up:
            return None
        node = self.slots[leader].node
        assert node is not None
        if node.leadership.view.epoch != self.broker.epoch:
            return None
        return leader

    async def _converge(self, since: float) -> None:
        deadline = since + self.config.converge_within
        while trio.current_time() < deadline:
            leader = self.leader_agreed()
            if leader is not None:
                self.converged_after = trio.current_time() - since
                self.trace.record("converged", leader, self.broker.epoch)
                return
            await trio.sleep(0.05)
        views = {
            n: (s.node.leadership.view.leader_id if s.node else None)
            for n, s in self.slots.items()
            if s.up
        }
        self.history.violate(
            "leader_after_heal",
            trio.current_time(),
            f"no single acting leader {self.config.converge_within:g}s after healing: "
            f"views {views}, broker epoch {self.broker.epoch} held by "
            f"{self.history.epochs.get(self.broker.epoch)}",
        )

    def store_lag(self) -> list[str]:
        """Jobs whose Store record does not show the Broker's state."""
        store = self.store.view()
        return [
            job_id
            for job_id, status in sorted(self.broker.status.items())
            if job_id not in store or store[job_id].status != status
        ]

    async def _settle_store(self) -> None:
        """Wait for the Store to catch up with the Broker.

        Recorders write within moments; a snapshot lost with a crashed node is
        repaired by the leader's reconcile (records untouched for
        ``RECONCILE_SETTLE``), or, for a job with no record at all, by the
        leader's purge, which writes a finished job to the Store before it
        lets it go (``FINISHED_JOB_TTL`` after it ended): wait up to 100 s.
        """
        await trio.sleep(1.0)
        deadline = trio.current_time() + 100.0
        while self._store_may_catch_up() and trio.current_time() < deadline:
            await trio.sleep(1.0)

    def _store_may_catch_up(self) -> bool:
        """Some record lags and something can still repair it: a recorder with
        snapshots to write, reconciliation (which moves a stale record forward), or
        the purge (which writes a finished job the Store lacks before letting it go)."""
        lagging = self.store_lag()
        if not lagging:
            return False
        store, held = self.store.view(), self.broker.view()
        if any(job_id in store or job_id in held and held[job_id].terminal for job_id in lagging):
            return True
        return any(s.node.recorder.backlog for s in self.slots.values() if s.up and s.node)

    async def _drain(self, since: float) -> None:
        """At-least-once means every acknowledged job ends; the Broker is where it ends first."""
        deadline = since + self.config.drain_within
        acked = self.history.acked()
        while True:
            status = self.broker.status
            open_ = [i for i in acked if i not in status or not status[i].terminal]
            if not open_:
                self.drained_after = trio.current_time() - since
                self.trace.record("drained")
                return
            if trio.current_time() >= deadline:
                return  # the checker names what is left
            await trio.sleep(0.25)


class _Watchdog(trio.abc.Instrument):
    """Stops a run whose simulated time no longer moves while tasks keep stepping.

    Under an autojumping MockClock a task that loops without ever sleeping
    (a livelock: a retry without backoff, a wake-up that re-arms itself)
    freezes the simulated world and would hang the run, and CI, forever.
    """

    def __init__(self, sim: Simulation, limit: int = 100_000) -> None:
        self._sim = sim
        self._limit = limit
        self._at = -1.0
        self._steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        now = trio.current_time()
        if now != self._at:
            self._at, self._steps = now, 0
            return
        self._steps += 1
        if self._steps == self._limit:
            self._sim.livelocked(task.name, self._limit)


@contextlib.contextmanager
def _quiet_logs(history: History) -> Iterator[None]:
    """Keep the nodes' expected warnings off the terminal; an actor crash is a violation."""

    class _ActorCrash(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            try:
                now = trio.current_time()
            except RuntimeError:
                now = math.nan
            history.violate("actors_do_not_crash", now, record.getMessage())

    root = logging.getLogger("jobtrio")
    supervisor = logging.getLogger("jobtrio.supervisor")
    handler = _ActorCrash(logging.ERROR)
    saved = (root.level, root.propagate)
    root.setLevel(logging.ERROR)
    root.propagate = False
    supervisor.addHandler(handler)
    try:
        yield
    finally:
        supervisor.removeHandler(handler)
        root.setLevel(saved[0])
        root.propagate = saved[1]


def run(config: SimConfig, *, full_trace: bool = False) -> SimResult:
    """Run one seed to the end and judge it."""
    sim = Simulation(config, full_trace=full_trace)
    clock = trio.testing.MockClock(autojump_threshold=0)
    started = time.perf_counter()
    with (
        deterministic_scheduling(config.seed),
        _quiet_logs(sim.history),
    ):
        sim.trace.record("sim", config.replay_command(), derive(config.seed, "check"))
        trio.run(sim.main, clock=clock, instruments=[_Watchdog(sim)])
        simulated = clock.current_time()
        if not sim.stopped:
            check_end(sim)
    wall = time.perf_counter() - started
    snapshot = sim.broker.snapshot()
    acked = sim.history.acked()
    lost = sum(1 for i in acked if i not in snapshot and i not in sim.broker.purged)
    return SimResult(
        config=config,
        trace_digest=sim.trace.digest,
        violations=list(sim.history.violations),
        known_issues=list(sim.history.known),
        jobs_submitted=len(sim.history.client_jobs),
        jobs_acknowledged=len(acked),
        jobs_completed=sum(1 for status in sim.broker.status.values() if status == "completed"),
        jobs_lost=lost,
        simulated_seconds=simulated,
        wall_seconds=wall,
        events=sim.trace.events,
        faults=dict(sorted(sim.history.faults.items())),
        network=dict(vars_of(sim.network.stats)),
        converged_after=sim.converged_after,
        drained_after=sim.drained_after,
        jobs_dependent=len(sim.broker.dependents),
        jobs_dependent_ran=len(sim.broker.dependents_ran),
        trace_tail=list(sim.trace.tail),
        trace_lines=sim.trace.lines,
    )


def vars_of(obj: object) -> Sequence[tuple[str, int]]:
    return [(name, getattr(obj, name)) for name in obj.__slots__]  # type: ignore[attr-defined]
