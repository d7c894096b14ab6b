-- expire.lua: enforces an operation's overall deadline wherever it is
-- (queued, waiting for a retry, running, or parked waiting for children).
-- ARGV[5] id.
-- Returns outcome(word, value): gone ('') when the operation is missing,
-- terminal or has no deadline; later (ms left) when the deadline is still
-- ahead; expired ('') when it failed now.
local id = ARGV[5]
local k = KEYS[1]
local f = redis.call('HMGET', k, 'status', 'deadline')
if not f[1] or TERMINAL[f[1]] then return outcome('gone', '') end
local deadline = tonumber(f[2]) or 0
if deadline == 0 then return outcome('gone', '') end
if NOW_MS < deadline then return outcome('later', int(deadline - NOW_MS)) end
local err = json_error('deadline_exceeded', 'the operation passed its overall deadline', false)
finish(id, 'failed', 'error', err, '{"error":' .. err .. '}', true)
return outcome('expired', '')
