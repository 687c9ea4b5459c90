--@include prelude
--@include layout
--@include records
-- one pending set per (queue, type), 'pending:' .. queue .. \31 .. type, and the set of the
-- (queue \31 type) members that may have pending jobs: a claim reads only the sets of the
-- queues it serves and the types it can run (a job nobody can run waits, never fails)
local K_PENDING = P .. 'pending:'
local K_PQS = P .. 'pqs'
local K_PAUSED = P .. 'paused'
local K_LIMITS = P .. 'limits'
local K_RATE = P .. 'rate'
local K_DELAYED = P .. 'delayed'
local K_LEASES = P .. 'leases'
local K_TOKENS = P .. 'tokens'
local K_FINISHED = P .. 'finished'
local K_IDEM = P .. 'idem'
local K_SEQ = P .. 'seq'
local K_COUNTS = P .. 'counts'
local K_EPOCH = P .. 'epoch'
local K_TOMBS = P .. 'tombs'
local K_TOMBS_AT = P .. 'tombs_at'
local SEP = '\31'
local RS = '\30' -- between the records of a reply whose records hold \31

-- The leases and their tokens are a sorted set and a hash of about as many members as a
-- node holds jobs (WORKER_COUNT plus a claim's batch: 110 by default), and Redis encodes a
-- set or hash of up to 128 short members as a listpack, where every insert, lookup and
-- removal walks the list, and a sorted set's insert parses each float score it passes
-- (strtod: 20% of Redis's instructions in a drain). A member longer than 64 bytes makes
-- Redis use its skiplist and hash table instead, which it keeps until the key is empty,
-- so the claim leaves this one in both: a lease that never expires (score +inf) with a
-- token no finish can match, named with \31, which no job id holds (the codec refuses it).
local KEEP_TABLE = '\31jobtrio keeps this member here: Redis then keeps the set out of the listpack encoding'

-- A job hash holds b (the immutable body), k (the idempotency key as JSON, if any) and m:
-- the mutable values (layout.py declares them; S, PR, ... above index them) joined by \31.
-- A move reads two fields and writes one, and a loaded job is an array filled by one
-- string.match: per-field hash commands and Lua tables grown key by key cost more than
-- the rest of a claim. '' marks an absent value: no idempotency key (K), no open attempt
-- (AON, AOW, AOS).
local STATUSES = {'pending', 'scheduled', 'running', 'retrying', 'completed', 'failed',
                  'cancelled', 'waiting'}
local TERMINAL = {completed = true, failed = true, cancelled = true}

-- One key per job whatever the Store: a Broker keeping the Store's records (RECORD) keeps
-- each job in its record, this very hash (m is the record's status and version too), and
-- files the record's indexes as it moves it (see records.lua); without it only the job's.
local JOBS = P .. 'job:'
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
-- (unplace) flush, and the batched moves touch each job once. The pending placements
-- are kept in order (their sequence numbers are taken in it), four values a job (id,
-- priority, queue, type); the delayed and finished sets' entries as the flat (score,
-- id) lists ZADD takes: a table a job cost more.
local Q = {delta = {}, place = {}, delayed = {}, finished = {}} --@state

local function queue_pending(id, prio, queue, t)
  local p = Q.place
  local n = #p
  p[n + 1], p[n + 2], p[n + 3], p[n + 4] = id, prio, queue, t
end

local function zadd_many(key, args)
  for i = 1, #args, 1000 do
    redis.call('ZADD', key, unpack(args, i, math.min(i + 999, #args)))
  end
end

local function pkey(queue, t) return K_PENDING .. queue .. '\31' .. t end

-- A pending score's text, written here: a Lua number passed to redis.call is written
-- by Redis with snprintf('%.17g') (3.8k Redis instructions a job, 4.5% of an enqueue),
-- where this costs two table reads and one concatenation: the hundreds (from HUNDREDS,
-- made once each a call: a batch's scores are consecutive) and the last two digits (one
-- of the 100 texts '00' .. '99', made once for the library: a table of 1,000 texts kept
-- by the library cost the drain 1% more, Lua's collector walking them at every cycle).
-- Scores below 100 or past 2^53 (none the pending sets hold) go as numbers.
local D2 = nil
local HUNDREDS = {} --@cache
local function score_text(n)
  if n < 100 or n >= 9007199254740992 then return n end
  if not D2 then
    D2 = {}
    for i = 0, 99 do D2[i] = string.format('%02d', i) end
  end
  local low = n % 100
  local high = (n - low) / 100
  local h = HUNDREDS[high]
  if not h then
    h = string.format('%d', high)
    HUNDREDS[high] = h
  end
  return h .. D2[low]
end

-- The placements alone (the pending, delayed and finished sets), the counts and the
-- records' indexes left queued: what a claim in the same call reads is in place, and a job
-- it takes at once is counted and filed as running only (enqueue_claim.lua: a pending
-- count up and down and a record filed as pending then moved cost four commands).
local function flush_places()
  local p = Q.place
  local n = #p / 4
  local seq = 0
  if n > 0 then seq = redis.call('INCRBY', K_SEQ, n) - n end
  -- each pending set's (score, id) list, found by queue then type (no name made a job);
  -- a score goes as its text (score_text)
  local sets, pend_keys, lists = {}, {}, {}
  for i = 1, #p, 4 do
    seq = seq + 1
    local queue, t = p[i + 2], p[i + 3]
    local by_type = sets[queue]
    if not by_type then
      by_type = {}
      sets[queue] = by_type
    end
    local args = by_type[t]
    if not args then
      args = {}
      by_type[t] = args
      pend_keys[#pend_keys + 1] = queue .. '\31' .. t
      lists[#lists + 1] = args
    end
    local k = #args
    args[k + 1] = score_text((10 - p[i + 1]) * BAND + seq)
    args[k + 2] = p[i]
  end
  for i, member in ipairs(pend_keys) do
    zadd_many(K_PENDING .. member, lists[i])
  end
  if #pend_keys > 0 then redis.call('SADD', K_PQS, unpack(pend_keys)) end
  zadd_many(K_DELAYED, Q.delayed)
  zadd_many(K_FINISHED, Q.finished)
  Q.place, Q.delayed, Q.finished = {}, {}, {}
end

local function flush()
  flush_places()
  for _, s in ipairs(STATUSES) do
    local d = Q.delta[s]
    if d and d ~= 0 then redis.call('HINCRBY', K_COUNTS, s, d) end
  end
  Q.delta = {}
  if RECORD then records_flush() end
end

local function count(s, d) Q.delta[s] = (Q.delta[s] or 0) + d end

-- file a job under its status's index (MemoryBroker._place); the caller has unfiled it
local function place(j, now)
  local s = j[S]
  if s == 'pending' then
    queue_pending(j.id, tonumber(j[PR]), j.u, j.t)
  elseif s == 'scheduled' or s == 'retrying' then
    local at = j[SA]
    if at == 'null' then at = now end
    local d = Q.delayed
    local n = #d
    d[n + 1] = at
    d[n + 2] = j.id
  elseif TERMINAL[s] then
    local f = Q.finished
    local n = #f
    f[n + 1] = now
    f[n + 2] = j.id
  end
end

-- j: the job as load() gives it (its queue u and type t name its pending set)
local function unplace(j)
  local id = j.id
  flush()
  redis.call('ZREM', pkey(j.u, j.t), id)
  redis.call('ZREM', K_DELAYED, id)
  redis.call('ZREM', K_LEASES, id)
  redis.call('HDEL', K_TOKENS, id)
  redis.call('ZREM', K_FINISHED, id)
end

-- a job the Broker holds (q: a record the Broker let go of stays behind without it), with
-- its type (t) and queue (u: absent on a job enqueued before queues, which is 'default')
local function load(id)
  local v = redis.call('HMGET', jkey(id), 'b', 'm', 'q', 't', 'u')
  if not v[3] then return nil end
  -- one constructor: a key added after it rehashes the table (its 23 values too)
  return {id = id, b = v[1], t = v[4], u = v[5] or 'default', string.match(v[2], MPAT)}
end

-- a job the Broker holds, for a move that files it under no pending set (the claim takes
-- it to running, the finish mostly to an end): without its type and queue, two fields
-- fewer of the HMGET (3.5k of its 18.7k Redis instructions). j.t and j.u are nil: a move
-- that does file it by them reads them first (with_type_and_queue).
local function load_moving(id)
  local v = redis.call('HMGET', jkey(id), 'b', 'm', 'q')
  if not v[3] then return nil end
  return {id = id, b = v[1], string.match(v[2], MPAT)}
end

-- The jobs a claim leased, as it wrote them, for the finish that ends their attempt: the
-- claim, enqueue_claim and finish share one library (scripts.GROUPS), whose top-level
-- tables live from one call to the next. MEMO maps a job's id to the job table the claim
-- saved, its m beside the values (.m); a finish that finds the job's m still exactly that
-- text takes the values as they are instead of cutting m again (string.match of NF
-- captures: 22k Redis instructions, a tenth of a drain's). The values are what m holds,
-- whatever the entry's age: anything that wrote m since (a progress report, a requeue, a
-- node with another version) only makes a miss. A lease that ends other than by a finish
-- (it expired, the job was cancelled) leaves its entry: past MEMO_MAX of them the memo
-- is dropped whole. Run as a script (EVALSHA) the memo is new every call: every finish
-- misses.
local MEMO, MEMO_N, MEMO_MAX = {}, 0, 4096
-- Its Lua memory is outside Redis's maxmemory: at most MEMO_BYTES_MAX of m (4 MB: about
-- twice that kept, the values beside m), and no job whose m is over MEMO_TEXT_MAX (a
-- job holding its dependencies' results: its parse is a small share of its move).
local MEMO_BYTES, MEMO_BYTES_MAX, MEMO_TEXT_MAX = 0, 4194304, 65536

-- the entry of id out of the memo, and its m out of the count
local function forget(id)
  local j = MEMO[id]
  if j then
    MEMO[id] = nil
    MEMO_N = MEMO_N - 1
    MEMO_BYTES = MEMO_BYTES - #j.m
  end
  return j
end

local function remember(j, m)
  local size = #m
  forget(j.id) -- an entry of an earlier lease of the job: never taken now (its m differs)
  if size > MEMO_TEXT_MAX then return end
  if MEMO_N >= MEMO_MAX or MEMO_BYTES + size > MEMO_BYTES_MAX then
    MEMO, MEMO_N, MEMO_BYTES = {}, 0, 0
  end
  MEMO_N = MEMO_N + 1
  MEMO_BYTES = MEMO_BYTES + size
  j.b, j.m = nil, m -- not its body: read again by the finish, which answers it
  MEMO[j.id] = j
end

-- load_moving(id) for the finish: the claim's job table when m is still what it wrote
local function load_finishing(id)
  local v = redis.call('HMGET', jkey(id), 'b', 'm', 'q')
  local j = forget(id)
  if not v[3] then return nil end
  if j and j.m == v[2] then
    j.b, j.m, j.t, j.u = v[1], nil, nil, nil
    return j
  end
  return {id = id, b = v[1], string.match(v[2], MPAT)}
end

local function with_type_and_queue(j)
  local v = redis.call('HMGET', jkey(j.id), 't', 'u')
  j.t, j.u = v[1], v[2] or 'default'
end

-- m is the record's status and version too (layout.RETIRED_FIELDS): one field written
local function save(j)
  local m = table.concat(j, SEP, 1, NF)
  redis.call('HSET', jkey(j.id), 'm', m)
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

-- The text of the count one more than text's (a version, an attempt number, a retry
-- count), remembered for the script's run: tonumber and string.format cost 2.5k Redis
-- instructions a count, 4% of a drain, and a batch's jobs mostly share their counts.
local NEXT = {} --@cache
local function next_count(text)
  local s = NEXT[text]
  if not s then
    s = int(tonumber(text) + 1)
    NEXT[text] = s
  end
  return s
end

local function touch(j, now)
  j[UA] = now
  j[V] = next_count(j[V])
end

-- dependencies.lua: settles the jobs waiting for j, which just ended (nil for the status:
-- j's own); defined there, after the helpers it needs
local release_dependents

-- the end of every move that leaves a job on an index: stamped, written, filed under its
-- (new) status; returns m as written. A job that ended releases its dependents in the
-- same move (dependencies.lua), so none is released twice or left waiting.
local function commit(j, now)
  touch(j, now)
  local m = save(j)
  place(j, now)
  if j[DEP] ~= '[]' and TERMINAL[j[S]] then release_dependents(j, now) end
  return m
end

-- append one JSON text to a JSON array text
local function append(arr, item)
  if arr == '[]' then return '[' .. item .. ']' end
  return string.sub(arr, 1, -2) .. ',' .. item .. ']'
end

local function open_text(j)
  return '[' .. j[AON] .. ',' .. j[AOW] .. ',' .. j[AOS] .. ',null,null,null]'
end

-- the attempts as the document's JSON array, the open one last
local function attempts_text(j)
  if j[AON] == '' then return j[ATT] end
  return append(j[ATT], open_text(j))
end

--@include layout_doc

local function drop_open_attempt(j)
  j[AON], j[AOW], j[AOS] = '', '', ''
end

-- transitions._close_attempt: only a trailing open attempt is closed
local function close_attempt(j, now, outcome_json, error_json, worker_json)
  if j[AON] ~= '' then
    local closed = '[' .. j[AON] .. ',' .. (worker_json or j[AOW]) .. ',' .. j[AOS] .. ','
      .. now .. ',' .. outcome_json .. ',' .. error_json .. ']'
    j[ATT] = append(j[ATT], closed)
    j[AN] = next_count(j[AN])
    drop_open_attempt(j)
  end
end

local function open_attempt(j, now, node_json)
  if j[AON] ~= '' then
    -- an attempt left open by whoever enqueued the job stays in the history as it was
    j[ATT] = append(j[ATT], open_text(j))
    j[AN] = next_count(j[AN])
  end
  j[AON] = next_count(j[AN]) .. ',' .. node_json
  j[AOW] = 'null'
  j[AOS] = now
end

-- The Broker's own clock (Redis TIME) as Unix seconds text. A Broker with server_clock
-- takes every lease and promotion decision on it, so no two nodes' clocks are ever
-- compared (a leader ahead of a worker cannot reap its healthy lease).
local function server_now()
  local t = redis.call('TIME')
  return string.format('%d.%06d', tonumber(t[1]), tonumber(t[2]))
end

-- the lease expiry: the caller's, or lease seconds on the server's clock (at server_now,
-- read here unless the caller read it already: a claim's rates use the same instant)
local function lease_expiry(caller_expiry, lease_seconds, server_time)
  if lease_seconds and lease_seconds ~= '' then
    return string.format('%.6f', tonumber(server_time or server_now()) + tonumber(lease_seconds))
  end
  return caller_expiry
end

local function fenced(epoch)
  local current = tonumber(redis.call('GET', K_EPOCH) or '0')
  if tonumber(epoch) < current then
    return redis.error_reply('FENCED ' .. int(current))
  end
  return nil
end

--@include dependencies
