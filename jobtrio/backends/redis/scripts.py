"""The Lua scripts (``lua/*.lua``) and the one way the Broker and the Store run them.

Scripts are files of the package, read with ``importlib.resources``, so they
can be read, diffed and linted as Lua. A script names the shared helpers it
needs on ``--@include <name>`` lines; ``lua_source`` puts each named file in
place of its line (once, in the order named), so a helper has one copy. Two
names are not files but generated from the job's declared layout
(``layout.py``): ``layout`` (the constants and patterns) and ``layout_doc``
(the function that writes a job's document).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from importlib import resources
from typing import TYPE_CHECKING, Any, Self

from .layout import LAYOUT, Layout
from .wire import DEFAULT_POOL_SIZE, DEFAULT_SOCKET_TIMEOUT, RedisConnection

if TYPE_CHECKING:
    from ...config import Settings

_INCLUDE = "--@include "


@functools.cache
def lua_file(name: str) -> str:
    """The text of ``lua/<name>.lua``, as the package ships it."""
    return (resources.files(__package__) / "lua" / f"{name}.lua").read_text(encoding="utf-8")


def lua_source(name: str, header: str = "", layout: Layout = LAYOUT) -> str:
    """The script ``name`` with its ``--@include`` lines replaced by the named files.

    ``header`` goes first. An include names a file once: a second include of
    it is dropped. ``layout`` and ``layout_doc`` come from ``layout``.
    """
    generated = {"layout": layout.lua(), "layout_doc": layout.lua_doc()}
    seen: set[str] = set()

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

    return header + "\n".join(expand(lua_file(name))) + "\n"


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


def broker_script(name: str, records: bool, layout: Layout = LAYOUT) -> str:
    """A Broker script; ``records``: the Broker keeps the Store's records (``RECORD``)."""
    return lua_source(name, "local RECORD = " + ("true" if records else "false") + "\n", layout)
