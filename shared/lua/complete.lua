-- complete.lua: the claim holder succeeded.
-- ARGV[5] id  [6] attempt  [7] result JSON
-- [8] final progress percent ('' when none was pending)  [9] message JSON  [10] data JSON
-- Returns outcome('ok' | 'fenced').
local id = ARGV[5]
local k = KEYS[1]
if not holds_claim(k, ARGV[6]) then return outcome('fenced') end
if ARGV[8] ~= '' then
  local pct = math.max(tonumber(ARGV[8]), tonumber(redis.call('HGET', k, 'pct')) or 0)
  local progress = '{"percent":' .. tostring(pct) .. ',"message":' .. ARGV[9] .. ',"data":' .. ARGV[10] .. '}'
  redis.call('HSET', k, 'progress', progress, 'pct', pct)
  emit(id, 'progress', progress)
end
finish(id, 'succeeded', 'result', ARGV[7], '{"result":' .. ARGV[7] .. '}', false)
return outcome('ok')
