"""The Lua scripts of the Redis state store: the fenced write and the one-call reads.

Kept apart from ``redis_state_store`` (which calls them) because each carries its own
argument layout and rules; the comments above each script are its contract.
"""

from __future__ import annotations

# ARGV[1] is m, the number of fenced partitions: KEYS[1..m] are their watermark keys and
# ARGV[2..m+1] the watermarks the batch read. Then groups of commands, each starting
# "<op>, <key index>, <n>":
#   C: one command on KEYS[k]: its name, then n arguments;
#   Z: ZINCRBY on KEYS[k], n (member, increment) pairs;
#   I: HINCRBY on KEYS[k], n (field, increment) pairs;
#   P: a partition's popularity, n items, as ZINCRBY of each item's trend increment on
#      KEYS[k] and HINCRBY of its count on the hash KEYS[c], in four arguments: c, the
#      items joined by newlines, their increments (little-endian doubles), their counts
#      (little-endian int32); done as ZMSCORE + one ZADD and HMGET + one HSET per chunk;
#   H: HSET of one field on n keys from KEYS[k] on: the field, then n values.
# A batch's popularity and users go as a few groups, not a command each: redis-py's
# packing and our building of the arguments cost per argument, in Python, and Redis
# pays per command a script calls. P's sums are the ones ZINCRBY and HINCRBY would
# store: the old value read exactly (ZMSCORE's reply has 17 digits), one IEEE addition,
# and the sum handed back as a number, which redis.call writes with 17 digits. A count
# is summed in Lua (a double) only when its stored value is an integer of at most 15
# characters, so the sum is below 2^53 and written as plain digits; any other value
# goes to HINCRBY, which adds in int64 and refuses what it refuses (not an integer, an
# overflow). In Lua a count of 2^53 + 1 read back as 2^53, and one of 1e17 was written
# "1e+17" (tests/streams/test_popularity_write.py). Every fence is checked before
# anything is written, so a stale partition leaves the whole call without effect.
# A count that HINCRBY refuses for its stored value is repaired, not left to stop the
# script part-way (the writes before it would stay and the batch be retried without
# end): a field that holds no integer (written by something else) is set to the batch's
# increment, as if it were absent; a sum past int64 is clamped to int64's bound. Each
# repair is reported, but not a count already at the bound: it stays there silently.
# Only these two: any other refusal still stops the script part-way, with the writes
# before it kept: a key of the wrong type (written by something else), a bad increment,
# a score that becomes NaN (inf + -inf). Key types are not checked up front: a TYPE per
# key of the batch (each user's hash, each popularity key) would cost Redis a command
# per key on every batch for a fault only a foreign writer causes.
# Returns nil once applied, a flat array of (item, reason, old value's first 64 bytes)
# per repaired count once applied with repairs, or "<fence index>:<stored watermark>"
# for the first fence that does not hold.
FENCED_WRITE = """
local repairs = {}
local function hincrby(ckey, item, c)
  local r = redis.pcall('HINCRBY', ckey, item, c)
  if type(r) ~= 'table' or not r.err then
    return
  end
  local why, fixed = 'not an integer', c
  if string.find(r.err, 'overflow', 1, true) then
    why = 'int64 overflow'
    fixed = tonumber(c) < 0 and '-9223372036854775808' or '9223372036854775807'
  elseif not string.find(r.err, 'hash value is not an integer', 1, true) then
    -- any other refusal raises: a key of the wrong type, or a bad increment, which Redis
    -- 7.0 words 'value is not an integer or out of range' (the stored value is fine)
    redis.call('HINCRBY', ckey, item, c)
  end
  local old = redis.call('HGET', ckey, item) or ''
  if old == fixed then
    return  -- clamped before: it saturates, unreported (a popular item would flood the log)
  end
  redis.call('HSET', ckey, item, fixed)
  repairs[#repairs + 1] = item
  repairs[#repairs + 1] = why
  repairs[#repairs + 1] = string.sub(old, 1, 64)
end

local function popularity(tkey, ckey, n, joined, incs, counts)
  local items, from = {}, 1
  for j = 1, n - 1 do
    local to = string.find(joined, '\\n', from, true)
    items[j] = string.sub(joined, from, to - 1)
    from = to + 1
  end
  items[n] = string.sub(joined, from)
  for lo = 1, n, 500 do
    local m = math.min(500, n - lo + 1)
    local scores = redis.call('ZMSCORE', tkey, unpack(items, lo, lo + m - 1))
    local have = redis.call('HMGET', ckey, unpack(items, lo, lo + m - 1))
    local inc = {struct.unpack('<' .. string.rep('d', m), incs, 8 * (lo - 1) + 1)}
    local cnt = {struct.unpack('<' .. string.rep('i4', m), counts, 4 * (lo - 1) + 1)}
    local z, h, nh = {}, {}, 0
    for j = 1, m do
      local item, score, v = items[lo + j - 1], scores[j], inc[j]
      if score then
        v = tonumber(score) + v
      end
      z[2 * j - 1], z[2 * j] = v, item
      local c, old = cnt[j], have[j]
      if old and not (#old <= 15 and (old == '0' or string.find(old, '^%-?[1-9]%d*$'))) then
        hincrby(ckey, item, c)
      else
        if old then
          c = tonumber(old) + c
        end
        h[nh + 1], h[nh + 2], nh = item, c, nh + 2
      end
    end
    redis.call('ZADD', tkey, unpack(z))
    if nh > 0 then
      redis.call('HSET', ckey, unpack(h))
    end
  end
end

local m = tonumber(ARGV[1])
for f = 1, m do
  local seen = redis.call('GET', KEYS[f]) or '-1'
  if seen ~= ARGV[f + 1] then
    return f .. ':' .. seen
  end
end
local i = m + 2
while i <= #ARGV do
  local op, k, n = ARGV[i], tonumber(ARGV[i + 1]), tonumber(ARGV[i + 2])
  if op == 'Z' or op == 'I' then
    local key = KEYS[k]
    for j = i + 3, i + 1 + 2 * n, 2 do
      if op == 'Z' then
        redis.call('ZINCRBY', key, ARGV[j + 1], ARGV[j])
      else
        hincrby(key, ARGV[j], ARGV[j + 1])
      end
    end
    i = i + 3 + 2 * n
  elseif op == 'P' then
    popularity(KEYS[k], KEYS[tonumber(ARGV[i + 3])], n, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6])
    i = i + 7
  elseif op == 'H' then
    local field = ARGV[i + 3]
    for j = 0, n - 1 do
      redis.call('HSET', KEYS[k + j], field, ARGV[i + 4 + j])
    end
    i = i + 4 + n
  else
    local cmd = {ARGV[i + 3], KEYS[k]}
    for j = 1, n do
      cmd[j + 2] = ARGV[i + 3 + j]
    end
    redis.call(unpack(cmd))
    i = i + 4 + n
  end
end
if #repairs > 0 then
  return repairs
end
return nil
"""

