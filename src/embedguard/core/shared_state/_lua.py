"""The Lua scripts that keep shared state consistent: each runs atomically on the server.

Times come from the server's ``TIME``, so workers on machines with skewed clocks agree. Times
are stored as seconds with ``%.17g`` (a double survives the round trip exactly).
"""

BREAKER = """
-- KEYS[1]: the breaker hash; KEYS[2]: the set of outstanding probe tickets.
-- ARGV: op, window_size, minimum_calls, failure_rate_threshold, success_threshold, open_timeout,
--       half_open_max_attempts, half_open_timeout, permit generation, permit is a probe (0/1),
--       permit ticket, failure note ('' for none), failure note id.
-- The window is a string of the last window_size counted outcomes ('1' failed, '0' succeeded).
local h, probes = KEYS[1], KEYS[2]
local op = ARGV[1]
local wsize, minc, frate = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local sthr, otime = tonumber(ARGV[5]), tonumber(ARGV[6])
local maxp, hot = tonumber(ARGV[7]), tonumber(ARGV[8])
local pgen, pprobe, pticket = tonumber(ARGV[9]), ARGV[10] == '1', ARGV[11]
local note, note_id = ARGV[12], ARGV[13]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', h, 'state', 'gen', 'window', 'streak', 'opened_at', 'half_open_at',
  'admitted', 'successes', 'opened', 'closed', 'rejected', 'reason', 'note', 'note_id')
local s = {state = v[1] or 'closed', gen = tonumber(v[2]) or 0, window = v[3] or '',
  streak = tonumber(v[4]) or 0, opened_at = tonumber(v[5]) or 0,
  half_open_at = tonumber(v[6]) or 0, admitted = tonumber(v[7]) or 0,
  successes = tonumber(v[8]) or 0, opened = tonumber(v[9]) or 0, closed = tonumber(v[10]) or 0,
  rejected = tonumber(v[11]) or 0, reason = v[12] or '', note = v[13] or '',
  note_id = v[14] or ''}
local start = s.state
local moves = {}
local dirty = false
local function failures()
  local _, n = string.gsub(s.window, '1', '')
  return n
end
local function forget()
  s.window, s.streak, s.reason, s.note, s.note_id = '', 0, '', '', ''
end
local function remember()
  s.note, s.note_id = note, note_id
end
local function go(new, at, reason)
  table.insert(moves, s.state .. '>' .. new)
  s.state = new
  s.gen = s.gen + 1
  s.successes = 0
  s.admitted = 0
  redis.call('DEL', probes)
  if new == 'open' then
    s.opened_at = at
    s.opened = s.opened + 1
    s.reason = reason
  elseif new == 'half_open' then
    s.half_open_at = at
  else
    forget()
    s.closed = s.closed + 1
  end
  dirty = true
end
local function count(outcome)
  s.window = s.window .. outcome
  if #s.window > wsize then s.window = string.sub(s.window, -wsize) end
  dirty = true
end
-- A half-open episode without a verdict in time failed; the open timer starts at its deadline.
if s.state == 'half_open' and now >= s.half_open_at + hot then
  go('open', s.half_open_at + hot,
    string.format('no half-open probe answered within %gs', hot))
end
local code, ticket = 'ok', 0
if op == 'allow' then
  if s.state ~= 'closed' then
    if s.state == 'open' and now >= s.opened_at + otime then go('half_open', now) end
    if s.state == 'half_open' and s.admitted < maxp then
      ticket = redis.call('HINCRBY', h, 'ticket', 1)
      redis.call('SADD', probes, ticket)
      s.admitted = s.admitted + 1
      code = 'probe'
    else
      s.rejected = s.rejected + 1
      code = 'rejected'
    end
    dirty = true
  end
elseif op == 'success' then
  if pgen == s.gen then
    if pprobe then
      if redis.call('SREM', probes, pticket) == 1 then
        s.successes = s.successes + 1
        dirty = true
        if s.successes >= sthr then go('closed', now) end
      end
    elseif s.state == 'closed' then
      count('0')
      s.streak = 0
    end
  end
elseif op == 'failure' then
  if pgen == s.gen then
    if pprobe then
      if redis.call('SISMEMBER', probes, pticket) == 1 then
        remember()
        go('open', now, 'a half-open probe failed')
      end
    elseif s.state == 'closed' then
      remember()
      count('1')
      s.streak = s.streak + 1
      local calls, failed = #s.window, failures()
      if calls >= minc and failed / calls >= frate then
        go('open', now, string.format('%d of %d recent requests failed', failed, calls))
      end
    end
  end
elseif op == 'release' then
  if pprobe and pgen == s.gen and redis.call('SREM', probes, pticket) == 1 then
    s.admitted = s.admitted - 1
    dirty = true
  end
elseif op == 'reset' then
  if s.state == 'closed' then
    s.gen = s.gen + 1
    forget()
    dirty = true
  else
    go('closed', now)
  end
end
if dirty then
  redis.call('HSET', h, 'state', s.state, 'gen', s.gen, 'window', s.window, 'streak', s.streak,
    'opened_at', string.format('%.17g', s.opened_at),
    'half_open_at', string.format('%.17g', s.half_open_at),
    'admitted', s.admitted, 'successes', s.successes, 'opened', s.opened, 'closed', s.closed,
    'rejected', s.rejected, 'reason', s.reason, 'note', s.note, 'note_id', s.note_id)
end
local effective, wait = s.state, 0
if s.state == 'open' then
  wait = s.opened_at + otime - now
  if wait <= 0 then
    wait = 0
    effective = 'half_open'
  end
end
return {code, start, s.state, effective, s.gen, ticket, string.format('%.17g', wait), s.streak,
  s.successes, s.admitted, redis.call('SCARD', probes), s.opened, s.closed, s.rejected,
  table.concat(moves, ','), #s.window, failures(), s.reason, s.note, s.note_id}
"""

