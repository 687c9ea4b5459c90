"""Whether an attempt's result, or the results it is handed, fit the size limits.

Checked here, on the node, before an outcome goes to the Broker: a result
over ``MAX_RESULT_BYTES`` fails its attempt and no Broker holds any part of
it; results handed to a job over ``MAX_PAYLOAD_BYTES`` fail it before it runs,
since a retry would be handed the same ones.
"""

from __future__ import annotations

import json
from typing import Any

from ...jobs import Job

#: Results are measured as the payload is: compact JSON, UTF-8 bytes.
_RESULT_ENCODER = json.JSONEncoder(
    separators=(",", ":"), allow_nan=False, ensure_ascii=False
).encode
#: An int within this bound is a short number: no encoding needed to know it fits.
_SHORT_INT = 10**18


def _json_size(value: Any) -> int:
    """``value``'s size as compact JSON in UTF-8 bytes (``TypeError``/``ValueError``/
    ``RecursionError`` if it is no JSON; a lone surrogate is counted, not refused)."""
    return len(_RESULT_ENCODER(value).encode("utf-8", "surrogatepass"))


def result_problem(value: Any, limit: int) -> str | None:
    """Why ``value`` cannot be stored as a job's result (no JSON, or more than ``limit``
    bytes of it: MAX_RESULT_BYTES), or None. Cheap for the common small scalar results."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) and -_SHORT_INT < value < _SHORT_INT:
        return None
    if isinstance(value, str) and 6 * len(value) + 2 <= limit:  # \u0001 is 6 bytes, the most
        if value.isascii():
            return None
    try:
        size = len(_RESULT_ENCODER(value).encode("utf-8"))
    except UnicodeEncodeError:
        # no valid text: Redis's wire and BSON need UTF-8, and a client's strict JSON
        # parser refuses the escape; a payload holding one is refused the same way
        return "result holds a lone UTF-16 surrogate, which is not valid text"
    except (TypeError, ValueError, RecursionError):  # RecursionError: nested too deep
        return f"result is not JSON-serialisable: a {type(value).__name__} (or inside it)"
    if size > limit:
        return f"result is {size} bytes as JSON; the limit is {limit} (MAX_RESULT_BYTES)"
    return None


def gathered_problem(job: Job, limit: int) -> str | None:
    """Why the results ``job`` receives from its dependencies (a chord's callback gets one
    per member, up to 1,000) cannot be its input: their JSON sizes add up to more than
    ``limit`` bytes (MAX_PAYLOAD_BYTES, the bound on any job's input), or None. A sum, so
    one result within MAX_RESULT_BYTES handed on down a chain fits when that is no more
    than MAX_PAYLOAD_BYTES (the defaults are equal)."""
    results = job.results
    if not results:
        return None
    size = sum(_json_size(result) for result in results)
    if size <= limit:
        return None
    return (
        f"the results of its {len(results)} dependencies are {size} bytes as JSON together; "
        f"the limit on a job's input is {limit} (MAX_PAYLOAD_BYTES)"
    )
