"""MongoStore without a MongoDB server.

No MongoDB can run on this machine (the contract suite runs against a real
one only when MONGODB_URI is set). What can be checked here is checked here:

- the documents, filters, operations and error handling, as pure functions;
- that an unreachable server is ``BackendUnavailable``, quickly (real pymongo);
- the whole store, the contract's Store tests included, on mongomock-ng, an
  in-process fake of pymongo's API when it is installed. A fake is not
  MongoDB: it checks our logic (filters, paging, the version guard and its
  duplicate-key path), not the server's index choices or its capped
  collection, which it does not implement.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio
from pymongo import UpdateOne
from pymongo.errors import (
    AutoReconnect,
    BulkWriteError,
    DocumentTooLarge,
    DuplicateKeyError,
    ExecutionTimeout,
    NetworkTimeout,
    OperationFailure,
    ServerSelectionTimeoutError,
)

from jobtrio.backends import mongodb
from jobtrio.backends.base import BackendUnavailable, JobQuery, NodeRecord, RecordRefused
from jobtrio.backends.mongodb import (
    INDEXES,
    MongoStore,
    client_options,
    duplicate_indexes,
    is_unavailable,
    job_fields,
    node_document,
    node_from,
    page_from,
    query_filter,
    upsert_operation,
)
from jobtrio.config import Settings
from jobtrio.jobs import IdGenerator, Job, JobStatus
from jobtrio.submission import validate_submission
from tests import test_backend_contract as contract
from tests.servers import free_port

NOW = 1_700_000_000.123456
ids = IdGenerator()


def make(job_type: str = "noop", now: float = NOW, **fields: Any) -> Job:
    return validate_submission({"type": job_type, **fields}, now, ids=ids)


# --------------------------------------------------------------------------- pure parts


def test_job_fields_hold_the_exact_record_and_queryable_copies():
    job = make("email", payload={"big": 2**64 + 1, "f": 0.1 + 0.2, "z": 1, "a": {}}, queue="mail")
    job.error = "boom"
    fields = job_fields(job)
    assert fields["queue"] == "mail" and Job.loads(fields["doc"]).queue == "mail"
    assert fields["doc"] == job.dumps()
    assert Job.loads(fields["doc"]).dumps() == job.dumps()  # big ints and key order survive
    assert fields["status"] == "pending" and fields["type"] == "email"
    assert fields["created_at"] == NOW and fields["version"] == job.version
    assert fields["error"] == "boom" and fields["priority"] == 5
    assert "_id" not in fields and "payload" not in fields  # the payload lives in doc only


def test_upsert_is_guarded_by_version():
    job = make()
    job.version = 7
    assert upsert_operation(job) == UpdateOne(
        {"_id": job.id, "version": {"$lte": 7}}, {"$set": job_fields(job)}, upsert=True
    )


def test_query_filter_maps_every_filter():
    assert query_filter(JobQuery()) == {}
    q = JobQuery(
        statuses=frozenset({JobStatus.RUNNING, JobStatus.FAILED}),
        type="email",
        created_after=NOW,
        created_before=NOW + 10,
        cursor="01HCURSOR",
        owner="alice",
        queue="render",
    )
    assert query_filter(q) == {
        "status": {"$in": ["failed", "running"]},
        "type": "email",
        "owner": "alice",
        "queue": "render",
        "created_at": {"$gte": NOW, "$lt": NOW + 10},
        "_id": {"$lt": "01HCURSOR"},
    }
    assert query_filter(JobQuery(created_before=NOW)) == {"created_at": {"$lt": NOW}}
    assert query_filter(JobQuery(statuses=frozenset())) == {"status": {"$in": []}}


def test_page_from_cuts_the_lookahead():
    jobs = [make(payload={"i": i}) for i in range(4)]
    docs = [j.dumps() for j in jobs]
    page = page_from(docs, 3)
    assert [j.id for j in page.jobs] == [j.id for j in jobs[:3]]
    assert page.next_cursor == jobs[2].id
    exact = page_from(docs[:3], 3)
    assert len(exact.jobs) == 3 and exact.next_cursor is None
    assert page_from([], 3).next_cursor is None


def test_duplicate_indexes_accepts_only_duplicates():
    details = {
        "writeErrors": [
            {"index": 0, "code": 11000, "errmsg": "E11000 duplicate key"},
            {"index": 3, "code": 11000, "errmsg": "E11000 duplicate key"},
        ],
        "writeConcernErrors": [],
    }
    assert duplicate_indexes(details) == [0, 3]
    with pytest.raises(ValueError, match="Document failed validation"):
        duplicate_indexes(
            {"writeErrors": [{"index": 1, "code": 121, "errmsg": "Document failed validation"}]}
        )
    with pytest.raises(ValueError, match="write concern"):
        duplicate_indexes({"writeErrors": [], "writeConcernErrors": [{"code": 64}]})


@pytest.mark.parametrize(
    ("error", "unavailable"),
    [
        (ServerSelectionTimeoutError("no servers"), True),
        (AutoReconnect("connection reset"), True),
        (NetworkTimeout("timed out"), True),
        (ExecutionTimeout("operation exceeded time limit", 50), True),
        (OperationFailure("bad query", 2), False),
        (DuplicateKeyError("E11000", 11000), False),
    ],
)
def test_which_errors_mean_unavailable(error, unavailable):
    assert is_unavailable(error) is unavailable


def test_client_options_follow_the_timeout():
    options = client_options(2.5, pool_size=4)
    assert options["serverSelectionTimeoutMS"] == 2500
    assert options["timeoutMS"] == 2500 and options["connectTimeoutMS"] == 2500
    assert options["maxPoolSize"] == 8 and options["retryWrites"] is True


def test_node_documents_round_trip():
    node = NodeRecord("n1", "10.0.0.1:7000", "alive", 8, NOW, NOW + 0.5, "http://n1", {"z": 1})
    document = node_document(node)
    assert document["_id"] == "n1"
    assert node_from(document) == node


def test_indexes_cover_the_queries():
    keys = {index.document["name"]: list(index.document["key"].items()) for index in INDEXES}
    assert keys == {
        "status_id": [("status", 1), ("_id", -1)],
        "type_id": [("type", 1), ("_id", -1)],
        "created_at": [("created_at", 1)],
        "owner_id": [("owner", 1), ("_id", -1)],
        "queue_id": [("queue", 1), ("_id", -1)],
    }


# --------------------------------------------------------------------------- real pymongo


async def test_unreachable_server_is_backend_unavailable():
    with trio.fail_after(10):
        with pytest.raises(BackendUnavailable) as info:
            await MongoStore.open(
                f"mongodb://127.0.0.1:{free_port()}/?directConnection=true",
                database="none",
                timeout=0.3,
            )
    assert info.value.backend == "mongodb"


async def test_from_settings_reads_the_three_variables(monkeypatch):
    seen: dict[str, Any] = {}

    async def fake_open(cls, uri, database="jobprocessor", timeout=30.0, **kwargs):
        seen.update(uri=uri, database=database, timeout=timeout)
        return "store"

    monkeypatch.setattr(MongoStore, "open", classmethod(fake_open))
    settings = Settings.from_env(
        {
            "MONGODB_URI": "mongodb://db:27017",
            "MONGODB_DATABASE": "jobs",
            "MONGODB_TIMEOUT": "1500ms",
        },
        dotenv_path=None,
    )
    assert await MongoStore.from_settings(settings) == "store"
    assert seen == {"uri": "mongodb://db:27017", "database": "jobs", "timeout": 1.5}


# --------------------------------------------------------------------------- on a fake


needs_fake = pytest.mark.skipif(
    importlib.util.find_spec("mongomock_ng") is None,
    reason="mongomock-ng (an in-process fake of pymongo) is not installed",
)


@pytest.fixture
async def store() -> AsyncIterator[MongoStore]:
    import mongomock_ng

    s = MongoStore(mongomock_ng.MongoClient(), "jobtrio_unit")
    s._jobs.create_indexes(INDEXES)  # the fake has no capped collections: no _setup()
    try:
        yield s
    finally:
        await s.drop()
        await s.close()


# The contract's Store tests, run against MongoStore on the fake.


@needs_fake
async def test_contract_put_get_and_version_guard(store):
    await contract.test_store_put_get_and_version_guard(store)


@needs_fake
async def test_contract_query_filters_and_pages(store):
    await contract.test_store_query_filters_and_pages(store)


@needs_fake
async def test_contract_status_change_moves_indexes(store):
    await contract.test_store_status_change_moves_indexes(store)


@needs_fake
async def test_contract_delete(store):
    await contract.test_store_delete(store)


@needs_fake
async def test_contract_nodes_and_elections(store):
    await contract.test_store_nodes_and_elections(store)


@needs_fake
async def test_contract_schedules(store):
    await contract.test_store_schedules(store)


@needs_fake
async def test_put_many_keeps_the_newest_within_and_across_batches(store):
    job = make(payload={"big": 2**70, "f": 1 / 3})
    versions = []
    for v in (3, 1, 5, 4, 5):
        snap = job.copy()
        snap.version = v
        snap.status = JobStatus.RUNNING if v < 5 else JobStatus.COMPLETED
        versions.append(snap)
    await store.put_many(versions)  # one unordered batch holding older snapshots
    got = await store.get(job.id)
    assert got.version == 5 and got.status == JobStatus.COMPLETED
    assert json.dumps(got.payload) == json.dumps(job.payload)
    await store.put_many([versions[0]])
    assert (await store.get(job.id)).version == 5


@needs_fake
async def test_put_many_resends_a_duplicate_that_lost_a_creation_race(store):
    """A writer that loses the race to create a record must not lose a newer version."""
    newer = make()
    newer.version = 9
    older = newer.copy()
    older.version = 2
    real_bulk_write = store._jobs.bulk_write
    calls = []

    def racing_bulk_write(operations: list[UpdateOne], ordered: bool = True) -> Any:
        calls.append(len(operations))
        if len(calls) == 1:
            # the rival inserts its older record between our filter and our insert
            store._jobs.insert_one({"_id": older.id, **job_fields(older)})
            raise BulkWriteError(
                {
                    "writeErrors": [{"index": 0, "code": 11000, "errmsg": "E11000"}],
                    "writeConcernErrors": [],
                }
            )
        return real_bulk_write(operations, ordered=ordered)

    store._jobs.bulk_write = racing_bulk_write
    await store.put_many([newer])
    assert calls == [1, 1]
    assert (await store.get(newer.id)).version == 9


@needs_fake
async def test_put_many_raises_other_write_errors(store):
    def failing_bulk_write(operations: list[UpdateOne], ordered: bool = True) -> Any:
        raise BulkWriteError(
            {"writeErrors": [{"index": 0, "code": 121, "errmsg": "invalid"}], "nInserted": 0}
        )

    store._jobs.bulk_write = failing_bulk_write
    with pytest.raises(BulkWriteError):
        await store.put_many([make()])


@needs_fake
async def test_outages_become_backend_unavailable(store):
    def down(*args: Any, **kwargs: Any) -> Any:
        raise ServerSelectionTimeoutError("no servers reachable")

    store._jobs.find_one = down
    with pytest.raises(BackendUnavailable, match="no servers reachable"):
        await store.get("x")


@needs_fake
async def test_elections_come_back_newest_first_without_ids(store):
    for i in range(4):
        await store.add_election({"leader": f"n{i}", "epoch": i, "at": NOW + i / 3})
    records = await store.list_elections(limit=3)
    assert records == [{"leader": f"n{i}", "epoch": i, "at": NOW + i / 3} for i in (3, 2, 1)]
    assert await store.list_elections(limit=0) == []


def test_module_constants_are_sane():
    assert mongodb.ELECTIONS_KEPT >= 50 and mongodb.DUPLICATE_KEY == 11000


class _RefusingCollection:
    """What pymongo does with a document over the server's limit (16 MiB): it refuses it
    client-side, before sending, with ``DocumentTooLarge`` (the fake does not check the
    limit, so the refusal is raised here; a real server's is not exercised)."""

    def bulk_write(self, operations: list[Any], ordered: bool = False) -> None:
        raise DocumentTooLarge(
            "BSON document too large (17000123 bytes) - the connected server supports BSON "
            "document sizes up to 16793598 bytes."
        )


@needs_fake
async def test_a_document_over_the_limit_is_a_refused_record_not_a_crash(store):
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import validate_submission

    job = validate_submission({"type": "noop"}, 1_700_000_000.0, ids=IdGenerator())
    store._jobs = _RefusingCollection()  # type: ignore[assignment]
    with pytest.raises(RecordRefused, match="document too large") as info:
        await store.put_many([job])
    assert info.value.backend == "mongodb"


class _ServerRefusingCollection:
    """A server refusing a document just under pymongo's client-side check: the bulk
    write fails with the server's code (these are MongoDB's documented codes; not seen
    against a real server here)."""

    def __init__(self, code: int) -> None:
        self.code = code

    def bulk_write(self, operations: list[Any], ordered: bool = False) -> None:
        raise BulkWriteError(
            {
                "writeErrors": [
                    {"index": 1, "code": self.code, "errmsg": "BSONObj size: 16793700 is invalid"},
                    {"index": 2, "code": 11000, "errmsg": "E11000 duplicate key"},
                ],
                "writeConcernErrors": [],
            }
        )


@needs_fake
@pytest.mark.parametrize("code", sorted(mongodb.TOO_LARGE_CODES))
async def test_a_document_the_server_finds_too_large_is_a_refused_record(store, code):
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import validate_submission

    jobs = [
        validate_submission({"type": "noop"}, 1_700_000_000.0, ids=IdGenerator()) for _ in "abc"
    ]
    store._jobs = _ServerRefusingCollection(code)  # type: ignore[assignment]
    with pytest.raises(RecordRefused, match="BSONObj size"):
        await store.put_many(jobs)


def test_only_too_large_and_duplicates_make_a_too_large_refusal():
    large = {"index": 0, "code": 10334, "errmsg": "too large"}
    assert mongodb.too_large_refusal({"writeErrors": [large]}) == "too large"
    dup = {"index": 1, "code": 11000, "errmsg": "dup"}
    assert mongodb.too_large_refusal({"writeErrors": [dup]}) is None  # the version guard
    other = {"index": 1, "code": 121, "errmsg": "Document failed validation"}
    assert mongodb.too_large_refusal({"writeErrors": [large, other]}) is None  # still a bug
    concern = {"writeErrors": [large], "writeConcernErrors": [{"code": 64}]}
    assert mongodb.too_large_refusal(concern) is None
