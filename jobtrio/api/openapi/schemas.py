"""The components' schemas: a job, its submission, a page, a workflow, a schedule,
the cluster's views and the error shape.

Their limits (priority range, lengths, page sizes) are read from the modules
that enforce them, so the description cannot drift from the validation."""

from __future__ import annotations

from typing import Any

from ...jobs import MAX_DURATION, MAX_PRIORITY, MAX_TIMESTAMP, MIN_PRIORITY
from ...schedules import DEFAULT_MISFIRE_GRACE, NAME_PATTERN
from ...submission import (
    MAX_DEPENDENCIES,
    MAX_IDEMPOTENCY_KEY_LENGTH,
    MAX_QUEUE_LENGTH,
    MAX_TYPE_LENGTH,
)
from ..algorithms import ALGORITHMS
from ..context import MAX_BATCH_JOBS
from .parts import BOOL, INT, JOB_ID, NUMBER, STATUS, STRING, TIME, nullable, obj, ref


def submission_properties() -> dict[str, Any]:
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


def schemas() -> dict[str, Any]:
    error_detail = obj(
        {
            "code": {**STRING, "description": "stable machine word to branch on"},
            "message": {**STRING, "description": "a sentence for humans; may change"},
            "field": {**nullable(STRING), "description": "the field or parameter at fault"},
        }
    )
    batch_item_error = obj(
        {
            "index": {**INT, "minimum": 0, "description": "position of the job in the batch"},
            "field": nullable(STRING),
            "code": STRING,
            "message": STRING,
        }
    )
    backend = obj(
        {
            "name": {**STRING, "description": "implementation: sqlite, redis, mongodb, memory"},
            "kind": {"type": "string", "enum": ["broker", "store"]},
            "healthy": BOOL,
            "error": nullable(STRING),
        }
    )
    member = obj(
        {
            "node_id": STRING,
            "state": {**STRING, "description": "alive, suspect, dead or left"},
            "address": nullable(STRING),
            "api_url": nullable(STRING),
            "worker_count": nullable(INT),
            "incarnation": {**INT, "description": "SWIM incarnation number"},
            "last_contact": {
                **nullable(TIME),
                "description": "when this node last heard from the member",
            },
            "last_contact_seconds_ago": {
                **nullable(NUMBER),
                "description": "seconds since this node last heard from the member",
            },
            "is_leader": BOOL,
            "self": BOOL,
        },
        required=["node_id", "state"],
    )
    submission = submission_properties()
    # a schedule's job gets its idempotency key from the tick and runs when due
    template = {k: v for k, v in submission.items() if k not in ("scheduled_at", "idempotency_key")}
    return {
        "Error": obj({"error": ref("ErrorDetail")}),
        "ErrorDetail": error_detail,
        "BatchError": obj(
            {
                "error": ref("ErrorDetail"),
                "errors": {
                    "type": "array",
                    "items": batch_item_error,
                    "description": "one item per invalid job (absent when the batch itself is)",
                },
            },
            required=["error"],
        ),
        "Attempt": obj(
            {
                "number": INT,
                "node_id": STRING,
                "worker_id": nullable(STRING),
                "started_at": TIME,
                "ended_at": nullable(TIME),
                "outcome": {
                    **nullable(STRING),
                    "description": "completed, failed, timeout, cancelled, lost or released",
                },
                "error": nullable(STRING),
            }
        ),
        "Job": obj(
            {
                "id": JOB_ID,
                "type": STRING,
                "priority": {**INT, "minimum": MIN_PRIORITY, "maximum": MAX_PRIORITY},
                "payload": {"type": "object"},
                "status": STATUS,
                "created_at": TIME,
                "updated_at": TIME,
                "scheduled_at": nullable(TIME),
                "started_at": nullable(TIME),
                "completed_at": nullable(TIME),
                "retry_count": {**INT, "minimum": 0},
                "max_retries": {**INT, "minimum": 0},
                "timeout": {**nullable(NUMBER), "description": "seconds an attempt may run"},
                "result": {"description": "what the processor returned (any JSON)"},
                "error": nullable(STRING),
                "node_id": nullable(STRING),
                "worker_id": nullable(STRING),
                "attempts": {"type": "array", "items": ref("Attempt")},
                "idempotency_key": nullable(STRING),
                "lease_expirations": {**INT, "minimum": 0},
                "progress": nullable(
                    {
                        "type": "object",
                        "description": "the latest progress report of a running attempt",
                        "properties": {
                            "fraction": {**NUMBER, "minimum": 0, "maximum": 1},
                            "message": nullable({**STRING, "maxLength": 200}),
                            "at": NUMBER,
                            "attempt": {**INT, "minimum": 1},
                        },
                    }
                ),
                "depends_on": {"type": "array", "items": JOB_ID},
                "on_dependency_failure": nullable(STRING),
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
                    **nullable({"type": "object"}),
                    "description": "dependency id -> its result, when receive_results",
                },
                "workflow_id": {**nullable(STRING), "description": "its workflow's id"},
                "workflow": {
                    **nullable({"type": "object"}),
                    "description": "on a workflow's first job: its kind and members",
                },
                "version": {**INT, "minimum": 0},
                "owner": {
                    **nullable(STRING),
                    "description": "the user who submitted it (null without auth)",
                },
                "queue": {**STRING, "description": "the named queue the job waits in"},
            }
        ),
        "JobSubmission": obj(submission, required=["type"], extra=False),
        "ScheduledJob": obj(template, required=["type"], extra=False),
        "ScheduleSubmission": {
            **obj(
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
                    "job": ref("ScheduledJob"),
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
        "Schedule": obj(
            {
                "name": STRING,
                "cron": nullable(STRING),
                "every": {**nullable(NUMBER), "description": "interval in seconds"},
                "job": ref("ScheduledJob"),
                "enabled": BOOL,
                "misfire_grace": {**NUMBER, "description": "seconds"},
                "source": {
                    "type": "string",
                    "enum": ["api", "code"],
                    "description": "code: registered by the deployment, read-only over HTTP",
                },
                "next_tick": {
                    **nullable(TIME),
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
        "Login": obj(
            {
                "username": {"type": "string", "minLength": 1},
                "password": {"type": "string", "minLength": 1},
            },
            extra=False,
        ),
        "Token": obj(
            {
                "token": {**STRING, "description": "send as Authorization: Bearer <token>"},
                "role": {"type": "string", "enum": ["admin", "user", "worker"]},
                "expires_at": TIME,
            }
        ),
        "ScheduleList": obj(
            {"schedules": {"type": "array", "items": ref("Schedule")}, "count": INT}
        ),
        "Unserved": obj(
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
        "Queue": obj(
            {
                "name": STRING,
                "pending": {**INT, "description": "jobs due and waiting for a worker"},
                "pending_by_type": {"type": "object", "additionalProperties": INT},
                "paused": BOOL,
                "rate_limit": nullable(
                    obj(
                        {"jobs": INT, "per_seconds": NUMBER},
                    )
                ),
                "nodes": {
                    "type": "array",
                    "items": STRING,
                    "description": "live nodes whose QUEUES include this queue",
                },
                "unserved": {"type": "array", "items": ref("Unserved")},
            }
        ),
        "QueueList": obj(
            {
                "queues": {"type": "array", "items": ref("Queue")},
                "count": INT,
                "unserved": {"type": "array", "items": ref("Unserved")},
            }
        ),
        "RateLimit": obj(
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
        "ScheduleDeleted": obj({"name": STRING, "deleted": {"type": "boolean", "const": True}}),
        "ElectionRecord": obj(
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
        "ElectionHistory": obj(
            {"elections": {"type": "array", "items": ref("ElectionRecord")}, "count": INT}
        ),
        "BatchSubmission": obj(
            {
                "jobs": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_BATCH_JOBS,
                    "items": ref("JobSubmission"),
                }
            },
            extra=False,
        ),
        "BatchResult": obj({"jobs": {"type": "array", "items": ref("Job")}, "count": INT}),
        "JobList": obj(
            {
                "jobs": {"type": "array", "items": ref("Job")},
                "next_cursor": {
                    **nullable(STRING),
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
        "Workflow": obj(
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
                "jobs": {"type": "array", "items": ref("Job")},
            }
        ),
        "Deleted": obj({"id": STRING, "deleted": {"type": "boolean", "const": True}}),
        "Stats": obj(
            {
                "node_id": STRING,
                "queue": {
                    "type": "object",
                    "additionalProperties": INT,
                    "description": "jobs held by the broker per status",
                },
                "records": {
                    **nullable({"type": "object"}),
                    "additionalProperties": INT,
                    "description": "job records per status (null while the store is down)",
                },
                "workers": obj({"total": INT, "busy": INT, "idle": INT}),
                "in_flight": INT,
                "claimed": INT,
                "finished": INT,
                "store_backlog": INT,
                "leader": nullable(STRING),
                "is_leader": BOOL,
                "uptime_seconds": nullable(NUMBER),
                "strategy": STRING,
                "processors": {"type": "array", "items": STRING},
                "queues": {
                    "type": "object",
                    "additionalProperties": obj({"pending": INT, "paused": BOOL}),
                    "description": "every queue the broker knows",
                },
                "unserved": {
                    "type": "array",
                    "items": ref("Unserved"),
                    "description": "pending (queue, type) pairs no live node can take",
                },
            },
            required=["node_id", "queue", "workers", "leader"],
        ),
        "Worker": obj(
            {
                "id": STRING,
                "node_id": STRING,
                "status": {
                    "type": "string",
                    "enum": ["idle", "busy", "unreachable"],
                    "description": "unreachable: the worker's node did not answer (see error)",
                },
                "error": STRING,
                "current_job": nullable(STRING),
                "current_job_type": nullable(STRING),
                "running_for": nullable(NUMBER),
                "jobs_done": INT,
                "busy_seconds": NUMBER,
            },
            required=["id", "node_id", "status"],
        ),
        "WorkerList": obj({"workers": {"type": "array", "items": ref("Worker")}, "count": INT}),
        "Member": member,
        "NodeList": obj({"nodes": {"type": "array", "items": ref("Member")}, "count": INT}),
        "Leader": obj(
            {
                "leader": nullable(STRING),
                "leader_url": nullable(STRING),
                "is_self": BOOL,
                "node_id": STRING,
                "algorithm": STRING,
                "term": INT,
                "since": nullable(TIME),
            }
        ),
        "Election": obj(
            {
                "algorithm": {"type": "string", "enum": list(ALGORITHMS)},
                "leader": nullable(STRING),
                "term": INT,
                "epoch": {
                    **nullable(INT),
                    "description": "fencing epoch, only while this node leads",
                },
                "fencing_epoch": {
                    **nullable(INT),
                    "description": "the Broker's newest fencing epoch, the same on every node "
                    "(null while the Broker is unreachable)",
                },
                "is_leader": BOOL,
                "since": nullable(TIME),
                "changes": INT,
                "election_timeout": {**NUMBER, "description": "seconds"},
                "election_interval": {**NUMBER, "description": "seconds"},
            },
            required=["algorithm", "leader", "term", "epoch", "is_leader"],
        ),
        "Algorithm": obj(
            {
                "name": {"type": "string", "enum": list(ALGORITHMS)},
                "summary": STRING,
                "best_for": STRING,
                "recommended_cluster_size": obj({"min": INT, "max": nullable(INT)}),
                "properties": {"type": "object"},
                "settings": {"type": "object", "additionalProperties": STRING},
                "example": {"type": "object", "additionalProperties": STRING},
                "current": {**BOOL, "description": "whether this node runs it"},
            }
        ),
        "AlgorithmList": obj(
            {"algorithms": {"type": "array", "items": ref("Algorithm")}, "current": STRING}
        ),
        "Cluster": obj(
            {
                "node_id": STRING,
                "leader": nullable(STRING),
                "leader_url": nullable(STRING),
                "is_leader": BOOL,
                "term": INT,
                "epoch": nullable(INT),
                "fencing_epoch": nullable(INT),
                "algorithm": STRING,
                "since": nullable(TIME),
                "storage": STRING,
                "size": INT,
                "alive": INT,
                "members": {"type": "array", "items": ref("Member")},
            }
        ),
        "BackendHealth": backend,
        "Health": obj(
            {
                "status": {"type": "string", "enum": ["ok", "degraded", "starting", "stopping"]},
                "node_id": STRING,
                "version": STRING,
                "leader": nullable(STRING),
                "is_leader": BOOL,
                "uptime_seconds": nullable(NUMBER),
                "storage": STRING,
                "backends": {"type": "array", "items": ref("BackendHealth")},
            }
        ),
        "Ready": obj(
            {
                "ready": BOOL,
                "node_id": STRING,
                "backends": {"type": "array", "items": ref("BackendHealth")},
                "error": {
                    **ref("ErrorDetail"),
                    "description": "present when not ready; field names the backend kind",
                },
            },
            required=["ready", "node_id", "backends"],
        ),
    }
