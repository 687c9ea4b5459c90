-- One job of an enqueue's three arguments (header h, b, m: see enqueue.lua) filed: returns '' when stored as sent,
-- else the document of the job that holds its idempotency key. Shared by enqueue,
-- restore and fire_tick, so the three file a job the same way.
local NR = #ENQUEUE_READS
local NONE = {false, false, false, false, false}
local NEW = {} -- the indexes a new record is filed over: none (file_record only reads it)
-- The hash's queue field, none for the default queue: every reader takes an absent u as
-- 'default' (jobs enqueued before queues have none), and a field less is 1-2% less of an
-- enqueue. Returns nothing then, so as the last argument of a call it adds none.
local function queue_field(u)
  if u ~= 'default' then return 'u', u end
end
-- A job's header may be \31 and its id (no id holds \31, and no MessagePack array
-- starts with it): the job's other header values (created_at, the reads, queue, type)
-- are then those of the last full header of the same call, which the caller sends
-- first (codec.enqueue_args_many: a batch's jobs mostly share them). A full header's
-- values are 8 Lua strings and a cmsgpack call a job. Any other header is unpacked as
-- before (a malformed one fails the call).
-- Likewise m may be '' (no job's m is: it joins NF values): the m of the job before.
-- The last full header's job table and created_at, and the last m sent: of this call
-- only (--@cache: a library resets them as each call starts; its Lua state outlives
-- the call, and no call may take what the call before it sent).
local LAST_J, LAST_C, LAST_M = nil, nil, nil --@cache
local function enqueue_one(h, b, m, now)
  if m ~= '' then
    LAST_M = m
  else
    m = LAST_M
    if not m then error('an enqueue m of none before any sent') end
  end
  local j, c
  if string.byte(h, 1) ~= 31 then
    j, c = enqueue_job(h)
    LAST_J, LAST_C = j, c
  else
    -- the last full header's table with the id set (no table a job): enqueue_one keeps
    -- no job table past its return
    j, c = LAST_J, LAST_C
    if not j then error('an enqueue header of an id alone before any full one') end
    j.id = string.sub(h, 2)
  end
  local id, t, u, k = j.id, j.t, j.u, j[K]
  local held = false
  if k ~= '' then
    held = redis.call('HGET', K_IDEM, k)
    if held and redis.call('HEXISTS', jkey(held), 'q') == 0 then held = false end
  end
  if held then return doc(load(held)) end
  local key = jkey(id)
  -- a new id (the usual) costs one EXISTS: an HMGET of five fields cost more
  local old = NONE
  if redis.call('EXISTS', key) == 1 then old = redis.call('HMGET', key, 'q', 'm', 't', 'c', 'u') end
  if old[1] then -- the same id again replaces the job, as the reference broker does
    unplace({id = id, t = old[3], u = old[5] or 'default'})
    count(status_of(old[2]), -1)
  end
  if old[2] then redis.call('DEL', key) end
  if RECORD then
    redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', HELD_WITH_RECORDS,
               queue_field(u))
    if old[2] then
      file_record(id, {'', status_of(old[2]), old[3], old[4]}, j[S], t, c)
    else
      file_record(id, NEW, j[S], t, c)
    end
  else
    redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', '1', queue_field(u))
  end
  if k ~= '' then
    redis.call('HSET', key, 'k', k)
    redis.call('HSET', K_IDEM, k, id)
  end
  count(j[S], 1)
  place(j, now)
  -- a job with dependencies is sent 'waiting': its parents decide (dependencies.lua)
  if j[S] == 'waiting' then attach(load(id), now) end
  return ''
end
