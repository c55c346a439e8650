-- The scene clock G shared by the workers of one scene: the largest time of the accepted
-- events that were not late. ARGV[1] is a candidate ('' for none); the reply is G as it
-- stands after the call (false when no event was accepted yet).
local current = redis.call('GET', KEYS[1])
local candidate = tonumber(ARGV[1])
if candidate and (not current or candidate > tonumber(current)) then
  current = ARGV[1]
  redis.call('SET', KEYS[1], current)
end
return current
