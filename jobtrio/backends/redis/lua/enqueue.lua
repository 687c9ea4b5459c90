--@include broker_common
--@include enqueue_one
-- ARGV: now, then one argument per job (enqueue_fields in the layout chunk): a header of
-- id, created_at text, the m values this script reads (ENQUEUE_READS: cutting them out of
-- m cost more than the rest of an enqueue), the queue and the byte lengths of b and m,
-- each ended by \31; then b and the m values as they are, and the type last (the one raw
-- caller string that may hold the byte). The job hash keeps the type and created_at text
-- too (t, c), for its Store record.
-- Returns per job, joined by \31: '' when stored as sent, else the job holding its key.
local now = ARGV[1]
local out = {}
for i = 2, #ARGV do out[#out + 1] = enqueue_one(ARGV[i], now) end
flush()
return table.concat(out, SEP)
