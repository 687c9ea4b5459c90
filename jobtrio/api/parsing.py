"""Reading what clients send: JSON bodies and query strings, strictly.

Strict because a lenient parser turns client bugs into silent surprises: a
misspelt query parameter (``stauts=failed``) that is ignored returns every
job, a duplicated JSON key means whatever the parser picked, a lone UTF-16
surrogate is accepted here and crashes a storage driver later. Each refusal
is a 400 naming the parameter or the position, never a 500.

Nesting is capped (``MAX_JSON_DEPTH``) below every backend's own limit
(MongoDB refuses documents nested deeper than 100), so a job accepted here
can always be stored.
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterable
from typing import Any

import orjson
from quart import request
from werkzeug.datastructures import MultiDict

from ..backends.base import JobQuery
from ..jobs import JobStatus, ValidationError, check_timestamp, parse_time
from ..jsontext import decode_error_text, orjson_exact, reencoded_size_bound
from ..submission import MAX_PAYLOAD_DEPTH, check_queue_name, nested_deeper_than
from ..text import clip, cut
from .errors import ApiError, BadRequest, PayloadTooLarge

MAX_JSON_DEPTH = 64
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
#: Job ids are ULIDs: 26 characters of Crockford's base 32.
JOB_ID_RE = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
LIST_PARAMETERS = (
    "status", "type", "queue", "limit", "cursor", "created_after", "created_before",
)  # fmt: skip

_orjson_loads = orjson.loads
_OrjsonError = orjson.JSONDecodeError
_LONE_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SPACE_FOR_PLUS = re.compile(r"^(.*\d) (\d\d(?::?\d\d)?)$")


class _DuplicateKey(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(f"the key {key!r} appears twice in one object")
            seen.add(key)
    return result


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


#: The end of an object's key: its closing quote, then the colon (a quote and a colon in
#: a string, escaped or not, only add to the count).
_KEY_END = re.compile(rb'"[ \t\n\r]*:')
_REFUSED = object()
#: A quote followed by whitespace: only then can a key's end hold whitespace.
_QUOTE_SPACES = (b'" ', b'"\n', b'"\r', b'"\t')


def _key_ends(raw: bytes) -> int:
    """``len(_KEY_END.findall(raw))``: without a quote followed by whitespace every match
    is a bare ``":`` (two of which cannot overlap), counted in one C pass without a list
    of 3,000 matches (decode_json of a batch of 1,000 jobs: 16.5k -> 13.1k instructions a
    job, callgrind)."""
    for pair in _QUOTE_SPACES:
        if pair in raw:
            return len(_KEY_END.findall(raw))
    return raw.count(b'":')


def _keys_within(value: Any, limit: int) -> int:
    """The keys of every object in ``value``, or -1 when it nests deeper than ``limit``
    (``nested_deeper_than``'s measure, walked on orjson's exact dicts and lists)."""
    keys = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if type(item) is dict:
            keys += len(item)
            children: Iterable[Any] = item.values()
        elif type(item) is list:
            children = item
        else:
            continue
        if depth > limit:
            return -1
        for child in children:
            kind = type(child)
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
    return keys


def _decode_fast(raw: bytes) -> Any:
    """``raw`` read by orjson when that is what ``decode_json``'s checked reading gives,
    else ``_REFUSED``.

    orjson reads a batch of 1,000 jobs about ten times faster than ``json.loads`` with
    the duplicate-key hook (0.25 against 2.6 us a job, the depth walk included). It
    refuses, with messages of its own, everything the checked reading refuses but one
    thing, and reads what it accepts as json does but one thing, so any refusal is left
    to the checked reading (for its message), and so are: a run of 19 digits (an
    integer past 64 bits, which orjson reads as a float: ``orjson_exact``); a duplicate
    key (orjson keeps the last), told by counting the keys' ends in the text, of which
    there are at least as many as keys sent, and exactly as many as keys read when none
    is repeated; and a body nested deeper than ``MAX_JSON_DEPTH``.
    """
    if not orjson_exact(raw):
        return _REFUSED
    try:
        data = _orjson_loads(raw)
    except _OrjsonError:
        return _REFUSED
    keys = _keys_within(data, MAX_JSON_DEPTH)
    if keys < 0 or keys != _key_ends(raw):
        return _REFUSED
    return data


def decode_json(raw: bytes) -> Any:
    """Parse a request body, or raise a 400 that says what is wrong and where."""
    data = _decode_fast(raw)
    return _decode_checked(raw) if data is _REFUSED else data


def _decode_checked(raw: bytes) -> Any:
    """``decode_json`` by the stdlib, which says what is wrong and where."""
    if not raw.strip():
        raise BadRequest("empty_body", "the request body is empty; send a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            "invalid_json", f"the body is not valid UTF-8 (bad byte at offset {exc.start})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    try:
        data = json.loads(
            text,
            parse_constant=_reject_constant,
            object_pairs_hook=_object_without_duplicates,
        )
    except json.JSONDecodeError as exc:
        raise BadRequest(
            "invalid_json", f"the body is not valid JSON: {decode_error_text(exc)}"
        ) from None
    except RecursionError:
        raise BadRequest(
            "invalid_json", f"the body is nested deeper than {MAX_JSON_DEPTH} levels"
        ) from None
    except ValueError as exc:  # duplicate keys, NaN, numbers with thousands of digits
        if "integer string conversion" in str(exc):
            # Python's own words name sys.set_int_max_str_digits(), which a client cannot call
            raise BadRequest(
                "invalid_json",
                f"the body holds a number of more than {sys.get_int_max_str_digits()} digits",
            ) from None
        raise BadRequest("invalid_json", f"the body is not valid JSON: {exc}") from None
    if nested_deeper_than(data, MAX_JSON_DEPTH):
        raise BadRequest("invalid_json", f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    if _LONE_SURROGATE_ESCAPE.search(raw) and _has_lone_surrogate(data):
        raise BadRequest(
            "invalid_json", "the body holds a lone UTF-16 surrogate escape, which is not Unicode"
        )
    return data


def _is_json_mimetype(mimetype: str) -> bool:
    return mimetype == "application/json" or (
        mimetype.startswith("application/") and mimetype.endswith("+json")
    )


#: A job's payload in a batch body sits three levels down (the body, ``jobs``, the job),
#: so a body within ``MAX_JSON_DEPTH`` holds no payload deeper than validation allows:
#: ``read_json_object_sized``'s promise rests on it.
if MAX_JSON_DEPTH - 1 > MAX_PAYLOAD_DEPTH:
    raise ImportError("a body within MAX_JSON_DEPTH could hold a payload nested too deep")


async def read_json_object(limit: int) -> dict[str, Any]:
    """The request's JSON object, refusing other media types, other shapes and big bodies.

    A missing Content-Type is read as JSON (the body must still parse), so a
    bare ``curl --data-binary`` works; any other declared type is refused
    rather than guessed at.
    """
    data, _ = _decoded_object(await _read_json_body(limit))
    return data


async def read_json_object_sized(limit: int, enough: int = 0) -> tuple[dict[str, Any], int | None]:
    """``read_json_object``, and when orjson read the body, ``reencoded_size_bound`` of
    it (else None): every value in it is then plain JSON (no NaN, no infinity, no lone
    surrogate, nested within ``MAX_JSON_DEPTH``) whose compact text takes at most that
    many bytes, which spares validation writing each payload again to measure it
    (``submission.SizedSubmissions``). The stdlib's reading gives no bound: it reads
    ``1e400`` as an infinity, which validation must refuse. ``enough``: a bound that
    small is not worth counting a tighter one for (``reencoded_size_bound``).
    """
    raw = await _read_json_body(limit)
    data, by_orjson = _decoded_object(raw)
    return data, reencoded_size_bound(raw, enough) if by_orjson else None


def _decoded_object(raw: bytes) -> tuple[dict[str, Any], bool]:
    """The body's JSON object, and whether orjson read it (the fast reading, whose values
    are plain JSON; the stdlib reads what it refuses): ``read_json_object``'s reading."""
    data = _decode_fast(raw)
    by_orjson = data is not _REFUSED
    if not by_orjson:
        data = _decode_checked(raw)
    if not isinstance(data, dict):
        raise _not_an_object(data)
    return data, by_orjson


