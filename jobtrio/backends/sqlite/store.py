"""The SQLite Store: the job records, nodes, elections and schedules, in their own tables.

A record is the job's ``Job.dumps()`` text in ``jobs.doc``, with its status,
type, creation time and version beside it for the indexes (``schema.py``).
``put_many`` keeps the newer of two versions of a record (the recorder may
write one late), and a page of ``query`` is newest first by id (ids are ULIDs).
Every write is one transaction on the Store's own connection (``database.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
from collections.abc import Sequence
from typing import Any, Self

import trio

from ...jobs import DEFAULT_QUEUE, Job
from ..base import JobQuery, NodeRecord, Page, RecordRefused, Store
from .database import DEFAULT_BUSY_TIMEOUT, Database
from .schema import STORE_SCHEMA, count_by_status, delete_job, get_job

_PUT = """
INSERT INTO jobs (id, status, type, created_at, version, doc) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (id) DO UPDATE SET
    status = excluded.status, type = excluded.type, created_at = excluded.created_at,
    version = excluded.version, doc = excluded.doc
WHERE excluded.version >= jobs.version
"""


class SqliteStore(Store):
    """The job record in a SQLite file, beside (or apart from) the queue."""

    name = "sqlite"

    def __init__(self, db: Database) -> None:
        self._db = db

    @classmethod
    async def open(
        cls, path: str | os.PathLike[str] | None = None, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> Self:
        """Open (creating if needed) the record tables in ``path`` (default ``SQLITE_PATH``)."""
        return cls(await Database.connect(path, STORE_SCHEMA, busy_timeout))

    @property
    def path(self) -> str:
        return self._db.path

    async def put_many(self, jobs: Sequence[Job]) -> None:
        if not jobs:
            await trio.lowlevel.checkpoint()
            return
        try:
            await self._db.write(_put_many, jobs)
        except sqlite3.DataError as exc:
            # SQLITE_TOOBIG: a document over SQLITE_MAX_LENGTH (1e9 bytes; a chord's
            # callback holding a thousand 1 MiB results) fails the same way at every
            # retry: taken for a bug, it crash-looped the recorder (RecordRefused)
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF != sqlite3.SQLITE_TOOBIG:
                raise
            raise RecordRefused("sqlite", str(exc)) from exc

    async def get(self, job_id: str) -> Job | None:
        return await self._db.read(get_job, "jobs", job_id)

    async def query(self, query: JobQuery) -> Page:
        return await self._db.read(_query, query)

    async def delete(self, job_id: str) -> bool:
        return await self._db.write(delete_job, "jobs", job_id)

    async def count_by_status(self) -> dict[str, int]:
        return await self._db.read(count_by_status, "jobs")

    async def put_node(self, node: NodeRecord) -> None:
        await self._db.write(_put_node, node)

    async def list_nodes(self) -> list[NodeRecord]:
        return await self._db.read(_list_nodes)

    async def delete_node(self, node_id: str) -> bool:
        return await self._db.write(_delete_node, node_id)

    async def add_election(self, record: dict[str, Any]) -> None:
        await self._db.write(_add_election, json.dumps(record, separators=(",", ":")))

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        return await self._db.read(_list_elections, limit)

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        doc = json.dumps(schedule, separators=(",", ":"))
        await self._db.write(_put_schedule, schedule["name"], doc)

    async def list_schedules(self) -> list[dict[str, Any]]:
        return await self._db.read(_list_schedules)

    async def delete_schedule(self, name: str) -> bool:
        return await self._db.write(_delete_schedule, name)

    async def ping(self) -> None:
        await self._db.ping()

    async def close(self) -> None:
        await self._db.close()


def _put_many(conn: sqlite3.Connection, jobs: Sequence[Job]) -> None:
    conn.executemany(
        _PUT,
        [
            (job.id, job.status.value, job.type, job.created_at, job.version, job.dumps())
            for job in jobs
        ],
    )


def _query(conn: sqlite3.Connection, query: JobQuery) -> Page:
    where: list[str] = []
    params: list[Any] = []
    if query.cursor is not None:
        where.append("id < ?")
        params.append(query.cursor)
    if query.statuses is not None:
        if not query.statuses:
            return Page([], None)
        where.append(f"status IN ({', '.join('?' * len(query.statuses))})")
        params.extend(sorted(status.value for status in query.statuses))
    if query.type is not None:
        where.append("type = ?")
        params.append(query.type)
    if query.owner is not None:
        # read from the document (no column: a file from before owners needs no migration);
        # the expression index jobs_owner serves it
        where.append("json_extract(doc, '$.owner') = ?")
        params.append(query.owner)
    if query.queue is not None:
        # from the document too; a record from before queues has none and is in default
        where.append("coalesce(json_extract(doc, '$.queue'), ?) = ?")
        params.extend((DEFAULT_QUEUE, query.queue))
    if query.created_after is not None:
        where.append("created_at >= ?")
        params.append(query.created_after)
    if query.created_before is not None:
        where.append("created_at < ?")
        params.append(query.created_before)
    limit = max(query.limit, 0)
    sql = "SELECT doc FROM jobs"
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY id DESC LIMIT ?"
    params.append(limit + 1)  # one more than asked tells whether a next page exists
    jobs = [Job.loads(doc) for (doc,) in conn.execute(sql, params)]
    more = len(jobs) > limit
    jobs = jobs[:limit]
    return Page(jobs, jobs[-1].id if more and jobs else None)


def _put_node(conn: sqlite3.Connection, node: NodeRecord) -> None:
    conn.execute(
        "INSERT INTO nodes (node_id, doc) VALUES (?, ?) "
        "ON CONFLICT (node_id) DO UPDATE SET doc = excluded.doc",
        (node.node_id, json.dumps(dataclasses.asdict(node), separators=(",", ":"))),
    )


def _list_nodes(conn: sqlite3.Connection) -> list[NodeRecord]:
    rows = conn.execute("SELECT doc FROM nodes ORDER BY node_id")
    return [NodeRecord(**json.loads(doc)) for (doc,) in rows]


def _delete_node(conn: sqlite3.Connection, node_id: str) -> bool:
    return conn.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,)).rowcount > 0


def _put_schedule(conn: sqlite3.Connection, name: str, doc: str) -> None:
    conn.execute(
        "INSERT INTO schedules (name, doc) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET doc = excluded.doc",
        (name, doc),
    )


def _list_schedules(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT doc FROM schedules ORDER BY name")
    return [json.loads(doc) for (doc,) in rows]


def _delete_schedule(conn: sqlite3.Connection, name: str) -> bool:
    return conn.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0


def _add_election(conn: sqlite3.Connection, doc: str) -> None:
    conn.execute("INSERT INTO elections (doc) VALUES (?)", (doc,))


def _list_elections(conn: sqlite3.Connection, limit: int) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT doc FROM elections ORDER BY seq DESC LIMIT ?", (limit,))
    return [json.loads(doc) for (doc,) in rows]
