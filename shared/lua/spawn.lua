-- spawn.lua: the claim holder starts a batch of children.
-- ARGV[5] parent id  [6] attempt  [7] batch number  [8] kind  [9] max_attempts
-- [10] options JSON  [11] timeout ms  [12] failure policy  [13] n
-- [14 .. 13+n] child ids  [14+n .. 13+2n] child inputs
-- Idempotent per batch number: a re-run of the parent's handler gets the
-- children the first run created, and re-enqueues those never claimed.
-- Returns outcome(word, "id1 gen1 id2 gen2 …"): ok (created: the given
-- ids), again (the batch existed: the children to requeue) or fenced.
local parent = ARGV[5]
local pk = KEYS[1]
if not holds_claim(pk, ARGV[6]) then return outcome('fenced', '') end
local n = tonumber(ARGV[13])
local batch_field = 'batch:' .. ARGV[7]
local enqueue = {}
local existing = redis.call('HGET', pk, batch_field)
if existing then
  local first, count = string.match(existing, '(%d+),(%d+)')
  local ids = redis.call('LRANGE', k_kids(parent), tonumber(first), tonumber(first) + tonumber(count) - 1)
  for _, kid in ipairs(ids) do
    local ck = k_op(kid)
    if redis.call('HGET', ck, 'status') == 'queued' and redis.call('HGET', ck, 'attempt') == '0' then
      table.insert(enqueue, kid)
      table.insert(enqueue, int(redis.call('HINCRBY', ck, 'gen', 1)))
    end
  end
  return outcome('again', table.concat(enqueue, ' '))
end
local pf = redis.call('HMGET', pk, 'owner', 'request_id')
local first = redis.call('LLEN', k_kids(parent))
redis.call('HSET', pk, batch_field, int(first) .. ',' .. int(n))
for i = 1, n do
  local id = ARGV[13 + i]
  redis.call('HSET', k_op(id),
    'id', id, 'kind', ARGV[8], 'owner', pf[1], 'root', ROOT, 'parent', parent,
    'status', 'queued', 'seq', 1, 'attempt', 0, 'max_attempts', ARGV[9], 'gen', 1,
    'input', ARGV[13 + n + i], 'opts', ARGV[10], 'timeout_ms', ARGV[11], 'deadline', 0,
    'policy', ARGV[12], 'request_id', pf[2] or '', 'idem', '',
    'created_at', NOW_ISO, 'updated_at', NOW_ISO)
  redis.call('RPUSH', k_kids(parent), id)
  OWNERS[id] = pf[1]
  emit(id, 'created', '{"kind":"' .. ARGV[8] .. '","parent_id":"' .. parent .. '"}', 1)
  table.insert(enqueue, id)
  table.insert(enqueue, '1')
end
redis.call('HINCRBY', pk, 'c_total', n)
redis.call('HINCRBY', pk, 'c_queued', n)
return outcome('ok', table.concat(enqueue, ' '))
