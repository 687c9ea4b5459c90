--@include broker_common
-- ARGV: now, epoch, limit, '1' to decide on the server's clock (else on now), '1' to
-- answer with the count of jobs promoted only (else the jobs)
local now = ARGV[1]
local decide = now
if ARGV[4] == '1' then decide = server_now() end
local count_only = ARGV[5] == '1'
local err = fenced(ARGV[2])
if err then return err end
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', decide, 'LIMIT', 0, tonumber(ARGV[3]))
for c = 1, #due, 1000 do
  redis.call('ZREM', K_DELAYED, unpack(due, c, math.min(c + 999, #due)))
end
if count_only then
  -- a leader that records nothing (the Broker writes the records) needs the count alone:
  -- no body read, no reply of 1,000 documents built, sent and parsed
  local n = 0
  for _, id in ipairs(due) do
    local v = redis.call('HMGET', jkey(id), 'm', 'q', 't', 'u')
    if v[2] then
      local j = {id = id, string.match(v[1], MPAT)}
      j.t = v[3]
      j.u = v[4] or 'default'
      set_status(j, 'pending')
      commit(j, now)
      n = n + 1
    end
  end
  flush()
  return n
end
-- each promoted job as b \31 m, the jobs joined by \30 (as finish answers): the leader
-- reads their headers only, so Python makes LazyJobs of them instead of parsing documents
local out = {}
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
