--@include broker_common
-- ARGV: name, tick (float text), epoch, ticks kept per name
local err = fenced(ARGV[3])
if err then return err end
local name, tick, keep = ARGV[1], ARGV[2], tonumber(ARGV[4])
local key = P .. 'tick:' .. name
local floor = redis.call('HGET', P .. 'tickfloor', name)
if floor and tonumber(tick) <= tonumber(floor) then return 0 end
if redis.call('ZADD', key, 'NX', tick, tick) == 0 then return 0 end
local size = redis.call('ZCARD', key)
if size > keep then
  -- forget the oldest ticks but refuse anything at or below them from now on
  local gone = redis.call('ZRANGE', key, size - keep - 1, size - keep - 1, 'WITHSCORES')
  redis.call('ZREMRANGEBYRANK', key, 0, size - keep - 1)
  redis.call('HSET', P .. 'tickfloor', name, gone[2])
end
return 1
