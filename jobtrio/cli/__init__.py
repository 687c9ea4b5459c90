"""The ``jobtrio`` command line: run a node, and drive any node over HTTP.

    jobtrio serve --app examples.processors:registry
    jobtrio submit email --payload '{"recipient": "a@example.com"}' --priority 10 --wait
    jobtrio submit noop --count 5000 --wait
    jobtrio jobs list --status failed,cancelled
    jobtrio jobs watch 01J9Z6N5G4X8W3QH2K7R1M0P9T
    jobtrio cluster status

Every command that talks to a node takes ``--url`` and ``--token`` (or
``JOBTRIO_URL`` / ``JOBTRIO_TOKEN``) and ``--json``. Humans get tables and
progress bars (on stderr, so stdout stays clean for pipes); scripts get
JSON, the API's own shapes, on stdout.

Exit codes are a contract for scripts: 0 success, 1 failure (an HTTP error,
the node unreachable, a job that ended failed or cancelled under ``--wait``
or ``watch``), 2 a usage error (bad flags, bad settings for ``serve``).
Failures are one line on stderr, never a traceback.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import click
from rich.table import Table
from rich.text import Text

from ..client import (
    Client,
    ConnectionFailed,
    JobtrioError,
    NotFound,
    Unavailable,
    job_submission,
)
from ..durations import format_duration
from ..jobs import MAX_PRIORITY, MIN_PRIORITY, Job, JobStatus
from ..text import printable
from .chaos import chaos
from .exits import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Failure, SettingsFailure, usage_failure
from .local_cluster import LOCAL_CLUSTER_COMMANDS
from .output import err, out, print_json, print_json_line, progress
from .params import AT, DURATION, NAME, load_payload
from .queues import queues
from .remote import Remote, remote_command
from .render import (
    ago,
    finished_ok,
    job_line,
    jobs_table,
    progress_text,
    short,
    show_job,
    status_text,
)
from .schedules import schedules
from .users import login, users
from .workflows import workflows

#: Jobs per batch request when ``submit --count`` fans out (the API takes up to 10,000).
SUBMIT_CHUNK = 1000
#: ``jobs watch`` without an id: newest jobs compared per poll, and shown at start.
WATCH_PAGE = 200
WATCH_BACKLOG = 10

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------
# the commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="jobtrio", prog_name="jobtrio")
def cli() -> None:
    """jobtrio: a distributed, fault-tolerant background-job processor on trio.

    Run a node with `jobtrio serve`; everything else talks to a node over its
    REST API (--url, default http://127.0.0.1:8080, or JOBTRIO_URL).
    """


@dataclass(frozen=True, slots=True)
class ServeFlag:
    """A ``jobtrio serve`` flag that overrides one environment variable."""

    flag: str
    variable: str
    metavar: str
    help: str

    @property
    def dest(self) -> str:
        return self.flag.lstrip("-").replace("-", "_")


#: The common settings as flags; each value is parsed and checked by config.py as if
#: it came from its variable. No flag for secrets: a command line shows in `ps`.
SERVE_FLAGS = (
    ServeFlag("--host", "SERVER_HOST", "ADDR", "Bind address of the API and metrics ports."),
    ServeFlag("--port", "SERVER_PORT", "PORT", "HTTP API port."),
    ServeFlag("--metrics-port", "METRICS_PORT", "PORT", "Prometheus metrics port (0: off)."),
    ServeFlag("--workers", "WORKER_COUNT", "N", "Jobs this node runs at once."),
    ServeFlag("--node-id", "NODE_ID", "NAME", "Unique name of this node in the cluster."),
    ServeFlag("--redis", "REDIS_ADDR", "HOST:PORT|URL", "Redis for the queue (and records)."),
    ServeFlag("--mongodb", "MONGODB_URI", "URI", "MongoDB for the job records."),
    ServeFlag("--sqlite", "SQLITE_PATH", "FILE", "SQLite file when no Redis is set."),
    ServeFlag("--key-prefix", "REDIS_KEY_PREFIX", "PREFIX", "Prefix of every Redis key."),
    ServeFlag("--algorithm", "ELECTION_ALGORITHM", "NAME", "Leader election: bully, raft, gossip."),
    ServeFlag("--election-timeout", "ELECTION_TIMEOUT", "DURATION", "Silence before an election."),
    ServeFlag("--election-interval", "ELECTION_INTERVAL", "DURATION", "Leader heartbeat period."),
    ServeFlag("--cluster-host", "CLUSTER_HOST", "ADDR", "Bind address of the peer port."),
    ServeFlag("--cluster-port", "CLUSTER_PORT", "PORT", "Peer port (0: run alone)."),
    ServeFlag("--advertise", "CLUSTER_ADVERTISE", "HOST:PORT", "Address peers dial to reach us."),
    ServeFlag("--peers", "CLUSTER_PEERS", "HOST:PORT,...", "Cluster ports of the nodes: voters."),
    ServeFlag("--cluster-size", "CLUSTER_SIZE", "N", "Raft voters --peers must name (a check)."),
    ServeFlag("--data-dir", "DATA_DIR", "DIR", "Where Raft keeps its term and vote."),
    ServeFlag("--job-lease", "JOB_LEASE", "DURATION", "A dead node's jobs return after this."),
    ServeFlag("--shutdown-grace", "SHUTDOWN_GRACE", "DURATION", "Time running jobs get on stop."),
    ServeFlag("--log-level", "LOG_LEVEL", "LEVEL", "debug, info, warning or error."),
)


def serve_flag_options(fn: F) -> F:
    """Add every SERVE_FLAGS option to ``serve``; their help names the variable."""
    for spec in reversed(SERVE_FLAGS):
        env = spec.variable
        if spec.flag == "--redis":
            env = "REDIS_ADDR; a redis:// or rediss:// URL sets REDIS_URL"
        fn = click.option(
            spec.flag, spec.dest, metavar=spec.metavar, help=f"{spec.help} [env: {env}]"
        )(fn)
    return fn


def serve_overrides(values: dict[str, str | None]) -> dict[str, str]:
    """The variables the given flags set, as config.py reads them."""
    overrides: dict[str, str] = {}
    for spec in SERVE_FLAGS:
        value = values.get(spec.dest)
        if value is None:
            continue
        if spec.flag == "--redis":
            # one flag for both spellings; the other variable is cleared so it cannot win
            is_url = "://" in value
            overrides["REDIS_URL"] = value if is_url else ""
            overrides["REDIS_ADDR"] = "" if is_url else value
        else:
            overrides[spec.variable] = value
    return overrides


def _flag_of(message: str, overrides: dict[str, str]) -> str | None:
    """The flag behind a ConfigError's message, when a flag set that variable."""
    for spec in SERVE_FLAGS:
        variables = (spec.variable, "REDIS_URL") if spec.flag == "--redis" else (spec.variable,)
        for variable in variables:
            if message.startswith(f"{variable}=") and variable in overrides:
                return spec.flag
    return None


@cli.command()
@click.option("--app", "app_spec", metavar="MODULE:ATTR", help="A Registry with your processors.")
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    default=None,
    help='Settings file (default: .env if present; "" for none). The environment wins.',
)
@serve_flag_options
def serve(app_spec: str | None, env_file: str | None, **flags: str | None) -> int:
    """Run a node (embedded SQLite unless Redis or MongoDB is configured).

    Settings come from the environment and the .env file; see
    deploy/.env.example for every variable. Each flag below overrides the
    variable it names. SIGTERM or Ctrl-C stops the node gracefully: running
    jobs get SHUTDOWN_GRACE to finish.
    """
    from ..config import ConfigError, Settings
    from ..processors import Registry, load_app

    if env_file and not os.path.isfile(env_file):
        usage_failure(f"--env-file {env_file}: no such file")
    overrides = serve_overrides(flags)
    try:
        # --env-file "" reads no file at all: the environment alone
        settings = Settings.from_env(
            dotenv_path=".env" if env_file is None else env_file or None, overrides=overrides
        )
    except ConfigError as exc:
        flag = _flag_of(str(exc), overrides)
        usage_failure(f"{flag}: {exc}" if flag else str(exc))
    if settings.clustered and settings.election_algorithm == "raft":
        from ..cluster.raft_state import FileRaftState, RaftStateError

        try:  # a corrupt or foreign vote file stops start-up with one line
            FileRaftState(settings.raft_state_path, settings.node_id).load()
        except RaftStateError as exc:
            usage_failure(str(exc))
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    registry = Registry()
    if app_spec:
        # like gunicorn and uvicorn: `--app myjobs:registry` finds ./myjobs.py
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        try:
            registry.update(load_app(app_spec))
        except ValueError as exc:
            usage_failure(str(exc))
    import trio

    from ..backends.base import BackendUnavailable
    from ..server import serve as serve_node

    try:
        trio.run(functools.partial(serve_node, settings, registry, freeze_heap=True))
    except ConfigError as exc:  # a port in use, found before anything started
        usage_failure(str(exc))
    except BackendUnavailable as exc:
        raise Failure(str(exc)) from None
    except KeyboardInterrupt:  # a second Ctrl-C while stopping
        return EXIT_FAILURE
    except OSError as exc:
        raise Failure(
            f"cannot serve on {settings.server_host}:{settings.server_port}: {exc}"
        ) from None
    except Exception:
        # a crashed node is a bug: its operator needs the traceback, in the log
        logging.getLogger("jobtrio").critical("the node crashed", exc_info=True)
        return EXIT_FAILURE
    return EXIT_OK


