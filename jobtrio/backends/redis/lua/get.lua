--@include broker_common
local out = {}
for i = 1, #ARGV do
  local j = load(ARGV[i])
  if j then out[i] = doc(j) else out[i] = false end
end
return out
