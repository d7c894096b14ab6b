-- heartbeat.lua: renews the lease of a claim still held.
-- ARGV[5] attempt  [6] lease ms.  Returns 1 when renewed, 0 when the claim is lost.
if not holds_claim(KEYS[1], ARGV[5]) then return 0 end
redis.call('HSET', KEYS[1], 'lease_until', int(NOW_MS + tonumber(ARGV[6])))
return 1
