--@include broker_common
--@include enqueue_one
-- Broker.enqueue of a batch in which some jobs have dependencies (sent 'waiting'): as
-- enqueue.lua, but first every parent must be known (held, tombstoned, or earlier in the
-- batch), else nothing is filed and the reply is the error 'NODEP <job> <parent>'.
-- Returns each job's document as filed (its parents may have settled it already).
local now = ARGV[1]
local batch = {}
for i = 2, #ARGV do
  local a = {string.match(ARGV[i], EPAT)}
  for _, pid in ipairs(depends_of(a[NR + 3])) do
    if not batch[pid] and redis.call('HEXISTS', jkey(pid), 'q') == 0
        and not redis.call('HGET', K_TOMBS, pid) then
      return redis.error_reply('NODEP ' .. a[1] .. ' ' .. pid)
    end
  end
  batch[a[1]] = true
end
local out = {}
for i = 2, #ARGV do
  local held = enqueue_one(ARGV[i], now)
  if held == '' then held = doc(load(string.match(ARGV[i], '^[^\31]*'))) end
  out[#out + 1] = held
end
flush()
return out
