"""The fast codecs on the enqueue path write and read what the stdlib did.

orjson writes the API's answers and the event stream's entries, and reads
the client's answers; ``to_iso`` and ``parse_time`` remember the times they
formatted or read lately. Each is checked against the stdlib or the slow
path it replaces: the same bytes, the same values, the same refusals.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest
import trio
from quart_trio.testing import TrioClient

from jobtrio import eventstream
from jobtrio.actors.node import Node
from jobtrio.api.app import create_app
from jobtrio.backends.memory import MemoryBroker, MemoryStore
from jobtrio.client.answers import json_of
from jobtrio.config import Settings
from jobtrio.jobs import ValidationError, iso_text, job_from_answer, parse_time, to_iso
from jobtrio.jsontext import compact_encoder
from jobtrio.submission import MAX_PAYLOAD_DEPTH, validate_submission
from tests.test_redis_hotpath import json_types


@pytest.fixture
async def client() -> AsyncIterator[TrioClient]:
    node = Node(Settings(node_id="codec-node", worker_count=1), MemoryBroker(), MemoryStore())
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        yield create_app(node).test_client()  # type: ignore[misc]
        node.request_stop()


def stdlib(value: Any) -> bytes:
    """What Quart's stdlib provider wrote for a compact answer."""
    return (json.dumps(value, separators=(",", ":")) + "\n").encode()


@pytest.mark.parametrize(
    "payload",
    [
        {"source": "bench", "n": 1, "f": 0.1 + 0.2, "list": [None, True, False, 'a/b\\c"d']},
        {"text": "żółw 🐢 \u2028"},  # outside ASCII: escaped as the stdlib does
        {"big": 2**70},  # past 64 bits: orjson refuses, the stdlib writes it
        {"control": "\x00\x1f\x7f"},
    ],
)
async def test_job_answers_are_the_stdlib_bytes(client: TrioClient, payload: dict[str, Any]):
    response = await client.post(
        "/api/v1/jobs/batch", json={"jobs": [{"type": "noop", "payload": payload}] * 3}
    )
    raw = await response.get_data()
    assert response.status_code == 201, raw
    assert response.mimetype == "application/json"
    assert raw == stdlib(json.loads(raw))
    assert json.loads(raw)["jobs"][0]["payload"] == payload


async def test_error_answers_are_the_stdlib_bytes(client: TrioClient):
    response = await client.post("/api/v1/jobs", json={"type": "noop", "prority": 1})
    raw = await response.get_data()
    assert response.status_code == 422
    assert raw == stdlib(json.loads(raw))
    assert set(json.loads(raw)["error"]) == {"code", "message", "field"}


@pytest.mark.parametrize(
    "event",
    [
        {"kind": "job.submitted", "job_id": "01J", "error": 'żółw \u2028 "q"', "attempt": 0},
        {"kind": "x", "n": 2**70, "nested": {"a": [1, 0.5, None]}},
    ],
)
def test_event_entries_are_the_stdlib_text(event: dict[str, Any]):
    expected = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    assert eventstream.encode(event) == expected


def test_event_entries_refuse_what_the_stdlib_refuses():
    with pytest.raises(TypeError):
        eventstream.encode({"kind": "x", "value": object()})


def test_to_iso_is_the_datetime_text_for_many_distinct_times():
    base = 1_700_000_000.0
    times = [base + i * 0.000_001 for i in range(700)] + [base, 0.0, 253402300799.0]
    for _ in range(2):  # the second pass reads what the first remembered (or formats again)
        for ts in times:
            text = dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="microseconds")
            assert to_iso(ts) == text.replace("+00:00", "Z")
    assert to_iso(None) is None


