"""Dramatiq's side of ``jobtrio bench --compare``: one process, one Redis.

    python dramatiq_bench.py drain|enqueue REDIS_URL PREFIX JOBS WORKERS

enqueue: ``send()`` a job at a time (Dramatiq has no bulk enqueue), timed;
drain: JOBS jobs sent first (untimed), then one Worker with WORKERS threads
runs them; each job's body is one INCR. Prints one JSON line.
"""

import json
import sys
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

mode, url, prefix, jobs_text, workers_text = sys.argv[1:6]
jobs, workers = int(jobs_text), int(workers_text)
broker = RedisBroker(url=url, namespace=prefix)
dramatiq.set_broker(broker)
counter = redis.Redis.from_url(url)
key = f"{prefix}:done"


@dramatiq.actor(queue_name="bench", max_retries=0)
def noop(source: str) -> None:
    counter.incr(key)


def done() -> int:
    return int(counter.get(key) or 0)


if mode == "enqueue":
    noop.send("warm")
    start = time.perf_counter()
    for _ in range(jobs):
        noop.send("bench")
    result = {"jobs_per_s": jobs / (time.perf_counter() - start)}
else:
    for _ in range(jobs):
        noop.send("bench")
    worker = dramatiq.Worker(broker, worker_threads=workers)
    worker.start()
    while (first_count := done()) < 1:
        time.sleep(0.002)
    first = time.perf_counter()
    while done() < jobs:
        time.sleep(0.002)
    end = time.perf_counter()
    worker.stop()
    result = {"jobs_per_s": (jobs - first_count) / (end - first) if jobs > first_count else None}
for k in counter.scan_iter(match=f"{prefix}*"):
    counter.delete(k)
print(json.dumps(result), flush=True)
