--@include broker_common
-- ARGV: older_than, limit, max bytes ('' = no limit)
-- The jobs finished before older_than (Broker.finished_due), in the order they finished,
-- at most limit, and none after the one whose document brings the total to max bytes:
-- the leader writes them to a Store the Broker does not keep, then purges exactly them.
-- (A thousand 100 kB results in one reply held Redis for a second.)
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[2]))
local budget = tonumber(ARGV[3])
local out, size = {}, 0
for _, id in ipairs(ids) do
  if budget and size >= budget then break end
  local j = load(id)
  if j then
    local d = doc(j)
    size = size + #d
    out[#out + 1] = d
  end
end
return out
