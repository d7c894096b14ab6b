-- read.lua: a worker takes new entries of one queue shard's ready stream.
-- Not a transition (no lib).
-- KEYS[1] the ready stream.  ARGV[1] group  [2] consumer  [3] at most this many.
-- Returns {last, id, o, r, g, id, o, r, g, ...}: the entries delivered to the
-- consumer (their fields o, r, g in order), after `last`, the id of the
-- newest entry the stream held when it read ('0-0' when empty). When none
-- was delivered, every entry added later has a greater id than `last`, so a
-- blocking XREAD after `last` wakes for it: reading and learning `last` are
-- one atomic step, so no entry can slip in between.
local out = { '0-0' }
local newest = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if newest[1] then out[1] = newest[1][1] end
local reply = redis.call('XREADGROUP', 'GROUP', ARGV[1], ARGV[2], 'COUNT', ARGV[3],
  'STREAMS', KEYS[1], '>')
if reply then
  for _, entry in ipairs(reply[1][2]) do
    local f = {}
    local fields = entry[2]
    for i = 1, #fields, 2 do f[fields[i]] = fields[i + 1] end
    table.insert(out, entry[1])
    table.insert(out, f.o or '')
    table.insert(out, f.r or '')
    table.insert(out, f.g or '')
  end
end
return out