async def _read_json_body(limit: int) -> bytes:
    """The request's body, once its media type, coding and length are ones a JSON body
    may have (``read_json_object``). The request is looked up once (each reading of
    Quart's ``request`` is a context variable's lookup through a proxy)."""
    req = request._get_current_object()  # type: ignore[attr-defined]
    mimetype = req.mimetype
    if mimetype and not _is_json_mimetype(mimetype):
        raise ApiError(
            415,
            "unsupported_media_type",
            f"the body must be JSON sent with Content-Type: application/json, not {mimetype}",
        )
    coding = req.headers.get("Content-Encoding", "identity").strip().lower()
    if coding not in ("", "identity"):
        # read as it came, a compressed body was reported as "not valid UTF-8"
        raise ApiError(
            415,
            "unsupported_media_type",
            f"Content-Encoding: {cut(coding)} is not supported; send the body uncompressed",
        )
    charset = req.mimetype_params.get("charset")
    if charset and charset.lower().replace("-", "") != "utf8":
        raise ApiError(415, "unsupported_media_type", f"JSON must be UTF-8, not charset={charset}")
    length = req.content_length  # werkzeug reads the header at each reading
    if length is not None and length > limit:
        raise PayloadTooLarge(limit)
    raw = await req.get_data(cache=False, as_text=False)
    if len(raw) > limit:
        raise PayloadTooLarge(limit)
    return raw


