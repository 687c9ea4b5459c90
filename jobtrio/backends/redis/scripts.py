"""The Lua scripts (``lua/*.lua``) and the one way the Broker and the Store run them.

Scripts are files of the package, read with ``importlib.resources``, so they
can be read, diffed and linted as Lua. A script names the shared helpers it
needs on ``--@include <name>`` lines; ``lua_source`` puts each named file in
place of its line (once, in the order named), so a helper has one copy. Two
names are not files but generated from the job's declared layout
(``layout.py``): ``layout`` (the constants and patterns) and ``layout_doc``
(the function that writes a job's document).

Each script also exists as a Redis Functions library (``lua_library``;
Redis >= 7.0), which the connection prefers (``RedisConnection.script``):
EVALSHA runs a script's top level again on every call, the prelude and
every included helper (the key names, the layout's patterns, some 100
closures), which cost Redis more than a small move itself (callgrind:
about 400k instructions a call of the claim, the finish or the enqueue of
one job). A library runs its top level once, at its first call, and a
call (FCALL) runs the script's own lines alone. So a library is per key
prefix (``P`` is written into it, not read from ``KEYS[1]``), and the
top-level tables a script fills during its run are marked ``--@state`` (or
``--@cache``) at the end of their line, so that nothing of one call (nor of
one that failed half way) is seen by the next (see ``lua_library``). A
library and its one function are named after a hash of the library's text,
so nodes of two versions (or two prefixes) sharing a Redis each call their
own. The scripts of a group (``GROUPS``: the claim's and the finish's) share
one library, a function each, so that the finish can use what the claim
left in the library's tables.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Self

from .layout import LAYOUT, Layout
from .wire import DEFAULT_POOL_SIZE, DEFAULT_SOCKET_TIMEOUT, RedisConnection

if TYPE_CHECKING:
    from ...config import Settings

_INCLUDE = "--@include "
_STATE = "--@state"
_CACHE = "--@cache"
#: A library's helpers run before any call: they must take what they need as arguments.
_CALL_GLOBALS = re.compile(r"\b(KEYS|ARGV)\b")
#: What a library's name starts with (the rest is a hash of its text).
LIBRARY_PREFIX = "jobtrio_"
#: The scripts that file new jobs or records: refused before they start when Redis is at
#: ``maxmemory`` (a function's ``deny-oom``; EVAL refused them at their first write, which
#: for these is before any other). The others run whole there (``allow-oom``), the purge
#: and the claim as under EVAL, whose first write frees memory, and now also the moves
#: that end or update jobs already held (a finish, a renew): jobs in flight can complete.
CREATES = frozenset(
    {
        "enqueue",
        "enqueue_deps",
        "enqueue_workflow",
        "enqueue_claim",
        "revive",
        "restore",
        "fire_tick",
        "store_put",
    }
)
#: The scripts that only read: ``no-writes``, so they run wherever Redis refuses writes
#: (too few replicas, NOREPLICAS; a failed background save, MISCONF), as they did under
#: EVAL, which refuses a script at its first write only. Redis refuses a function that
#: is not ``no-writes`` there before it starts: a job's status could not be read.
READS = frozenset({"get", "running", "finished", "queue_info"})
#: Set by the test suite (tests/conftest.py): a library then checks, after every call that
#: returned, that the call left its ``--@state`` tables empty, and raises if not. A library
#: resets them only after a call that failed half way (``lua_library``), so a script that
#: returned with one filled would hand what it queued to the next call; under EVALSHA the
#: same script was harmless, so nothing else would show it.
CHECK_STATE_LEFT = False


@functools.cache
def lua_file(name: str) -> str:
    """The text of ``lua/<name>.lua``, as the package ships it."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def _expand(
    name: str, layout: Layout, prelude: str | None, seen: set[str] | None = None
) -> tuple[list[str], list[str]]:
    """``name``'s lines as (the included files', its own), includes replaced in place.

    ``prelude``, when given, stands in for the ``prelude`` file. ``seen``: the files
    included already (by the scripts before it in one library), which are left out. The
    own lines of a script that includes a file after a line of code would be misplaced
    by a library: refused.
    """
    generated = {
        "layout": layout.lua(),
        "layout_doc": layout.lua_doc(),
        "layout_ids": layout.lua_ids(),
    }
    if prelude is not None:
        generated["prelude"] = prelude
    if seen is None:
        seen = set()

    def expand(text: str) -> list[str]:
        out: list[str] = []
        for line in text.splitlines():
            if line.startswith(_INCLUDE):
                included = line[len(_INCLUDE) :].strip()
                if included not in seen:
                    seen.add(included)
                    text = generated.get(included)
                    out += expand(text if text is not None else lua_file(included))
            else:
                out.append(line)
        return out

    top: list[str] = []
    own: list[str] = []
    for line in lua_file(name).splitlines():
        if line.startswith(_INCLUDE):
            if any(not o.lstrip().startswith("--") and o.strip() for o in own):
                raise ValueError(f"{name}.lua includes {line[len(_INCLUDE) :]} after its code")
            top += expand(line)
        else:
            own.append(line)
    return top, own


