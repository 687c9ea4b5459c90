"""The web dashboard: static files shipped in the package, served by every node.

``GET /`` is the page; ``/dashboard/<file>`` its script and style. Nothing is
built at install time and nothing comes from a CDN (a deployment may be
offline): the files in ``api/static/`` are what the browser runs. They need
no credentials: the page asks for a login when the API answers 401 and then
sends the token with every call and on the event stream.
"""

from __future__ import annotations

from pathlib import Path

from quart import Blueprint, Response, send_from_directory

from .errors import NotFound

STATIC = Path(__file__).resolve().parent / "static"
#: The files the dashboard is made of (anything else under /dashboard/ is a 404).
FILES = frozenset({"app.js", "style.css", "index.html"})

bp = Blueprint("dashboard", __name__)


async def _file(name: str) -> Response:
    response = await send_from_directory(STATIC, name)
    # a node upgraded in place must not keep serving yesterday's script from caches
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("/")
async def index() -> Response:
    return await _file("index.html")


@bp.get("/dashboard/<name>")
async def asset(name: str) -> Response:
    if name not in FILES:
        raise NotFound(f"no dashboard file {name[:60]!r}")
    return await _file(name)
