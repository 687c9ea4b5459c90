--@include broker_common
--@include queues
--@include claim_common
-- ARGV: the claim's arguments (claim_common.lua)
local out = claim(ARGV)
flush()
return out
