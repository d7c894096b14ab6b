-- wait_children.lua: the claim holder's handler returned and waits for its
-- children without holding a worker slot. Its queue entry stays pending
-- ("parked"); the last child to finish settles it.
-- ARGV[5] id  [6] attempt  [7] resume handler when done (1/0)  [8] state JSON
-- Returns outcome(word, settled) with word ok | fenced; settled is waiting | finished | resume.
local k = KEYS[1]
if not holds_claim(k, ARGV[6]) then return outcome('fenced', '') end
redis.call('HSET', k, 'waiting', '1', 'resume', ARGV[7], 'state', ARGV[8], 'lease_until', '0')
return outcome('ok', settle_parent(ARGV[5]))
