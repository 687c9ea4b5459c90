"""The client's fast reading of answers holding jobs (``read_jobs``, ``read_page``) and a
value nested deep: msgspec gives up (``RecursionError``) about a thousand levels down,
below orjson's 1,024, so such an answer must be read as before (orjson, then the stdlib),
for the same jobs or the same error. tests/test_answer_reading.py's hypothesis answers
nest a few levels only."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from jobtrio.client.answers import job_of, page_of, read_answer, read_jobs, read_page
from jobtrio.client.calls import Calls
from jobtrio.jobs import IdGenerator
from jobtrio.submission import validate_submission

NOW = 1_765_000_000.25
_CALL = Calls.submit_many([{"type": "t"}])
_PAGE = Calls.list_page({})


def _nesting(value) -> int:
    """How deep ``value`` nests (iterative: repr or == of it would recurse too deep)."""
    depth = 0
    while isinstance(value, list) and value:
        value, depth = value[0], depth + 1
    return depth + isinstance(value, list)


def _summary(job) -> tuple:
    return job.id, job.status, job.version, _nesting(job.result)


def _outcome(read, body: bytes):
    try:
        got = read(httpx.Response(200, content=body))
    except Exception as exc:
        return "error", (type(exc), str(exc))
    if isinstance(got, list):
        return "value", [_summary(job) for job in got]
    return "value", ([_summary(job) for job in got.jobs], got.next_cursor)


@pytest.mark.parametrize("depth", [1010, 1019, 1500])
def test_a_result_nested_deep_is_read_as_before(depth: int) -> None:
    # 1010 and 1019: orjson reads them (the answer nests 3 levels more, 1,024 at most);
    # 1500: nobody before the stdlib, which raises RecursionError, as it did
    job = validate_submission({"type": "noop"}, NOW, ids=IdGenerator(random.Random(1)))
    text = json.dumps({"jobs": [job.to_dict()], "next_cursor": None})
    body = text.replace('"result": null', '"result": ' + "[" * depth + "]" * depth, 1).encode()
    old_jobs = _outcome(lambda r: [job_of(j) for j in read_answer(r, _CALL)["jobs"]], body)
    assert _outcome(lambda r: read_jobs(r, _CALL), body) == old_jobs
    old_page = _outcome(lambda r: page_of(read_answer(r, _PAGE)), body)
    assert _outcome(lambda r: read_page(r, _PAGE), body) == old_page
    assert old_jobs[0] == ("value" if depth < 1024 else "error")
    if depth < 1024:
        assert old_jobs[1][0][3] == depth
