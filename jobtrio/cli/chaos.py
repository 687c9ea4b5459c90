"""``jobtrio chaos``: the chaos test of real processes, by hand and for as long as you like.

    jobtrio chaos --duration 10m                  # 3 nodes, every fault
    jobtrio chaos --nodes 5 --duration 10m --seed 42
    jobtrio chaos --faults kill,pause --json

Exits 0 when the checker finds nothing lost, unexpected, completed twice or
stuck, 1 otherwise (the problems are listed). ``jobtrio.chaos`` is the run;
this module is the command and what it prints.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
from pathlib import Path

import click

from ..chaos import FAULTS, ChaosOptions, ChaosResult, run_chaos
from ..chaos.checker import MUST_BE_ZERO
from ..localcluster import ClusterFailure
from .exits import EXIT_FAILURE, EXIT_OK
from .output import err, out, print_json
from .params import DURATION


def _faults(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [n for n in names if n not in FAULTS]
    if unknown or not names:
        raise click.BadParameter(
            f"{','.join(unknown) or 'nothing'} is not a fault; choose from {','.join(FAULTS)}"
        )
    return names


@click.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=3, show_default=True)
@click.option(
    "--duration",
    type=DURATION,
    default="1m",
    show_default=True,
    help="How long clients submit jobs while the nemesis injects faults.",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=None,
    help="Seed of the workload and the nemesis (random when omitted; printed).",
)
@click.option(
    "--faults",
    callback=_faults,
    default=",".join(FAULTS),
    show_default=True,
    help="Which faults the nemesis injects, comma-separated.",
)
@click.option(
    "--fault-interval",
    type=DURATION,
    default="3s",
    show_default=True,
    help="Calm between two faults.",
)
@click.option(
    "--clock-skew",
    type=float,
    default=5.0,
    show_default=True,
    help="Seconds the last node's clock is ahead (negative: behind; 0: none).",
)
@click.option("--job-lease", type=DURATION, default="3s", show_default=True)
@click.option(
    "--rate",
    type=click.FloatRange(0.1, 1000),
    default=10.0,
    show_default=True,
    help="Jobs submitted a second, all clients together.",
)
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the nodes' logs and Redis's data go (a temporary folder, removed "
    "after a clean run, when omitted).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def chaos(
    nodes: int,
    duration: float,
    seed: int | None,
    faults: tuple[str, ...],
    fault_interval: float,
    clock_skew: float,
    job_lease: float,
    rate: float,
    data_dir: Path | None,
    as_json: bool,
) -> int:
    """Run real nodes and Redis under faults and check no job is lost, duplicated or stuck."""
    folder = data_dir or Path(tempfile.mkdtemp(prefix="jobtrio-chaos-"))
    options = ChaosOptions(
        data_dir=folder,
        nodes=nodes,
        duration=duration,
        seed=seed,
        faults=faults,
        fault_interval=fault_interval,
        clock_skew=clock_skew,
        job_lease=job_lease,
        rate=rate,
    )
    try:
        result = run_chaos(options, log=lambda line: err.print(line))
    except ClusterFailure as exc:
        err.print(f"chaos: {exc}; logs in {folder / 'logs'}")
        return EXIT_FAILURE
    if as_json:
        print_json(_as_dict(result))
    else:
        _print(result)
    if result.verdict.ok and data_dir is None:
        shutil.rmtree(folder, ignore_errors=True)
    elif not result.verdict.ok:
        err.print(f"logs and Redis data kept in {folder}")
    return EXIT_OK if result.verdict.ok else EXIT_FAILURE


def _as_dict(result: ChaosResult) -> dict[str, object]:
    return {
        "seed": result.seed,
        "run_id": result.run_id,
        "seconds": round(result.seconds, 1),
        **result.verdict.as_dict(),
        "faults": [dataclasses.asdict(f) for f in result.faults],
    }


def _print(result: ChaosResult) -> None:
    counts = dataclasses.asdict(result.verdict.counts)
    injected: dict[str, int] = {}
    for f in result.faults:
        injected[f.fault] = injected.get(f.fault, 0) + 1
    out.print(
        f"seed {result.seed}, {result.seconds:.0f}s, faults: "
        + (", ".join(f"{k} x{v}" for k, v in sorted(injected.items())) or "none")
    )
    for name, value in counts.items():
        flag = "  <- must be 0" if name in MUST_BE_ZERO and value else ""
        out.print(f"  {name.replace('_', ' '):24} {value}{flag}")
    for line in result.verdict.problems:
        out.print(f"  ! {line}")
    out.print("OK" if result.verdict.ok else "FAILED")
