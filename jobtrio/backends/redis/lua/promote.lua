--@include broker_common
-- ARGV: now, epoch, limit, '1' to decide on the server's clock (else on now)
local now = ARGV[1]
local decide = now
if ARGV[4] == '1' then decide = server_now() end
local err = fenced(ARGV[2])
if err then return err end
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', decide, 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for c = 1, #due, 1000 do
  redis.call('ZREM', K_DELAYED, unpack(due, c, math.min(c + 999, #due)))
end
for _, id in ipairs(due) do
  local j = load(id)
  if j then
    set_status(j, 'pending')
    commit(j, now)
    out[#out + 1] = doc(j)
  end
end
flush()
return out
