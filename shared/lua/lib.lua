-- lib.lua: helpers prepended to every transition script.
--
-- Calling convention of every script:
--   KEYS[1]  the operation's hash (routes the script to the tree's slot)
--   ARGV[1]  key prefix            ARGV[2]  root id (the tree's hash tag)
--   ARGV[3]  now, RFC 3339 (the caller's clock, for display only)
--   ARGV[4]  retention of terminal operations, ms
--   ARGV[5..] script-specific
-- Leases, deadlines and due times use the Redis server's clock (TIME), so
-- workers with skewed clocks agree on them.

local P = ARGV[1]
local ROOT = ARGV[2]
local NOW_ISO = ARGV[3]
local RETENTION = tonumber(ARGV[4])
local T = redis.call('TIME')
local NOW_MS = tonumber(T[1]) * 1000 + math.floor(tonumber(T[2]) / 1000)

local TERMINAL = { succeeded = true, failed = true, cancelled = true }

-- ids of running operations finished by someone other than their worker:
-- published on the cancel channel so their handlers stop.
local SIGNALS = {}
-- keys outside this tree's slot that must expire with an operation that
-- became terminal: a child's root index, a root's idempotency key. The
-- caller gives them the retention TTL (the script cannot reach them on a
-- cluster).
local EXPIRE_KEYS = {}
-- parents whose children are all done and whose handler wants to resume.
local READY_PARENTS = {}
-- root operations that became terminal, as id, owner pairs: the caller
-- schedules their list-index entries for removal once they expire.
local FINISHED_ROOTS = {}
-- queue entries of parked parents that became terminal: nobody holds them,
-- so the caller acknowledges them.
local ACKS = {}

local function k_op(id) return P .. ':{' .. ROOT .. '}:op:' .. id end
local function k_ev(id) return P .. ':{' .. ROOT .. '}:ev:' .. id end
local function k_kids(id) return P .. ':{' .. ROOT .. '}:kids:' .. id end
local function k_ch(id) return P .. ':{' .. ROOT .. '}:ch:' .. id end

local function int(n) return string.format('%d', n) end

local function json_error(code, message, retryable)
  return cjson.encode({ code = code, message = message, retryable = retryable })
end

-- Owners of the operations this script touched, read once each.
local OWNERS = {}

local function owner_of(id)
  local owner = OWNERS[id]
  if owner == nil then
    owner = redis.call('HGET', k_op(id), 'owner') or false
    OWNERS[id] = owner
  end
  return owner
end

-- Appends an event to the operation's log, bumps its seq and publishes the
-- WebSocket frame on the operation's and the owner's channels.
local function emit(id, etype, data)
  local op = k_op(id)
  local seq = redis.call('HINCRBY', op, 'seq', 1)
  redis.call('XADD', k_ev(id), int(seq) .. '-0', 't', etype, 'at', NOW_ISO, 'd', data)
  redis.call('HSET', op, 'updated_at', NOW_ISO)
  local frame = '{"type":"event","operation_id":"' .. id .. '","seq":' .. int(seq) ..
      ',"event":"' .. etype .. '","at":"' .. NOW_ISO .. '","data":' .. data .. '}'
  redis.call('PUBLISH', k_ch(id), frame)
  local owner = owner_of(id)
  if owner then redis.call('PUBLISH', P .. ':owner:' .. owner, frame) end
  return seq
end

-- Moves one child of `parent` from one status count to another.
local function count_move(parent, from, to)
  if not parent or parent == '' then return end
  local pk = k_op(parent)
  if from then redis.call('HINCRBY', pk, 'c_' .. from, -1) end
  if to then redis.call('HINCRBY', pk, 'c_' .. to, 1) end
end

local function expire_node(id, has_children)
  redis.call('PEXPIRE', k_op(id), RETENTION)
  redis.call('PEXPIRE', k_ev(id), RETENTION)
  if has_children then redis.call('PEXPIRE', k_kids(id), RETENTION) end
end

-- Sets a terminal status with its event; no parent accounting. Returns the
-- parent's id ('' for a root) and whether the operation has children.
local function mark_terminal(id, status, field, value, data)
  local k = k_op(id)
  local f = redis.call('HMGET', k, 'waiting', 'entry', 'parent', 'idem', 'owner', 'c_total')
  if f[1] == '1' and f[2] and f[2] ~= '' then table.insert(ACKS, f[2]) end
  if f[5] then OWNERS[id] = f[5] end
  if field then
    redis.call('HSET', k, field, value, 'status', status, 'finished_at', NOW_ISO, 'waiting', '0', 'resume_pending', '0')
  else
    redis.call('HSET', k, 'status', status, 'finished_at', NOW_ISO, 'waiting', '0', 'resume_pending', '0')
  end
  emit(id, status, data)
  local has_children = (tonumber(f[6]) or 0) > 0
  expire_node(id, has_children)
  local parent = f[3] or ''
  if parent ~= '' then
    table.insert(EXPIRE_KEYS, P .. ':{' .. id .. '}:root')
  else
    if f[4] and f[4] ~= '' then table.insert(EXPIRE_KEYS, f[4]) end
    table.insert(FINISHED_ROOTS, id)
    table.insert(FINISHED_ROOTS, f[5] or '')
  end
  return parent, has_children
end

-- Cancels every non-terminal descendant of `id`.
local function cancel_descendants(id, data)
  local kids = redis.call('LRANGE', k_kids(id), 0, -1)
  for _, kid in ipairs(kids) do
    local st = redis.call('HGET', k_op(kid), 'status')
    if st and not TERMINAL[st] then
      local _, has_children = mark_terminal(kid, 'cancelled', nil, nil, data)
      count_move(id, st, 'cancelled')
      if st == 'running' then table.insert(SIGNALS, kid) end
      if has_children then cancel_descendants(kid, data) end
    end
  end
end

local child_done

-- The terminal transition: status, event, retention, descendants cancelled,
-- and the parent's counts (which may finish the parent in turn).
-- `signal`: the operation may be running a handler that must be told.
local function finish(id, status, field, value, data, signal)
  local k = k_op(id)
  local prev = redis.call('HGET', k, 'status')
  if not prev or TERMINAL[prev] then return end
  local parent, has_children = mark_terminal(id, status, field, value, data)
  if signal and prev == 'running' then table.insert(SIGNALS, id) end
  if has_children then
    cancel_descendants(id, cjson.encode({ reason = 'parent_' .. status, parent_id = id }))
  end
  if parent ~= '' then child_done(parent, id, prev, status) end
end

local function child_counts(pk)
  local c = redis.call('HMGET', pk, 'c_total', 'c_queued', 'c_running', 'c_succeeded', 'c_failed', 'c_cancelled')
  return {
    total = tonumber(c[1]) or 0, queued = tonumber(c[2]) or 0, running = tonumber(c[3]) or 0,
    succeeded = tonumber(c[4]) or 0, failed = tonumber(c[5]) or 0, cancelled = tonumber(c[6]) or 0,
  }
end

local function children_failed_error(counts)
  return json_error('child_failed', int(counts.failed) .. ' of ' .. int(counts.total) ..
      ' children failed and ' .. int(counts.cancelled) .. ' were cancelled', false)
end

-- Decides what a waiting parent does once none of its children is queued or
-- running: fail (policy), finish with the counts, or resume its handler.
-- Returns 'waiting', 'finished' or 'resume'.
local function settle_parent(id)
  local pk = k_op(id)
  local f = redis.call('HMGET', pk, 'status', 'waiting', 'policy', 'resume')
  if not f[1] or TERMINAL[f[1]] then return 'finished' end
  if f[2] ~= '1' then return 'waiting' end
  local c = child_counts(pk)
  if c.queued + c.running > 0 then return 'waiting' end
  if c.failed + c.cancelled > 0 and f[3] ~= 'ignore_failures' then
    local err = children_failed_error(c)
    finish(id, 'failed', 'error', err, '{"error":' .. err .. '}', false)
    return 'finished'
  end
  if f[4] == '1' then
    redis.call('HSET', pk, 'waiting', '0', 'resume_pending', '1', 'lease_until', '0')
    table.insert(READY_PARENTS, id)
    return 'resume'
  end
  local result = cjson.encode({ children = c })
  finish(id, 'succeeded', 'result', result, '{"result":' .. result .. '}', false)
  return 'finished'
end

-- Adds the numeric `totals` of a succeeded child's result into the
-- parent's running totals (partial results of a split job). Returns the
-- totals table, or nil when the parent keeps none.
local function add_child_totals(pk, child)
  local raw = redis.call('HGET', pk, 'totals')
  local totals = nil
  if raw and raw ~= '' then totals = cjson.decode(raw) end
  local result = redis.call('HGET', k_op(child), 'result')
  if result and string.find(result, '"totals"', 1, true) then
    local ok, decoded = pcall(cjson.decode, result)
    if ok and type(decoded) == 'table' and type(decoded.totals) == 'table' then
      totals = totals or {}
      for name, value in pairs(decoded.totals) do
        if type(value) == 'number' and type(name) == 'string' then
          totals[name] = (tonumber(totals[name]) or 0) + value
        end
      end
      redis.call('HSET', pk, 'totals', cjson.encode(totals))
    end
  end
  return totals
end

-- A parent's progress follows its children: written when the percent
-- grows, a child did not succeed, or 50 ms passed since the last write
-- (so a parent of many fast children is not flooded with events).
local CHILD_PROGRESS_INTERVAL_MS = 50

-- Accounts for a child that left status `prev` for `status` (terminal).
child_done = function(parent, child, prev, status)
  local pk = k_op(parent)
  count_move(parent, prev, status)
  local f = redis.call('HMGET', pk, 'status', 'policy', 'pct', 'child_progress_at')
  if not f[1] or TERMINAL[f[1]] then return end
  if status ~= 'succeeded' and f[2] == 'fail_fast' then
    local err = json_error('child_failed', 'child ' .. child .. ' ' .. status, false)
    finish(parent, 'failed', 'error', err, '{"error":' .. err .. '}', true)
    return
  end
  local totals = nil
  if status == 'succeeded' then totals = add_child_totals(pk, child) end
  local c = child_counts(pk)
  local done = c.succeeded + c.failed + c.cancelled
  local pct = 0
  if c.total > 0 then pct = math.floor(done * 100 / c.total) end
  local stale = NOW_MS - (tonumber(f[4]) or 0) >= CHILD_PROGRESS_INTERVAL_MS
  if pct > (tonumber(f[3]) or 0) or status ~= 'succeeded' or stale or done == c.total then
    local data = { children = c }
    if totals == nil then
      local raw = redis.call('HGET', pk, 'totals')
      if raw and raw ~= '' then totals = cjson.decode(raw) end
    end
    if totals ~= nil then data.totals = totals end
    local progress = cjson.encode({
      percent = math.max(pct, tonumber(f[3]) or 0),
      message = int(done) .. '/' .. int(c.total) .. ' children done',
      data = data,
    })
    redis.call('HSET', pk, 'progress', progress, 'pct', math.max(pct, tonumber(f[3]) or 0),
      'child_progress_at', int(NOW_MS))
    emit(parent, 'progress', progress)
  end
  settle_parent(parent)
end

-- True when the caller holds the current, live claim on the operation.
local function holds_claim(k, attempt)
  local f = redis.call('HMGET', k, 'status', 'attempt', 'waiting', 'lease_until')
  return f[1] == 'running' and f[2] == attempt and f[3] ~= '1' and (tonumber(f[4]) or 0) >= NOW_MS
end

-- What every transition returns after its own status word: the ids to
-- signal, the keys to expire, the ready parents, the finished roots and
-- the queue entries to acknowledge, each list prefixed with its number of
-- items.
local function outcome(word, ...)
  local out = { word }
  for _, v in ipairs({ ... }) do table.insert(out, v) end
  if #SIGNALS > 0 then
    redis.call('PUBLISH', P .. ':cancel', table.concat(SIGNALS, ' '))
  end
  table.insert(out, #SIGNALS)
  for _, v in ipairs(SIGNALS) do table.insert(out, v) end
  table.insert(out, #EXPIRE_KEYS)
  for _, v in ipairs(EXPIRE_KEYS) do table.insert(out, v) end
  table.insert(out, #READY_PARENTS)
  for _, v in ipairs(READY_PARENTS) do
    table.insert(out, v)
    table.insert(out, redis.call('HGET', k_op(v), 'entry') or '')
  end
  table.insert(out, #FINISHED_ROOTS / 2)
  for _, v in ipairs(FINISHED_ROOTS) do table.insert(out, v) end
  table.insert(out, #ACKS)
  for _, v in ipairs(ACKS) do table.insert(out, v) end
  return out
end
