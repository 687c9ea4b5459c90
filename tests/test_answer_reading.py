"""The client's fast reading of answers holding jobs (``read_jobs``, ``read_page``) against
the reading it replaced (``read_answer`` then ``job_of`` for each job): for any answer,
the same jobs or the same error.

The answers are written as text here, so that they can hold what no encoder writes: a
repeated key, a NaN, a lone surrogate escape, numbers past 64 bits or past a float's
range, a byte order mark, trailing bytes.
"""

from __future__ import annotations

import json
import random
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobtrio.client.answers import _fast_jobs, job_of, page_of, read_answer, read_jobs, read_page
from jobtrio.client.calls import Calls
from jobtrio.jobs import WIRE_KEYS, IdGenerator
from jobtrio.submission import validate_submission

NOW = 1_765_000_000.25
_CALL = Calls.submit_many([{"type": "t"}])
_PAGE = Calls.list_page({})


class Raw(str):
    """JSON text written as it is (a token no encoder writes)."""


#: An object as its pairs, in order, a key possibly twice.
Pairs = list[tuple[str, Any]]


def dump(value: Any) -> str:
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return "{" + ",".join(f"{json.dumps(k)}:{dump(v)}" for k, v in value) + "}"
    if isinstance(value, list):
        return "[" + ",".join(dump(v) for v in value) + "]"
    if isinstance(value, dict):
        return dump(list(value.items())) if value else "{}"
    return json.dumps(value, ensure_ascii=False)


def _job_pairs(seed: int) -> Pairs:
    """A job as a node answers it, made by validation from random fields."""
    rng = random.Random(seed)
    data: dict[str, Any] = {"type": rng.choice(["noop", "mail", "caf\u00e9 \U0001f600"])}
    if rng.random() < 0.5:
        data["priority"] = rng.randint(1, 10)
    if rng.random() < 0.5:
        data["payload"] = {"n": rng.randint(-(10**6), 10**6), "s": "\u2028x", "f": 0.1, "l": [1]}
    if rng.random() < 0.5:
        data["scheduled_at"] = NOW + rng.choice([-5, 60, 0.123456])
    if rng.random() < 0.3:
        data["timeout"] = rng.choice([1, 2.5])
    if rng.random() < 0.3:
        data["idempotency_key"] = f"k{seed}"
    if rng.random() < 0.3:
        data["depends_on"] = ["01HF7YAT3VJ3TH6DRRPSRWY48D"]
        data["receive_results"] = rng.random() < 0.5
    job = validate_submission(data, NOW, ids=IdGenerator(random.Random(seed)))
    return list(job.to_dict().items())


_ODD_VALUES = st.sampled_from(
    [
        Raw("NaN"),
        Raw("Infinity"),
        Raw("1e400"),
        Raw("-1e400"),
        Raw("1e-400"),
        Raw("12345678901234567890123"),
        Raw("-9223372036854775809"),
        Raw("9223372036854775807"),
        Raw("1.0000000000000000000001"),
        Raw("-0"),
        Raw("-0.0"),
        Raw("1E2"),
        Raw('"\\ud800"'),
        Raw('"\\udc00x"'),
        Raw('"\\ud83d\\ude00"'),
        Raw('"\\u0000"'),
        True,
        False,
        None,
        0,
        5.0,
        7.5,
        "",
        "pending",
        "PENDING",
        "nope",
        "2024-01-01T00:00:00Z",
        "2024-13-01T00:00:00Z",
        1_700_000_000,
        1_700_000_000_000,
        [],
        [1],
        {},
        [[("number", 1), ("node_id", "n")]],
        [("a", 1), ("a", 2)],
        "caf\u00e9",
    ]
)


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """An answer holding jobs: mostly what a node writes, with some changes."""
    count = draw(st.integers(0, 4))
    jobs: list[Any] = []
    for _ in range(count):
        pairs = _job_pairs(draw(st.integers(0, 10_000)))
        for _ in range(draw(st.sampled_from([0, 0, 0, 0, 1, 1, 2, 3]))):
            change = draw(st.integers(0, 5))
            where = draw(st.integers(0, len(pairs) - 1)) if pairs else 0
            if change == 0 and pairs:  # a field holds something else
                pairs[where] = (pairs[where][0], draw(_ODD_VALUES))
            elif change == 1 and pairs:  # a field is missing
                del pairs[where]
            elif change == 2:  # an unknown field
                pairs.insert(where, (draw(st.sampled_from(["extra", "ID", ""])), 1))
            elif change == 3 and pairs:  # a field twice, the same or another value
                key = pairs[where][0]
                value = draw(st.one_of(st.just(pairs[where][1]), _ODD_VALUES))
                pairs.insert(draw(st.integers(0, len(pairs))), (key, value))
            elif change == 4 and pairs:  # a field's value is a raw odd token
                pairs[where] = (pairs[where][0], draw(_ODD_VALUES))
            elif change == 5 and pairs:  # a key holds odd text
                pairs[where] = (pairs[where][0] + "\u00e9", pairs[where][1])
        jobs.append(pairs if pairs else {})
    if draw(st.integers(0, 19)) == 0:
        jobs.append(draw(_ODD_VALUES))  # a job that is no object
    top: Pairs = [("jobs", jobs), ("count", len(jobs))]
    shape = draw(st.integers(0, 20))
    if shape == 0:
        top = [("count", 1)]
    elif shape == 1:
        top = [("jobs", draw(_ODD_VALUES))]
    elif shape == 2:
        top.insert(0, ("jobs", []))  # "jobs" twice: the last one counts
    elif shape == 3:
        top.append(("next_cursor", draw(st.sampled_from([None, "01HF7YAT3VJ3TH6DRRPSRWY48D"]))))
    elif shape == 4:
        top.append(("next_cursor", draw(_ODD_VALUES)))
    text = dump(top)
    ending = draw(st.sampled_from(["", "", "", "", "", "", "\n", " x", "]"]))
    start = draw(st.sampled_from(["", "", "", "", "", "", " ", "\ufeff"]))
    if shape == 5:
        text = dump(jobs)  # an array, not an object
    return (start + text + ending).encode("utf-8", "surrogatepass")


