"""The client's exceptions: one family, all ``JobtrioError``, one class per way a call fails.

A caller catches broadly (``JobtrioError``) or precisely (``NotFound``...);
``error_from_response`` is the one place that turns the API's error body into
them, so both clients and the event stream raise the same class for the same
answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from ..jobs import Job


class JobtrioError(Exception):
    """Anything that went wrong talking to a node; ``status`` is None without an HTTP answer."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        field: str | None = None,
        errors: Sequence[Mapping[str, Any]] = (),
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.field = field
        #: For a refused batch: ``{"index", "field", "code", "message"}`` per invalid job.
        self.errors = [dict(e) for e in errors]

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(JobtrioError):
    """No HTTP answer: refused, unreachable, TLS failure or timed out."""


class InvalidRequest(JobtrioError):
    """400, 413 or 415: the request itself is malformed (a bug in the caller)."""


class InvalidJob(InvalidRequest):
    """422: well-formed, but not a valid job or schedule (``field`` names it; ``errors``
    for batches)."""


class AuthenticationFailed(JobtrioError):
    """401: no token, or a bad one."""


class PermissionDenied(JobtrioError):
    """403: the token's role may not do this."""


class NotFound(JobtrioError):
    """404: no such job or schedule (or route)."""


class Conflict(JobtrioError):
    """409: the job's state forbids the move (cancel a finished job...), or the schedule
    is defined in code and cannot be changed over HTTP."""


class Unavailable(JobtrioError):
    """503: the node cannot reach its queue; retrying later may work."""


class ServerError(JobtrioError):
    """Any other 5xx: a bug on the node; its log has the details."""


class WaitTimeout(JobtrioError, TimeoutError):
    """``wait`` ran out of time; ``job`` is the last state seen."""

    def __init__(self, message: str, job: Job | None = None) -> None:
        super().__init__(message, code="wait_timeout")
        self.job = job


_BY_STATUS: dict[int, type[JobtrioError]] = {
    400: InvalidRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: InvalidRequest,
    415: InvalidRequest,
    422: InvalidJob,
    503: Unavailable,
}


def error_from_response(response: httpx.Response) -> JobtrioError:
    status = response.status_code
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else JobtrioError)
    try:
        body = response.json()
        error = body["error"]
        return cls(
            str(error["message"]),
            status=status,
            code=error.get("code"),
            field=error.get("field"),
            errors=body.get("errors") or (),
        )
    except (ValueError, KeyError, TypeError):
        reason = response.reason_phrase or "error"
        return cls(f"HTTP {status} {reason} from {response.request.url}", status=status)


def connection_failed(url: str, exc: httpx.TransportError) -> ConnectionFailed:
    """No HTTP answer, as both clients report it: the node's URL and the reason, a
    timeout named as one."""
    if isinstance(exc, httpx.TimeoutException):
        reason = "no answer in time"
    else:
        reason = str(exc) or type(exc).__name__
    return ConnectionFailed(f"cannot reach {url}: {reason}")
