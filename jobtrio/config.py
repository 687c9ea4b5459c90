"""Every setting of a node, read from the environment and an optional ``.env``.

The names and defaults are the seed README's, which users already know, with
one deliberate change: storage. A node with neither ``REDIS_ADDR``/``REDIS_URL``
nor ``MONGODB_URI`` runs on the embedded SQLite file, so ``jobtrio serve``
works on a fresh machine with nothing else installed.

A bad value stops start-up with one line naming the variable, the value and
what is allowed (``ConfigError``); nothing is silently defaulted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any

from dotenv import dotenv_values

from .durations import format_duration, parse_duration
from .queueplan import QueuePlan, parse_concurrency, parse_queues
from .text import clip

ELECTION_ALGORITHMS = ("bully", "raft", "gossip")
LOAD_BALANCER_STRATEGIES = ("round_robin", "least_loaded", "random", "priority")
RETRY_POLICIES = ("fixed", "exponential")
LOG_LEVELS = ("debug", "info", "warning", "error")


#: The seed's documented JWT_SECRET: refused with AUTH_ENABLED=true.
EXAMPLE_JWT_SECRET = "your-secret-key"
#: Shortest JWT_SECRET accepted with AUTH_ENABLED=true (HS256 wants a key of 256 bits).
MIN_JWT_SECRET_BYTES = 32


class ConfigError(ValueError):
    """A setting has a value that is not allowed; the message names it."""


# --------------------------------------------------------------------------
# parsers: each takes the raw text and returns the value or raises ValueError
# with what is allowed.


def _int(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text.strip())
        except ValueError:
            raise ValueError(f"expected an integer from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected an integer from {lo} to {hi}")
        return value

    return parse


def _float(lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text.strip())
        except ValueError:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}") from None
        if not lo <= value <= hi:
            raise ValueError(f"expected a number from {lo:g} to {hi:g}")
        return value

    return parse


def _duration(lo: float = 0.0, hi: float = 10 * 365 * 86400.0) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = parse_duration(text)
        except ValueError:
            raise ValueError("expected a duration such as 500ms, 10s, 2m or 1h") from None
        if not lo <= value <= hi:
            raise ValueError(
                f"expected a duration from {format_duration(lo)} to {format_duration(hi)}"
            )
        return value

    return parse


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected one of {', '.join(options)}")
        return value

    return parse


def _bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def _str(text: str) -> str:
    return text.strip()


def _redis_url(text: str) -> str:
    """Checked as redis-py will read it, so that a typo is named at start, not a traceback."""
    value = text.strip()
    if value:
        from redis.connection import parse_url

        try:
            parse_url(value)
        except ValueError as exc:  # the scheme, the port, the database or a query option
            raise ValueError(f"{exc} (e.g. redis://localhost:6379/0)") from None
    return value


def _mongodb_uri(text: str) -> str:
    """Checked as pymongo will read it (a mongodb+srv:// address only by its scheme: its
    hosts are looked up in DNS, which is the connection's business, not the config's)."""
    value = text.strip()
    if value and not value.startswith("mongodb+srv://"):
        from pymongo.errors import PyMongoError
        from pymongo.uri_parser import parse_uri

        try:
            parse_uri(value, warn=True)  # an unknown option warns, as MongoClient does
        except (PyMongoError, ValueError) as exc:
            raise ValueError(f"{exc} (e.g. mongodb://localhost:27017/jobtrio)") from None
    return value


#: Variables whose value may hold a password (user:password@host): never echoed whole.
_SECRET_URLS = frozenset({"REDIS_URL", "MONGODB_URI"})


def _shown(name: str, raw: str) -> str:
    if name in _SECRET_URLS:
        raw = re.sub(r"//[^/@]*@", "//***@", raw)
    return clip(raw, 80)


def _host_port(text: str) -> str:
    value = text.strip()
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("expected host:port with a port from 1 to 65535")
    return value


def _host_port_list(text: str) -> tuple[str, ...]:
    items = [p.strip() for p in text.split(",") if p.strip()]
    for item in items:
        try:
            _host_port(item)
        except ValueError:
            raise ValueError(
                f"{item!r} is not host:port; expected a comma-separated list of host:port"
            ) from None
    return tuple(items)


def _node_id(text: str) -> str:
    value = text.strip()
    if not value or len(value) > 100 or any(c.isspace() for c in value):
        raise ValueError("expected 1 to 100 characters without spaces")
    return value


# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Settings:
    # server
    server_port: int = 8080
    server_host: str = "0.0.0.0"
    worker_count: int = 10
    node_id: str = "node-1"
    # storage
    sqlite_path: str = "./jobtrio.db"
    mongodb_uri: str = ""
    mongodb_database: str = "jobprocessor"
    mongodb_timeout: float = 30.0
    redis_addr: str = ""
    redis_password: str = ""
    redis_db: int = 0
    redis_url: str = ""
    redis_sentinels: tuple[str, ...] = ()
    redis_sentinel_master: str = "mymaster"
    redis_key_prefix: str = "jobtrio"
    # elections and cluster
    election_algorithm: str = "bully"
    election_timeout: float = 10.0
    election_interval: float = 30.0
    cluster_port: int = 0
    cluster_host: str = "0.0.0.0"
    cluster_advertise: str = ""
    cluster_peers: tuple[str, ...] = ()
    cluster_secret: str = ""
    #: Raft: the number of voters CLUSTER_PEERS must name, this node included (0: no check).
    cluster_size: int = 0
    #: Where the node keeps its own durable files (Raft's term and vote).
    data_dir: str = "."
    # dispatching
    load_balancer_strategy: str = "round_robin"
    dispatch_batch: int = 100
    #: Jobs claimed ahead of free workers (-1: automatic, WORKER_COUNT or more; see dispatcher).
    dispatch_prefetch: int = -1
    #: The queues this node serves (QUEUES: empty for all; see queueplan.py) and their weights.
    queues: tuple[tuple[str, ...], tuple[int, ...] | None] = ((), None)
    #: Most jobs of a queue this node holds at once (QUEUE_CONCURRENCY).
    queue_concurrency: tuple[tuple[str, int], ...] = ()
    # retries
    retry_policy: str = "exponential"
    max_retries: int = 3
    retry_base_delay: float = 1.0
    retry_max_delay: float = 60.0
    retry_multiplier: float = 2.0
    retry_jitter_factor: float = 0.1
    # leases and recovery
    job_lease: float = 15.0
    poison_limit: int = 5
    shutdown_grace: float = 30.0
    max_payload_bytes: int = 1024 * 1024
    #: Largest result a job may return, as JSON bytes; a bigger one fails the attempt.
    max_result_bytes: int = 1024 * 1024
    finished_job_ttl: float = 86400.0
    # security
    auth_enabled: bool = False
    jwt_secret: str = "your-secret-key"
    #: How long a token from POST /auth/login is valid.
    jwt_ttl: float = 3600.0
    #: The users (JSON, argon2 hashes) that may log in; ``jobtrio users`` writes it.
    users_file: str = ""
    tls_enabled: bool = False
    tls_cert_file: str = ""
    tls_key_file: str = ""
    #: CA (PEM) peers' certificates are checked against; empty: the system's CAs.
    tls_ca_file: str = ""
    #: Peers must present a certificate signed by TLS_CA_FILE (mutual TLS on CLUSTER_PORT).
    tls_peer_client_auth: bool = False
    #: ``/metrics`` requires this Bearer token (empty: no token needed).
    metrics_bearer_token: str = ""
    #: ``/metrics`` requires HTTP basic auth with this ``user:password`` (empty: none).
    metrics_basic_auth: str = ""
    # limits
    #: Open event-stream websockets one client address may hold on one node.
    websockets_per_client: int = 16
    # monitoring
    metrics_enabled: bool = True
    metrics_port: int = 9090
    #: Events the event log keeps (the Redis Stream's MAXLEN, or the node's own); 0: no stream.
    event_stream_maxlen: int = 100_000
    log_level: str = "info"

    @property
    def storage(self) -> str:
        """Which backends this node uses: ``sqlite``, ``redis`` or ``redis+mongodb``."""
        if self.redis_configured:
            return "redis+mongodb" if self.mongodb_uri else "redis"
        if self.mongodb_uri:
            return "sqlite+mongodb"
        return "sqlite"

    @property
    def prefetch(self) -> int:
        """Jobs a node claims ahead of its free workers."""
        return self.worker_count if self.dispatch_prefetch < 0 else self.dispatch_prefetch

    @property
    def queue_plan(self) -> QueuePlan:
        """QUEUES and QUEUE_CONCURRENCY as the dispatcher uses them."""
        return QueuePlan(self.queues[0], self.queues[1], self.queue_concurrency)

    @property
    def redis_configured(self) -> bool:
        return bool(self.redis_addr or self.redis_url or self.redis_sentinels)

    @property
    def clustered(self) -> bool:
        return self.cluster_port != 0

    @property
    def advertise(self) -> str:
        """host:port peers use to reach this node's cluster port."""
        if self.cluster_advertise:
            return self.cluster_advertise
        host = self.cluster_host if self.cluster_host not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{host}:{self.cluster_port}"

    @property
    def api_url(self) -> str:
        """The URL peers use to reach this node's HTTP API."""
        host = self.advertise.rpartition(":")[0]
        scheme = "https" if self.tls_enabled else "http"
        return f"{scheme}://{host}:{self.server_port}"

    @property
    def voters(self) -> frozenset[str]:
        """Raft's voting configuration: the CLUSTER_PEERS addresses and this node's."""
        return frozenset({*self.cluster_peers, self.advertise})

    @property
    def raft_state_path(self) -> str:
        """The file that keeps Raft's term and vote across restarts."""
        return os.path.join(self.data_dir, f"raft-{self.node_id}.json")

    def replace(self, **changes: Any) -> Settings:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        values.update(changes)
        return Settings(**values)

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        dotenv_path: str | None = ".env",
        overrides: Mapping[str, str] | None = None,
    ) -> Settings:
        """Read settings: the process environment wins over the ``.env`` file.

        ``overrides`` (variable name -> raw text, e.g. from ``jobtrio serve``'s
        flags) win over both and are parsed and checked like the rest.
        """
        merged: dict[str, str] = {}
        if dotenv_path and os.path.exists(dotenv_path):
            merged.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        merged.update(os.environ if env is None else env)
        merged.update(overrides or {})
        values: dict[str, Any] = {}
        for name, (attr, parser) in _VARIABLES.items():
            if name not in merged:
                continue
            raw = merged[name]
            try:
                values[attr] = parser(raw)
            except ValueError as exc:
                raise ConfigError(f"{name}={_shown(name, raw)} is not valid: {exc}") from None
        settings = cls(**values)
        settings._check_consistency()
        return settings

    def _check_consistency(self) -> None:
        if self.retry_max_delay < self.retry_base_delay:
            raise ConfigError(
                f"RETRY_MAX_DELAY={format_duration(self.retry_max_delay)} is not valid: "
                f"it must be at least RETRY_BASE_DELAY={format_duration(self.retry_base_delay)}"
            )
        if self.tls_enabled and not (self.tls_cert_file and self.tls_key_file):
            raise ConfigError(
                "TLS_ENABLED=true is not valid: TLS_CERT_FILE and TLS_KEY_FILE must both be set"
            )
        if self.auth_enabled and self.jwt_secret in ("", EXAMPLE_JWT_SECRET):
            raise ConfigError(
                "JWT_SECRET is not valid: with AUTH_ENABLED=true it must be set to a secret of "
                "your own (the documented example value is refused); make one with "
                "`openssl rand -hex 32`"
            )
        if self.auth_enabled and len(self.jwt_secret.encode()) < MIN_JWT_SECRET_BYTES:
            raise ConfigError(
                f"JWT_SECRET is not valid: with AUTH_ENABLED=true it must be at least "
                f"{MIN_JWT_SECRET_BYTES} bytes (it is {len(self.jwt_secret.encode())}); make one "
                "with `openssl rand -hex 32`"
            )
        if self.auth_enabled and not self.users_file:
            raise ConfigError(
                "USERS_FILE is not set: with AUTH_ENABLED=true, create users with "
                "`jobtrio users add NAME --role admin --file PATH` and set USERS_FILE=PATH"
            )
        if self.tls_peer_client_auth and not (self.tls_enabled and self.tls_ca_file):
            raise ConfigError(
                "TLS_PEER_CLIENT_AUTH=true is not valid: it needs TLS_ENABLED=true and "
                "TLS_CA_FILE (the CA that signs the peers' certificates)"
            )
        if self.metrics_basic_auth and ":" not in self.metrics_basic_auth:
            raise ConfigError("METRICS_BASIC_AUTH is not valid: expected user:password")
        if self.clustered and self.cluster_port == self.server_port:
            raise ConfigError(
                f"CLUSTER_PORT={self.cluster_port} is not valid: it must differ from SERVER_PORT"
            )
        if self.cluster_peers and not self.clustered:
            raise ConfigError("CLUSTER_PEERS is set but CLUSTER_PORT is not: set CLUSTER_PORT")
        raft = self.clustered and self.election_algorithm == "raft"
        if raft and self.cluster_size and self.cluster_size != len(self.voters):
            raise ConfigError(
                f"CLUSTER_SIZE={self.cluster_size} is not valid: CLUSTER_PEERS with this node "
                f"({self.advertise}) names {len(self.voters)} voters; Raft's quorum comes from "
                f"CLUSTER_PEERS, so list every voting node's CLUSTER_ADVERTISE address there"
            )


