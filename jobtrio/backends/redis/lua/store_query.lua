-- Newest first below a cursor, filtered, examining at most `budget` ids.
-- ARGV: cursor ('' = newest), want, budget, created_after, created_before, type,
--       owner as its JSON text, queue as its JSON text ('' = any of the five), number of
--       statuses (-1 = any), statuses...
-- Returns {last id examined, '1' if nothing is left below it else '0', then b and m of
-- each record found}.
--@include prelude
--@include layout_ids
local cursor, want, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local after, before = tonumber(ARGV[4]), tonumber(ARGV[5])
local jtype = ARGV[6]
if jtype == '' then jtype = nil end
local owner = ARGV[7]
if owner == '' then owner = nil end
local queue = ARGV[8]
if queue == '' then queue = nil end
local nstatus = tonumber(ARGV[9])
local statuses, skeys = nil, {}
if nstatus >= 0 then
  statuses = {}
  for i = 10, 9 + nstatus do
    statuses[ARGV[i]] = true
    skeys[#skeys + 1] = P .. 'rec-st:' .. ARGV[i]
  end
end
local TMP = P .. 'rec-tmp'
local STATUSES = {'pending', 'scheduled', 'running', 'retrying', 'completed', 'failed',
                  'cancelled', 'waiting'}
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

-- every record is in exactly one status index: all records are their union (the status
-- indexes that exist), merged below as a filter on several statuses is
local function every_status()
  local keys = {}
  for _, s in ipairs(STATUSES) do
    local key = P .. 'rec-st:' .. s
    if redis.call('EXISTS', key) == 1 then keys[#keys + 1] = key end
  end
  return keys
end

local streams
if jtype then
  local tkey = P .. 'rec-ty:' .. jtype
  if statuses and size(skeys) < redis.call('ZCARD', tkey) then streams = skeys
  else streams = {tkey} end
elseif statuses then
  streams = skeys
else
  streams = every_status()
end

-- whether the body b holds `value` (JSON text) at its field `mark` (',"owner":'): that
-- field's mark is the last one in b, since what follows the payload (the one field that
-- may spell a name) never spells one (ids, names and numbers); a JSON string ends at a
-- raw quote
local function holds(b, mark, value)
  local at, from = nil, 1
  while true do
    local s, e = string.find(b, mark, from, true)
    if not s then break end
    at, from = e, s + 1
  end
  if not at then return false end
  local after_value = string.sub(b, at + #value + 1, at + #value + 1)
  return string.sub(b, at + 1, at + #value) == value and (after_value == '' or after_value == ',')
end

local found = {}
local function consider(id)
  -- the status leads m (layout.RETIRED_FIELDS)
  local f = redis.call('HMGET', P .. 'job:' .. id, 'm', 't', 'c')
  if not f[1] then return end
  if statuses and not statuses[string.match(f[1], '^[^\31]*')] then return end
  if jtype and f[2] ~= jtype then return end
  local c = tonumber(f[3])
  if after and c < after then return end
  if before and c >= before then return end
  local b = redis.call('HGET', P .. 'job:' .. id, 'b')
  if owner and not holds(b, ',"owner":', owner) then return end
  if queue and not holds(b, ',"queue":', queue) then return end
  found[#found + 1] = b
  found[#found + 1] = f[1]
end

-- a member longer than 64 bytes, named with \31 (no id holds it): added first, it makes
-- Redis build the scratch set as a skiplist, not a listpack, where each of the first 128
-- inserts walks the list (two thirds of an unfiltered page's Redis instructions)
local WIDE = '\31jobtrio adds this member for a moment: Redis then keeps the set out of the listpack encoding'

local function sorted_desc(ids, max, min)
  -- order ids newest first through a scratch sorted set (score 0: byte order)
  redis.call('DEL', TMP)
  if #ids == 0 then return {} end
  for i = 1, #ids, 500 do
    local args = {}
    if i == 1 then args[1] = 0; args[2] = WIDE end
    for k = i, math.min(i + 499, #ids) do args[#args + 1] = 0; args[#args + 1] = ids[k] end
    redis.call('ZADD', TMP, unpack(args))
  end
  redis.call('ZREM', TMP, WIDE)
  local out = redis.call('ZREVRANGEBYLEX', TMP, max, min)
  redis.call('DEL', TMP)
  return out
end

local top = '+'
if cursor ~= '' then top = '(' .. cursor end

-- a narrow creation window: read it from the created_at index and, for the records whose
-- id tells their created_at (not in that index: layout.ID_ALPHABET), as the range of ids
-- made in it from the streams, instead of scanning. The range holds every such record
-- created in the window (floor(c * 1000) is within floor(after * 1000) and
-- floor(before * 1000) when c is within after and before), and others, which consider()
-- refuses by their created_at as the scan would; an id in both (filed before the index
-- left such records out) is read once.
if after or before then
  local lo, hi = '-inf', '+inf'
  local idlo, idhi = '-', '+'
  if after then
    lo = ARGV[4]
    local ms = math.floor(after * 1000)
    if ms >= ID_TIMES then idlo = '+' elseif ms > 0 then idlo = '[' .. id_time_bound(ms) end
  end
  if before then
    hi = '(' .. ARGV[5]
    local ms = math.floor(before * 1000) + 1
    if ms <= 0 then idhi = '-' elseif ms < ID_TIMES then idhi = '(' .. id_time_bound(ms) end
  end
  local count = redis.call('ZCOUNT', P .. 'rec-created', lo, hi)
  for _, key in ipairs(streams) do
    count = count + redis.call('ZLEXCOUNT', key, idlo, idhi)
  end
  if count <= WINDOW_MAX and count < size(streams) then
    local ids = redis.call('ZRANGEBYSCORE', P .. 'rec-created', lo, hi)
    for _, key in ipairs(streams) do
      for _, id in ipairs(redis.call('ZRANGEBYLEX', key, idlo, idhi)) do ids[#ids + 1] = id end
    end
    ids = sorted_desc(ids, top, '-')
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
-- whether consider() may refuse ids of the merged streams (a status filter never does:
-- those streams are its own indexes)
local refusing = owner or queue or jtype or after or before
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
    -- filled its piece, that stream may hold ids not fetched yet, so stop there. A
    -- piece is at most the records still wanted: of each stream's piece only the ids
    -- above the bound are used, and an unfiltered page merges every status index
    -- (ZLEXCOUNT tells how many of a piece are, without comparing ids in Lua); a piece
    -- that alone holds them all is in order already, else they are sorted together. With
    -- a filter that may refuse records (owner, queue, type, created), the pieces are
    -- whole chunks: a piece of the few records still wanted examined one or two ids an
    -- iteration, each iteration 8 reads, 8 counts and a sort, when most ids are refused
    local piece = chunk
    if not refusing then piece = math.min(chunk, want - #found / 2) end
    local parts, bound = {}, nil
    exhausted = true
    for _, key in ipairs(streams) do
      local part = redis.call('ZREVRANGEBYLEX', key, max, '-', 'LIMIT', 0, piece)
      if #part > 0 then parts[#parts + 1] = {key, part} end
      if #part == piece then
        exhausted = false
        if bound == nil or lt(bound, part[#part]) then bound = part[#part] end
      end
    end
    local used = {}
    for _, p in ipairs(parts) do
      local part = p[2]
      local n = #part
      if bound and part[n] ~= bound then n = redis.call('ZLEXCOUNT', p[1], '[' .. bound, max) end
      if n > 0 then used[#used + 1] = {part, n} end
    end
    if #used == 1 then
      ids = {unpack(used[1][1], 1, used[1][2])}
    else
      local all = {}
      for _, u in ipairs(used) do
        for i = 1, u[2] do all[#all + 1] = u[1][i] end
      end
      ids = sorted_desc(all, '+', '-')
    end
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
