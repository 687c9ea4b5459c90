--@include broker_common
--@include queues
-- ARGV: now, node_id (JSON), lease expiry, n, n fresh tokens joined by \31, the lease
-- seconds when the expiry is taken on the server's clock ('' : the caller's), then the
-- claim's scope (Broker.claim's ClaimScope): '1' when any type will do else '0', the types
-- it can run joined by \31, the queues: '' for every queue in one priority order, else the
-- queues joined by \31 in the order to serve them, and the limits: queue \31 at most ...
-- Returns a record per claimed job: token, b and m joined by \31; records joined by \30.
-- Python builds the documents from b and m: client CPU scales out, the server's does not.
local now, node_json, expires = ARGV[1], ARGV[2], lease_expiry(ARGV[3], ARGV[6])
local tokens = split(ARGV[5])
local n = tonumber(ARGV[4])
local any_type = ARGV[7] ~= '0'
local types = {}
if not any_type and ARGV[8] then
  for _, t in ipairs(split(ARGV[8])) do types[t] = true end
end
local rate_now = now
if ARGV[6] and ARGV[6] ~= '' then rate_now = server_now() end

-- the groups to take from, in order: each a list of queues whose sets merge by score
local groups, caps = {}, {}
local spec = ARGV[9] or ''
if spec == '' then
  groups[1] = {all = true}
else
  for _, q in ipairs(split(spec)) do groups[#groups + 1] = {queue = q} end
end
if ARGV[10] and ARGV[10] ~= '' then
  local parts = split(ARGV[10])
  for i = 1, #parts, 2 do caps[parts[i]] = tonumber(parts[i + 1]) end
end

-- the pending sets by queue, only of the types this claim can run
local sets = {}
for _, member in ipairs(redis.call('SMEMBERS', K_PQS)) do
  local q, t = string.match(member, '^([^\31]*)\31(.*)$')
  if any_type or types[t] then
    local list = sets[q]
    if not list then
      list = {}
      sets[q] = list
    end
    list[#list + 1] = member
  end
end

local q_limit = queue_caps(sets, caps, rate_now)

local popped = {}
local taken = 0
local function take(members, budget)
  -- up to budget entries from these pending sets, lowest score first, honouring q_limit:
  -- each set's first budget entries (already in order), merged by always taking the
  -- lowest head (a k-way merge: no sort of every fetched entry)
  local lists = {}
  for _, member in ipairs(members) do
    local q = string.match(member, '^([^\31]*)')
    if (q_limit[q] or budget) > 0 then
      local got = redis.call('ZRANGE', K_PENDING .. member, 0, budget - 1, 'WITHSCORES')
      if #got == 0 then
        redis.call('SREM', K_PQS, member)
      else
        lists[#lists + 1] = {got = got, at = 1, member = member, q = q, taken = {},
                             whole = #got / 2 < budget}
      end
    end
  end
  local count = 0
  while count < budget do
    local best, best_score = nil, nil
    for _, l in ipairs(lists) do
      if l.at <= #l.got then
        local left = q_limit[l.q]
        if left == nil or left > 0 then
          local score = tonumber(l.got[l.at + 1])
          if best == nil or score < best_score then best, best_score = l, score end
        end
      end
    end
    if best == nil then break end
    local id = best.got[best.at]
    best.at = best.at + 2
    local left = q_limit[best.q]
    if left then q_limit[best.q] = left - 1 end
    count = count + 1
    popped[#popped + 1] = id
    best.taken[#best.taken + 1] = id
    note_taken(best.q)
  end
  for _, l in ipairs(lists) do
    local ids = l.taken
    for c = 1, #ids, 1000 do
      redis.call('ZREM', K_PENDING .. l.member, unpack(ids, c, math.min(c + 999, #ids)))
    end
    -- the whole set was fetched and all of it taken: it is empty now
    if l.whole and #ids * 2 == #l.got then redis.call('SREM', K_PQS, l.member) end
  end
  return count
end

for _, g in ipairs(groups) do
  if taken >= n then break end
  local members = {}
  if g.all then
    for _, list in pairs(sets) do
      for _, member in ipairs(list) do members[#members + 1] = member end
    end
  else
    members = sets[g.queue] or {}
  end
  if #members > 0 then taken = taken + take(members, n - taken) end
end
save_rates()

local out, leases, held = {}, {}, {}
local t = 0
for _, id in ipairs(popped) do
  local j = load(id)
  if j then
    set_status(j, 'running')
    j[STA] = now
    j[ND] = node_json
    j[WK] = 'null'
    open_attempt(j, now, node_json)
    touch(j, now)
    local m = save(j)
    t = t + 1
    local token = tokens[t]
    leases[2 * t - 1] = expires
    leases[2 * t] = id
    held[2 * t - 1] = id
    held[2 * t] = token
    local o = #out
    if o > 0 then
      out[o + 1] = RS
      o = o + 1
    end
    out[o + 1] = token
    out[o + 2] = SEP
    out[o + 3] = j.b
    out[o + 4] = SEP
    out[o + 5] = m
  end
end
if t > 0 then
  zadd_many(K_LEASES, leases)
  for i = 1, #held, 1000 do
    redis.call('HSET', K_TOKENS, unpack(held, i, math.min(i + 999, #held)))
  end
end
flush()
return table.concat(out)
