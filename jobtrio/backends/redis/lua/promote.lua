--@include broker_common
-- ARGV: now, epoch, limit, '1' to decide on the server's clock (else on now), '1' to
-- answer with the count of jobs promoted only (else the jobs), the grace: only jobs due
-- for at least this many seconds ('': any due job; a claim takes due jobs itself)
local now = ARGV[1]
local decide = now
if ARGV[4] == '1' then decide = server_now() end
if ARGV[6] and ARGV[6] ~= '' then
  decide = string.format('%.17g', tonumber(decide) - tonumber(ARGV[6]))
end
local count_only = ARGV[5] == '1'
local err = fenced(ARGV[2])
if err then return err end
local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', decide, 'LIMIT', 0, tonumber(ARGV[3]))
for c = 1, #due, 1000 do
  redis.call('ZREM', K_DELAYED, unpack(due, c, math.min(c + 999, #due)))
end
if count_only then
  -- A leader that records nothing (the Broker writes the records) needs the count alone:
  -- no body read, no reply of documents built, sent and parsed. The move is commit()'s
  -- (status, UA, V written, filed as pending) with m cut only around the values it
  -- rewrites or reads: cutting all NF values and joining them again cost about as much
  -- as the job's own HMGET and HSET. PPAT captures S, PR, UA and V alone and each run of
  -- values between them whole; CAP[f] is the capture of value f.
  local cut, parts, CAP = {[S] = true, [PR] = true, [UA] = true, [V] = true}, {}, {}
  local f = 1
  while f <= NF do
    if cut[f] then
      parts[#parts + 1] = '([^\31]*)'
      CAP[f] = #parts
      f = f + 1
    else
      local last = f
      while last < NF and not cut[last + 1] do last = last + 1 end
      parts[#parts + 1] = '([^\31]*' .. string.rep('\31[^\31]*', last - f) .. ')'
      f = last + 1
    end
  end
  local PPAT = '^' .. table.concat(parts, '\31') .. '$'
  local cs, cpr, cua, cv = CAP[S], CAP[PR], CAP[UA], CAP[V]
  local n = 0
  for _, id in ipairs(due) do
    local key = jkey(id)
    local v = redis.call('HMGET', key, 'm', 'q', 't', 'u')
    if v[2] then
      local c = {string.match(v[1], PPAT)}
      local old = c[cs]
      if old ~= 'pending' then
        count(old, -1)
        count('pending', 1)
        if RECORD then refile(id, old, 'pending') end
      end
      local version = next_count(c[cv])
      c[cs], c[cua], c[cv] = 'pending', now, version
      local m = table.concat(c, SEP)
      redis.call('HSET', key, 'm', m) -- the record's status and version too
      queue_pending(id, tonumber(c[cpr]), v[4] or 'default', v[3])
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
