--@include broker_common
-- ARGV: now, id, the cancellation error as JSON
local now, id, cancelled = ARGV[1], ARGV[2], ARGV[3]
local j = load(id)
if not j then return false end
if TERMINAL[j[S]] then return doc(j) end
close_attempt(j, now, '"cancelled"', cancelled, false)
set_status(j, 'cancelled')
j[ERR] = cancelled
j[CA] = now
unplace(j)
commit(j, now)
flush()
return doc(j)
