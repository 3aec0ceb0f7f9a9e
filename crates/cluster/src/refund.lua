-- Give back a charge whose message could not be spooled (as weir-quota's refund): its
-- recipients leave their second, and the bucket gets back the time they spent.
--
-- KEYS[1] window, KEYS[2] seconds, KEYS[3] state (as quota.lua)
-- ARGV: second, count, spent_us
local s, n, spent = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local have = tonumber(redis.call('HGET', KEYS[1], s) or '0')
local take = math.min(have, n)
if take > 0 then
  local left = redis.call('HINCRBY', KEYS[1], s, -take)
  if left <= 0 then
    redis.call('HDEL', KEYS[1], s)
    redis.call('ZREM', KEYS[2], s)
  end
  redis.call('HINCRBY', KEYS[3], 'total', -take)
end
local tat = tonumber(redis.call('HGET', KEYS[3], 'tat') or '0')
redis.call('HSET', KEYS[3], 'tat', string.format('%.0f', math.max(0, tat - spent)))
return take