def lua_source(name: str, header: str = "", layout: Layout = LAYOUT) -> str:
    """The script ``name`` with its ``--@include`` lines replaced by the named files.

    ``header`` goes first. An include names a file once: a second include of
    it is dropped. ``layout`` and ``layout_doc`` come from ``layout``.
    """
    top, own = _expand(name, layout, None)
    return header + "\n".join(top + own) + "\n"


def lua_literal(text: str) -> str:
    """``text`` as a Lua string literal (every byte outside printable ASCII escaped)."""
    out = []
    for byte in text.encode():
        if byte in (0x27, 0x5C) or not 0x20 <= byte < 0x7F:
            out.append(f"\\{byte:03d}")
        else:
            out.append(chr(byte))
    return "'" + "".join(out) + "'"


#: Scripts that share one library, and so its top-level tables between calls: a claim
#: remembers the jobs it leased for the finish that follows (``MEMO`` in
#: broker_common.lua), which then need not cut their ``m`` again.
GROUPS: tuple[tuple[str, ...], ...] = (("claim", "enqueue_claim", "finish"),)


def library_scripts(name: str) -> tuple[str, ...]:
    """The scripts of the library that holds the script ``name``, in order."""
    return next((group for group in GROUPS if name in group), (name,))


def function_name(library: str, name: str) -> str:
    """The function of the script ``name`` in ``library`` (a library's text): the
    library's name, followed by ``_`` and the script's when the library holds several."""
    own = library.split("\n", 1)[0].split("name=", 1)[1]
    return own if len(library_scripts(name)) == 1 else f"{own}_{name}"


def lua_library(name: str, prefix: str, header: str = "", layout: Layout = LAYOUT) -> str:
    """The script ``name`` as a Redis Functions library: one function of its name, or
    one per script of its group (``GROUPS``; ``function_name``).

    The library's name and a lone function's are the same: ``LIBRARY_PREFIX`` and a
    hash of the text (``library_name``). What was the script's top level (``header``,
    the included files with ``P`` set to ``prefix``: the hash-tagged key prefix a
    caller passes as ``KEYS[1]``) runs once, at the first call (Redis 7.0 gives a
    library's loading run no ``string`` nor ``table``); the function runs the
    script's own lines. The top-level tables a script fills during a call and
    empties before it returns (``flush`` does, ``save_rates`` does) are marked
    ``--@state``: set back to their first value after a call that failed half
    way, not every call (12 tables made a call of ``get`` cost 9.5k Redis
    instructions more, a quarter of it; checking them empty after each call,
    more still). The caches (``--@cache``: deterministic, but grown by every
    name they see) are emptied every call.
    """
    names = library_scripts(name)
    seen: set[str] = set()
    top: list[str] = []
    owns: list[list[str]] = []
    for script in names:
        included, own = _expand(script, layout, "local P = " + lua_literal(prefix), seen)
        top += included
        owns.append(own)
    for line in top:
        if _CALL_GLOBALS.search(line.split("--", 1)[0]):
            raise ValueError(f"{name}: an included file reads the call's KEYS or ARGV: {line}")

    def marked(marker: str) -> list[tuple[str, str]]:
        """(name, the assignment that resets it) of each top-level table ``marker`` marks."""
        out = []
        for line in top:
            if line.rstrip().endswith(marker):
                assignment = line.split("local ", 1)[1].rsplit(marker, 1)[0].strip()
                out.append((assignment.split("=", 1)[0].strip(), assignment))
        return out

    state, caches = marked(_STATE), marked(_CACHE)
    lines = [
        "local main, reset, left = {}, nil, nil",
        "-- the call before failed half way: its --@state tables may hold what it queued",
        "local dirty = false",
        "local function init()",
        header.rstrip("\n"),
        *top,
        "reset = function()",
        *(f"  {assignment}" for _, assignment in state),
        "end",
        *(_state_check(state) if CHECK_STATE_LEFT else []),
    ]
    for script, own in zip(names, owns, strict=True):
        lines += [
            f"main[{lua_literal(script)}] = function(KEYS, ARGV)",
            *(f"  {assignment}" for _, assignment in caches),
            *own,
            "end",
        ]
    lines.append("end")
    for script in names:
        flags = "'no-writes'" if script in READS else "" if script in CREATES else "'allow-oom'"
        function = "{NAME}" if len(names) == 1 else "{NAME}_" + script
        lines += [
            f"redis.register_function{{function_name = '{function}', flags = {{{flags}}},",
            "  callback = function(keys, args)",
            "    if not reset then init() end",
            "    if dirty then reset() end",
            "    dirty = true",
            f"    local out = main[{lua_literal(script)}](keys, args)",
            *(["    left()"] if CHECK_STATE_LEFT else []),
            "    dirty = false",
            "    return out",
            "  end}",
        ]
    body = "\n".join(lines)
    library = library_name(body)
    return f"#!lua name={library}\n" + body.replace("{NAME}", library) + "\n"


