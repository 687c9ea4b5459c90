"""Progress reports: from a processor to the record, the event stream and the CLI.

Runs one node on the memory backends under trio's MockClock (autojump), so the
coalescing interval passes in no wall time and the count of Broker writes
does not depend on the machine's speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import trio

from jobtrio.actors.dispatch.progress import PROGRESS_INTERVAL
from jobtrio.backends.base import ProgressReport
from jobtrio.backends.memory import MemoryBroker
from jobtrio.cli import job_line, progress_text
from jobtrio.jobs import MAX_PROGRESS_MESSAGE, Job, JobStatus, make_progress
from jobtrio.processors import JobContext, Registry
from tests.test_node import running_node, terminal

REPORTS = 100


class CountingBroker(MemoryBroker):
    def __init__(self) -> None:
        super().__init__()
        self.progress_calls = 0

    async def progress(self, reports: Sequence[ProgressReport], now: float) -> list[Job | None]:
        self.progress_calls += 1
        return await super().progress(reports, now)


async def test_reports_reach_the_record_and_the_stream_coalesced(autojump_clock):
    registry = Registry()
    reported = trio.Event()
    release = trio.Event()

    @registry.processor("resize")
    async def resize(ctx: JobContext) -> str:
        for i in range(1, REPORTS + 1):
            await ctx.progress(i / REPORTS, f"resized {i}/{REPORTS}")
            await trio.sleep(0.01)  # 100 reports over one (virtual) second
        reported.set()
        await release.wait()
        return "ok"

    broker = CountingBroker()
    async with running_node(registry, broker=broker) as node:
        with node.events.subscribe() as events:
            job = await node.submit({"type": "resize"})
            await reported.wait()
            await trio.sleep(2 * PROGRESS_INTERVAL)  # the last write is due by then
            running = await node.get(job.id)
            assert running is not None and running.status == JobStatus.RUNNING
            assert running.progress is not None
            assert running.progress["fraction"] == 1.0
            assert running.progress["message"] == f"resized {REPORTS}/{REPORTS}"
            assert running.progress["attempt"] == 1
            release.set()
            done = await terminal(node, job.id)
            seen = []
            while True:
                try:
                    event = events.receive_nowait()
                except trio.WouldBlock:
                    break
                if event["type"] == "job.progress":
                    seen.append(event["progress"]["fraction"])
    assert done.status == JobStatus.COMPLETED
    assert done.progress["fraction"] == 1.0  # the last report stays on the record
    # coalesced: one Broker write per PROGRESS_INTERVAL, not one per report
    assert 2 <= broker.progress_calls <= REPORTS // 10
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == broker.progress_calls


async def test_a_thread_processor_reports_through_report_progress(autojump_clock):
    registry = Registry()

    @registry.processor("blocking", blocking=True)
    def blocking(ctx: JobContext) -> None:
        ctx.report_progress(0.5, "half")

    async with running_node(registry) as node:
        job = await node.submit({"type": "blocking"})
        done = await terminal(node, job.id)
    assert done.status == JobStatus.COMPLETED, done.error
    assert done.progress is not None and done.progress["message"] == "half"


async def test_a_fraction_out_of_range_fails_the_attempt_with_the_reason(autojump_clock):
    registry = Registry()

    @registry.processor("percent")
    async def percent(ctx: JobContext) -> None:
        await ctx.progress(40)  # a percentage, not a fraction

    async with running_node(registry) as node:
        job = await node.submit({"type": "percent", "max_retries": 0})
        done = await terminal(node, job.id)
    assert done.status == JobStatus.FAILED
    assert "progress must be from 0 to 1, got 40" in done.error


def test_make_progress_validates_and_bounds():
    assert make_progress(0, None, 5.0) == {"fraction": 0.0, "message": None, "at": 5.0}
    long = make_progress(1, "x" * 1000, 5.0)
    assert len(long["message"]) == MAX_PROGRESS_MESSAGE and long["message"].endswith("…")
    for bad in (-0.1, 1.5, float("nan"), float("inf"), 10**400, -(10**400), True, "0.5"):
        with pytest.raises(ValueError, match="progress must be"):
            make_progress(bad, None, 0.0)
    with pytest.raises(ValueError, match="progress message is text"):
        make_progress(0.5, 3, 0.0)
    # a lone surrogate (was kept, and sent as the "\\ud800" escape the API refuses on input)
    assert make_progress(0.5, "a\ud800b \U0001f600", 0.0)["message"] == "a\ufffdb \U0001f600"


def test_jobs_watch_shows_progress():
    job = Job(id="01J9Z6N5G4X8W3QH2K7R1M0P9T", type="resize", status=JobStatus.RUNNING)
    job.node_id, job.worker_id = "n1", "n1/w0"
    job.progress = make_progress(0.4, "resized 4/10", 0.0)
    assert progress_text(job.progress) == "40% resized 4/10"
    assert "40% resized 4/10" in job_line(job).plain
    assert progress_text({"fraction": 0.5, "message": "a\x1b[2Jb"}) == "50% a\\x1b[2Jb"
