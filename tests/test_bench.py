"""``jobtrio bench``: every scenario runs on every backend and reports its shape; bad flags exit 2.

Tiny counts, one run: these tests pin what the command produces (the JSON
keys, one figure per run, the table), never how fast anything is.
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

import pytest
import redis

from jobtrio.cli import main as cli_main

TINY = [
    "--jobs", "30",
    "--runs", "1",
    "--workers", "4",
    "--clients", "2",
    "--post-seconds", "0.2",
    "--rate", "200",
    "--rate-jobs", "20",
    "--latency-samples", "3",
    "--memory-counts", "20,40",
]  # fmt: skip

#: What each scenario reports on every backend (Redis adds the drain's Redis CPU).
SHAPE = {
    "drain": {
        "full_queue_jobs_per_s",
        "full_queue_first_to_last_jobs_per_s",
        "full_queue_recorded_jobs_per_s",
        "with_producer_jobs_per_s",
        "in_process_enqueue_jobs_per_s",
    },
    "enqueue": {"http_batch_jobs_per_s", "submit_many_jobs_per_s"},
    "burst": {"burst_jobs_per_s", "drain_jobs_per_s", "burst_to_drain"},
    "latency": {
        "single_post_jobs_per_s",
        "ceiling_requests_per_s",
        "post_to_ceiling",
        "loaded_p50_ms",
        "loaded_p99_ms",
        "idle_p50_ms",
        "idle_p99_ms",
    },
    "memory": {"rss_idle_mib", "rss_after_20_mib", "rss_after_40_mib", "last_growth"},
}
REDIS_ONLY = {"drain": {"redis_cpu_us_per_job", "redis_script_us_per_job"}}


def bench(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli_main(["bench", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("backend", ["memory", "sqlite", "redis"])
def test_every_scenario_reports_its_figures(
    backend: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    # on Redis without --redis-url the bench starts a redis-server of its own
    monkeypatch.delenv("REDIS_URL", raising=False)
    out_file = tmp_path / "bench.json"
    code, out, err = bench(
        capsys, "--backend", backend, "--scenario", "all", "--json", str(out_file), *TINY
    )
    assert code == 0, err
    result = json.loads(out_file.read_text())
    assert result["backend"] == backend and result["runs"] == 1
    assert list(result["scenarios"]) == list(SHAPE)
    for name, keys in SHAPE.items():
        expected = keys | (REDIS_ONLY.get(name, set()) if backend == "redis" else set())
        scenario = result["scenarios"][name]
        assert set(scenario["median"]) == expected, name
        assert [set(run) for run in scenario["runs"]] == [expected]
        for key in expected - {"last_growth"}:
            value = scenario["median"][key]
            if key == "full_queue_first_to_last_jobs_per_s" and value is None:
                continue  # 30 jobs may all end between two polls: no first completion seen
            assert isinstance(value, float) and math.isfinite(value) and value > 0, (name, key)
    # with FILE the table still goes to stdout; each run is on stderr as it ends
    assert "drain of a full queue" in out and "node RSS after 40 completed" in out
    assert "(ceiling)" in out
    for name in SHAPE:
        assert f"{name} run 1/1:" in err


def test_json_without_a_file_is_stdout_only(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    code, out, err = bench(capsys, "--backend", "memory", "--json", *TINY)
    assert code == 0, err
    result = json.loads(out)
    assert list(result["scenarios"]) == ["drain"]  # the default scenario
    assert result["machine"]["cpus"] >= 1 and result["machine"]["load_before"]


def test_a_shared_redis_keeps_none_of_the_bench_keys(
    capsys: pytest.CaptureFixture[str], redis_url: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    before = set(client.scan_iter(match="bench*"))
    code, _, err = bench(
        capsys,
        "--backend", "redis",
        "--redis-url", redis_url,
        "--scenario", "drain,enqueue,burst",
        "--json", "-",
        *TINY,
    )  # fmt: skip
    assert code == 0, err
    assert set(client.scan_iter(match="bench*")) == before
    client.close()


def test_on_redis_each_job_does_the_peers_one_incr(
    capsys: pytest.CaptureFixture[str], redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtrio.bench import inprocess

    args = ("--backend", "redis", "--redis-url", redis_url, "--scenario", "drain,burst")
    code, out, err = bench(capsys, *args, "--json", "-", *TINY)
    assert code == 0, err
    assert json.loads(out)["job_body"] == "incr"  # the default on Redis, like the peers' body
    # the counter is checked: a body that did not run cannot pass for a fast drain
    monkeypatch.setattr(inprocess, "INCR_COMMAND", "EXISTS")  # one round trip, no count
    code, out, err = bench(capsys, *args, "--json", "-", *TINY)
    assert code != 0
    assert "bench.incr ran 0 of 30 jobs" in err and "Traceback" not in err
    code, out, err = bench(capsys, *args, "--job-body", "noop", "--json", "-", *TINY)
    assert code == 0, err
    assert json.loads(out)["job_body"] == "noop"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--scenario", "drains"], "argument --scenario: unknown scenario drains; choose from"),
        (["--scenario", ","], "argument --scenario: unknown scenario"),
        (["--memory-counts", "100,50"], "argument --memory-counts: '100,50': counts must be"),
        (["--memory-counts", "1e5"], "argument --memory-counts: '1e5' is not a comma-separated"),
        (["--rate", "0"], "argument --rate: must be more than 0, got 0"),
        (["--post-seconds", "nan"], "argument --post-seconds: must be more than 0"),
        (["--event-consumers", "-1"], "argument --event-consumers: must be 0 or more"),
        (["--runs", "0"], "argument --runs: must be 1 or more, got 0"),
        (["--json", "/nonexistent/dir/out.json"], "--json /nonexistent/dir/out.json: no such"),
        (["--compare", "bullmq,sidekiq"], "argument --compare: unknown peer sidekiq; choose from"),
        (["--job-body", "incr"], "--job-body incr needs --backend redis (not sqlite)"),
        (["--job-body", "sleep"], "argument --job-body: invalid choice: 'sleep'"),
    ],
)
def test_bad_flags_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = bench(capsys, *args)
    assert code == 2
    assert message in err, err
    assert "Traceback" not in err and out == ""


def test_help_lists_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = bench(capsys, "--help")
    assert code == 0
    assert "usage: jobtrio bench" in out
    for word in ("drain, enqueue, burst, latency, memory", "--memory-counts", "--compare"):
        assert word in " ".join(out.split()), word


def test_compare_skips_a_peer_whose_tool_is_missing_with_one_line(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    redis_url: str,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm, no node
    code, out, err = bench(
        capsys,
        "--backend", "redis",
        "--redis-url", redis_url,
        "--compare", "bullmq",
        "--peers-cache", str(tmp_path / "cache"),
        "--json", "-",
        *TINY,
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["peers"]["bullmq"]["skipped"] == "npm is not on the PATH"
    assert result["peers"]["bullmq"]["runs"] == []
    assert "bullmq: skipped, npm is not on the PATH\n" in err
    # the peers are compared on the drain and the enqueue: both ran though only drain was asked
    assert list(result["scenarios"]) == ["drain", "enqueue"]


def test_a_failed_peer_install_is_one_line_and_retried_next_time(tmp_path: Path) -> None:
    from jobtrio.bench.peers import Skipped, _install

    fail = [sys.executable, "-c", "import sys; print('resolving'); sys.exit('no matching version')"]
    with pytest.raises(Skipped, match=r"^python\S* -c import sys.* failed: no matching version$"):
        _install(tmp_path, "recipe", [fail])
    assert not (tmp_path / ".ready").exists()
    _install(tmp_path, "recipe", [[sys.executable, "-c", "pass"]])
    assert (tmp_path / ".ready").read_text() == "recipe"
    _install(tmp_path, "recipe", [fail])  # ready with the same recipe: nothing runs again


@pytest.mark.slow
def test_compare_runs_the_peers_set_up_in_the_cache(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtrio.bench.peers import PEERS

    cache = Path.home() / ".cache" / "jobtrio-bench"
    ready = [n for n, p in PEERS.items() if (cache / f"{n}-{p.version}" / ".ready").exists()]
    if not ready:
        pytest.skip("no peer is set up in ~/.cache/jobtrio-bench (jobtrio bench --compare does it)")
    monkeypatch.delenv("REDIS_URL", raising=False)
    code, out, err = bench(
        capsys, "--backend", "redis", "--compare", ",".join(ready), "--json", "-", *TINY
    )
    assert code == 0, err
    peers = json.loads(out)["peers"]
    for name in ready:
        assert peers[name]["skipped"] is None, peers[name]
        assert set(peers[name]["median"]) == {"drain_jobs_per_s", "enqueue_jobs_per_s"}
        assert all(v > 0 for v in peers[name]["median"].values())


def test_a_failed_run_is_one_line_naming_the_scenario_and_run(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from jobtrio.bench import scenarios

    def broken(ctx: scenarios.Context) -> dict[str, float]:
        raise ExceptionGroup("nursery", [RuntimeError("POST /api/v1/jobs: 500")])

    monkeypatch.setitem(scenarios.SCENARIOS, "drain", broken)
    code, out, err = bench(capsys, "--backend", "memory", *TINY)
    assert code == 1 and out == ""
    assert err.strip().splitlines()[-1] == (
        "jobtrio bench: drain run 1 failed: RuntimeError: POST /api/v1/jobs: 500"
    )


@pytest.mark.parametrize(
    ("script", "argv", "said"),
    [
        ("bench_enqueue_cpu.py", [], "usage: URL JOBS PAIRS [SRC ...]: missing arguments"),
        ("bench_burst_cpu.py", ["redis://127.0.0.1:1", "many", "3"], "jobs must be"),
        ("bench_due_claim.py", ["redis://127.0.0.1:1", "10", "0"], "rounds must be"),
        ("bench_due_claim.py", ["http://127.0.0.1:1", "10", "2"], "is a Redis URL"),
        ("bench_due_claim.py", ["redis://127.0.0.1:1", "10", "2", "/src"], "unexpected"),
    ],
)
def test_the_positional_bench_scripts_name_a_bad_command_line(script, argv, said) -> None:
    """They took ``argv[0]`` and ``int(argv[1])`` as given: a traceback (IndexError,
    ValueError) for a missing or wrong argument, even for ``--help``."""
    import subprocess

    folder = Path(__file__).resolve().parent.parent / "bench"
    done = subprocess.run(
        [sys.executable, str(folder / script), *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1
    assert said in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run(
        [sys.executable, str(folder / script), "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0 and "python bench/" + script in helped.stdout


@pytest.mark.slow
def test_the_enqueue_cpu_pairs_serve_each_sides_tree(redis_url: str, tmp_path: Path) -> None:
    """``bench_enqueue_cpu.py ... SRC``: the served node runs SRC's code. It is started with
    ``python -m``, which puts its working directory first on sys.path: run from a checkout,
    every side's node ran the checkout's code whatever PYTHONPATH said."""
    import shutil
    import subprocess

    root = Path(__file__).resolve().parent.parent
    tree = tmp_path / "tree"
    shutil.copytree(root / "jobtrio", tree / "jobtrio")
    mark = tmp_path / "served-from"
    child = tree / "jobtrio" / "bench" / "child.py"
    marking = "import os as _os\nopen(_os.environ['SERVED_MARK'], 'a').write(__file__ + '\\n')\n"
    text = child.read_text()
    at = text.index("from __future__ import annotations\n") + 35  # the first statement after it
    child.write_text(text[:at] + marking + text[at:])
    done = subprocess.run(
        [sys.executable, "bench/bench_enqueue_cpu.py", redis_url, "1000", "1", str(tree)],
        cwd=root,  # a checkout holding another jobtrio
        env={**os.environ, "SERVED_MARK": str(mark)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert mark.exists() and mark.read_text().splitlines() == [str(child)]
