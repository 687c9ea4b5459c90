--@include broker_common
-- ARGV: now, then per item the MessagePack array of its id, token, outcome, worker ('' =
-- none), result, error, retry_at ('' = none): cmsgpack reads the 7 values at about half
-- the Redis instructions of a string.match of them joined by \31. Returns b and m of each
-- item ('' and '' for a stale token), two items an item of an array reply: one string
-- made by table.concat here cost Redis 10% more a finish (the Lua heap's collector pays
-- for every byte a script makes, and the concat makes each byte of the reply more than
-- once).
local now = ARGV[1]
local items, ids = {}, {}
for i = 2, #ARGV do
  local _, id, token, outcome, worker, result, err, retry_at = cmsgpack.unpack_limit(ARGV[i], 7, 1)
  -- 7 texts, or nothing is written: a nil or a number met half way through the batch
  -- would fail after the items before it were written but not filed (or write 0.3 for
  -- 0.1 + 0.2)
  if type(retry_at) ~= 'string' or type(worker) ~= 'string' or type(result) ~= 'string'
    or type(err) ~= 'string' or type(id) ~= 'string' or type(token) ~= 'string'
    or type(outcome) ~= 'string' then
    return redis.error_reply('ERR jobtrio: finish item ' .. (i - 1) .. ' is not 7 texts')
  end
  items[i - 1] = {id, token, outcome, worker, result, err, retry_at}
  ids[i - 1] = id
end
local toks = {}
for c = 1, #ids, 1000 do
  local part = redis.call('HMGET', K_TOKENS, unpack(ids, c, math.min(c + 999, #ids)))
  for i = 1, #part do toks[c + i - 1] = part[i] end
end
local out, used, gone = {}, {}, {}
for i, v in ipairs(items) do
  local id, outcome = v[1], v[3]
  local worker, result, err, retry_at = v[4], v[5], v[6], v[7]
  local j = nil
  -- the lease is spent by its first finish: a repeat in the same batch is stale
  if toks[i] == v[2] and not used[id] then j = load_finishing(id) end
  if j then
    used[id] = true
    gone[#gone + 1] = id
    if worker == '' then worker = false else j[WK] = worker end
    if outcome == 'released' then
      -- closed then popped: an attempt handed back unrun is not an attempt. A held
      -- lease always has its open attempt (claim made it; only lease-ending moves close it).
      drop_open_attempt(j)
      set_status(j, 'pending')
      with_type_and_queue(j) -- filed in its pending set again
    else
      close_attempt(j, now, '"' .. outcome .. '"', err, worker)
      if outcome == 'completed' then
        set_status(j, 'completed')
        j[RES] = result
        j[ERR] = 'null'
        j[CA] = now
      elseif retry_at ~= '' then
        set_status(j, 'retrying')
        j[RC] = next_count(j[RC])
        j[ERR] = err
        j[SA] = retry_at
      else
        set_status(j, 'failed')
        j[ERR] = err
        j[CA] = now
      end
    end
    out[2 * i - 1] = j.b
    out[2 * i] = commit(j, now)
  else
    out[2 * i - 1], out[2 * i] = '', ''
  end
end
for i = 1, #gone, 1000 do
  local part = {unpack(gone, i, math.min(i + 999, #gone))}
  redis.call('HDEL', K_TOKENS, unpack(part))
  redis.call('ZREM', K_LEASES, unpack(part))
end
flush()
return out
