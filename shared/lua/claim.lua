-- claim.lua: a worker takes a queue entry.
-- ARGV[5] id  [6] entry generation  [7] worker id  [8] lease ms
-- [9] queue entry, `SHARD/ID` (plain `ID` for shard 0)
-- Returns outcome(word, attempt, kind, input, opts, timeout_ms, deadline, state,
--   max_attempts, request_id, policy, ms left until the deadline (-1: none)).
-- word: run (a new attempt, or the same one again for the worker that made
-- it and lost the reply), resume (a parent whose children are done),
-- park (a parent still waiting), busy (someone else holds a live lease),
-- drop (terminal, deleted, stale or just failed: acknowledge the entry).
-- The operation is read once; a new attempt is written in one HSET.
local id = ARGV[5]
local k = KEYS[1]
local f = redis.call('HMGET', k, 'status', 'gen', 'attempt', 'max_attempts', 'lease_until',
  'waiting', 'deadline', 'parent', 'resume_pending', 'worker', 'entry', 'resumed', 'started_at',
  'seq', 'owner', 'kind', 'input', 'opts', 'timeout_ms', 'state', 'request_id', 'policy')
local st = f[1]
local attempt = tonumber(f[3]) or 0
if f[15] then OWNERS[id] = f[15] end
local function reply(word)
  if word ~= 'run' and word ~= 'resume' then
    return outcome(word, '', '', '', '', '', '', '', '', '', '', '')
  end
  local left = -1
  local deadline = tonumber(f[7]) or 0
  if deadline > 0 then left = math.max(0, deadline - NOW_MS) end
  return outcome(word, int(attempt), f[16] or '', f[17] or '', f[18] or '', f[19] or '', f[7] or '',
    f[20] or '', f[4] or '', f[21] or '', f[22] or '', int(left))
end
if not st or TERMINAL[st] or f[2] ~= ARGV[6] then return reply('drop') end
local deadline = tonumber(f[7]) or 0
if deadline > 0 and NOW_MS >= deadline then
  local err = json_error('deadline_exceeded', 'the operation passed its overall deadline', false)
  finish(id, 'failed', 'error', err, '{"error":' .. err .. '}', true)
  return reply('drop')
end
local lease_until = int(NOW_MS + tonumber(ARGV[8]))
local seq = tonumber(f[14]) or 0
if st == 'running' then
  if f[6] == '1' then
    redis.call('HSET', k, 'entry', ARGV[9])
    return reply('park')
  end
  if f[9] == '1' then
    redis.call('HSET', k, 'resume_pending', '0', 'lease_until', lease_until, 'worker', ARGV[7],
      'entry', ARGV[9], 'resumed', '1')
    return reply('resume')
  end
  if (tonumber(f[5]) or 0) >= NOW_MS then
    -- This worker's own live claim of this very entry, whose reply it never
    -- got (its connection dropped): the same attempt again, not a new one.
    if f[10] == ARGV[7] and f[11] == ARGV[9] then
      if f[12] == '1' then return reply('resume') end
      return reply('run')
    end
    return reply('busy')
  end
  -- The worker of the current attempt stopped renewing its lease.
  local err = json_error('lease_expired', 'the worker running attempt ' .. int(attempt) ..
    ' stopped renewing its lease', true)
  if attempt >= (tonumber(f[4]) or 1) then
    finish(id, 'failed', 'error', err, '{"error":' .. err .. '}', false)
    return reply('drop')
  end
  seq = seq + 1
  emit(id, 'retrying', '{"attempt":' .. int(attempt) .. ',"reason":"lease_expired","error":' .. err .. '}', seq)
  count_move(f[8], 'running', 'queued')
end
attempt = attempt + 1
seq = seq + 1
redis.call('HSET', k, 'status', 'running', 'attempt', attempt, 'lease_until', lease_until,
  'worker', ARGV[7], 'entry', ARGV[9], 'pct', 0, 'resumed', '0', 'started_at', f[13] or NOW_ISO,
  'seq', seq, 'updated_at', NOW_ISO)
count_move(f[8], 'queued', 'running')
emit(id, 'started', cjson.encode({ attempt = attempt, worker = ARGV[7] }), seq)
return reply('run')
