"""The operations: every route's parameters, request body and responses, and the
shared error responses they refer to.

Without the security part: ``build_spec`` adds each operation's required role
from the ``@require`` on the view itself."""

from __future__ import annotations

from typing import Any

from ..algorithms import ALGORITHMS
from ..cluster import DEFAULT_ELECTIONS, MAX_ELECTIONS
from ..context import MAX_BATCH_JOBS
from ..parsing import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE
from .parts import BOOL, INT, JSON, STRING, TIME, ref


def error_response(description: str, schema: str = "Error") -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": ref(schema)}}}


RESPONSES: dict[str, Any] = {
    "BadRequest": error_response(
        "The body is not JSON, or a query parameter is unknown or invalid"
    ),
    "Unauthorized": error_response("Missing or invalid Bearer token (with AUTH_ENABLED)"),
    "Forbidden": error_response("The token's role may not do this"),
    "NotFound": error_response("No such job or schedule (or route)"),
    "Conflict": error_response(
        "The job's state does not allow this, or the schedule is defined in code"
    ),
    "PayloadTooLarge": error_response("The body is larger than the limit"),
    "UnsupportedMediaType": error_response("The body is not sent as application/json"),
    "Unprocessable": error_response("The JSON is not a valid job (or schedule)"),
    "Unavailable": error_response("The queue (broker) is unavailable; retry later"),
    "TooManyRequests": {
        **error_response("Too many attempts or connections; wait Retry-After seconds"),
        "headers": {"Retry-After": {"schema": {"type": "string"}}},
    },
    "Internal": error_response("A bug; the node's log has the details"),
}


def ok(description: str, schema: str, status: str = "200") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": ref(schema)}}}}


def errors(*names: str) -> dict[str, Any]:
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


def param(name: str, where: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "schema": schema,
        "description": description,
    }


JOB_ID_PARAM = param("job_id", "path", STRING, "the job's id")
WORKFLOW_ID_PARAM = param("workflow_id", "path", STRING, "the workflow's id (its first job's id)")
SCHEDULE_NAME_PARAM = param("name", "path", STRING, "the schedule's name")
QUEUE_NAME_PARAM = param("name", "path", STRING, "the queue's name (400 when invalid)")
JSON_BODY_ERRORS = ("BadRequest", "PayloadTooLarge", "UnsupportedMediaType", "Unprocessable")


