"""``POST /auth/login``: a user name and password for a token.

The answer is ``{"token", "role", "expires_at"}``. A wrong password and an
unknown user get the same 401 with the same words, after the same work (an
unknown name is checked against a decoy hash), so the route does not tell
which names exist. Failures are counted per user name and per client
address (``throttle.py``); past a few, the route answers 429 with
``Retry-After`` without checking the password, which slows guessing down
exponentially. Password hashing runs in worker threads, at most
``HASHING_THREADS`` at once: argon2 is deliberately costly in time and
memory, and a flood of logins must not take the node's memory with it.

Client addresses are the TCP peer's; behind a proxy every login shares the
proxy's address (the per-user limit still applies).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import trio
from quart import Blueprint, Response, current_app, jsonify, request

from ..jobs import to_iso
from ..throttle import Throttle
from ..tokens import Tokens
from ..users import MAX_PASSWORD_BYTES, Users
from .errors import ApiError, NotFound, Unprocessable
from .parsing import read_json_object, reject_unknown

LOGIN_KEY = "jobtrio.login"
#: Failures allowed per user name, then per address, before the delays start.
FREE_FAILURES_PER_USER = 5
FREE_FAILURES_PER_ADDRESS = 20
HASHING_THREADS = 2
LOGIN_BODY_BYTES = 4096
FIELDS = ("username", "password")

bp = Blueprint("login", __name__)


class TooManyAttempts(ApiError):
    def __init__(self, seconds: float) -> None:
        wait = max(1, math.ceil(seconds))
        super().__init__(
            429,
            "too_many_attempts",
            f"too many failed logins; try again in {wait} s",
            headers={"Retry-After": str(wait)},
        )


class BadCredentials(ApiError):
    def __init__(self) -> None:
        super().__init__(
            401,
            "invalid_credentials",
            "wrong user name or password",
            headers={"WWW-Authenticate": "Bearer"},
        )


class Login:
    """Users, tokens and the throttles: what the route needs, in one object."""

    def __init__(self, users: Users, tokens: Tokens, clock: Callable[[], float]) -> None:
        self.users = users
        self.tokens = tokens
        self.clock = clock
        self.per_user = Throttle(FREE_FAILURES_PER_USER)
        self.per_address = Throttle(FREE_FAILURES_PER_ADDRESS)
        self.hashing = trio.CapacityLimiter(HASHING_THREADS)

    async def login(self, name: str, password: str, address: str) -> dict[str, Any]:
        now = self.clock()
        user_key, address_key = f"user:{name}", f"addr:{address}"
        waits = [
            w
            for w in (
                self.per_user.retry_after(user_key, now),
                self.per_address.retry_after(address_key, now),
            )
            if w is not None
        ]
        if waits:
            raise TooManyAttempts(max(waits))
        self.users.reload_if_changed()
        user = await trio.to_thread.run_sync(
            self.users.verify, name, password, limiter=self.hashing
        )
        now = self.clock()
        if user is None:
            self.per_user.failed(user_key, now)
            self.per_address.failed(address_key, now)
            raise BadCredentials()
        self.per_user.succeeded(user_key)
        token, expires = self.tokens.issue(user.name, user.role, user.stamp, now)
        return {"token": token, "role": str(user.role), "expires_at": to_iso(expires)}


@bp.post("/auth/login")
async def login() -> Response:
    service: Login | None = current_app.extensions.get(LOGIN_KEY)
    if service is None:
        raise NotFound(
            "this node runs with AUTH_ENABLED=false: no login is needed", code="auth_disabled"
        )
    reject_unknown(request.args, ())
    data = await read_json_object(LOGIN_BODY_BYTES)
    for key in data:
        if key not in FIELDS:
            raise Unprocessable(
                "unknown_field", f"unknown field {key[:40]!r}; send username and password", key[:40]
            )
    for key in FIELDS:
        value = data.get(key)
        if not isinstance(value, str) or not value:
            raise Unprocessable("missing_field", f"{key} must be a non-empty string", key)
    name, password = data["username"], data["password"]
    if len(name) > 64 or len(password.encode()) > MAX_PASSWORD_BYTES:
        # no such user can exist; the same answer as for any other wrong pair
        raise BadCredentials()
    return jsonify(await service.login(name, password, request.remote_addr or "unknown"))
