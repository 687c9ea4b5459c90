--@include layout_ids
-- Store records (the RedisStore's ``P job:<id>``, the key of the Broker's job hash too): a
-- job's b and m (its status and version too) with t (type) and c (created_at text) beside
-- them for the indexes. The Store's put script writes them; a Broker
-- keeping the records itself (RECORD) keeps its jobs in these very hashes, marked q while
-- it holds them, and files them under their status as it moves them. Index changes are queued and
-- applied with one ZADD or ZREM per index by records_flush(): one redis.call per index
-- and record cost more than the record's own HMGET and HSET. A record repeating an id
-- applies the queue first, so the moves of one id keep their order.
local R = {add = {}, rem = {}, seen = {}} --@state

local function rq(t, key, a, b)
  local l = t[key]
  if not l then
    l = {}
    t[key] = l
  end
  l[#l + 1] = a
  if b then l[#l + 1] = b end
end

-- The running index holds about as many records as the nodes hold jobs (a few hundred at
-- most), and Redis encodes a sorted set of up to 128 short members as a listpack, where
-- every insert and removal walks the whole list: 7% of a drain's Redis instructions
-- went into the running index's. So an add to it starts with WIDE, a member longer than
-- 64 bytes: Redis converts the set to its skiplist (or keeps it there), where it stays
-- until it is empty, and WIDE is removed in the same flush, so no reader ever sees it.
local WIDE = '\31jobtrio adds this member for a moment: Redis then keeps the index out of the listpack encoding'
local RUNNING = P .. 'rec-st:running'

local function records_flush()
  for key, l in pairs(R.rem) do
    for i = 1, #l, 1000 do redis.call('ZREM', key, unpack(l, i, math.min(i + 999, #l))) end
  end
  for key, l in pairs(R.add) do
    if key == RUNNING then
      redis.call('ZADD', key, '0', WIDE, unpack(l, 1, math.min(1000, #l)))
      redis.call('ZREM', key, WIDE)
      for i = 1001, #l, 1000 do redis.call('ZADD', key, unpack(l, i, math.min(i + 999, #l))) end
    else
      for i = 1, #l, 1000 do redis.call('ZADD', key, unpack(l, i, math.min(i + 999, #l))) end
    end
  end
  R.add, R.rem, R.seen = {}, {}, {}
end

-- an index's key, made once a script: a string built per job and index cost more than
-- queueing the entry
local RKEYS = {} --@cache
local function rkey(kind, name)
  local keys = RKEYS[kind]
  if not keys then
    keys = {}
    RKEYS[kind] = keys
  end
  local key = keys[name]
  if not key then
    key = P .. kind .. name
    keys[name] = key
  end
  return key
end

-- Moves a record between status indexes (queued). A record whose add to old's index is
-- the last one queued there (filed in this call and not flushed: enqueue_claim.lua's job
-- its claim takes) has that add moved to new's index instead, unsent.
local function refile(id, old, new)
  if R.seen[id] then
    local key = old and rkey('rec-st:', old)
    local l = key and R.add[key]
    if l and l[#l] == id then
      local n = #l
      l[n], l[n - 1] = nil, nil
      if n == 2 then R.add[key] = nil end
      rq(R.add, rkey('rec-st:', new), '0', id)
      return
    end
    records_flush()
  end
  R.seen[id] = true
  if old then rq(R.rem, rkey('rec-st:', old), id) end
  rq(R.add, rkey('rec-st:', new), '0', id)
end

-- Files a whole record written over cur = {v, s, t, c} of the one it replaces (all
-- nil for a new record) under every index that changed. Every record is in exactly one
-- status index, so their union is the index of all records (store_query.lua merges
-- them): a rec-all index beside them cost an enqueue 7% more Redis instructions.
local function file_record(id, cur, s, t, c)
  if R.seen[id] then records_flush() end
  R.seen[id] = true
  if cur[2] ~= s then
    if cur[2] then rq(R.rem, rkey('rec-st:', cur[2]), id) end
    rq(R.add, rkey('rec-st:', s), '0', id)
  end
  if cur[3] ~= t then
    if cur[3] then rq(R.rem, rkey('rec-ty:', cur[3]), id) end
    rq(R.add, rkey('rec-ty:', t), '0', id)
  end
  -- the created_at index holds only the records whose id does not tell their time
  -- (layout.ID_ALPHABET): the others a window finds as a range of ids
  if cur[4] ~= c and not created_by_id(id, c) then rq(R.add, rkey('rec-created', ''), c, id) end
end

-- A record's status and version are the ones m holds (S, V): the v and s an earlier
-- layout wrote beside m are neither written nor read (layout.RETIRED_FIELDS)
local VPAT = '^' .. string.rep('[^\31]*\31', V - 1) .. '([^\31]*)'

-- The Store's put: write a whole snapshot unless the one held is newer, or unless the
-- Broker holds the job in this very hash (q: a Broker keeping the records moves it
-- itself, and its copy is never older than one handed out). Returns false when a Broker
-- that does not keep the records holds the hash (q is not HELD_WITH_RECORDS, and no v
-- beside it, as an earlier layout marked one that does): the two share a prefix they
-- cannot share, and the caller is told.
local function put_record(id, v, s, b, m, t, c)
  local key = P .. 'job:' .. id
  local cur = redis.call('HMGET', key, 'm', 't', 'c', 'q', 'v')
  if cur[4] then return cur[4] == HELD_WITH_RECORDS or cur[5] ~= false end
  local old = cur[1]
  if old and tonumber(v) < tonumber(string.match(old, VPAT)) then return true end
  redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c)
  file_record(id, {false, old and string.match(old, '^[^\31]*'), cur[2], cur[3]}, s, t, c)
  return true
end
