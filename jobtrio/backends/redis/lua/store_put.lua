--@include prelude
--@include layout
--@include records
-- ARGV: one record each: id, version, status, created_at text, b, the m values and the
-- type joined by \31 (the type last: the one raw caller string that may hold the byte).
local PAT = '^([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31([^\31]*)\31('
  .. string.rep('[^\31]*\31', NF - 1) .. '[^\31]*)\31(.*)$'
for i = 1, #ARGV do
  local id, v, s, c, b, m, t = string.match(ARGV[i], PAT)
  if not put_record(id, v, s, b, m, t, c) then
    records_flush()
    return redis.error_reply('NOTRECORDS ' .. id)
  end
end
records_flush()
return 0
