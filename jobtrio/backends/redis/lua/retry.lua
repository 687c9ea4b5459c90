--@include broker_common
-- ARGV: now, id; a job that is not failed or cancelled comes back as {'conflict', doc}
local now, id = ARGV[1], ARGV[2]
local j = load(id)
if not j then return false end
if j[S] ~= 'failed' and j[S] ~= 'cancelled' then return {'conflict', doc(j)} end
set_status(j, 'pending')
j[RC] = '0'
j[LE] = '0'
j[ERR] = 'null'
j[RES] = 'null'
j[CA] = 'null'
j[SA] = 'null'
unplace(j)
commit(j, now)
flush()
return doc(j)
