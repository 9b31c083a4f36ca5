--[[
  Atomically move one sandbox to a new status, if its state machine allows it
  and the caller still owns it (fencing), then record the change in the capped
  events stream. Entering an ended status also: bumps the epoch (so the lease
  can be neither renewed nor taken again: a host that still runs the VM fences
  it), releases the sandbox's capacity on its host, and lets the record expire
  after the retention period.

  Input:
    KEYS[1] sandbox hash        ({monocore}:sandbox:<id>)
    KEYS[2] events stream       ({monocore}:events)
    KEYS[3] allocation hash of the host named in ARGV[10] ({monocore}:host:<id>:alloc)

    ARGV[1] sandbox id
    ARGV[2] new status
    ARGV[3] allowed source statuses, comma separated (from sandbox-state.ts)
    ARGV[4] expected epoch ("" = any)
    ARGV[5] expected host ("" = any)
    ARGV[6] events stream max length (approximate)
    ARGV[7] now, ISO-8601
    ARGV[8] event detail ("" = none)
    ARGV[9] "1" when the new status is an ended one; "p" when it is paused (its capacity is released, nothing else)
    ARGV[10] host whose allocation hash KEYS[3] is
    ARGV[11] retention of an ended record, ms
    ARGV[12..] field, value pairs to set with the status

  Output:
    {1, from, eventId}      done
    {0, from}               the transition is not allowed (from -> to)
    {-1, epoch, host}       fenced: the caller no longer owns the sandbox
    {-2}                    no such sandbox
]]
local sb = KEYS[1]
if redis.call('EXISTS', sb) == 0 then
  return {-2}
end
local cur = redis.call('HMGET', sb, 'status', 'epoch', 'host')
local from = cur[1] or 'creating'
if ARGV[4] ~= '' and (cur[2] or '') ~= ARGV[4] then
  return {-1, cur[2] or '', cur[3] or ''}
end
if ARGV[5] ~= '' and (cur[3] or '') ~= ARGV[5] then
  return {-1, cur[2] or '', cur[3] or ''}
end
local allowed = false
for s in string.gmatch(ARGV[3], '[^,]+') do
  if s == from then allowed = true end
end
if not allowed then
  return {0, from}
end
local fields = {'status', ARGV[2], 'updated_at', ARGV[7]}
for i = 12, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', sb, unpack(fields))
if ARGV[9] == '1' then
  redis.call('HINCRBY', sb, 'epoch', 1)
  if (cur[3] or '') == ARGV[10] then
    redis.call('HDEL', KEYS[3], 'sandbox:' .. ARGV[1])
  end
  redis.call('PEXPIRE', sb, ARGV[11])
elseif ARGV[9] == 'p' and (cur[3] or '') == ARGV[10] then
  redis.call('HDEL', KEYS[3], 'sandbox:' .. ARGV[1])
end
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'kind', 'sandbox', 'time', ARGV[7], 'sandbox', ARGV[1], 'from', from, 'to', ARGV[2],
  'host', cur[3] or '', 'detail', ARGV[8])
return {1, from, id}
