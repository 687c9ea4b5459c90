--@include broker_common
-- ARGV: now, node_id (JSON), lease expiry, n, n fresh tokens joined by \31, and the lease
-- seconds when the expiry is taken on the server's clock ('' or absent: the caller's)
-- Returns a record per claimed job: token, b and m joined by \31; records joined by \30.
-- Python builds the documents from b and m: client CPU scales out, the server's does not.
local now, node_json, expires = ARGV[1], ARGV[2], lease_expiry(ARGV[3], ARGV[6])
local tokens = split(ARGV[5])
local popped = redis.call('ZPOPMIN', K_PENDING, tonumber(ARGV[4]))
local out, leases, held = {}, {}, {}
local t = 0
for i = 1, #popped, 2 do
  local id = popped[i]
  local j = load(id)
  if j then
    set_status(j, 'running')
    j[STA] = now
    j[ND] = node_json
    j[WK] = 'null'
    open_attempt(j, now, node_json)
    touch(j, now)
    local m = save(j)
    t = t + 1
    local token = tokens[t]
    leases[2 * t - 1] = expires
    leases[2 * t] = id
    held[2 * t - 1] = id
    held[2 * t] = token
    local o = #out
    if o > 0 then
      out[o + 1] = RS
      o = o + 1
    end
    out[o + 1] = token
    out[o + 2] = SEP
    out[o + 3] = j.b
    out[o + 4] = SEP
    out[o + 5] = m
  end
end
if t > 0 then
  zadd_many(K_LEASES, leases)
  for i = 1, #held, 1000 do
    redis.call('HSET', K_TOKENS, unpack(held, i, math.min(i + 999, #held)))
  end
end
flush()
return table.concat(out)