def operations() -> dict[tuple[str, str], dict[str, Any]]:
    """(path, method) -> operation, without the security part."""
    list_params = [
        param(
            "status",
            "query",
            STRING,
            "comma-separated statuses (pending,running); repeat the parameter or use commas",
        ),
        param("type", "query", STRING, "only jobs of this type"),
        param("queue", "query", STRING, "only jobs of this named queue"),
        param(
            "limit",
            "query",
            {**INT, "minimum": 1, "maximum": MAX_PAGE_SIZE, "default": DEFAULT_PAGE_SIZE},
            "jobs per page",
        ),
        param("cursor", "query", STRING, "next_cursor of the previous page"),
        param("created_after", "query", TIME, "only jobs created at or after this time"),
        param("created_before", "query", TIME, "only jobs created before this time"),
    ]
    return {
        ("/auth/login", "post"): {
            "operationId": "login",
            "tags": ["operations"],
            "summary": "A user name and password for a Bearer token (AUTH_ENABLED=true)",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("Login")}},
            },
            "responses": {
                **ok("A token", "Token"),
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "TooManyRequests"),
                "404": {
                    "description": "Authentication is off on this node (code auth_disabled)",
                    "content": {JSON: {"schema": ref("Error")}},
                },
            },
        },
        ("/api/v1/jobs", "post"): {
            "operationId": "submitJob",
            "tags": ["jobs"],
            "summary": "Submit a job",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("JobSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Accepted (or the existing job with the same idempotency_key)",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": ref("Job")}},
                },
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/workflows", "post"): {
            "operationId": "submitWorkflow",
            "tags": ["workflows"],
            "summary": "Submit a chain, group or chord of jobs as one (all or none)",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("WorkflowSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Accepted: the workflow and its jobs",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": ref("Workflow")}},
                },
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Conflict", "Unavailable"),
            },
        },
        ("/api/v1/workflows/{workflow_id}", "get"): {
            "operationId": "getWorkflow",
            "tags": ["workflows"],
            "summary": "A workflow's state and every member",
            "parameters": [WORKFLOW_ID_PARAM],
            "responses": {
                **ok("The workflow", "Workflow"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/workflows/{workflow_id}", "delete"): {
            "operationId": "cancelWorkflow",
            "tags": ["workflows"],
            "summary": "Cancel every member of a workflow that has not ended",
            "parameters": [WORKFLOW_ID_PARAM],
            "responses": {
                **ok("The workflow after the cancel", "Workflow"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/jobs", "get"): {
            "operationId": "listJobs",
            "tags": ["jobs"],
            "summary": "List jobs, newest first, one page at a time",
            "parameters": list_params,
            "responses": {
                **ok("A page of jobs", "JobList"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/jobs/batch", "post"): {
            "operationId": "submitBatch",
            "tags": ["jobs"],
            "summary": f"Submit up to {MAX_BATCH_JOBS} jobs at once, all or nothing",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("BatchSubmission")}},
            },
            "responses": {
                **ok("Every job was accepted", "BatchResult", "201"),
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
                "422": {
                    "description": "Some jobs are invalid (errors lists each); none was accepted",
                    "content": {JSON: {"schema": ref("BatchError")}},
                },
            },
        },
        ("/api/v1/jobs/{job_id}", "get"): {
            "operationId": "getJob",
            "tags": ["jobs"],
            "summary": "Get a job with its attempts",
            "parameters": [JOB_ID_PARAM],
            "responses": {
                **ok("The job", "Job"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/jobs/{job_id}", "delete"): {
            "operationId": "cancelJob",
            "tags": ["jobs"],
            "summary": "Cancel a waiting or running job (purge=true also deletes its record)",
            "parameters": [
                JOB_ID_PARAM,
                param(
                    "purge",
                    "query",
                    {**BOOL, "default": False},
                    "cancel if live, then delete the job entirely",
                ),
            ],
            "responses": {
                "200": {
                    "description": "The cancelled job, or {id, deleted} with purge=true",
                    "content": {JSON: {"schema": {"oneOf": [ref("Job"), ref("Deleted")]}}},
                },
                **errors(
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
                **ok("The job, pending again", "Job"),
                **errors(
                    "BadRequest", "Unauthorized", "Forbidden", "NotFound", "Conflict", "Unavailable"
                ),
            },
        },
        ("/api/v1/schedules", "get"): {
            "operationId": "listSchedules",
            "tags": ["schedules"],
            "summary": "Periodic jobs, from code and the API, by name, each with its next tick",
            "responses": {
                **ok("Every schedule", "ScheduleList"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/schedules", "post"): {
            "operationId": "putSchedule",
            "tags": ["schedules"],
            "summary": "Create a periodic job, or replace the one with the same name",
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("ScheduleSubmission")}},
            },
            "responses": {
                "201": {
                    "description": "Saved; the leader picks it up within a few seconds",
                    "headers": {"Location": {"schema": STRING}},
                    "content": {JSON: {"schema": ref("Schedule")}},
                },
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Conflict", "Unavailable"),
            },
        },
        ("/api/v1/schedules/{name}", "get"): {
            "operationId": "getSchedule",
            "tags": ["schedules"],
            "summary": "One schedule with its next tick",
            "parameters": [SCHEDULE_NAME_PARAM],
            "responses": {
                **ok("The schedule", "Schedule"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "NotFound", "Unavailable"),
            },
        },
        ("/api/v1/schedules/{name}", "delete"): {
            "operationId": "deleteSchedule",
            "tags": ["schedules"],
            "summary": "Delete a schedule made over the API (code schedules cannot be deleted)",
            "parameters": [SCHEDULE_NAME_PARAM],
            "responses": {
                **ok("Deleted; jobs it already submitted are untouched", "ScheduleDeleted"),
                **errors(
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
                **ok("Every queue", "QueueList"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}", "get"): {
            "operationId": "getQueue",
            "tags": ["queues"],
            "summary": "One queue (an unknown name is an empty, running queue)",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **ok("The queue", "Queue"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/pause", "post"): {
            "operationId": "pauseQueue",
            "tags": ["queues"],
            "summary": "Pause a queue cluster-wide: no node claims from it until resumed",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **ok("The queue, paused", "Queue"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/resume", "post"): {
            "operationId": "resumeQueue",
            "tags": ["queues"],
            "summary": "Resume a paused queue",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **ok("The queue, running", "Queue"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/rate_limit", "put"): {
            "operationId": "setQueueRateLimit",
            "tags": ["queues"],
            "summary": "Allow at most N claims from the queue per interval, cluster-wide",
            "parameters": [QUEUE_NAME_PARAM],
            "requestBody": {
                "required": True,
                "content": {JSON: {"schema": ref("RateLimit")}},
            },
            "responses": {
                **ok("The queue with its limit (a fresh window starts)", "Queue"),
                **errors(*JSON_BODY_ERRORS, "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/queues/{name}/rate_limit", "delete"): {
            "operationId": "clearQueueRateLimit",
            "tags": ["queues"],
            "summary": "Lift a queue's rate limit",
            "parameters": [QUEUE_NAME_PARAM],
            "responses": {
                **ok("The queue, unlimited", "Queue"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/elections", "get"): {
            "operationId": "listElections",
            "tags": ["cluster"],
            "summary": "Leadership history recorded in the Store, newest first",
            "parameters": [
                param(
                    "limit",
                    "query",
                    {**INT, "minimum": 1, "maximum": MAX_ELECTIONS, "default": DEFAULT_ELECTIONS},
                    "most records to return",
                )
            ],
            "responses": {
                **ok("Leaderships, newest first", "ElectionHistory"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/stats", "get"): {
            "operationId": "getStats",
            "tags": ["cluster"],
            "summary": "Queue depths, records, workers and counters of this node",
            "responses": {
                **ok("Statistics", "Stats"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "Unavailable"),
            },
        },
        ("/api/v1/workers", "get"): {
            "operationId": "listWorkers",
            "tags": ["cluster"],
            "summary": "Workers of the cluster, each with its current job",
            "parameters": [
                param(
                    "scope",
                    "query",
                    {"type": "string", "enum": ["cluster", "local"], "default": "cluster"},
                    "cluster: every live node's workers (peers asked over HTTP); local: this node",
                )
            ],
            "responses": {
                **ok("Workers", "WorkerList"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/nodes", "get"): {
            "operationId": "listNodes",
            "tags": ["cluster"],
            "summary": "Members of the cluster as this node sees them",
            "responses": {
                **ok("Members", "NodeList"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/leader", "get"): {
            "operationId": "getLeader",
            "tags": ["cluster"],
            "summary": "Who leads, as this node sees it",
            "responses": {
                **ok("The leader", "Leader"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election", "get"): {
            "operationId": "getElection",
            "tags": ["cluster"],
            "summary": "This node's election state: algorithm, leader, term, epoch",
            "responses": {
                **ok("Election state", "Election"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election/algorithms", "get"): {
            "operationId": "listAlgorithms",
            "tags": ["cluster"],
            "summary": "The election algorithms, what each is best for, and their settings",
            "responses": {
                **ok("Algorithms", "AlgorithmList"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
            },
        },
        ("/api/v1/election/algorithms/{algorithm}", "get"): {
            "operationId": "getAlgorithm",
            "tags": ["cluster"],
            "summary": "One election algorithm",
            "parameters": [
                param("algorithm", "path", {"type": "string", "enum": list(ALGORITHMS)}, "its name")
            ],
            "responses": {
                **ok("The algorithm", "Algorithm"),
                **errors("BadRequest", "Unauthorized", "Forbidden", "NotFound"),
            },
        },
        ("/api/v1/cluster", "get"): {
            "operationId": "getCluster",
            "tags": ["cluster"],
            "summary": "This node, the leader, term, epoch, algorithm and members in one view",
            "responses": {
                **ok("The cluster", "Cluster"),
                **errors("BadRequest", "Unauthorized", "Forbidden"),
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
                param("kind", "query", STRING, "event kinds or families, comma-separated"),
                param("type", "query", STRING, "job types, comma-separated"),
                param("job_id", "query", STRING, "job ids, comma-separated"),
                param("node", "query", STRING, "ids of the nodes that emitted, comma-separated"),
                param("since", "query", STRING, "resume after this event id"),
                param("token", "query", STRING, "a Bearer token (for browsers)"),
            ],
            "responses": {
                "101": {"description": "Switching to the websocket protocol"},
                **errors("BadRequest", "TooManyRequests"),
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
            "parameters": [param("name", "path", STRING, "the file name")],
            "responses": {"200": {"description": "The file"}, **errors("NotFound")},
        },
        ("/health", "get"): {
            "operationId": "health",
            "tags": ["operations"],
            "summary": "Liveness: 200 while the node runs (status degraded if a backend is down)",
            "responses": {
                **ok("The node runs", "Health"),
                "503": {
                    "description": "The node is starting or stopping",
                    "content": {JSON: {"schema": ref("Health")}},
                },
            },
        },
        ("/ready", "get"): {
            "operationId": "ready",
            "tags": ["operations"],
            "summary": "Readiness: 503 naming the backend that is down",
            "responses": {
                **ok("Ready to take jobs", "Ready"),
                "503": {
                    "description": "Not ready; error names the backend",
                    "content": {JSON: {"schema": ref("Ready")}},
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
