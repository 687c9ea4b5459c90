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
-- each promoted job as b \31 m, the jobs joined by \30 (as finish answers): the leader
-- reads their headers only, so Python makes LazyJobs of them instead of parsing documents
for _, id in ipairs(due) do
  local j = load(id)
  if j then
    set_status(j, 'pending')
    local m = commit(j, now)
    out[#out + 1] = j.b .. SEP .. m
  end
end
flush()
return table.concat(out, RS)
