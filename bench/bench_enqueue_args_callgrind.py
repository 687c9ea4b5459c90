"""The node's instructions a job from a batch's validated jobs to the enqueue's RESP bytes.

    python bench/bench_enqueue_args_callgrind.py PAIRS /src/of/A /src/of/B ...

What ``RedisBroker.enqueue`` does before it sends a plain batch: the jobs'
Redis encoding (``_encode``), the script's arguments (``_enqueue_args``) and
the command the wire writes of them (``wire._script_args`` and
``wire._command``), for 1,000 noop jobs scheduled an hour ahead as the enqueue
bench's body makes them (``validate_many``: one time for the batch). Each side
runs in its own ``valgrind --tool=callgrind`` process with its tree first on
``sys.path`` (``PYTHONHASHSEED=0``), once with 2 batches and once with 7: the
difference over 5,000 jobs is the count a job, the start-up and imports
cancelled. Sides alternate in every pair; medians last. Counts do not move
with load; quote ``uptime`` anyway.
"""

from __future__ import annotations

import glob
import os
import statistics
import subprocess
import sys
import tempfile

BATCH = 1000
FEW, MANY = 2, 7


def _driver(rounds: int) -> None:
    """In the side's process: ``rounds`` batches encoded into the command's bytes."""
    import time

    from jobtrio.backends.redis import wire
    from jobtrio.backends.redis.broker import RedisBroker
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import validate_many

    ids = IdGenerator()
    now = time.time()
    body = {"type": "noop", "payload": {"source": "bench"}, "scheduled_at": now + 3600}
    batches = []
    for _ in range(rounds):
        made, errors = validate_many([body] * BATCH, now, ids=ids)
        assert not errors
        batches.append(made)
    # the batches are made before the count's part: validation is not counted, only
    # what follows; made for FEW and MANY alike, so their difference is the part below
    for _ in range(MANY - rounds):
        validate_many([body] * BATCH, now, ids=ids)
    broker = object.__new__(RedisBroker)  # its methods used here read nothing of it
    size = 0
    for jobs in batches:
        encoded = broker._encode(jobs, now)
        args = broker._enqueue_args(jobs, encoded, now)
        size += len(wire._command(b"FCALL", b"f", *wire._script_args(["{p}"], args)))
    print(size // (rounds * BATCH), "bytes a job", file=sys.stderr)


def _count(tree: str, rounds: int) -> int:
    with tempfile.TemporaryDirectory() as directory:
        out = os.path.join(directory, "cg.out")
        env = {**os.environ, "PYTHONPATH": tree, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                sys.executable, os.path.abspath(__file__), "--one", str(rounds),
            ],
            env=env, cwd=tree, check=True, capture_output=True,
        )  # fmt: skip
        [path] = glob.glob(out + "*")
        with open(path) as f:
            for line in f:
                if line.startswith("totals:") or line.startswith("summary:"):
                    return int(line.split()[1])
    raise RuntimeError("no totals in the callgrind file")


def main(argv: list[str]) -> None:
    if argv[:1] == ["--one"]:
        _driver(int(argv[1]))
        return
    pairs, trees = int(argv[0]), argv[1:]
    res: dict[str, list[float]] = {t: [] for t in trees}
    for _ in range(pairs):
        for tree in trees:
            a_job = (_count(tree, MANY) - _count(tree, FEW)) / ((MANY - FEW) * BATCH)
            res[tree].append(a_job)
            print(f"{tree}: {a_job:,.0f} instructions a job", flush=True)
    for tree, counts in res.items():
        print(f"median {tree}: {statistics.median(counts):,.0f} instructions a job")


if __name__ == "__main__":
    main(sys.argv[1:])
