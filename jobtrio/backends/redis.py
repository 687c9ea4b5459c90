"""Redis Broker and Store: the production queue, and a record for clusters without MongoDB.

redis-py for connecting and for everything but scripts: its sync client is
called through ``trio.to_thread.run_sync`` with one ``trio.CapacityLimiter``
per connection (8 calls at once by default) in front of a ``ConnectionPool``.
Scripts, which are every Broker move and every Store write, run over
connections of trio's own when that pool is plain TCP (``_Wire``: a call costs
70-90 us of CPU there, 250-300 us through a thread). Either way a call is a
round trip, so the hot path is batched: one script claims n jobs, one
finishes or renews many.

One script per move. Every change touching more than one key is a single Lua
script (``register_script``; EVALSHA, loaded again once after a restart
empties the script cache), so Redis applies it whole and a crash never leaves
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
cut and concatenated by Lua. The job hash ``P j:<id>`` has these fields:

``b``  the immutable body, ``"id":..,"type":..,"priority":..,"payload":..,
       "created_at":..,"max_retries":..,"timeout":..,"idempotency_key":..``
``k``  the idempotency key as JSON text, when the job has one
``m``  the mutable values joined by 0x1f: status (a bare word), priority,
       key, then each time, count and text as JSON (``null`` included), the
       closed attempts as a JSON array text, and the open attempt's
       ``number,"node"``, worker and start ('' when there is none)
``t``, ``c``  the type (raw) and ``created_at`` text, for the job's record
``q``  '1': the Broker holds the job (see records below)

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
Enqueue and finish hand back a ``_StoredJob``: the raw values with the header
(id, type, status, version) set and nothing parsed until another field is
read, so a finished job reaches the metrics, and its Store record where the
recorder copies it, without being parsed and encoded again (~18 us a job).

Broker keys (``P`` = ``{prefix}:``): ``P j:<id>`` the job; ``P pending``
zset scored ``(10 - priority) * 2**42 + seq`` (strict priority, then FIFO;
``seq`` from ``INCRBY P seq``); ``P delayed`` zset by run-at (scheduled and
retrying); ``P leases`` zset by expiry with ``P tokens`` hash id -> token;
``P finished`` zset by end time (for retention); ``P idem`` hash key -> id;
``P counts`` hash status -> jobs (depths without a scan); ``P epoch``;
``P tick:<name>`` zset and ``P tickfloor`` hash (cron ticks claimed).

Store keys: ``P rec:<id>`` hash {b, m (as in a job hash), v: version,
s: status, t: type, c: created_at text}; zsets of ids with score 0 read with
ZREVRANGEBYLEX for newest-first paging (ids are ULIDs): ``P rec-all``,
``P rec-st:<status>``, ``P rec-ty:<type>``; ``P rec-created`` by created_at;
``P nodes`` hash; ``P elections`` capped list; ``P schedules`` hash name -> JSON.
Broker and Store may share one prefix: their key names never overlap.

Records kept by the Broker (``RedisBroker(records=True)``, what
``open_backends`` builds for Redis without MongoDB): the Broker keeps each
job *in its record*, ``P rec:<id>`` in place of ``P j:<id>``, writes ``v``
and ``s`` with every ``m`` and files the record under its new status in the
same script, so a move costs the record nothing but two index updates. The
Store then only reads, and its put leaves a hash marked ``q`` alone (the
Broker's copy is never older than one it handed out). When the Broker lets
go of a job (retention, delete) it drops ``q`` (and ``k``) and the record
stays. Measured here (bench/bench_redis.py, preloaded drain, median of 3):
12,074 jobs/s with the recorder's Store writes, 22,780 with the records kept
by the Broker; a record written beside the job in the same scripts instead
cost 5.5 us more Redis time per move.

Failures: connection errors and timeouts become ``BackendUnavailable``.
redis-py's automatic retries are switched off: re-sending a claim or a finish
whose reply was lost would claim twice or report a done job as a stale token.
The pool checks a connection when handing it out (a socket the restarted
server closed is replaced), so the first call after Redis returns succeeds
and nothing needs restarting.
"""

from __future__ import annotations

import dataclasses
import json
import math
import operator
import socket
from collections.abc import Callable, Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Self, TypeVar

import hiredis
import redis
import redis.exceptions
import trio
from redis._parsers import BaseParser
from redis.backoff import NoBackoff
from redis.exceptions import ClusterDownError, MasterDownError, TryAgainError
from redis.retry import Retry
from redis.sentinel import Sentinel

from ..jobs import Attempt, Job, JobStatus, new_token
from . import transitions
from .base import (
    BackendUnavailable,
    Broker,
    FencedError,
    Finish,
    JobQuery,
    Lease,
    NodeRecord,
    Page,
    StateConflict,
    Store,
)

if TYPE_CHECKING:
    from ..config import Settings

T = TypeVar("T")

DEFAULT_POOL_SIZE = 8
DEFAULT_SOCKET_TIMEOUT = 5.0
DEFAULT_CONNECT_TIMEOUT = 2.0
#: Seconds a pooled connection may idle before it is PINGed prior to use; catches
#: connections a failover or a NAT silently cut.
HEALTH_CHECK_INTERVAL = 15
#: Newest election records kept in the Store.
ELECTIONS_KEPT = 1000
#: Cron ticks remembered per name; older ones are refused by a floor instead.
TICKS_KEPT = 1000
#: Store records per put_many script, so one huge batch cannot stall Redis.
PUT_CHUNK = 500
#: Ids one query script may examine before handing back to Python (keeps Redis responsive).
QUERY_BUDGET = 2000

_FINISH_OUTCOMES = frozenset({"completed", "failed", "timeout", "released"})
#: Joins many values into one script argument or reply: redis-py packs and parses
#: arguments in pure Python (~0.7 us each), so 1000 jobs x 21 fields cost 14 ms as
#: separate arguments and under 1 ms joined. JSON text never holds a raw 0x1f.
_SEP = "\x1f"
_BSEP = b"\x1f"
#: Between the records of a reply whose records contain ``_SEP`` (JSON never holds it raw).
_RS = "\x1e"

# --------------------------------------------------------------------------- Lua

#: What every script that reads jobs or records starts with: the key prefix, and how many
#: values a job's ``m`` holds (``_job_fields`` writes them).
_LUA_PRELUDE = """\
local P = KEYS[1]
local NF = 19
"""

_LUA_RECORDS = r"""
-- Store records (the RedisStore's ``P rec:<id>``): a job's b and m (as in a job hash)
-- with v (version), s (status), t (type) and c (created_at text) beside them for the
-- indexes and the version guard. The Store's put script writes them; a Broker keeping the
-- records itself (RECORD) keeps its jobs in these very hashes, marked q while it holds
-- them, and files them under their status as it moves them. Index changes are queued and
-- applied with one ZADD or ZREM per index by records_flush(): one redis.call per index
-- and record cost more than the record's own HMGET and HSET. A record repeating an id
-- applies the queue first, so the moves of one id keep their order.
local R = {add = {}, rem = {}, seen = {}}

local function rq(t, key, a, b)
  local l = t[key]
  if not l then
    l = {}
    t[key] = l
  end
  l[#l + 1] = a
  if b then l[#l + 1] = b end
end

local function records_flush()
  for key, l in pairs(R.rem) do
    for i = 1, #l, 1000 do redis.call('ZREM', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  for key, l in pairs(R.add) do
    for i = 1, #l, 1000 do redis.call('ZADD', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  R.add, R.rem, R.seen = {}, {}, {}
end

local function rkey(kind, name) return P .. kind .. name end

-- Moves a record between status indexes (queued).
local function refile(id, old, new)
  if R.seen[id] then records_flush() end
  R.seen[id] = true
  if old then rq(R.rem, rkey('rec-st:', old), id) end
  rq(R.add, rkey('rec-st:', new), '0', id)
end

-- Files a whole record written over cur = {v, s, t, c} of the one it replaces (all
-- nil for a new record) under every index that changed.
local function file_record(id, cur, s, t, c)
  if R.seen[id] then records_flush() end
  R.seen[id] = true
  if not cur[1] then rq(R.add, rkey('rec-all', ''), '0', id) end
  if cur[2] ~= s then
    if cur[2] then rq(R.rem, rkey('rec-st:', cur[2]), id) end
    rq(R.add, rkey('rec-st:', s), '0', id)
  end
  if cur[3] ~= t then
    if cur[3] then rq(R.rem, rkey('rec-ty:', cur[3]), id) end
    rq(R.add, rkey('rec-ty:', t), '0', id)
  end
  if cur[4] ~= c then rq(R.add, rkey('rec-created', ''), c, id) end
end

-- The Store's put: write a whole snapshot unless the one held is newer, or unless the
-- Broker holds the job in this very hash (q: a Broker keeping the records moves it
-- itself, and its copy is never older than one handed out).
local function put_record(id, v, s, b, m, t, c)
  local key = P .. 'rec:' .. id
  local cur = redis.call('HMGET', key, 'v', 's', 't', 'c', 'q')
  if cur[5] or (cur[1] and tonumber(v) < tonumber(cur[1])) then return end
  redis.call('HSET', key, 'b', b, 'm', m, 'v', v, 's', s, 't', t, 'c', c)
  file_record(id, cur, s, t, c)
end
"""

