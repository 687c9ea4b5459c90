local P = KEYS[1]
