--@include broker_common
--@include claim_tick_common
--@include enqueue_one
-- Claim a tick and enqueue its job in one move (Broker.fire_tick).
-- ARGV: name, tick, epoch, ticks kept, now, the job's three enqueue arguments (enqueue.lua).
-- Returns false when the tick was fired before, '' when the job was stored as sent,
-- else the document of the job holding its idempotency key.
local err = fenced(ARGV[3])
if err then return err end
if not claim_tick(ARGV[1], ARGV[2], tonumber(ARGV[4])) then return false end
local out = enqueue_one(ARGV[6], ARGV[7], ARGV[8], ARGV[5])
flush()
return out