def test_iso_text_is_the_datetime_text_to_the_rounded_microsecond():
    """iso_text formats the whole second once and rounds the microseconds itself: as
    datetime does, half to even, at every second boundary and across seconds."""
    rng = random.Random(14)
    times = [rng.uniform(0, 4e9) for _ in range(20_000)]
    times += [1_700_000_000 + (k + 0.5) / 1e6 for k in range(20_000)]  # halves, near enough
    times += [k + 0.5e-6 for k in range(2_000)] + [k - 0.4e-6 for k in range(1, 2_000)]
    times += [math.nextafter(t, 0.0) for t in times[-4_000:]]
    times += [0.0, 0.9999995, 1.9999995, 253402300799.0, 253402300799.4999, -1.5, -0.0000004]
    for ts in times:
        want = dt.datetime.fromtimestamp(ts, tz=dt.UTC).isoformat(timespec="microseconds")
        assert iso_text(ts) == want.replace("+00:00", "Z"), ts
    with pytest.raises((ValueError, OverflowError, OSError)):
        iso_text(1e20)  # past year 9999: refused as datetime refuses it


@pytest.mark.parametrize("ascii_only", [True, False])
@pytest.mark.parametrize("allow_nan", [True, False])
@pytest.mark.parametrize("circular", [True, False])
def test_compact_encoder_writes_and_refuses_what_json_does(
    ascii_only: bool, allow_nan: bool, circular: bool
):
    encode = compact_encoder(ensure_ascii=ascii_only, allow_nan=allow_nan, check_circular=circular)
    reference = json.JSONEncoder(
        separators=(",", ":"),
        ensure_ascii=ascii_only,
        allow_nan=allow_nan,
        check_circular=circular,
    ).encode
    values: list[Any] = [
        {},
        [],
        "",
        'żółw \u2028 "q" \\',
        {"source": "bench"},
        1.5,
        2**70 + 1,
        -0.0,
        None,
        True,
        {"a": [1, 0.1, None, {"b": "\x00\x1f"}], "ü": {"x": []}},
        [1e308, 5e-324, 1700000000.123456],
        {3: "int key", 2.5: "float key", None: "null key", True: "bool key"},
    ]
    for value in values:
        assert encode(value) == reference(value)
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    for bad in ([math.nan], {"inf": math.inf}, {"x": object()}, {(1, 2): 3}, cyclic):
        try:
            want = reference(bad)
        except (TypeError, ValueError, RecursionError) as exc:
            with pytest.raises(type(exc)) as got:
                encode(bad)
            assert str(got.value) == str(exc)
        else:
            assert encode(bad) == want
    assert encode([{"after": "a refusal"}]) == '[{"after":"a refusal"}]'  # no memo left over


def test_a_payload_that_holds_itself_is_refused_as_before():
    """The payload encoder keeps no circular-reference memo (one encoder for every call):
    a payload holding itself is still refused with the same message."""
    payload: dict[str, Any] = {}
    payload["self"] = payload
    with pytest.raises(ValidationError) as info:
        validate_submission({"type": "t", "payload": payload}, 1.0)
    assert info.value.message == "payload must be JSON-serialisable"


@pytest.mark.parametrize("number", [float("nan"), float("inf"), -float("inf")])
def test_a_payload_holding_nan_or_an_infinity_is_refused_naming_it(number: float) -> None:
    """A Python caller's NaN or infinity (a body's 1e400 reads as one): JSON cannot
    carry it, and the message says which values those are."""
    with pytest.raises(ValidationError) as info:
        validate_submission({"type": "t", "payload": {"deep": [{"x": number}]}}, 1.0)
    assert info.value.message == (
        "payload holds NaN or an infinity (a number such as 1e400 reads as one), "
        "which JSON cannot carry"
    )
    assert info.value.field == "payload"


def test_parse_time_remembers_only_what_it_accepted():
    text = "2024-01-01T12:00:00.250000Z"
    assert parse_time(text, "scheduled_at") == 1704110400.25
    assert parse_time(text, "created_at") == 1704110400.25
    for _ in range(2):  # a refused text is refused every time, naming the field asked
        with pytest.raises(ValidationError) as info:
            parse_time("10000-01-01T00:00:00Z", "scheduled_at")
        assert info.value.field == "scheduled_at"
        with pytest.raises(ValidationError) as info:
            parse_time("9999-12-31T23:59:60Z", "other")
        assert info.value.field == "other"