RATE_LIMIT = """
-- KEYS[1]: the limiter hash. Each bucket is stored as its GCRA "theoretical arrival time": the
-- server time at which it is full again (level = capacity - (tat - now) * rate, negative = debt).
-- ARGV: requests capacity, requests rate per second, tokens capacity, tokens rate per second
--       (capacity 0: unlimited), requests delta, tokens delta (> 0 books, < 0 gives back),
--       requests floor, tokens floor (lower the level to it; '' for none), pause seconds ('').
-- The client bounds every value; non-finite ones are ignored here too, and a pause counts at
-- most 60 s, so a bad value can neither stall the fleet nor reset a bucket.
local function finite(x) return x and x == x and x > -1e300 and x < 1e300 end
local h = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local v = redis.call('HMGET', h, 'requests', 'tokens', 'paused_until')
local paused = tonumber(v[3]) or 0
local pause = tonumber(ARGV[9])
if finite(pause) then
  pause = math.min(math.max(pause, 0), 60)
  paused = math.max(paused, now + pause)
  redis.call('HSET', h, 'paused_until', string.format('%.17g', paused))
end
local delay = math.max(0, paused - now)
local horizon = delay
local levels = {'', ''}
local fields = {'requests', 'tokens'}
for i = 1, 2 do
  local cap, rate = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local delta, floor = tonumber(ARGV[4 + i]), tonumber(ARGV[6 + i])
  if not finite(floor) then floor = nil end
  if finite(cap) and finite(rate) and cap > 0 and rate > 0 and finite(delta) then
    local tat = math.max(tonumber(v[i]) or now, now) + delta / rate
    if tat < now then tat = now end
    if floor then tat = math.max(tat, now + (cap - floor) / rate) end
    redis.call('HSET', h, fields[i], string.format('%.17g', tat))
    delay = math.max(delay, tat - now - cap / rate)
    horizon = math.max(horizon, tat - now)
    levels[i] = string.format('%.17g', cap - (tat - now) * rate)
  end
end
-- Past the horizon every bucket is full and the pause over: the key may go.
redis.call('PEXPIRE', h, math.ceil(horizon * 1000) + 60000)
return {string.format('%.17g', delay), levels[1], levels[2]}
"""
