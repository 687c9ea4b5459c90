"""The recorder with a Store that refuses a record for good (``RecordRefused``).

MongoDB refuses a document over 16 MiB (a chord's callback holding its group's
results, say) and fails the whole batch it is in. Before, the recorder
treated that as a crash: restarted, it retried the same batch, failed again,
and no record of any job on the node reached the Store from then on.
"""

from __future__ import annotations

import logging

import pytest
import trio

from jobtrio.actors.recorder import Recorder, put_what_the_store_takes
from jobtrio.backends.base import BackendUnavailable
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests.test_leader_purge import FlakyStore, RefusingStore

NOW = 1_700_000_000.0
ids = IdGenerator()


def completed(n: int) -> list[Job]:
    jobs = []
    for i in range(n):
        job = validate_submission({"type": "noop", "payload": {"i": i}}, NOW, ids=ids)
        job.status = JobStatus.COMPLETED
        jobs.append(job)
    return jobs


async def test_the_recorder_leaves_out_a_refused_record_and_writes_the_rest(
    autojump_clock, caplog
) -> None:
    caplog.set_level(logging.ERROR, "jobtrio.recorder")
    jobs = completed(100)
    refused = {jobs[17].id, jobs[64].id}
    store = RefusingStore(refused)
    recorder = Recorder(store, batch=1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(recorder.run)
        recorder.record(jobs)
        assert await recorder.flush(30.0), "the recorder kept retrying the refused batch"
        later = completed(5)  # and goes on writing what comes after
        recorder.record(later)
        assert await recorder.flush(30.0)
        nursery.cancel_scope.cancel()
    for job in [*jobs, *later]:
        stored = await store.get(job.id)
        assert (stored is None) == (job.id in refused), job.id
    assert recorder.refused == 2 and recorder.written == 103
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == 2 and all("left out" in m and "too large" in m for m in logged)
    # halving: the batch of 100, then one write a half down to each refused record
    assert store.calls <= 1 + 2 * 2 * 7 + 2


async def test_an_unreachable_store_refuses_nothing_it_is_retried() -> None:
    store = FlakyStore()
    store.down = True
    jobs = completed(3)
    with pytest.raises(BackendUnavailable):  # an outage passes through: not a refusal
        await put_what_the_store_takes(store, jobs)
    store.down = False
    assert await put_what_the_store_takes(store, jobs) == []
    assert all([await store.get(job.id) for job in jobs])


async def test_a_lone_refused_record_is_named(autojump_clock) -> None:
    jobs = completed(1)
    store = RefusingStore({jobs[0].id})
    [(job, why)] = await put_what_the_store_takes(store, jobs)
    assert job is jobs[0] and "too large" in str(why)


async def test_sqlite_refuses_a_record_over_its_length_limit_and_takes_the_others(
    tmp_path,
) -> None:
    """SQLite's SQLITE_TOOBIG (a document over SQLITE_MAX_LENGTH, 1e9 bytes: a chord's
    callback holding a thousand 1 MiB results) is a refusal for good, as MongoDB's 16 MiB.
    The limit is lowered here to 100 kB (``setlimit``) instead of writing a gigabyte.
    Before, it was a bare sqlite3.DataError: the recorder crashed into the same batch at
    every restart and no record of any job on the node reached the Store again."""
    import sqlite3

    from jobtrio.backends.sqlite import SqliteStore

    store = await SqliteStore.open(tmp_path / "records.db")
    try:
        store._db._connection().setlimit(sqlite3.SQLITE_LIMIT_LENGTH, 100_000)
        jobs = completed(3)
        jobs[1].result = {"text": "x" * 200_000}
        [(job, why)] = await put_what_the_store_takes(store, jobs)
        assert job is jobs[1] and "too big" in str(why)
        assert [await store.get(j.id) is not None for j in jobs] == [True, False, True]
    finally:
        await store.close()