@cli.command()
@click.option(
    "--env-file",
    type=click.Path(dir_okay=False),
    default=None,
    help='Settings file, as for serve (default: .env if present; "" for none).',
)
@click.option("--timeout", type=DURATION, default="3s", show_default=True)
def healthcheck(env_file: str | None, timeout: float) -> int:
    """Exit 0 if the node served with these settings answers /health with 200.

    For a container's HEALTHCHECK (the image has no curl): it reads
    SERVER_HOST, SERVER_PORT and TLS_ENABLED like `jobtrio serve` and asks
    the node on this machine (127.0.0.1 when it binds every address; a
    TLS certificate is not verified, the node is local).
    """
    import httpx

    from ..config import ConfigError, Settings

    try:
        settings = Settings.from_env(dotenv_path=".env" if env_file is None else env_file or None)
    except ConfigError as exc:
        usage_failure(str(exc))
    host = settings.server_host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    scheme = "https" if settings.tls_enabled else "http"
    url = f"{scheme}://{host}:{settings.server_port}/health"
    try:
        response = httpx.get(url, timeout=timeout, verify=False)
    except httpx.HTTPError as exc:
        raise Failure(f"{url}: {exc or type(exc).__name__}") from None
    if response.status_code != 200:
        raise Failure(f"{url}: HTTP {response.status_code} {response.text[:200]}")
    click.echo(f"{url}: {response.json().get('status', 'ok')}")
    return EXIT_OK


