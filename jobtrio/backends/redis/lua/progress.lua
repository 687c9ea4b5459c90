--@include broker_common
-- ARGV: now, then per report joined by \31: id, token, the progress as JSON. Returns a
-- document per report, false for a stale token (finish.lua's check: the lease decides).
local now = ARGV[1]
local out = {}
for i = 2, #ARGV do
  local id, token, progress = string.match(ARGV[i], '^([^\31]*)\31([^\31]*)\31(.*)$')
  local j = nil
  if redis.call('HGET', K_TOKENS, id) == token then j = load(id) end
  if j then
    j[PG] = progress
    commit(j, now)
    out[i - 1] = doc(j)
  else
    out[i - 1] = false
  end
end
flush()
return out
