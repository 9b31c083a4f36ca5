--[[
  Every recorded service's chosen fields in one round trip: what /status
  reads. Reading the set and then one hash per service cost the client a
  command per service; this is one command, and a consistent snapshot (no
  transition lands between two services' reads). The answer is one JSON
  string: the client parses it natively instead of one reply per field.

  The service hashes are not in KEYS (their names are in the set): they share
  the `{monocore}` hash tag with KEYS[1], so on Redis Cluster they sit in its
  slot.

  Input:
    KEYS[1] set of service names    ({monocore}:services)

    ARGV[1] service hash key prefix ({monocore}:service:)
    ARGV[2..] field names

  Output: JSON [names, rows]: names in SMEMBERS order; rows[i] holds names[i]'s
          values, one per field, false where unset (all false: the hash is
          gone). An empty set gives [{},{}] (cjson cannot tell an empty array).
]]
local names = redis.call('SMEMBERS', KEYS[1])
local fields = {}
for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
local rows = {}
for i, name in ipairs(names) do
  rows[i] = redis.call('HMGET', ARGV[1] .. name, unpack(fields))
end
return cjson.encode({ names, rows })