def test_the_client_reads_answers_as_json_does():
    big = (2**70 + 1, 2**64 + 1, -(2**63) - 1, 2**64 - 1, 10**30)
    bodies = [b'{"a":[1,0.1,"\\u00fc\\ud83d\\udc22"]}', b'{"a":NaN}']
    bodies += [b'{"n":%d}' % n for n in big]  # orjson would read these as floats
    for body in bodies:
        got = json_of(httpx.Response(200, content=body))
        want = json.loads(body)
        if isinstance(want["a" if "a" in want else "n"], float):
            assert math.isnan(got["a"])
        else:
            assert got == want and type(got.get("n")) is type(want.get("n"))
    with pytest.raises(ValueError):
        json_of(httpx.Response(200, content=b"<html>"))


def depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize("levels", [1, 2, 63, 64, 65, 66, 120])
def test_the_payload_depth_limit_holds_at_its_edge(levels: int):
    payload = {"a": {"b": "{[{[" * 40}}  # brackets inside strings count for nothing
    inner = payload
    while depth(payload) < levels:
        inner["x"] = {}
        inner = inner["x"]
    assert depth(payload) == max(levels, 2)
    if depth(payload) > MAX_PAYLOAD_DEPTH:
        with pytest.raises(ValidationError) as info:
            validate_submission({"type": "noop", "payload": payload}, 1_700_000_000.0)
        assert info.value.message == f"payload is nested deeper than {MAX_PAYLOAD_DEPTH} levels"
    else:
        job = validate_submission({"type": "noop", "payload": payload}, 1_700_000_000.0)
        assert job.payload == payload


def _outcome(read: Any, raw: bytes) -> Any:
    """What a body reader makes of ``raw``: the value with its types, or the 400's words."""
    from jobtrio.api.errors import ApiError

    try:
        value = read(raw)
    except ApiError as exc:
        return ("refused", exc.status, exc.code, exc.message)
    return ("read", json.dumps(value), json_types(value))


def _nested(depth: int) -> bytes:
    return b'{"jobs":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


REQUEST_BODIES = [
    b'{"jobs":[{"type":"t","payload":{"a":1,"b":[1.5,null,true]}}]}',
    b'{"a" : 1 ,\n "b":\t{"c":"x"}}',
    b'{"a":1,"a":2}',  # a duplicate key
    b'{"jobs":[{"type":"t","type":"u"}]}',
    b'{"\\u0061":1,"a":2}',  # the same key spelt two ways
    b'{"a":"x\\":y","b":1}',  # a key's end inside a string: a false alarm
    b'{"a" :1,"a":2}',
    b'{"a":1,"a"\t:2}',  # a duplicate whose key ends in whitespace: counted all the same
    b'{"a":1,"a"\r\n:2}',
    b'{"a":"x\\" :y","a":2}',  # an escaped quote, a space and a colon in a string
    b'{"a":"\\ud800"}',  # a lone surrogate
    b'{"a":"\\ud800\\udc00"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xc0\xaf"}',
    b'\xef\xbb\xbf{"a":1}',  # a byte order mark
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":1e400}',
    b'{"a":-0,"b":-0.0,"c":1E2,"d":5e-324,"e":1e-400,"f":0.1}',
    b'{"a":18446744073709551615,"b":-9223372036854775809,"c":1180591620717411303425}',
    b'{"a":' + b"1" * 5000 + b"}",
    b'{"a":123456789012345678,"b":"1234567890123456789"}',
    b'{"a":1} x',
    b'{"a":1,}',
    b"",
    b"  ",
    b'"a string"',
    b"[1,2]",
    b'{"a":"x\x00"}',
    b'{"a":"\x7f\xc5\xbc\xf0\x9f\x90\xa2"}',
    _nested(64),
    _nested(65),
    b"[" * 2000 + b"]" * 2000,
]


@pytest.mark.parametrize("raw", REQUEST_BODIES, ids=range(len(REQUEST_BODIES)))
def test_request_bodies_read_by_orjson_equal_the_checked_reading(raw: bytes) -> None:
    """orjson reads a request body only when it gives what the stdlib's checked reading
    gives: the same values and types, or the same refusal (code and message)."""
    from jobtrio.api import parsing

    assert _outcome(parsing.decode_json, raw) == _outcome(parsing._decode_checked, raw)


