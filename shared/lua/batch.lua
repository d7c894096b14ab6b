-- batch.lua: runs one transition for many operations of one slot in one
-- call, so the call's fixed cost (its arguments, the clock, the reply) is
-- paid once. Each transition `one(KEYS, ARGV)` that has a batch form is
-- registered as NAME_batch calling `run_batch(one, KEYS, ARGV)`.
-- KEYS: the operations' hashes.  ARGV[1] prefix  [3] now  [4] retention
-- [5] m, the transition's own arguments per operation; then per operation
-- its root followed by its m arguments (the transition's ARGV[5..4+m]).
-- Returns one reply per operation, in order: the transition's own, or
-- {'error', message} when it raised an error.
local function run_batch(one, KEYS, ARGV)
  local per = tonumber(ARGV[5])
  local keys, args = {}, { ARGV[1], '', ARGV[3], ARGV[4] }
  local replies = {}
  for i = 1, #KEYS do
    local base = 5 + (i - 1) * (per + 1)
    keys[1] = KEYS[i]
    ROOT = ARGV[base + 1]
    args[2] = ROOT
    for j = 1, per do args[4 + j] = ARGV[base + 1 + j] end
    start_item()
    local ok, reply = pcall(one, keys, args)
    if ok then
      replies[i] = reply
    else
      if type(reply) == 'table' then reply = reply.err end
      replies[i] = { 'error', tostring(reply) }
    end
  end
  return replies
end
