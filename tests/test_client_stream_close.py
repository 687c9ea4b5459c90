"""An event stream left open must not keep a process alive.

httpx-ws's blocking session reads in a thread of its own; a stream the caller
stopped iterating without closing kept that thread blocked on the socket, and
the interpreter waits for it at exit. ``jobtrio jobs watch JOB_ID`` printed its
job's end and then never exited (found trying the README as a new user: the
CLI tests run it in their own process, where the thread outlives the call
unseen). These run the blocking client in a real process, against a node served
here, and require it to end; the subprocess timeout only catches the hang.
"""

from __future__ import annotations

import sys

import trio

from jobtrio.actors.node import Node
from jobtrio.client import AsyncClient
from tests.test_events import served  # noqa: F401 (the fixture: a node served here)

#: Far beyond what either needs (under a second here): only a hang reaches it.
HANG = 60

#: Leaves a stream open at the client's close, 20 times (the thread stayed blocked in
#: about half the tries), then waits up to 20 s for every thread but the main one to
#: end, and says how many are left; ``os._exit`` so that a left thread cannot hang it.
LEFT_OPEN = """
import os, sys, threading, time
from jobtrio.client import Client

def follow(url):
    with Client(url) as client:
        events = client.events(control=True)
        assert next(events)["kind"] == "stream.ready"
        return 0  # the client closes with the stream still open

for _ in range(20):
    follow(sys.argv[1])
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    left = [t for t in threading.enumerate() if t is not threading.main_thread()]
    if not left:
        break
    time.sleep(0.05)
print("threads left", len(left), flush=True)
os._exit(0)
"""


async def _run(*args: str) -> trio.CompletedProcess[bytes]:
    with trio.fail_after(HANG):
        return await trio.run_process([sys.executable, *args], capture_stdout=True, check=False)


async def test_a_client_closed_with_a_stream_open_lets_its_process_end(
    served: tuple[Node, str],  # noqa: F811 - the fixture
) -> None:
    _, url = served
    done = await _run("-c", LEFT_OPEN, url)
    assert done.returncode == 0
    assert done.stdout.decode().strip() == "threads left 0"


async def test_jobs_watch_of_a_finished_job_exits(served: tuple[Node, str]) -> None:  # noqa: F811
    _, url = served
    async with AsyncClient(url) as client:
        job = await client.submit("noop")
        finished = await client.wait(job.id, timeout=30)
    assert finished.status == "completed"
    done = await _run("-m", "jobtrio.cli", "jobs", "watch", job.id, "--url", url)
    assert done.returncode == 0
    assert "completed" in done.stdout.decode()
