"""One error shape for every failure the API reports.

Every error a client sees is ``{"error": {"code", "message", "field"}}``
(plus ``"errors"`` for a batch, one item per refused job), whatever raised
it: our own checks, the job validator, a backend, or Quart and Werkzeug
themselves (unknown route, wrong method, body too large). ``code`` is a
stable machine word to branch on; ``message`` is a sentence for a human and
may change; ``field`` names the culprit when there is one. Clients never see
a traceback or an exception's text: a real bug is logged here and answered
with a generic 500.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from quart import Response, has_websocket_context, jsonify, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing.exceptions import WebsocketMismatch

from ..actors.node import BatchValidationError, JobNotFound, WorkflowNotFound
from ..backends.base import BackendUnavailable, StateConflict
from ..backends.dependencies import UnknownDependency
from ..jobs import ValidationError
from ..text import cut

log = logging.getLogger("jobtrio.api")

#: Longest message a client gets; the values quoted in messages are cut long before
#: (``text.clip``), this is the net under them.
MAX_MESSAGE_LENGTH = 1000

#: Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = 1


class ApiError(Exception):
    """A refusal the API means to make, raised from anywhere under a route."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        field: str | None = None,
        *,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})


class BadRequest(ApiError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(400, code, message, field)


class NotFound(ApiError):
    def __init__(self, message: str, code: str = "not_found") -> None:
        super().__init__(404, code, message)


class Conflict(ApiError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(409, code, message, field)


#: Refusing a body without reading it leaves its bytes on the connection, where
#: they would be parsed as the next request: the client must open a new one.
CLOSE_CONNECTION = {"Connection": "close"}


class PayloadTooLarge(ApiError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "payload_too_large",
            f"the request body is larger than the limit of {limit} bytes",
            headers=CLOSE_CONNECTION,
        )


class Unprocessable(ApiError):
    def __init__(self, code: str, message: str, field: str | None = None) -> None:
        super().__init__(422, code, message, field)


class Unauthorized(ApiError):
    """No or bad credentials; the auth issue raises it from an authorizer."""

    def __init__(self, message: str = "authentication required: send a Bearer token") -> None:
        super().__init__(401, "unauthorized", message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(403, "forbidden", message)


def error_body(
    code: str,
    message: str,
    field: str | None = None,
    errors: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    if len(message) > MAX_MESSAGE_LENGTH:
        message = message[: MAX_MESSAGE_LENGTH - 1] + "…"
    body: dict[str, Any] = {"error": {"code": code, "message": message, "field": field}}
    if errors is not None:
        body["errors"] = list(errors)
    return body


def error_response(
    status: int,
    code: str,
    message: str,
    field: str | None = None,
    *,
    errors: Sequence[Mapping[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    response = jsonify(error_body(code, message, field, errors))
    response.status_code = status
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def batch_errors(exc: BatchValidationError) -> list[dict[str, Any]]:
    return [
        {"index": index, "field": err.field, "code": err.code, "message": err.message}
        for index, err in exc.errors
    ]


#: Werkzeug's exceptions, renamed to our codes (anything else: its name in snake case).
_HTTP_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _method_and_path() -> tuple[str, str]:
    """What was asked: a websocket handshake has no ``request``, only a ``websocket``."""
    if has_websocket_context():
        return "WEBSOCKET", websocket.path
    return request.method, request.path


def register_error_handlers(app: QuartTrio) -> None:
    """Route every exception to the one JSON shape (for a refused websocket handshake too)."""

    @app.errorhandler(ApiError)
    async def api_error(exc: ApiError) -> Response:
        return error_response(
            exc.status, exc.code, exc.message, exc.field, errors=exc.errors, headers=exc.headers
        )

    @app.errorhandler(ValidationError)
    async def validation_error(exc: ValidationError) -> Response:
        # a payload over MAX_PAYLOAD_BYTES is a size limit, like a body over its own
        status = 413 if exc.code == "payload_too_large" else 422
        return error_response(status, exc.code, exc.message, exc.field)

    @app.errorhandler(BatchValidationError)
    async def batch_error(exc: BatchValidationError) -> Response:
        items = batch_errors(exc)
        first = items[0]
        return error_response(
            422,
            "invalid_batch",
            f"{len(items)} job(s) of the batch are invalid (the first at index "
            f"{first['index']}: {first['message']}); no job was accepted",
            "jobs",
            errors=items,
        )

    @app.errorhandler(UnknownDependency)
    async def unknown_dependency(exc: UnknownDependency) -> Response:
        # a 400, not a 422: the body is valid, but names a job that does not exist
        return error_response(400, "unknown_dependency", str(exc), "depends_on")

    @app.errorhandler(WorkflowNotFound)
    async def workflow_not_found(exc: WorkflowNotFound) -> Response:
        return error_response(404, "not_found", str(exc))

    @app.errorhandler(JobNotFound)
    async def job_not_found(exc: JobNotFound) -> Response:
        return error_response(404, "not_found", f"no job with id {exc.job_id!r}")

    @app.errorhandler(StateConflict)
    async def state_conflict(exc: StateConflict) -> Response:
        return error_response(409, "state_conflict", str(exc))

    @app.errorhandler(BackendUnavailable)
    async def unavailable(exc: BackendUnavailable) -> Response:
        # the reason is for operators (the log and /health), not for every client
        log.warning("%s %s: %s", *_method_and_path(), exc)
        return error_response(
            503,
            "unavailable",
            "the queue is unavailable; try again shortly",
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.errorhandler(HTTPException)
    async def http_error(exc: HTTPException) -> Response:
        status = exc.code or 500
        code = _HTTP_CODES.get(status) or _snake(exc.name or "error")
        headers: dict[str, str] = {}
        method, path = _method_and_path()
        shown = cut(path, 200)
        if isinstance(exc, WebsocketMismatch) or (method == "WEBSOCKET" and status == 405):
            if method == "WEBSOCKET":  # an upgrade to a plain HTTP route: there is no such route
                status, code = 404, "not_found"
                message = f"no websocket at {shown}; the event stream is /api/v1/events"
            else:
                message = f"{shown} is a websocket: open it with ws:// (or wss://)"
        elif status == 404:
            message = f"no route {method} {shown}; see /openapi.json"
        elif status == 405 and isinstance(exc, MethodNotAllowed):
            allowed = sorted(m for m in (exc.valid_methods or ()) if m not in ("HEAD", "OPTIONS"))
            message = f"{method} is not allowed on {shown}; use {', '.join(allowed)}"
            headers["Allow"] = ", ".join(exc.valid_methods or ())
        elif status == 413:
            headers.update(CLOSE_CONNECTION)
            limit = None if has_websocket_context() else request.max_content_length
            message = (
                f"the request body is larger than the limit of {limit} bytes"
                if limit
                else "the request body is too large"
            )
        else:
            message = exc.description or exc.name or "request refused"
        return error_response(status, code, message, headers=headers)

    @app.errorhandler(Exception)
    async def internal(exc: Exception) -> Response:
        log.error("unhandled error on %s %s", *_method_and_path(), exc_info=exc)
        return error_response(500, "internal", "internal error; the node's log has the details")


def _snake(name: str) -> str:
    return "_".join(name.lower().replace("-", " ").split())
