-- delete.lua: removes a terminal operation with its log and its whole
-- subtree. ARGV[5] id.
-- Returns {word, idempotency key, n, deleted ids…} with word ok | not_found | conflict.
local id = ARGV[5]
local f = redis.call('HMGET', KEYS[1], 'status', 'idem')
if not f[1] then return { 'not_found', '', 0 } end
if not TERMINAL[f[1]] then return { 'conflict', '', 0 } end
local deleted = {}
local function remove(node)
  local kids = redis.call('LRANGE', k_kids(node), 0, -1)
  for _, kid in ipairs(kids) do remove(kid) end
  redis.call('DEL', k_op(node), k_log(node), k_ev(node), k_kids(node))
  table.insert(deleted, node)
end
remove(id)
local out = { 'ok', f[2] or '', #deleted }
for _, node in ipairs(deleted) do table.insert(out, node) end
return out
