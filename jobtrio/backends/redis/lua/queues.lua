-- Named queues: pause and rate limits, read by a claim (claim.lua) and set by queue_set.lua.
-- K_PAUSED is the set of paused queues; K_LIMITS holds per queue 'max \31 interval' (N jobs
-- per interval seconds, cluster-wide); K_RATE per queue 'window \31 count': the jobs claimed
-- in the current fixed window, window = floor(time / interval) on the Broker's clock.
local RATE = {} --@state

-- how many jobs each queue of sets may still give this claim: the node's cap (caps),
-- 0 when paused, what its rate limit leaves in the current window; nil for no limit
local function queue_caps(sets, caps, at)
  local out = {}
  local paused = {}
  for _, q in ipairs(redis.call('SMEMBERS', K_PAUSED)) do paused[q] = true end
  for q, _ in pairs(sets) do
    local limit = caps[q]
    if paused[q] then limit = 0 end
    local spec = redis.call('HGET', K_LIMITS, q)
    if spec and limit ~= 0 then
      local most, every = string.match(spec, '^([^\31]*)\31(.*)$')
      most, every = tonumber(most), tonumber(every)
      local window = string.format('%d', math.floor(tonumber(at) / every))
      local used = 0
      local state = redis.call('HGET', K_RATE, q)
      if state then
        local w, c = string.match(state, '^([^\31]*)\31(.*)$')
        if w == window then used = tonumber(c) end
      end
      RATE[q] = {window = window, used = used, taken = 0}
      local left = most - used
      if left < 0 then left = 0 end
      if limit == nil or left < limit then limit = left end
    end
    out[q] = limit
  end
  return out
end

local function note_taken(q)
  local r = RATE[q]
  if r then r.taken = r.taken + 1 end
end

-- writes the windows back, and empties RATE: a claim leaves none to the next call
local function save_rates()
  for q, r in pairs(RATE) do
    if r.taken > 0 then
      redis.call('HSET', K_RATE, q, r.window .. '\31' .. string.format('%d', r.used + r.taken))
    end
    RATE[q] = nil
  end
end
