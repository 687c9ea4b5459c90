"""Settings: every bad value is one line naming the variable, the value and what is allowed.

Also: the ``.env`` file is read and the environment wins over it, every
variable is documented in ``deploy/.env.example`` with its true default, and
``jobtrio serve`` with a bad variable exits 2 with that one line and no
traceback.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jobtrio.config import ENVIRONMENT_VARIABLES, ConfigError, Settings

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / ".env.example"
JOBTRIO = Path(sys.executable).parent / "jobtrio"


def load(env: dict[str, str], dotenv: Path | None = None) -> Settings:
    return Settings.from_env(env=env, dotenv_path=str(dotenv) if dotenv else None)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"WORKER_COUNT": "abc"}, ["WORKER_COUNT='abc'", "integer from 1 to 10000"]),
        ({"WORKER_COUNT": "0"}, ["WORKER_COUNT='0'", "integer from 1 to 10000"]),
        ({"SERVER_PORT": "99999"}, ["SERVER_PORT='99999'", "from 1 to 65535"]),
        ({"SERVER_PORT": "http"}, ["SERVER_PORT='http'", "from 1 to 65535"]),
        ({"REDIS_DB": "16"}, ["REDIS_DB='16'", "from 0 to 15"]),
        ({"MAX_PAYLOAD_BYTES": "0"}, ["MAX_PAYLOAD_BYTES='0'", "integer from 1"]),
        ({"ELECTION_ALGORITHM": "paxos"}, ["ELECTION_ALGORITHM='paxos'", "bully, raft, gossip"]),
        (
            {"LOAD_BALANCER_STRATEGY": "fastest"},
            ["LOAD_BALANCER_STRATEGY='fastest'", "round_robin, least_loaded, random, priority"],
        ),
        ({"RETRY_POLICY": "linear"}, ["RETRY_POLICY='linear'", "fixed, exponential"]),
        ({"LOG_LEVEL": "verbose"}, ["LOG_LEVEL='verbose'", "debug, info, warning, error"]),
        ({"RETRY_JITTER_FACTOR": "2"}, ["RETRY_JITTER_FACTOR='2'", "number from 0 to 1"]),
        ({"RETRY_JITTER_FACTOR": "lots"}, ["RETRY_JITTER_FACTOR='lots'", "number from 0 to 1"]),
        ({"RETRY_MULTIPLIER": "0.5"}, ["RETRY_MULTIPLIER='0.5'", "number from 1 to 100"]),
        ({"ELECTION_TIMEOUT": "10 parsecs"}, ["ELECTION_TIMEOUT='10 parsecs'", "500ms, 10s"]),
        ({"ELECTION_TIMEOUT": "0s"}, ["ELECTION_TIMEOUT='0s'", "duration from 10ms to 1h"]),
        ({"RETRY_BASE_DELAY": "-1s"}, ["RETRY_BASE_DELAY='-1s'", "duration"]),
        ({"JOB_LEASE": "2d"}, ["JOB_LEASE='2d'", "duration such as"]),
        ({"SHUTDOWN_GRACE": "tomorrow"}, ["SHUTDOWN_GRACE='tomorrow'", "duration"]),
        ({"AUTH_ENABLED": "maybe"}, ["AUTH_ENABLED='maybe'", "true or false"]),
        ({"METRICS_ENABLED": "2"}, ["METRICS_ENABLED='2'", "true or false"]),
        ({"TLS_ENABLED": "enabled"}, ["TLS_ENABLED='enabled'", "true or false"]),
        ({"REDIS_ADDR": "localhost"}, ["REDIS_ADDR='localhost'", "host:port"]),
        ({"REDIS_URL": "http://cache:6379"}, ["REDIS_URL='http://cache:6379'", "redis://"]),
        ({"REDIS_URL": "redis://cache:port"}, ["REDIS_URL=", "Port could not be cast"]),
        (
            {"REDIS_URL": "redis://cache:6379/0?socket_timeout=soon"},
            ["REDIS_URL=", "Invalid value for 'socket_timeout'"],
        ),
        # the password is never echoed: a log line is no place for it
        (
            {"REDIS_URL": "redis://:hunter2@cache:port"},
            ["REDIS_URL='redis://***@cache:port'", "Port could not be cast"],
        ),
        ({"MONGODB_URI": "http://db"}, ["MONGODB_URI='http://db'", "mongodb://"]),
        ({"MONGODB_URI": "mongodb://"}, ["MONGODB_URI=", "at least one hostname"]),
        (
            {"MONGODB_URI": "mongodb://app:hunter2@db:99999/jobs"},
            ["MONGODB_URI='mongodb://***@db:99999/jobs'", "Port must be an integer"],
        ),
        ({"REDIS_ADDR": "localhost:70000"}, ["REDIS_ADDR='localhost:70000'", "1 to 65535"]),
        (
            {"REDIS_SENTINELS": "s1:26379,s2"},
            ["REDIS_SENTINELS='s1:26379,s2'", "'s2' is not host:port", "comma-separated"],
        ),
        (
            {"CLUSTER_PORT": "7946", "CLUSTER_PEERS": "node-2:7946,:7946"},
            ["CLUSTER_PEERS='node-2:7946,:7946'", "host:port"],
        ),
        ({"NODE_ID": "node one"}, ["NODE_ID='node one'", "without spaces"]),
        ({"NODE_ID": ""}, ["NODE_ID=''", "1 to 100 characters"]),
        (
            {"TLS_ENABLED": "true"},
            ["TLS_ENABLED=true", "TLS_CERT_FILE and TLS_KEY_FILE must both be set"],
        ),
        (
            {"TLS_ENABLED": "true", "TLS_CERT_FILE": "/etc/ssl/app.crt"},
            ["TLS_ENABLED=true", "TLS_KEY_FILE"],
        ),
        ({"AUTH_ENABLED": "true"}, ["JWT_SECRET", "AUTH_ENABLED=true", "example value"]),
        (
            {"AUTH_ENABLED": "true", "JWT_SECRET": "your-secret-key"},
            ["JWT_SECRET", "example value is refused"],
        ),
        ({"AUTH_ENABLED": "true", "JWT_SECRET": ""}, ["JWT_SECRET", "AUTH_ENABLED=true"]),
        ({"AUTH_ENABLED": "true", "JWT_SECRET": "a"}, ["JWT_SECRET", "at least 32 bytes"]),
        (
            {"AUTH_ENABLED": "true", "JWT_SECRET": "x" * 32},
            ["USERS_FILE is not set", "jobtrio users add"],
        ),
        (
            {"TLS_PEER_CLIENT_AUTH": "true"},
            ["TLS_PEER_CLIENT_AUTH=true", "TLS_CA_FILE"],
        ),
        ({"METRICS_BASIC_AUTH": "nocolon"}, ["METRICS_BASIC_AUTH", "user:password"]),
        (
            {"RETRY_BASE_DELAY": "2m", "RETRY_MAX_DELAY": "30s"},
            ["RETRY_MAX_DELAY=30s", "at least RETRY_BASE_DELAY=2m"],
        ),
        (
            {"CLUSTER_PORT": "8080", "SERVER_PORT": "8080"},
            ["CLUSTER_PORT=8080", "differ from SERVER_PORT"],
        ),
        ({"CLUSTER_PEERS": "node-2:7946"}, ["CLUSTER_PEERS", "CLUSTER_PORT"]),
    ],
)
def test_a_bad_value_is_one_line_naming_variable_value_and_what_is_allowed(
    env: dict[str, str], expected: list[str]
) -> None:
    with pytest.raises(ConfigError) as refused:
        load(env)
    message = str(refused.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, message


def test_defaults_are_the_seeds() -> None:
    s = load({})
    assert (s.server_port, s.server_host, s.worker_count, s.node_id) == (
        8080,
        "0.0.0.0",
        10,
        "node-1",
    )
    assert (s.election_algorithm, s.election_timeout, s.election_interval) == ("bully", 10, 30)
    assert (s.retry_policy, s.max_retries, s.retry_base_delay, s.retry_max_delay) == (
        "exponential",
        3,
        1.0,
        60.0,
    )
    assert (s.retry_multiplier, s.retry_jitter_factor) == (2.0, 0.1)
    assert (s.auth_enabled, s.tls_enabled, s.metrics_enabled, s.metrics_port) == (
        False,
        False,
        True,
        9090,
    )
    assert s.storage == "sqlite"


def test_values_are_parsed_generously_where_it_is_unambiguous() -> None:
    s = load(
        {
            "ELECTION_ALGORITHM": " RAFT ",
            "ELECTION_TIMEOUT": "2m30s",
            "ELECTION_INTERVAL": "1.5",
            "RETRY_BASE_DELAY": "250ms",
            "AUTH_ENABLED": "yes",
            "JWT_SECRET": "a-real-secret-of-at-least-32-bytes",
            "USERS_FILE": "/etc/jobtrio/users.json",
            "METRICS_ENABLED": "off",
            "REDIS_SENTINELS": "s1:26379, s2:26379",
            "CLUSTER_PORT": "7946",
            "CLUSTER_PEERS": "node-2:7946,node-3:7946,",
        }
    )
    assert s.election_algorithm == "raft"
    assert s.election_timeout == 150.0
    assert s.election_interval == 1.5
    assert s.retry_base_delay == 0.25
    assert s.auth_enabled is True and s.metrics_enabled is False
    assert s.redis_sentinels == ("s1:26379", "s2:26379")
    assert s.cluster_peers == ("node-2:7946", "node-3:7946")
    assert s.storage == "redis"


def test_the_env_file_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text(
        "# a comment\n"
        "WORKER_COUNT=7\n"
        "NODE_ID=from-file\n"
        "ELECTION_TIMEOUT='5s'\n"
        "export LOG_LEVEL=debug\n"
    )
    s = load({"NODE_ID": "from-env"}, dotenv)
    assert s.worker_count == 7
    assert s.election_timeout == 5.0
    assert s.log_level == "debug"
    assert s.node_id == "from-env"


def test_a_bad_value_in_the_env_file_is_reported_like_one_in_the_environment(
    tmp_path: Path,
) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("RETRY_JITTER_FACTOR=2\n")
    with pytest.raises(ConfigError, match=r"RETRY_JITTER_FACTOR='2' is not valid"):
        load({}, dotenv)
    # and the environment can override the bad file value
    assert load({"RETRY_JITTER_FACTOR": "0.5"}, dotenv).retry_jitter_factor == 0.5


def test_a_missing_env_file_is_fine() -> None:
    assert load({}, Path("/nonexistent/.env")).worker_count == 10


# --------------------------------------------------------------------------
# deploy/.env.example


def example_assignments() -> dict[str, str]:
    found: dict[str, str] = {}
    for line in EXAMPLE.read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            assert match.group(1) not in found, f"{match.group(1)} is set twice"
            found[match.group(1)] = match.group(2)
    return found


def test_every_variable_is_documented_in_the_example() -> None:
    documented = example_assignments()
    missing = [name for name in ENVIRONMENT_VARIABLES if name not in documented]
    assert not missing, f"deploy/.env.example lacks {', '.join(missing)}"
    unknown = [name for name in documented if name not in ENVIRONMENT_VARIABLES]
    assert not unknown, f"deploy/.env.example sets unknown variables {', '.join(unknown)}"


def test_every_variable_in_the_example_has_a_comment_saying_what_it_means() -> None:
    lines = EXAMPLE.read_text().splitlines()
    for i, line in enumerate(lines):
        if re.match(r"^[A-Z][A-Z0-9_]*=", line):
            above = lines[i - 1]
            assert above.startswith("# ") and len(above) > 10, f"{line} has no comment above it"


def test_the_example_states_the_true_defaults() -> None:
    assert Settings.from_env(env={}, dotenv_path=str(EXAMPLE)) == Settings()


# --------------------------------------------------------------------------
# jobtrio serve with bad settings


def run_serve(tmp_path: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ENVIRONMENT_VARIABLES}
    return subprocess.run(
        [str(JOBTRIO), "serve", *args],
        env={**clean, **env},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"WORKER_COUNT": "abc"},
            "jobtrio: WORKER_COUNT='abc' is not valid: expected an integer from 1 to 10000",
        ),
        (
            {"ELECTION_ALGORITHM": "paxos"},
            "jobtrio: ELECTION_ALGORITHM='paxos' is not valid: expected one of bully, raft, gossip",
        ),
        (
            {"TLS_ENABLED": "true"},
            "jobtrio: TLS_ENABLED=true is not valid: TLS_CERT_FILE and TLS_KEY_FILE must both "
            "be set",
        ),
        (
            {"AUTH_ENABLED": "true", "JWT_SECRET": "short"},
            "jobtrio: JWT_SECRET is not valid: with AUTH_ENABLED=true it must be at least 32 "
            "bytes (it is 5); make one with `openssl rand -hex 32`",
        ),
        (
            {"AUTH_ENABLED": "true", "JWT_SECRET": "k" * 32, "USERS_FILE": "/nonexistent/u.json"},
            "jobtrio: USERS_FILE=/nonexistent/u.json is not usable: /nonexistent/u.json does not "
            "exist: create it with `jobtrio users add NAME --role admin --file "
            "/nonexistent/u.json`",
        ),
    ],
)
def test_serve_with_a_bad_variable_exits_2_with_one_line(
    tmp_path: Path, env: dict[str, str], line: str
) -> None:
    result = run_serve(tmp_path, env)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [line]
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_serve_with_a_bad_value_in_dot_env_exits_2(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVER_PORT=99999\n")
    result = run_serve(tmp_path, {})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "jobtrio: SERVER_PORT='99999' is not valid: expected an integer from 1 to 65535"
    ]


def test_serve_with_an_empty_env_file_option_ignores_dot_env(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVER_PORT=99999\n")
    result = run_serve(tmp_path, {"WORKER_COUNT": "x"}, "--env-file", "")
    assert result.returncode == 2
    # the bad .env value is never read: only the environment's is reported
    assert result.stderr.splitlines() == [
        "jobtrio: WORKER_COUNT='x' is not valid: expected an integer from 1 to 10000"
    ]


def test_serve_with_a_missing_env_file_or_app_exits_2(tmp_path: Path) -> None:
    result = run_serve(tmp_path, {}, "--env-file", "missing.env")
    assert result.returncode == 2
    assert result.stderr.splitlines() == ["jobtrio: --env-file missing.env: no such file"]
    result = run_serve(tmp_path, {}, "--app", "no_such_module:registry")
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1
    assert "cannot import 'no_such_module'" in result.stderr