def test_a_plain_batch_is_read_by_orjson() -> None:
    from jobtrio.api import parsing

    body = {"jobs": [{"type": "noop", "payload": {"i": i, "x": [1.5]}} for i in range(1000)]}
    raw = json.dumps(body).encode()
    assert parsing._decode_fast(raw) == body
    assert parsing._decode_fast(b'{"a":1,"a":2}') is parsing._REFUSED
    assert parsing._decode_fast(_nested(65)) is parsing._REFUSED


@pytest.mark.parametrize("raw", REQUEST_BODIES, ids=range(len(REQUEST_BODIES)))
def test_key_ends_are_counted_as_the_pattern_counts_them(raw: bytes) -> None:
    """``_key_ends`` counts ``":`` alone when no quote is followed by whitespace: the same
    count as the pattern's, for every body, with or without such a quote."""
    from jobtrio.api import parsing

    for body in (raw, raw.replace(b'":', b'" :'), raw.replace(b'",', b'"\n,')):
        assert parsing._key_ends(body) == len(parsing._KEY_END.findall(body))


def test_ids_are_the_ulid_of_their_time_and_randomness():
    """IdGenerator keeps the text of a millisecond's time and writes the randomness alone:
    each id is still the 26 Crockford characters of (ms << 80) | random bits, in order."""
    from jobtrio.jobs import CROCKFORD, IdGenerator

    rng = random.Random(11)
    seen = random.Random(11)
    ids = IdGenerator(rng)
    last_ms, last_rand = -1, 0
    made = []
    for now in [0.0, 0.0005, 1.0, 1.0, 1.0, 1700000000.123, 253402300799.999] * 3:
        text = ids.new(now)
        ms = int(now * 1000)
        if ms <= last_ms:
            ms, rand = last_ms, last_rand + 1
        else:
            rand = seen.getrandbits(80)
        last_ms, last_rand = ms, rand
        value = (ms << 80) | rand
        assert text == "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in range(25, -1, -1))
        made.append(text)
    assert made == sorted(made)


def test_ids_counting_up_within_a_millisecond_carry_into_the_kept_characters():
    """Within a millisecond the randomness counts up: past each 2**20 (and at the 80-bit
    wrap) the first characters of the randomness, which IdGenerator keeps, change."""
    from jobtrio.jobs import CROCKFORD, IdGenerator

    for start in (2**20 - 3, 2**40 - 2, 2**80 - 2):
        rng = random.Random()
        rng.getrandbits = lambda k, start=start: start  # type: ignore[method-assign]
        ids = IdGenerator(rng)
        for i in range(6):
            value = (1_700_000_000_123 << 80) | ((start + i) & (2**80 - 1))
            expected = "".join(CROCKFORD[(value >> (5 * j)) & 31] for j in range(25, -1, -1))
            assert ids.new(1_700_000_000.123) == expected


def test_a_batch_of_ids_is_the_ids_made_one_by_one():
    """``new_many``: the very ids as many calls of ``new`` make, from the same state, also
    where the last 20 bits (which it counts alone) or all 80 run out, and for 0 and 1."""
    from jobtrio.jobs import IdGenerator

    for start in (0, 5, 2**20 - 3, 2**20 - 1, 2**40 - 2, 2**80 - 2, 2**80 - 1):
        for count in (0, 1, 2, 3, 7, 1500):
            one, many = random.Random(), random.Random()
            one.getrandbits = lambda k, start=start: start  # type: ignore[method-assign]
            many.getrandbits = lambda k, start=start: start  # type: ignore[method-assign]
            by_one, by_many = IdGenerator(one), IdGenerator(many)
            for now in (1_700_000_000.123, 1_700_000_000.123, 1_700_000_001.5):
                expected = [by_one.new(now) for _ in range(count)]
                assert by_many.new_many(count, now) == expected
                assert by_many.new(now) == by_one.new(now)  # and the state after is the same
    ids = IdGenerator(random.Random(4))
    made = ids.new_many(5000, 1_700_000_000.0)
    assert made == sorted(made) and len(set(made)) == 5000


