"""Redis Broker and Store: the production queue, and a record for clusters without MongoDB.

The package: ``broker.py`` (the queue) and ``store.py`` (the records) are thin
callers of the Lua scripts in ``lua/`` (loaded by ``scripts.py``);
``layout.py`` declares a job's fields in Redis once and generates the
scripts' constants and the codec's functions from it; ``codec.py`` writes a
job for the scripts and reads their replies (``RawJob``, ``LazyJob``);
``wire.py`` is the connection; ``events.py`` the event stream's Redis Stream.

redis-py for connecting and for everything but scripts: its sync client is
called through ``trio.to_thread.run_sync`` with one ``trio.CapacityLimiter``
per connection (8 calls at once by default) in front of a ``ConnectionPool``.
Scripts, which are every Broker move and every Store write, run over
the wire's own non-blocking sockets when that pool is plain TCP (``wire.py``:
concurrent calls share one connection, pipelined; a call costs 17-21 us of
the process's CPU with 10 callers, about 50 with one, against 250-300 through a
thread; ``bench/bench_wire.py``). Either way a call is a round trip, so the hot
path is batched: one script claims n jobs, one finishes or renews many.

One script per move. Every change touching more than one key is a single Lua
script (a Redis Functions library called with FCALL on Redis >= 7.0, else
EVALSHA; either loaded again once after a restart or a flush empties Redis's
cache, see ``scripts.py``), so Redis applies it whole and a crash never leaves
a job half moved. Every key starts with the hash tag ``{prefix}``, which puts
them all in one Cluster slot. The scripts build per-job key names from
``KEYS[1]`` (BullMQ does the same), which is allowed because the hash tag
keeps every name in the slot the script was routed to.

Floats and JSON stay exact because Lua never parses or re-encodes JSON.
Redis' cjson writes numbers with ``%.14g`` (its ``encode_number_precision``
refuses more than 14), so 1700000000.123456 would come back as 1700000000.1235.
It also turns ``[]`` into ``{}``, loses integers above 2**53 and reorders
object keys. So a broker job is kept as JSON *fragments*, each written by
Python's ``json`` (or copied from an argument Python encoded) and only ever
cut and concatenated by Lua. The job hash ``P job:<id>`` has these fields:

``b``  the immutable body (``layout.BODY``'s fields)
``k``  the idempotency key as JSON text, when the job has one
``m``  the mutable values joined by 0x1f (``layout.VALUES``)
``t``, ``c``  the type (raw) and ``created_at`` text, for the job's record
``q``  the Broker holds the job: 'r' where it keeps the records, else '1'
(see records below)

A record's status and version are the ones ``m`` holds: the ``v`` and ``s``
earlier versions wrote beside it are neither written nor read
(``layout.RETIRED_FIELDS``).

A move reads three fields, cuts ``m`` with one ``string.match``, and writes
``m`` back with one ``table.concat``: measured here, a 20-field HMGET alone
cost more than the rest of a claim. Times a script writes are the caller's
``now`` (or ``retry_at``, or the lease expiry) sent as ``repr(float)`` text:
the shortest text that parses back to the same double, so they round-trip
bit for bit. Scores are always passed to ZADD/ZRANGEBYSCORE as those texts
(Redis parses them with ``strtod``), never as Lua numbers, which
``redis.call`` would format with ``%.14g``. Claim and finish return ``b``
and ``m`` and Python builds the ``Job.dumps()``-shaped document (client CPU
scales out with nodes, the server's does not); the colder scripts return the
document concatenated in Lua. Arguments and replies of the hot scripts carry
many values joined by 0x1f, and records by 0x1e, which JSON text never holds
raw: redis-py packs and parses each argument in pure Python (~0.7 us each).
A reply's job is a ``codec.RawJob`` (``b`` and the values of ``m``, its
header readable without parsing); ``RawJob.job()`` is where it is parsed
(claims and reads). Enqueue and finish hand back a ``codec.LazyJob``: a
``Job`` made from a ``RawJob`` that parses it the first time more than its
header (id, type, status, version) is used, so a finished job reaches the
metrics, and its Store record where the recorder copies it, without being
parsed and encoded again (~18 us a job).

Broker keys (``P`` = ``{prefix}:``): ``P job:<id>`` the job; ``P pending``
zset scored ``(10 - priority) * 2**42 + seq`` (strict priority, then FIFO;
``seq`` from ``INCRBY P seq``); ``P delayed`` zset by run-at (scheduled and
retrying); ``P leases`` zset by expiry with ``P tokens`` hash id -> token;
``P finished`` zset by end time (for retention); ``P idem`` hash key -> id;
``P counts`` hash status -> jobs (depths without a scan); ``P epoch``;
``P tick:<name>`` zset and ``P tickfloor`` hash (cron ticks claimed).

Store keys: ``P job:<id>`` hash {b, m (as in a job hash: status and version
too), t: type, c: created_at text}; zsets of ids with score 0 read with
ZREVRANGEBYLEX for newest-first paging (ids are ULIDs): ``P rec-st:<status>``
(their union is every record: no index of all records is kept),
``P rec-ty:<type>``; ``P rec-created`` by created_at (the records whose id does not
tell it: ``layout.ID_ALPHABET``);
``P nodes`` hash; ``P elections`` capped list; ``P schedules`` hash name -> JSON.
One key per job: the Broker's job hash and the Store's record are the same
``P job:<id>``, so a Store shares a prefix only with a Broker that keeps the
records (below); a Store write into a hash a Broker without them holds is
refused with an error saying so.

Records kept by the Broker (``RedisBroker(records=True)``, what
``open_backends`` builds for Redis without MongoDB): the job hash is the
record; the Broker files the record under its new status in the same script
as it writes ``m``, so a move costs the record nothing but two index
updates. The Store then only reads, and its put leaves
a hash marked ``q`` alone (the Broker's copy is never older than one it
handed out). When the Broker lets go of a job (retention, delete) it drops
``q`` (and ``k``) and the record stays. Measured here (bench/bench_redis.py,
preloaded drain, median of 3): 12,074 jobs/s with the recorder's Store
writes, 22,780 with the records kept by the Broker; a record written beside
the job in the same scripts instead cost 5.5 us more Redis time per move.

Failures and the connection: see ``wire.py``.
"""

from .broker import RedisBroker
from .store import RedisStore
from .wire import RedisConnection

__all__ = ["RedisBroker", "RedisConnection", "RedisStore"]
