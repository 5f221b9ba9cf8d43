//! The Lua scripts of the Redis line, one per step that must be atomic.
//!
//! Redis runs a script alone: no other command of any client runs between its first and its
//! last call, so a script that compares what the domain read and then writes is a
//! compare-and-set over every key it touches, all or nothing. Every script takes the key base of
//! ONE line as `KEYS[1]` (`<prefix>{line:N}:`) and derives each key it touches from it, so all of
//! them carry the line's hash tag and live on one Redis Cluster shard.
//!
//! No script decides anything the domain decides: they compare statuses, `last_seen` values,
//! place versions and the line's hold with what was read, and write what the caller passes.
//! Values a script compares are the exact strings the adapter wrote (instants as integer
//! microseconds since the epoch, places and versions as decimal integers), so comparisons are
//! string equality and no number above 2^53 ever passes through Lua's doubles: places (ticket
//! minus line start) stay below 2^40 and instants below 2^53 microseconds.
//!
//! See the module docs of [`crate::keys`] for the key layout and docs/REDIS.md for one line per
//! script.

use std::sync::LazyLock;

use redis::Script;

/// Helpers every script starts with.
macro_rules! lua {
    ($body:expr) => {
        concat!(
            r#"
local base = KEYS[1]
local function k(name) return base .. name end
local function tk(place) return base .. 't:' .. place end
local function ek(n) return base .. 'e:' .. n end
local function int(n) return string.format('%d', n) end
local function push_ticket(out, place)
  local f = redis.call('HMGET', tk(place), 'user', 'status', 'issued', 'until', 'seen', 'reason')
  out[#out + 1] = place
  for i = 1, 6 do out[#out + 1] = f[i] end
end
local function end_ticket(place, reason, now)
  local t = tk(place)
  local user = redis.call('HGET', t, 'user')
  redis.call('HSET', t, 'status', 'EXPIRED', 'ended', now)
  if reason == '' then redis.call('HDEL', t, 'reason') else redis.call('HSET', t, 'reason', reason) end
  if user and redis.call('HGET', k('live'), user) == place then redis.call('HDEL', k('live'), user) end
  redis.call('ZREM', k('waiting'), place)
  redis.call('ZREM', k('active'), place)
  redis.call('ZADD', k('ended'), now, place)
  if redis.call('HEXISTS', t, 'admitted') == 0 then redis.call('ZADD', k('ended_waiting'), place, place) end
end
local function opening_holds()
  local hold = redis.call('GET', k('hold'))
  return hold and string.sub(hold, 1, 5) == 'open:'
end
"#,
            $body
        )
    };
}

/// A join. ARGV: user, place version read, issued (µs). `held` while a step or an opening holds
/// the line (the caller waits and asks again), `stale` when the user's place moved since the
/// read (nothing drawn), `live` when the user still holds a live ticket (a caller's bug),
/// `no_block` when the line holds no block of numbers (a new line, or Redis lost its data) and
/// `exhausted` and the block's index when its block is used up (the caller leases the next block
/// and asks again; nothing drawn), else `done` and the place drawn.
pub static JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('EXISTS', k('hold')) == 1 then return {'held'} end
local version = redis.call('HGET', k('members'), ARGV[1]) or '0'
if version ~= ARGV[2] then return {'stale'} end
if redis.call('HEXISTS', k('live'), ARGV[1]) == 1 then return {'live'} end
local block = redis.call('HMGET', k('block'), 'index', 'last')
if not block[1] then return {'no_block'} end
if tonumber(redis.call('GET', k('next')) or '0') >= tonumber(block[2]) then
  return {'exhausted', block[1]}
end
local place = int(redis.call('INCR', k('next')))
redis.call('HSET', k('members'), ARGV[1], int(tonumber(version) + 1))
redis.call('HSET', k('live'), ARGV[1], place)
redis.call('HSET', tk(place), 'user', ARGV[1], 'status', 'WAITING', 'issued', ARGV[3])
redis.call('ZADD', k('waiting'), place, place)
return {'done', place}
"#
    ))
});

/// The user's place version and live ticket, read at once. ARGV: user.
pub static LOAD_LIVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {redis.call('HGET', k('members'), ARGV[1])}
local place = redis.call('HGET', k('live'), ARGV[1])
if place then push_ticket(out, place) end
return out
"#
    ))
});

/// One ticket. ARGV: place.
pub static FIND: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {}
push_ticket(out, ARGV[1])
return out
"#
    ))
});

