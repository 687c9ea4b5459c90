--@include broker_common
-- ARGV: new expiry, then id and token alternately joined by \31, and the lease seconds
-- when the expiry is taken on the server's clock; returns lost ids joined
local expires = lease_expiry(ARGV[1], ARGV[3])
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