def _outcome(read: Any, body: bytes) -> tuple[str, Any]:
    """What a reading gives: its value's repr (NaN is not equal to itself), or its error."""
    try:
        return "value", repr(read(httpx.Response(201, content=body)))
    except Exception as exc:
        return "error", (type(exc), str(exc))


def _old_jobs(response: httpx.Response) -> Any:
    return [job_of(j) for j in read_answer(response, _CALL)["jobs"]]


def _old_page(response: httpx.Response) -> Any:
    return page_of(read_answer(response, _PAGE))


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answers())
def test_read_jobs_reads_any_answer_as_before(body: bytes) -> None:
    assert _outcome(lambda r: read_jobs(r, _CALL), body) == _outcome(_old_jobs, body)
    assert _outcome(lambda r: read_page(r, _PAGE), body) == _outcome(_old_page, body)


def test_a_nodes_answer_is_read_the_fast_way_and_the_odd_one_as_before() -> None:
    """The fast reading takes the answers a node writes (else it would gain nothing) and
    leaves the others to the reading before it, which still reads them."""
    jobs = [dict(_job_pairs(seed)) for seed in range(5)]
    body = json.dumps({"jobs": jobs, "count": 5}).encode()
    fast = _fast_jobs(httpx.Response(201, content=body))
    assert fast is not None
    assert [job.to_dict() for job in fast[0]] == jobs
    assert read_jobs(httpx.Response(201, content=body), _CALL) == fast[0]
    # a NaN in a result: msgspec refuses it, the stdlib reads it
    odd = body.replace(b'"result": null', b'"result": NaN', 1)
    assert _fast_jobs(httpx.Response(201, content=odd)) is None
    assert repr(read_jobs(httpx.Response(201, content=odd), _CALL)[0].result) == "nan"
    # an integer past 64 bits stays exact both ways
    big = body.replace(b'"result": null', b'"result": 1180591620717411303425', 1)
    assert read_jobs(httpx.Response(201, content=big), _CALL)[0].result == 2**70 + 1
    assert set(WIRE_KEYS) == set(jobs[0])


def test_a_bad_job_in_a_fast_read_answer_is_the_error_it_was() -> None:
    pairs = _job_pairs(1)
    pairs = [(k, "yesterday" if k == "created_at" else v) for k, v in pairs]
    body = dump([("jobs", [pairs])]).encode()
    with pytest.raises(Exception) as fast:
        read_jobs(httpx.Response(201, content=body), _CALL)
    with pytest.raises(Exception) as old:
        _old_jobs(httpx.Response(201, content=body))
    assert (type(fast.value), str(fast.value)) == (type(old.value), str(old.value))
    assert "is not a job" in str(fast.value)
