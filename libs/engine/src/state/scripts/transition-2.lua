--[[
  Atomically move one service to a new status, if the state machine allows it
  and the caller still owns the service (fencing), then record the change in
  the capped events stream.

  Input:
    KEYS[1] service hash        ({monocore}:service:<name>)
    KEYS[2] events stream       ({monocore}:events)

    ARGV[1] service name
    ARGV[2] new status
    ARGV[3] allowed source statuses, comma separated (from service-state.ts)
    ARGV[4] expected epoch ("" = any)
    ARGV[5] expected host ("" = any)
    ARGV[6] events stream max length (approximate)
    ARGV[7] now, ISO-8601
    ARGV[8] event detail ("" = none)
    ARGV[9] fields to delete, comma separated ("" = none)
    ARGV[10..] field, value pairs to set with the status

  Output:
    {1, from, eventId}      done
    {0, from}               the transition is not allowed (from -> to)
    {-1, epoch, host}       fenced: the service was rescheduled (stale epoch or host)
    {-2}                    no such service
]]
local svc = KEYS[1]
if redis.call('EXISTS', svc) == 0 then
  return {-2}
end
local cur = redis.call('HMGET', svc, 'status', 'epoch', 'host', 'deployment_id')
local from = cur[1] or 'pending'
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
if ARGV[9] ~= '' then
  for f in string.gmatch(ARGV[9], '[^,]+') do
    redis.call('HDEL', svc, f)
  end
end
local fields = {'status', ARGV[2], 'updated_at', ARGV[7]}
for i = 10, #ARGV, 2 do
  fields[#fields + 1] = ARGV[i]
  fields[#fields + 1] = ARGV[i + 1]
end
redis.call('HSET', svc, unpack(fields))
local after = redis.call('HMGET', svc, 'host', 'deployment_id')
local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], '*',
  'kind', 'transition', 'time', ARGV[7], 'service', ARGV[1], 'from', from, 'to', ARGV[2],
  'host', after[1] or '', 'deployment', after[2] or '', 'detail', ARGV[8])
return {1, from, id}