/// Ends a ticket if it is still in the status read. ARGV: place, status read, reason, now (µs).
pub static END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('HGET', tk(ARGV[1]), 'status') ~= ARGV[2] then return 0 end
end_ticket(ARGV[1], ARGV[3], ARGV[4])
return 1
"#
    ))
});

/// Activity on an active ticket over the `last_seen` read. ARGV: place, last_seen read (`''`
/// for none), new last_seen.
pub static ACTIVITY: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local f = redis.call('HMGET', tk(ARGV[1]), 'status', 'seen')
if f[1] ~= 'ACTIVE' or (f[2] or '') ~= ARGV[2] then return 0 end
redis.call('HSET', tk(ARGV[1]), 'seen', ARGV[3])
return 1
"#
    ))
});

/// Waiting polls of one line, each written only on a waiting ticket and only forward. ARGV:
/// place, seen (µs), place, seen... Returns how many were written.
pub static POLLS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local written = 0
for i = 1, #ARGV, 2 do
  local f = redis.call('HMGET', tk(ARGV[i]), 'status', 'seen')
  if f[1] == 'WAITING' and (not f[2] or tonumber(f[2]) < tonumber(ARGV[i + 1])) then
    redis.call('HSET', tk(ARGV[i]), 'seen', ARGV[i + 1])
    written = written + 1
  end
end
return written
"#
    ))
});

/// The first read of an admission step: takes the line's hold (`held` when a step or an opening
/// has it), then reads the counters, the admissions after a bound and the active tickets. ARGV:
/// token, lease (ms), the bound (µs, exclusive).
pub static STEP_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if not redis.call('SET', k('hold'), 'step:' .. ARGV[1], 'NX', 'PX', ARGV[2]) then return {'held'} end
local s = redis.call('HMGET', k('state'), 'serving', 'pace_credit', 'pace_at')
local out = {'begun', s[1] or '0', s[2] or '0', s[3],
             tostring(redis.call('ZCOUNT', k('admissions'), '(' .. ARGV[3], '+inf'))}
for _, place in ipairs(redis.call('ZRANGE', k('active'), 0, -1)) do push_ticket(out, place) end
return out
"#
    ))
});

/// The oldest waiting tickets, in ticket order. ARGV: how many.
pub static OLDEST_WAITING: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {}
for _, place in ipairs(redis.call('ZRANGE', k('waiting'), 0, tonumber(ARGV[1]) - 1)) do
  push_ticket(out, place)
end
return out
"#
    ))
});

/// The write of an admission step, all or nothing. ARGV: token, now (µs), serving (place),
/// pace credit (`''`: unchanged), pace instant (`''`: none), then the counts of ends, passed
/// over and admitted, then each end and each passed over as (place, last_seen read or `''`,
/// reason), then each admission as (place, active_until, last_seen). `stale` (nothing written)
/// when the hold is no longer this step's, or any ticket is not as read; the hold is released.
pub static STEP_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('GET', k('hold')) ~= 'step:' .. ARGV[1] then return 'stale' end
local now = ARGV[2]
local counts = {tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])}
local lists = {{}, {}, {}}
local i = 9
for list = 1, 3 do
  for _ = 1, counts[list] do
    lists[list][#lists[list] + 1] = {ARGV[i], ARGV[i + 1], ARGV[i + 2]}
    i = i + 3
  end
end
local function stale() redis.call('DEL', k('hold')) return 'stale' end
local touched = {}
local read_as = {'ACTIVE', 'WAITING', 'WAITING'}
for list = 1, 3 do
  for _, e in ipairs(lists[list]) do
    if touched[e[1]] then return stale() end
    touched[e[1]] = true
    local f = redis.call('HMGET', tk(e[1]), 'status', 'seen')
    if f[1] ~= read_as[list] then return stale() end
    if list < 3 and (f[2] or '') ~= e[2] then return stale() end
  end
end
for list = 1, 2 do
  for _, e in ipairs(lists[list]) do end_ticket(e[1], e[3], now) end
end
for _, e in ipairs(lists[3]) do
  redis.call('HSET', tk(e[1]), 'status', 'ACTIVE', 'until', e[2], 'seen', e[3], 'admitted', now)
  redis.call('ZREM', k('waiting'), e[1])
  redis.call('ZADD', k('active'), e[1], e[1])
  redis.call('ZADD', k('admissions'), now, e[1])
end
redis.call('HSET', k('state'), 'serving', ARGV[3])
if counts[3] > 0 then redis.call('HINCRBY', k('state'), 'admitted_total', counts[3]) end
if ARGV[4] ~= '' then
  redis.call('HSET', k('state'), 'pace_credit', ARGV[4])
  if ARGV[5] == '' then redis.call('HDEL', k('state'), 'pace_at')
  else redis.call('HSET', k('state'), 'pace_at', ARGV[5]) end
end
redis.call('DEL', k('hold'))
return 'done'
"#
    ))
});

