-- Job dependencies (jobtrio/backends/dependencies.py, the reference): a waiting job lists
-- the parents it still waits for (WF), a parent lists its children (DEP), both as JSON
-- arrays of ids (ids are Crockford base32: no quote or backslash to escape). Children are
-- settled inside the move that ends their parent (commit), so each leaves 'waiting' once.

local function ids_of(text)
  local out = {}
  for id in string.gmatch(text, '"([^"]*)"') do out[#out + 1] = id end
  return out
end

local function ids_text(ids)
  if #ids == 0 then return '[]' end
  return '["' .. table.concat(ids, '","') .. '"]'
end

local function has(ids, x)
  for _, id in ipairs(ids) do
    if id == x then return true end
  end
  return false
end

local function without(ids, x)
  local out = {}
  for _, id in ipairs(ids) do
    if id ~= x then out[#out + 1] = id end
  end
  return out
end

-- The immutable dependency fields live in the job's body b (layout.py): the raw JSON of
-- field name starts after the last ',"name":' (the fields after the payload hold no raw
-- quote that could fake one, so the last is the field's own).
local function body_at(b, name)
  local mark, at, from = ',"' .. name .. '":', nil, 1
  while true do
    local _, e = string.find(b, mark, from, true)
    if not e then return at end
    at, from = e + 1, e + 1
  end
end

local function depends_of(b)
  local at = body_at(b, 'depends_on')
  if not at then return {} end
  return ids_of(string.match(b, '^%b[]', at) or '[]')
end

local function runs_anyway(b)
  local at = body_at(b, 'on_dependency_failure')
  return at ~= nil and string.sub(b, at, at + 4) == '"run"'
end

-- where a job whose parents all completed waits: scheduled if it starts later
local function due_status(j, now)
  if j[SA] ~= 'null' and tonumber(j[SA]) > tonumber(now) then return 'scheduled' end
  return 'pending'
end

-- one parent of c ended with status st (result: its result as JSON)
local function settle(c, pid, st, result, now)
  c[WF] = ids_text(without(ids_of(c[WF]), pid))
  if st == 'completed' or runs_anyway(c.b) then
    if c[DR] ~= 'null' then
      local v = 'null'
      if st == 'completed' then v = result end
      if c[DR] == '{}' then
        c[DR] = '{"' .. pid .. '":' .. v .. '}'
      else
        c[DR] = string.sub(c[DR], 1, -2) .. ',"' .. pid .. '":' .. v .. '}'
      end
    end
    return
  end
  set_status(c, 'failed')
  c[ERR] = '"dependency ' .. pid .. ' ' .. st .. '"'
  c[CA] = now
  c[WF] = '[]'
end

release_dependents = function(p, now, st)
  local work = {{p.id, st or p[S], p[RES], p[DEP]}}
  while #work > 0 do
    local w = table.remove(work)
    local pid = w[1]
    for _, cid in ipairs(ids_of(w[4])) do
      local c = load(cid)
      if c and c[S] == 'waiting' and has(ids_of(c[WF]), pid) then
        settle(c, pid, w[2], w[3], now)
        if c[S] == 'waiting' and c[WF] == '[]' then set_status(c, due_status(c, now)) end
        -- not commit: the cascade goes through this work list
        touch(c, now)
        save(c)
        place(c, now)
        if TERMINAL[c[S]] and c[DEP] ~= '[]' then
          work[#work + 1] = {c.id, c[S], 'null', c[DEP]}
        end
      end
    end
  end
end

-- A job just filed as 'waiting' (enqueue_one) resolved against its parents as they stand:
-- a live parent lists it as a child, an ended one settles it at once. A parent neither
-- held nor tombstoned counts as cancelled (enqueue_deps.lua refuses it beforehand).
local function attach(j, now)
  j[WF] = '[]'
  if j[DR] ~= 'null' then j[DR] = '{}' end
  for _, pid in ipairs(depends_of(j.b)) do
    local p = load(pid)
    local wf = ids_of(j[WF])
    wf[#wf + 1] = pid
    j[WF] = ids_text(wf)
    if p and not TERMINAL[p[S]] then
      local deps = ids_of(p[DEP])
      if not has(deps, j.id) then
        deps[#deps + 1] = j.id
        p[DEP] = ids_text(deps)
        touch(p, now)
        save(p) -- not placed again: its place in the queue stays
      end
    else
      local st, res = 'cancelled', 'null'
      if p then
        st, res = p[S], p[RES]
      else
        local tomb = redis.call('HGET', K_TOMBS, pid)
        if tomb then st = string.match(tomb, '^[^\31]*') end
      end
      settle(j, pid, st, res, now)
      if TERMINAL[j[S]] then break end
    end
  end
  if j[S] == 'waiting' and j[WF] == '[]' then set_status(j, due_status(j, now)) end
  commit(j, now)
end
