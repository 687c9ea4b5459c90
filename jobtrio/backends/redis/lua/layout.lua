--@include broker_common
local refused = layout_refused()
if refused then return refused end
return 1