@cli.command()
@click.argument("job_type", metavar="TYPE")
@click.option(
    "--payload", "-p", metavar="JSON|@FILE", help="The job's payload: JSON, @file, or @- for stdin."
)
@click.option(
    "--priority",
    "-P",
    type=click.IntRange(MIN_PRIORITY, MAX_PRIORITY),
    help="1 (low) to 10 (high); 5 when omitted.",
)
@click.option("--delay", type=DURATION, help="Run no earlier than this from now (10s, 5m).")
@click.option("--at", "at", type=AT, help="Run no earlier than this time (ISO 8601 or HH:MM).")
@click.option("--max-retries", type=click.IntRange(0, 1000), help="Retries after the first try.")
@click.option("--timeout", type=DURATION, help="How long one attempt may run (30s, 5m).")
@click.option("--idempotency-key", metavar="KEY", help="Submitting the same key again is a no-op.")
@click.option("--queue", "-q", metavar="NAME", help="The named queue to wait in (default).")
@click.option(
    "--after",
    "depends_on",
    multiple=True,
    metavar="JOB_ID",
    help="Wait until this job has completed (repeat for several): depends_on.",
)
@click.option(
    "--receive-results", is_flag=True, help="With --after: hand the processor their results."
)
@click.option(
    "--on-dependency-failure",
    type=click.Choice(["fail", "run"]),
    help="With --after: what a failed or cancelled one does (default fail).",
)
@click.option(
    "--count", "-n", type=click.IntRange(1, 1_000_000), default=1, help="Submit N copies."
)
@click.option(
    "--wait", "-w", is_flag=True, help="Wait until the job(s) finish; exit 1 if any fail."
)
@click.option("--wait-timeout", type=DURATION, help="Give up waiting after this long (exit 1).")
@remote_command
def submit(
    remote: Remote,
    job_type: str,
    payload: str | None,
    priority: int | None,
    delay: float | None,
    at: dt.datetime | None,
    max_retries: int | None,
    timeout: float | None,
    idempotency_key: str | None,
    queue: str | None,
    depends_on: tuple[str, ...],
    receive_results: bool,
    on_dependency_failure: str | None,
    count: int,
    wait: bool,
    wait_timeout: float | None,
) -> int:
    """Submit a job of TYPE (or --count copies of it, through the batch route)."""
    if (receive_results or on_dependency_failure) and not depends_on:
        raise click.UsageError("--receive-results and --on-dependency-failure need --after")
    if delay is not None and at is not None:
        raise click.UsageError("give --delay or --at, not both")
    if count > 1 and idempotency_key:
        raise click.UsageError("--idempotency-key would make --count copies one job; drop one")
    if wait_timeout is not None and not wait:
        raise click.UsageError("--wait-timeout needs --wait")
    data = load_payload(payload)
    options: dict[str, Any] = {
        "priority": priority,
        "max_retries": max_retries,
        "timeout": timeout,
        "delay": delay,
        "scheduled_at": at,
        "idempotency_key": idempotency_key,
        "queue": queue,
        "depends_on": list(depends_on) or None,
        "on_dependency_failure": on_dependency_failure,
        "receive_results": receive_results or None,
    }
    with remote.client() as client:
        if count == 1:
            job = client.submit(job_type, data, **options)
            return _after_submit(remote, client, job, wait, wait_timeout)
        body = job_submission(job_type, data, **options)
        return _submit_many(remote, client, body, count, wait, wait_timeout)


