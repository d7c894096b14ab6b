-- shards.lua: agrees on the deployment's queue shard count. Not a
-- transition (no lib). The count only grows: the largest any process
-- asked for wins, so no shard that holds entries is ever left unread.
-- KEYS[1] the shard count's key.  ARGV[1] the count this process wants.
-- Returns the deployment's count.
local stored = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local wanted = tonumber(ARGV[1])
if wanted > stored then
  redis.call('SET', KEYS[1], wanted)
  return wanted
end
return stored
