-- cancel.lua: cancels an operation and every non-terminal descendant, and
-- tells the workers running any of them.
-- ARGV[5] id  [6] reason.  Returns outcome('ok' | 'not_found' | 'conflict').
local id = ARGV[5]
local st = redis.call('HGET', KEYS[1], 'status')
if not st then return outcome('not_found') end
if TERMINAL[st] then return outcome('conflict') end
finish(id, 'cancelled', nil, nil, cjson.encode({ reason = ARGV[6] }), true)
return outcome('ok')
