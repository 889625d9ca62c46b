//! The Lua scripts: every multi-key change runs as one script, so it is
//! atomic on the server and ordered with the other changes of the channel.
//!
//! Numbers: Lua numbers are doubles, exact up to 2^53, far above any
//! offset, TTL in milliseconds or Unix time in milliseconds used here.
//! Numbers that go back into Redis commands are formatted with `%.0f` so
//! they never turn into `1e+15`.

use redis::Script;

/// Helpers shared by the scripts.
const PRELUDE: &str = r#"
local function now_ms()
  local t = redis.call('time')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function int(n)
  return string.format('%.0f', n)
end

-- Protobuf base-128 varint of a non-negative integer.
local function varint(n)
  local out = {}
  while n >= 128 do
    out[#out + 1] = string.char(n % 128 + 128)
    n = math.floor(n / 128)
  end
  out[#out + 1] = string.char(n)
  return table.concat(out)
end

-- Extends the TTL of `key` to at least `ms`, never shortens it.
local function keep_at_least(key, ms)
  if redis.call('pttl', key) < ms then
    redis.call('pexpire', key, ms)
  end
end

-- Leases: KEYS[1] hash member -> value, KEYS[2] sorted set member -> expiry
-- (Unix ms), KEYS[3] (optional) hash member -> user. Drops every lease
-- whose expiry is not after `now`.
local function drop_expired(now)
  local gone = redis.call('zrangebyscore', KEYS[2], '-inf', int(now))
  if #gone == 0 then
    return
  end
  redis.call('zremrangebyscore', KEYS[2], '-inf', int(now))
  for i = 1, #gone, 1000 do
    local j = math.min(i + 999, #gone)
    redis.call('hdel', KEYS[1], unpack(gone, i, j))
    if KEYS[3] then
      redis.call('hdel', KEYS[3], unpack(gone, i, j))
    end
  end
end
"#;

/// Publish into a channel (see the crate docs for the steps).
///
/// KEYS: 1 history stream, 2 stream meta hash, 3 idempotency key.
/// ARGV: 1 PUB/SUB channel, 2 payload (the encoded event without history;
/// with history the encoded publication without offset and epoch),
/// 3 history size (0: no history), 4 history TTL ms, 5 meta TTL ms,
/// 6 epoch for a new stream, 7 idempotency TTL ms (0: no key).
/// Returns the position `"<offset> <epoch>"` (`"0 "` without history).
const PUBLISH: &str = r#"
local idem_ttl = tonumber(ARGV[7])
if idem_ttl > 0 then
  local first = redis.call('get', KEYS[3])
  if first then
    return first
  end
end
local size = tonumber(ARGV[3])
local position = '0 '
if size == 0 then
  redis.call('publish', ARGV[1], ARGV[2])
else
  local epoch = redis.call('hget', KEYS[2], 'e')
  if not epoch then
    epoch = ARGV[6]
    redis.call('del', KEYS[1])
    redis.call('hset', KEYS[2], 'e', epoch, 'o', '0')
  end
  local offset = tonumber(redis.call('hget', KEYS[2], 'o') or '0') + 1
  -- WirePublication field 1 (offset, varint) and field 6 (epoch, bytes)
  -- appended to the encoded publication that has neither.
  local entry = ARGV[2] .. string.char(8) .. varint(offset)
    .. string.char(50) .. varint(#epoch) .. epoch
  redis.call('xadd', KEYS[1], 'maxlen', ARGV[3], int(offset) .. '-0', 'd', entry)
  redis.call('pexpire', KEYS[1], ARGV[4])
  redis.call('hset', KEYS[2], 'o', int(offset), 't', int(now_ms()))
  keep_at_least(KEYS[2], tonumber(ARGV[5]))
  -- WireEvent field 1 (publication, embedded message).
  redis.call('publish', ARGV[1], string.char(10) .. varint(#entry) .. entry)
  position = int(offset) .. ' ' .. epoch
end
if idem_ttl > 0 then
  redis.call('set', KEYS[3], position, 'px', ARGV[7])
end
return position
"#;

/// Read history and the position, creating the stream if needed.
///
/// KEYS: 1 history stream, 2 stream meta hash.
/// ARGV: 1 meta TTL ms, 2 epoch for a new stream, 3 since offset ('' for
/// none), 4 limit (-1 for none), 5 '1' for newest first, 6 size cap (0 for
/// none), 7 TTL cap ms (0 for none).
/// Returns `{top offset, epoch, entry...}` in the order asked for.
const HISTORY: &str = r#"
local epoch = redis.call('hget', KEYS[2], 'e')
local top = 0
local last = 0
if not epoch then
  epoch = ARGV[2]
  redis.call('del', KEYS[1])
  redis.call('hset', KEYS[2], 'e', epoch, 'o', '0')
else
  top = tonumber(redis.call('hget', KEYS[2], 'o') or '0')
  last = tonumber(redis.call('hget', KEYS[2], 't') or '0')
end
keep_at_least(KEYS[2], tonumber(ARGV[1]))
local result = {top, epoch}
local limit = tonumber(ARGV[4])
if limit == 0 or top == 0 then
  return result
end
local ttl = tonumber(ARGV[7])
if ttl > 0 and last + ttl <= now_ms() then
  return result
end
local lo = 1
local size = tonumber(ARGV[6])
if size > 0 and top - size + 1 > lo then
  lo = top - size + 1
end
local entries
if ARGV[5] == '1' then
  local hi = top
  if ARGV[3] ~= '' and tonumber(ARGV[3]) - 1 < hi then
    hi = tonumber(ARGV[3]) - 1
  end
  if hi < lo then
    return result
  end
  if limit > 0 then
    entries = redis.call('xrevrange', KEYS[1], int(hi), int(lo), 'count', int(limit))
  else
    entries = redis.call('xrevrange', KEYS[1], int(hi), int(lo))
  end
else
  local from = lo
  if ARGV[3] ~= '' and tonumber(ARGV[3]) + 1 > from then
    from = tonumber(ARGV[3]) + 1
  end
  if from > top then
    return result
  end
  if limit > 0 then
    entries = redis.call('xrange', KEYS[1], int(from), int(top), 'count', int(limit))
  else
    entries = redis.call('xrange', KEYS[1], int(from), int(top))
  end
end
for _, e in ipairs(entries) do
  result[#result + 1] = e[2][2]
end
return result
"#;

/// Set or refresh a lease.
///
/// KEYS: 1 values, 2 expiries, 3 (optional) users.
/// ARGV: 1 member, 2 value, 3 TTL ms, 4 user (with KEYS[3]).
const LEASE_ADD: &str = r#"
local now = now_ms()
drop_expired(now)
redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
redis.call('zadd', KEYS[2], int(now + tonumber(ARGV[3])), ARGV[1])
if KEYS[3] then
  redis.call('hset', KEYS[3], ARGV[1], ARGV[4])
end
-- The keys live as long as the longest lease.
local longest = redis.call('zrange', KEYS[2], -1, -1, 'withscores')
local keep = tonumber(longest[2]) - now
for _, k in ipairs(KEYS) do
  redis.call('pexpire', k, int(keep))
end
return 1
"#;

/// Remove a lease. KEYS as [`LEASE_ADD`]; ARGV: 1 member.
const LEASE_REMOVE: &str = r#"
redis.call('hdel', KEYS[1], ARGV[1])
redis.call('zrem', KEYS[2], ARGV[1])
if KEYS[3] then
  redis.call('hdel', KEYS[3], ARGV[1])
end
return 1
"#;

/// Every unexpired lease: `{member, value, ...}`. KEYS as [`LEASE_ADD`].
const LEASE_LIST: &str = r#"
drop_expired(now_ms())
return redis.call('hgetall', KEYS[1])
"#;

/// Counts of unexpired leases and of distinct users among them:
/// `{clients, users}`. KEYS as [`LEASE_ADD`], with KEYS[3].
const LEASE_STATS: &str = r#"
drop_expired(now_ms())
local seen = {}
local users = 0
for _, u in ipairs(redis.call('hvals', KEYS[3])) do
  if not seen[u] then
    seen[u] = true
    users = users + 1
  end
end
return {redis.call('hlen', KEYS[1]), users}
"#;

/// The scripts, loaded on first use (EVALSHA, then SCRIPT LOAD and again on
/// `NOSCRIPT`, as [`redis::Script`] does).
pub(crate) struct Scripts {
    pub(crate) publish: Script,
    pub(crate) history: Script,
    pub(crate) lease_add: Script,
    pub(crate) lease_remove: Script,
    pub(crate) lease_list: Script,
    pub(crate) lease_stats: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let with_prelude = |body: &str| Script::new(&format!("{PRELUDE}\n{body}"));
        Scripts {
            publish: with_prelude(PUBLISH),
            history: with_prelude(HISTORY),
            lease_add: with_prelude(LEASE_ADD),
            lease_remove: Script::new(LEASE_REMOVE),
            lease_list: with_prelude(LEASE_LIST),
            lease_stats: with_prelude(LEASE_STATS),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bytes::Bytes;
    use wshub_hub::broker::wire::{self, ChannelEvent};
    use wshub_hub::broker::{ClientInfo, Publication, StreamPosition};

    use super::PUBLISH;

    fn varint(mut n: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while n >= 128 {
            out.push((n % 128 + 128) as u8);
            n /= 128;
        }
        out.push(n as u8);
        out
    }

    /// What the publish script does to the bytes, step for step in Rust:
    /// pins the protobuf field numbers it relies on to the `wire` module.
    #[test]
    fn the_scripts_byte_surgery_matches_the_wire_format() {
        assert!(PUBLISH.contains("string.char(8) .. varint(offset)"));
        assert!(PUBLISH.contains("string.char(50) .. varint(#epoch) .. epoch"));
        assert!(PUBLISH.contains("string.char(10) .. varint(#entry) .. entry"));
        let mut tags = BTreeMap::new();
        tags.insert("k".to_owned(), "v".repeat(200));
        let p = Publication {
            offset: 0,
            data: Bytes::from(vec![0xffu8; 300]),
            info: Some(ClientInfo::new("u", "c")),
            tags,
            time: 1_700_000_000_000,
        };
        for offset in [1u64, 127, 128, 300, 1 << 40] {
            let epoch = "0123456789abcdef";
            let mut entry = wire::encode_publication(&p, &StreamPosition::default());
            entry.push(8);
            entry.extend(varint(offset));
            entry.push(50);
            entry.extend(varint(epoch.len() as u64));
            entry.extend(epoch.as_bytes());
            let mut event = vec![10];
            event.extend(varint(entry.len() as u64));
            event.extend(&entry);

            let want_pub = Publication {
                offset,
                ..p.clone()
            };
            let want_pos = StreamPosition::new(offset, epoch);
            assert_eq!(
                wire::decode_publication(&entry).unwrap(),
                (want_pub.clone(), want_pos.clone())
            );
            assert_eq!(
                wire::decode_event(&event).unwrap(),
                ChannelEvent::Publication(want_pub, want_pos)
            );
        }
    }
}