def _after_submit(
    remote: Remote, client: Client, job: Job, wait: bool, wait_timeout: float | None
) -> int:
    if not wait:
        if remote.json:
            print_json(job.to_dict())
        else:
            when = f", runs {ago(job.scheduled_at)}" if job.status == JobStatus.SCHEDULED else ""
            out.print(
                Text.assemble(
                    "Submitted ",
                    (job.id, "bold"),
                    f" ({job.type}, priority {job.priority}, ",
                    status_text(job.status),
                    f"{when})",
                )
            )
        return EXIT_OK
    if not remote.json:
        err.print(f"Submitted {job.id}; waiting for it to finish…")
    job = client.wait(job.id, timeout=wait_timeout)
    if remote.json:
        print_json(job.to_dict())
    else:
        show_job(job)
    return EXIT_OK if finished_ok(job) else EXIT_FAILURE


def _submit_many(
    remote: Remote,
    client: Client,
    body: dict[str, Any],
    count: int,
    wait: bool,
    wait_timeout: float | None,
) -> int:
    jobs: list[Job] = []
    with progress("Submitting", count) as update:
        while len(jobs) < count:
            n = min(SUBMIT_CHUNK, count - len(jobs))
            jobs += client.submit_many([body] * n)
            update(len(jobs))
    summary: dict[str, Any] = {"count": len(jobs), "ids": [j.id for j in jobs]}
    if not wait:
        if remote.json:
            print_json(summary)
        else:
            out.print(f"Submitted {len(jobs)} {body['type']} jobs ({jobs[0].id} … {jobs[-1].id})")
        return EXIT_OK
    with progress("Finished", count) as update:
        done = client.wait_many(jobs, timeout=wait_timeout, on_progress=lambda d, _t: update(d))
    by_status: dict[str, int] = {}
    for job in done:
        by_status[str(job.status)] = by_status.get(str(job.status), 0) + 1
    summary["statuses"] = by_status
    failed = [j for j in done if not finished_ok(j)]
    if remote.json:
        print_json(summary)
    else:
        parts = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
        out.print(f"{len(done)} {body['type']} jobs finished: {parts}")
        if failed:
            out.print(Text(f"first failure: {failed[0].id}: {short(failed[0].error, 80)}"))
    return EXIT_FAILURE if failed else EXIT_OK


# -- jobs ------------------------------------------------------------------------------


@cli.group()
def jobs() -> None:
    """List, inspect, cancel, retry and watch jobs."""


