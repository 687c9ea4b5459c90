local P = KEYS[1]
local id = ARGV[1]
local key = P .. 'job:' .. id
-- m: the record's status leads it (layout.RETIRED_FIELDS)
local cur = redis.call('HMGET', key, 'm', 't', 'q')
-- a job the Broker still holds in this hash (it keeps the records) goes through it first
if not cur[1] or cur[3] then return 0 end
cur[1] = string.match(cur[1], '^[^\31]*')
redis.call('DEL', key)
-- written before the status indexes' union replaced it; gone once UNLINKed (docs/backends.md)
redis.call('ZREM', P .. 'rec-all', id)
redis.call('ZREM', P .. 'rec-st:' .. cur[1], id)
redis.call('ZREM', P .. 'rec-ty:' .. cur[2], id)
redis.call('ZREM', P .. 'rec-created', id)
return 1
