--[[
  Extend a lease only if the caller still holds it and the service is still
  assigned to the caller's host and epoch — so a host never keeps renewing
  the lease of a service that was moved away (it would block the new owner).

  Input:
    KEYS[1] lease key           ({monocore}:lease:<subject>)
    KEYS[2] the subject's hash  ({monocore}:service:<name>, or {monocore}:sandbox:<id> for a
                                sandbox: the same host and epoch fields)

    ARGV[1] host id
    ARGV[2] epoch
    ARGV[3] ttl, ms

  Output: 1 renewed, 0 not held (expired, taken by another host, or the service
          was reassigned): HostLiveness tries to take it again, else kills the VM
]]
local cur = redis.call('HMGET', KEYS[2], 'epoch', 'host')
if (cur[1] or '') ~= ARGV[2] or (cur[2] or '') ~= ARGV[1] then
  return 0
end
if redis.call('GET', KEYS[1]) == ARGV[1] .. ':' .. ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
