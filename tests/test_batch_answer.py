"""A batch's answer written from its jobs' fields (``api.batch_answer``) is the provider's
text of their dicts, byte for byte, or is left to the provider."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jobtrio.api.batch_answer import batch_answer_body
from jobtrio.api.jsonprovider import _OPTIONS, _refuse
from jobtrio.jobs import Attempt, Job, JobStatus
from jobtrio.submission import validate_many
from tests import strategies

NOW = 1_765_000_000.123456


def provider(value: Any) -> bytes:
    """What the app's provider (``jsonprovider``) writes for a compact answer: orjson's
    text, else the stdlib's (Quart's, which escapes text outside ASCII)."""
    try:
        body = orjson.dumps(value, default=_refuse, option=_OPTIONS)
    except TypeError:
        body = None
    if body is None or not body.isascii() or b"\x7f" in body:
        return (json.dumps(value, separators=(",", ":")) + "\n").encode()
    return body


def answer_of(jobs: list[Job]) -> bytes:
    return provider({"jobs": [job.to_dict() for job in jobs], "count": len(jobs)})


json_values = strategies.json_values(st.integers(-(2**70), 2**70))


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    job = Job(
        draw(st.text(min_size=1, max_size=8)),
        draw(st.text(min_size=1, max_size=8)),
        priority=draw(st.integers(1, 10)),
        payload=draw(st.dictionaries(st.text(max_size=4), json_values, max_size=3)),
        status=draw(st.sampled_from(list(JobStatus))),
        created_at=draw(st.sampled_from([NOW, 0.0, 17])),
        updated_at=NOW,
        scheduled_at=draw(st.sampled_from([None, NOW + 3600.5])),
        timeout=draw(st.none() | st.floats(0.001, 1e20) | st.integers(1, 2**70)),
        result=draw(json_values),
        error=draw(st.none() | st.text(max_size=5)),
        idempotency_key=draw(st.none() | st.text(min_size=1, max_size=5)),
        progress=draw(st.none() | st.dictionaries(st.text(max_size=3), json_values, max_size=2)),
        depends_on=draw(st.lists(st.text(max_size=4), max_size=2)),
        dependency_results=draw(st.none() | st.dictionaries(st.text(max_size=3), json_values)),
        owner=draw(st.none() | st.text(max_size=4)),
    )
    if draw(st.booleans()):
        job.attempts = [Attempt(1, "n1", "w1", NOW, NOW + 1.0, "failed", draw(st.text(max_size=4)))]
    return job


@settings(max_examples=300, deadline=None)
@given(st.lists(jobs(), min_size=1, max_size=4))
def test_the_answer_is_the_provider_text_or_left_to_it(batch: list[Job]) -> None:
    body = batch_answer_body(batch)
    if body is not None:
        assert body == answer_of(batch)


@pytest.mark.parametrize(
    "payload",
    [
        {"source": "bench"},
        {"f": 1e16, "g": -1.5e300, "h": 1e-7, "i": 0.1 + 0.2, "n": [None, True, 2**63]},
        {"text": 'a/b\\c"d\x00\x1f', "deep": [[{"x": {}}]]},
    ],
)
@pytest.mark.parametrize("timeout", [None, 30, 0.25, 86400.0 * 3650])
def test_a_validated_batch_is_written_here_as_the_provider_writes_it(
    payload: dict[str, Any], timeout: float | None
) -> None:
    items = [{"type": "noop", "payload": payload, "timeout": timeout, "queue": "q"}] * 3
    items.append(
        {"type": "t", "depends_on": ["01ARZ3NDEKTSV4RRFFQ69G5FAV"], "receive_results": True}
    )
    batch, errors = validate_many(items, NOW)
    assert not errors
    body = batch_answer_body(batch)
    assert body is not None  # written here, not left to the provider
    assert body == answer_of(batch)


@pytest.mark.parametrize(
    "payload", [{"text": "żółw"}, {"del": "\x7f"}, {"big": 2**70}, {"set": {1, 2}}]
)
def test_what_the_provider_writes_otherwise_is_left_to_it(payload: dict[str, Any]) -> None:
    """Text outside ASCII and DEL (which the stdlib escapes), what orjson refuses."""
    batch, _ = validate_many([{"type": "noop"}], NOW)
    batch[0].payload = payload
    assert batch_answer_body(batch) is None
