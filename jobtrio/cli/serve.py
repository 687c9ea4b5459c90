"""``jobtrio serve`` runs a node; ``jobtrio healthcheck`` asks the node these settings serve.

Settings come from the environment and the .env file, as config.py reads them;
each ``SERVE_FLAGS`` flag overrides the one variable it names, and a bad value
is reported with the flag that set it (exit 2). Both commands read the settings
the same way, so a container's HEALTHCHECK asks the node its ``serve`` started.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from .exits import EXIT_FAILURE, EXIT_OK, Failure, usage_failure
from .params import DURATION

F = TypeVar("F", bound=Callable[..., Any])


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


@click.command()
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


@click.command()
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
