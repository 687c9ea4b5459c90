--@include broker_common
--@include enqueue_one
--@include enqueue_checked
-- Broker.enqueue of a workflow whose root (the first job) carries an idempotency key,
-- ARGV as enqueue.lua. If a job the Broker holds has that key, nothing is filed and the
-- reply is {the holder's document}: a retried workflow, never a second set of jobs.
-- Else as enqueue_deps.lua.
local root = enqueue_fields(ARGV[2], ARGV[3], ARGV[4])
local k = ''
for r = 1, NR do
  if ENQUEUE_READS[r] == K then k = root[r + 2] end
end
if k ~= '' then
  local held = redis.call('HGET', K_IDEM, k)
  if held and redis.call('HEXISTS', jkey(held), 'q') == 1 then return {doc(load(held))} end
end
return enqueue_checked(ARGV)
