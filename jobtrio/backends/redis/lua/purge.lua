--@include broker_common
-- ARGV: older_than, epoch, limit
local err = fenced(ARGV[2])
if err then return err end
local old = redis.call('ZRANGEBYSCORE', K_FINISHED, '-inf', '(' .. ARGV[1],
                       'LIMIT', 0, tonumber(ARGV[3]))
for _, id in ipairs(old) do
  local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q')
  if f[3] then
    release(id)
    count(status_of(f[1]), -1)
  end
  if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
end
for c = 1, #old, 1000 do
  redis.call('ZREM', K_FINISHED, unpack(old, c, math.min(c + 999, #old)))
end
flush()
return #old