/// Releases the line's hold if it is still `ARGV[1]` (a step or an opening given up).
pub static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('GET', k('hold')) == ARGV[1] then redis.call('DEL', k('hold')) return 1 end
return 0
"#
    ))
});

/// The line's counters, read at once: serving, admitted total, waiting, active, issued (since
/// the line's data began: its first block's base), pre-queued, and the index of the block the
/// line draws from (`''`: none).
pub static SNAPSHOT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local s = redis.call('HMGET', k('state'), 'serving', 'admitted_total')
local block = redis.call('HMGET', k('block'), 'base', 'index')
local base = tonumber(block[1] or '0')
local issued = tonumber(redis.call('GET', k('next')) or '0') - base
if issued < 0 then issued = 0 end
return {s[1] or '0', s[2] or '0', tostring(redis.call('ZCARD', k('waiting'))),
        tostring(redis.call('ZCARD', k('active'))), int(issued),
        tostring(redis.call('ZCARD', k('pq:arrivals'))), block[2] or ''}
"#
    ))
});

/// Ended tickets as (place, reason, ended): those ended at `ARGV[1]` (µs) or later when
/// `ARGV[2]` is `since`, else those that ended while waiting above the place `ARGV[1]`.
pub static ENDED: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local places
if ARGV[2] == 'since' then
  places = redis.call('ZRANGEBYSCORE', k('ended'), ARGV[1], '+inf')
else
  places = redis.call('ZRANGEBYSCORE', k('ended_waiting'), '(' .. ARGV[1], '+inf')
end
local out = {}
for _, place in ipairs(places) do
  local f = redis.call('HMGET', tk(place), 'reason', 'ended')
  out[#out + 1] = place
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
end
return out
"#
    ))
});

/// The user's live pre-queue entry as (number, issued). ARGV: user.
pub static PRE_QUEUE_LOAD: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local n = redis.call('HGET', k('pq:live'), ARGV[1])
if not n then return {} end
return {n, redis.call('HGET', ek(n), 'issued')}
"#
    ))
});

/// A pre-queue join. ARGV: user, now (µs). `opened` unless the line is gathering (no room, or
/// the room opened), `held` while an opening holds the line, `stale` when the user holds a live
/// entry, `no_block` when the line has no block of numbers yet (the caller leases one and asks
/// again), else `done` and the entry's number in the line's pre-queue.
pub static PRE_QUEUE_JOIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('GET', k('phase')) ~= 'gathering' then return {'opened'} end
if opening_holds() then return {'held'} end
if redis.call('HEXISTS', k('pq:live'), ARGV[1]) == 1 then return {'stale'} end
if redis.call('HEXISTS', k('block'), 'index') == 0 then return {'no_block'} end
local n = int(redis.call('INCR', k('pq:next')))
redis.call('HSET', ek(n), 'user', ARGV[1], 'issued', ARGV[2])
redis.call('HSET', k('pq:live'), ARGV[1], n)
redis.call('ZADD', k('pq:arrivals'), n, n)
return {'done', n}
"#
    ))
});

/// Ends a pre-queue entry with no place that has not ended. ARGV: number, user, reason, now.
/// `held` while an opening holds the line, `missing`, `placed` and the place, `ended_before`
/// and the reason, or `ended`.
pub static PRE_QUEUE_END: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if opening_holds() then return {'held'} end
local f = redis.call('HMGET', ek(ARGV[1]), 'user', 'place', 'ended', 'reason')
if f[1] ~= ARGV[2] then return {'missing'} end
if f[2] then return {'placed', f[2]} end
if f[3] then return {'ended_before', f[4]} end
redis.call('HSET', ek(ARGV[1]), 'ended', ARGV[4], 'reason', ARGV[3])
redis.call('HDEL', k('pq:live'), ARGV[2])
redis.call('ZREM', k('pq:arrivals'), ARGV[1])
redis.call('ZADD', k('pq:ended'), ARGV[4], ARGV[1])
return {'ended'}
"#
    ))
});

