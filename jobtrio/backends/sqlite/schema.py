"""The tables in the file, declared once: the Broker's, the Store's, and what an old file gains.

A job is kept whole as ``Job.dumps()`` text in a ``doc`` column; the columns
beside it exist only to be indexed (``placement.py`` derives the queue's from
the job, ``store.py`` the records'). The Broker's tables are ``queue`` (one row
a job it holds), ``broker_meta`` (the FIFO counter and the fencing epoch),
``ticks`` (periodic ticks claimed), ``tombstones`` (jobs purged or deleted)
and ``queue_settings`` (paused queues, rate limits); the Store's are ``jobs``
(the records), ``nodes``, ``elections`` and ``schedules``. The two sets share
no table, so the Broker and the Store may live in one file or in two.

A file made before named queues lacks the queue's ``queue`` and ``type``
columns: ``add_queue_columns`` adds them (filled from each job's document)
when the Broker opens it.
"""

from __future__ import annotations

import sqlite3
from typing import Literal

from ...jobs import Job, JobStatus

BROKER_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    seq INTEGER,
    run_at REAL,
    token TEXT,
    expires_at REAL,
    finished_at REAL,
    idempotency_key TEXT UNIQUE,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_claim ON queue (status, priority DESC, seq);
CREATE INDEX IF NOT EXISTS queue_delayed ON queue (run_at, id) WHERE run_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_leases ON queue (expires_at, id) WHERE expires_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS queue_finished ON queue (finished_at) WHERE finished_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS broker_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO broker_meta (key, value) VALUES ('seq', 0), ('epoch', 0);
CREATE TABLE IF NOT EXISTS ticks (name TEXT NOT NULL, tick REAL NOT NULL, PRIMARY KEY (name, tick));
CREATE TABLE IF NOT EXISTS tombstones (
    id TEXT PRIMARY KEY, status TEXT NOT NULL, version INTEGER NOT NULL, finished_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tombstones_at ON tombstones (finished_at);
CREATE TABLE IF NOT EXISTS queue_settings (
    name TEXT PRIMARY KEY, paused INTEGER NOT NULL DEFAULT 0, jobs INTEGER, per REAL,
    window INTEGER, used INTEGER NOT NULL DEFAULT 0
)
"""

#: Columns a file made before named queues lacks: added (and filled from each job's
#: document) when the Broker opens it.
_QUEUE_COLUMNS = (
    ("queue", "TEXT NOT NULL DEFAULT 'default'", "json_extract(doc, '$.queue')"),
    ("type", "TEXT NOT NULL DEFAULT ''", "json_extract(doc, '$.type')"),
)
_QUEUE_INDEX = (
    "CREATE INDEX IF NOT EXISTS queue_by_name ON queue (status, queue, priority DESC, seq)"
)

STORE_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    type TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status, id);
CREATE INDEX IF NOT EXISTS jobs_type ON jobs (type, id);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs (created_at);
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (json_extract(doc, '$.owner'), id);
CREATE TABLE IF NOT EXISTS nodes (node_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS elections (seq INTEGER PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS schedules (name TEXT PRIMARY KEY, doc TEXT NOT NULL)
"""


def add_queue_columns(conn: sqlite3.Connection) -> None:
    """Bring a queue table from before named queues up to ``_QUEUE_COLUMNS`` (the Broker's open)."""
    have = {row[1] for row in conn.execute("PRAGMA table_info(queue)")}
    for column, declaration, fill in _QUEUE_COLUMNS:
        if column not in have:
            conn.execute(f"ALTER TABLE queue ADD COLUMN {column} {declaration}")
            conn.execute(f"UPDATE queue SET {column} = coalesce({fill}, {column})")
    conn.execute(_QUEUE_INDEX)


# The two job tables, the Broker's ``queue`` and the Store's ``jobs``, share the columns
# ``id``, ``status`` and ``doc``: these reads serve both. The table name is always one of
# the two literals, never caller input.
JobTable = Literal["queue", "jobs"]


def get_job(conn: sqlite3.Connection, table: JobTable, job_id: str) -> Job | None:
    row = conn.execute(f"SELECT doc FROM {table} WHERE id = ?", (job_id,)).fetchone()
    return None if row is None else Job.loads(row[0])


def delete_job(conn: sqlite3.Connection, table: JobTable, job_id: str) -> bool:
    return conn.execute(f"DELETE FROM {table} WHERE id = ?", (job_id,)).rowcount > 0


def count_by_status(conn: sqlite3.Connection, table: JobTable) -> dict[str, int]:
    counts = {status.value: 0 for status in JobStatus}
    for status, count in conn.execute(f"SELECT status, count(*) FROM {table} GROUP BY status"):
        counts[status] = count
    return counts
