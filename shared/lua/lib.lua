-- lib.lua: the helpers of every transition, at the top of the `longrun`
-- function library (see scripts.rs: the library is this file, batch.lua,
-- then each transition's body as a function, registered with
-- `redis.register_function` and called with `FCALL`).
--
-- Calling convention of every transition:
--   KEYS[1]  the operation's hash (routes the call to the tree's slot)
--   ARGV[1]  key prefix            ARGV[2]  root id (the tree's hash tag)
--   ARGV[3]  now, RFC 3339 (the caller's clock, for display only)
--   ARGV[4]  retention of terminal operations, ms
--   ARGV[5..] transition-specific
-- Leases, deadlines and due times use the Redis server's clock (TIME), so
-- workers with skewed clocks agree on them.
--
-- The library is loaded once; its locals outlive a call. The ones below
-- are one call's state: `begin` sets them afresh at the start of each call.

local P, ROOT, NOW_ISO, RETENTION, NOW_MS

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
-- Owners of the operations this call touched, read once each.
local OWNERS = {}

-- Empties the follow-up lists before one operation's transition (a batch
-- runs several in one call; each reports its own).
local function start_item()
  if #SIGNALS > 0 then SIGNALS = {} end
  if #EXPIRE_KEYS > 0 then EXPIRE_KEYS = {} end
  if #READY_PARENTS > 0 then READY_PARENTS = {} end
  if #FINISHED_ROOTS > 0 then FINISHED_ROOTS = {} end
  if #ACKS > 0 then ACKS = {} end
end

-- Starts a call: its common arguments, the server's clock, empty lists.
local function begin(ARGV)
  P = ARGV[1]
  ROOT = ARGV[2]
  NOW_ISO = ARGV[3]
  RETENTION = tonumber(ARGV[4])
  local t = redis.call('TIME')
  NOW_MS = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  OWNERS = {}
  start_item()
end

local function k_op(id) return P .. ':{' .. ROOT .. '}:op:' .. id end
-- The event log: a list of the `event` frames as published, entry i
-- holding seq i + 1 (seqs are dense: every event of an operation is
-- appended by `emit`, in the transition that bumps its seq).
local function k_log(id) return P .. ':{' .. ROOT .. '}:log:' .. id end
-- The event log as versions before the list kept it (a stream, entry id
-- SEQ-0): read, expired and deleted along with the operation, so that
-- operations which lived through an upgrade keep their whole history.
local function k_ev(id) return P .. ':{' .. ROOT .. '}:ev:' .. id end
local function k_kids(id) return P .. ':{' .. ROOT .. '}:kids:' .. id end
local function k_ch(id) return P .. ':{' .. ROOT .. '}:ch:' .. id end

local function int(n) return string.format('%d', n) end

local function json_error(code, message, retryable)
  return cjson.encode({ code = code, message = message, retryable = retryable })
end

local function owner_of(id)
  local owner = OWNERS[id]
  if owner == nil then
    owner = redis.call('HGET', k_op(id), 'owner') or false
    OWNERS[id] = owner
  end
  return owner
end

-- Appends an event's WebSocket frame to the operation's log, bumps its
-- seq and publishes the frame on the operation's and the owner's
-- channels. With `seq` given, the caller read the operation's seq and
-- writes this one (and `updated_at`) in its own HSET of the operation:
-- two writes fewer.
local function emit(id, etype, data, seq)
  if not seq then
    local op = k_op(id)
    seq = redis.call('HINCRBY', op, 'seq', 1)
    redis.call('HSET', op, 'updated_at', NOW_ISO)
  end
  local frame = '{"type":"event","operation_id":"' .. id .. '","seq":' .. int(seq) ..
      ',"event":"' .. etype .. '","at":"' .. NOW_ISO .. '","data":' .. data .. '}'
  redis.call('RPUSH', k_log(id), frame)
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
  redis.call('PEXPIRE', k_log(id), RETENTION)
  redis.call('PEXPIRE', k_ev(id), RETENTION)
  if has_children then redis.call('PEXPIRE', k_kids(id), RETENTION) end
end

-- The fields of an operation a terminal transition needs, read at once.
local NODE_FIELDS = { 'status', 'waiting', 'entry', 'parent', 'idem', 'owner', 'c_total', 'seq' }

local function read_node(id)
  local f = redis.call('HMGET', k_op(id), unpack(NODE_FIELDS))
  return { status = f[1], waiting = f[2], entry = f[3], parent = f[4], idem = f[5], owner = f[6],
    c_total = f[7], seq = tonumber(f[8]) or 0 }
end

-- Sets a terminal status with its event; no parent accounting. `node` is
-- the operation as read_node reads it (its `extra` fields, if any, are
-- written in the same HSET). Returns the parent's id ('' for a root) and
-- whether the operation has children.
local function mark_terminal(id, status, field, value, data, node)
  local k = k_op(id)
  if node.waiting == '1' and node.entry and node.entry ~= '' then table.insert(ACKS, node.entry) end
  if node.owner then OWNERS[id] = node.owner end
  local seq = node.seq + 1
  local fields = { 'status', status, 'finished_at', NOW_ISO, 'waiting', '0', 'resume_pending', '0',
    'seq', seq, 'updated_at', NOW_ISO }
  if field then
    table.insert(fields, field)
    table.insert(fields, value)
  end
  for _, v in ipairs(node.extra or {}) do table.insert(fields, v) end
  redis.call('HSET', k, unpack(fields))
  emit(id, status, data, seq)
  local has_children = (tonumber(node.c_total) or 0) > 0
  expire_node(id, has_children)
  local parent = node.parent or ''
  if parent ~= '' then
    table.insert(EXPIRE_KEYS, P .. ':{' .. id .. '}:root')
  else
    if node.idem and node.idem ~= '' then table.insert(EXPIRE_KEYS, node.idem) end
    table.insert(FINISHED_ROOTS, id)
    table.insert(FINISHED_ROOTS, node.owner or '')
  end
  return parent, has_children
end

-- Cancels every non-terminal descendant of `id`.
local function cancel_descendants(id, data)
  local kids = redis.call('LRANGE', k_kids(id), 0, -1)
  for _, kid in ipairs(kids) do
    local node = read_node(kid)
    local st = node.status
    if st and not TERMINAL[st] then
      local _, has_children = mark_terminal(kid, 'cancelled', nil, nil, data, node)
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
-- `node`: the operation as read_node reads it, when the caller has it.
local function finish(id, status, field, value, data, signal, node)
  node = node or read_node(id)
  local prev = node.status
  if not prev or TERMINAL[prev] then return end
  local parent, has_children = mark_terminal(id, status, field, value, data, node)
  if signal and prev == 'running' then table.insert(SIGNALS, id) end
  if has_children then
    cancel_descendants(id, cjson.encode({ reason = 'parent_' .. status, parent_id = id }))
  end
  if parent ~= '' then
    local result = nil
    if field == 'result' then result = value end
    child_done(parent, id, prev, status, result)
  end
end

-- The fields of a parent that its children's ends need, read at once.
local PARENT_FIELDS = { 'status', 'waiting', 'policy', 'resume', 'pct', 'child_progress_at',
  'totals', 'seq', 'owner', 'c_total', 'c_queued', 'c_running', 'c_succeeded', 'c_failed',
  'c_cancelled' }

local function read_parent(id)
  local f = redis.call('HMGET', k_op(id), unpack(PARENT_FIELDS))
  if f[9] then OWNERS[id] = f[9] end
  return {
    status = f[1], waiting = f[2], policy = f[3], resume = f[4], pct = tonumber(f[5]) or 0,
    child_progress_at = tonumber(f[6]) or 0, totals = f[7], seq = tonumber(f[8]) or 0,
    counts = {
      total = tonumber(f[10]) or 0, queued = tonumber(f[11]) or 0, running = tonumber(f[12]) or 0,
      succeeded = tonumber(f[13]) or 0, failed = tonumber(f[14]) or 0, cancelled = tonumber(f[15]) or 0,
    },
  }
end

local function children_failed_error(counts)
  return json_error('child_failed', int(counts.failed) .. ' of ' .. int(counts.total) ..
      ' children failed and ' .. int(counts.cancelled) .. ' were cancelled', false)
end

-- Decides what a waiting parent does once none of its children is queued or
-- running: fail (policy), finish with the counts, or resume its handler.
-- `pr`: the parent as read_parent read it, when the caller has it.
-- Returns 'waiting', 'finished' or 'resume'.
local function settle_parent(id, pr)
  pr = pr or read_parent(id)
  if not pr.status or TERMINAL[pr.status] then return 'finished' end
  if pr.waiting ~= '1' then return 'waiting' end
  local c = pr.counts
  if c.queued + c.running > 0 then return 'waiting' end
  if c.failed + c.cancelled > 0 and pr.policy ~= 'ignore_failures' then
    local err = children_failed_error(c)
    finish(id, 'failed', 'error', err, '{"error":' .. err .. '}', false)
    return 'finished'
  end
  if pr.resume == '1' then
    redis.call('HSET', k_op(id), 'waiting', '0', 'resume_pending', '1', 'lease_until', '0')
    table.insert(READY_PARENTS, id)
    return 'resume'
  end
  local result = cjson.encode({ children = c })
  finish(id, 'succeeded', 'result', result, '{"result":' .. result .. '}', false)
  return 'finished'
end

local function decode_totals(raw)
  if raw and raw ~= '' then return cjson.decode(raw) end
  return nil
end

-- Adds the numeric `totals` of a succeeded child's `result` into the
-- parent's running totals `raw` (partial results of a split job). Returns
-- the totals table, or nil when the parent keeps none.
local function add_child_totals(pk, raw, result)
  local totals = decode_totals(raw)
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

-- Accounts for a child that left status `prev` for `status` (terminal);
-- `result` is the child's result when it succeeded.
child_done = function(parent, child, prev, status, result)
  local pk = k_op(parent)
  count_move(parent, prev, status)
  local pr = read_parent(parent)
  if not pr.status or TERMINAL[pr.status] then return end
  if status ~= 'succeeded' and pr.policy == 'fail_fast' then
    local err = json_error('child_failed', 'child ' .. child .. ' ' .. status, false)
    finish(parent, 'failed', 'error', err, '{"error":' .. err .. '}', true)
    return
  end
  local totals = nil
  if status == 'succeeded' then totals = add_child_totals(pk, pr.totals, result) end
  local c = pr.counts
  local done = c.succeeded + c.failed + c.cancelled
  local pct = 0
  if c.total > 0 then pct = math.floor(done * 100 / c.total) end
  local stale = NOW_MS - pr.child_progress_at >= CHILD_PROGRESS_INTERVAL_MS
  if pct > pr.pct or status ~= 'succeeded' or stale or done == c.total then
    local data = { children = c }
    if totals == nil then totals = decode_totals(pr.totals) end
    if totals ~= nil then data.totals = totals end
    local percent = math.max(pct, pr.pct)
    local progress = cjson.encode({
      percent = percent,
      message = int(done) .. '/' .. int(c.total) .. ' children done',
      data = data,
    })
    pr.seq = pr.seq + 1
    redis.call('HSET', pk, 'progress', progress, 'pct', percent, 'child_progress_at', int(NOW_MS),
      'seq', pr.seq, 'updated_at', NOW_ISO)
    emit(parent, 'progress', progress, pr.seq)
  end
  settle_parent(parent, pr)
end

-- Whether fields status, attempt, waiting, lease_until (in this order, as
-- read) show the caller's current, live claim for `attempt`.
local function claim_live(f, attempt)
  return f[1] == 'running' and f[2] == attempt and f[3] ~= '1' and (tonumber(f[4]) or 0) >= NOW_MS
end

-- True when the caller holds the current, live claim on the operation.
local function holds_claim(k, attempt)
  return claim_live(redis.call('HMGET', k, 'status', 'attempt', 'waiting', 'lease_until'), attempt)
end

-- Appends `list` to `out` as its number of items (`per` entries each)
-- followed by its entries.
local function put_list(out, list, per)
  local n = #out
  out[n + 1] = #list / per
  for i = 1, #list do out[n + 1 + i] = list[i] end
end

-- What every transition returns after its own status word: the ids to
-- signal, the keys to expire, the ready parents, the finished roots and
-- the queue entries to acknowledge, each list prefixed with its number of
-- items.
local function outcome(word, ...)
  local out = { word, ... }
  if #SIGNALS > 0 then
    redis.call('PUBLISH', P .. ':cancel', table.concat(SIGNALS, ' '))
  end
  put_list(out, SIGNALS, 1)
  put_list(out, EXPIRE_KEYS, 1)
  local ready = {}
  for i, id in ipairs(READY_PARENTS) do
    ready[2 * i - 1] = id
    ready[2 * i] = redis.call('HGET', k_op(id), 'entry') or ''
  end
  put_list(out, ready, 2)
  put_list(out, FINISHED_ROOTS, 2)
  put_list(out, ACKS, 1)
  return out
end