_LUA_BROKER_COMMON = r"""
local K_PENDING = P .. 'pending'
local K_DELAYED = P .. 'delayed'
local K_LEASES = P .. 'leases'
local K_TOKENS = P .. 'tokens'
local K_FINISHED = P .. 'finished'
local K_IDEM = P .. 'idem'
local K_SEQ = P .. 'seq'
local K_COUNTS = P .. 'counts'
local K_EPOCH = P .. 'epoch'
local SEP = '\31'
local RS = '\30' -- between the records of a reply whose records hold \31
local BAND = 4398046511104 -- 2^42 sequence numbers per priority band

-- A job hash holds b (the immutable body), k (the idempotency key as JSON, if any) and m:
-- the mutable values below joined by \31. A move reads two fields and writes one, and a
-- loaded job is an array filled by one string.match: per-field hash commands and Lua
-- tables grown key by key cost more than the rest of a claim. '' marks an absent value:
-- no idempotency key (K), no open attempt (AON, AOW, AOS).
local S, PR, K, UA, SA, STA, CA, RC, RES, ERR, ND, WK, LE, V, AN, ATT, AON, AOW, AOS =
  1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19
local MPAT = '^' .. string.rep('([^\31]*)\31', NF - 1) .. '([^\31]*)$'
local STATUSES = {'pending', 'scheduled', 'running', 'retrying', 'completed', 'failed',
                  'cancelled'}
local TERMINAL = {completed = true, failed = true, cancelled = true}

-- a Broker keeping the Store's records keeps each job in its record (see _LUA_RECORDS)
local JOBS = RECORD and (P .. 'rec:') or (P .. 'j:')
local function jkey(id) return JOBS .. id end
local function int(n) return string.format('%d', n) end

-- one argument carries many values joined by \31, which JSON text never holds raw
local function split(s)
  local out, pos = {}, 1
  while true do
    local a = string.find(s, SEP, pos, true)
    if not a then
      out[#out + 1] = string.sub(s, pos)
      return out
    end
    out[#out + 1] = string.sub(s, pos, a - 1)
    pos = a + 1
  end
end

-- Index writes and status counts are queued and applied by flush() with one command
-- per index. A job is queued at most once per flush: moves that unfile a job first
-- (unplace) flush, and the batched moves touch each job once.
local Q = {delta = {}, place = {}}

local function zadd_many(key, args)
  for i = 1, #args, 1000 do
    redis.call('ZADD', key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function flush()
  local pend, delayed, finished = {}, {}, {}
  local n = 0
  for _, pl in ipairs(Q.place) do
    if pl.kind == 'p' then n = n + 1 end
  end
  local seq = 0
  if n > 0 then seq = redis.call('INCRBY', K_SEQ, n) - n end
  for _, pl in ipairs(Q.place) do
    if pl.kind == 'p' then
      seq = seq + 1
      pend[#pend + 1] = int((10 - pl.prio) * BAND + seq)
      pend[#pend + 1] = pl.id
    elseif pl.kind == 'd' then
      delayed[#delayed + 1] = pl.at
      delayed[#delayed + 1] = pl.id
    else
      finished[#finished + 1] = pl.at
      finished[#finished + 1] = pl.id
    end
  end
  zadd_many(K_PENDING, pend)
  zadd_many(K_DELAYED, delayed)
  zadd_many(K_FINISHED, finished)
  for _, s in ipairs(STATUSES) do
    local d = Q.delta[s]
    if d and d ~= 0 then redis.call('HINCRBY', K_COUNTS, s, d) end
  end
  Q.delta, Q.place = {}, {}
  if RECORD then records_flush() end
end

local function count(s, d) Q.delta[s] = (Q.delta[s] or 0) + d end

-- file a job under its status's index (MemoryBroker._place); the caller has unfiled it
local function place(j, now)
  local s, pl = j[S], nil
  if s == 'pending' then
    pl = {id = j.id, kind = 'p', prio = tonumber(j[PR])}
  elseif s == 'scheduled' or s == 'retrying' then
    local at = j[SA]
    if at == 'null' then at = now end
    pl = {id = j.id, kind = 'd', at = at}
  elseif TERMINAL[s] then
    pl = {id = j.id, kind = 'f', at = now}
  end
  if pl then Q.place[#Q.place + 1] = pl end
end

local function unplace(id)
  flush()
  redis.call('ZREM', K_PENDING, id)
  redis.call('ZREM', K_DELAYED, id)
  redis.call('ZREM', K_LEASES, id)
  redis.call('HDEL', K_TOKENS, id)
  redis.call('ZREM', K_FINISHED, id)
end

-- a job the Broker holds (q: a record the Broker let go of stays behind without it)
local function load(id)
  local v = redis.call('HMGET', jkey(id), 'b', 'm', 'q')
  if not v[3] then return nil end
  return {id = id, b = v[1], string.match(v[2], MPAT)}
end

local function save(j)
  local m = table.concat(j, SEP, 1, NF)
  if RECORD then
    redis.call('HSET', jkey(j.id), 'm', m, 'v', j[V], 's', j[S])
  else
    redis.call('HSET', jkey(j.id), 'm', m)
  end
  return m
end

-- the Broker lets go of a job: a kept record stays, without q (and the idempotency key)
local function release(id)
  if RECORD then
    redis.call('HDEL', jkey(id), 'q', 'k')
  else
    redis.call('DEL', jkey(id))
  end
end

-- the status of a stored job without loading it (it leads m)
local function status_of(m) return string.match(m, '^[^\31]*') end

local function set_status(j, s)
  if j[S] ~= s then
    count(j[S], -1)
    count(s, 1)
    if RECORD then refile(j.id, j[S], s) end
    j[S] = s
  end
end

local function touch(j, now)
  j[UA] = now
  j[V] = int(tonumber(j[V]) + 1)
end

-- append one JSON text to a JSON array text
local function append(arr, item)
  if arr == '[]' then return '[' .. item .. ']' end
  return string.sub(arr, 1, -2) .. ',' .. item .. ']'
end

local function open_text(j)
  return '[' .. j[AON] .. ',' .. j[AOW] .. ',' .. j[AOS] .. ',null,null,null]'
end

local function doc(j)
  local atts = j[ATT]
  if j[AON] ~= '' then atts = append(atts, open_text(j)) end
  return '{' .. j.b .. ',"status":"' .. j[S] .. '","updated_at":' .. j[UA]
    .. ',"scheduled_at":' .. j[SA] .. ',"started_at":' .. j[STA] .. ',"completed_at":' .. j[CA]
    .. ',"retry_count":' .. j[RC] .. ',"result":' .. j[RES] .. ',"error":' .. j[ERR]
    .. ',"node_id":' .. j[ND] .. ',"worker_id":' .. j[WK] .. ',"attempts":' .. atts
    .. ',"lease_expirations":' .. j[LE] .. ',"version":' .. j[V] .. '}'
end

local function drop_open_attempt(j)
  j[AON], j[AOW], j[AOS] = '', '', ''
end

-- transitions._close_attempt: only a trailing open attempt is closed
local function close_attempt(j, now, outcome_json, error_json, worker_json)
  if j[AON] ~= '' then
    local closed = '[' .. j[AON] .. ',' .. (worker_json or j[AOW]) .. ',' .. j[AOS] .. ','
      .. now .. ',' .. outcome_json .. ',' .. error_json .. ']'
    j[ATT] = append(j[ATT], closed)
    j[AN] = int(tonumber(j[AN]) + 1)
    drop_open_attempt(j)
  end
end

local function open_attempt(j, now, node_json)
  local n = tonumber(j[AN])
  if j[AON] ~= '' then
    -- an attempt left open by whoever enqueued the job stays in the history as it was
    j[ATT] = append(j[ATT], open_text(j))
    n = n + 1
    j[AN] = int(n)
  end
  j[AON] = int(n + 1) .. ',' .. node_json
  j[AOW] = 'null'
  j[AOS] = now
end

-- The key layout is the queue's, not a node's: a node configured the other way (records
-- kept by the Broker or not) would look for jobs where they are not, and drop what it
-- pops. So the scripts that take jobs off an index refuse while the queue holds live
-- jobs laid out the other way; an empty queue takes the layout of whoever comes.
local K_LAYOUT = P .. 'layout'
local LAYOUT = RECORD and 'records' or 'jobs'
local function layout_refused()
  local held = redis.call('GET', K_LAYOUT)
  if held == LAYOUT then return nil end
  if held then
    local c = redis.call('HMGET', K_COUNTS, 'pending', 'scheduled', 'running', 'retrying')
    local live = 0
    for i = 1, 4 do live = live + (tonumber(c[i]) or 0) end
    if live > 0 then return redis.error_reply('LAYOUT ' .. held .. ' ' .. LAYOUT) end
  end
  redis.call('SET', K_LAYOUT, LAYOUT)
  return nil
end

local function fenced(epoch)
  local current = tonumber(redis.call('GET', K_EPOCH) or '0')
  if tonumber(epoch) < current then
    return redis.error_reply('FENCED ' .. int(current))
  end
  return nil
end
"""

_LUA_ENQUEUE = r"""
-- ARGV: now, then one argument per job joined by \31: id, created_at text, then the m
-- values this script reads (status, priority, scheduled_at, version, key: cutting them
-- out of m cost more than the rest of an enqueue), b, the m values, and the type last
-- (the one raw caller string that may hold the byte). The job hash keeps the type and
-- created_at text too (t, c), for its Store record.
-- Returns per job, joined by \31: '' when stored as sent, else the job holding its key.
local refused = layout_refused()
if refused then return refused end
local now = ARGV[1]
local EPAT = '^' .. string.rep('([^\31]*)\31', 8) .. '(' .. string.rep('[^\31]*\31', NF - 1)
  .. '[^\31]*)\31(.*)$'
local out = {}
for i = 2, #ARGV do
  local id, c, s, pr, sa, v, k, b, m, t = string.match(ARGV[i], EPAT)
  local j = {id = id, b = b}
  j[S], j[PR], j[SA], j[V], j[K] = s, pr, sa, v, k
  local k = j[K]
  local held = false
  if k ~= '' then
    held = redis.call('HGET', K_IDEM, k)
    if held and redis.call('HEXISTS', jkey(held), 'q') == 0 then held = false end
  end
  if held then
    out[#out + 1] = doc(load(held))
  else
    local key = jkey(id)
    local old = redis.call('HMGET', key, 'q', 'm', 't', 'c')
    if old[1] then -- the same id again replaces the job, as the reference broker does
      unplace(id)
      count(status_of(old[2]), -1)
    end
    if old[2] then redis.call('DEL', key) end
    if RECORD then
      redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', '1', 'v', j[V], 's', j[S])
      if old[2] then
        file_record(id, {'', status_of(old[2]), old[3], old[4]}, j[S], t, c)
      else
        file_record(id, {}, j[S], t, c)
      end
    else
      redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', '1')
    end
    if k ~= '' then
      redis.call('HSET', key, 'k', k)
      redis.call('HSET', K_IDEM, k, id)
    end
    count(j[S], 1)
    place(j, now)
    out[#out + 1] = ''
  end
end
flush()
return table.concat(out, SEP)
"""

