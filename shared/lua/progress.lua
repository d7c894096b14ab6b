-- progress.lua: records a progress report of the claim holder.
-- ARGV[5] id  [6] attempt  [7] percent  [8] message JSON  [9] data JSON
-- The percent never goes below the attempt's highest. Returns the event's seq, 0 when fenced out.
local k = KEYS[1]
local f = redis.call('HMGET', k, 'status', 'attempt', 'waiting', 'lease_until', 'pct', 'seq', 'owner')
if not claim_live(f, ARGV[6]) then return 0 end
if f[7] then OWNERS[ARGV[5]] = f[7] end
local pct = tonumber(ARGV[7])
local high = tonumber(f[5]) or 0
if pct < high then pct = high end
local progress = '{"percent":' .. tostring(pct) .. ',"message":' .. ARGV[8] .. ',"data":' .. ARGV[9] .. '}'
local seq = (tonumber(f[6]) or 0) + 1
redis.call('HSET', k, 'progress', progress, 'pct', pct, 'seq', seq, 'updated_at', NOW_ISO)
return emit(ARGV[5], 'progress', progress, seq)
