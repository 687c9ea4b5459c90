"""Celery's side of ``jobtrio bench --compare``: one worker process, one Redis.

    python celery_bench.py drain|enqueue REDIS_URL PREFIX JOBS WORKERS

enqueue: ``apply_async()`` a job at a time, timed; drain: JOBS jobs sent first
(untimed), then ``celery worker --pool threads --concurrency WORKERS`` runs
them; each job's body is one INCR. Results are ignored (no result backend).
Prints one JSON line. The worker imports this file as ``celery_bench``.
"""

import json
import os
import subprocess
import sys
import time

import redis
from celery import Celery

url = os.environ.get("BENCH_REDIS_URL") or sys.argv[2]
prefix = os.environ.get("BENCH_PREFIX") or sys.argv[3]
app = Celery("celery_bench", broker=url)
app.conf.update(
    task_default_queue=prefix,
    task_ignore_result=True,
    worker_send_task_events=False,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
counter = redis.Redis.from_url(url)
key = f"{prefix}:done"


@app.task(name="noop")
def noop(source: str) -> None:
    counter.incr(key)


def done() -> int:
    return int(counter.get(key) or 0)


def main() -> None:
    mode, jobs, workers = sys.argv[1], int(sys.argv[4]), int(sys.argv[5])
    if mode == "enqueue":
        noop.apply_async(("warm",))
        start = time.perf_counter()
        for _ in range(jobs):
            noop.apply_async(("bench",))
        result = {"jobs_per_s": jobs / (time.perf_counter() - start)}
    else:
        for _ in range(jobs):
            noop.apply_async(("bench",))
        worker = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "celery_bench",
                "worker",
                "--pool",
                "threads",
                "--concurrency",
                str(workers),
                "--queues",
                prefix,
                "--loglevel",
                "WARNING",
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
            ],
            env={**os.environ, "BENCH_REDIS_URL": url, "BENCH_PREFIX": prefix},
            cwd=os.path.dirname(os.path.abspath(__file__)),
        )
        try:
            while (first_count := done()) < 1:
                if worker.poll() is not None:
                    raise SystemExit(f"celery worker exited with {worker.returncode}")
                time.sleep(0.002)
            first = time.perf_counter()
            while done() < jobs:
                time.sleep(0.002)
            end = time.perf_counter()
        finally:
            worker.terminate()
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        result = {
            "jobs_per_s": (jobs - first_count) / (end - first) if jobs > first_count else None
        }
    for k in counter.scan_iter(match=f"*{prefix}*"):  # its queue, counter and kombu bindings
        counter.delete(k)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