_LUA_CLAIM = r"""
-- ARGV: now, node_id (JSON), lease expiry, n, n fresh tokens joined by \31
-- Returns a record per claimed job: token, b and m joined by \31; records joined by \30.
-- Python builds the documents from b and m: client CPU scales out, the server's does not.
local refused = layout_refused()
if refused then return refused end
local now, node_json, expires = ARGV[1], ARGV[2], ARGV[3]
local tokens = split(ARGV[5])
local popped = redis.call('ZPOPMIN', K_PENDING, tonumber(ARGV[4]))
local out, leases, held = {}, {}, {}
local t = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local j = load(id)
  if j then
    set_status(j, 'running')
    j[STA] = now
    j[ND] = node_json
    j[WK] = 'null'
    open_attempt(j, now, node_json)
    touch(j, now)
    local m = save(j)
    t = t + 1
    local token = tokens[t]
    leases[2 * t - 1] = expires
    leases[2 * t] = id
    held[2 * t - 1] = id
    held[2 * t] = token
    local o = #out
    if o > 0 then
      out[o + 1] = RS
      o = o + 1
    end
    out[o + 1] = token
    out[o + 2] = SEP
    out[o + 3] = j.b
    out[o + 4] = SEP
    out[o + 5] = m
  end
end
if t > 0 then
  zadd_many(K_LEASES, leases)
  for i = 1, #held, 1000 do
    redis.call('HSET', K_TOKENS, unpack(held, i, math.min(i + 999, #held)))
  end
end
flush()
return table.concat(out)
"""

_LUA_RENEW = r"""
-- ARGV: new expiry, then id and token alternately joined by \31; returns lost ids joined
local expires = ARGV[1]
local v = split(ARGV[2])
local ids = {}
for i = 1, #v, 2 do ids[#ids + 1] = v[i] end
local lost, keep = {}, {}
for c = 1, #ids, 1000 do
  local toks = redis.call('HMGET', K_TOKENS, unpack(ids, c, math.min(c + 999, #ids)))
  for i = 1, #toks do
    local n = c + i - 1
    if toks[i] == v[2 * n] then
      keep[#keep + 1] = expires
      keep[#keep + 1] = ids[n]
    else
      lost[#lost + 1] = ids[n]
    end
  end
end
for i = 1, #keep, 1000 do
  redis.call('ZADD', K_LEASES, 'XX', unpack(keep, i, math.min(i + 999, #keep)))
end
return table.concat(lost, SEP)
"""

_LUA_FINISH = r"""
-- ARGV: now, then per item joined by \31: id, token, outcome, worker ('' = none),
-- result, error, retry_at ('' = none). Returns a record per item, b and m joined by \31
-- ('' for a stale token); records joined by \30.
local now = ARGV[1]
local IPAT = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)$'
local items, ids = {}, {}
for i = 2, #ARGV do
  local v = {string.match(ARGV[i], IPAT)}
  items[i - 1] = v
  ids[i - 1] = v[1]
end
local toks = {}
for c = 1, #ids, 1000 do
  local part = redis.call('HMGET', K_TOKENS, unpack(ids, c, math.min(c + 999, #ids)))
  for i = 1, #part do toks[c + i - 1] = part[i] end
end
local out, used, gone = {}, {}, {}
for i, v in ipairs(items) do
  local id, outcome = v[1], v[3]
  local worker, result, err, retry_at = v[4], v[5], v[6], v[7]
  local j = nil
  -- the lease is spent by its first finish: a repeat in the same batch is stale
  if toks[i] == v[2] and not used[id] then j = load(id) end
  if j then
    used[id] = true
    gone[#gone + 1] = id
    if worker == '' then worker = false else j[WK] = worker end
    if outcome == 'released' then
      -- closed then popped: an attempt handed back unrun is not an attempt. A held
      -- lease always has its open attempt (claim made it; only lease-ending moves close it).
      drop_open_attempt(j)
      set_status(j, 'pending')
    else
      close_attempt(j, now, '"' .. outcome .. '"', err, worker)
      if outcome == 'completed' then
        set_status(j, 'completed')
        j[RES] = result
        j[ERR] = 'null'
        j[CA] = now
      elseif retry_at ~= '' then
        set_status(j, 'retrying')
        j[RC] = int(tonumber(j[RC]) + 1)
        j[ERR] = err
        j[SA] = retry_at
      else
        set_status(j, 'failed')
        j[ERR] = err
        j[CA] = now
      end
    end
    touch(j, now)
    out[4 * i - 3] = j.b
    out[4 * i - 2] = SEP
    out[4 * i - 1] = save(j)
    place(j, now)
  else
    out[4 * i - 3], out[4 * i - 2], out[4 * i - 1] = '', SEP, ''
  end
  out[4 * i] = RS
end
for i = 1, #gone, 1000 do
  local part = {unpack(gone, i, math.min(i + 999, #gone))}
  redis.call('HDEL', K_TOKENS, unpack(part))
  redis.call('ZREM', K_LEASES, unpack(part))
end
flush()
return table.concat(out, '', 1, #out - 1)
"""

_LUA_CANCEL = r"""
-- ARGV: now, id, the cancellation error as JSON
local now, id, cancelled = ARGV[1], ARGV[2], ARGV[3]
local j = load(id)
if not j then return false end
if TERMINAL[j[S]] then return doc(j) end
close_attempt(j, now, '"cancelled"', cancelled, false)
set_status(j, 'cancelled')
j[ERR] = cancelled
j[CA] = now
touch(j, now)
save(j)
unplace(id)
place(j, now)
flush()
return doc(j)
"""

_LUA_RETRY = r"""
-- ARGV: now, id; a job that is not failed or cancelled comes back as {'conflict', doc}
local now, id = ARGV[1], ARGV[2]
local j = load(id)
if not j then return false end
if j[S] ~= 'failed' and j[S] ~= 'cancelled' then return {'conflict', doc(j)} end
set_status(j, 'pending')
j[RC] = '0'
j[LE] = '0'
j[ERR] = 'null'
j[RES] = 'null'
j[CA] = 'null'
j[SA] = 'null'
touch(j, now)
save(j)
unplace(id)
place(j, now)
flush()
return doc(j)
"""

_LUA_DELETE = r"""
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q')
if not f[3] then return 0 end
unplace(id)
count(status_of(f[1]), -1)
release(id)
if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
flush()
return 1
"""

_LUA_GET = r"""
local out = {}
for i = 1, #ARGV do
  local j = load(ARGV[i])
  if j then out[i] = doc(j) else out[i] = false end
end
return out
"""

_LUA_RUNNING = r"""
local held = redis.call('ZRANGE', K_LEASES, 0, -1, 'WITHSCORES')
local out = {}
for i = 1, #held, 2 do
  local j = load(held[i])
  local token = redis.call('HGET', K_TOKENS, held[i])
  if j and token then
    out[#out + 1] = token
    out[#out + 1] = held[i + 1]
    out[#out + 1] = doc(j)
  end
end
return out
"""

_LUA_PROMOTE = r"""
-- ARGV: now, epoch, limit
local now = ARGV[1]
local err = fenced(ARGV[2]) or layout_refused()
if err then return err end
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', now, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for c = 1, #due, 1000 do
  redis.call('ZREM', K_DELAYED, unpack(due, c, math.min(c + 999, #due)))
end
for _, id in ipairs(due) do
  local j = load(id)
  if j then
    set_status(j, 'pending')
    touch(j, now)
    save(j)
    place(j, now)
    out[#out + 1] = doc(j)
  end
end
flush()
return out
"""

_LUA_REQUEUE = r"""
-- ARGV: now, epoch, poison limit, limit, poison error JSON with a literal {n},
--       'lease expired' as JSON
local now = ARGV[1]
local err = fenced(ARGV[2]) or layout_refused()
if err then return err end
local poison = tonumber(ARGV[3])
local template, lost_error = ARGV[5], ARGV[6]
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. now,
                           'LIMIT', 0, tonumber(ARGV[4]))
for c = 1, #expired, 1000 do
  local part = {unpack(expired, c, math.min(c + 999, #expired))}
  redis.call('ZREM', K_LEASES, unpack(part))
  redis.call('HDEL', K_TOKENS, unpack(part))
end
local out = {}
for _, id in ipairs(expired) do
  local j = load(id)
  if j then
    local n = tonumber(j[LE]) + 1
    j[LE] = int(n)
    close_attempt(j, now, '"lost"', lost_error, false)
    if n >= poison then
      local a, b = string.find(template, '{n}', 1, true)
      set_status(j, 'failed')
      j[ERR] = string.sub(template, 1, a - 1) .. int(n) .. string.sub(template, b + 1)
      j[CA] = now
    else
      set_status(j, 'pending')
    end
    touch(j, now)
    save(j)
    place(j, now)
    out[#out + 1] = doc(j)
  end
end
flush()
return out
"""

