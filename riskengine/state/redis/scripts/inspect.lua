-- Sizes of one key of entity state, for stats:
-- {entities, entries, tiles, guard records, MEMORY USAGE}.
-- ARGV[1] the entry stride, ARGV[2] the guard record stride of the entity's plan.
local values
if redis.call('TYPE', KEYS[1]).ok == 'hash' then
  values = redis.call('HVALS', KEYS[1])
else
  local one = redis.call('GET', KEYS[1])
  values = {}
  if one then values[1] = one end
end
local entries, tiles, records = 0, 0, 0
for _, packed in ipairs(values) do
  local _, blob = cmsgpack.unpack(packed)
  entries = entries + #blob[2] / tonumber(ARGV[1])
  for _, group in ipairs(blob[3]) do tiles = tiles + #group end
  records = records + #blob[4] / tonumber(ARGV[2])
end
local memory = redis.call('MEMORY', 'USAGE', KEYS[1]) or 0
return {#values, entries, tiles, records, memory}