def test_a_validated_batch_is_its_jobs_validated_one_by_one():
    """``validate_many``: the jobs, ids included, and the errors (index, words, field,
    code) ``validate_submission`` gives item by item; an id only for a valid item."""
    from jobtrio.jobs import IdGenerator
    from jobtrio.submission import SubmissionLimits, validate_many

    items: list[Any] = [
        {"type": "a"},
        {"type": "b", "priority": 11},
        "not a job",
        {"type": "c", "payload": {"x": [1]}, "scheduled_at": 1_700_000_100},
        {"type": "d", "status": "completed"},
        {"type": "e", "depends_on": ["01HF7YAT3VJ3TH6DRRPSRWY48D"], "queue": "q"},
    ]
    limits = SubmissionLimits(1000, 2, 10)
    for batch in (items, [i for i in items if isinstance(i, dict) and "status" not in i][:1]):
        one, many = IdGenerator(random.Random(9)), IdGenerator(random.Random(9))
        expected, refused = [], []
        for i, item in enumerate(batch):
            try:
                expected.append(validate_submission(item, 1_700_000_000.5, limits, one))
            except ValidationError as exc:
                refused.append((i, exc.message, exc.field, exc.code))
        jobs, errors = validate_many(batch, 1_700_000_000.5, limits, many)
        assert jobs == expected
        assert [(i, e.message, e.field, e.code) for i, e in errors] == refused
        assert many.new(1_700_000_000.5) == one.new(1_700_000_000.5)


def _from_dict_before(d: Any) -> Any:
    """``Job.from_dict`` as it was written before it skipped the usual empty fields."""
    from jobtrio.jobs import DEFAULT_PRIORITY, DEFAULT_QUEUE, Attempt, Job, JobStatus

    def t(name: str) -> float | None:
        v = d.get(name)
        return None if v is None else parse_time(v, name)

    return Job(
        id=d["id"],
        type=d["type"],
        priority=int(d.get("priority", DEFAULT_PRIORITY)),
        payload=d.get("payload") or {},
        status=JobStatus(d.get("status", "pending")),
        created_at=t("created_at") or 0.0,
        updated_at=t("updated_at") or 0.0,
        scheduled_at=t("scheduled_at"),
        started_at=t("started_at"),
        completed_at=t("completed_at"),
        retry_count=int(d.get("retry_count", 0)),
        max_retries=int(d.get("max_retries", 3)),
        timeout=d.get("timeout"),
        result=d.get("result"),
        error=d.get("error"),
        node_id=d.get("node_id"),
        worker_id=d.get("worker_id"),
        attempts=[Attempt.from_dict(a) for a in d.get("attempts") or []],
        idempotency_key=d.get("idempotency_key"),
        lease_expirations=int(d.get("lease_expirations", 0)),
        progress=d.get("progress"),
        depends_on=list(d.get("depends_on") or []),
        on_dependency_failure=d.get("on_dependency_failure"),
        waiting_for=list(d.get("waiting_for") or []),
        dependents=list(d.get("dependents") or []),
        dependency_results=d.get("dependency_results"),
        workflow_id=d.get("workflow_id"),
        workflow=d.get("workflow"),
        version=int(d.get("version", 0)),
        owner=d.get("owner"),
        queue=d.get("queue") or DEFAULT_QUEUE,
    )


