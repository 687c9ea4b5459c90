"""The seam where authentication plugs in (JWT roles come in a later change).

Every protected route is declared with ``@require(role)`` today, so the
later change only has to install an authorizer: an async callable that gets
the request and the role the route needs, and raises ``Unauthorized`` (401)
or ``Forbidden`` (403) to refuse. Without one, every request is allowed,
which is what ``AUTH_ENABLED=false`` means.

The role each route needs is kept on the view (``required_role``) so the
OpenAPI document and tests can list them without a second table to keep in
sync.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from quart import Request, current_app, request

AUTHORIZER_KEY = "jobtrio.authorizer"


class Role(enum.StrEnum):
    """The seed's roles; ``admin`` may do everything a ``user`` may."""

    ADMIN = "admin"
    USER = "user"
    WORKER = "worker"


Authorizer = Callable[[Request, Role], Awaitable[None]]
View = TypeVar("View", bound=Callable[..., Awaitable[Any]])


def require(role: Role) -> Callable[[View], View]:
    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def guarded(*args: Any, **kwargs: Any) -> Any:
            authorizer: Authorizer | None = current_app.extensions.get(AUTHORIZER_KEY)
            if authorizer is not None:
                await authorizer(request, role)
            return await view(*args, **kwargs)

        guarded.required_role = role  # type: ignore[attr-defined]
        return guarded  # type: ignore[return-value]

    return decorate


def required_role(view: Callable[..., Any]) -> Role | None:
    return getattr(view, "required_role", None)
