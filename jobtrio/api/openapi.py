"""The OpenAPI 3.1 description of the REST API, built by hand.

Hand-built because the routes validate by hand (see ``parsing`` and
``jobs.validate_submission``) and a generator would describe the framework's
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

from ..jobs import (
    MAX_DEPENDENCIES,
    MAX_DURATION,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_PRIORITY,
    MAX_QUEUE_LENGTH,
    MAX_TIMESTAMP,
    MAX_TYPE_LENGTH,
    MIN_PRIORITY,
    JobStatus,
)
from ..schedules import DEFAULT_MISFIRE_GRACE, NAME_PATTERN
from .algorithms import ALGORITHMS
from .auth import required_role
from .cluster import DEFAULT_ELECTIONS, MAX_ELECTIONS
from .context import MAX_BATCH_JOBS
from .parsing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return {"anyOf": [schema, {"type": "null"}]}
    out = dict(schema)
    kind = out.get("type")
    out["type"] = [kind, "null"] if isinstance(kind, str) else [*kind, "null"]
    return out


def _obj(
    properties: dict[str, Any], required: list[str] | None = None, extra: bool = True
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    schema["required"] = list(properties) if required is None else required
    if not extra:
        schema["additionalProperties"] = False
    return schema


STRING = {"type": "string"}
INT = {"type": "integer"}
NUMBER = {"type": "number"}
BOOL = {"type": "boolean"}
TIME = {"type": "string", "format": "date-time"}
STATUS = {"type": "string", "enum": [s.value for s in JobStatus]}
JOB_ID = {
    "type": "string",
    "pattern": "^[0-9A-HJKMNP-TV-Z]{26}$",
    "example": "01J9Z6N5G4X8W3QH2K7R1M0P9T",
}


def _submission_properties() -> dict[str, Any]:
    return {
        "type": {
            **STRING,
            "minLength": 1,
            "maxLength": MAX_TYPE_LENGTH,
            "description": "the registered processor that runs the job",
            "example": "email",
        },
        "priority": {
            "type": ["integer", "null"],
            "minimum": MIN_PRIORITY,
            "maximum": MAX_PRIORITY,
            "default": 5,
            "description": "higher runs first (Low=1, Normal=5, High=10)",
        },
        "payload": {
            "type": ["object", "null"],
            "description": "the job's input, up to MAX_PAYLOAD_BYTES as JSON",
            "example": {"recipient": "user@example.com", "subject": "Hello"},
        },
        "max_retries": {
            "type": ["integer", "null"],
            "minimum": 0,
            "maximum": 1000,
            "description": "retries after the first attempt (default MAX_RETRIES)",
        },
        "scheduled_at": {
            "oneOf": [
                TIME,
                {**NUMBER, "minimum": 0, "maximum": MAX_TIMESTAMP},
                {"type": "null"},
            ],
            "description": "run no earlier than this (ISO 8601 or Unix seconds, 1970 to 9999)",
        },
        "timeout": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "maximum": MAX_DURATION,
            "description": "seconds an attempt may run before it fails (at most ten years)",
        },
        "idempotency_key": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": MAX_IDEMPOTENCY_KEY_LENGTH,
            "description": "a second submission with the same key returns the first job",
        },
        "queue": {
            "type": ["string", "null"],
            "minLength": 1,
            "maxLength": MAX_QUEUE_LENGTH,
            "description": "the named queue the job waits in (default: default); printable "
            "text without , : = / or surrounding spaces",
        },
        "depends_on": {
            "type": ["array", "null"],
            "items": JOB_ID,
            "maxItems": MAX_DEPENDENCIES,
            "uniqueItems": True,
            "description": "ids of jobs that must complete first: the job waits "
            "(status waiting) until they have; an unknown id is a 400",
        },
        "on_dependency_failure": {
            "type": ["string", "null"],
            "enum": ["fail", "run", None],
            "description": "with depends_on: fail (default) fails the job when a dependency "
            "fails or is cancelled, naming it; run lets it run anyway",
        },
        "receive_results": {
            "type": ["boolean", "null"],
            "description": "with depends_on: hand the dependencies' results to the "
            "processor (ctx.results) and keep them in dependency_results",
        },
    }


def _schemas() -> dict[str, Any]:
    error_detail = _obj(
        {
            "code": {**STRING, "description": "stable machine word to branch on"},
            "message": {**STRING, "description": "a sentence for humans; may change"},
            "field": {**_nullable(STRING), "description": "the field or parameter at fault"},
        }
    )
    batch_item_error = _obj(
        {
            "index": {**INT, "minimum": 0, "description": "position of the job in the batch"},
            "field": _nullable(STRING),
            "code": STRING,
            "message": STRING,
        }
    )
    backend = _obj(
        {
            "name": {**STRING, "description": "implementation: sqlite, redis, mongodb, memory"},
            "kind": {"type": "string", "enum": ["broker", "store"]},
            "healthy": BOOL,
            "error": _nullable(STRING),
        }
    )
    member = _obj(
        {
            "node_id": STRING,
            "state": {**STRING, "description": "alive, suspect, dead or left"},
            "address": _nullable(STRING),
            "api_url": _nullable(STRING),
            "worker_count": _nullable(INT),
            "incarnation": {**INT, "description": "SWIM incarnation number"},
            "last_contact": {
                **_nullable(TIME),
                "description": "when this node last heard from the member",
            },
            "last_contact_seconds_ago": {
                **_nullable(NUMBER),
                "description": "seconds since this node last heard from the member",
            },
            "is_leader": BOOL,
            "self": BOOL,
        },
        required=["node_id", "state"],
    )
    submission = _submission_properties()
    # a schedule's job gets its idempotency key from the tick and runs when due
    template = {k: v for k, v in submission.items() if k not in ("scheduled_at", "idempotency_key")}
    return {
        "Error": _obj({"error": _ref("ErrorDetail")}),
        "ErrorDetail": error_detail,
        "BatchError": _obj(
            {
                "error": _ref("ErrorDetail"),
                "errors": {
                    "type": "array",
                    "items": batch_item_error,
                    "description": "one item per invalid job (absent when the batch itself is)",
                },
            },
            required=["error"],
        ),
        "Attempt": _obj(
            {
                "number": INT,
                "node_id": STRING,
                "worker_id": _nullable(STRING),
                "started_at": TIME,
                "ended_at": _nullable(TIME),
                "outcome": {
                    **_nullable(STRING),
                    "description": "completed, failed, timeout, cancelled, lost or released",
                },
                "error": _nullable(STRING),
            }
        ),
        "Job": _obj(
            {
                "id": JOB_ID,
                "type": STRING,
                "priority": {**INT, "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
                "payload": {"type": "object"},
                "status": STATUS,
                "created_at": TIME,
                "updated_at": TIME,
                "scheduled_at": _nullable(TIME),
                "started_at": _nullable(TIME),
                "completed_at": _nullable(TIME),
                "retry_count": {**INT, "minimum": 0},
                "max_retries": {**INT, "minimum": 0},
                "timeout": {**_nullable(NUMBER), "description": "seconds an attempt may run"},
                "result": {"description": "what the processor returned (any JSON)"},
                "error": _nullable(STRING),
                "node_id": _nullable(STRING),
                "worker_id": _nullable(STRING),
                "attempts": {"type": "array", "items": _ref("Attempt")},
                "idempotency_key": _nullable(STRING),
                "lease_expirations": {**INT, "minimum": 0},
                "progress": _nullable(
                    {
                        "type": "object",
                        "description": "the latest progress report of a running attempt",
                        "properties": {
                            "fraction": {**NUMBER, "minimum": 0, "maximum": 1},
                            "message": _nullable({**STRING, "maxLength": 200}),
                            "at": NUMBER,
                            "attempt": {**INT, "minimum": 1},
                        },
                    }
                ),
                "depends_on": {"type": "array", "items": JOB_ID},
                "on_dependency_failure": _nullable(STRING),
                "waiting_for": {
                    "type": "array",
                    "items": JOB_ID,
                    "description": "the dependencies not completed yet",
                },
                "dependents": {
                    "type": "array",
                    "items": JOB_ID,
                    "description": "the jobs that depend on this one",
                },
                "dependency_results": {
                    **_nullable({"type": "object"}),
                    "description": "dependency id -> its result, when receive_results",
                },
                "workflow_id": {**_nullable(STRING), "description": "its workflow's id"},
                "workflow": {
                    **_nullable({"type": "object"}),
                    "description": "on a workflow's first job: its kind and members",
                },
                "version": {**INT, "minimum": 0},
                "owner": {
                    **_nullable(STRING),
                    "description": "the user who submitted it (null without auth)",
                },
                "queue": {**STRING, "description": "the named queue the job waits in"},
            }
        ),
        "JobSubmission": _obj(submission, required=["type"], extra=False),
        "ScheduledJob": _obj(template, required=["type"], extra=False),
        "ScheduleSubmission": {
            **_obj(
                {
                    "name": {
                        **STRING,
                        "pattern": NAME_PATTERN.pattern,
                        "description": "identifies the schedule; posting it again replaces it",
                        "example": "nightly-report",
                    },
                    "cron": {
                        **STRING,
                        "description": "5 fields, or 6 with seconds last (UTC)",
                        "example": "0 6 * * *",
                    },
                    "every": {
                        "oneOf": [STRING, {"type": "number", "minimum": 1}],
                        "description": "an interval: a duration (30s, 5m) or seconds, at least 1s",
                    },
                    "job": _ref("ScheduledJob"),
                    "enabled": {**BOOL, "default": True},
                    "misfire_grace": {
                        "type": "number",
                        "minimum": 0,
                        "default": DEFAULT_MISFIRE_GRACE,
                        "description": "seconds a missed tick may still fire late",
                    },
                },
                required=["name", "job"],
                extra=False,
            ),
            "oneOf": [{"required": ["cron"]}, {"required": ["every"]}],
        },
        "Schedule": _obj(
            {
                "name": STRING,
                "cron": _nullable(STRING),
                "every": {**_nullable(NUMBER), "description": "interval in seconds"},
                "job": _ref("ScheduledJob"),
                "enabled": BOOL,
                "misfire_grace": {**NUMBER, "description": "seconds"},
                "source": {
                    "type": "string",
                    "enum": ["api", "code"],
                    "description": "code: registered by the deployment, read-only over HTTP",
                },
                "next_tick": {
                    **_nullable(TIME),
                    "description": "when it fires next (if enabled); null if it cannot fire",
                },
                "problem": {
                    **STRING,
                    "description": "only on a stored schedule that cannot be evaluated "
                    "(it is skipped): why",
                },
            },
            required=[
                "name",
                "cron",
                "every",
                "job",
                "enabled",
                "misfire_grace",
                "source",
                "next_tick",
            ],
        ),
        "Login": _obj(
            {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1},
            },
            extra=False,
        ),
        "Token": _obj(
            {
                "token": {**STRING, "description": "send as Authorization: Bearer <token>"},
                "role": {"type": "string", "enum": ["admin", "user", "worker"]},
                "expires_at": TIME,
            }
        ),
        "ScheduleList": _obj(
            {"schedules": {"type": "array", "items": _ref("Schedule")}, "count": INT}
        ),
        "Unserved": _obj(
            {
                "queue": STRING,
                "type": STRING,
                "pending": INT,
                "reason": {
                    **STRING,
                    "description": "no worker for type X, or no worker serves queue Q",
                },
            }
        ),
        "Queue": _obj(
            {
                "name": STRING,
                "pending": {**INT, "description": "jobs due and waiting for a worker"},
                "pending_by_type": {"type": "object", "additionalProperties": INT},
                "paused": BOOL,
                "rate_limit": _nullable(
                    _obj(
                        {"jobs": INT, "per_seconds": NUMBER},
                    )
                ),
                "nodes": {
                    "type": "array",
                    "items": STRING,
                    "description": "live nodes whose QUEUES include this queue",
                },
                "unserved": {"type": "array", "items": _ref("Unserved")},
            }
        ),
        "QueueList": _obj(
            {
                "queues": {"type": "array", "items": _ref("Queue")},
                "count": INT,
                "unserved": {"type": "array", "items": _ref("Unserved")},
            }
        ),
        "RateLimit": _obj(
            {
                "jobs": {**INT, "minimum": 1, "maximum": 1_000_000},
                "per": {
                    "oneOf": [STRING, {**NUMBER, "minimum": 0.001, "maximum": 86400}],
                    "description": "the interval: seconds, or a duration such as 500ms, 10s, 1m",
                },
            },
            required=["jobs", "per"],
            extra=False,
        ),
        "ScheduleDeleted": _obj({"name": STRING, "deleted": {"type": "boolean", "const": True}}),
        "ElectionRecord": _obj(
            {
                "leader": STRING,
                "term": INT,
                "epoch": {**INT, "description": "the fencing epoch the leader took"},
                "algorithm": STRING,
                "at": TIME,
                "members": {
                    "type": "array",
                    "items": STRING,
                    "description": "members alive in the leader's view when it took office",
                },
            },
            required=["leader", "term", "epoch", "algorithm", "at"],
        ),
        "ElectionHistory": _obj(
            {"elections": {"type": "array", "items": _ref("ElectionRecord")}, "count": INT}
        ),
        "BatchSubmission": _obj(
            {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_JOBS,
                    "items": _ref("JobSubmission"),
                }
            },
            extra=False,
        ),
        "BatchResult": _obj({"jobs": {"type": "array", "items": _ref("Job")}, "count": INT}),
        "JobList": _obj(
            {
                "jobs": {"type": "array", "items": _ref("Job")},
                "next_cursor": {
                    **_nullable(STRING),
                    "description": "pass as cursor for the next (older) page; null on the last",
                },
                "count": {**INT, "description": "jobs on this page"},
            }
        ),
        "WorkflowSubmission": {
            "type": "object",
            "description": "exactly one of chain, group or chord; a member is a "
            "JobSubmission (without depends_on, receive_results, on_dependency_failure or "
            "idempotency_key: the workflow wires them) or a nested workflow object; at most "
            "1000 jobs, 16 levels",
            "properties": {
                "chain": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object"},
                    "description": "steps in order; each depends on the one before",
                },
                "pass_results": {
                    **BOOL,
                    "default": True,
                    "description": "a chain's steps receive the previous step's results",
                },
                "group": {
                    "type": "array",
                    "minItems": 1,
                    "items": {"type": "object"},
                    "description": "members run in parallel",
                },
                "chord": {
                    "type": "object",
                    "properties": {
                        "group": {"type": "array", "minItems": 1, "items": {"type": "object"}},
                        "callback": {"type": "object"},
                    },
                    "required": ["group", "callback"],
                    "description": "a group, then a callback receiving all its results",
                },
                "on_dependency_failure": {
                    "type": ["string", "null"],
                    "enum": ["fail", "run", None],
                    "description": "for every member with dependencies (default fail)",
                },
                "idempotency_key": {
                    "type": ["string", "null"],
                    "minLength": 1,
                    "maxLength": 200,
                    "description": "the whole workflow's: while the Broker holds the workflow's "
                    "first job, submitting the same key again answers that workflow (201, same "
                    "id) and files nothing; shares one namespace with jobs' keys (a key a job "
                    "holds, or another user's workflow, is a 409 idempotency_key_taken)",
                },
            },
            "example": {
                "chain": [
                    {"type": "echo", "payload": {"n": 1}},
                    {
                        "chord": {
                            "group": [{"type": "noop"}, {"type": "noop"}],
                            "callback": {"type": "echo"},
                        }
                    },
                ]
            },
        },
        "Workflow": _obj(
            {
                "id": {**JOB_ID, "description": "the workflow's id: its first job's id"},
                "kind": {**STRING, "enum": ["chain", "group", "chord"]},
                "status": {
                    **STRING,
                    "enum": ["running", "completed", "failed", "cancelled"],
                    "description": "running until every member ended; then completed if all "
                    "did, failed if any failed, else cancelled",
                },
                "counts": {"type": "object", "description": "members by status"},
                "members": {"type": "array", "items": JOB_ID},
                "jobs": {"type": "array", "items": _ref("Job")},
            }
        ),
        "Deleted": _obj({"id": STRING, "deleted": {"type": "boolean", "const": True}}),
        "Stats": _obj(
            {
                "node_id": STRING,
                "queue": {
                    "type": "object",
                    "additionalProperties": INT,
                    "description": "jobs held by the broker per status",
                },
                "records": {
                    **_nullable({"type": "object"}),
                    "additionalProperties": INT,
                    "description": "job records per status (null while the store is down)",
                },
                "workers": _obj({"total": INT, "busy": INT, "idle": INT}),
                "in_flight": INT,
                "claimed": INT,
                "finished": INT,
                "store_backlog": INT,
                "leader": _nullable(STRING),
                "is_leader": BOOL,
                "uptime_seconds": _nullable(NUMBER),
                "strategy": STRING,
                "processors": {"type": "array", "items": STRING},
                "queues": {
                    "type": "object",
                    "additionalProperties": _obj({"pending": INT, "paused": BOOL}),
                    "description": "every queue the broker knows",
                },
                "unserved": {
                    "type": "array",
                    "items": _ref("Unserved"),
                    "description": "pending (queue, type) pairs no live node can take",
                },
            },
            required=["node_id", "queue", "workers", "leader"],
        ),
        "Worker": _obj(
            {
                "id": STRING,
                "node_id": STRING,
                "status": {
                    "type": "string",
                    "enum": ["idle", "busy", "unreachable"],
                    "description": "unreachable: the worker's node did not answer (see error)",
                },
                "error": STRING,
                "current_job": _nullable(STRING),
                "current_job_type": _nullable(STRING),
                "running_for": _nullable(NUMBER),
                "jobs_done": INT,
                "busy_seconds": NUMBER,
            },
            required=["id", "node_id", "status"],
        ),
        "WorkerList": _obj({"workers": {"type": "array", "items": _ref("Worker")}, "count": INT}),
        "Member": member,
        "NodeList": _obj({"nodes": {"type": "array", "items": _ref("Member")}, "count": INT}),
        "Leader": _obj(
            {
                "leader": _nullable(STRING),
                "leader_url": _nullable(STRING),
                "is_self": BOOL,
                "node_id": STRING,
                "algorithm": STRING,
                "term": INT,
                "since": _nullable(TIME),
            }
        ),
        "Election": _obj(
            {
                "algorithm": {"type": "string", "enum": list(ALGORITHMS)},
                "leader": _nullable(STRING),
                "term": INT,
                "epoch": {
                    **_nullable(INT),
                    "description": "fencing epoch, only while this node leads",
                },
                "fencing_epoch": {
                    **_nullable(INT),
                    "description": "the Broker's newest fencing epoch, the same on every node "
                    "(null while the Broker is unreachable)",
                },
                "is_leader": BOOL,
                "since": _nullable(TIME),
                "changes": INT,
                "election_timeout": {**NUMBER, "description": "seconds"},
                "election_interval": {**NUMBER, "description": "seconds"},
            },
            required=["algorithm", "leader", "term", "epoch", "is_leader"],
        ),
        "Algorithm": _obj(
            {
                "name": {"type": "string", "enum": list(ALGORITHMS)},
                "summary": STRING,
                "best_for": STRING,
                "recommended_cluster_size": _obj({"min": INT, "max": _nullable(INT)}),
                "properties": {"type": "object"},
                "settings": {"type": "object", "additionalProperties": STRING},
                "example": {"type": "object", "additionalProperties": STRING},
                "current": {**BOOL, "description": "whether this node runs it"},
            }
        ),
        "AlgorithmList": _obj(
            {"algorithms": {"type": "array", "items": _ref("Algorithm")}, "current": STRING}
        ),
        "Cluster": _obj(
            {
                "node_id": STRING,
                "leader": _nullable(STRING),
                "leader_url": _nullable(STRING),
                "is_leader": BOOL,
                "term": INT,
                "epoch": _nullable(INT),
                "fencing_epoch": _nullable(INT),
                "algorithm": STRING,
                "since": _nullable(TIME),
                "storage": STRING,
                "size": INT,
                "alive": INT,
                "members": {"type": "array", "items": _ref("Member")},
            }
        ),
        "BackendHealth": backend,
        "Health": _obj(
            {
                "status": {"type": "string", "enum": ["ok", "degraded", "starting", "stopping"]},
                "node_id": STRING,
                "version": STRING,
                "leader": _nullable(STRING),
                "is_leader": BOOL,
                "uptime_seconds": _nullable(NUMBER),
                "storage": STRING,
                "backends": {"type": "array", "items": _ref("BackendHealth")},
            }
        ),
        "Ready": _obj(
            {
                "ready": BOOL,
                "node_id": STRING,
                "backends": {"type": "array", "items": _ref("BackendHealth")},
                "error": {
                    **_ref("ErrorDetail"),
                    "description": "present when not ready; field names the backend kind",
                },
            },
            required=["ready", "node_id", "backends"],
        ),
    }


def _error_response(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": _ref(schema)}}}


RESPONSES: dict[str, Any] = {
    "BadRequest": _error_response(
        "The body is not JSON, or a query parameter is unknown or invalid"
    ),
    "Unauthorized": _error_response("Missing or invalid Bearer token (with AUTH_ENABLED)"),
    "Forbidden": _error_response("The token's role may not do this"),
    "NotFound": _error_response("No such job or schedule (or route)"),
    "Conflict": _error_response(
        "The job's state does not allow this, or the schedule is defined in code"
    ),
    "PayloadTooLarge": _error_response("The body is larger than the limit"),
    "UnsupportedMediaType": _error_response("The body is not sent as application/json"),
    "Unprocessable": _error_response("The JSON is not a valid job (or schedule)"),
    "Unavailable": _error_response("The queue (broker) is unavailable; retry later"),
    "TooManyRequests": {
        **_error_response("Too many attempts or connections; wait Retry-After seconds"),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
    "Internal": _error_response("A bug; the node's log has the details"),
}


def _ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": _ref(schema)}}}}


def _errors(*names: str) -> dict[str, Any]:
    codes = {
        "BadRequest": "400",
        "Unauthorized": "401",
        "Forbidden": "403",
        "NotFound": "404",
        "Conflict": "409",
        "PayloadTooLarge": "413",
        "UnsupportedMediaType": "415",
        "Unprocessable": "422",
        "TooManyRequests": "429",
        "Unavailable": "503",
    }
    out = {codes[n]: {"$ref": f"#/components/responses/{n}"} for n in names}
    out["500"] = {"$ref": "#/components/responses/Internal"}
    return out


def _param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


JOB_ID_PARAM = _param("job_id", "path", STRING, "the job's id")
WORKFLOW_ID_PARAM = _param("workflow_id", "path", STRING, "the workflow's id (its first job's id)")
SCHEDULE_NAME_PARAM = _param("name", "path", STRING, "the schedule's name")
QUEUE_NAME_PARAM = _param("name", "path", STRING, "the queue's name (400 when invalid)")
JSON_BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable")


def _operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) -> operation, without the security part."""
    list_params = [
        _param(
            "status",
            "query",
            STRING,
            "comma-separated statuses (pending,running); repeat the parameter or use commas",
        ),
        _param("type", "query", STRING, "only jobs of this type"),
        _param("queue", "query", STRING, "only jobs of this named queue"),
        _param(
            "limit",
            "query",
            {**INT, "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            "jobs per page",
        ),
        _param("cursor", "query", STRING, "next_cursor of the previous page"),
        _param("created_after", "query", TIME, "only jobs created at or after this time"),
        _param("created_before", "query", TIME, "only jobs created before this time"),
    ]
    return {
        ("/auth/login", "post"): {
            "operationId": "login",
            "tags": ["operations"],
            "summary": "A user name and password for a Bearer token (AUTH_ENABLED=true)",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("Login")}},
            },
            "responses": {
                **_ok("A token", "Token"),
                **_errors(*JSON_BODY_ERRORS, "Unauthorized", "TooManyRequests"),
                "404": {
                    "description": "Authentication is off on this node (code auth_disabled)",
                    "content": {JSON: {"schema": _ref("Error")}},
                },
            },
        },
        ("/api/v1/jobs", "post"): {
            "operationId": "submitJob",
            "tags": ["jobs"],
            "summary": "Submit a job",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("JobSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Accepted (or the existing job with the same idempotency_key)",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": _ref("Job")}},
                },
                **_errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/workflows", "post"): {
            "operationId": "submitWorkflow",
            "tags": ["workflows"],
            "summary": "Submit a chain, group or chord of jobs as one (all or none)",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("WorkflowSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Accepted: the workflow and its jobs",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": _ref("Workflow")}},
                },
                **_errors(
                    *JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/workflows/{workflow_id}", "get"): {
            "operationId": "getWorkflow",
            "tags": ["workflows"],
            "summary": "A workflow's state and every member",
            "parameters": [WORKFLOW_ID_PARAM],
            "responses": {
                **_ok("The workflow", "Workflow"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/workflows/{workflow_id}", "delete"): {
            "operationId": "cancelWorkflow",
            "tags": ["workflows"],
            "summary": "Cancel every member of a workflow that has not ended",
            "parameters": [WORKFLOW_ID_PARAM],
            "responses": {
                **_ok("The workflow after the cancel", "Workflow"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/jobs", "get"): {
            "operationId": "listJobs",
            "tags": ["jobs"],
            "summary": "List jobs, newest first, one page at a time",
            "parameters": list_params,
            "responses": {
                **_ok("A page of jobs", "JobList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/jobs/batch", "post"): {
            "operationId": "submitBatch",
            "tags": ["jobs"],
            "summary": f"Submit up to {MAX_BATCH_JOBS} jobs at once, all or nothing",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("BatchSubmission")}},
            },
            "responses": {
                **_ok("Every job was accepted", "BatchResult", "201"),
                **_errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
                "422": {
                    "description": "Some jobs are invalid (errors lists each); none was accepted",
                    "content": {JSON: {"schema": _ref("BatchError")}},
                },
            },
        },
        ("/api/v1/jobs/{job_id}", "get"): {
            "operationId": "getJob",
            "tags": ["jobs"],
            "summary": "Get a job with its attempts",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                **_ok("The job", "Job"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/jobs/{job_id}", "delete"): {
            "operationId": "cancelJob",
            "tags": ["jobs"],
            "summary": "Cancel a waiting or running job (purge=true also deletes its record)",
            "parameters": [
                JOB_ID_PARAM,
                _param(
                    "purge",
                    "query",
                    {**BOOL, "default": False},
                    "cancel if live, then delete the job entirely",
                ),
            ],
            "responses": {
                "200": {
                    "description": "The cancelled job, or {id, deleted} with purge=true",
                    "content": {JSON: {"schema": {"oneOf": [_ref("Job"), _ref("Deleted")]}}},
                },
                **_errors(
                    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/jobs/{job_id}/retry", "post"): {
            "operationId": "retryJob",
            "tags": ["jobs"],
            "summary": "Run a failed or cancelled job again",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                **_ok("The job, pending again", "Job"),
                **_errors(
                    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/schedules", "get"): {
            "operationId": "listSchedules",
            "tags": ["schedules"],
            "summary": "Periodic jobs, from code and the API, by name, each with its next tick",
            "responses": {
                **_ok("Every schedule", "ScheduleList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/schedules", "post"): {
            "operationId": "putSchedule",
            "tags": ["schedules"],
            "summary": "Create a periodic job, or replace the one with the same name",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("ScheduleSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Saved; the leader picks it up within a few seconds",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": _ref("Schedule")}},
                },
                **_errors(
                    *JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/schedules/{name}", "get"): {
            "operationId": "getSchedule",
            "tags": ["schedules"],
            "summary": "One schedule with its next tick",
            "parameters": [SCHEDULE_NAME_PARAM],
            "responses": {
                **_ok("The schedule", "Schedule"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/schedules/{name}", "delete"): {
            "operationId": "deleteSchedule",
            "tags": ["schedules"],
            "summary": "Delete a schedule made over the API (code schedules cannot be deleted)",
            "parameters": [SCHEDULE_NAME_PARAM],
            "responses": {
                **_ok("Deleted; jobs it already submitted are untouched", "ScheduleDeleted"),
                **_errors(
                    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/queues", "get"): {
            "operationId": "listQueues",
            "tags": ["queues"],
            "summary": "Every queue with pending jobs, paused or rate-limited, and what waits "
            "for a worker that no live node provides",
            "responses": {
                **_ok("Every queue", "QueueList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}", "get"): {
            "operationId": "getQueue",
            "tags": ["queues"],
            "summary": "One queue (an unknown name is an empty, running queue)",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **_ok("The queue", "Queue"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/pause", "post"): {
            "operationId": "pauseQueue",
            "tags": ["queues"],
            "summary": "Pause a queue cluster-wide: no node claims from it until resumed",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **_ok("The queue, paused", "Queue"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/resume", "post"): {
            "operationId": "resumeQueue",
            "tags": ["queues"],
            "summary": "Resume a paused queue",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **_ok("The queue, running", "Queue"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/rate_limit", "put"): {
            "operationId": "setQueueRateLimit",
            "tags": ["queues"],
            "summary": "Allow at most N claims from the queue per interval, cluster-wide",
            "parameters": [QUEUE_NAME_PARAM],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": _ref("RateLimit")}},
            },
            "responses": {
                **_ok("The queue with its limit (a fresh window starts)", "Queue"),
                **_errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/rate_limit", "delete"): {
            "operationId": "clearQueueRateLimit",
            "tags": ["queues"],
            "summary": "Lift a queue's rate limit",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **_ok("The queue, unlimited", "Queue"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/elections", "get"): {
            "operationId": "listElections",
            "tags": ["cluster"],
            "summary": "Leadership history recorded in the Store, newest first",
            "parameters": [
                _param(
                    "limit",
                    "query",
                    {**INT, "minimum": 1, "maximum": MAX_ELECTIONS, "default": DEFAULT_ELECTIONS},
                    "most records to return",
                )
            ],
            "responses": {
                **_ok("Leaderships, newest first", "ElectionHistory"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/stats", "get"): {
            "operationId": "getStats",
            "tags": ["cluster"],
            "summary": "Queue depths, records, workers and counters of this node",
            "responses": {
                **_ok("Statistics", "Stats"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/workers", "get"): {
            "operationId": "listWorkers",
            "tags": ["cluster"],
            "summary": "Workers of the cluster, each with its current job",
            "parameters": [
                _param(
                    "scope",
                    "query",
                    {"type": "string", "enum": ["cluster", "local"], "default": "cluster"},
                    "cluster: every live node's workers (peers asked over HTTP); local: this node",
                )
            ],
            "responses": {
                **_ok("Workers", "WorkerList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/nodes", "get"): {
            "operationId": "listNodes",
            "tags": ["cluster"],
            "summary": "Members of the cluster as this node sees them",
            "responses": {
                **_ok("Members", "NodeList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/leader", "get"): {
            "operationId": "getLeader",
            "tags": ["cluster"],
            "summary": "Who leads, as this node sees it",
            "responses": {
                **_ok("The leader", "Leader"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election", "get"): {
            "operationId": "getElection",
            "tags": ["cluster"],
            "summary": "This node's election state: algorithm, leader, term, epoch",
            "responses": {
                **_ok("Election state", "Election"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election/algorithms", "get"): {
            "operationId": "listAlgorithms",
            "tags": ["cluster"],
            "summary": "The election algorithms, what each is best for, and their settings",
            "responses": {
                **_ok("Algorithms", "AlgorithmList"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election/algorithms/{algorithm}", "get"): {
            "operationId": "getAlgorithm",
            "tags": ["cluster"],
            "summary": "One election algorithm",
            "parameters": [
                _param(
                    "algorithm", "path", {"type": "string", "enum": list(ALGORITHMS)}, "its name"
                )
            ],
            "responses": {
                **_ok("The algorithm", "Algorithm"),
                **_errors("BadRequest", "Unauthorized", "Forbidden", "NotFound"),
            },
        },
        ("/api/v1/cluster", "get"): {
            "operationId": "getCluster",
            "tags": ["cluster"],
            "summary": "This node, the leader, term, epoch, algorithm and members in one view",
            "responses": {
                **_ok("The cluster", "Cluster"),
                **_errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/events", "get"): {
            "operationId": "events",
            "tags": ["operations"],
            "summary": "The live event stream (a websocket: connect with an Upgrade request)",
            "description": (
                "JSON messages with id, kind, at, node and the job or node fields; first a "
                "stream.ready message, a stream.gap message when events after since are no "
                "longer kept. A consumer that falls behind is closed with code 4001. "
                "Browsers pass their token as the token parameter. See docs/observability.md."
            ),
            "parameters": [
                _param("kind", "query", STRING, "event kinds or families, comma-separated"),
                _param("type", "query", STRING, "job types, comma-separated"),
                _param("job_id", "query", STRING, "job ids, comma-separated"),
                _param("node", "query", STRING, "ids of the nodes that emitted, comma-separated"),
                _param("since", "query", STRING, "resume after this event id"),
                _param("token", "query", STRING, "a Bearer token (for browsers)"),
            ],
            "responses": {
                "101": {"description": "Switching to the websocket protocol"},
                **_errors("BadRequest", "TooManyRequests"),
                "503": {"description": "This node keeps no event stream"},
            },
        },
        ("/", "get"): {
            "operationId": "dashboard",
            "tags": ["operations"],
            "summary": "The web dashboard (HTML)",
            "security": [],
            "responses": {
                "200": {"description": "The dashboard page", "content": {"text/html": {}}}
            },
        },
        ("/dashboard/{name}", "get"): {
            "operationId": "dashboardFile",
            "tags": ["operations"],
            "summary": "A file of the dashboard (app.js, style.css)",
            "security": [],
            "parameters": [_param("name", "path", STRING, "the file name")],
            "responses": {"200": {"description": "The file"}, **_errors("NotFound")},
        },
        ("/health", "get"): {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Liveness: 200 while the node runs (status degraded if a backend is down)",
            "responses": {
                **_ok("The node runs", "Health"),
                "503": {
                    "description": "The node is starting or stopping",
                    "content": {JSON: {"schema": _ref("Health")}},
                },
            },
        },
        ("/ready", "get"): {
            "operationId": "ready",
            "tags": ["operations"],
            "summary": "Readiness: 503 naming the backend that is down",
            "responses": {
                **_ok("Ready to take jobs", "Ready"),
                "503": {
                    "description": "Not ready; error names the backend",
                    "content": {JSON: {"schema": _ref("Ready")}},
                },
            },
        },
        ("/openapi.json", "get"): {
            "operationId": "openapi",
            "tags": ["operations"],
            "summary": "This document",
            "responses": {
                "200": {
                    "description": "OpenAPI 3.1",
                    "content": {JSON: {"schema": {"type": "object"}}},
                }
            },
        },
    }


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
    for (path, method), operation in _operations().items():
        op = dict(operation)
        role = roles.get((path, method))
        if role is None:
            op["security"] = []
        else:
            op["x-required-role"] = role
            # with AUTH_ENABLED every protected operation may refuse: say so on each
            op["responses"] = {**_errors("Unauthorized", "Forbidden"), **op["responses"]}
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
            "schemas": _schemas(),
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }
