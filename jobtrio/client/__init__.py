"""Python clients for a jobtrio node: ``Client`` (blocking) and ``AsyncClient``.

    from jobtrio.client import Client

    with Client("http://127.0.0.1:8080") as jobs:
        job = jobs.submit("email", {"recipient": "user@example.com"}, priority=10)
        done = jobs.wait(job.id, timeout=30)
        print(done.status, done.result)

``AsyncClient`` has the same methods, awaited, and runs under trio (or
asyncio: it only uses httpx and anyio). Periodic jobs are managed with
``schedules``, ``get_schedule``, ``add_schedule`` and ``delete_schedule``;
``elections`` reads the cluster's leadership history. Both read ``JOBTRIO_URL`` and
``JOBTRIO_TOKEN`` when no URL or token is given, like the CLI, so a script
works against whatever node the shell points at.

Results are typed: jobs come back as :class:`jobtrio.jobs.Job` (the same
dataclass the node uses; times are Unix seconds), pages as :class:`JobPage`;
schedules and the cluster views come back as the API's JSON objects (dicts,
times as ISO 8601 strings).
Failures raise one family of exceptions, all :class:`JobtrioError` with the
API's ``status``, ``code`` and ``field``, so a caller can catch broadly or
precisely: ``NotFound``, ``Conflict``, ``InvalidJob`` (422, with ``errors``
per batch item), ``InvalidRequest`` (400/413/415), ``AuthenticationFailed``,
``PermissionDenied``, ``Unavailable`` (503), ``ServerError``,
``ConnectionFailed`` (no HTTP answer at all) and ``WaitTimeout`` (also a
``TimeoutError``).

Both classes are thin: each method describes its request with a ``Call``
(``calls``) and hands the answer to the same readers (``answers``), so the
two cannot drift apart. The package holds one concept a module: ``errors``
(the exceptions), ``calls`` (the requests), ``answers`` (reading what comes
back), ``endpoint`` (URL, token, headers, TLS), ``waiting`` and
``event_follow`` (what ``wait_many`` and ``events`` keep track of, without
the I/O), ``sync_client`` and ``async_client``. Import from
``jobtrio.client`` itself: the modules are its inside, and may move.
"""

from __future__ import annotations

from ..jobs import Job
from .answers import JobPage, Workflow
from .async_client import AsyncClient
from .calls import MAX_BATCH, Time, job_submission, schedule_submission
from .endpoint import DEFAULT_TIMEOUT, DEFAULT_URL, USER_AGENT, ca_file_context, node_url
from .errors import (
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    InvalidJob,
    InvalidRequest,
    JobtrioError,
    NotFound,
    PermissionDenied,
    ServerError,
    Unavailable,
    WaitTimeout,
    error_from_response,
)
from .event_follow import EVENTS_PATH
from .sync_client import Client
from .waiting import TERMINAL

__all__ = [
    "DEFAULT_TIMEOUT",
    "DEFAULT_URL",
    "EVENTS_PATH",
    "MAX_BATCH",
    "TERMINAL",
    "USER_AGENT",
    "AsyncClient",
    "AuthenticationFailed",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "InvalidJob",
    "InvalidRequest",
    "Job",
    "JobPage",
    "JobtrioError",
    "NotFound",
    "PermissionDenied",
    "ServerError",
    "Time",
    "Unavailable",
    "WaitTimeout",
    "Workflow",
    "ca_file_context",
    "error_from_response",
    "job_submission",
    "node_url",
    "schedule_submission",
]
