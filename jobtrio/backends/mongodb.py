"""MongoDB Store: the durable, queryable job history for clusters that have MongoDB.

pymongo is synchronous, so every call runs in a worker thread behind one
``trio.CapacityLimiter`` (as for Redis); pymongo's own pool holds the
connections and reconnects by itself once the server is back. Connection
failures and timeouts become ``BackendUnavailable``.

A job is one document, ``_id`` = job id. Its exact record is ``doc``, the text
of ``Job.dumps()``: BSON cannot hold integers beyond 64 bits, which a JSON
payload may carry, and a JSON text keeps the payload's key order and every
float bit as the Job encoded them. Beside it sit native copies of the fields
people filter and sort on (status, type, times, version, node, worker,
retries, error, idempotency key), so the Store's queries use indexes and an
operator can still query the collection by hand.

``put_many`` is one unordered ``bulk_write`` of version-guarded upserts:
``UpdateOne({_id, version: {$lte: new}}, {$set: ...}, upsert=True)``. When the
stored version is newer the filter matches nothing and the upsert tries to
insert a second document with the same ``_id``: the server answers E11000
(duplicate key), which here means "an older snapshot, ignore it". One case
needs care: two writers racing to create the same record, where the loser's
E11000 hides a version that may be newer. So the duplicates of a batch are
sent once more; by then the document exists and a duplicate can only mean
the stored version is newer.

The functions at the top build documents, filters and operations without a
server, so they are unit-tested on a machine without MongoDB
(``tests/test_mongodb_unit.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Self, TypeVar

import pymongo
import trio
from bson.errors import InvalidDocument
from pymongo import IndexModel, UpdateOne
from pymongo.errors import (
    BulkWriteError,
    CollectionInvalid,
    ConnectionFailure,
    OperationFailure,
    PyMongoError,
)

from ..jobs import Job, JobStatus
from .base import BackendUnavailable, JobQuery, NodeRecord, Page, RecordRefused, Store

if TYPE_CHECKING:
    from ..config import Settings

T = TypeVar("T")

JOBS = "jobs"
NODES = "nodes"
ELECTIONS = "elections"
SCHEDULES = "schedules"
#: The elections collection is capped: the newest records, in insertion order.
ELECTIONS_KEPT = 1000
ELECTIONS_BYTES = 4 * 1024 * 1024
DEFAULT_POOL_SIZE = 8
DUPLICATE_KEY = 11000
NAMESPACE_EXISTS = 48

INDEXES = [
    IndexModel([("status", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)], name="status_id"),
    IndexModel([("type", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)], name="type_id"),
    IndexModel([("created_at", pymongo.ASCENDING)], name="created_at"),
    IndexModel([("owner", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)], name="owner_id"),
    IndexModel([("queue", pymongo.ASCENDING), ("_id", pymongo.DESCENDING)], name="queue_id"),
]


# --------------------------------------------------------------------------- pure parts


def job_fields(job: Job) -> dict[str, Any]:
    """The stored document without ``_id``: the exact record plus its queryable fields."""
    return {
        "doc": job.dumps(),
        "status": str(job.status),
        "type": job.type,
        "priority": job.priority,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "completed_at": job.completed_at,
        "version": job.version,
        "node_id": job.node_id,
        "worker_id": job.worker_id,
        "retry_count": job.retry_count,
        "error": job.error,
        "idempotency_key": job.idempotency_key,
        "owner": job.owner,
        "queue": job.queue,
    }


def upsert_operation(job: Job) -> UpdateOne:
    """Write ``job`` unless the stored record is newer (see the module docstring)."""
    return UpdateOne(
        {"_id": job.id, "version": {"$lte": job.version}},
        {"$set": job_fields(job)},
        upsert=True,
    )


def query_filter(query: JobQuery) -> dict[str, Any]:
    """The ``find`` filter for a page: same filters and cursor as ``MemoryStore.query``."""
    spec: dict[str, Any] = {}
    if query.statuses is not None:
        spec["status"] = {"$in": sorted(str(s) for s in query.statuses)}
    if query.type is not None:
        spec["type"] = query.type
    if query.owner is not None:
        spec["owner"] = query.owner
    if query.queue is not None:
        spec["queue"] = query.queue
    window: dict[str, float] = {}
    if query.created_after is not None:
        window["$gte"] = query.created_after
    if query.created_before is not None:
        window["$lt"] = query.created_before
    if window:
        spec["created_at"] = window
    if query.cursor is not None:
        spec["_id"] = {"$lt": query.cursor}
    return spec


def page_from(docs: Sequence[str], limit: int) -> Page:
    """Cut ``limit + 1`` fetched records into a page and the next cursor."""
    jobs = [Job.loads(d) for d in docs[:limit]]
    more = len(docs) > limit
    return Page(jobs, jobs[-1].id if more and jobs else None)


#: Server error codes of a document over the 16 MiB limit that passed pymongo's own check
#: (which allows 16 KiB over for the command around it): BSONObjectTooLarge and "resulting
#: document after update is larger than 16777216". Not seen against a real server here.
TOO_LARGE_CODES = frozenset({10334, 17419})


def too_large_refusal(details: Mapping[str, Any]) -> str | None:
    """The server's words when a ``BulkWriteError`` holds a too-large document and no
    other error but duplicates (the version guard), else None."""
    errors = details.get("writeErrors", [])
    if details.get("writeConcernErrors") or not errors:
        return None
    large = [e for e in errors if e.get("code") in TOO_LARGE_CODES]
    if not large or any(e.get("code") not in TOO_LARGE_CODES | {DUPLICATE_KEY} for e in errors):
        return None
    return str(large[0].get("errmsg", "document too large"))


def duplicate_indexes(details: Mapping[str, Any]) -> list[int]:
    """Indexes of the operations refused as duplicate keys in a ``BulkWriteError``.

    Raises ``ValueError`` if anything else went wrong, since only duplicates
    are expected (they are the version guard at work).
    """
    if details.get("writeConcernErrors"):
        raise ValueError(f"write concern failed: {details['writeConcernErrors']}")
    indexes = []
    for error in details.get("writeErrors", []):
        if error.get("code") != DUPLICATE_KEY:
            raise ValueError(f"write failed: {error.get('errmsg', error)}")
        indexes.append(int(error["index"]))
    return indexes


def is_unavailable(exc: PyMongoError) -> bool:
    """Whether an error means "MongoDB cannot be reached now" rather than a bad request."""
    return isinstance(exc, ConnectionFailure) or exc.timeout


def client_options(timeout: float, pool_size: int = DEFAULT_POOL_SIZE) -> dict[str, Any]:
    """MongoClient keywords: MONGODB_TIMEOUT bounds server selection, connects and each call."""
    ms = max(1, int(timeout * 1000))
    return {
        "serverSelectionTimeoutMS": ms,
        "connectTimeoutMS": ms,
        "timeoutMS": ms,
        "maxPoolSize": pool_size * 2,
        "retryWrites": True,  # safe: every write here is an idempotent, version-guarded upsert
        "retryReads": True,
        "appname": "jobtrio",
    }


def schedule_document(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """A schedule kept as JSON text, for the same reason as a job's ``doc``."""
    return {"_id": schedule["name"], "doc": json.dumps(schedule, separators=(",", ":"))}


