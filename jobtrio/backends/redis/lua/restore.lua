--@include broker_common
--@include enqueue_one
-- Insert-if-absent, fenced (Broker.restore). ARGV: now, epoch, then per job its three enqueue
-- arguments (enqueue.lua), its key ('' when another job holds its idempotency key it is
-- sent without one). Returns per job: '' inserted as sent, 'H' .. document when the
-- Broker holds the id, 'T' .. status \31 version \31 finished at for a tombstone.
local now = ARGV[1]
local err = fenced(ARGV[2])
if err then return err end
local out = {}
for i = 3, #ARGV, 3 do
  local id = enqueue_id(ARGV[i])
  local j = load(id)
  local tomb = redis.call('HGET', K_TOMBS, id)
  if j then
    out[#out + 1] = 'H' .. doc(j)
  elseif tomb then
    out[#out + 1] = 'T' .. tomb
  else
    local held = enqueue_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], now)
    if held ~= '' then
      -- the key is another job's now: this one comes back without it
      out[#out + 1] = 'K'
    else
      out[#out + 1] = ''
    end
  end
end
flush()
return out