def _statuses(values: Sequence[str]) -> list[str] | None:
    names = [p.strip().lower() for v in values for p in v.split(",") if p.strip()]
    allowed = [s.value for s in JobStatus]
    for name in names:
        if name not in allowed:
            raise click.BadParameter(
                f"{name!r} is not a status; use {', '.join(allowed)}", param_hint="--status"
            )
    return names or None


def _list_filters(fn: F) -> F:
    fn = click.option("--created-before", type=AT, help="Only jobs created before this time.")(fn)
    fn = click.option("--created-after", type=AT, help="Only jobs created at or after this time.")(
        fn
    )
    fn = click.option("--type", "-t", "job_type", help="Only jobs of this type.")(fn)
    fn = click.option(
        "--status",
        "-s",
        multiple=True,
        metavar="STATUS[,STATUS]",
        help="Only jobs in these states (repeat, or separate with commas).",
    )(fn)
    return fn


@jobs.command("list")
@_list_filters
@click.option("--queue", "-q", help="Only jobs of this named queue.")
@click.option("--limit", "-l", type=click.IntRange(1, 1000), default=50, show_default=True)
@click.option("--cursor", help="Continue after a previous page (its next_cursor).")
@click.option("--all", "all_pages", is_flag=True, help="Follow the cursor through every page.")
@remote_command
def list_jobs(
    remote: Remote,
    status: Sequence[str],
    job_type: str | None,
    created_after: dt.datetime | None,
    created_before: dt.datetime | None,
    queue: str | None,
    limit: int,
    cursor: str | None,
    all_pages: bool,
) -> int:
    """List jobs, newest first."""
    filters: dict[str, Any] = {
        "status": _statuses(status),
        "type": job_type,
        "queue": queue,
        "created_after": created_after,
        "created_before": created_before,
    }
    with remote.client() as client:
        if all_pages:
            found = list(client.list(**filters, page_size=1000))
            next_cursor = None
        else:
            page = client.list_page(**filters, limit=limit, cursor=cursor)
            found, next_cursor = page.jobs, page.next_cursor
    if remote.json:
        print_json(
            {"jobs": [j.to_dict() for j in found], "next_cursor": next_cursor, "count": len(found)}
        )
        return EXIT_OK
    if not found:
        err.print("No jobs.")
        return EXIT_OK
    out.print(jobs_table(found))
    if next_cursor:
        err.print(Text(f"more: jobtrio jobs list --cursor {next_cursor}  (or --all)", style="dim"))
    return EXIT_OK


