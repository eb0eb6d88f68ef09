"""The Lua scripts of the Redis transport. Each runs atomically in Redis, so a check and the read it guards (a
group's position against the stream's first entry, a shared cursor against the newest entry) cannot race with
another consumer or with trimming.

Stream entries written by RedisPublisher carry the fields ``f`` (frame id), ``s`` (publisher session), ``t``
(timestamp), ``h`` (payload header, JSON) and optionally ``m`` (meta, JSON). A cursor (REALTIME / BALANCED) is
the string ``"<entry id> <session> <frame id>"``: the last entry taken, and the newest frame delivered.

A full Redis (``maxmemory`` with ``noeviction``) refuses only "deny-oom" commands (SET, XADD, XGROUP CREATE...).
DURABLE_READ calls none (XACK, XREADGROUP, XAUTOCLAIM, XGROUP SETID, DEL may run when full), so DURABLE
consumers keep reading, acknowledging and deleting blobs, which is what frees the space. TAKE writes a cursor
and the live-readers mark, a few bytes each: it is flagged ``allow-oom`` so REALTIME/BALANCED readers keep
working on a full Redis too.
"""

from __future__ import annotations

import hashlib

LIVE_MARK_MS = 30_000      # a REALTIME/BALANCED reader's mark on its topic lasts this long after its last take

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

# DURABLE read for one consumer of a group. KEYS[1] stream, KEYS[2] the topic's live-readers mark (see TAKE).
# ARGV[1] group, ARGV[2] consumer, ARGV[3] 'h' (this consumer's own pending entries first), 'n' (new only) or
# 'a' (acknowledge only, read nothing: a closing subscriber), ARGV[4] min idle ms for reclaiming other
# consumers' pending entries ('-1': do not reclaim now), ARGV[5] count, ARGV[6] 'd' (blobs are on this
# instance: delete them here) or 'r' (return their keys: the subscriber deletes them on the data instance)
# followed by the topic's blob key prefix ("edgeflow:{app}:blob:{topic}:"), ARGV[7..] entry ids to acknowledge.
# Returns {'nogroup'} or {source, lost, entries, deleted ids, last id of the stream, lag, blobs} where source
# is 'claim', 'history', 'new' or 'acked', and lost counts entries trimmed away before the group read them
# (-1: some, number unknown). Entries are {id, {field, value, ...}}; an own pending entry that was trimmed
# comes back as {id, false}. ``blobs`` are the keys of the blobs freed now (see free_blobs).
DURABLE_READ = _COMMON + """
local key, group, consumer, count = KEYS[1], ARGV[1], ARGV[2], ARGV[5]
local groups = redis.pcall('XINFO', 'GROUPS', key)
if type(groups) == 'table' and groups.err then return {'nogroup'} end
local g
for _, info in ipairs(groups) do
  if field(info, 'name') == group then g = info end
end
if not g then return {'nogroup'} end
-- A frame's blob is freed once every group of the stream acknowledged its entry: delivered to the group
-- (at or before its last-delivered-id) and no longer in its pending list. Positions were read above, before
-- this call's XACK and reads; XPENDING is asked after the XACK.
local function acked_by_all(id)
  for _, info in ipairs(groups) do
    if lt(field(info, 'last-delivered-id'), id) then return false end
    if #redis.call('XPENDING', key, field(info, 'name'), id, id, 1) > 0 then return false end
  end
  return true
end
local blobs = {}
local function free(e)                 -- e: a stream entry {id, fields}
  local s, f = field(e[2], 's'), field(e[2], 'f')
  if s and f and acked_by_all(e[1]) then blobs[#blobs + 1] = string.sub(ARGV[6], 2) .. s .. ':' .. f end
end
local function free_blobs()
  -- REALTIME/BALANCED readers (they mark the topic, see TAKE) take one of the newest few entries and GET its
  -- blob afterwards: those entries keep their blobs; each call also frees what just left that window
  local window = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  local boundary
  if window > 0 then
    local recent = redis.call('XREVRANGE', key, '+', '-', 'COUNT', window + #ARGV - 5)
    boundary = recent[math.min(window, #recent)]
    for i = window + 1, #recent do free(recent[i]) end
    if boundary then boundary = boundary[1] end
  end
  for i = 7, #ARGV do
    if not boundary or lt(ARGV[i], boundary) then
      local e = redis.call('XRANGE', key, ARGV[i], ARGV[i], 'COUNT', 1)[1]
      if e then free(e) end
    end
  end
  if string.sub(ARGV[6], 1, 1) == 'd' and #blobs > 0 then
    redis.call('DEL', unpack(blobs))
  end
end
if #ARGV > 6 then
  redis.call('XACK', key, group, unpack(ARGV, 7))
  free_blobs()
end
if ARGV[3] == 'a' then return {'acked', 0, {}, {}, '', -1, blobs} end
local deleted = {}
if ARGV[4] ~= '-1' then
  local r = redis.call('XAUTOCLAIM', key, group, consumer, ARGV[4], '0-0', 'COUNT', count)
  deleted = r[3] or {}
  if #r[2] > 0 then return {'claim', 0, r[2], deleted, '', -1, blobs} end
end
if ARGV[3] == 'h' then
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', key, '0')
  if r and #r[1][2] > 0 then return {'history', 0, r[1][2], deleted, '', -1, blobs} end
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
return {'new', lost, entries, deleted, last_id, lag, blobs}
"""

# REALTIME ('r') or BALANCED ('b') take, or 'i' (initialise a cursor at the newest entry).
# KEYS[1] stream, KEYS[2] the topic's live-readers mark, KEYS[3] (optional) the cursor key a group's members
# share. ARGV[1] mode, ARGV[2] max_lag, ARGV[3] the cursor of a subscriber without a group ('' = none yet).
# Returns {entry or false, new cursor, skipped frames, newest entry id}.
# A take marks the topic as read live (KEYS[2] = how many of the newest entries such a reader may still take
# and fetch, for LIVE_MARK_MS): DURABLE acknowledgements leave those entries' blobs alone (see DURABLE_READ).
# Flagged allow-oom: the cursor and the mark are a few bytes, and readers must go on when Redis is full.
TAKE = "#!lua flags=allow-oom\n" + _COMMON + """
local key, mode, max_lag = KEYS[1], ARGV[1], tonumber(ARGV[2])
local cur = ARGV[3]
local ckey = KEYS[3]
if ckey then cur = redis.call('GET', ckey) or '' end
if mode ~= 'i' then
  local window = max_lag + 2          -- the newest entry, the one before it (taken just as a newer one came)
  local marked = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if marked < window then redis.call('SET', KEYS[2], window, 'PX', LIVE_MARK_MS)
  else redis.call('PEXPIRE', KEYS[2], LIVE_MARK_MS) end
end
local newest = redis.call('XREVRANGE', key, '+', '-', 'COUNT', 1)[1]
local newest_id = '0-0'
if newest then newest_id = newest[1] end
local function save(c)
  if ckey then redis.call('SET', ckey, c) end
  return c
end
if mode == 'i' then
  if cur == '' then
    cur = '0-0 - 0'
    if newest then cur = newest_id .. ' ' .. field(newest[2], 's') .. ' ' .. field(newest[2], 'f') end
    if ckey then redis.call('SET', ckey, cur, 'NX') end
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
""".replace("LIVE_MARK_MS", str(LIVE_MARK_MS))

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
