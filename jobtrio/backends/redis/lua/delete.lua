--@include broker_common
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q', 't', 'u')
if not f[3] then return 0 end
local j = load(id)
unplace({id = id, t = f[4], u = f[5] or 'default'})
count(status_of(f[1]), -1)
release(id)
if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
-- a live job deleted: the jobs waiting for it fail as if it was cancelled
if not TERMINAL[j[S]] and j[DEP] ~= '[]' then release_dependents(j, j[UA], 'cancelled') end
flush()
return 1