def test_job_from_dict_reads_what_it_read_before() -> None:
    """The client reads every answered job through ``Job.from_dict``: the faster form
    gives the same job, or the same error, for full, sparse and malformed dicts."""
    from jobtrio.jobs import Attempt, Job

    job = validate_submission({"type": "t", "payload": {"a": 1}, "depends_on": [_ID]}, 1.5e9)
    job.attempts = [Attempt(1, "n1", "n1/w1", 1.5e9, 1.5e9 + 1, "failed", "x")]
    job.started_at, job.waiting_for, job.dependents = 1.5e9 + 2, [_ID], [_ID]
    full = json.loads(json.dumps(job.to_dict()))
    cases: list[Any] = [full, {"id": "x", "type": "t"}]
    for name, value in (
        ("status", "completed"), ("status", "bogus"), ("status", ["x"]), ("status", None),
        ("priority", None), ("priority", "7"), ("created_at", 0), ("created_at", "nope"),
        ("scheduled_at", 1.7e9), ("scheduled_at", True), ("attempts", None), ("attempts", []),
        ("depends_on", None), ("depends_on", "AB"), ("queue", ""), ("payload", None),
        ("waiting_for", ()), ("version", 2.9), ("priority", True), ("retry_count", 1.0),
        ("lease_expirations", "2"), ("max_retries", False), ("created_at", None),
        ("updated_at", "2024-01-01T00:00:00+01:00"), ("started_at", "later"),
        ("completed_at", 1.7e9), ("attempts", ()), ("dependents", None), ("payload", {}),
        ("queue", None), ("status", "waiting"),
    ):  # fmt: skip
        cases.append({**full, name: value})
    cases.append({**full, "attempts": [], "started_at": None})  # the usual answer's job
    cases.append({k: v for k, v in full.items() if k != "type"})
    cases.append({**{k: v for k, v in full.items() if k != "type"}, "other": 1})
    for d in cases:
        for read in (Job.from_dict, job_from_answer):
            try:
                want: Any = _from_dict_before(d)
            except Exception as exc:  # the same error, type and words
                with pytest.raises(type(exc)) as info:
                    read(d)
                assert str(info.value) == str(exc)
            else:
                got = read(d)
                assert got == want and type(got.status) is type(want.status)
                assert type(got) is Job
                if read is Job.from_dict:
                    assert got.depends_on is not d.get("depends_on")  # a copy, as before
                for name in ("depends_on", "waiting_for", "dependents", "attempts"):
                    assert type(getattr(got, name)) is list


def test_a_job_read_from_an_answer_takes_its_lists() -> None:
    """``job_from_answer`` (the client's reading) keeps the decoded dict's lists: four
    containers fewer a job for the collector; ``from_dict`` still copies them."""
    from jobtrio.jobs import Job

    job = validate_submission({"type": "t", "depends_on": [_ID]}, 1.5e9)
    d = json.loads(json.dumps(job.to_dict()))
    got = job_from_answer(d)
    assert got == job
    for name in ("depends_on", "waiting_for", "dependents", "attempts"):
        assert getattr(got, name) is d[name]
    assert Job.from_dict(d).depends_on is not d["depends_on"]


_ID = "01J9Z6N5G4X8W3QH2K7R1M0P9T"


def test_a_validated_job_is_the_job_its_fields_name():
    """validate_submission builds its Job by position (``_new_job``, generated from the
    class' fields): every value lands in the field of its name, the rest at their
    defaults, and no two jobs share a list."""
    from jobtrio.jobs import IdGenerator, Job, JobStatus
    from jobtrio.submission import validate_submission

    now = 1_700_000_000.5
    parent = "01HF7YAT3VJ3TH6DRRPSRWY48D"
    data = {
        "type": "email",
        "priority": 9,
        "payload": {"to": "a"},
        "max_retries": 7,
        "scheduled_at": now + 60,
        "timeout": 12,
        "idempotency_key": "k1",
        "queue": "mail",
        "depends_on": [parent],
        "on_dependency_failure": "run",
        "receive_results": True,
    }
    job = validate_submission(data, now, ids=IdGenerator(random.Random(3)))
    expected = Job(
        id=IdGenerator(random.Random(3)).new(now),
        type="email",
        priority=9,
        payload={"to": "a"},
        status=JobStatus.SCHEDULED,
        created_at=now,
        updated_at=now,
        scheduled_at=now + 60,
        max_retries=7,
        timeout=12.0,
        idempotency_key="k1",
        depends_on=[parent],
        on_dependency_failure="run",
        dependency_results={},
        version=1,
        queue="mail",
    )
    assert job == expected
    other = validate_submission({"type": "t"}, now)
    assert other.attempts == [] and other.attempts is not job.attempts
    assert other.waiting_for is not job.waiting_for and other.dependents is not job.dependents


