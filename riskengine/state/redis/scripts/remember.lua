-- Idempotency record of a whole event: "<t>|<decision>". KEYS[1] the id's key;
-- ARGV[1] t, ARGV[2] the decision, ARGV[3] the horizon (a record with t <= horizon is
-- no longer remembered; '' for none), ARGV[4] TTL in ms (0: none).
-- Reply: the record kept before (the first decision wins), or false when this one was set.
local old = redis.call('GET', KEYS[1])
local horizon = tonumber(ARGV[3])
if old then
  local at = string.find(old, '|', 1, true)
  local t = at and tonumber(string.sub(old, 1, at - 1))
  if t and (horizon == nil or t > horizon) then return old end
end
local value = ARGV[1] .. '|' .. ARGV[2]
local ttl = tonumber(ARGV[4])
if ttl > 0 then
  redis.call('SET', KEYS[1], value, 'PX', ttl)
else
  redis.call('SET', KEYS[1], value)
end
return false
