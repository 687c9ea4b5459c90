"""A SQLite file made before named queues is brought up to date when the Broker opens it.

Such a file's ``queue`` table lacks the ``queue`` and ``type`` columns (and the
``queue_by_name`` index); ``schema.add_queue_columns`` adds them, filled from
each job's document, so that a claim by queue finds the jobs filed before.
"""

from __future__ import annotations

import sqlite3

from jobtrio.backends.base import ClaimScope
from jobtrio.backends.sqlite import SqliteBroker
from jobtrio.jobs import IdGenerator
from jobtrio.submission import validate_submission

NOW = 1_700_000_000.0

# The queue table as it was before named queues (no queue, no type column).
_BEFORE_NAMED_QUEUES = """
CREATE TABLE queue (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, priority INTEGER NOT NULL, seq INTEGER,
    run_at REAL, token TEXT, expires_at REAL, finished_at REAL,
    idempotency_key TEXT UNIQUE, doc TEXT NOT NULL
);
CREATE INDEX queue_claim ON queue (status, priority DESC, seq);
CREATE TABLE broker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT INTO broker_meta (key, value) VALUES ('seq', 1), ('epoch', 0);
"""


async def test_a_file_from_before_named_queues_gains_its_columns_filled_from_the_jobs(tmp_path):
    path = str(tmp_path / "old.db")
    job = validate_submission({"type": "mail", "queue": "emails"}, NOW, ids=IdGenerator())
    with sqlite3.connect(path) as conn:
        conn.executescript(_BEFORE_NAMED_QUEUES)
        conn.execute(
            "INSERT INTO queue (id, status, priority, seq, doc) VALUES (?, 'pending', ?, 1, ?)",
            (job.id, job.priority, job.dumps()),
        )
    broker = await SqliteBroker.open(path)
    try:
        with sqlite3.connect(path) as conn:
            row = conn.execute("SELECT queue, type FROM queue WHERE id = ?", (job.id,)).fetchone()
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(queue)")}
        assert row == ("emails", "mail")
        assert "queue_by_name" in indexes
        assert await broker.claim("n", 10, 30, NOW, ClaimScope(queues=("default",))) == []
        [lease] = await broker.claim("n", 10, 30, NOW, ClaimScope(queues=("emails",)))
        assert lease.job.id == job.id
    finally:
        await broker.close()