@jobs.command("get")
@click.argument("job_id", type=NAME)
@remote_command
def get_job(remote: Remote, job_id: str) -> int:
    """Show one job with its attempts."""
    with remote.client() as client:
        job = client.get(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        show_job(job)
    return EXIT_OK


@jobs.command("cancel")
@click.argument("job_id", type=NAME)
@click.option("--purge", is_flag=True, help="Also delete the job and its record.")
@remote_command
def cancel_job(remote: Remote, job_id: str, purge: bool) -> int:
    """Cancel a waiting or running job."""
    with remote.client() as client:
        if purge:
            client.purge(job_id)
            if remote.json:
                print_json({"id": job_id, "deleted": True})
            else:
                out.print(f"Deleted {job_id}.")
            return EXIT_OK
        job = client.cancel(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        out.print(Text.assemble("Job ", (job.id, "bold"), " is ", status_text(job.status), "."))
    return EXIT_OK


@jobs.command("retry")
@click.argument("job_id", type=NAME)
@remote_command
def retry_job(remote: Remote, job_id: str) -> int:
    """Run a failed or cancelled job again."""
    with remote.client() as client:
        job = client.retry(job_id)
    if remote.json:
        print_json(job.to_dict())
    else:
        out.print(
            Text.assemble("Job ", (job.id, "bold"), " is ", status_text(job.status), " again.")
        )
    return EXIT_OK


@jobs.command("watch")
@click.argument("job_id", type=NAME, required=False)
@_list_filters
@click.option(
    "--interval",
    type=DURATION,
    default="1s",
    show_default=True,
    help="Poll period, used only when the node has no event stream.",
)
@click.option("--timeout", type=DURATION, help="Stop after this long (exit 1 if a job is open).")
@remote_command
def watch(
    remote: Remote,
    job_id: str | None,
    status: Sequence[str],
    job_type: str | None,
    created_after: dt.datetime | None,
    created_before: dt.datetime | None,
    interval: float,
    timeout: float | None,
) -> int:
    """Follow a job until it finishes, or with no JOB_ID, follow new jobs and changes.

    Changes arrive live over the node's event stream (/api/v1/events), which
    covers the whole cluster when it shares Redis; against a node without
    one, the command polls every --interval. One line per change (JSON Lines
    with --json). Following one job exits 0 when it completes and 1 when it
    fails or is cancelled; following the list runs until Ctrl-C or --timeout.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with remote.client() as client:
        try:
            if job_id is not None:
                events = _live_events(client, deadline, job_id=job_id.strip().upper())
                if events is None:
                    return _watch_one(remote, client, job_id, interval, deadline)
                return _watch_one_live(remote, client, job_id, events)
            filters = {
                "status": _statuses(status),
                "type": job_type,
                "created_after": created_after,
                "created_before": created_before,
            }
            events = _live_events(client, deadline, kind="job", type=job_type)
            if events is None:
                return _watch_list(remote, client, filters, interval, deadline)
            return _watch_list_live(remote, client, filters, events)
        except KeyboardInterrupt:
            return EXIT_OK


def _live_events(
    client: Client, deadline: float | None, **filters: Any
) -> Iterator[dict[str, Any]] | None:
    """The event stream, already subscribed; None if the node has none (then poll)."""
    timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
    events = client.events(control=True, timeout=timeout, **filters)
    try:
        next(events)  # stream.ready: from here on nothing is missed
    except StopIteration:
        return iter(())
    except (NotFound, Unavailable):
        return None  # an older node, or EVENT_STREAM_MAXLEN=0
    return events


def _watch_one_live(
    remote: Remote, client: Client, job_id: str, events: Iterator[dict[str, Any]]
) -> int:
    """Show the job, then re-read it at each of its events (and after any reconnection)."""
    seen: tuple[JobStatus, int, str] | None = None

    def show() -> Job:
        nonlocal seen
        job = client.get(job_id)
        key = (job.status, len(job.attempts), progress_text(job.progress))
        if key != seen:
            _emit(remote, job, None if seen is None else seen[0])
            seen = key
        return job

    job = show()
    if job.terminal:
        return EXIT_OK if finished_ok(job) else EXIT_FAILURE
    for _event in events:
        job = show()
        if job.terminal:
            return EXIT_OK if finished_ok(job) else EXIT_FAILURE
    raise Failure(f"job {job_id} is still {job.status} after the --timeout")


def _event_job(event: dict[str, Any]) -> dict[str, Any]:
    """A job event as the job fields it carries (what --json prints per change)."""
    return {
        "id": event.get("job_id"),
        "type": event.get("type"),
        "status": event.get("status"),
        "priority": event.get("priority"),
        "retry_count": event.get("retry_count"),
        "attempt": event.get("attempt"),
        "worker_id": event.get("worker_id"),
        "error": event.get("error"),
        "progress": event.get("progress"),
        "node": event.get("node"),
        "event": event.get("kind"),
        "event_id": event.get("id"),
        "at": event.get("at"),
    }


def _watch_list_live(
    remote: Remote,
    client: Client,
    filters: dict[str, Any],
    events: Iterator[dict[str, Any]],
) -> int:
    page = client.list_page(**filters, limit=WATCH_BACKLOG)
    for job in reversed(page.jobs):  # a short look at the present, oldest first
        _emit(remote, job, None)
    statuses = filters["status"]
    previous: dict[str, JobStatus] = {job.id: job.status for job in page.jobs}
    for event in events:
        kind = str(event.get("kind"))
        if kind == "stream.gap":
            err.print(Text(str(event.get("message")), style="yellow"))
            continue
        if not kind.startswith("job.") or not event.get("job_id"):
            continue
        if statuses and event.get("status") not in statuses:
            continue
        if remote.json:
            print_json_line(_event_job(event))
            continue
        try:
            state = JobStatus(str(event.get("status")))
        except ValueError:
            continue
        line = Text(dt.datetime.now().strftime("%H:%M:%S "), style="dim")
        line.append(f"{event['job_id']}  {event.get('type')}  ")
        old = previous.get(event["job_id"])
        if old is not None and old != state:
            line.append_text(status_text(old))
            line.append(" → ")
        line.append_text(status_text(state))
        if state == JobStatus.RUNNING:
            line.append(f"  on {event.get('worker_id') or event.get('node')}")
            if event.get("progress"):
                line.append(f"  {progress_text(event['progress'])}", style="cyan")
        if event.get("error") and state in (JobStatus.FAILED, JobStatus.RETRYING):
            line.append(f"  {short(event.get('error'), 80)}", style="red")
        previous[event["job_id"]] = state
        if len(previous) > 10 * WATCH_PAGE:
            previous.clear()
        out.print(line, soft_wrap=True)
    return EXIT_OK


def _emit(remote: Remote, job: Job, previous: JobStatus | None) -> None:
    if remote.json:
        print_json_line(job.to_dict())
    else:
        out.print(job_line(job, previous), soft_wrap=True)


def _sleep_until_next(interval: float, deadline: float | None) -> bool:
    """Sleep one poll period; False when the deadline has passed."""
    if deadline is not None:
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        interval = min(interval, left)
    time.sleep(interval)
    return True


def _watch_one(
    remote: Remote, client: Client, job_id: str, interval: float, deadline: float | None
) -> int:
    seen: tuple[JobStatus, int, str] | None = None
    while True:
        job = client.get(job_id)
        key = (job.status, len(job.attempts), progress_text(job.progress))
        if key != seen:
            _emit(remote, job, None if seen is None else seen[0])
            seen = key
        if job.terminal:
            return EXIT_OK if finished_ok(job) else EXIT_FAILURE
        if not _sleep_until_next(interval, deadline):
            raise Failure(f"job {job_id} is still {job.status} after the --timeout")


def _watch_list(
    remote: Remote,
    client: Client,
    filters: dict[str, Any],
    interval: float,
    deadline: float | None,
) -> int:
    known: dict[str, JobStatus] = {}
    first = True
    while True:
        page = client.list_page(**filters, limit=WATCH_PAGE)
        for age, job in reversed(list(enumerate(page.jobs))):
            old = known.get(job.id)
            # like `kubectl get -w`: a short look at the present, then only changes
            if (first and age < WATCH_BACKLOG) or (not first and old != job.status):
                _emit(remote, job, old)
            known[job.id] = job.status
        if len(known) > 10 * WATCH_PAGE:
            current = {job.id for job in page.jobs}
            known = {k: v for k, v in known.items() if k in current}
        first = False
        if not _sleep_until_next(interval, deadline):
            return EXIT_OK


# -- the cluster -------------------------------------------------------------------


@cli.group()
def cluster() -> None:
    """The cluster as a node sees it (status), or a local one to try (up, down, kill...)."""


@cluster.command("status")
@remote_command
def cluster_status(remote: Remote) -> int:
    """Leader, election, storage, backends and members."""
    with remote.client() as client:
        view = client.cluster()
        health = client.health()
    if remote.json:
        print_json({**view, "health": health})
        return EXIT_OK
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("node", f"{view['node_id']} (health: {health['status']})")
    leader = view["leader"] or "none yet"
    if view.get("is_leader"):
        leader += " (this node)"
    grid.add_row("leader", leader)
    epoch = "" if view.get("epoch") is None else f", epoch {view['epoch']}"
    grid.add_row("election", f"{view['algorithm']}, term {view['term']}{epoch}")
    grid.add_row("storage", view.get("storage") or "-")
    for backend in health.get("backends", []):
        state = Text("up", style="green") if backend["healthy"] else Text("down", style="bold red")
        if backend.get("error"):
            state.append(f" ({backend['error']})")
        grid.add_row(f"  {backend['kind']}", Text.assemble(f"{backend['name']}: ", state))
    grid.add_row("members", f"{view['alive']} alive of {view['size']}")
    out.print(grid)
    members = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("NODE", "STATE", "ADDRESS", "WORKERS", "LAST CONTACT", "ROLE"):
        members.add_column(name, no_wrap=True)
    for m in view["members"]:
        state = m.get("state", "?")
        style = {"alive": "green", "suspect": "yellow"}.get(state, "red")
        last = m.get("last_contact_seconds_ago")
        members.add_row(
            m["node_id"] + (" *" if m.get("self") else ""),
            Text(state, style=style),
            m.get("address") or "-",
            str(m.get("worker_count") if m.get("worker_count") is not None else "-"),
            "now" if m.get("self") else ("-" if last is None else f"{last:.1f}s ago"),
            "leader" if m.get("is_leader") else "",
        )
    out.print()
    out.print(members)
    return EXIT_OK


@cli.command()
@remote_command
def stats(remote: Remote) -> int:
    """Queue depths, job records, workers and counters of a node."""
    with remote.client() as client:
        data = client.stats()
    if remote.json:
        print_json(data)
        return EXIT_OK
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("STATUS")
    table.add_column("QUEUED", justify="right")
    table.add_column("RECORDS", justify="right")
    records = data.get("records") or {}
    for status in JobStatus:
        table.add_row(
            status_text(status),
            str(data["queue"].get(status.value, 0)),
            str(records.get(status.value, "-")) if data.get("records") is not None else "?",
        )
    out.print(table)
    workers = data["workers"]
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("node", f"{data['node_id']} (leader: {data.get('leader') or 'none'})")
    grid.add_row("workers", f"{workers['busy']} busy, {workers['idle']} idle of {workers['total']}")
    grid.add_row("finished here", str(data.get("finished", "-")))
    uptime = data.get("uptime_seconds")
    if uptime is not None:
        grid.add_row("uptime", format_duration(round(uptime)))
    grid.add_row("strategy", str(data.get("strategy", "-")))
    grid.add_row("processors", ", ".join(data.get("processors", [])))
    out.print()
    out.print(grid)
    for u in data.get("unserved") or []:
        line = f"{u['pending']} pending in {u['queue']}: {u['reason']}"
        out.print(Text(printable(line), style="red"))
    return EXIT_OK


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def bench(args: tuple[str, ...]) -> int:
    """Measure a node's drain, enqueue, bursts, latency, memory; --compare peers."""
    import argparse

    from .. import bench as bench_module

    parser = argparse.ArgumentParser(prog="jobtrio bench", description=bench_module.DESCRIPTION)
    bench_module.add_arguments(parser)
    try:
        namespace = parser.parse_args(list(args))
    except SystemExit as exc:  # --help, or a usage error (argparse exits 2 after saying why)
        return int(exc.code or 0)
    return bench_module.main(namespace)


@cli.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def sim(ctx: click.Context) -> int:
    """Deterministic simulation of a whole cluster with faults (jobtrio sim --help)."""
    from ..sim.cli import main as sim_main

    return sim_main(list(ctx.args))


# --------------------------------------------------------------------------
# entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code instead of raising SystemExit."""
    try:
        result = cli.main(args=argv, prog_name="jobtrio", standalone_mode=False)
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        err.print("Aborted.")
        return 130
    except ConnectionFailed as exc:
        _fail(f"{exc} (is a node running there? set --url or JOBTRIO_URL)")
        return EXIT_FAILURE
    except JobtrioError as exc:
        detail = f" (HTTP {exc.status}, {exc.code})" if exc.status else ""
        _fail(f"{exc}{detail}")
        return EXIT_FAILURE
    except Failure as exc:
        _fail(str(exc))
        return EXIT_FAILURE
    except SettingsFailure as exc:
        _fail(str(exc))
        return EXIT_USAGE
    except BrokenPipeError:
        # `jobtrio jobs list | head`: the reader left; not an error worth a word
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:
        # a bug of ours: one line by default, the whole story on request
        if os.environ.get("JOBTRIO_DEBUG"):
            raise
        _fail(
            f"unexpected error: {type(exc).__name__}: {exc} (JOBTRIO_DEBUG=1 shows the traceback)"
        )
        return EXIT_FAILURE
    return result if isinstance(result, int) else EXIT_OK


def _fail(message: str) -> None:
    # the message may quote a node's words: no control character reaches the terminal
    click.echo(f"jobtrio: {printable(message, keep_newlines=False)}", err=True)


for command in (chaos, login, queues, schedules, users, workflows):
    cli.add_command(command)
for command in LOCAL_CLUSTER_COMMANDS:
    cluster.add_command(command)
