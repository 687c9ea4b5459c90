"""The Quart-Trio application: one node's REST surface.

``create_app(node)`` assembles the blueprints (``jobs``, ``schedules``,
``cluster``, ``ops``, the ``events`` websocket, the ``dashboard`` and
``login``), the authorizer of ``AUTH_ENABLED=true``, the
request timing of ``api_request_duration_seconds``, the error handlers that
give every failure one JSON shape, and the body limits. The node must be
running for the routes to be useful, but the app holds no state of its own:
``server.serve`` runs it under hypercorn in the node's nursery, tests drive
it with ``app.test_client()``.
"""

from __future__ import annotations

from collections.abc import Callable

from quart import Request, Response, request
from quart_trio import QuartTrio

from ..actors.node import Node
from ..config import ConfigError, Settings
from ..tokens import Tokens
from ..users import Users, UsersFileError
from . import cluster, dashboard, events, jobs, login, ops, queues, schedules, workflows
from .auth import AUTHORIZER_KEY, Authorizer, JwtAuthorizer
from .context import NODE_KEY, batch_body_limit
from .errors import register_error_handlers
from .jsonprovider import FastJSONProvider
from .login import LOGIN_KEY, Login
from .request_metrics import RequestTimer, TimedRequest


def _has_body(request: Request) -> bool:
    return bool(request.content_length) or "Transfer-Encoding" in request.headers


def build_auth(settings: Settings, clock: Callable[[], float]) -> tuple[JwtAuthorizer, Login]:
    """The authorizer and login of ``AUTH_ENABLED=true``; ``ConfigError`` (one line, exit 2)
    when the users file cannot be read."""
    if not settings.users_file:
        raise ConfigError("USERS_FILE is not set: it is required with AUTH_ENABLED=true")
    try:
        users = Users.load(settings.users_file)
    except UsersFileError as exc:
        raise ConfigError(f"USERS_FILE={settings.users_file} is not usable: {exc}") from None
    tokens = Tokens(settings.jwt_secret, settings.jwt_ttl)
    return JwtAuthorizer(tokens, users, clock), Login(users, tokens, clock)


def create_app(
    node: Node,
    *,
    authorizer: Authorizer | None = None,
    login_service: Login | None = None,
) -> QuartTrio:
    """The node's app. With ``AUTH_ENABLED=true`` and no authorizer given, the JWT one
    is built from the settings: an app made from such settings is never left open."""
    if authorizer is None and login_service is None and node.settings.auth_enabled:
        authorizer, login_service = build_auth(node.settings, node.clock)
    app = QuartTrio("jobtrio", static_folder=None)
    # no implicit OPTIONS answers: they listed methods of other routes sharing a prefix
    # (/api/v1/jobs/batch and /api/v1/jobs/<job_id>) that the API does not offer there
    app.config["PROVIDE_AUTOMATIC_OPTIONS"] = False
    # the largest body any route reads (a batch); single-job routes check a lower limit
    app.config["MAX_CONTENT_LENGTH"] = batch_body_limit(node.settings)
    app.json = FastJSONProvider(app)  # orjson where it writes what the stdlib would
    app.extensions[NODE_KEY] = node
    if authorizer is not None:
        app.extensions[AUTHORIZER_KEY] = authorizer
    if login_service is not None:
        app.extensions[LOGIN_KEY] = login_service
    register_error_handlers(app)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(workflows.bp)
    app.register_blueprint(schedules.bp)
    app.register_blueprint(queues.bp)
    app.register_blueprint(cluster.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(events.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(login.bp)
    app.request_class = TimedRequest
    timer = RequestTimer(node.metrics)
    node_id = node.node_id

    # one hook for all (each hook Quart runs has a cost of its own per request)
    @app.after_request
    async def finish(response: Response) -> Response:
        current = request._get_current_object()  # type: ignore[attr-defined]
        # in a cluster behind a balancer, which node answered is the first question
        response.headers["X-Jobtrio-Node"] = node_id
        if response.status_code >= 400 and _has_body(current):
            # refused before reading the body: its bytes would be parsed as the next request
            response.headers["Connection"] = "close"
        timer.observe(current, response)
        return response

    return app