def _not_an_object(data: Any) -> ApiError:
    return ApiError(422, "invalid_type", f"the body must be a JSON object, not {_json_kind(data)}")


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "an object"


# --------------------------------------------------------------------------
# query strings


def reject_unknown(args: MultiDict[str, str], allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    for name in args:
        if name not in allowed:
            hint = f"; this route accepts {', '.join(allowed)}" if allowed else ""
            raise BadRequest(
                "unknown_parameter", f"unknown query parameter {clip(name)}{hint}", name[:100]
            )


def _single(args: MultiDict[str, str], name: str) -> str | None:
    values = args.getlist(name)
    if not values:
        return None
    if len(values) > 1:
        raise BadRequest("invalid_parameter", f"give {name} once, not {len(values)} times", name)
    return values[0]


def parse_bool(args: MultiDict[str, str], name: str, default: bool = False) -> bool:
    text = _single(args, name)
    if text is None:
        return default
    value = text.strip().lower()
    if value in ("1", "true", "yes", "on", ""):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise BadRequest("invalid_parameter", f"{name} must be true or false, got {clip(text)}", name)


def _parse_time_param(args: MultiDict[str, str], name: str) -> float | None:
    text = _single(args, name)
    if text is None or not text.strip():
        return None
    text = text.strip()
    # an unencoded "+" of a UTC offset arrives as a space: "...T12:00:00 01:00"
    match = _SPACE_FOR_PLUS.match(text)
    if match and "T" in text:
        text = f"{match.group(1)}+{match.group(2)}"
    try:
        seconds = float(text)  # Unix seconds, as the JSON fields accept
    except ValueError:
        pass
    else:
        if math.isfinite(seconds):
            try:
                return check_timestamp(seconds, name, text)
            except ValidationError as exc:
                raise BadRequest("invalid_parameter", exc.message, name) from None
    try:
        return parse_time(text, name)
    except ValidationError as exc:
        raise BadRequest("invalid_parameter", exc.message, name) from None


def parse_limit(
    args: MultiDict[str, str],
    name: str = "limit",
    default: int = DEFAULT_PAGE_SIZE,
    maximum: int = MAX_PAGE_SIZE,
) -> int:
    """A page size: an integer from 1 to ``maximum``, never silently clamped."""
    text = _single(args, name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = -1
    if not 1 <= value <= maximum:
        raise BadRequest(
            "invalid_parameter",
            f"{name} must be an integer from 1 to {maximum}, got {clip(text)}",
            name,
        )
    return value


def parse_job_query(args: MultiDict[str, str]) -> JobQuery:
    reject_unknown(args, LIST_PARAMETERS)
    statuses: set[JobStatus] = set()
    for value in args.getlist("status"):
        for part in value.split(","):
            name = part.strip().lower()
            if not name:
                continue
            try:
                statuses.add(JobStatus(name))
            except ValueError:
                allowed = ", ".join(s.value for s in JobStatus)
                raise BadRequest(
                    "invalid_parameter",
                    f"status {clip(part.strip())} is not a job status; "
                    f"use one or more of {allowed}",
                    "status",
                ) from None
    job_type = _single(args, "type")
    queue = _single(args, "queue")
    if queue is not None:
        try:
            queue = check_queue_name(queue)
        except ValidationError as exc:
            raise BadRequest("invalid_parameter", exc.message, "queue") from None
    limit = parse_limit(args)
    cursor = _single(args, "cursor")
    if cursor is not None:
        cursor = cursor.strip() or None
    if cursor is not None and not JOB_ID_RE.match(cursor):
        raise BadRequest(
            "invalid_cursor",
            f"cursor must be the next_cursor of a previous page (a job id), got {cursor[:40]!r}",
            "cursor",
        )
    return JobQuery(
        statuses=frozenset(statuses) or None,
        type=job_type.strip() if job_type and job_type.strip() else None,
        queue=queue,
        created_after=_parse_time_param(args, "created_after"),
        created_before=_parse_time_param(args, "created_before"),
        limit=limit,
        cursor=cursor,
    )
