-- The jobs of an enqueue argument list (ARGV[2..], see enqueue.lua) filed once every
-- parent is known (held, tombstoned, or earlier in the batch), else nothing is filed and
-- the answer is the error 'NODEP <job> <parent>'. Answers each job's document as filed
-- (its parents may have settled it already). Shared by enqueue_deps and enqueue_workflow.
local function enqueue_checked(now)
  local batch = {}
  for i = 2, #ARGV do
    local a = enqueue_fields(ARGV[i])
    for _, pid in ipairs(depends_of(a[NR + 3])) do
      if not batch[pid] and redis.call('HEXISTS', jkey(pid), 'q') == 0
          and not redis.call('HGET', K_TOMBS, pid) then
        return redis.error_reply('NODEP ' .. a[1] .. ' ' .. pid)
      end
    end
    batch[a[1]] = true
  end
  local out = {}
  for i = 2, #ARGV do
    local held = enqueue_one(ARGV[i], now)
    if held == '' then held = doc(load(string.match(ARGV[i], '^[^\31]*'))) end
    out[#out + 1] = held
  end
  flush()
  return out
end
