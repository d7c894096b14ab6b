-- heartbeat.lua: renews the lease of a claim still held.
-- ARGV[5] attempt  [6] lease ms.
-- Returns 1 when renewed; 2 when the operation is terminal or gone (its
-- queue entry can be acknowledged); 0 when the claim was lost otherwise.
if not holds_claim(KEYS[1], ARGV[5]) then
  local st = redis.call('HGET', KEYS[1], 'status')
  if not st or TERMINAL[st] then return 2 end
  return 0
end
redis.call('HSET', KEYS[1], 'lease_until', int(NOW_MS + tonumber(ARGV[6])))
return 1
