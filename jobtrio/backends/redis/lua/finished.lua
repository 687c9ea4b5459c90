--@include broker_common
-- ARGV: older_than, limit
-- The jobs finished before older_than (Broker.finished_due), in the order they finished,
-- at most limit: the leader writes them to a Store the Broker does not keep, then purges
-- exactly them.
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  local j = load(id)
  if j then out[#out + 1] = doc(j) end
end
return out
