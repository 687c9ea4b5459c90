--@include broker_common
--@include claim_tick_common
-- ARGV: name, tick (float text), epoch, ticks kept per name
local err = fenced(ARGV[3])
if err then return err end
if claim_tick(ARGV[1], ARGV[2], tonumber(ARGV[4])) then return 1 end
return 0
