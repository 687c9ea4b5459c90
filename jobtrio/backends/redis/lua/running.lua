--@include broker_common
local held = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(+inf', 'WITHSCORES') -- not KEEP_TABLE
local out = {}
for i = 1, #held, 2 do
  local j = load(held[i])
  local token = redis.call('HGET', K_TOKENS, held[i])
  if j and token then
    out[#out + 1] = token
    out[#out + 1] = held[i + 1]
    out[#out + 1] = doc(j)
  end
end
return out
