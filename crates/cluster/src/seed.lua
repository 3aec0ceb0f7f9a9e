-- Add one node's ledger of an (account, region) to the shared counters (after Redis lost its
-- data): each second's recipients are added, the bucket's theoretical arrival time becomes the
-- latest of the nodes'.
--
-- KEYS[1] window, KEYS[2] seconds, KEYS[3] state (as quota.lua)
-- ARGV: tat_us, then pairs second, count
local WINDOW = 86400
local total = tonumber(redis.call('HGET', KEYS[3], 'total') or '0')
local tat = tonumber(redis.call('HGET', KEYS[3], 'tat') or '0')
local seeded_tat = tonumber(ARGV[1])
if seeded_tat > tat then tat = seeded_tat end
for i = 2, #ARGV, 2 do
  local s, n = ARGV[i], tonumber(ARGV[i + 1])
  redis.call('HINCRBY', KEYS[1], s, n)
  redis.call('ZADD', KEYS[2], tonumber(s), s)
  total = total + n
end
redis.call('HSET', KEYS[3], 'total', total, 'tat', string.format('%.0f', tat))
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 2 * WINDOW) end
return total
