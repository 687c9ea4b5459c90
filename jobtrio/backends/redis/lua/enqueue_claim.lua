--@include broker_common
--@include enqueue_one
--@include queues
--@include claim_common
-- An enqueue (enqueue.lua) and then a claim (claim.lua) in one move: what the two scripts
-- would do one after the other, with nothing between them. The claim takes the jobs its
-- scope and the queue order give it, the new ones or others before them.
-- ARGV: the count e of jobs, then enqueue.lua's ARGV (now and 3e job arguments), then
-- claim.lua's ARGV.
-- Returns {the enqueue's reply, the claim's reply}.
local e = tonumber(ARGV[1])
local now = ARGV[2]
local out = {}
for i = 3, 3 * e + 2, 3 do out[#out + 1] = enqueue_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], now) end
flush_places() -- the new jobs are in their pending sets before the claim reads them
local args = {}
for i = 3 * e + 3, #ARGV do args[#args + 1] = ARGV[i] end
local leased = claim(args)
flush()
return {table.concat(out, SEP), leased}
