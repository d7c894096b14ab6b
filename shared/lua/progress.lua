-- progress.lua: records a progress report of the claim holder.
-- ARGV[5] id  [6] attempt  [7] percent  [8] message JSON  [9] data JSON
-- The percent never goes below the attempt's highest. Returns the event's seq, 0 when fenced out.
local k = KEYS[1]
if not holds_claim(k, ARGV[6]) then return 0 end
local pct = tonumber(ARGV[7])
local high = tonumber(redis.call('HGET', k, 'pct')) or 0
if pct < high then pct = high end
local progress = '{"percent":' .. tostring(pct) .. ',"message":' .. ARGV[8] .. ',"data":' .. ARGV[9] .. '}'
redis.call('HSET', k, 'progress', progress, 'pct', pct)
return emit(ARGV[5], 'progress', progress)