#: Environment variable -> (Settings attribute, parser).
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "SERVER_PORT": ("server_port", _int(1, 65535)),
    "SERVER_HOST": ("server_host", _str),
    "WORKER_COUNT": ("worker_count", _int(1, 10000)),
    "NODE_ID": ("node_id", _node_id),
    "SQLITE_PATH": ("sqlite_path", _str),
    "MONGODB_URI": ("mongodb_uri", _mongodb_uri),
    "MONGODB_DATABASE": ("mongodb_database", _str),
    "MONGODB_TIMEOUT": ("mongodb_timeout", _duration(0.001, 3600)),
    "REDIS_ADDR": ("redis_addr", lambda t: _host_port(t) if t.strip() else ""),
    "REDIS_PASSWORD": ("redis_password", lambda t: t),
    "REDIS_DB": ("redis_db", _int(0, 15)),
    "REDIS_URL": ("redis_url", _redis_url),
    "REDIS_SENTINELS": ("redis_sentinels", _host_port_list),
    "REDIS_SENTINEL_MASTER": ("redis_sentinel_master", _str),
    "REDIS_KEY_PREFIX": ("redis_key_prefix", _node_id),
    "ELECTION_ALGORITHM": ("election_algorithm", _choice(ELECTION_ALGORITHMS)),
    "ELECTION_TIMEOUT": ("election_timeout", _duration(0.01, 3600)),
    "ELECTION_INTERVAL": ("election_interval", _duration(0.01, 3600)),
    "CLUSTER_PORT": ("cluster_port", _int(0, 65535)),
    "CLUSTER_HOST": ("cluster_host", _str),
    "CLUSTER_ADVERTISE": ("cluster_advertise", lambda t: _host_port(t) if t.strip() else ""),
    "CLUSTER_PEERS": ("cluster_peers", _host_port_list),
    "CLUSTER_SECRET": ("cluster_secret", lambda t: t),
    "CLUSTER_SIZE": ("cluster_size", _int(0, 1000)),
    "DATA_DIR": ("data_dir", _str),
    "LOAD_BALANCER_STRATEGY": ("load_balancer_strategy", _choice(LOAD_BALANCER_STRATEGIES)),
    "DISPATCH_BATCH": ("dispatch_batch", _int(1, 10000)),
    "DISPATCH_PREFETCH": ("dispatch_prefetch", _int(-1, 100000)),
    "QUEUES": ("queues", parse_queues),
    "QUEUE_CONCURRENCY": ("queue_concurrency", parse_concurrency),
    "RETRY_POLICY": ("retry_policy", _choice(RETRY_POLICIES)),
    "MAX_RETRIES": ("max_retries", _int(0, 1000)),
    "RETRY_BASE_DELAY": ("retry_base_delay", _duration()),
    "RETRY_MAX_DELAY": ("retry_max_delay", _duration()),
    "RETRY_MULTIPLIER": ("retry_multiplier", _float(1.0, 100.0)),
    "RETRY_JITTER_FACTOR": ("retry_jitter_factor", _float(0.0, 1.0)),
    "JOB_LEASE": ("job_lease", _duration(0.05, 86400)),
    "POISON_LIMIT": ("poison_limit", _int(1, 1000)),
    "SHUTDOWN_GRACE": ("shutdown_grace", _duration(0, 86400)),
    "MAX_PAYLOAD_BYTES": ("max_payload_bytes", _int(1, 64 * 1024 * 1024)),
    "MAX_RESULT_BYTES": ("max_result_bytes", _int(1, 64 * 1024 * 1024)),
    "FINISHED_JOB_TTL": ("finished_job_ttl", _duration(0, 10 * 365 * 86400.0)),
    "AUTH_ENABLED": ("auth_enabled", _bool),
    "JWT_SECRET": ("jwt_secret", lambda t: t),
    "JWT_TTL": ("jwt_ttl", _duration(60, 30 * 86400)),
    "USERS_FILE": ("users_file", _str),
    "TLS_ENABLED": ("tls_enabled", _bool),
    "TLS_CERT_FILE": ("tls_cert_file", _str),
    "TLS_KEY_FILE": ("tls_key_file", _str),
    "TLS_CA_FILE": ("tls_ca_file", _str),
    "TLS_PEER_CLIENT_AUTH": ("tls_peer_client_auth", _bool),
    "METRICS_BEARER_TOKEN": ("metrics_bearer_token", lambda t: t),
    "METRICS_BASIC_AUTH": ("metrics_basic_auth", lambda t: t),
    "WEBSOCKETS_PER_CLIENT": ("websockets_per_client", _int(1, 10000)),
    "METRICS_ENABLED": ("metrics_enabled", _bool),
    "METRICS_PORT": ("metrics_port", _int(0, 65535)),
    "EVENT_STREAM_MAXLEN": ("event_stream_maxlen", _int(0, 100_000_000)),
    "LOG_LEVEL": ("log_level", _choice(LOG_LEVELS)),
}

ENVIRONMENT_VARIABLES = tuple(_VARIABLES)
