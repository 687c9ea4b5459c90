--@include broker_common
-- ARGV: now, then one argument per job joined by \31 (EPAT): id, created_at text, the m
-- values this script reads (ENQUEUE_READS: cutting them out of m cost more than the rest
-- of an enqueue), b, the m values, and the type last (the one raw caller string that may
-- hold the byte). The job hash keeps the type and created_at text too (t, c), for its
-- Store record.
-- Returns per job, joined by \31: '' when stored as sent, else the job holding its key.
local now = ARGV[1]
local NR = #ENQUEUE_READS
local out = {}
for i = 2, #ARGV do
  local a = {string.match(ARGV[i], EPAT)}
  local id, c, b, m, t = a[1], a[2], a[NR + 3], a[NR + 4], a[NR + 5]
  local j = {id = id, b = b}
  for r = 1, NR do j[ENQUEUE_READS[r]] = a[r + 2] end
  local k = j[K]
  local held = false
  if k ~= '' then
    held = redis.call('HGET', K_IDEM, k)
    if held and redis.call('HEXISTS', jkey(held), 'q') == 0 then held = false end
  end
  if held then
    out[#out + 1] = doc(load(held))
  else
    local key = jkey(id)
    local old = redis.call('HMGET', key, 'q', 'm', 't', 'c')
    if old[1] then -- the same id again replaces the job, as the reference broker does
      unplace(id)
      count(status_of(old[2]), -1)
    end
    if old[2] then redis.call('DEL', key) end
    if RECORD then
      redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', '1', 'v', j[V], 's', j[S])
      if old[2] then
        file_record(id, {'', status_of(old[2]), old[3], old[4]}, j[S], t, c)
      else
        file_record(id, {}, j[S], t, c)
      end
    else
      redis.call('HSET', key, 'b', b, 'm', m, 't', t, 'c', c, 'q', '1')
    end
    if k ~= '' then
      redis.call('HSET', key, 'k', k)
      redis.call('HSET', K_IDEM, k, id)
    end
    count(j[S], 1)
    place(j, now)
    out[#out + 1] = ''
  end
end
flush()
return table.concat(out, SEP)
