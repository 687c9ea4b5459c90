"""monitoring/: Prometheus config and alert rules that promtool accepts, Grafana dashboards
whose every query names only metrics a node exports.

promtool comes from Debian's ``prometheus`` package (``.ci/run`` installs it);
without it the promtool tests are skipped with that reason.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from jobtrio.metrics import NodeMetrics

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "monitoring"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool is not installed (Debian's prometheus package; .ci/run installs it)",
)

#: PromQL words that look like metric names but are not.
KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "and",
    "or",
    "unless",
    "inf",
    "nan",
}


def exported() -> set[str]:
    """Every series name a node's /metrics can carry (counters' _total, histograms' parts)."""
    names = set()
    for family in NodeMetrics("x").registry.collect():
        if family.type == "counter":
            names.add(family.name + "_total")
        elif family.type == "histogram":
            names |= {family.name + s for s in ("_bucket", "_count", "_sum")}
        else:
            names.add(family.name)
    return names


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        rest = text[match.end() :].lstrip()
        if rest.startswith("(") or word.lower() in KEYWORDS:
            continue  # a function or an operator
        names.add(word)
    return names


def test_metric_names_are_read_from_promql() -> None:
    expr = (
        "histogram_quantile(0.99, sum by (le, route) "
        '(rate(api_request_duration_seconds_bucket{x="a b"}[5m])))'
        " / on (instance) group_left max(node_is_leader) or absent(nothing_here)"
    )
    assert metric_names(expr) == {
        "api_request_duration_seconds_bucket",
        "node_is_leader",
        "nothing_here",
    }


def panels(dashboard: dict) -> list[dict]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # rows
    return out


def test_there_are_the_three_dashboards() -> None:
    titles = {json.loads(p.read_text())["uid"] for p in DASHBOARDS}
    assert titles == {"jobtrio-cluster", "jobtrio-jobs", "jobtrio-node"}


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_every_panel_query_names_only_metrics_the_node_exports(path: Path) -> None:
    dashboard = json.loads(path.read_text())
    known = exported()
    datasource = yaml.safe_load(
        (MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]["uid"]
    queries = 0
    for panel in panels(dashboard):
        assert panel["datasource"]["uid"] == datasource, panel["title"]
        for target in panel.get("targets", []):
            names = metric_names(target["expr"])
            assert names, f"{panel['title']}: a query without a metric"
            assert names <= known, f"{panel['title']}: {sorted(names - known)} not exported"
            queries += 1
    assert queries >= 8


def test_alerts_name_only_exported_metrics_and_the_required_ones_exist() -> None:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())["groups"][0]["rules"]
    known = exported() | {"up"}  # up: Prometheus' own, per scrape target
    for rule in rules:
        names = metric_names(rule["expr"])
        assert names <= known, f"{rule['alert']}: {sorted(names - known)}"
    assert {
        "JobtrioNoLeader",
        "JobtrioNodeDown",
        "JobtrioQueueWaitHigh",
        "JobtrioBackendDown",
        "JobtrioPoisonJobs",
    } <= {r["alert"] for r in rules}


def test_prometheus_scrapes_the_compose_nodes() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    targets = job["static_configs"][0]["targets"]
    assert targets == ["node1:9090", "node2:9090", "node3:9090"]
    assert config["rule_files"] == ["alerts.yml"]


@needs_promtool
def test_promtool_accepts_the_config_and_the_rules() -> None:
    for args in (
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],  # the alerts fire when they should
    ):
        result = subprocess.run(
            [PROMTOOL, *args], cwd=MONITORING, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