def node_document(node: NodeRecord) -> dict[str, Any]:
    fields = asdict(node)
    return {"_id": node.node_id, **fields}


def node_from(document: Mapping[str, Any]) -> NodeRecord:
    return NodeRecord(**{k: v for k, v in document.items() if k != "_id"})


# --------------------------------------------------------------------------- the store


class MongoStore(Store):
    name = "mongodb"

    def __init__(
        self,
        client: pymongo.MongoClient[dict[str, Any]],
        database: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
    ) -> None:
        self.client = client
        self.database_name = database
        self._db = client[database]
        self._jobs = self._db[JOBS]
        self._nodes = self._db[NODES]
        self._elections = self._db[ELECTIONS]
        self._schedules = self._db[SCHEDULES]
        self._limiter = trio.CapacityLimiter(pool_size)

    @classmethod
    async def open(
        cls,
        uri: str,
        database: str = "jobprocessor",
        timeout: float = 30.0,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        client: pymongo.MongoClient[dict[str, Any]] | None = None,
    ) -> Self:
        """Connect and create the indexes; ``BackendUnavailable`` if MongoDB is not there."""
        owned = client is None
        if client is None:
            client = await trio.to_thread.run_sync(
                lambda: pymongo.MongoClient(uri, **client_options(timeout, pool_size))
            )
        store = cls(client, database, pool_size=pool_size)
        try:
            await store._run(store._setup)
        except BaseException:
            if owned:
                await trio.to_thread.run_sync(client.close)
            raise
        return store

    @classmethod
    async def from_settings(cls, settings: Settings) -> Self:
        return await cls.open(
            settings.mongodb_uri,
            database=settings.mongodb_database,
            timeout=settings.mongodb_timeout,
        )

    def _setup(self) -> None:
        self._jobs.create_indexes(INDEXES)
        try:
            self._db.create_collection(
                ELECTIONS, capped=True, size=ELECTIONS_BYTES, max=ELECTIONS_KEPT
            )
        except CollectionInvalid:
            pass  # it exists already
        except OperationFailure as exc:
            if exc.code != NAMESPACE_EXISTS:  # another node created it meanwhile
                raise

    async def _run(self, fn: Callable[[], T]) -> T:
        """One blocking pymongo call in a worker thread, outages translated."""
        try:
            return await trio.to_thread.run_sync(fn, limiter=self._limiter)
        except InvalidDocument as exc:  # DocumentTooLarge: over the 16 MiB a document holds
            raise RecordRefused("mongodb", str(exc) or type(exc).__name__) from exc
        except PyMongoError as exc:
            if is_unavailable(exc):
                raise BackendUnavailable("mongodb", str(exc) or type(exc).__name__) from exc
            raise

    # -- jobs ----------------------------------------------------------------------
    def _put_many(self, jobs: Sequence[Job]) -> None:
        operations = [upsert_operation(job) for job in jobs]
        for _ in range(2):
            if not operations:
                return
            try:
                self._jobs.bulk_write(operations, ordered=False)
                return
            except BulkWriteError as exc:
                too_large = too_large_refusal(exc.details)
                if too_large is not None:
                    # the rest of the batch was written (unordered); the writer halves the
                    # batch until this record stands alone (version-guarded: rewrites are no-ops)
                    raise RecordRefused("mongodb", too_large) from exc
                try:
                    refused = duplicate_indexes(exc.details)
                except ValueError:
                    raise exc from None
                # once: a duplicate may have lost a race to create the document
                operations = [operations[i] for i in refused]
        # still refused with the document in place: the stored snapshot is newer

    async def put_many(self, jobs: Sequence[Job]) -> None:
        if jobs:
            await self._run(lambda: self._put_many(jobs))

    async def get(self, job_id: str) -> Job | None:
        found = await self._run(lambda: self._jobs.find_one({"_id": job_id}, {"doc": 1}))
        return None if found is None else Job.loads(found["doc"])

    async def query(self, query: JobQuery) -> Page:
        if query.limit <= 0:
            return Page([], None)
        spec = query_filter(query)

        def find() -> list[str]:
            cursor = (
                self._jobs.find(spec, {"doc": 1})
                .sort("_id", pymongo.DESCENDING)
                .limit(query.limit + 1)
            )
            return [d["doc"] for d in cursor]

        return page_from(await self._run(find), query.limit)

    async def delete(self, job_id: str) -> bool:
        result = await self._run(lambda: self._jobs.delete_one({"_id": job_id}))
        return result.deleted_count == 1

    async def count_by_status(self) -> dict[str, int]:
        pipeline = [{"$group": {"_id": "$status", "n": {"$sum": 1}}}]
        rows = await self._run(lambda: list(self._jobs.aggregate(pipeline)))
        counts = {str(s): 0 for s in JobStatus}
        for row in rows:
            counts[row["_id"]] = int(row["n"])
        return counts

    # -- nodes and elections -----------------------------------------------------------
    async def put_node(self, node: NodeRecord) -> None:
        document = node_document(node)
        await self._run(
            lambda: self._nodes.replace_one({"_id": node.node_id}, document, upsert=True)
        )

    async def list_nodes(self) -> list[NodeRecord]:
        rows = await self._run(lambda: list(self._nodes.find().sort("_id", pymongo.ASCENDING)))
        return [node_from(row) for row in rows]

    async def delete_node(self, node_id: str) -> bool:
        result = await self._run(lambda: self._nodes.delete_one({"_id": node_id}))
        return result.deleted_count == 1

    async def add_election(self, record: dict[str, Any]) -> None:
        document = dict(record)  # insert_one adds _id to what it is given
        await self._run(lambda: self._elections.insert_one(document))

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        if limit <= 0:
            return []

        def newest() -> list[dict[str, Any]]:
            cursor = self._elections.find({}, {"_id": 0}).sort("$natural", -1).limit(limit)
            return list(cursor)

        return await self._run(newest)

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        document = schedule_document(schedule)
        await self._run(
            lambda: self._schedules.replace_one({"_id": document["_id"]}, document, upsert=True)
        )

    async def list_schedules(self) -> list[dict[str, Any]]:
        rows = await self._run(lambda: list(self._schedules.find().sort("_id", pymongo.ASCENDING)))
        return [json.loads(row["doc"]) for row in rows]

    async def delete_schedule(self, name: str) -> bool:
        result = await self._run(lambda: self._schedules.delete_one({"_id": name}))
        return result.deleted_count == 1

    # -- life cycle ------------------------------------------------------------------------
    async def ping(self) -> None:
        await self._run(lambda: self.client.admin.command("ping"))

    async def drop(self) -> None:
        """Drop the whole database (tests use a database of their own)."""
        await self._run(lambda: self.client.drop_database(self.database_name))

    async def close(self) -> None:
        await trio.to_thread.run_sync(self.client.close)
