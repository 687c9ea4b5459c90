-- Claim (name, tick): true the first time, false ever after (a floor refuses ticks older
-- than the ``keep`` newest ones remembered).
local function claim_tick(name, tick, keep)
  local key = P .. 'tick:' .. name
  local floor = redis.call('HGET', P .. 'tickfloor', name)
  if floor and tonumber(tick) <= tonumber(floor) then return false end
  if redis.call('ZADD', key, 'NX', tick, tick) == 0 then return false end
  local size = redis.call('ZCARD', key)
  if size > keep then
    -- forget the oldest ticks but refuse anything at or below them from now on
    local gone = redis.call('ZRANGE', key, size - keep - 1, size - keep - 1, 'WITHSCORES')
    redis.call('ZREMRANGEBYRANK', key, 0, size - keep - 1)
    redis.call('HSET', P .. 'tickfloor', name, gone[2])
  end
  return true
end
