-- The jobs of an enqueue argument list (args: a script's ARGV, now and then the jobs, see
-- enqueue.lua; a parameter, as a library's helpers never read the call's ARGV) filed once every
-- parent is known (held, tombstoned, or earlier in the batch), else nothing is filed and
-- the answer is the error 'NODEP <job> <parent>'. Answers each job's document as filed
-- (its parents may have settled it already). Shared by enqueue_deps and enqueue_workflow.
local function enqueue_checked(args)
  local now = args[1]
  local batch = {}
  for i = 2, #args, 3 do
    local a = enqueue_fields(args[i], args[i + 1], args[i + 2])
    for _, pid in ipairs(depends_of(a[NR + 3])) do
      if not batch[pid] and redis.call('HEXISTS', jkey(pid), 'q') == 0
          and not redis.call('HGET', K_TOMBS, pid) then
        return redis.error_reply('NODEP ' .. a[1] .. ' ' .. pid)
      end
    end
    batch[a[1]] = true
  end
  local out = {}
  for i = 2, #args, 3 do
    local held = enqueue_one(args[i], args[i + 1], args[i + 2], now)
    if held == '' then held = doc(load(enqueue_id(args[i]))) end
    out[#out + 1] = held
  end
  flush()
  return out
end