# A batch's whole read as one command (standalone Redis): ARGV[1] is g, the guard's keys
# (KEYS[1..g], read by GET), ARGV[2] is the number of partitions, each with its
# watermark and meta keys next in KEYS; the rest of KEYS are the users' hashes. Returns
# one flat array: the g guard values, each partition's watermark and trend reference,
# then per user the values of fields s, e and r (nil where absent).
READ_BATCH = """
local g, np = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, g do
  out[i] = redis.call('GET', KEYS[i])
end
for i = g + 1, g + 2 * np, 2 do
  out[i] = redis.call('GET', KEYS[i])
  out[i + 1] = redis.call('HGET', KEYS[i + 1], 'trend_ref')
end
for i = g + 2 * np + 1, #KEYS do
  out[i] = redis.call('HMGET', KEYS[i], 's', 'e', 'r')
end
return out
"""

# The trending timer's read as one command (standalone Redis): KEYS are each partition's
# trend set and meta hash in turn, ARGV[1] the depth. Returns per partition its top
# members with scores, flat (as ZREVRANGE WITHSCORES), then its trend reference.
READ_TRENDING = """
local n, out = tonumber(ARGV[1]), {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = redis.call('ZREVRANGE', KEYS[i], 0, n - 1, 'WITHSCORES')
  out[#out + 1] = redis.call('HGET', KEYS[i + 1], 'trend_ref')
end
return out
"""
