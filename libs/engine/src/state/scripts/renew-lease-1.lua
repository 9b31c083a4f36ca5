--[[
  Extend a lease only if the caller still holds it.

  Input:
    KEYS[1] lease key           ({monocore}:lease:<name>)
    ARGV[1] expected holder     "<host>:<epoch>"
    ARGV[2] ttl, ms

  Output: 1 renewed, 0 not held (expired or taken by another host: stop the VM)
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