_LUA_PURGE = r"""
-- ARGV: older_than, epoch, limit
local err = fenced(ARGV[2])
if err then return err end
local old = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(old) do
  local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q')
  if f[3] then
    release(id)
    count(status_of(f[1]), -1)
  end
  if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
end
for c = 1, #old, 1000 do
  redis.call('ZREM', K_FINISHED, unpack(old, c, math.min(c + 999, #old)))
end
flush()
return #old
"""

_LUA_LAYOUT = r"""
local refused = layout_refused()
if refused then return refused end
return 1
"""

_LUA_CLAIM_TICK = r"""
-- ARGV: name, tick (float text), epoch, ticks kept per name
local err = fenced(ARGV[3])
if err then return err end
local name, tick, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])
local key = P .. 'tick:' .. name
local floor = redis.call('HGET', P .. 'tickfloor', name)
if floor and tonumber(tick) <= tonumber(floor) then return 0 end
if redis.call('ZADD', key, 'NX', tick, tick) == 0 then return 0 end
local size = redis.call('ZCARD', key)
if size > keep then
  -- forget the oldest ticks but refuse anything at or below them from now on
  local gone = redis.call('ZRANGE', key, size - keep - 1, size - keep - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', key, 0, size - keep - 1)
  redis.call('HSET', P .. 'tickfloor', name, gone[2])
end
return 1
"""

_LUA_STORE_PUT = r"""
-- ARGV: one record each: id, version, status, created_at text, b, the m values and the
-- type joined by \31 (the type last: the one raw caller string that may hold the byte).
local PAT = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31('
  .. string.rep('[^\31]*\31', NF - 1) .. '[^\31]*)\31(.*)$'
for i = 1, #ARGV do
  local id, v, s, c, b, m, t = string.match(ARGV[i], PAT)
  put_record(id, v, s, b, m, t, c)
end
records_flush()
return 0
"""

_LUA_STORE_DELETE = r"""
local P = KEYS[1]
local id = ARGV[1]
local key = P .. 'rec:' .. id
local cur = redis.call('HMGET', key, 's', 't', 'q')
-- a job the Broker still holds in this hash (it keeps the records) goes through it first
if not cur[1] or cur[3] then return 0 end
redis.call('DEL', key)
redis.call('ZREM', P .. 'rec-all', id)
redis.call('ZREM', P .. 'rec-st:' .. cur[1], id)
redis.call('ZREM', P .. 'rec-ty:' .. cur[2], id)
redis.call('ZREM', P .. 'rec-created', id)
return 1
"""

_LUA_STORE_QUERY = r"""
-- Newest first below a cursor, filtered, examining at most `budget` ids.
-- ARGV: cursor ('' = newest), want, budget, created_after, created_before, type
--       ('' = any of the three), number of statuses (-1 = any), statuses...
-- Returns {last id examined, '1' if nothing is left below it else '0', then b and m of
-- each record found}.
local P = KEYS[1]
local cursor, want, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local after, before = tonumber(ARGV[4]), tonumber(ARGV[5])
local jtype = ARGV[6]
if jtype == '' then jtype = nil end
local nstatus = tonumber(ARGV[7])
local statuses, skeys = nil, {}
if nstatus >= 0 then
  statuses = {}
  for i = 8, 7 + nstatus do
    statuses[ARGV[i]] = true
    skeys[#skeys + 1] = P .. 'rec-st:' .. ARGV[i]
  end
end
local TMP = P .. 'rec-tmp'
local CHUNK, WINDOW_MAX = 200, 5000

local function size(keys)
  local n = 0
  for _, k in ipairs(keys) do n = n + redis.call('ZCARD', k) end
  return n
end

-- byte order, as Redis orders members; Lua's own '<' follows the server's locale
local function lt(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

local streams
if jtype then
  local tkey = P .. 'rec-ty:' .. jtype
  if statuses and size(skeys) < redis.call('ZCARD', tkey) then streams = skeys
  else streams = {tkey} end
elseif statuses then
  streams = skeys
else
  streams = {P .. 'rec-all'}
end

local found = {}
local function consider(id)
  local f = redis.call('HMGET', P .. 'rec:' .. id, 's', 't', 'c')
  if not f[1] then return end
  if statuses and not statuses[f[1]] then return end
  if jtype and f[2] ~= jtype then return end
  local c = tonumber(f[3])
  if after and c < after then return end
  if before and c >= before then return end
  local r = redis.call('HMGET', P .. 'rec:' .. id, 'b', 'm')
  found[#found + 1] = r[1]
  found[#found + 1] = r[2]
end

local function sorted_desc(ids, max, min)
  -- order ids newest first through a scratch sorted set (score 0: byte order)
  redis.call('DEL', TMP)
  for i = 1, #ids, 500 do
    local args = {}
    for k = i, math.min(i + 499, #ids) do args[#args + 1] = 0; args[#args + 1] = ids[k] end
    redis.call('ZADD', TMP, unpack(args))
  end
  local out = redis.call('ZREVRANGEBYLEX', TMP, max, min)
  redis.call('DEL', TMP)
  return out
end

local top = '+'
if cursor ~= '' then top = '(' .. cursor end

-- a narrow creation window: read it from the created_at index instead of scanning
if after or before then
  local lo, hi = '-inf', '+inf'
  if after then lo = ARGV[4] end
  if before then hi = '(' .. ARGV[5] end
  local count = redis.call('ZCOUNT', P .. 'rec-created', lo, hi)
  if count <= WINDOW_MAX and count < size(streams) then
    local ids = sorted_desc(redis.call('ZRANGEBYSCORE', P .. 'rec-created', lo, hi), top, '-')
    local last = cursor
    for _, id in ipairs(ids) do
      last = id
      consider(id)
      if #found >= 2 * want then break end
    end
    local out = {last, '1'}
    for _, d in ipairs(found) do out[#out + 1] = d end
    return out
  end
end

local examined, last, exhausted = 0, cursor, false
while examined < budget and #found < 2 * want and not exhausted do
  local chunk = math.min(CHUNK, budget - examined)
  local max = '+'
  if last ~= '' then max = '(' .. last end
  local ids
  if #streams == 1 then
    ids = redis.call('ZREVRANGEBYLEX', streams[1], max, '-', 'LIMIT', 0, chunk)
    exhausted = #ids < chunk
  else
    -- merge several status indexes: below the highest last id of a stream that
    -- filled its chunk, that stream may hold ids not fetched yet, so stop there
    local all, bound = {}, nil
    exhausted = true
    for _, key in ipairs(streams) do
      local part = redis.call('ZREVRANGEBYLEX', key, max, '-', 'LIMIT', 0, chunk)
      for _, id in ipairs(part) do all[#all + 1] = id end
      if #part == chunk then
        exhausted = false
        if bound == nil or lt(bound, part[#part]) then bound = part[#part] end
      end
    end
    local min = '-'
    if bound then min = '[' .. bound end
    ids = sorted_desc(all, '+', min)
  end
  for _, id in ipairs(ids) do
    examined = examined + 1
    last = id
    consider(id)
    if #found >= 2 * want then break end
  end
  if #ids == 0 then exhausted = true end
end
local out = {last, exhausted and '1' or '0'}
for _, d in ipairs(found) do out[#out + 1] = d end
return out
"""


# --------------------------------------------------------------------------- encoding


def _num(value: float) -> str:
    """A time or score as text that parses back to the very same double."""
    if type(value) is float and math.isfinite(value):
        return repr(value)
    return json.dumps(value)


#: ``json.dumps(value, separators=(",", ":"))`` without building an encoder per call
#: (json.dumps does for any non-default argument: about 1 us of a 2 us call).
_compact = json.JSONEncoder(separators=(",", ":")).encode


