--@include broker_common
-- Every queue's state in one read (Broker.queues, Broker.pending_by_priority): the paused
-- queues, the limits (queue, max \31 interval, ...), then per (queue \31 type) pending set
-- its member and its jobs per priority band, 1 to 10 (priority 10 is band 0).
local out = {redis.call('SMEMBERS', K_PAUSED), redis.call('HGETALL', K_LIMITS)}
local sets = {}
for _, member in ipairs(redis.call('SMEMBERS', K_PQS)) do
  local key = K_PENDING .. member
  local counts = {}
  local total = 0
  for p = 1, 10 do
    local low = (10 - p) * BAND
    local c = redis.call('ZCOUNT', key, low, '(' .. string.format('%d', low + BAND))
    counts[p] = c
    total = total + c
  end
  if total > 0 then
    sets[#sets + 1] = member
    sets[#sets + 1] = counts
  end
end
out[3] = sets
return out
