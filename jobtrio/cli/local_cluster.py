"""``jobtrio cluster up|down|kill|restart|ps|drill``: a real cluster on this machine.

    jobtrio cluster up --nodes 3 --algorithm raft     # Ctrl-C stops it all
    jobtrio cluster kill leader                       # from another shell
    jobtrio cluster restart node-2
    jobtrio cluster ps
    jobtrio cluster down
    jobtrio cluster drill                              # failover of every algorithm, timed

The same cluster for users without Docker, and what the docs' walkthrough
uses. The processes and the state file are ``jobtrio.localcluster``'s; this
module is the commands and what they print. They stand alone:
``LOCAL_CLUSTER_COMMANDS`` joins them to the ``jobtrio cluster`` group beside
``status`` (cluster.py), which talks to a node instead.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..config import ELECTION_ALGORITHMS
from ..durations import format_duration
from ..localcluster import (
    ClusterFailure,
    ClusterState,
    NodeOptions,
    NodeSpec,
    ProcessRef,
    agreed_leader,
    election_view,
    grace_seconds,
    http,
    live_nodes,
    load_state,
    locked,
    new_secret,
    plan_nodes,
    require_state,
    save_state,
    start_node,
    start_redis,
    state_path,
    stop_cluster,
    stop_processes,
)
from .exits import EXIT_FAILURE, EXIT_OK, Failure
from .output import err, out, print_json
from .params import DURATION

DEFAULT_DATA_DIR = "jobtrio-cluster"


def data_dir_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--data-dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=DEFAULT_DATA_DIR,
        show_default=True,
        envvar="JOBTRIO_CLUSTER_DIR",
        help="The cluster's folder: state, logs, Redis data [env: JOBTRIO_CLUSTER_DIR].",
    )(fn)


def _fail(exc: ClusterFailure) -> Failure:
    return Failure(str(exc))


class Supervisor:
    """The ``cluster up`` process: starts everything, watches it, stops it all on a signal."""

    def __init__(self, state: ClusterState, say: Callable[[str], None]) -> None:
        self.state = state
        self.say = say
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.signals = 0
        self.leader: str | None = None
        self._known: dict[str, tuple[int, float] | None] = {}

    # -- signals ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum: int, frame: object) -> None:
        self.signals += 1

    @property
    def stopping(self) -> bool:
        return self.signals > 0

    # -- lifecycle -------------------------------------------------------------------

    def start(self, redis_given: str | None) -> None:
        data_dir = Path(self.state.data_dir)
        if redis_given is None:
            proc, url = start_redis(data_dir)
            self.children[proc.pid] = proc
            self.state.redis = ProcessRef.of(proc.pid)
            self.state.redis_url = url
        else:
            self.state.redis_url = redis_given
        self._save()
        for node in self.state.nodes:
            proc = start_node(self.state, node)
            self.children[proc.pid] = proc
        self._save()
        self._remember()

    def wait_for_leader(self, timeout: float) -> str | None:
        """The agreed leader, or None if a signal came first; ClusterFailure on timeout."""
        deadline = time.monotonic() + timeout
        while not self.stopping:
            self.reap()
            for node in self.state.nodes:
                if node.process is not None and not node.process.alive():
                    raise ClusterFailure(
                        f"{node.node_id} exited while starting; its log:\n{_tail(node.log)}"
                    )
            leader = agreed_leader(self.state.nodes)
            if leader is not None:
                self.leader = leader
                return leader
            if time.monotonic() > deadline:
                raise ClusterFailure(
                    f"the nodes did not agree on a leader within {format_duration(timeout)}; "
                    f"logs in {Path(self.state.data_dir) / 'logs'}"
                )
            time.sleep(0.1)
        return None

    def mark_ready(self) -> None:
        with locked(Path(self.state.data_dir)):
            current = load_state(Path(self.state.data_dir)) or self.state
            current.ready = True
            save_state(current)
            self.state = current

    def watch(self) -> None:
        """Until a signal: report nodes that stop or come back, and leader changes."""
        last_poll = 0.0
        while not self.stopping:
            self.reap()
            fresh = load_state(Path(self.state.data_dir))
            if fresh is not None:
                self.state = fresh
            self._report_processes()
            if time.monotonic() - last_poll >= 1.0:
                last_poll = time.monotonic()
                live = live_nodes(self.state)
                leader = agreed_leader(live) if live else None
                if leader is not None and leader != self.leader:
                    self.say(f"leader: {leader} (agreed by {len(live)} live nodes)")
                    self.leader = leader
            time.sleep(0.2)

    def stop(self) -> None:
        data_dir = Path(self.state.data_dir)
        self.say("stopping the nodes (SIGTERM; running jobs get their grace), then Redis")
        with locked(data_dir):
            state = load_state(data_dir) or self.state
            stop_cluster(state, on_wait=self._while_stopping)
            self.reap()
            state_path(data_dir).unlink(missing_ok=True)
        self.say("stopped")

    def _while_stopping(self) -> None:
        self.reap()
        if self.signals >= 2:  # a second Ctrl-C: no more patience
            for ref in self._all_refs():
                ref.signal(signal.SIGKILL)

    # -- bookkeeping -----------------------------------------------------------------

    def reap(self) -> None:
        """Collect our exited children, so they do not linger as zombies."""
        for pid, proc in list(self.children.items()):
            if proc.poll() is not None:
                del self.children[pid]

    def _all_refs(self) -> list[ProcessRef]:
        refs = [n.process for n in self.state.nodes if n.process is not None]
        return refs + ([self.state.redis] if self.state.redis is not None else [])

    def _remember(self) -> None:
        for node in self.state.nodes:
            ref = node.process
            alive = ref is not None and ref.alive()
            self._known[node.node_id] = (ref.pid, ref.started) if ref and alive else None

    def _report_processes(self) -> None:
        for node in self.state.nodes:
            ref = node.process
            before = self._known.get(node.node_id)
            now = (ref.pid, ref.started) if ref is not None and ref.alive() else None
            if now == before:
                continue
            if now is None:
                self.say(f"{node.node_id} stopped (pid {before[0] if before else '?'})")
            else:
                self.say(f"{node.node_id} running again (pid {now[0]})")
            self._known[node.node_id] = now

    def _save(self) -> None:
        with locked(Path(self.state.data_dir)):
            save_state(self.state)


def _tail(path: str, lines: int = 20) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _redis_from_env() -> str | None:
    return os.environ.get("REDIS_URL") or os.environ.get("REDIS_ADDR") or None


def print_table(table: Table) -> None:
    """Tables of URLs are wide: outside a terminal, do not squeeze them into 80 columns."""
    (out if out.is_terminal else Console(highlight=False, soft_wrap=False, width=240)).print(table)


def nodes_table(state: ClusterState, leader: str | None) -> Table:
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("NODE", "PID", "STATE", "ROLE", "API", "DASHBOARD", "METRICS", "LOG"):
        table.add_column(name, no_wrap=True)
    for node in state.nodes:
        alive = node.process is not None and node.process.alive()
        table.add_row(
            node.node_id,
            str(node.process.pid) if node.process else "-",
            Text("running", style="green") if alive else Text("stopped", style="red"),
            "leader" if alive and node.node_id == leader else ("" if alive else "-"),
            node.api_url,
            node.api_url + "/",
            node.metrics_url,
            node.log,
        )
    return table


def start_cluster(
    data_dir: Path, nodes: int, options: NodeOptions, say: Callable[[str], None]
) -> Supervisor:
    """Claim the data folder (stopping what a killed supervisor left there) and plan the
    nodes; ``Supervisor.start`` then starts Redis and every node."""
    data_dir = data_dir.resolve()
    with locked(data_dir):
        existing = load_state(data_dir)
        if existing is not None:
            if existing.supervisor is not None and existing.supervisor.alive():
                raise ClusterFailure(
                    f"a cluster already runs from {data_dir} (pid {existing.supervisor.pid}); "
                    "stop it with jobtrio cluster down, or pick another --data-dir"
                )
            # a supervisor that was killed left its processes: stop them before reusing ports
            stop_cluster(existing)
            state_path(data_dir).unlink(missing_ok=True)
        state = ClusterState(
            data_dir=str(data_dir),
            cwd=os.getcwd(),
            redis_url="",
            options=options,
            nodes=plan_nodes(nodes, data_dir),
            secret=os.environ.get("CLUSTER_SECRET") or new_secret(),
            supervisor=ProcessRef.of(os.getpid()),
        )
        save_state(state)
    supervisor = Supervisor(state, say)
    return supervisor


@click.command("up")
@click.option("--nodes", "-n", type=click.IntRange(1, 50), default=3, show_default=True)
@click.option(
    "--algorithm",
    "-a",
    type=click.Choice(ELECTION_ALGORITHMS),
    default="raft",
    show_default=True,
    help="Leader election of every node.",
)
@data_dir_option
@click.option(
    "--redis",
    metavar="HOST:PORT|URL",
    help="Use this Redis instead of starting one [env: REDIS_URL or REDIS_ADDR].",
)
@click.option("--app", metavar="MODULE:ATTR", help="A Registry with your processors.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    help='Settings file for every node (default: .env if present; "" for none).',
)
@click.option("--workers", type=click.IntRange(1, 10000), help="WORKER_COUNT of every node.")
@click.option(
    "--election-timeout",
    type=DURATION,
    default="1s",
    show_default=True,
    help="ELECTION_TIMEOUT (loopback is fast: tighter than the 10s default).",
)
@click.option(
    "--election-interval",
    type=DURATION,
    default="300ms",
    show_default=True,
    help="ELECTION_INTERVAL.",
)
@click.option("--job-lease", type=DURATION, default="5s", show_default=True, help="JOB_LEASE.")
@click.option(
    "--shutdown-grace", type=DURATION, default="10s", show_default=True, help="SHUTDOWN_GRACE."
)
@click.option(
    "--wait-timeout",
    type=DURATION,
    default="60s",
    show_default=True,
    help="Give up if the nodes have not agreed on a leader by then.",
)
def cluster_up(
    nodes: int,
    algorithm: str,
    data_dir: Path,
    redis: str | None,
    app: str | None,
    env_file: str | None,
    workers: int | None,
    election_timeout: float,
    election_interval: float,
    job_lease: float,
    shutdown_grace: float,
    wait_timeout: float,
) -> int:
    """Start a cluster of NODES local processes; Ctrl-C (or `cluster down`) stops it all.

    Starts its own redis-server (AOF on, in DATA_DIR/redis: jobs survive a
    restart of the cluster) unless --redis or REDIS_URL/REDIS_ADDR names one,
    then one `jobtrio serve` per node on free ports (the seed's 8080.., 9090..
    and 7946.. when free), each logging to DATA_DIR/logs/NODE.log. Once every
    node names the same leader it prints their URLs, then reports nodes that
    stop or return and leader changes until it is stopped.
    """
    if env_file and not os.path.isfile(env_file):
        raise click.BadParameter(f"{env_file}: no such file", param_hint="--env-file")
    options = NodeOptions(
        algorithm=algorithm,
        election_timeout=format_duration(election_timeout),
        election_interval=format_duration(election_interval),
        job_lease=format_duration(job_lease),
        shutdown_grace=format_duration(shutdown_grace),
        workers=workers,
        app=app,
        env_file=os.path.abspath(env_file) if env_file else env_file,
    )

    def say(message: str) -> None:
        out.print(Text.assemble((time.strftime("%H:%M:%S"), "dim"), " ", message), soft_wrap=True)

    try:
        supervisor = start_cluster(data_dir, nodes, options, say)
    except ClusterFailure as exc:
        raise _fail(exc) from None
    supervisor.install_signal_handlers()
    state = supervisor.state
    try:
        say(f"starting {nodes} {algorithm} nodes in {state.data_dir}")
        supervisor.start(redis or _redis_from_env())  # None: start our own
        if state.redis is not None:
            say(f"redis-server (AOF on) at {state.redis_url}, data in {state.data_dir}/redis")
        started = time.monotonic()
        leader = supervisor.wait_for_leader(wait_timeout)
        if leader is None:
            return EXIT_OK  # stopped before the cluster was up
        say(f"leader: {leader}, agreed by all {nodes} nodes in {time.monotonic() - started:.1f}s")
        print_table(nodes_table(supervisor.state, leader))
        first = supervisor.state.nodes[0]
        out.print(Text.assemble("\nDashboard: ", (f"{first.api_url}/", "bold")))
        out.print(
            f'Try: jobtrio submit email -p \'{{"recipient": "a@example.com"}}\' --wait '
            f"--url {first.api_url}"
        )
        out.print(
            f"     jobtrio cluster kill leader --data-dir {state.data_dir}    (then watch here)"
        )
        out.print("Ctrl-C (or jobtrio cluster down) stops every process started here.")
        supervisor.mark_ready()  # after the URLs are out: `ready` means the user has them
        supervisor.watch()
        return EXIT_OK
    except ClusterFailure as exc:
        raise _fail(exc) from None
    finally:
        supervisor.stop()


@click.command("down")
@data_dir_option
def cluster_down(data_dir: Path) -> int:
    """Stop the cluster that runs from DATA_DIR (from any shell)."""
    data_dir = data_dir.resolve()
    state = load_state(data_dir)
    if state is None:
        click.echo(f"no cluster runs from {data_dir}: nothing to stop", err=True)
        return EXIT_OK
    supervisor = state.supervisor
    if supervisor is not None and supervisor.alive():
        supervisor.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds(state.options) + 30
        while supervisor.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if not supervisor.alive():
            out.print(f"stopped the cluster of {data_dir} (supervisor pid {supervisor.pid})")
            return EXIT_OK
        supervisor.signal(signal.SIGKILL)
    # no supervisor (it was killed) or it did not finish: stop its processes ourselves
    with locked(data_dir):
        state = load_state(data_dir) or state
        stop_cluster(state)
        state_path(data_dir).unlink(missing_ok=True)
    out.print(f"stopped the processes of {data_dir}")
    return EXIT_OK


def _resolve_node(state: ClusterState, name: str) -> NodeSpec:
    if name != "leader":
        return state.node(name)
    live = live_nodes(state)
    leader = agreed_leader(live)
    if leader is None:
        views = [election_view(n) for n in live]
        named = {v["leader"] for v in views if v and v.get("leader")}
        if len(named) != 1:
            raise ClusterFailure("the live nodes do not agree on a leader right now")
        [leader] = named
    return state.node(leader)


@click.command("kill")
@click.argument("node")
@data_dir_option
def cluster_kill(node: str, data_dir: Path) -> int:
    """SIGKILL one node (a node id, or `leader`): a crash, to watch failover."""
    try:
        state = require_state(data_dir.resolve())
        spec = _resolve_node(state, node)
    except ClusterFailure as exc:
        raise _fail(exc) from None
    ref = spec.process
    if ref is None or not ref.alive():
        raise Failure(f"{spec.node_id} is not running")
    ref.signal(signal.SIGKILL)
    deadline = time.monotonic() + 10
    while ref.alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    out.print(f"killed {spec.node_id} (pid {ref.pid})")
    return EXIT_OK


@click.command("restart")
@click.argument("node")
@data_dir_option
@click.option(
    "--wait-timeout", type=DURATION, default="30s", show_default=True, help="Wait for /health."
)
def cluster_restart(node: str, data_dir: Path, wait_timeout: float) -> int:
    """Stop one node gracefully if it runs (SIGTERM), then start it again on its ports."""
    data_dir = data_dir.resolve()
    try:
        with locked(data_dir):
            state = require_state(data_dir)
            spec = _resolve_node(state, node)
            if spec.process is not None and spec.process.alive():
                stop_cluster_node(state, spec)
            start_node(state, spec)
            save_state(state)
    except ClusterFailure as exc:
        raise _fail(exc) from None
    import httpx

    deadline = time.monotonic() + wait_timeout
    while True:
        assert spec.process is not None
        if not spec.process.alive():
            raise Failure(f"{spec.node_id} exited at start; its log:\n{_tail(spec.log)}")
        try:
            if http().get(spec.api_url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise Failure(f"{spec.node_id} did not answer /health in time; see {spec.log}")
        time.sleep(0.1)
    out.print(f"restarted {spec.node_id} (pid {spec.process.pid}) at {spec.api_url}")
    return EXIT_OK


def stop_cluster_node(state: ClusterState, spec: NodeSpec) -> None:
    assert spec.process is not None
    stop_processes([spec.process], grace_seconds(state.options))


@click.command("ps")
@data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def cluster_ps(data_dir: Path, as_json: bool) -> int:
    """The processes of the local cluster: PIDs, state, role, URLs, logs."""
    try:
        state = require_state(data_dir.resolve())
    except ClusterFailure as exc:
        raise _fail(exc) from None
    live = live_nodes(state)
    leader = agreed_leader(live) if live else None
    if as_json:
        print_json(
            {
                "data_dir": state.data_dir,
                "ready": state.ready,
                "leader": leader,
                "supervisor": _ref_json(state.supervisor),
                "redis": {"url": state.redis_url, "process": _ref_json(state.redis)},
                "nodes": [
                    {
                        "node_id": n.node_id,
                        "process": _ref_json(n.process),
                        "is_leader": n.node_id == leader,
                        "api_url": n.api_url,
                        "dashboard_url": n.api_url + "/",
                        "metrics_url": n.metrics_url,
                        "cluster_address": n.peer_address,
                        "log": n.log,
                    }
                    for n in state.nodes
                ],
            }
        )
        return EXIT_OK
    print_table(nodes_table(state, leader))
    redis_state = "own" if state.redis is not None else "given"
    if state.redis is not None:
        redis_state += ", running" if state.redis.alive() else ", stopped"
    out.print(f"\nredis: {state.redis_url} ({redis_state})")
    sup = state.supervisor
    sup_state = "running" if sup is not None and sup.alive() else "gone"
    out.print(f"supervisor: pid {sup.pid if sup else '-'} ({sup_state})")
    out.print(f"leader: {leader or 'none agreed'}")
    return EXIT_OK


def _ref_json(ref: ProcessRef | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"pid": ref.pid, "running": ref.alive()}


# -- drill ------------------------------------------------------------------------------


@click.command("drill")
@click.option(
    "--algorithm",
    "-a",
    "algorithms",
    multiple=True,
    type=click.Choice(ELECTION_ALGORITHMS),
    help="Algorithms to drill (repeatable; default: all three).",
)
@click.option("--nodes", "-n", type=click.IntRange(2, 20), default=3, show_default=True)
@click.option("--jobs", type=click.IntRange(1, 10000), default=60, show_default=True)
@click.option(
    "--job-seconds", type=float, default=3.0, show_default=True, help="How long each job sleeps."
)
@click.option("--job-lease", type=DURATION, default="2s", show_default=True, help="JOB_LEASE.")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Keep the clusters' folders here (default: a temporary folder, removed if all pass).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def cluster_drill(
    algorithms: Sequence[str],
    nodes: int,
    jobs: int,
    job_seconds: float,
    job_lease: float,
    data_dir: Path | None,
    as_json: bool,
) -> int:
    """For each algorithm: up, jobs, SIGKILL the leader, time the failover, every job done, down.

    Replaces the seed's scripts/test-algorithms.sh. Exit 1 if any algorithm
    fails to elect a new leader or to complete every job.
    """
    root = data_dir.resolve() if data_dir else Path(tempfile.mkdtemp(prefix="jobtrio-drill-"))
    results = []
    for algorithm in algorithms or ELECTION_ALGORITHMS:
        if not as_json:
            err.print(Text.assemble((algorithm, "bold"), f": {nodes} nodes, {jobs} jobs"))
        results.append(
            drill_one(root / algorithm, algorithm, nodes, jobs, job_seconds, job_lease, as_json)
        )
    ok = all(r["ok"] for r in results)
    if as_json:
        print_json({"data_dir": str(root), "results": results, "ok": ok})
    else:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for name in ("ALGORITHM", "LEADER AFTER", "FAILOVER", "JOBS DONE", "RERUN", "RESULT"):
            table.add_column(name, no_wrap=True)
        for r in results:
            table.add_row(
                r["algorithm"],
                _secs(r.get("first_leader_seconds")),
                _secs(r.get("failover_seconds")),
                f"{r.get('completed', 0)}/{jobs}",
                str(r.get("rerun", "-")),
                Text("ok", style="green") if r["ok"] else Text(r["error"], style="bold red"),
            )
        print_table(table)
        out.print(
            "LEADER AFTER: start until every node names one leader; FAILOVER: leader SIGKILL "
            "until the survivors agree on another; RERUN: jobs the dead leader had claimed, "
            "completed elsewhere after their lease expired."
        )
    if ok and data_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    elif not ok:
        click.echo(f"logs kept in {root}", err=True)
    return EXIT_OK if ok else EXIT_FAILURE


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def drill_one(
    data_dir: Path,
    algorithm: str,
    nodes: int,
    jobs: int,
    job_seconds: float,
    job_lease: float,
    quiet: bool,
) -> dict[str, Any]:
    from ..client import Client, JobtrioError

    def say(message: str) -> None:
        if not quiet:
            err.print(f"  {message}")

    result: dict[str, Any] = {"algorithm": algorithm, "ok": False, "error": ""}
    options = NodeOptions(
        algorithm=algorithm, job_lease=format_duration(job_lease), shutdown_grace="2s"
    )
    try:
        supervisor = start_cluster(data_dir, nodes, options, say)
    except ClusterFailure as exc:
        result["error"] = str(exc)
        return result
    try:
        supervisor.start(None)
        started = time.monotonic()
        leader = supervisor.wait_for_leader(60)
        assert leader is not None
        result["first_leader_seconds"] = time.monotonic() - started
        say(f"leader {leader} after {result['first_leader_seconds']:.2f}s")
        state = supervisor.state
        entry = next(n for n in state.nodes if n.node_id != leader)
        # submitted to the leader, which wakes its own workers first, so it usually has jobs
        # running when it dies: those must come back (after their lease) and run elsewhere.
        # The other nodes may still claim them all first (a race on a loaded machine): then
        # the leader dies idle after a few seconds, and RERUN says 0.
        with Client(state.node(leader).api_url, timeout=10) as to_leader:
            body = [{"type": "sleep", "payload": {"seconds": job_seconds}}] * jobs
            ids = [j.id for j in to_leader.submit_many(body)]
            deadline = time.monotonic() + min(5.0, job_seconds * 2)
            while not _busy_on(state.node(leader)) and time.monotonic() < deadline:
                time.sleep(0.02)
        with Client(entry.api_url, timeout=10) as client:
            victim = state.node(leader)
            assert victim.process is not None
            victim.process.signal(signal.SIGKILL)
            killed = time.monotonic()
            say(f"killed {leader}")
            survivors = [n for n in state.nodes if n.node_id != leader]
            new_leader = None
            while new_leader is None or new_leader == leader:
                supervisor.reap()
                if time.monotonic() - killed > 60:
                    raise ClusterFailure("no new leader within 60s")
                new_leader = agreed_leader(survivors)
                time.sleep(0.02)
            result["failover_seconds"] = time.monotonic() - killed
            result["new_leader"] = new_leader
            say(f"new leader {new_leader} after {result['failover_seconds']:.2f}s")
            deadline = time.monotonic() + 60 + jobs * job_seconds
            while True:
                done = [client.get(i) for i in ids]
                completed = [j for j in done if j.status.value == "completed"]
                result["completed"] = len(completed)
                if len(completed) == len(ids):
                    break
                if any(j.status.value in ("failed", "cancelled") for j in done):
                    raise ClusterFailure("a job failed")
                if time.monotonic() > deadline:
                    raise ClusterFailure(f"only {len(completed)}/{len(ids)} jobs completed")
                time.sleep(0.25)
            result["rerun"] = sum(
                1
                for j in done
                if any(a.node_id == leader for a in j.attempts) and j.attempts[-1].node_id != leader
            )
        result["ok"] = True
    except (ClusterFailure, JobtrioError) as exc:
        result["error"] = str(exc)
    finally:
        supervisor.stop()
    return result


def _busy_on(node: NodeSpec) -> bool:
    """Whether ``node`` has a worker running a job (its own view, no fan-out to peers)."""
    import httpx

    try:
        r = http().get(node.api_url + "/api/v1/workers", params={"scope": "local"}, timeout=2)
    except httpx.HTTPError:
        return False
    return r.status_code == 200 and any(w.get("current_job") for w in r.json()["workers"])


#: What ``jobtrio cluster`` adds beside ``status``, in no particular order (help sorts them).
LOCAL_CLUSTER_COMMANDS = (
    cluster_up,
    cluster_down,
    cluster_kill,
    cluster_restart,
    cluster_ps,
    cluster_drill,
)
