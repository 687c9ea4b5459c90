"""A job's layout in its Redis hash, declared once: the Lua constants and the Python codec.

A job hash holds ``b``, the immutable body (``BODY``'s fields as the inside of
a JSON object), and ``m``, the mutable values (``VALUES``) joined by 0x1f:
measured here, a 20-field HMGET alone cost more than the rest of a claim, so
a move reads ``m`` whole, cuts it with one ``string.match`` and writes it
back with one ``table.concat``.

This module is the only place a job's fields are listed. ``Layout`` turns
the declaration into:

- ``lua()``: the constants the scripts index a loaded job with
  (``local S, PR, ... = 1, 2, ...``), ``NF``, the patterns that cut ``m``
  and an enqueue's header, and ``doc()``, which writes the job's document;
- ``python()``: the codec's functions (``encode``, ``enqueue_arg``,
  ``decode``, ``job_text`` and ``build`` (its two halves, for a reply of many
  jobs), ``dumps``, ``doc``), compiled once at import like a
  dataclass' ``__init__``, because a loop over the declaration per job cost
  more than the claim script itself.

``python -m jobtrio.backends.redis`` prints both. Adding a job field
kept in ``m`` is one ``Value`` line below (and the field on ``Job``);
tests/test_redis_layout.py adds one to a copy and runs the real scripts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ...jobs import CROCKFORD, Job

#: How a value is written and read: ``plain`` is one JSON value of the Job field of its
#: name, in the document as ``"field":value``; ``status`` a bare word; ``copy`` a JSON value
#: the body holds too (the scripts read it from ``m``); ``key`` the idempotency key as JSON,
#: '' when there is none; ``attempts`` one of the five values that hold the attempts.
Kind = Literal["plain", "status", "copy", "key", "attempts"]


@dataclass(frozen=True, slots=True)
class Value:
    """One value of ``m``: its Lua constant, the Job field it holds, and how."""

    lua: str
    field: str
    kind: Kind = "plain"


#: The body's fields, in order. Its first two are the header a reply is known by (id,
#: type); ``payload`` is the only one whose JSON may spell another field's name.
BODY: tuple[str, ...] = (
    "id", "type", "priority", "payload", "created_at", "max_retries", "timeout",
    "idempotency_key", "depends_on", "on_dependency_failure", "workflow_id", "workflow",
    "owner", "queue",
)  # fmt: skip

#: The values of ``m``, in order. The attempts: AN closed ones, ATT their JSON array, and
#: the open one (AON its ``number,"node"``, AOW its worker, AOS its start; '' when none).
VALUES: tuple[Value, ...] = (
    Value("S", "status", "status"),
    Value("PR", "priority", "copy"),
    Value("K", "idempotency_key", "key"),
    Value("UA", "updated_at"),
    Value("SA", "scheduled_at"),
    Value("STA", "started_at"),
    Value("CA", "completed_at"),
    Value("RC", "retry_count"),
    Value("RES", "result"),
    Value("ERR", "error"),
    Value("ND", "node_id"),
    Value("WK", "worker_id"),
    Value("LE", "lease_expirations"),
    Value("PG", "progress"),
    Value("WF", "waiting_for"),
    Value("DEP", "dependents"),
    Value("DR", "dependency_results"),
    Value("V", "version"),
    Value("AN", "attempts", "attempts"),
    Value("ATT", "attempts", "attempts"),
    Value("AON", "attempts", "attempts"),
    Value("AOW", "attempts", "attempts"),
    Value("AOS", "attempts", "attempts"),
)

#: The values the enqueue script reads, sent again ahead of ``m`` (cutting them out of
#: ``m`` cost more than the rest of an enqueue).
ENQUEUE_READS: tuple[str, ...] = ("S", "PR", "SA", "V", "K")

#: How the body writes each of its fields (see ``codec``): text, the payload, or a number.
_BODY_WRITER = {
    "id": "jtext", "type": "jtext", "idempotency_key": "jtext", "owner": "jtext",
    "payload": "payload", "queue": "jtext", "on_dependency_failure": "jtext",
    "workflow_id": "jtext",
}  # fmt: skip
#: The one body field whose JSON may spell another field's name (see ``Layout.python``).
_FREE_FORM = "payload"
#: Sequence numbers per priority band in the pending set's score, ``(10 - priority) *
#: PENDING_BAND + seq``: the scripts order claims by it, the Broker counts bands with it.
#: 2^42 a band keeps every score an exact double (below 2^53).
PENDING_BAND = 2**42
_ATTEMPTS = ("AN", "ATT", "AON", "AOW", "AOS")

#: The records' ``created_at`` index (``rec-created``, scored by the created_at text) holds
#: only the records whose created_at their id does not tell. An id made by ``IdGenerator``
#: from the job's created_at (as every submission's is) starts with that time's
#: milliseconds in ``ID_ALPHABET``, ``ID_TIME_CHARS`` characters: a record whose id's
#: time is ``floor(created_at * 1000)`` (``created_by_id`` in the ``layout_ids`` chunk) is
#: found by a created_at window as a range of ids of the status and type indexes (read
#: exactly by its ``c`` after), and is not written to ``rec-created``: that entry was 7k
#: of an enqueue's 83k Redis instructions. Records filed before this (every one in
#: ``rec-created``, told by its id or not) are read as they were: a window reads both
#: the index and the ids' range, and an id found by both is read once.
ID_ALPHABET = CROCKFORD
ID_TIME_CHARS = 10
#: How long an id is that tells its time (a ULID's 26 characters).
ID_CHARS = 26

#: A job hash's fields an earlier layout wrote and this one neither writes nor reads: a
#: record's version and status again (``v``, ``s``) beside ``m``, which holds both (``V``,
#: ``S``). Writing them with every ``m`` cost an enqueue 3.5k of its 76k Redis
#: instructions and a drain 2.5k. A hash written before keeps them, stale once a move has
#: written its ``m``: every reader takes the status (``m``'s first value) and the version
#: from ``m``.
RETIRED_FIELDS: tuple[str, ...] = ("v", "s")
#: ``q``, the mark of a job a Broker holds, where the Broker keeps the records too (the
#: Store's put leaves such a hash to it); ``'1'`` where it does not. An earlier layout
#: wrote ``'1'`` for both, with ``v`` beside it where the Broker keeps the records: a put
#: still takes that as held with records.
HELD_WITH_RECORDS = "r"


def _id_bytes() -> str:
    """The names of ``id_time``'s locals, one an id's time character."""
    return ", ".join(f"b{i}" for i in range(1, ID_TIME_CHARS + 1))


def _id_digits() -> list[str]:
    """``id_time``'s lines after its bytes: each byte's value, and the time they tell."""
    values = ", ".join(f"d[b{i}]" for i in range(1, ID_TIME_CHARS + 1))
    names = ", ".join(f"v{i}" for i in range(1, ID_TIME_CHARS + 1))
    checks = " and ".join(f"v{i}" for i in range(1, ID_TIME_CHARS + 1))
    ms = "v1"
    for i in range(2, ID_TIME_CHARS + 1):
        ms = f"({ms}) * 32 + v{i}" if i > 2 else f"{ms} * 32 + v{i}"
    return [
        f"  local {names} = {values}",
        f"  if not ({checks}) then return false end",
        f"  return {ms}",
    ]


@dataclass(frozen=True)
class Layout:
    """A declaration (``BODY``, ``VALUES``, ``ENQUEUE_READS``) and what it generates."""

    body: tuple[str, ...] = BODY
    values: tuple[Value, ...] = VALUES
    enqueue_reads: tuple[str, ...] = ENQUEUE_READS
    job_class: type[Job] = Job

    def __post_init__(self) -> None:
        names = [v.lua for v in self.values]
        problems = []
        if len(set(names)) != len(names):
            problems.append("a Lua constant is declared twice")
        if [v.lua for v in self.values if v.kind == "attempts"] != list(_ATTEMPTS):
            problems.append(f"the attempts must be the values {', '.join(_ATTEMPTS)} in order")
        if "S" not in names or "V" not in names:
            problems.append("S (status) and V (version) are read by every move")
        if set(self.enqueue_reads) - set(names):
            problems.append("enqueue reads a value that is not declared")
        if tuple(self.body[:2]) != ("id", "type"):
            problems.append("the body starts with id and type (the header)")
        declared = set(self.body) | {v.field for v in self.values}
        fields = {f.name for f in dataclasses.fields(self.job_class)}
        if declared != fields:
            problems.append(
                f"the declaration and {self.job_class.__name__} differ: {sorted(declared ^ fields)}"
            )
        if problems:
            raise ValueError("jobtrio redis layout: " + "; ".join(problems))

    @staticmethod
    def _fragment(value: Value, read: Callable[[str], str], attempts: str, cat: str) -> str:
        """How the document writes ``value``, as an expression of Lua or Python: ``read(lua)``
        reads a value, ``attempts`` writes the attempts' array, ``cat`` concatenates.
        ('' for a value the document does not hold: a copy, the key, attempts beyond AN.)"""
        if value.kind == "status":
            return f"',\"{value.field}\":\"' {cat} {read(value.lua)} {cat} '\"'"
        if value.kind == "plain":
            return f"',\"{value.field}\":' {cat} {read(value.lua)}"
        if value.lua == _ATTEMPTS[0]:
            return f"',\"attempts\":' {cat} {attempts}"
        return ""

    def enqueue_header(self) -> tuple[int, int]:
        """The values of an enqueue's header (id, created_at, the reads, queue, type) and
        the bytes of its MessagePack array's own header (a fixarray's one byte up to 15
        values, an array 16's three), which the scripts skip to read the values alone."""
        n = 4 + len(self.enqueue_reads)
        return n, 1 if n <= 15 else 3

    def index(self, lua: str) -> int:
        """The 0-based position of the value ``lua`` in ``m`` (Lua's is one more)."""
        return [v.lua for v in self.values].index(lua)

    # -- Lua ----------------------------------------------------------------------------
    def lua(self) -> str:
        """Constants and patterns for the scripts (the ``--@include layout`` chunk)."""
        n = len(self.values)
        names = ", ".join(v.lua for v in self.values)
        numbers = ", ".join(str(i + 1) for i in range(n))
        reads = ", ".join(self.enqueue_reads)
        captures = ", ".join(f"r{i}" for i in range(len(self.enqueue_reads)))
        fields = ", ".join(f"[{r}] = r{i}" for i, r in enumerate(self.enqueue_reads))
        head, at = self.enqueue_header()
        return "\n".join(
            (
                "-- generated from jobtrio/backends/redis/layout.py: do not edit here",
                f"local NF = {n}",
                f"local {names} =\n  {numbers}",
                "-- m cut into its NF values",
                "local MPAT = '^' .. string.rep('([^\\31]*)\\31', NF - 1) .. '([^\\31]*)$'",
                "-- a job to enqueue is three script arguments: a header, the MessagePack",
                "-- array of its id, created_at text, the values ENQUEUE_READS names, the queue",
                "-- and the type (strings: cmsgpack gives them at 3.7k Redis instructions, where",
                "-- string.match cut the same values joined by \\31 at 14k); then b, and m as",
                "-- it is. enqueue_fields(h, b, m) gives id, created_at, the reads, b, m, the",
                "-- queue and the type, in that order; enqueue_id(h) the id alone.",
                f"local ENQUEUE_READS = {{{reads}}}",
                f"local EHEAD_N, EHEAD_AT = {head}, {at} -- its values; its array's header bytes",
                "local function enqueue_fields(h, b, m)",
                f"  local _, id, c, {captures}, u, t = cmsgpack.unpack_limit(h, EHEAD_N, EHEAD_AT)",
                f"  return {{id, c, {captures}, b, m, u, t}}",
                "end",
                "local function enqueue_id(h)",
                "  local _, id = cmsgpack.unpack_limit(h, 1, EHEAD_AT)",
                "  return id",
                "end",
                "-- enqueue_job(h): the job of an enqueue's header (h), a table of its",
                "-- id, queue (u), type (t) and the values ENQUEUE_READS names, made by one",
                "-- constructor (a table grown key by key rehashes as it grows: 10% of an",
                "-- enqueue's Redis instructions), then its created_at text",
                "local function enqueue_job(h)",
                f"  local _, id, c, {captures}, u, t = cmsgpack.unpack_limit(h, EHEAD_N, EHEAD_AT)",
                f"  return {{id = id, u = u, t = t, {fields}}}, c",
                "end",
                "-- the pending set's score: (10 - priority) * BAND + a sequence number",
                f"local BAND = {PENDING_BAND}",
                "-- q of a job a Broker keeping the records holds (layout.HELD_WITH_RECORDS)",
                f"local HELD_WITH_RECORDS = {HELD_WITH_RECORDS!r}",
            )
        )

    def lua_doc(self) -> str:
        """``doc(j)``: the job's document from a loaded job (the ``layout_doc`` chunk).

        Uses ``attempts_text(j)`` of broker_common.lua for the attempts.
        """
        fragments = (
            self._fragment(v, lambda lua: f"j[{lua}]", "attempts_text(j)", "..")
            for v in self.values
        )
        parts = [f for f in fragments if f]
        lines = "\n    .. ".join(parts)
        return (
            "-- generated from jobtrio/backends/redis/layout.py: do not edit here\n"
            "local function doc(j)\n"
            f"  return '{{' .. j.b\n    .. {lines}\n    .. '}}'\n"
            "end"
        )

    def lua_ids(self) -> str:
        """The ``layout_ids`` chunk: ``created_by_id(id, c)``, whether a record's id tells its
        created_at text ``c`` (see ``ID_ALPHABET``), and ``id_time_bound(ms)``, the
        ``ID_TIME_CHARS`` characters of the ids made at ``ms`` (a bound of a range of ids
        in byte order, which is their time's order)."""
        return "\n".join(
            (
                "-- generated from jobtrio/backends/redis/layout.py: do not edit here",
                f"local ID_ALPHABET, ID_TIMES = {ID_ALPHABET!r}, 32 ^ {ID_TIME_CHARS}",
                "-- the time characters of the ids made at ms (0 <= ms < ID_TIMES)",
                "local function id_time_bound(ms)",
                "  local out = {}",
                f"  for i = {ID_TIME_CHARS}, 1, -1 do",
                "    local d = ms % 32",
                "    out[i] = string.sub(ID_ALPHABET, d + 1, d + 1)",
                "    ms = (ms - d) / 32",
                "  end",
                "  return table.concat(out)",
                "end",
                "-- the value of each character of ID_ALPHABET, by its byte (made at first use)",
                "local ID_DIGIT = nil",
                "-- the ms the first ID_TIME_CHARS characters of id tell (false: one is not of",
                "-- ID_ALPHABET, or id is shorter): their bytes read by one string.byte",
                "local function id_time(id)",
                "  local d = ID_DIGIT",
                "  if not d then",
                "    d = {}",
                "    for i = 1, #ID_ALPHABET do d[string.byte(ID_ALPHABET, i)] = i - 1 end",
                "    ID_DIGIT = d",
                "  end",
                f"  local {_id_bytes()} = string.byte(id, 1, {ID_TIME_CHARS})",
                *_id_digits(),
                "end",
                "-- the last created_at text seen (by created_by_id), its ms (false: no id can",
                "-- tell it) and, once an id told it, the time characters of the ids made then.",
                "-- A batch's jobs share their created_at; a single POST's job has one of",
                "-- its own, and a table of them grown a job, the characters written for each,",
                "-- cost Redis 29k instructions a job, a quarter of its enqueue. (A pure function",
                "-- of the text: kept from one call to the next.)",
                "local ID_C, ID_MS, ID_P = nil, false, nil",
                "-- whether id starts with the time characters of created_at text c",
                "local function created_by_id(id, c)",
                "  if c ~= ID_C then",
                "    local x = tonumber(c)",
                "    ID_C, ID_MS, ID_P = c, false, nil",
                "    if x and x >= 0 and x * 1000 < ID_TIMES then ID_MS = math.floor(x * 1000) end",
                "  end",
                "  local p = ID_P",
                "  if p then return string.find(id, p, 1, true) == 1 end",
                "  if ID_MS and id_time(id) == ID_MS then",
                f"    ID_P = string.sub(id, 1, {ID_TIME_CHARS})",
                "    return true",
                "  end",
                "  return false",
                "end",
            )
        )

    # -- Python -------------------------------------------------------------------------
    def python(self) -> str:
        """The source of the codec's generated functions (see ``functions``)."""
        at = {v.lua: i for i, v in enumerate(self.values)}
        out: list[str] = []

        # encode(job, status) -> (b, values of m). The writers' usual cases are written out
        # inline (None, an int, an empty list, a str): a call per value cost more than the
        # value's text (1000 jobs x 37 values a batch), and the body is joined once
        def write(writer: str, src: str) -> str:
            if writer == "payload":
                return f"payload({src})"
            if writer == "jtext":
                return f"(text(x) if type(x := {src}) is str else 'null' if x is None else enc(x))"
            return (
                f"('null' if (x := {src}) is None else repr(x) if type(x) is int "
                "else '[]' if x == [] else enc(x))"
            )

        body = []
        for i, name in enumerate(self.body):
            body.append(f"'{',' if i else ''}\"{name}\":'")
            body.append(write(_BODY_WRITER.get(name, "enc"), f"job.{name}"))
        values = []
        for value in self.values:
            if value.kind == "status":
                values.append("str(status)")
            elif value.kind == "key":
                values.append(f"('' if (x := job.{value.field}) is None else key(x))")
            elif value.kind == "attempts":
                values.append(f"attempts[{_ATTEMPTS.index(value.lua)}]")
            else:
                values.append(write("enc", f"job.{value.field}"))
        out.append(
            "def encode(job, status):\n"
            "    attempts = attempt_values(a) if (a := job.attempts) else NO_ATTEMPTS\n"
            "    return (\n        ''.join((\n            "
            + ",\n            ".join(body)
            + ",\n        )),\n"
            "        [\n            " + ",\n            ".join(values) + ",\n        ],\n    )\n"
        )

        # enqueue_arg(job, b, values) -> the three arguments of a job to enqueue: a header
        # (the MessagePack array of id, created_at, the reads, the queue and the type); b;
        # m (see enqueue_fields)
        reads = ", ".join(f"f[{at[r]}]" for r in self.enqueue_reads)
        out.append(
            "def enqueue_arg(job, b, f):\n"
            "    return (\n"
            "        pack(\n"
            "            (check_name(job.id, 'job id'), num(job.created_at), "
            f"{reads}, text_only(job.queue, 'queue'), text_only(job.type, 'job type'))\n"
            "        ),\n"
            "        b,\n"
            "        SEP.join(f),\n"
            "    )\n"
        )

        # decode(b, values) -> Job, as Job.loads reads the document. The body and every
        # plain value are parsed by one json.loads of an array: a call per value cost
        # more than the parse of the whole body
        args = []
        parsed: list[str] = []  # the plain values' f[i], in the array after the body
        for field in dataclasses.fields(self.job_class):
            if field.name in self.body:
                args.append(f"d[{field.name!r}]")
                continue
            value = next(v for v in self.values if v.field == field.name)
            if value.kind == "status":
                args.append(f"STATUS[f[{at[value.lua]}]]")
            elif value.kind == "attempts":
                args.append("attempts")
            else:
                parsed.append(f"f[{at[value.lua]}]")
                args.append(f"v[{len(parsed)}]")
        # The attempts are parsed in the same text: the closed ones' array, then the open
        # one's [number, node, worker, start] when there is one (its four values are JSON
        # texts as they stand). A call of the json module or of a helper per value cost
        # more than the parse of the whole array.
        plain_at = [int(p[2:-1]) for p in parsed]
        closed, head = f"f[{at['ATT']}]", f"f[{at['AON']}]"
        opened = f"f[{at['AOW']}] + ',' + f[{at['AOS']}] + ']]'"
        if plain_at == list(range(plain_at[0], plain_at[-1] + 1)):
            plain = f"','.join(f[{plain_at[0]}:{plain_at[-1] + 1}])"
        else:
            plain = "','.join((" + ", ".join(parsed) + ",))"
        text = (
            f"'[{{' + b + '}},' + {plain} + ',' + {closed} "
            f"+ (',[' + {head} + ',' + {opened} if {head} else ']')"
        )
        build = (
            "    d = v[0]\n"
            f"    attempts = [Attempt(*a) for a in v[{len(parsed) + 1}]]\n"
            f"    if {head}:\n"
            f"        attempts.append(Attempt(*v[{len(parsed) + 2}]))\n"
            "    return job_class(\n        " + ",\n        ".join(args) + ",\n    )\n"
        )
        # job_text(b, values) -> the JSON array decode parses: the body's object, the plain
        # values, the attempts (codec.decode_many parses a reply's texts in one call)
        out.append(f"def job_text(b, f):\n    return {text}\n")
        # decode(b, values) -> Job, as Job.loads reads the document: one parse of job_text
        out.append(f"def decode(b, f):\n    v = loads({text})\n" + build)
        # build(v, values) -> the Job of v, job_text's array parsed (decode after its parse)
        out.append("def build(v, f):\n" + build)

        def read(lua: str) -> str:
            return f"f[{at[lua]}]"

        attempts = "attempts_text(" + ", ".join(read(a) for a in _ATTEMPTS[1:]) + ")"

        # dumps(b, values) -> Job.dumps() of the job, byte for byte, without parsing it:
        # the job's fields in its own order, so the body is cut where values come between
        # its fields. A cut is found by its ',"name":'. The first cut after the free-form
        # payload is its last occurrence (only numbers, null, strings, which never hold a
        # raw quote, and the dependency fields, arrays of job ids and a workflow's
        # {"kind", "members"}, which spell no field's name, follow it); every other cut
        # is the first after the one before.
        runs: list[list[str]] = []  # the body's fields in runs; a value's fragment between
        fragments: list[Any] = []  # a run's index (int) or a value's fragment (str)
        for field in dataclasses.fields(self.job_class):
            if field.name in self.body:
                if fragments and isinstance(fragments[-1], int):
                    runs[-1].append(field.name)
                else:
                    fragments.append(len(runs))
                    runs.append([field.name])
                continue
            value = next(v for v in self.values if v.field == field.name)
            fragments.append(self._fragment(value, read, attempts, "+"))
        if [name for run in runs for name in run] != list(self.body):
            raise ValueError(f"the body's order is not {self.job_class.__name__}'s")
        lines, free_at, cut_free = [], self.body.index(_FREE_FORM), False
        for k, run in enumerate(runs[1:], start=1):
            mark = f"',\"{run[0]}\":'"
            if self.body.index(run[0]) > free_at and not cut_free:
                cut_free = True
                lines.append(f"    c{k} = b.rindex({mark})")
            else:
                lines.append(f"    c{k} = b.index({mark}{f', c{k - 1}' if k > 1 else ''})")
        text = []
        for fragment in fragments:
            if isinstance(fragment, int):
                low = f"c{fragment}" if fragment else ""
                high = f"c{fragment + 1}" if fragment + 1 < len(runs) else ""
                text.append(f"b[{low}:{high}]")
            else:
                text.append(fragment)
        out.append(
            "def dumps(b, f):\n"
            + "".join(line + "\n" for line in lines)
            + "    return (\n        '{' + "
            + "\n        + ".join(text)
            + " + '}'\n    )\n"
        )

        # doc(b, values) -> the document the Lua doc() writes (tests compare the two)
        fragments = (self._fragment(v, read, attempts, "+") for v in self.values)
        parts = [f for f in fragments if f]
        out.append(
            "def doc(b, f):\n    return (\n        '{' + b + "
            + "\n        + ".join(parts)
            + " + '}'\n    )\n"
        )

        # header: the position of the status and the version in m
        out.append(f"STATUS_AT = {at['S']}\nVERSION_AT = {at['V']}\n")
        return "\n\n".join(out)

    def functions(self, helpers: dict[str, Any]) -> dict[str, Any]:
        """``python()`` compiled with ``helpers`` (the codec's encoders) in scope."""
        scope: dict[str, Any] = dict(helpers, job_class=self.job_class)
        exec(compile(self.python(), f"<redis layout of {self.job_class.__name__}>", "exec"), scope)
        return scope


LAYOUT = Layout()
