--@include broker_common
-- Pause, resume or rate-limit one queue (Broker.set_queue). ARGV: queue, paused ('1', '0'
-- or '' to leave it), limit ('' to leave it, '-' to remove it, else max \31 interval),
-- epoch ('' for an operator's move, else a leader's, refused when fenced off).
-- Returns paused ('1' or '0') and the limit ('' for none).
if ARGV[4] ~= '' then
  local err = fenced(ARGV[4])
  if err then return err end
end
local q = ARGV[1]
if ARGV[2] == '1' then
  redis.call('SADD', K_PAUSED, q)
elseif ARGV[2] == '0' then
  redis.call('SREM', K_PAUSED, q)
end
if ARGV[3] == '-' then
  redis.call('HDEL', K_LIMITS, q)
  redis.call('HDEL', K_RATE, q)
elseif ARGV[3] ~= '' then
  redis.call('HSET', K_LIMITS, q, ARGV[3])
  redis.call('HDEL', K_RATE, q)
end
return {tostring(redis.call('SISMEMBER', K_PAUSED, q)), redis.call('HGET', K_LIMITS, q) or ''}
