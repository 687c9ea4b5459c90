-- A claim, run by claim.lua and by enqueue_claim.lua after its enqueue. claim(A) takes the
-- arguments claim.lua takes as ARGV: now, node_id (JSON), lease expiry, n, n fresh tokens
-- joined by \31, the lease seconds when the expiry is taken on the server's clock ('' : the
-- caller's), then the claim's scope (Broker.claim's ClaimScope): '1' when any type will do
-- else '0', the types it can run joined by \31, the queues: '' for every queue in one
-- priority order, else the queues joined by \31 in the order to serve them, and the
-- limits: queue \31 at most ...
-- Returns token, b and m of each claimed job, three items a job of an array reply (a reply
-- concatenated into one string in Lua cost a finish 10% more: see finish.lua). Python builds
-- the documents from b and m: client CPU scales out, the server's does not. The caller
-- flush()es after it.
local function claim(A)
  local now, node_json = A[1], A[2]
  local n = tonumber(A[4])
  local any_type = A[7] ~= '0'
  local types = {}
  if not any_type and A[8] then
    for _, t in ipairs(split(A[8])) do types[t] = true end
  end
  -- on the server's clock one TIME decides both the rates and the lease expiry: a
  -- second redis.call and its formatting cost 8k instructions a claim
  local rate_now = now
  if A[6] and A[6] ~= '' then rate_now = server_now() end
  local expires = lease_expiry(A[3], A[6], rate_now)

  -- the groups to take from, in order: each a list of queues whose sets merge by score
  local groups, caps = {}, {}
  local spec = A[9] or ''
  if spec == '' then
    groups[1] = {all = true}
  else
    for _, q in ipairs(split(spec)) do groups[#groups + 1] = {queue = q} end
  end
  if A[10] and A[10] ~= '' then
    local parts = split(A[10])
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

  -- The due scheduled and retrying jobs this claim may take itself (MemoryBroker's
  -- _claimable_due): the first n due on the decision clock, in the order the leader
  -- promotes them, of the types it runs and the queues it serves, in lists by pending set
  -- member. Each is scored as if promoted just before this claim (its priority band, then
  -- after every pending job's sequence, in due order), so a claim takes them in the order a
  -- promotion then a claim would, and moves each scheduled to running in this one move.
  local dues, loaded = {}, {}
  local due_ids = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', rate_now, 'LIMIT', 0, n)
  if #due_ids > 0 then
    local served
    if spec ~= '' then
      served = {}
      for _, g in ipairs(groups) do served[g.queue] = true end
    end
    local base = tonumber(redis.call('GET', K_SEQ) or '0')
    local by_member = {}
    for rank, id in ipairs(due_ids) do
      local j = load(id)
      if j and (any_type or types[j.t]) and (served == nil or served[j.u]) then
        loaded[id] = j
        local member = j.u .. '\31' .. j.t
        local d = by_member[member]
        if not d then
          d = {member = member, q = j.u, items = {}}
          by_member[member] = d
          dues[#dues + 1] = d
          if not sets[j.u] then sets[j.u] = {} end -- its queue's caps are read too
        end
        d.items[#d.items + 1] = {id, (10 - tonumber(j[PR])) * BAND + base + rank}
      end
    end
    for _, d in ipairs(dues) do
      table.sort(d.items, function(a, b) return a[2] < b[2] end)
      local got = {}
      for _, it in ipairs(d.items) do
        got[#got + 1] = it[1]
        got[#got + 1] = it[2]
      end
      d.got, d.items = got, nil
    end
  end

  local q_limit = queue_caps(sets, caps, rate_now)

  local popped = {}
  local taken = 0
  local function take(members, due_lists, budget)
    -- up to budget entries from these pending sets, lowest score first, honouring q_limit:
    -- a k-way merge that always takes the lowest head (no sort of every fetched entry).
    -- Each set is read in pieces by rank (nothing leaves a set before the end, so ranks
    -- hold): first its share of the budget, then, when that is spent and the set may hold
    -- more, what the claim still wants. k sets cost about budget entries read, not k times
    -- budget. A list's head score is converted once and is nil when the list can give
    -- nothing more (spent, or its queue's q_limit reached): the inner loop only compares.
    local share = budget
    if #members + #due_lists > 1 then share = math.ceil(budget / (#members + #due_lists)) + 1 end
    local function fetch(l, size)
      local got = redis.call('ZRANGE', K_PENDING .. l.member, l.read, l.read + size - 1,
                             'WITHSCORES')
      l.got, l.at, l.read, l.done = got, 1, l.read + #got / 2, #got / 2 < size
      if #got > 0 then l.score = tonumber(got[2]) else l.score = nil end
    end
    local lists = {}
    for _, member in ipairs(members) do
      local q = string.match(member, '^([^\31]*)')
      local left = q_limit[q] or budget
      if left > 0 then
        local l = {member = member, q = q, taken = {}, read = 0}
        fetch(l, math.min(share, left))
        if l.score == nil then
          redis.call('SREM', K_PQS, member)
        else
          lists[#lists + 1] = l
        end
      end
    end
    -- the due jobs' lists: read whole already (done), taken from the delayed set
    for _, d in ipairs(due_lists) do
      if (q_limit[d.q] or budget) > 0 then
        lists[#lists + 1] = {member = d.member, q = d.q, taken = {}, got = d.got, at = 1,
                             read = #d.got / 2, done = true, due = true, score = d.got[2]}
      end
    end
    local nl = #lists
    local count = 0
    while count < budget do
      local best, best_score = nil, nil
      for i = 1, nl do
        local l = lists[i]
        local score = l.score
        if score and (best == nil or score < best_score) then best, best_score = l, score end
      end
      if best == nil then break end
      local at = best.at
      local id = best.got[at]
      count = count + 1
      popped[#popped + 1] = id
      best.taken[#best.taken + 1] = id
      note_taken(best.q)
      local left = q_limit[best.q]
      if left then
        left = left - 1
        q_limit[best.q] = left
        if left == 0 then
          -- the queue gave all it may: none of its sets (one per type) is read further
          for i = 1, nl do
            if lists[i].q == best.q then lists[i].score = nil end
          end
        end
      end
      at = at + 2
      best.at = at
      if best.score ~= nil then -- nil: its queue was capped just now
        if at <= #best.got then
          best.score = tonumber(best.got[at + 1])
        elseif best.done or count == budget then
          best.score = nil
        else
          fetch(best, math.min(budget - count, left or budget))
        end
      end
    end
    for i = 1, nl do
      local l = lists[i]
      local ids = l.taken
      local key = K_PENDING .. l.member
      if l.due then key = K_DELAYED end
      for c = 1, #ids, 1000 do
        redis.call('ZREM', key, unpack(ids, c, math.min(c + 999, #ids)))
      end
      -- the set was read to its end and all of it taken: it is empty now
      if l.done and #ids == l.read and not l.due then redis.call('SREM', K_PQS, l.member) end
    end
    return count
  end

  for _, g in ipairs(groups) do
    if taken >= n then break end
    local members, due_lists = {}, {}
    if g.all then
      for _, list in pairs(sets) do
        for _, member in ipairs(list) do members[#members + 1] = member end
      end
      due_lists = dues
    else
      members = sets[g.queue] or {}
      for _, d in ipairs(dues) do
        if d.q == g.queue then due_lists[#due_lists + 1] = d end
      end
    end
    if #members + #due_lists > 0 then taken = taken + take(members, due_lists, n - taken) end
  end
  save_rates()

  local out, leases, held = {}, {}, {}
  local t, token_at = 0, 1
  for _, id in ipairs(popped) do
    -- not filed by its type and queue: running jobs are in the leases
    local j = loaded[id] or load_moving(id)
    if j then
      set_status(j, 'running')
      j[STA] = now
      j[ND] = node_json
      j[WK] = 'null'
      open_attempt(j, now, node_json)
      touch(j, now)
      local m = save(j)
      t = t + 1
      -- the tokens are cut out of A[5] as jobs are taken, not split whole: an idle
      -- node's claim of 20 that takes one job cut 20 (70k instructions)
      local token
      local stop = string.find(A[5], SEP, token_at, true)
      if stop then
        token, token_at = string.sub(A[5], token_at, stop - 1), stop + 1
      else
        token = string.sub(A[5], token_at)
      end
      leases[2 * t - 1] = expires
      leases[2 * t] = id
      held[2 * t - 1] = id
      held[2 * t] = token
      out[3 * t - 2] = token
      out[3 * t - 1] = j.b
      out[3 * t] = m
      remember(j, m) -- for its finish (MEMO)
    end
  end
  if t > 0 then
    -- KEEP_TABLE (see broker_common.lua): never a listpack. It leads the first write of
    -- each key (a ZADD makes a new key a listpack or not by its first member), with the
    -- only score and value it ever has, so writing it again changes nothing: one call
    -- each instead of a ZADD NX and an HSETNX before them (6.6k instructions a claim)
    for i = 1, #leases, 1000 do
      if i == 1 then
        redis.call('ZADD', K_LEASES, '+inf', KEEP_TABLE,
                   unpack(leases, 1, math.min(1000, #leases)))
      else
        redis.call('ZADD', K_LEASES, unpack(leases, i, math.min(i + 999, #leases)))
      end
    end
    for i = 1, #held, 1000 do
      if i == 1 then
        redis.call('HSET', K_TOKENS, KEEP_TABLE, SEP, unpack(held, 1, math.min(1000, #held)))
      else
        redis.call('HSET', K_TOKENS, unpack(held, i, math.min(i + 999, #held)))
      end
    end
  end
  return out
end
