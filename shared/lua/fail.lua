-- fail.lua: the claim holder's attempt failed.
-- ARGV[5] id  [6] attempt  [7] error JSON  [8] retryable (1/0)  [9] retry delay ms
-- A retryable error with attempts left (and before the deadline) requeues
-- the operation as a new generation; anything else fails it for good.
-- Returns outcome('retry', gen, due_ms) | outcome('failed', '', '') | outcome('fenced', '', '').
local id = ARGV[5]
local k = KEYS[1]
local f = redis.call('HMGET', k, 'status', 'attempt', 'waiting', 'lease_until', 'max_attempts',
  'deadline', 'parent', 'gen', 'seq', 'owner')
if not claim_live(f, ARGV[6]) then return outcome('fenced', '', '') end
if f[10] then OWNERS[id] = f[10] end
local attempt = tonumber(f[2]) or 1
local due = NOW_MS + tonumber(ARGV[9])
local deadline = tonumber(f[6]) or 0
if ARGV[8] == '1' and attempt < (tonumber(f[5]) or 1) and (deadline == 0 or due < deadline) then
  local gen = (tonumber(f[8]) or 0) + 1
  local seq = (tonumber(f[9]) or 0) + 1
  redis.call('HSET', k, 'status', 'queued', 'lease_until', '0', 'gen', gen, 'seq', seq,
    'updated_at', NOW_ISO)
  count_move(f[7], 'running', 'queued')
  emit(id, 'retrying', '{"attempt":' .. int(attempt) .. ',"reason":"error","retry_in_ms":' ..
    int(tonumber(ARGV[9])) .. ',"error":' .. ARGV[7] .. '}', seq)
  return outcome('retry', gen, int(due))
end
finish(id, 'failed', 'error', ARGV[7], '{"error":' .. ARGV[7] .. '}', false)
return outcome('failed', '', '')
