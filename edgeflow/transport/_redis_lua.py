"""The Lua scripts of the Redis transport. Each runs atomically in Redis, so a check and the read it guards (a
group's position against the stream's first entry, a shared cursor against the newest entry) cannot race with
another consumer or with trimming.

Stream entries written by RedisPublisher carry the fields ``f`` (frame id), ``s`` (publisher session), ``t``
(timestamp), ``h`` (payload header, JSON) and optionally ``m`` (meta, JSON). A cursor (REALTIME / BALANCED) is
the string ``"<entry id> <session> <frame id>"``: the last entry taken, and the newest frame delivered.
"""

from __future__ import annotations

import hashlib

_COMMON = """
local function field(t, name)
  for i = 1, #t, 2 do if t[i] == name then return t[i + 1] end end
  return nil
end
local function split(id)
  local a, b = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(a), tonumber(b)
end
local function lt(x, y)
  local xm, xs = split(x)
  local ym, ys = split(y)
  return xm < ym or (xm == ym and xs < ys)
end
"""

# KEYS[1] stream. ARGV[1] group, ARGV[2] 'new' (frames added from now on) or 'all' (every entry in the
# stream).
# Creates the stream when missing. ENTRIESREAD is always set, so that trimming can be counted later (a group
# created without it has no valid read counter). Returns 1 when the group was created, 0 when it existed.
CREATE_GROUP = _COMMON + """
local key, group = KEYS[1], ARGV[1]
local info = redis.pcall('XINFO', 'STREAM', key)
local r
if type(info) == 'table' and info.err then
  r = redis.pcall('XGROUP', 'CREATE', key, group, '0', 'MKSTREAM', 'ENTRIESREAD', 0)
else
  local added, length = field(info, 'entries-added'), field(info, 'length')
  if ARGV[2] == 'new' then
    r = redis.pcall('XGROUP', 'CREATE', key, group, field(info, 'last-generated-id'), 'ENTRIESREAD', added)
  else
    r = redis.pcall('XGROUP', 'CREATE', key, group, '0', 'ENTRIESREAD', added - length)
  end
end
if type(r) == 'table' and r.err then
  if string.find(r.err, 'BUSYGROUP', 1, true) then return 0 end
  return redis.error_reply(r.err)
end
return 1
"""

# DURABLE read for one consumer of a group. KEYS[1] stream.
# ARGV[1] group, ARGV[2] consumer, ARGV[3] 'h' (this consumer's own pending entries first) or 'n' (new only),
# ARGV[4] min idle ms for reclaiming other consumers' pending entries ('-1': do not reclaim now),
# ARGV[5] count, ARGV[6..] entry ids to acknowledge before reading.
# Returns {'nogroup'} or {source, lost, entries, deleted ids, last id of the stream, lag} where source is
# 'claim', 'history' or 'new', and lost counts entries trimmed away before the group read them (-1: some,
# number unknown). Entries are {id, {field, value, ...}}; an own pending entry that was trimmed comes back as
# {id, false}.
DURABLE_READ = _COMMON + """
local key, group, consumer, count = KEYS[1], ARGV[1], ARGV[2], ARGV[5]
local groups = redis.pcall('XINFO', 'GROUPS', key)
if type(groups) == 'table' and groups.err then return {'nogroup'} end
local g
for _, info in ipairs(groups) do
  if field(info, 'name') == group then g = info end
end
if not g then return {'nogroup'} end
if #ARGV > 5 then redis.call('XACK', key, group, unpack(ARGV, 6)) end
local deleted = {}
if ARGV[4] ~= '-1' then
  local r = redis.call('XAUTOCLAIM', key, group, consumer, ARGV[4], '0-0', 'COUNT', count)
  deleted = r[3] or {}
  if #r[2] > 0 then return {'claim', 0, r[2], deleted, '', -1} end
end
if ARGV[3] == 'h' then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', key, '0')
  if r and #r[1][2] > 0 then return {'history', 0, r[1][2], deleted, '', -1} end
end
local delivered = field(g, 'last-delivered-id')
local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)[1]
local lost = 0
if first and lt(delivered, first[1]) then      -- the oldest entry is past the group's position: trimmed?
  local s = redis.call('XINFO', 'STREAM', key)
  local added, length = field(s, 'entries-added'), field(s, 'length')
  local read = field(g, 'entries-read')
  if read then lost = added - read - length else lost = -1 end
  if lost ~= 0 then
    -- count the trimmed entries as read, so the next call does not count them again
    redis.call('XGROUP', 'SETID', key, group, delivered, 'ENTRIESREAD', added - length)
  end
end
local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', key, '>')
local entries = {}
if r then entries = r[1][2] end
local lag = field(g, 'lag')
if not lag then lag = -1 end
local last = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
local last_id = '0-0'
if last then last_id = last[1] end
return {'new', lost, entries, deleted, last_id, lag}
"""

