--@include broker_common
--@include enqueue_one
-- ARGV: now, then three arguments per job (enqueue_fields in the layout chunk): a header,
-- the MessagePack array of id, created_at text, the m values this script reads
-- (ENQUEUE_READS: cutting them out of m cost more than the rest of an enqueue), the queue
-- and the type; then b, and m as it is. The job hash keeps the type and created_at text
-- too (t, c), for its Store record.
-- Returns per job, joined by \31: '' when stored as sent, else the job holding its key.
local now = ARGV[1]
local out = {}
for i = 2, #ARGV, 3 do out[#out + 1] = enqueue_one(ARGV[i], ARGV[i + 1], ARGV[i + 2], now) end
flush()
return table.concat(out, SEP)
