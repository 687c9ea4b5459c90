"""A batch read by orjson is validated without writing each payload again to measure it
(``jsontext.reencoded_size_bound``, ``submission.SizedSubmissions``): the bound must hold
for every value of every text orjson reads, and a batch must be refused exactly as before
wherever it is not within it.
"""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from quart_trio.testing import TrioClient

from jobtrio.actors.node import Node
from jobtrio.jsontext import reencoded_size_bound
from jobtrio.submission import (
    _PAYLOAD_ENCODER,
    SizedSubmissions,
    SubmissionLimits,
    validate_many,
)
from tests import strategies
from tests.test_api import MAX_PAYLOAD, app, body, client, node  # noqa: F401 - fixtures

NOW = 1_700_000_000.0


def _values(value: Any) -> list[Any]:
    """``value`` and every value inside it."""
    found, stack = [], [value]
    while stack:
        item = stack.pop()
        found.append(item)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def _check_bound(text: bytes) -> None:
    """Both bounds: by counting, and by the text's length (when that is enough)."""
    counted, coarse = reencoded_size_bound(text), reencoded_size_bound(text, 10**9)
    assert coarse == 8 * len(text)
    for value in _values(orjson.loads(text)):
        size = len(_PAYLOAD_ENCODER(value).encode())
        assert size <= counted and size <= coarse, (value, text)


json_values = strategies.json_values(
    st.integers(-(2**63), 2**64 - 1), text_size=None, key_size=None, children=4, leaves=20
)


@settings(max_examples=300, deadline=None)
@given(json_values, st.booleans(), st.sampled_from([None, 0, 2]))
def test_the_bound_holds_for_every_value_of_a_text(value: Any, ascii: bool, indent: Any) -> None:
    """Written with escapes (``ensure_ascii``) or without, with whitespace or without."""
    _check_bound(json.dumps({"v": value}, ensure_ascii=ascii, indent=indent).encode())


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":[1e5,1E5,1e-7,0.1e1,-0.0,5e-324,1e15,1.7976931348623157e308]}',
        b'{"a":[' + b",".join([b"1e15"] * 100) + b"]}",  # each written 1000000000000000.0
        b'{"a":"\\u00e9\\/\\"\\\\\\n\\u0001\\ud83d\\ude00\\u007f","b":-0}',
        b'{"a" : { "b" :\t[ 1 , 2 ] } }',
    ],
)
def test_the_bound_holds_for_floats_written_short_and_escapes(text: bytes) -> None:
    _check_bound(text)


def test_sized_submissions_are_validated_into_the_same_jobs() -> None:
    items = [{"type": "noop", "payload": {"i": i, "x": [1.5, None, "é"]}} for i in range(20)]
    text = json.dumps({"jobs": items}).encode()
    sized = SizedSubmissions(orjson.loads(text)["jobs"], reencoded_size_bound(text))
    plain, errors = validate_many(items, NOW)
    fast, fast_errors = validate_many(sized, NOW)
    assert errors == fast_errors == []
    assert [(j.payload, j.type, j.status) for j in fast] == [
        (j.payload, j.type, j.status) for j in plain
    ]


def test_a_bound_over_the_limit_measures_every_payload_as_before() -> None:
    """A bound is no excuse past the limit: each payload is measured, the large one refused."""
    items = [{"type": "noop", "payload": {"x": "a" * 100}}, {"type": "noop"}]
    limits = SubmissionLimits(max_payload_bytes=50)
    for given_items in (items, SizedSubmissions(items, 60), SizedSubmissions(items, 10**6)):
        jobs, errors = validate_many(given_items, NOW, limits)
        assert [(i, e.code, e.message) for i, e in errors] == [
            (0, "payload_too_large", "payload is 108 bytes; the limit is 50")
        ]


async def test_a_batch_whose_payload_grows_past_the_limit_when_written_is_refused(
    node: Node,  # noqa: F811
    client: TrioClient,  # noqa: F811
) -> None:
    """``1e15`` takes 4 bytes in the body and 18 written again (``1000000000000000.0``):
    a payload of them sent within the limit is over it as validation measures it, and
    refused as before (the bound counts what floats can grow by)."""
    count = MAX_PAYLOAD // 10
    raw = b'{"jobs":[{"type":"noop","payload":{"x":[' + b",".join([b"1e15"] * count) + b"]}}]}"
    assert len(raw) < MAX_PAYLOAD
    size = len(_PAYLOAD_ENCODER({"x": [1e15] * count}))
    assert size > MAX_PAYLOAD
    response = await client.post(
        "/api/v1/jobs/batch", data=raw, headers={"Content-Type": "application/json"}
    )
    data = await body(response)
    assert response.status_code == 422, data
    assert data["errors"] == [
        {
            "index": 0,
            "field": "payload",
            "code": "payload_too_large",
            "message": f"payload is {size} bytes; the limit is {MAX_PAYLOAD}",
        }
    ]
    assert sum((await node.broker.depths()).values()) == 0


async def test_a_batch_holding_an_infinity_is_refused_naming_it(
    client: TrioClient,  # noqa: F811
) -> None:
    """orjson refuses ``1e400``; the stdlib reads it as an infinity, which validation
    refuses, saying so (it answered 'payload must be JSON-serialisable', which left the
    sender to guess): a body read that way gives no bound."""
    raw = b'{"jobs":[{"type":"noop","payload":{"x":1e400}}]}'
    assert math.isinf(json.loads(raw)["jobs"][0]["payload"]["x"])
    response = await client.post(
        "/api/v1/jobs/batch", data=raw, headers={"Content-Type": "application/json"}
    )
    data = await body(response)
    assert response.status_code == 422, data
    assert data["errors"][0]["message"] == (
        "payload holds NaN or an infinity (a number such as 1e400 reads as one), "
        "which JSON cannot carry"
    )