def _enc(value: Any) -> str:
    """One JSON fragment; the common scalars skip the json module (hot path)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is int or (kind is float and math.isfinite(value)):
        return repr(value)
    return _compact(value)


_encode_str = json.encoder.encode_basestring_ascii  # what the encoder writes for a str


def _jtext(value: Any) -> str:
    """One JSON fragment for a value that is usually a str (or None)."""
    return _encode_str(value) if type(value) is str else _enc(value)


def _check_name(value: str, what: str) -> str:
    if _SEP in value:
        raise ValueError(f"{what} {value!r} contains the byte 0x1f, which the scripts reserve")
    return value


def _job_fields(job: Job, status: JobStatus) -> tuple[str, list[str]]:
    """The job's body and its ``FIELDS`` values (see the Lua), ``''`` for an absent value.

    The idempotency key travels as JSON text too, so no raw caller string ever
    meets the separator.
    """
    payload = job.payload
    # what _compact({"id": .., "type": .., ..})[1:-1] writes, without building the dict
    body = (
        '"id":' + _jtext(job.id) + ',"type":' + _jtext(job.type)
        + ',"priority":' + _enc(job.priority)
        + ',"payload":' + ("{}" if type(payload) is dict and not payload else _compact(payload))
        + ',"created_at":' + _enc(job.created_at) + ',"max_retries":' + _enc(job.max_retries)
        + ',"timeout":' + _enc(job.timeout)
        + ',"idempotency_key":' + _jtext(job.idempotency_key)
    )  # fmt: skip
    if job.attempts:
        attempts = [
            [a.number, a.node_id, a.worker_id, a.started_at, a.ended_at, a.outcome, a.error]
            for a in job.attempts
        ]
    else:
        attempts = []
    open_head = open_worker = open_start = ""
    if job.attempts and job.attempts[-1].ended_at is None:
        last = job.attempts[-1]
        attempts.pop()
        open_head = _compact([last.number, last.node_id])[1:-1]
        open_worker = _enc(last.worker_id)
        open_start = _enc(last.started_at)
    return body, [
        str(status),
        _enc(job.priority),
        "" if job.idempotency_key is None else json.dumps(job.idempotency_key),
        _enc(job.updated_at),
        _enc(job.scheduled_at),
        _enc(job.started_at),
        _enc(job.completed_at),
        _enc(job.retry_count),
        _enc(job.result),
        _enc(job.error),
        _enc(job.node_id),
        _enc(job.worker_id),
        _enc(job.lease_expirations),
        _enc(job.version),
        str(len(attempts)),
        _compact(attempts) if attempts else "[]",
        open_head,
        open_worker,
        open_start,
    ]


def _doc_from_fields(body: str, f: list[str]) -> str:
    """The document the Lua ``doc()`` builds from these values (see ``_job_fields``)."""
    attempts = f[15]
    if f[16]:
        opened = "[" + f[16] + "," + f[17] + "," + f[18] + ",null,null,null]"
        attempts = "[" + opened + "]" if attempts == "[]" else attempts[:-1] + "," + opened + "]"
    return (
        "{" + body + ',"status":"' + f[0] + '","updated_at":' + f[3]
        + ',"scheduled_at":' + f[4] + ',"started_at":' + f[5] + ',"completed_at":' + f[6]
        + ',"retry_count":' + f[7] + ',"result":' + f[8] + ',"error":' + f[9]
        + ',"node_id":' + f[10] + ',"worker_id":' + f[11] + ',"attempts":' + attempts
        + ',"lease_expirations":' + f[12] + ',"version":' + f[13] + "}"
    )  # fmt: skip


def _dumps_from_fields(body: str, f: list[str]) -> str:
    """``Job.dumps()`` of the job these values hold, byte for byte, without parsing it.

    The same fragments as ``_doc_from_fields`` in ``Job.dumps``' field order: the
    body is cut at its ``created_at``, ``max_retries`` and ``idempotency_key``.
    The last ``created_at`` is the field (a payload key may spell it too, but
    only numbers, null and strings, which never hold a raw quote, follow it),
    and the first of the other two after it are the fields.
    """
    attempts = f[15]
    if f[16]:
        opened = "[" + f[16] + "," + f[17] + "," + f[18] + ",null,null,null]"
        attempts = "[" + opened + "]" if attempts == "[]" else attempts[:-1] + "," + opened + "]"
    ca = body.rindex(',"created_at":')
    mr = body.index(',"max_retries":', ca)
    ik = body.index(',"idempotency_key":', mr)
    return (
        "{" + body[:ca] + ',"status":"' + f[0] + '"' + body[ca:mr]
        + ',"updated_at":' + f[3] + ',"scheduled_at":' + f[4] + ',"started_at":' + f[5]
        + ',"completed_at":' + f[6] + ',"retry_count":' + f[7] + body[mr:ik]
        + ',"result":' + f[8] + ',"error":' + f[9] + ',"node_id":' + f[10]
        + ',"worker_id":' + f[11] + ',"attempts":' + attempts + body[ik:]
        + ',"lease_expirations":' + f[12] + ',"version":' + f[13] + "}"
    )  # fmt: skip


def _job(body: str, m: str) -> Job:
    """A job from a script's raw ``b`` and ``m``: ``Job.loads`` of its document, faster."""
    return _job_from_fields(body, m.split(_SEP))


def _job_from_fields(body: str, f: list[str]) -> Job:
    """A job from ``b`` and the values of ``m``, as ``Job.loads`` reads its document.

    Claimed jobs are parsed whole (a worker needs every field), 7.5 us a job
    through the document. Here json parses only the body; the values in ``m``
    are each one JSON fragment, read by kind: a word, a number, null, or JSON
    text for json (strings, results, closed attempts).
    """
    d = _loads("{" + body + "}")
    attempts = [Attempt(*a) for a in _loads(f[15])] if f[15] != "[]" else []
    if f[16]:
        number, node = f[16].split(",", 1)
        attempts.append(Attempt(int(number), _text_of(node), _value(f[17]), _value(f[18])))
    return Job(
        d["id"],
        d["type"],
        d["priority"],
        d["payload"],
        _STATUS[f[0]],
        d["created_at"],
        _value(f[3]),
        _value(f[4]),
        _value(f[5]),
        _value(f[6]),
        _value(f[7]),
        d["max_retries"],
        d["timeout"],
        _value(f[8]),
        _value(f[9]),
        _value(f[10]),
        _value(f[11]),
        attempts,
        d["idempotency_key"],
        _value(f[12]),
        _value(f[13]),
    )


_loads = json.loads
# _job passes the fields by position: a new field of Job must be placed there too
assert tuple(f.name for f in dataclasses.fields(Job)) == (
    "id", "type", "priority", "payload", "status", "created_at", "updated_at",
    "scheduled_at", "started_at", "completed_at", "retry_count", "max_retries", "timeout",
    "result", "error", "node_id", "worker_id", "attempts", "idempotency_key",
    "lease_expirations", "version",
), "Job's fields changed: update _job in jobtrio/backends/redis.py"  # fmt: skip


def _value(text: str) -> Any:
    """One JSON fragment as json.loads reads it; the usual null, numbers and plain
    strings without the json module."""
    if text == "null":
        return None
    first = text[0]
    if first == '"':
        return _text_of(text)
    if first.isdigit() or first == "-":
        if text.isdigit():
            return int(text)
        try:
            return int(text) if text[1:].isdigit() else float(text)
        except ValueError:
            pass
    return _loads(text)


def _text_of(text: str) -> str:
    """A JSON string's value (no escape inside: the text between the quotes)."""
    return text[1:-1] if "\\" not in text else _loads(text)  # type: ignore[no-any-return]


_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_FIELD_NAMES = frozenset(_FIELDS)
_fields_of = operator.attrgetter(*_FIELDS)
_STATUS = {str(s): s for s in JobStatus}


