--@include broker_common
--@include enqueue_one
-- Insert-if-absent of a purged job an operator retries (Broker.revive), not fenced.
-- ARGV: now, the job's three enqueue arguments (enqueue.lua). Returns '' inserted as sent, 'H' ..
-- document when the Broker holds the id, 'T' .. status \31 version \31 finished at for
-- the tombstone of a job that completed (never run again), 'K' when another job holds
-- its idempotency key (nothing inserted: the caller sends it again without one).
local now = ARGV[1]
local id = enqueue_id(ARGV[2])
local j = load(id)
if j then return 'H' .. doc(j) end
local tomb = redis.call('HGET', K_TOMBS, id)
if tomb and string.match(tomb, '^[^\31]*') == 'completed' then return 'T' .. tomb end
local held = enqueue_one(ARGV[2], ARGV[3], ARGV[4], now)
flush()
if held ~= '' then return 'K' end
return ''
