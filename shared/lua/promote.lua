-- promote.lua: moves retries whose backoff is over from the delayed set to
-- the ready stream (both in the shard's slot).
-- KEYS[1] delayed zset  KEYS[2] ready stream.  ARGV[1] max to move.
-- Members are "id|root|gen". Returns {moved, ms until the next one is due or -1}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
for _, member in ipairs(due) do
  local id, root, gen = string.match(member, '([^|]+)|([^|]+)|([^|]+)')
  redis.call('XADD', KEYS[2], '*', 'o', id, 'r', root, 'g', gen)
  redis.call('ZREM', KEYS[1], member)
end
local next_due = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
local wait = -1
if next_due[2] then wait = math.max(0, tonumber(next_due[2]) - now) end
return { #due, wait }