class _StoredJob(Job):
    """A job as a script returned it: its raw ``b`` and ``m``, parsed only when used whole.

    Why: a finished job travels from the finish reply to the finisher's metrics
    (and, where the Broker does not keep the records itself, to its Store
    record) with nothing on the way reading more than its id, type, version
    and status. Parsing it whole cost more than the Lua that finished it. So the
    header fields are set at birth and every other field slot is left unset:
    the first read of one fails over to ``__getattr__``, which parses the raw
    values into every slot and forgets them. Any assignment parses first too,
    so the raw values stand for the job only while nothing can have changed
    (changing a nested value needs a field read, which parses). It is a real
    ``Job`` for every caller: equal to a plain one with the same fields, and
    copied or pickled as a plain one.
    """

    __slots__ = ("_body", "_fields")

    def __getattr__(self, name: str) -> Any:
        # reached only for an unset slot: a field beyond the header is wanted
        if name in _FIELD_NAMES and _raw_of(self) is not None:
            self._parse()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        if _raw_of(self) is not None:
            self._parse()
        object.__setattr__(self, name, value)

    def _parse(self) -> None:
        body, fields = _raw_of(self)  # type: ignore[misc]
        whole = _job_from_fields(body, fields)
        for name, value in zip(_FIELDS, _fields_of(whole), strict=True):
            object.__setattr__(self, name, value)
        object.__setattr__(self, "_body", None)

    def dumps(self) -> str:
        raw = _raw_of(self)
        return _dumps_from_fields(*raw) if raw is not None else Job.dumps(self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Job):
            return _fields_of(self) == _fields_of(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like Job

    def __repr__(self) -> str:
        return "Job" + Job.__repr__(self)[len(type(self).__qualname__) :]

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return (Job.loads, (self.dumps(),))


def _raw_of(job: _StoredJob) -> tuple[str, list[str]] | None:
    """``(b, m values)`` while unparsed, else None (parsed, or made by ``dataclasses.replace``)."""
    try:
        body = object.__getattribute__(job, "_body")
    except AttributeError:
        return None
    if body is None:
        return None
    return body, object.__getattribute__(job, "_fields")


def _stored(
    body: str, fields: list[str], job_id: str, job_type: str, status: str, version: int
) -> Job:
    """A ``_StoredJob`` from its raw values and header."""
    job = _new_stored(_StoredJob)
    _set_body(job, body)
    _set_fields(job, fields)
    _set_id(job, job_id)
    _set_type(job, job_type)
    _set_status(job, _STATUS[status])
    _set_version(job, version)
    return job


# the slots' own setters: object.__setattr__ looks each one up again (0.67 -> 0.40 us a job)
_new_stored = _StoredJob.__new__
_set_body = _StoredJob._body.__set__  # type: ignore[attr-defined]
_set_fields = _StoredJob._fields.__set__  # type: ignore[attr-defined]
_set_id = Job.id.__set__  # type: ignore[attr-defined]
_set_type = Job.type.__set__  # type: ignore[attr-defined]
_set_status = Job.status.__set__  # type: ignore[attr-defined]
_set_version = Job.version.__set__  # type: ignore[attr-defined]


def _stored_from_fields(body: str, f: list[str]) -> Job:
    """A lazily parsed job from a script's raw ``b`` and split ``m`` (see ``_StoredJob``).

    The header comes out of ``b`` by position: ``_job_fields`` writes the id and
    the type first.
    """
    start = body.index(',"type":')
    id_text = body[5:start]
    end = body.index(',"priority":', start)
    type_text = body[start + 8 : end]
    return _stored(
        body,
        f,
        id_text[1:-1] if "\\" not in id_text else json.loads(id_text),
        type_text[1:-1] if "\\" not in type_text else json.loads(type_text),
        f[0],
        int(f[13]),
    )


def _created_text(body: str) -> str:
    """``created_at`` as the body holds it: the last field of that name that only
    numbers, null and strings follow, none of which can hold a raw quote."""
    at = body.rindex(',"created_at":') + 14
    return body[at : body.index(",", at)]


def _record_parts(job: Job) -> tuple[str, str, str]:
    """A job's ``b``, ``m`` and created_at text for its Store record, encoded once."""
    if type(job) is _StoredJob:
        raw = _raw_of(job)
        if raw is not None:
            return raw[0], _SEP.join(raw[1]), _created_text(raw[0])
    body, fields = _job_fields(job, job.status)
    return body, _SEP.join(fields), _num(job.created_at)


def _split(reply: bytes) -> list[bytes]:
    return reply.split(_BSEP) if reply else []


def _hash_tag(prefix: str) -> str:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError(f"redis key prefix {prefix!r} must be non-empty and without braces")
    return "{" + prefix + "}:"


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


# --------------------------------------------------------------------------- connection


_UNAVAILABLE = (redis.ConnectionError, redis.TimeoutError, redis.ReadOnlyError, OSError)
#: trio's words for a connection that broke under a call.
_BROKEN = (trio.BrokenResourceError, trio.ClosedResourceError)
#: Refusals that mean "not now" (a failover, a restart loading its data), not "never".
_TRANSIENT = (MasterDownError, TryAgainError, ClusterDownError)
_TRANSIENT_PREFIXES = ("MASTERDOWN", "LOADING", "TRYAGAIN", "CLUSTERDOWN")
#: Scripts go over trio's own sockets when the pool allows it (see ``RedisConnection``).
NATIVE_SCRIPTS = True


def _translated(exc: Exception) -> Exception:
    """The error a caller sees: an outage is ``BackendUnavailable``, the rest as raised."""
    if isinstance(exc, redis.ResponseError) and str(exc).startswith("LAYOUT "):
        _, held, mine = str(exc).split()
        return BackendUnavailable(
            "redis",
            f"the queue holds live jobs in the {held!r} key layout and this node uses "
            f"{mine!r} ('records' is Redis alone, 'jobs' is Redis with MongoDB): give "
            "every node the same MONGODB_URI setting, or drain the queue before changing it",
        )
    if isinstance(exc, _UNAVAILABLE + _BROKEN):
        return BackendUnavailable("redis", str(exc) or type(exc).__name__)
    if isinstance(exc, _TRANSIENT) or (
        isinstance(exc, redis.ResponseError) and str(exc).startswith(_TRANSIENT_PREFIXES)
    ):
        return BackendUnavailable("redis", str(exc) or type(exc).__name__)
    return exc


def _arg(value: Any) -> bytes:
    """An argument as redis-py's encoder writes it."""
    kind = type(value)
    if kind is str:
        return value.encode()  # type: ignore[no-any-return]
    if kind is bytes:
        return value  # type: ignore[no-any-return]
    if kind is int or kind is float:
        return repr(value).encode()
    raise TypeError(f"a redis argument must be str, bytes, int or float, not {kind.__name__}")


def _command(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        out += (b"$%d\r\n" % len(part), part, b"\r\n")
    return b"".join(out)


class _Wire:
    """One connection of trio's own; replies are read by hiredis' RESP parser.

    hiredis (the C parser redis-py itself uses when installed) is sans-IO:
    bytes go in with ``feed``, whole replies come out of ``gets``, so it works
    over a trio stream unchanged. Error replies come back as the exception
    objects redis-py would raise (``NoScriptError``...), not raised.
    """

    __slots__ = ("stream", "reader", "idle_since")

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.reader = hiredis.Reader(
            protocolError=redis.exceptions.InvalidResponse, replyError=BaseParser.parse_error
        )
        self.idle_since = trio.current_time()

    async def request(self, payload: bytes, replies: int = 1) -> list[Any]:
        await self.stream.send_all(payload)
        out: list[Any] = []
        reader = self.reader
        while len(out) < replies:
            value = reader.gets()
            if value is not False:
                out.append(value)
                continue
            data = await self.stream.receive_some(1 << 18)
            if not data:
                raise redis.ConnectionError("redis closed the connection")
            reader.feed(data)
        return out


class RedisConnection:
    """A redis-py client plus the limiter every call goes through.

    The Broker and the Store of one node can share one (``connection=``), so
    the node holds one pool and one bound on calls in flight to Redis.

    Scripts (every move of the Broker and every Store write) do not go through
    redis-py when its pool is plain TCP: they go over connections of trio's
    own (``_Wire``), with the pool's address, credentials, database and
    timeouts. A call through a thread cost 250-300 us of CPU here against
    70-90 us for the same EVALSHA on trio's socket (thread wake-ups, the
    result's trip back to trio, redis-py's pure-Python packing and parsing
    under the GIL): 15 us of every drained job. TLS, Unix sockets, Sentinel
    and other pools keep the threads, as does every other command.
    """

    def __init__(self, client: redis.Redis, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self.client = client
        self.limiter = trio.CapacityLimiter(pool_size)
        self._wire_options = _wire_options(client)
        self._wires: list[_Wire] = []

    @staticmethod
    def _options(socket_timeout: float, pool_size: int) -> dict[str, Any]:
        return {
            "socket_timeout": socket_timeout,
            "socket_connect_timeout": min(DEFAULT_CONNECT_TIMEOUT, socket_timeout),
            "socket_keepalive": True,
            "health_check_interval": HEALTH_CHECK_INTERVAL,
            # no blind re-sends: a retried claim or finish would not be idempotent
            "retry": Retry(NoBackoff(), 0),
            "max_connections": pool_size * 2,
        }

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        password: str | None = None,
        db: int | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> RedisConnection:
        """redis:// or rediss://; a password or db in the URL wins over the arguments."""
        options = cls._options(socket_timeout, pool_size)
        if password:
            options["password"] = password
        if db is not None:
            options["db"] = db
        pool = redis.ConnectionPool.from_url(url, **options)
        return cls(redis.Redis(connection_pool=pool), pool_size)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
    ) -> RedisConnection:
        """REDIS_SENTINELS first, then REDIS_URL, then REDIS_ADDR (+ REDIS_PASSWORD, REDIS_DB)."""
        password = settings.redis_password or None
        if settings.redis_sentinels:
            options = cls._options(socket_timeout, pool_size)
            hosts = [_split_host_port(item) for item in settings.redis_sentinels]
            sentinel = Sentinel(
                hosts,
                sentinel_kwargs={
                    "socket_timeout": socket_timeout,
                    "socket_connect_timeout": options["socket_connect_timeout"],
                },
                **{k: v for k, v in options.items() if k != "max_connections"},
            )
            client = sentinel.master_for(
                settings.redis_sentinel_master,
                password=password,
                db=settings.redis_db,
                max_connections=options["max_connections"],
            )
            return cls(client, pool_size)
        if settings.redis_url:
            return cls.from_url(
                settings.redis_url,
                password=password,
                db=settings.redis_db,
                pool_size=pool_size,
                socket_timeout=socket_timeout,
            )
        if settings.redis_addr:
            host, port = _split_host_port(settings.redis_addr)
            pool = redis.ConnectionPool(
                host=host,
                port=port,
                password=password,
                db=settings.redis_db,
                **cls._options(socket_timeout, pool_size),
            )
            return cls(redis.Redis(connection_pool=pool), pool_size)
        raise ValueError("redis is not configured: set REDIS_ADDR, REDIS_URL or REDIS_SENTINELS")

    async def run(self, fn: Callable[[], T]) -> T:
        """Run one blocking client call in a worker thread, translating outages.

        The thread is never abandoned on cancellation: a claim whose reply
        was dropped would leave jobs running nowhere until their lease ends.
        ``socket_timeout`` bounds the wait.
        """
        try:
            return await trio.to_thread.run_sync(fn, limiter=self.limiter)
        except (redis.RedisError, OSError) as exc:
            translated = _translated(exc)
            if translated is exc:
                raise
            raise translated from exc

    async def script(self, script: Any, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a registered script (EVALSHA, loading it once if the server lost it).

        On trio's own connections when the pool allows (see the class), else
        through ``run``. Either way the call is never abandoned on
        cancellation (shielded, bounded by ``socket_timeout``): a claim whose
        reply was dropped would leave jobs running nowhere until their lease
        ends; and redis-py's rule of no blind re-sends holds, since only a
        NOSCRIPT refusal (the script did not run) is sent again.
        """
        options = self._wire_options
        if options is None or not NATIVE_SCRIPTS:
            return await self.run(lambda: script(keys=keys, args=args))
        payload = _command(
            b"EVALSHA",
            script.sha.encode(),
            b"%d" % len(keys),
            *(_arg(k) for k in keys),
            *(_arg(a) for a in args),
        )
        async with self.limiter:
            with trio.CancelScope(shield=True):
                wire = None
                try:
                    with trio.fail_after(options["socket_timeout"]):
                        wire = await self._wire()
                        [reply] = await wire.request(payload)
                        if isinstance(reply, redis.exceptions.NoScriptError):
                            load = _command(b"SCRIPT", b"LOAD", _arg(script.script))
                            reply = (await wire.request(load + payload, 2))[1]
                except (
                    redis.RedisError,
                    OSError,
                    trio.BrokenResourceError,
                    trio.ClosedResourceError,
                ) as exc:
                    self._discard(wire)
                    raise _translated(exc) from exc
                except trio.TooSlowError:
                    self._discard(wire)  # its reply may still come: never reuse it
                    raise BackendUnavailable("redis", "Timeout reading from socket") from None
                except BaseException:
                    self._discard(wire)
                    raise
                wire.idle_since = trio.current_time()
                self._wires.append(wire)
        if isinstance(reply, Exception):
            raise _translated(reply)
        return reply

    async def _wire(self) -> _Wire:
        """An idle connection, or a new one (one idle too long is replaced, not trusted)."""
        now = trio.current_time()
        while self._wires:
            wire = self._wires.pop()
            if now - wire.idle_since < HEALTH_CHECK_INTERVAL:
                return wire
            self._discard(wire)
        options = self._wire_options
        assert options is not None
        with trio.fail_after(options["socket_connect_timeout"]):
            stream = await trio.open_tcp_stream(options["host"], options["port"])
        wire = _Wire(stream)
        if options["socket_keepalive"]:
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        hello = []
        if options["password"] is not None:
            credentials = [options["password"]]
            if options["username"] is not None:
                credentials.insert(0, options["username"])
            hello.append(_command(b"AUTH", *(_arg(c) for c in credentials)))
        if options["db"]:
            hello.append(_command(b"SELECT", _arg(int(options["db"]))))
        if options["client_name"] is not None:
            hello.append(_command(b"CLIENT", b"SETNAME", _arg(options["client_name"])))
        if hello:
            try:
                for reply in await wire.request(b"".join(hello), len(hello)):
                    if isinstance(reply, Exception):
                        raise reply
            except BaseException:
                self._discard(wire)
                raise
        return wire

    def _discard(self, wire: _Wire | None) -> None:
        if wire is not None:
            wire.stream.socket.close()  # no await: closing must not wait on a dead peer

    async def ping(self) -> None:
        await self.run(self.client.ping)

    async def close(self) -> None:
        while self._wires:
            self._discard(self._wires.pop())
        await trio.to_thread.run_sync(self.client.close)


_WIRE_KEYS = frozenset(
    {
        "host",
        "port",
        "db",
        "username",
        "password",
        "socket_timeout",
        "socket_connect_timeout",
        "socket_keepalive",
        "client_name",
    }
)
#: Options of a plain pool that only redis-py's own connections act on, harmless to ours.
_WIRE_IGNORED = frozenset(
    {
        "health_check_interval",
        "retry",
        "retry_on_timeout",
        "retry_on_error",
        "encoding",
        "encoding_errors",
        "socket_keepalive_options",
        "himport_registry",
        "maint_notifications_pool_handler",
        "maint_notifications_config",
        "orig_host_address",
        "orig_socket_timeout",
        "orig_socket_connect_timeout",
    }
)


def _wire_options(client: redis.Redis) -> dict[str, Any] | None:
    """Where and how trio's own connections reach this client's server; None: use threads.

    Only a plain ``ConnectionPool`` of TCP ``Connection``s with options we
    understand qualifies; any other option (TLS, a credential provider,
    decoded replies, RESP3 push handlers...) keeps redis-py in charge.
    """
    pool = client.connection_pool
    if type(pool) is not redis.ConnectionPool or pool.connection_class is not redis.Connection:
        return None
    kwargs = pool.connection_kwargs
    if set(kwargs) - _WIRE_KEYS - _WIRE_IGNORED:
        return None
    options = {key: kwargs.get(key) for key in _WIRE_KEYS}
    options["host"] = options["host"] or "localhost"
    options["port"] = int(options["port"] or 6379)
    options["socket_timeout"] = options["socket_timeout"] or DEFAULT_SOCKET_TIMEOUT
    options["socket_connect_timeout"] = (
        options["socket_connect_timeout"] or options["socket_timeout"]
    )
    return options


def _split_host_port(text: str) -> tuple[str, int]:
    host, _, port = text.strip().rpartition(":")
    return host.strip("[]"), int(port)


def _fenced(exc: redis.ResponseError, epoch: int) -> FencedError | None:
    message = str(exc)
    if message.startswith("FENCED "):
        return FencedError(epoch, int(message.split()[1]))
    return None


# --------------------------------------------------------------------------- broker


class _OnRedis:
    """How the Broker and the Store reach Redis: opening, and running a script.

    Both are built as ``cls(connection, prefix, owns_connection=...)``; one
    that is handed a connection shares it (one pool, one limiter per node)
    and leaves closing it to its owner.
    """

    connection: RedisConnection
    _keys: list[str]

    @classmethod
    async def open(
        cls,
        url: str,
        prefix: str = "jobtrio",
        *,
        connection: RedisConnection | None = None,
        pool_size: int = DEFAULT_POOL_SIZE,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        **options: Any,
    ) -> Self:
        """Connects lazily: a node may start before Redis and catch up when it appears.

        ``options`` go to the constructor (the Broker's ``records``).
        """
        if connection is not None:
            return cls(connection, prefix, owns_connection=False, **options)
        conn = RedisConnection.from_url(url, pool_size=pool_size, socket_timeout=socket_timeout)
        return cls(conn, prefix, **options)

    @classmethod
    async def from_settings(
        cls, settings: Settings, *, connection: RedisConnection | None = None, **options: Any
    ) -> Self:
        if connection is not None:
            return cls(connection, settings.redis_key_prefix, owns_connection=False, **options)
        return cls(RedisConnection.from_settings(settings), settings.redis_key_prefix, **options)

    async def _call(self, script: Any, args: Sequence[Any]) -> Any:
        return await self.connection.script(script, self._keys, args)


class RedisBroker(_OnRedis, Broker):
    """The queue on Redis.

    With ``records=True`` the Broker also keeps the job records of a
    ``RedisStore`` on its prefix (a cluster on Redis alone): every script that
    moves a job writes the job's record and its indexes in the same atomic step,
    so the node's recorder has nothing left to copy. A separate Store write per
    move cost as much Redis time as the claim or the finish itself, and as
    much Python time again to encode; this way a record costs one HMGET and
    one HSET inside the move, and records and queue can never disagree.
    """

    name = "redis"

    def __init__(
        self,
        connection: RedisConnection,
        prefix: str = "jobtrio",
        *,
        owns_connection: bool = True,
        records: bool = False,
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self.records = records
        self._p = _hash_tag(prefix)
        self._keys = [self._p]
        self._owns = owns_connection
        client = connection.client
        head = ("local RECORD = true\n" if records else "local RECORD = false\n") + _LUA_PRELUDE

        def script(body: str) -> Any:
            return client.register_script(head + _LUA_RECORDS + _LUA_BROKER_COMMON + body)

        self._enqueue = script(_LUA_ENQUEUE)
        self._claim = script(_LUA_CLAIM)
        self._renew = script(_LUA_RENEW)
        self._finish = script(_LUA_FINISH)
        self._cancel = script(_LUA_CANCEL)
        self._retry = script(_LUA_RETRY)
        self._delete = script(_LUA_DELETE)
        self._get = script(_LUA_GET)
        self._running = script(_LUA_RUNNING)
        self._promote = script(_LUA_PROMOTE)
        self._requeue = script(_LUA_REQUEUE)
        self._purge = script(_LUA_PURGE)
        self._claim_tick = script(_LUA_CLAIM_TICK)
        self._layout = script(_LUA_LAYOUT)

    def writes_records_of(self, store: Store) -> bool:
        return (
            self.records
            and isinstance(store, RedisStore)
            and store.prefix == self.prefix
            and store.connection is self.connection
        )

    async def _leader_call(self, script: Any, args: Sequence[Any], epoch: int) -> Any:
        try:
            return await self._call(script, args)
        except redis.ResponseError as exc:
            fenced = _fenced(exc, epoch)
            if fenced is not None:
                raise fenced from None
            raise

    # -- producers --------------------------------------------------------------
    async def enqueue(self, jobs: Sequence[Job], now: float) -> list[Job]:
        if not jobs:
            return []
        statuses = [
            job.status if job.terminal else transitions.waiting_status(job, now) for job in jobs
        ]
        encoded = [_job_fields(job, status) for job, status in zip(jobs, statuses, strict=True)]
        args = [_num(now)]
        args += (
            _SEP.join(
                (
                    _check_name(job.id, "job id"),
                    _num(job.created_at),
                    f[0],  # the values the script reads: status, priority,
                    f[1],  # scheduled_at, version and key (see _LUA_ENQUEUE)
                    f[4],
                    f[13],
                    f[2],
                    body,
                    *f,
                    job.type,
                )
            )
            for job, (body, f) in zip(jobs, encoded, strict=True)
        )
        reply = (await self._call(self._enqueue, args)).split(_BSEP)
        return [
            Job.loads(held) if held else _stored_from_fields(body, fields)
            for (body, fields), held in zip(encoded, reply, strict=True)
        ]

    # -- workers ----------------------------------------------------------------
    async def claim(self, node_id: str, n: int, lease_seconds: float, now: float) -> list[Lease]:
        if n <= 0:
            return []
        expires_at = now + lease_seconds
        tokens = _SEP.join(new_token() for _ in range(n))
        args = [_num(now), json.dumps(node_id), _num(expires_at), str(n), tokens]
        reply = await self._call(self._claim, args)
        if not reply:
            return []
        leases = []
        for record in reply.decode().split(_RS):
            token, body, m = record.split(_SEP, 2)
            leases.append(Lease(_job(body, m), token, expires_at))
        return leases

    async def renew(
        self, leases: Sequence[tuple[str, str]], lease_seconds: float, now: float
    ) -> list[str]:
        if not leases:
            return []
        pairs = _SEP.join(
            _check_name(job_id, "job id") + _SEP + (token if _SEP not in token else "")
            for job_id, token in leases
        )
        reply = await self._call(self._renew, [_num(now + lease_seconds), pairs])
        return [i.decode() for i in _split(reply)]

    async def finish(self, items: Sequence[Finish], now: float) -> list[Job | None]:
        if not items:
            return []
        args = [_num(now)]
        for item in items:
            if item.outcome not in _FINISH_OUTCOMES:
                raise ValueError(f"unknown attempt outcome {item.outcome!r}")
            args.append(
                _SEP.join(
                    (
                        _check_name(item.job_id, "job id"),
                        item.token if _SEP not in item.token else "",  # never a live token
                        item.outcome,
                        "" if item.worker_id is None else json.dumps(item.worker_id),
                        _enc(item.result),
                        _enc(item.error),
                        "" if item.retry_at is None else _num(item.retry_at),
                    )
                )
            )
        out: list[Job | None] = []
        for record in (await self._call(self._finish, args)).decode().split(_RS):
            body, m = record.split(_SEP, 1)
            # lazily parsed: on the hot path it goes to the Store as this very document
            out.append(_stored_from_fields(body, m.split(_SEP)) if body else None)
        return out

    # -- operators ---------------------------------------------------------------
    async def cancel(self, job_id: str, now: float) -> Job | None:
        args = [_num(now), job_id, json.dumps(transitions.CANCELLED_ERROR)]
        reply = await self._call(self._cancel, args)
        return None if reply is None else Job.loads(reply)

    async def retry(self, job_id: str, now: float) -> Job | None:
        reply = await self._call(self._retry, [_num(now), job_id])
        if reply is None:
            return None
        if isinstance(reply, list):
            job = Job.loads(reply[1])
            raise StateConflict(job, f"job {job_id} is {job.status}, not failed or cancelled")
        return Job.loads(reply)

    async def delete(self, job_id: str) -> bool:
        return bool(await self._call(self._delete, [job_id]))

    async def get(self, job_id: str) -> Job | None:
        [doc] = await self._call(self._get, [job_id])
        return None if doc is None else Job.loads(doc)

    async def get_many(self, job_ids: Sequence[str]) -> dict[str, Job]:
        if not job_ids:
            return {}
        docs = await self._call(self._get, list(job_ids))
        return {i: Job.loads(d) for i, d in zip(job_ids, docs, strict=True) if d is not None}

    async def depths(self) -> dict[str, int]:
        client, key = self.connection.client, self._p + "counts"
        raw = await self.connection.run(lambda: client.hgetall(key))
        counts = {str(s): 0 for s in JobStatus}
        for status, n in raw.items():
            counts[_text(status)] = int(n)
        return counts

    async def running(self) -> list[Lease]:
        reply = await self._call(self._running, [])
        return [
            Lease(Job.loads(reply[i + 2]), _text(reply[i]), float(reply[i + 1]))
            for i in range(0, len(reply), 3)
        ]

    # -- leader duties -----------------------------------------------------------
    async def acquire_epoch(self, node_id: str, now: float) -> int:
        client, key = self.connection.client, self._p + "epoch"
        return int(await self.connection.run(lambda: client.incr(key)))

    async def current_epoch(self) -> int:
        client, key = self.connection.client, self._p + "epoch"
        value = await self.connection.run(lambda: client.get(key))
        return 0 if value is None else int(value)

    async def promote_due(self, now: float, epoch: int, limit: int = 1000) -> list[Job]:
        reply = await self._leader_call(self._promote, [_num(now), str(epoch), str(limit)], epoch)
        return [Job.loads(d) for d in reply]

    async def requeue_expired(
        self, now: float, epoch: int, poison_limit: int, limit: int = 1000
    ) -> list[Job]:
        template = transitions.POISON_ERROR.replace("{limit}", str(poison_limit))
        args = [
            _num(now),
            str(epoch),
            str(poison_limit),
            str(limit),
            json.dumps(template),
            json.dumps("lease expired"),
        ]
        reply = await self._leader_call(self._requeue, args, epoch)
        return [Job.loads(d) for d in reply]

    async def purge_finished(self, older_than: float, epoch: int, limit: int = 1000) -> int:
        args = [_num(older_than), str(epoch), str(limit)]
        return int(await self._leader_call(self._purge, args, epoch))

    async def claim_tick(self, name: str, tick: float, epoch: int) -> bool:
        args = [name, _num(float(tick)), str(epoch), str(TICKS_KEPT)]
        return bool(await self._leader_call(self._claim_tick, args, epoch))

    # -- life cycle ----------------------------------------------------------------
    async def ping(self) -> None:
        """Reachable, and laid out as this Broker expects (else ``/ready`` says why)."""
        await self._call(self._layout, [])

    async def close(self) -> None:
        if self._owns:
            await self.connection.close()


# --------------------------------------------------------------------------- store


class RedisStore(_OnRedis, Store):
    name = "redis"

    def __init__(
        self, connection: RedisConnection, prefix: str = "jobtrio", *, owns_connection: bool = True
    ) -> None:
        self.connection = connection
        self.prefix = prefix
        self._p = _hash_tag(prefix)
        self._keys = [self._p]
        self._owns = owns_connection
        client = connection.client
        self._put = client.register_script(_LUA_PRELUDE + _LUA_RECORDS + _LUA_STORE_PUT)
        self._delete = client.register_script(_LUA_STORE_DELETE)
        self._query = client.register_script(_LUA_STORE_QUERY)

    async def put_many(self, jobs: Sequence[Job]) -> None:
        for start in range(0, len(jobs), PUT_CHUNK):
            args: list[str] = []
            for job in jobs[start : start + PUT_CHUNK]:
                body, m, created = _record_parts(job)
                args.append(
                    _SEP.join(
                        (
                            _check_name(job.id, "job id"),
                            str(job.version),
                            str(job.status),
                            created,
                            body,
                            m,
                            job.type,
                        )
                    )
                )
            await self._call(self._put, args)

    async def get(self, job_id: str) -> Job | None:
        client, key = self.connection.client, self._p + "rec:" + job_id
        body, m = await self.connection.run(lambda: client.hmget(key, "b", "m"))
        return None if body is None else _job(_text(body), _text(m))

    async def query(self, query: JobQuery) -> Page:
        if query.statuses is not None and not query.statuses:
            return Page([], None)
        want = query.limit + 1
        fixed = [
            "" if query.created_after is None else _num(query.created_after),
            "" if query.created_before is None else _num(query.created_before),
            query.type or "",
        ]
        if query.statuses is None:
            fixed.append("-1")
        else:
            fixed.append(str(len(query.statuses)))
            fixed.extend(sorted(str(s) for s in query.statuses))
        cursor = query.cursor or ""
        raw: list[bytes] = []  # b and m of each record found
        while True:
            args = [cursor, str(want - len(raw) // 2), str(QUERY_BUDGET), *fixed]
            reply = await self._call(self._query, args)
            raw += reply[2:]
            if len(raw) >= 2 * want or reply[1] == b"1":
                break
            cursor = _text(reply[0])
        jobs = [
            _job(raw[i].decode(), raw[i + 1].decode())
            for i in range(0, min(len(raw), 2 * query.limit), 2)
        ]
        more = len(raw) > 2 * query.limit
        return Page(jobs, jobs[-1].id if more and jobs else None)

    async def delete(self, job_id: str) -> bool:
        return bool(await self._call(self._delete, [job_id]))

    async def count_by_status(self) -> dict[str, int]:
        client, p = self.connection.client, self._p
        names = [str(s) for s in JobStatus]

        def count() -> list[int]:
            pipe = client.pipeline(transaction=False)
            for name in names:
                pipe.zcard(p + "rec-st:" + name)
            return pipe.execute()

        return dict(zip(names, await self.connection.run(count), strict=True))

    async def put_node(self, node: NodeRecord) -> None:
        client, key = self.connection.client, self._p + "nodes"
        text = json.dumps(asdict(node), separators=(",", ":"))
        await self.connection.run(lambda: client.hset(key, node.node_id, text))

    async def list_nodes(self) -> list[NodeRecord]:
        client, key = self.connection.client, self._p + "nodes"
        raw = await self.connection.run(lambda: client.hvals(key))
        return sorted((NodeRecord(**json.loads(v)) for v in raw), key=lambda n: n.node_id)

    async def delete_node(self, node_id: str) -> bool:
        client, key = self.connection.client, self._p + "nodes"
        return bool(await self.connection.run(lambda: client.hdel(key, node_id)))

    async def add_election(self, record: dict[str, Any]) -> None:
        client, key = self.connection.client, self._p + "elections"
        text = json.dumps(record, separators=(",", ":"))

        def add() -> None:
            pipe = client.pipeline(transaction=True)
            pipe.lpush(key, text)
            pipe.ltrim(key, 0, ELECTIONS_KEPT - 1)
            pipe.execute()

        await self.connection.run(add)

    async def list_elections(self, limit: int = 50) -> list[dict[str, Any]]:
        if limit <= 0:
            return []
        client, key = self.connection.client, self._p + "elections"
        raw = await self.connection.run(lambda: client.lrange(key, 0, limit - 1))
        return [json.loads(r) for r in raw]

    async def put_schedule(self, schedule: dict[str, Any]) -> None:
        client, key = self.connection.client, self._p + "schedules"
        text = json.dumps(schedule, separators=(",", ":"))
        await self.connection.run(lambda: client.hset(key, schedule["name"], text))

    async def list_schedules(self) -> list[dict[str, Any]]:
        client, key = self.connection.client, self._p + "schedules"
        raw = await self.connection.run(lambda: client.hgetall(key))
        return [json.loads(raw[name]) for name in sorted(raw)]

    async def delete_schedule(self, name: str) -> bool:
        client, key = self.connection.client, self._p + "schedules"
        return bool(await self.connection.run(lambda: client.hdel(key, name)))

    async def ping(self) -> None:
        await self.connection.ping()

    async def close(self) -> None:
        if self._owns:
            await self.connection.close()


__all__ = ["RedisBroker", "RedisConnection", "RedisStore"]
