--[[
  Take (or renew) the lease that allows one host to run one service. The lease
  is "<host>:<epoch>"; the service hash names the host and epoch it is
  assigned to. A host may boot a service only while it holds the lease, and a
  new host can only take it after the previous holder's lease expired — so a
  service never runs on two hosts at once.

  Input:
    KEYS[1] lease key           ({monocore}:lease:<subject>)
    KEYS[2] the subject's hash  ({monocore}:service:<name>, or {monocore}:sandbox:<id> for a
                                sandbox: the same host and epoch fields)

    ARGV[1] host id
    ARGV[2] epoch
    ARGV[3] ttl, ms

  Output:
    {1, ""}                 lease held by the caller (taken or renewed)
    {0, holder, pttl}       another holder's lease is still live
    {-1, epoch, host}       the assignment changed (stale epoch or host): do not boot
]]
local cur = redis.call('HMGET', KEYS[2], 'epoch', 'host')
if (cur[1] or '') ~= ARGV[2] or (cur[2] or '') ~= ARGV[1] then
  return {-1, cur[1] or '', cur[2] or ''}
end
local me = ARGV[1] .. ':' .. ARGV[2]
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= me then
  return {0, holder, redis.call('PTTL', KEYS[1])}
end
redis.call('SET', KEYS[1], me, 'PX', ARGV[3])
return {1, ''}
