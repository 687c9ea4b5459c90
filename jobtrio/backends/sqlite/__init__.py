"""The embedded default backend: Broker and Store on one SQLite file (stdlib ``sqlite3``).

A node with no Redis or MongoDB configured opens ``SqliteBroker`` and
``SqliteStore`` on the same file (``SQLITE_PATH``, ``./jobtrio.db``), so
``jobtrio serve`` needs nothing installed. The two keep separate tables
(``queue``, ``broker_meta``, ``ticks``, ``tombstones``, ``queue_settings`` for
the Broker; ``jobs``, ``nodes``, ``elections``, ``schedules`` for the Store)
and separate connections, so either may also live in a file of its own.

Durability: the file runs in WAL mode with ``synchronous=NORMAL``. A commit
is then durable against the death of the process (a crash, ``kill -9``):
the WAL frames are in the operating system's hands before the call returns.
It is *not* durable against a power loss or an operating-system crash, which
may roll back the last transactions (the file stays consistent). That is the
guarantee we claim for the embedded backend; a deployment that needs more
runs Redis with AOF.

The package:

- ``database.py``: the connection, and running a read or a ``BEGIN IMMEDIATE``
  transaction on it in a worker thread (one call at a time; never abandoned
  on cancellation); which errors are an outage;
- ``schema.py``: the tables, declared once, and what a file from before
  named queues gains when the Broker opens it;
- ``broker.py``: ``SqliteBroker``, whose every method is one transaction
  body run by ``Database``: ``enqueue.py`` (filing new jobs), ``claim.py``,
  ``leased.py`` (renew, finish, progress), ``operators.py`` (cancel, retry,
  delete), ``leader.py`` (promotions, expired leases, retention, restore),
  ``ticks.py`` (periodic ticks), ``queue_settings.py`` (pause, rate limits);
  what they share: ``placement.py`` (a job's row: the indexed columns beside
  its document), ``counters.py`` (the FIFO sequence and the fencing epoch, in
  the file) and ``dependents.py`` (releasing and attaching dependents inside
  the move);
- ``store.py``: ``SqliteStore``, the records.
"""

from .broker import SqliteBroker
from .claim import claim_select as _claim_select  # tests/test_sqlite_backend.py reads its plan
from .database import DEFAULT_BUSY_TIMEOUT, default_path
from .store import SqliteStore
from .ticks import TICKS_KEPT

__all__ = [
    "DEFAULT_BUSY_TIMEOUT",
    "TICKS_KEPT",
    "SqliteBroker",
    "SqliteStore",
    "_claim_select",
    "default_path",
]
