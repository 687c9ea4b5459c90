--@include broker_common
local id = ARGV[1]
local f = redis.call('HMGET', jkey(id), 'm', 'k', 'q', 't', 'u')
if not f[3] then return 0 end
local j = load(id)
-- a tombstone, as purge leaves: a record of the job written late (another node's recorder)
-- must not bring it back through restore. A live job counts as cancelled, one version on.
local at = redis.call('ZSCORE', K_FINISHED, id) or j[UA]
local status, version = j[S], tonumber(j[V])
if not TERMINAL[status] then status, version = 'cancelled', version + 1 end
redis.call('HSET', K_TOMBS, id, status .. SEP .. int(version) .. SEP .. at)
redis.call('ZADD', K_TOMBS_AT, at, id)
unplace({id = id, t = f[4], u = f[5] or 'default'})
count(status_of(f[1]), -1)
release(id)
if f[2] and redis.call('HGET', K_IDEM, f[2]) == id then redis.call('HDEL', K_IDEM, f[2]) end
-- a live job deleted: the jobs waiting for it fail as if it was cancelled
if not TERMINAL[j[S]] and j[DEP] ~= '[]' then release_dependents(j, j[UA], 'cancelled') end
flush()
return 1
