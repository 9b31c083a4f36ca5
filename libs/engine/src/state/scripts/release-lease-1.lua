--[[
  Drop a lease only if the caller holds it.

  Input:
    KEYS[1] lease key           ({monocore}:lease:<name>)
    ARGV[1] expected holder     "<host>:<epoch>"

  Output: 1 released, 0 not held
]]
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
