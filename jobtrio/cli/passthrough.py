"""``jobtrio bench`` and ``jobtrio sim``: commands whose arguments another parser reads.

Both hand everything after their name to a command line of their own (bench's
argparse, the simulator's), imported only when run, so ``jobtrio --help`` and
every other command start without loading them.
"""

from __future__ import annotations

import click


@click.command(
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


@click.command(
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
    add_help_option=False,
)
@click.pass_context
def sim(ctx: click.Context) -> int:
    """Deterministic simulation of a whole cluster with faults (jobtrio sim --help)."""
    from ..sim.cli import main as sim_main

    return sim_main(list(ctx.args))
