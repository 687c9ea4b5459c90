--@include broker_common
-- ARGV: now, epoch, poison limit, limit, poison error JSON with a literal {n},
--       'lease expired' as JSON, '1' to decide on the server's clock (else on now)
local now = ARGV[1]
local decide = now
if ARGV[7] == '1' then decide = server_now() end
local err = fenced(ARGV[2])
if err then return err end
local poison = tonumber(ARGV[3])
local template, lost_error = ARGV[5], ARGV[6]
local expired = redis.call('ZRANGEBYSCORE', K_LEASES, '-inf', '(' .. decide,
                           'LIMIT', 0, tonumber(ARGV[4]))
for c = 1, #expired, 1000 do
  local part = {unpack(expired, c, math.min(c + 999, #expired))}
  redis.call('ZREM', K_LEASES, unpack(part))
  redis.call('HDEL', K_TOKENS, unpack(part))
end
local out = {}
for _, id in ipairs(expired) do
  local j = load(id)
  if j then
    local n = tonumber(j[LE]) + 1
    j[LE] = int(n)
    close_attempt(j, now, '"lost"', lost_error, false)
    if n >= poison then
      local a, b = string.find(template, '{n}', 1, true)
      set_status(j, 'failed')
      j[ERR] = string.sub(template, 1, a - 1) .. int(n) .. string.sub(template, b + 1)
      j[CA] = now
    else
      set_status(j, 'pending')
    end
    commit(j, now)
    out[#out + 1] = doc(j)
  end
end
flush()
return out