def _stdlib_body(value: Any) -> bytes:
    """What httpx's ``json=`` sends (httpx >= 0.28)."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return text.encode()


def test_request_body_is_orjson_only_where_it_writes_the_same_values() -> None:
    """``request_body``: the same values, types included, as the stdlib body, or None
    (left to httpx's ``json=``) for everything orjson would write otherwise or refuse."""
    from jobtrio.jsontext import request_body

    class Key(str):
        pass

    same: list[Any] = [
        {"jobs": [{"type": "t", "payload": {"a": [1, 2.5, -0.0, 1e16, 5e-324]}}]},
        {"type": "ž🐢\u2028\x7f\x1f", "payload": {"big": 2**63 - 1, "neg": -(2**63)}},
        {"t": True, "f": False, "tuple": (1, "a"), "nested": [[[{}]]]},
        {"scheduled_at": 1_765_000_000.123456, "text": 'q"\\/'},
    ]
    for value in same:
        body = request_body(value)
        assert body is not None
        assert json_types(json.loads(body)) == json_types(json.loads(_stdlib_body(value)))
        assert json.loads(body) == json.loads(_stdlib_body(value))
    circular: list[Any] = []
    circular.append(circular)
    left: list[Any] = [
        {"payload": {"x": float("nan")}},
        {"payload": {"x": float("inf")}},
        {"payload": [-math.inf]},
        {"payload": {"big": 2**64}},
        {"payload": {"big": -(2**63) - 1}},
        {"payload": {"x": None}},  # a real null: the stdlib writes it
        {"payload": "nullable"},
        {"payload": {1: "int key"}},
        {"payload": {Key("k"): 1}},
        {"payload": Key("sub")},
        {"payload": dt.datetime(2024, 1, 1)},
        {"payload": {"x": {1, 2}}},
        {"payload": "\ud800"},
        {"payload": circular},
    ]
    for value in left:
        assert request_body(value) is None, value


async def test_the_client_sends_orjson_bodies_and_refuses_nan_as_before() -> None:
    """The client's request bodies: orjson's bytes when ``request_body`` gives them (with
    the JSON content type), else httpx's ``json=`` as before: a NaN is still refused
    before anything is sent, with httpx's words; an integer past 64 bits goes exact."""
    from jobtrio.client import Client

    seen: list[httpx.Request] = []
    job = validate_submission({"type": "t"}, 1.5e9)

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json={"jobs": [job.to_dict()], "count": 1})

    with Client("http://node", transport=httpx.MockTransport(record)) as client:
        body = {"type": "t", "payload": {"n": 1e16, "s": "ž"}}
        client.submit_many([body])
        # orjson's bytes (its 1e16 is the stdlib's 1e+16)
        assert seen[-1].content == orjson.dumps({"jobs": [body]})
        assert seen[-1].headers["content-type"] == "application/json"
        assert seen[-1].headers["content-length"] == str(len(seen[-1].content))
        client.submit_many([{"type": "t", "payload": {"n": 2**70 + 1}}])
        assert json.loads(seen[-1].content)["jobs"][0]["payload"]["n"] == 2**70 + 1
        sent = len(seen)
        for bad in (math.nan, math.inf, -math.inf):
            with pytest.raises(ValueError) as info:
                client.submit_many([{"type": "t", "payload": {"x": bad}}])
            with pytest.raises(ValueError) as reference:
                _stdlib_body({"x": bad})
            assert str(info.value) == str(reference.value)
        assert len(seen) == sent  # refused before sending, as before


def test_types_validated_once_a_batch_refuse_what_they_refused():
    """Validation remembers the types it accepted (a batch's jobs share one): what it
    refused it still refuses with the same words, before and after, and a type
    remembered then forgotten (more than the memory holds) is accepted again."""
    from jobtrio import submission

    bad: list[Any] = ["", "  ", "a\x00b", "x" * 201, "\u202etype", 5, None, ["noop"], True]
    before = []
    for value in bad:
        with pytest.raises(ValidationError) as caught:
            validate_submission({"type": value}, 1.0)
        before.append((caught.value.message, caught.value.field, caught.value.code))
    for i in range(submission._VALID_TYPES_MAX + 3):
        assert validate_submission({"type": f"t{i}"}, 1.0).type == f"t{i}"
    assert validate_submission({"type": "t0"}, 1.0).type == "t0"
    for value, words in zip(bad, before, strict=True):
        with pytest.raises(ValidationError) as caught:
            validate_submission({"type": value}, 1.0)
        assert (caught.value.message, caught.value.field, caught.value.code) == words