# REALTIME ('r') or BALANCED ('b') take, or 'i' (initialise a cursor at the newest entry).
# KEYS[1] stream, KEYS[2] (optional) the cursor key a group's members share.
# ARGV[1] mode, ARGV[2] max_lag, ARGV[3] the cursor of a subscriber without a group ('' = none yet).
# Returns {entry or false, new cursor, skipped frames, newest entry id}.
TAKE = _COMMON + """
local key, mode, max_lag = KEYS[1], ARGV[1], tonumber(ARGV[2])
local cur = ARGV[3]
if KEYS[2] then cur = redis.call('GET', KEYS[2]) or '' end
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
local newest_id = '0-0'
if newest then newest_id = newest[1] end
local function save(c)
  if KEYS[2] then redis.call('SET', KEYS[2], c) end
  return c
end
if mode == 'i' then
  if cur == '' then
    cur = '0-0 - 0'
    if newest then cur = newest_id .. ' ' .. field(newest[2], 's') .. ' ' .. field(newest[2], 'f') end
    if KEYS[2] then redis.call('SET', KEYS[2], cur, 'NX') end
  end
  return {false, cur, 0, newest_id}
end
local cid, cses, cfid = string.match(cur, '^(%S+) (%S+) (%d+)$')
cfid = tonumber(cfid)
-- a stream that is behind the cursor was rebuilt (Redis restarted or the app was reset): read it from its
-- start, still skipping the frames of the cursor's session that were delivered already
if cid and newest and lt(newest[1], cid) then cid = '0-0' end
local function fid(e) return tonumber(field(e[2], 'f')) end
local function seen(e)              -- a frame of the current session at or before the cursor: republished
  return cid and field(e[2], 's') == cses and fid(e) <= cfid
end
local function deliver(e)             -- frame ids go on across publishers of a stream, so gaps are skips
  local skipped = 0
  if cid and fid(e) > cfid then skipped = fid(e) - cfid - 1 end
  return {e, save(e[1] .. ' ' .. field(e[2], 's') .. ' ' .. fid(e)), skipped, newest_id}
end
if not newest or (cid and not lt(cid, newest[1])) then return {false, cur, 0, newest_id} end
if mode == 'r' then
  if seen(newest) then return {false, save(newest[1] .. ' ' .. cses .. ' ' .. cfid), 0, newest_id} end
  return deliver(newest)
end
local start = '-'
if cid then start = '(' .. cid end
local entries = redis.call('XRANGE', key, start, '+', 'COUNT', max_lag + 1)
local i = 1
while entries[i] and seen(entries[i]) do i = i + 1 end
if not entries[i] then
  return {false, save(entries[i - 1][1] .. ' ' .. cses .. ' ' .. cfid), 0, newest_id}
end
if #entries - i + 1 > max_lag then
  if seen(newest) then return {false, save(newest[1] .. ' ' .. cses .. ' ' .. cfid), 0, newest_id} end
  return deliver(newest)
end
return deliver(entries[i])
"""

# KEYS[1] stream. ARGV[1] group, ARGV[2] consumer: forget the consumer when it holds no pending entry (a
# closing subscriber tidies up after itself; one with pending entries stays, so another can reclaim them).
FORGET_CONSUMER = _COMMON + """
local r = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(r) == 'table' and r.err then return 0 end
for _, c in ipairs(r) do
  if field(c, 'name') == ARGV[2] and field(c, 'pending') == 0 then
    return redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
  end
end
return 0
"""


class Script:
    """A Lua script and its SHA1 (sent with EVALSHA; EVAL once when the server does not know it yet)."""

    __slots__ = ("name", "source", "sha")

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def __repr__(self) -> str:
        return f"<Script {self.name} {self.sha[:8]}>"


CREATE_GROUP_SCRIPT = Script("create_group", CREATE_GROUP)
DURABLE_READ_SCRIPT = Script("durable_read", DURABLE_READ)
TAKE_SCRIPT = Script("take", TAKE)
FORGET_CONSUMER_SCRIPT = Script("forget_consumer", FORGET_CONSUMER)
