--@include broker_common
-- ARGV: older_than, epoch, limit, tombstones before ('' = keep them all), which ('' = the
-- jobs finished before older_than, at most limit; '1' = exactly those of ARGV[6]), and
-- ARGV[6]: id \31 version \31 id \31 version ... (Broker.purge_finished's only): each is
-- dropped only while the Broker holds it finished at that version.
-- Each purged job leaves a tombstone (status \31 version \31 finished at) in K_TOMBS,
-- indexed by its finish time in K_TOMBS_AT (Broker.restore reads them).
local err = fenced(ARGV[2])
if err then return err end
local old = {}
if ARGV[5] == '' then
  old = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                   'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
elseif ARGV[6] ~= '' then
  local wanted = split(ARGV[6])
  for i = 1, #wanted, 2 do
    local id = wanted[i]
    local at = redis.call('ZSCORE', K_FINISHED, id)
    local m = at and redis.call('HGET', jkey(id), 'm')
    if m then
      local j = {string.match(m, MPAT)}
      if tonumber(j[V]) == tonumber(wanted[i + 1]) then
        old[#old + 1] = id
        old[#old + 1] = at
      end
    end
  end
end
local ids = {}
for i = 1, #old, 2 do ids[#ids + 1] = old[i] end
-- the first write lets memory go: over maxmemory Redis refuses a script whose first write
-- could grow it (a tombstone's HSET), and the purge is what frees a full server
for c = 1, #ids, 1000 do
  redis.call('ZREM', K_FINISHED, unpack(ids, c, math.min(c + 999, #ids)))
end
for i = 1, #old, 2 do
  local id, at = old[i], old[i + 1]
  local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q')
  if f[3] then
    local j = {string.match(f[1], MPAT)}
    redis.call('HSET', K_TOMBS, id, j[S] .. SEP .. j[V] .. SEP .. at)
    redis.call('ZADD', K_TOMBS_AT, at, id)
    release(id)
    count(status_of(f[1]), -1)
  end
  if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
end
if ARGV[4] ~= '' then
  local gone = redis.call('ZRANGEBYSCORE', K_TOMBS_AT, '-inf', '(' .. ARGV[4], 'LIMIT', 0, 10000)
  for c = 1, #gone, 1000 do
    local part = {unpack(gone, c, math.min(c + 999, #gone))}
    redis.call('HDEL', K_TOMBS, unpack(part))
    redis.call('ZREM', K_TOMBS_AT, unpack(part))
  end
end
flush()
return #ids
