local P = KEYS[1]
local NF = 19
