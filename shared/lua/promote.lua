-- promote.lua: the scheduler's tick on a queue shard's slot. Moves retries
-- whose backoff is over from the delayed set to the ready stream, and
-- lists the deadlines and index expiries that are due (the caller handles
-- them and removes them). Not a transition (no lib).
-- KEYS[1] delayed zset  [2] ready stream  [3] deadlines zset  [4] expiring zset
-- ARGV[1] max to move or list  [2] now, ms, on the clock of whoever scored
-- the deadlines and expiries (the api's and workers').
-- Delayed members are "id|root|gen" scored by due time (Redis clock).
-- Returns {moved, ms until the next item of any set is due or -1,
--   n, due deadline members…, m, due expiring members…}.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local max = tonumber(ARGV[1])
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max)
for _, member in ipairs(due) do
  local id, root, gen = string.match(member, '([^|]+)|([^|]+)|([^|]+)')
  if id then
    redis.call('XADD', KEYS[2], '*', 'o', id, 'r', root, 'g', gen)
  end
  redis.call('ZREM', KEYS[1], member)
end
local caller_now = tonumber(ARGV[2])
local deadlines = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', caller_now, 'LIMIT', 0, max)
local expiring = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', caller_now, 'LIMIT', 0, max)
local wait = -1
local function consider(key, base)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local w = math.max(0, tonumber(first[2]) - base)
    if wait < 0 or w < wait then wait = w end
  end
end
consider(KEYS[1], now)
consider(KEYS[3], caller_now)
consider(KEYS[4], caller_now)
local out = { #due, wait, #deadlines }
for _, m in ipairs(deadlines) do table.insert(out, m) end
table.insert(out, #expiring)
for _, m in ipairs(expiring) do table.insert(out, m) end
return out
