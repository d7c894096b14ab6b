-- handoff.lua: a worker shutting down gives the operation back without
-- consuming an attempt.
-- ARGV[5] id  [6] attempt.  Returns outcome('ok', gen) | outcome('fenced', '').
local id = ARGV[5]
local k = KEYS[1]
if not holds_claim(k, ARGV[6]) then return outcome('fenced', '') end
local attempt = tonumber(ARGV[6])
local gen = redis.call('HINCRBY', k, 'gen', 1)
redis.call('HSET', k, 'status', 'queued', 'attempt', attempt - 1, 'lease_until', '0')
count_move(redis.call('HGET', k, 'parent'), 'running', 'queued')
emit(id, 'retrying', '{"attempt":' .. int(attempt) .. ',"reason":"worker_shutdown","attempt_consumed":false}')
return outcome('ok', gen)
