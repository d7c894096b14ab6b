-- complete.lua: the claim holder succeeded.
-- ARGV[5] id  [6] attempt  [7] result JSON
-- [8] final progress percent ('' when none was pending)  [9] message JSON  [10] data JSON
-- Returns outcome('ok' | 'fenced').
-- One read of the operation serves the claim check, the final progress and
-- the terminal transition, which write it back in one HSET.
local id = ARGV[5]
local f = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'waiting', 'lease_until', 'pct',
  'entry', 'parent', 'idem', 'owner', 'c_total', 'seq')
if not claim_live(f, ARGV[6]) then return outcome('fenced') end
local node = { status = f[1], waiting = f[3], entry = f[6], parent = f[7], idem = f[8], owner = f[9],
  c_total = f[10], seq = tonumber(f[11]) or 0 }
if f[9] then OWNERS[id] = f[9] end
if ARGV[8] ~= '' then
  local pct = math.max(tonumber(ARGV[8]), tonumber(f[5]) or 0)
  local progress = '{"percent":' .. tostring(pct) .. ',"message":' .. ARGV[9] .. ',"data":' .. ARGV[10] .. '}'
  node.seq = node.seq + 1
  emit(id, 'progress', progress, node.seq)
  node.extra = { 'progress', progress, 'pct', pct }
end
finish(id, 'succeeded', 'result', ARGV[7], '{"result":' .. ARGV[7] .. '}', false, node)
return outcome('ok')
