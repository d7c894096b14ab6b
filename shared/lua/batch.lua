-- batch.lua: runs a transition for many operations of one slot in one
-- script call (appended after lib.lua and the transition's body, wrapped
-- as the function `one`), so the script's fixed cost is paid once.
-- KEYS: the operations' hashes.  ARGV[1] prefix  [3] now  [4] retention
-- [5] m, the transition's own arguments per operation; then per operation
-- its root followed by its m arguments (the transition's ARGV[5..4+m]).
-- Returns one reply per operation, in order: the transition's own, or
-- {'error', message} when it raised an error.
local batch_keys, batch_args = {}, {}
for i = 1, #KEYS do batch_keys[i] = KEYS[i] end
for i = 1, #ARGV do batch_args[i] = ARGV[i] end
local per = tonumber(batch_args[5])
local replies = {}
for i = 1, #batch_keys do
  local base = 5 + (i - 1) * (per + 1)
  KEYS[1] = batch_keys[i]
  ROOT = batch_args[base + 1]
  ARGV[2] = ROOT
  for j = 1, per do ARGV[4 + j] = batch_args[base + 1 + j] end
  SIGNALS, EXPIRE_KEYS, READY_PARENTS, FINISHED_ROOTS, ACKS = {}, {}, {}, {}, {}
  local ok, reply = pcall(one)
  if ok then
    replies[i] = reply
  else
    if type(reply) == 'table' then reply = reply.err end
    replies[i] = { 'error', tostring(reply) }
  end
end
return replies
