-- One quota decision of one (account, region), atomically: the semantics of weir-quota
-- (rolling 24 h at one-second resolution, then a GCRA token bucket that may go into debt;
-- paused -> daily -> rate; a refusal charges nothing), in microseconds (Lua numbers are
-- doubles: exact up to 2^53 us, about 285 years).
--
-- KEYS[1] window: hash second -> recipients      KEYS[2] seconds: sorted set of those seconds
-- KEYS[3] state: hash total, tat (us)            KEYS[4] idempotency key of this message, or ""
-- KEYS[5] the cluster's open epoch
-- ARGV: op ("admit" | "check"), now_us ("" = the server's clock), n, enabled (0/1),
--       max_24h (-1 = unlimited), emission_us (0 = unlimited rate), tau_us, idempotency ttl (s),
--       the epoch the node believes open, expect (1: the node charged this (account, region)
--       within the window, so its counters must exist)
--
-- Returns {0, second, count, tat_before, tat_after} accepted (admit) or {0, total} (check);
-- {1} paused; {2, retry_us | -1} daily quota; {3, retry_us} rate; {4} the epoch is not the
-- node's (Redis lost its data, or is being re-seeded): decide nothing; {5} counters that must
-- exist are gone (evicted or deleted): the epoch must be re-seeded, never counted from zero.
local WINDOW = 86400
local op = ARGV[1]
local now
if ARGV[2] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[2])
end
local n = tonumber(ARGV[3])
local enabled = ARGV[4] == '1'
local max = tonumber(ARGV[5])
local emission = tonumber(ARGV[6])
local tau = tonumber(ARGV[7])
local ttl = tonumber(ARGV[8])
local now_s = math.floor(now / 1000000)

-- A Redis that lost its data must not admit anything before the nodes re-seed it.
if redis.call('GET', KEYS[5]) ~= ARGV[9] then return {4} end

-- A retried call (a timeout after the charge) gets the first answer, not a second charge.
if op == 'admit' and KEYS[4] ~= '' then
  local prev = redis.call('GET', KEYS[4])
  if prev then
    local out = {0}
    for v in string.gmatch(prev, '[^,]+') do out[#out + 1] = tonumber(v) end
    return out
  end
end

-- Lost counters are not a fresh start: the state goes with a window whenever it counts anything.
local state = redis.call('EXISTS', KEYS[3]) == 1
if (ARGV[10] == '1' and not state)
  or (state and tonumber(redis.call('HGET', KEYS[3], 'total') or '0') > 0 and redis.call('EXISTS', KEYS[2]) == 0) then
  return {5}
end

if not enabled then return {1} end

local total = tonumber(redis.call('HGET', KEYS[3], 'total') or '0')
local tat = tonumber(redis.call('HGET', KEYS[3], 'tat') or '0')

-- Seconds s with s + WINDOW <= now_s have left the window.
local cutoff = now_s - WINDOW
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)
if #old > 0 then
  for _, s in ipairs(old) do
    total = total - tonumber(redis.call('HGET', KEYS[1], s) or '0')
    redis.call('HDEL', KEYS[1], s)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
  redis.call('HSET', KEYS[3], 'total', total)
end

if max >= 0 and total + n > max then
  if n > max then return {2, -1} end
  local need = total + n - max
  local freed = 0
  local seconds = redis.call('ZRANGE', KEYS[2], 0, -1)
  for _, s in ipairs(seconds) do
    freed = freed + tonumber(redis.call('HGET', KEYS[1], s) or '0')
    if freed >= need then
      local at = (tonumber(s) + WINDOW) * 1000000
      return {2, math.max(0, at - now)}
    end
  end
  return {2, -1}
end

if emission > 0 and tat > now + tau then
  return {3, tat - tau - now}
end

if op ~= 'admit' then return {0, total} end

local before = tat
if emission > 0 then
  tat = math.max(tat, now) + n * emission
end
-- A clock that steps back must not reorder the window.
local second = now_s
local last = redis.call('ZRANGE', KEYS[2], -1, -1)
if #last > 0 and tonumber(last[1]) > second then second = tonumber(last[1]) end
redis.call('HINCRBY', KEYS[1], second, n)
redis.call('ZADD', KEYS[2], second, second)
redis.call('HSET', KEYS[3], 'total', total + n, 'tat', string.format('%.0f', tat))
-- Idle keys go after a window and a day.
for i = 1, 3 do redis.call('EXPIRE', KEYS[i], 2 * WINDOW) end
local answer = string.format('%.0f,%.0f,%.0f,%.0f', second, n, before, tat)
if KEYS[4] ~= '' then redis.call('SET', KEYS[4], answer, 'EX', ttl) end
return {0, second, n, before, tat}
