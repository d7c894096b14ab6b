-- create.lua: a new root operation, queued, with its `created` event.
-- ARGV[5] id  [6] kind  [7] owner  [8] input JSON  [9] max_attempts
-- [10] options JSON (backoff)  [11] per-attempt timeout ms (0: none)
-- [12] overall deadline, ms from now (0: none)  [13] failure policy
-- [14] request id  [15] idempotency key name ('' when none)
-- Returns {seq, deadline_ms}.
local id = ARGV[5]
local k = KEYS[1]
if redis.call('EXISTS', k) == 1 then return redis.error_reply('ERR operation exists') end
local deadline = 0
if tonumber(ARGV[12]) > 0 then deadline = NOW_MS + tonumber(ARGV[12]) end
redis.call('HSET', k,
  'id', id, 'kind', ARGV[6], 'owner', ARGV[7], 'root', ROOT, 'parent', '',
  'status', 'queued', 'seq', 1, 'attempt', 0, 'max_attempts', ARGV[9], 'gen', 1,
  'input', ARGV[8], 'opts', ARGV[10], 'timeout_ms', ARGV[11], 'deadline', int(deadline),
  'policy', ARGV[13], 'request_id', ARGV[14], 'idem', ARGV[15],
  'created_at', NOW_ISO, 'updated_at', NOW_ISO)
OWNERS[id] = ARGV[7]
local seq = emit(id, 'created', cjson.encode({ kind = ARGV[6], request_id = ARGV[14] }), 1)
return { seq, deadline }
