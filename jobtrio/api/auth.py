"""Who may call what: the role each route needs, and the JWT authorizer.

Every protected route is declared with ``@require(role)``. Roles are
ordered, ``admin`` > ``user`` > ``worker``: a route marked ``worker`` is open
to all three, one marked ``admin`` to admins only (the matrix, derived from
these marks, is in docs/security.md and tested route by route).

``require`` calls the app's authorizer, an async callable that gets the
request and the role the route needs and raises ``Unauthorized`` (401) or
``Forbidden`` (403) to refuse. Without one every request is allowed, which
is what ``AUTH_ENABLED=false`` means. ``JwtAuthorizer`` is the real one:
a Bearer token (HS256, see ``tokens.py``) from the ``Authorization`` header,
or, on the websocket event stream only, from the ``token`` query parameter
(a browser cannot set headers on a websocket); the token's user must still
exist in the users file with the same stamp.

The role each route needs is kept on the view (``required_role``) so the
OpenAPI document and tests can list them without a second table to keep in
sync.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from quart import Request, current_app, g, has_websocket_context, request, websocket

from ..tokens import Claims, TokenError, Tokens
from ..users import Role, Users, UsersFileError
from .errors import Forbidden, Unauthorized

__all__ = [
    "AUTHORIZER_KEY",
    "Authorizer",
    "JwtAuthorizer",
    "Role",
    "owner_scope",
    "require",
    "required_role",
    "submitter",
]

log = logging.getLogger("jobtrio.api.auth")

AUTHORIZER_KEY = "jobtrio.authorizer"

#: The roles that may use a route marked with the key.
GRANTED: dict[Role, frozenset[Role]] = {
    Role.ADMIN: frozenset({Role.ADMIN}),
    Role.USER: frozenset({Role.ADMIN, Role.USER}),
    Role.WORKER: frozenset({Role.ADMIN, Role.USER, Role.WORKER}),
}

Authorizer = Callable[[Request, Role], Awaitable[None]]
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])


def require(role: Role) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            # check_role's lines, not a call of it: a coroutine less a request
            authorizer: Authorizer | None = current_app.extensions.get(AUTHORIZER_KEY)
            if authorizer is not None:
                await authorizer(request, role)
            return await view(*args, **kwargs)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


async def check_role(role: Role) -> None:
    """Ask the authorizer (if any) whether this request may do what ``role`` may."""
    authorizer: Authorizer | None = current_app.extensions.get(AUTHORIZER_KEY)
    if authorizer is not None:
        await authorizer(request, role)


def required_role(view: Callable[..., Any]) -> Role | None:
    return getattr(view, "required_role", None)


def current_claims() -> Claims | None:
    """Who is calling (set by ``JwtAuthorizer``), or None without auth."""
    return g.get("claims")


def submitter() -> str | None:
    """The owner a job submitted by this request gets: the token's user (None without auth)."""
    claims = current_claims()
    return None if claims is None or claims.peer else claims.subject


def owner_scope() -> str | None:
    """Whose jobs this request may see and change: the user's own name for role ``user``,
    None (everybody's) for ``admin``, for ``worker`` (which reads the whole queue and
    changes nothing) and without auth."""
    claims = current_claims()
    if claims is None or claims.role != Role.USER:
        return None
    return claims.subject


class JwtAuthorizer:
    """The authorizer of ``AUTH_ENABLED=true``."""

    def __init__(self, tokens: Tokens, users: Users, clock: Callable[[], float]) -> None:
        self.tokens = tokens
        self.users = users
        self.clock = clock

    async def __call__(self, _request: Request, role: Role) -> None:
        websocket_handshake = has_websocket_context()
        source: Any = websocket if websocket_handshake else request
        header = source.headers.get("Authorization", "")
        token = ""
        if header:
            scheme, _, value = header.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                raise Unauthorized("the Authorization header must be: Bearer <token>")
            token = value.strip()
        elif websocket_handshake:
            token = source.args.get("token", "").strip()
        if not token:
            raise Unauthorized()
        try:
            claims = self.tokens.verify(token, self.clock())
        except TokenError as exc:
            raise Unauthorized(str(exc)) from None
        if claims.peer:
            # a node's token opens only what nodes ask each other
            if websocket_handshake or source.method != "GET" or source.path != "/api/v1/workers":
                raise Forbidden("a node's token is only good for /api/v1/workers")
        else:
            self._check_user(claims)
        if claims.role not in GRANTED[role]:
            raise Forbidden(
                f"this needs the {role} role (or above); the token's role is {claims.role}"
            )
        g.claims = claims

    def _check_user(self, claims: Claims) -> None:
        try:
            self.users.reload_if_changed()
        except UsersFileError as exc:
            # keep the users read last; a broken edit must not lock everybody out
            log.error("users file not reloaded: %s", exc)
        user = self.users.get(claims.subject)
        if user is None or user.stamp != claims.stamp:
            # removed, or the password (or role) changed since the token was issued
            raise Unauthorized("the token has been revoked; log in again")
        if user.role != claims.role:
            raise Unauthorized("the token has been revoked; log in again")