/// The first read of an opening: `stale` unless the line is gathering and no opening holds it,
/// `held` while a step holds it; else takes the hold and reads the live entries in arrival order
/// as (number, user, issued). ARGV: token, lease (ms).
pub static OPEN_BEGIN: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
if redis.call('GET', k('phase')) ~= 'gathering' then return {'stale'} end
local hold = redis.call('GET', k('hold'))
if hold then
  if string.sub(hold, 1, 5) == 'open:' then return {'stale'} end
  return {'held'}
end
redis.call('SET', k('hold'), 'open:' .. ARGV[1], 'PX', ARGV[2])
local out = {'begun'}
for _, n in ipairs(redis.call('ZRANGE', k('pq:arrivals'), 0, -1)) do
  local f = redis.call('HMGET', ek(n), 'user', 'issued')
  out[#out + 1] = n
  out[#out + 1] = f[1]
  out[#out + 1] = f[2]
end
return out
"#
    ))
});

/// The write of an opening, all or nothing. ARGV: token, now (µs), the line's block as read
/// (`''`: none), the block to take the places from, its first place for the opening and its last
/// place, then the entries' numbers in the order decided. `stale` (nothing written, hold
/// released) when the hold is not this opening's, an entry is not live (or named twice), or the
/// line's block or last place drawn moved since the read; else installs the block when it is a
/// new one (as `BLOCK_INSTALL` does), marks the line opened, gives the entries the places from
/// the first one on in that order (waiting, seen now) and returns `done` and how many.
pub static OPEN_WRITE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local function stale()
  redis.call('DEL', k('hold'))
  return {'stale'}
end
if redis.call('GET', k('hold')) ~= 'open:' .. ARGV[1] then return {'stale'} end
local seen = {}
for i = 7, #ARGV do
  if seen[ARGV[i]] or not redis.call('ZSCORE', k('pq:arrivals'), ARGV[i]) then return stale() end
  seen[ARGV[i]] = true
end
local count = #ARGV - 6
local first = tonumber(ARGV[5])
if (redis.call('HGET', k('block'), 'index') or '') ~= ARGV[3] then return stale() end
if ARGV[3] ~= '' and tonumber(redis.call('GET', k('next')) or '0') ~= first - 1 then return stale() end
if first + count - 1 > tonumber(ARGV[6]) then return stale() end
if ARGV[3] == '' then
  local before = int(first - 1)
  redis.call('HSET', k('block'), 'index', ARGV[4], 'last', ARGV[6], 'base', before)
  redis.call('SET', k('next'), before)
  redis.call('HSET', k('state'), 'serving', before)
elseif ARGV[4] ~= ARGV[3] then
  redis.call('HSET', k('block'), 'index', ARGV[4], 'last', ARGV[6])
end
for i = 7, #ARGV do
  local n = ARGV[i]
  local place = int(first + i - 7)
  local f = redis.call('HMGET', ek(n), 'user', 'issued')
  redis.call('HSET', tk(place), 'user', f[1], 'status', 'WAITING', 'issued', f[2], 'seen', ARGV[2], 'entry', n)
  redis.call('HINCRBY', k('members'), f[1], 1)
  redis.call('HSET', k('live'), f[1], place)
  redis.call('ZADD', k('waiting'), place, place)
  redis.call('HSET', ek(n), 'place', place)
  redis.call('HDEL', k('pq:live'), f[1])
  redis.call('ZREM', k('pq:arrivals'), n)
  redis.call('ZADD', k('pq:placed'), place, n)
end
redis.call('SET', k('next'), int(first + count - 1))
redis.call('SET', k('phase'), 'opened')
redis.call('DEL', k('hold'))
return {'done', tostring(count)}
"#
    ))
});

/// The entries placed or ended, as (number, place, reason).
pub static PRE_QUEUE_OUTCOMES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {}
for _, set in ipairs({'pq:placed', 'pq:ended'}) do
  for _, n in ipairs(redis.call('ZRANGE', k(set), 0, -1)) do
    local f = redis.call('HMGET', ek(n), 'place', 'reason')
    out[#out + 1] = n
    out[#out + 1] = f[1]
    out[#out + 1] = f[2]
  end
end
return out
"#
    ))
});