def _state_check(state: list[tuple[str, str]]) -> list[str]:
    """Lua that raises when a ``--@state`` table holds anything but empty tables
    (``CHECK_STATE_LEFT``): each starts as ``{}`` or as a table of empty tables."""
    lines = ["left = function()"]
    for table, _ in state:
        lines += [
            f"  for k, v in pairs({table}) do",
            "    if type(v) ~= 'table' or next(v) ~= nil then",
            f"      error('jobtrio: a call returned with --@state {table}.'"
            " .. tostring(k) .. ' filled')",
            "    end",
            "  end",
        ]
    return [*lines, "end"]


def library_name(text: str) -> str:
    """The name of the library of ``text``: the same text, the same name, on every node."""
    return LIBRARY_PREFIX + hashlib.sha1(text.encode()).hexdigest()[:20]


class LuaScript:
    """A script both ways: redis-py's EVALSHA ``Script`` and the same as a library.

    ``RedisConnection.script`` calls ``function`` (FCALL), loading ``library``
    when Redis has lost it, and falls back to the EVALSHA script (``sha``,
    ``script``, or calling the object as redis-py's) where Redis has no Redis
    Functions or refuses them.
    """

    __slots__ = ("_eval", "sha", "script", "library", "function")

    def __init__(self, client: Any, source: str, library: str, name: str = "") -> None:
        """``name``: the script's, which names its function in a library of several."""
        self._eval = client.register_script(source)
        self.sha: str = self._eval.sha
        self.script: str = source
        self.library = library
        self.function = function_name(library, name)

    def __call__(self, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self._eval(keys=keys, args=args)


class OnRedis:
    """How the Broker and the Store reach Redis: opening, and running a script.

    Both are built as ``cls(connection, prefix, owns_connection=...)``; one
    that is handed a connection shares it (one pool, one limiter per node)
    and leaves closing it to its owner.
    """

    connection: RedisConnection
    _keys: list[str]

    @classmethod
    async def open(
        cls,
        url: str,
        prefix: str = "jobtrio",
        *,
        connection: RedisConnection | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        **options: Any,
    ) -> Self:
        """Connects lazily: a node may start before Redis and catch up when it appears.

        ``options`` go to the constructor (the Broker's ``records``).
        """
        if connection is not None:
            return cls(connection, prefix, owns_connection=False, **options)
        conn = RedisConnection.from_url(url, pool_size=pool_size, socket_timeout=socket_timeout)
        return cls(conn, prefix, **options)

    @classmethod
    async def from_settings(
        cls, settings: Settings, *, connection: RedisConnection | None = None, **options: Any
    ) -> Self:
        if connection is not None:
            return cls(connection, settings.redis_key_prefix, owns_connection=False, **options)
        return cls(RedisConnection.from_settings(settings), settings.redis_key_prefix, **options)

    async def _call(self, script: Any, args: Sequence[Any]) -> Any:
        return await self.connection.script(script, self._keys, args)


def _record_header(records: bool) -> str:
    return "local RECORD = " + ("true" if records else "false") + "\n"


def broker_script(name: str, records: bool, layout: Layout = LAYOUT) -> str:
    """A Broker script; ``records``: the Broker keeps the Store's records (``RECORD``)."""
    return lua_source(name, _record_header(records), layout)


def broker_library(name: str, records: bool, prefix: str, layout: Layout = LAYOUT) -> str:
    """A Broker script as a library (``lua_library``) for the hash-tagged ``prefix``."""
    return lua_library(name, prefix, _record_header(records), layout)
