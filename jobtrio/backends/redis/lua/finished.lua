--@include broker_common
-- ARGV: older_than, limit, max bytes ('' = no limit), then the ids to skip
-- The jobs finished before older_than (Broker.finished_due), in the order they finished,
-- at most limit, and none after the one whose document brings the total to max bytes:
-- the leader writes them to a Store the Broker does not keep, then purges exactly them.
-- (A thousand 100 kB results in one reply held Redis for a second.) The ids to skip
-- (records the Store refused, kept by the purge) are neither read nor counted.
local limit = tonumber(ARGV[2])
local skip = {}
for i = 4, #ARGV do skip[ARGV[i]] = true end
local ids = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, limit + #ARGV - 3)
local budget = tonumber(ARGV[3])
local out, size = {}, 0
for _, id in ipairs(ids) do
  if not skip[id] then
    if #out >= limit or (budget and size >= budget) then break end
    local j = load(id)
    if j then
      local d = doc(j)
      size = size + #d
      out[#out + 1] = d
    end
  end
end
return out