/// Ended tickets that may be due for purging: the serving place, then (place, admitted or
/// `''`) of those ended before `ARGV[1]` (µs), oldest end first, from offset `ARGV[2]`, at most
/// `ARGV[3]`.
pub static PURGE_CANDIDATES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {redis.call('HGET', k('state'), 'serving') or '0'}
local places = redis.call('ZRANGEBYSCORE', k('ended'), '-inf', '(' .. ARGV[1], 'LIMIT', ARGV[2], ARGV[3])
for _, place in ipairs(places) do
  out[#out + 1] = place
  out[#out + 1] = redis.call('HGET', tk(place), 'admitted') or ''
end
return out
"#
    ))
});

/// Deletes the ended tickets named in ARGV (a ticket not ended is left alone); a ticket placed
/// from the pre-queue leaves its entry among the orphans. Returns how many went.
pub static PURGE_TICKETS: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local purged = 0
for _, place in ipairs(ARGV) do
  local f = redis.call('HMGET', tk(place), 'status', 'entry')
  if f[1] == 'EXPIRED' then
    redis.call('DEL', tk(place))
    redis.call('ZREM', k('ended'), place)
    redis.call('ZREM', k('ended_waiting'), place)
    redis.call('ZREM', k('admissions'), place)
    if f[2] then redis.call('ZADD', k('pq:orphans'), f[2], f[2]) end
    purged = purged + 1
  end
end
return purged
"#
    ))
});

/// Pre-queue entries that may be due for purging: the line's phase, then the numbers of the
/// entries whose ticket was purged and of those ended before `ARGV[1]` (µs), at most `ARGV[2]`
/// of each.
pub static PURGE_ENTRY_CANDIDATES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local out = {redis.call('GET', k('phase')) or ''}
for _, n in ipairs(redis.call('ZRANGE', k('pq:orphans'), 0, tonumber(ARGV[2]) - 1)) do
  out[#out + 1] = n
end
for _, n in ipairs(redis.call('ZRANGEBYSCORE', k('pq:ended'), '-inf', '(' .. ARGV[1], 'LIMIT', 0, ARGV[2])) do
  out[#out + 1] = n
end
return out
"#
    ))
});

/// Deletes the pre-queue entries named in ARGV if each is ended or orphaned. Returns how many
/// went.
pub static PURGE_ENTRIES: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local purged = 0
for _, n in ipairs(ARGV) do
  local orphan = redis.call('ZSCORE', k('pq:orphans'), n)
  local ended = redis.call('ZSCORE', k('pq:ended'), n)
  if orphan or ended then
    redis.call('DEL', ek(n))
    redis.call('ZREM', k('pq:orphans'), n)
    redis.call('ZREM', k('pq:ended'), n)
    redis.call('ZREM', k('pq:placed'), n)
    purged = purged + 1
  end
end
return purged
"#
    ))
});

/// The deployment's epoch: the id stored under `KEYS[1]`, or `ARGV[1]` stored as the id when
/// there is none (a new or emptied dataset).
pub static EPOCH: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local epoch = redis.call('GET', KEYS[1])
if epoch then return epoch end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"#,
    )
});

/// The line's block of numbers and its last place drawn: index (`''` without a block), last
/// place of the block, last place drawn.
pub static BLOCK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local block = redis.call('HMGET', k('block'), 'index', 'last')
return {block[1] or '', block[2] or '', redis.call('GET', k('next')) or '0'}
"#
    ))
});

/// Installs a leased block. ARGV: the index of the block held as read (`''`: none), the new
/// block's index, first place, last place. Over no block (a new line, or one whose data Redis
/// lost), the line starts at the block's first place: its last place drawn and its serving
/// counter just before it, and `base` (what the issued count starts from) there too. Over the
/// block read, the line goes on in the next one (the leases follow each other, so the numbers
/// stay gap-free). `done`, or `raced` when the line's block is not the one read (another
/// instance installed one first: the caller asks again), or `held` over no block while a step or
/// an opening holds the line (their write sets the serving counter from what they read: the
/// caller waits and installs its block after).
pub static BLOCK_INSTALL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(lua!(
        r#"
local current = redis.call('HGET', k('block'), 'index') or ''
if current ~= ARGV[1] then return 'raced' end
if ARGV[1] == '' then
  if redis.call('EXISTS', k('hold')) == 1 then return 'held' end
  local before = int(tonumber(ARGV[3]) - 1)
  redis.call('HSET', k('block'), 'index', ARGV[2], 'last', ARGV[4], 'base', before)
  redis.call('SET', k('next'), before)
  redis.call('HSET', k('state'), 'serving', before)
else
  redis.call('HSET', k('block'), 'index', ARGV[2], 'last', ARGV[4])
end
return 'done'
"#
    ))
});
