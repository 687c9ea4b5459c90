"""The OpenAPI 3.1 description of the REST API, built by hand.

Hand-built because the routes validate by hand (see ``parsing`` and
``submission.validate_submission``) and a generator would describe the framework's
idea of the API rather than ours. Two tests keep it honest: it must list
exactly the app's routes, and real responses must validate against its
schemas. Protected operations carry ``x-required-role``, read from the
``@require`` on the view itself, and the bearer scheme the auth change turns
on.
"""

from __future__ import annotations

import re
from typing import Any

from quart_trio import QuartTrio

from ..auth import required_role
from .operations import RESPONSES, errors, operations
from .schemas import schemas


def openapi_path(rule: str) -> str:
    """Werkzeug's ``/jobs/<job_id>`` (or ``<string:job_id>``) as OpenAPI's ``/jobs/{job_id}``."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def _roles(app: QuartTrio) -> dict[tuple[str, str], str]:
    roles: dict[tuple[str, str], str] = {}
    for rule in app.url_map.iter_rules():
        role = required_role(app.view_functions[rule.endpoint])
        if role is None:
            continue
        for method in rule.methods or ():
            roles[(openapi_path(rule.rule), method.lower())] = str(role)
    return roles


def build_spec(app: QuartTrio, version: str) -> dict[str, Any]:
    roles = _roles(app)
    paths: dict[str, dict[str, Any]] = {}
    for (path, method), operation in operations().items():
        op = dict(operation)
        role = roles.get((path, method))
        if role is None:
            op["security"] = []
        else:
            op["x-required-role"] = role
            # with AUTH_ENABLED every protected operation may refuse: say so on each
            op["responses"] = {**errors("Unauthorized", "Forbidden"), **op["responses"]}
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "jobtrio",
            "version": version,
            "summary": "A distributed, fault-tolerant background-job processor on trio",
            "description": (
                'Every error is {"error": {"code", "message", "field"}}; branch on code. '
                "Times are ISO 8601 (UTC). With AUTH_ENABLED, protected operations need a "
                "Bearer token whose role is at least x-required-role."
            ),
        },
        "servers": [{"url": "/"}],
        "tags": [
            {"name": "jobs", "description": "Submit, inspect, cancel and retry jobs"},
            {"name": "workflows", "description": "Chains, groups and chords of jobs"},
            {"name": "schedules", "description": "Periodic jobs: cron expressions and intervals"},
            {"name": "queues", "description": "Named queues: pause, resume, rate limits"},
            {"name": "cluster", "description": "Nodes, workers, leader and elections"},
            {"name": "operations", "description": "Probes and this document"},
        ],
        "security": [{"bearerAuth": []}],
        "paths": paths,
        "components": {
            "schemas": schemas(),
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
