"""``jobtrio sim``: run seeds, print what broke and the command that replays it.

    jobtrio sim --seed 42 --nodes 5 --algorithm raft
    jobtrio sim --seeds 1..200 --algorithm all --duration 10 --json
    jobtrio sim --seed 7 --plant fencing          # a known bug: must be caught

Exit codes: 0 every run held every invariant, 1 at least one violation,
2 a usage error. ``--json`` prints one JSON object per run on stdout (and
nothing else there), so a sweep can be piped to ``jq``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator, Sequence
from typing import TextIO

from ..config import ELECTION_ALGORITHMS
from .runner import DEFAULT_FAULTS, FAULT_KINDS, PLANTS, SimConfig, SimResult, run

EXIT_OK, EXIT_VIOLATION, EXIT_USAGE = 0, 1, 2


def parse_seeds(text: str) -> range:
    """``A..B`` (inclusive) or a single number."""
    first, sep, last = text.partition("..")
    try:
        a = int(first)
        b = int(last) if sep else a
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a seed range such as 1..200") from None
    if b < a:
        raise argparse.ArgumentTypeError(f"seed range {text!r} is empty")
    return range(a, b + 1)


def parse_faults(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if names == ("none",):
        return ()
    unknown = [n for n in names if n not in FAULT_KINDS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown) or '(empty)'}; "
            f"choose from {','.join(FAULT_KINDS)} or none"
        )
    return names


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jobtrio sim",
        description=(
            "Deterministic simulation of a whole cluster (real nodes, simulated network, "
            "clock and faults). One seed decides everything; a failing run prints the "
            "command that replays it."
        ),
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("--seed", type=int, help="Run this one seed (default 1).")
    which.add_argument("--seeds", type=parse_seeds, metavar="A..B", help="Run seeds A to B.")
    p.add_argument("--nodes", type=int, default=5, help="Cluster size (default 5).")
    p.add_argument(
        "--algorithm",
        choices=(*ELECTION_ALGORITHMS, "all"),
        default="raft",
        help="Election algorithm, or all (each seed runs each one). Default raft.",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=30.0,
        help="Simulated seconds of the safety phase, with faults (default 30).",
    )
    p.add_argument(
        "--faults",
        type=parse_faults,
        default=DEFAULT_FAULTS,
        metavar="LIST",
        help=(
            f"Faults to inject: {','.join(FAULT_KINDS)}, or none "
            f"(default {','.join(DEFAULT_FAULTS)}; skew is opt-in)."
        ),
    )
    p.add_argument("--clients", type=int, default=2, help="Concurrent clients (default 2).")
    p.add_argument("--workers", type=int, default=3, help="Workers per node (default 3).")
    p.add_argument(
        "--plant",
        choices=PLANTS,
        help=(
            "Plant a known bug (a safety mechanism switched off), to see the simulator "
            "catch it; each plant and the faults that catch it are in docs/simulation.md."
        ),
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help=(
            "Count known limitations as violations (there are none today; see docs/simulation.md)."
        ),
    )
    p.add_argument("--json", action="store_true", help="One JSON object per run on stdout.")
    p.add_argument(
        "--trace", metavar="FILE", help="Write the full event trace of the run (one seed only)."
    )
    p.add_argument(
        "--tail", type=int, default=40, help="Trace lines shown for a failing run (default 40)."
    )
    return p


def configs(args: argparse.Namespace) -> Iterator[SimConfig]:
    seeds = args.seeds if args.seeds is not None else [args.seed if args.seed is not None else 1]
    algorithms = ELECTION_ALGORITHMS if args.algorithm == "all" else (args.algorithm,)
    for seed in seeds:
        for algorithm in algorithms:
            yield SimConfig(
                seed=seed,
                nodes=args.nodes,
                algorithm=algorithm,
                duration=args.duration,
                faults=args.faults,
                clients=args.clients,
                workers=args.workers,
                plant=args.plant,
                strict=args.strict,
            )


def describe(result: SimResult) -> str:
    c = result.config
    faults = " ".join(f"{k}x{v}" for k, v in result.faults.items()) or "none"
    return (
        f"seed {c.seed} {c.algorithm} {c.nodes} nodes: "
        f"{'ok' if result.ok else f'{len(result.violations)} VIOLATION(S)'}  "
        f"digest {result.trace_digest[:16]}  "
        f"{result.simulated_seconds:.1f}s simulated in {result.wall_seconds:.2f}s  "
        f"jobs {result.jobs_acknowledged}/{result.jobs_submitted} acked, "
        f"{result.jobs_completed} completed, {result.jobs_lost} lost, "
        f"{result.jobs_dependent_ran}/{result.jobs_dependent} dependents ran  faults {faults}"
    )


def report_failure(result: SimResult, tail: int, out: TextIO) -> None:
    for violation in result.violations:
        print(f"  {violation}", file=out)
    if tail > 0:
        print(f"  last {min(tail, len(result.trace_tail))} trace events:", file=out)
        for line in result.trace_tail[-tail:]:
            print(f"    {line[:200]}", file=out)
    print(f"  replay: {result.config.replay_command()}", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return EXIT_OK if exc.code == 0 else EXIT_USAGE
    if args.trace and (args.seeds is not None or args.algorithm == "all"):
        parser.print_usage(sys.stderr)
        print("jobtrio sim: --trace takes one run (--seed and one --algorithm)", file=sys.stderr)
        return EXIT_USAGE
    try:
        todo = list(configs(args))
    except ValueError as exc:
        print(f"jobtrio sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    human = sys.stderr if args.json else sys.stdout
    failed: list[SimResult] = []
    started = time.perf_counter()
    simulated = 0.0
    for config in todo:
        result = run(config, full_trace=bool(args.trace))
        simulated += result.simulated_seconds
        if args.trace and result.trace_lines is not None:
            with open(args.trace, "w") as f:
                f.write("\n".join(result.trace_lines) + "\n")
        if args.json:
            print(json.dumps(result.to_json(), separators=(",", ":")), flush=True)
        else:
            print(describe(result), file=human, flush=True)
        for known in result.known_issues:
            print(f"  known issue: {known}", file=human)
        if not result.ok:
            failed.append(result)
            report_failure(result, args.tail, human)
    wall = time.perf_counter() - started
    if len(todo) > 1:
        print(
            f"{len(todo)} runs, {len(failed)} failed, {wall:.1f}s wall "
            f"({len(todo) / wall * 60:.0f} runs/min, "
            f"{simulated / wall:.0f} simulated s per wall s)",
            file=human,
        )
        for result in failed:
            print(f"  FAILED: {result.config.replay_command()}", file=human)
    return EXIT_VIOLATION if failed else EXIT_OK
