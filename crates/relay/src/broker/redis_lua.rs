//! The Lua scripts of the Redis broker: each one runs atomically in Redis, so an append,
//! a registration or an ack is all or nothing, and never races another node's.
//!
//! Keys of one recipient `u` (the `{u}` hash tag keeps them in one cluster slot):
//! `tb:{u}:meta` (hash: `seq`, `epoch`, `boot`), `tb:{u}:s` (stream, ids `<seq>-0`, fields `ts`,
//! `from_id`, `from_name`, `to_name`, `talk`), `tb:{u}:from` (hash: sender → queued
//! talks), `tb:{u}:dev` (hash: device → acked `seq`), `tb:{u}:seen` (hash: device → last
//! seen, ms), `tb:{u}:k:<key>` (hash: `seq`, `ts`, `epoch` of a `send`, expiring), and
//! the channel `tb:{u}:n` for wake-ups.
//!
//! Epochs and Redis restarts: `boot` is `<run_id>:<keep>`, the Redis run (`INFO server`)
//! that last wrote the queue's epoch, and whether the node that did said Redis loses no
//! accepted write (`keep`: `appendonly yes` with `appendfsync always`, read by the node).
//! Every script that gives a `seq` or a welcome's epoch (append, register) first looks
//! at the run it runs on; a queue
//! first touched since Redis started again (another `run_id`, or none) gets a new epoch
//! then, in the same atomic script, unless the run before was `keep` and the node still
//! says `keep`. So a Redis restarted as `always` after a crash as `everysec` still
//! counts as a loss. A crash loses a suffix of Redis's writes
//! (an append-only file, a snapshot and a replica are each a prefix of what was
//! written), so a `seq` given in a lost write can only come again under a boot that
//! never gave it: the new epoch makes it another queue for the client (PROTOCOL.md 3).
//! The `seq` counter, the stream and the device cursors are kept: what survived is the
//! same talks under the same `seq`s, so a device's cursor still says what it has.

/// Helpers every script starts with.
const COMMON: &str = r#"
-- The queue's epoch, after the rule at the top of redis_lua.rs. `boot` is this run's
-- `run_id` and `keep` ('1': the node reads `appendfsync always`); a queue whose `boot`
-- names another run gets a new epoch (`new`) unless both that run and this node said
-- `keep`. A queue without an epoch gets `new`.
local function epoch_of(meta, new, keep)
  local m = redis.call('HMGET', meta, 'epoch', 'boot')
  local run = string.match(redis.call('INFO', 'server'), 'run_id:(%x+)') or ''
  local mark = run .. ':' .. (keep == '1' and '1' or '0')
  if m[1] and m[2] == mark then return m[1] end
  local e = m[1]
  local was_run, was_keep = string.match(m[2] or '', '^(%x*):(%d)$')
  if not e or (was_run ~= run and not (was_keep == '1' and keep == '1')) then e = new end
  redis.call('HSET', meta, 'epoch', e, 'boot', mark)
  return e
end
-- Deletes what every device has acked (and counts it off its sender's share).
local function trim(s, from, dev)
  local acked = redis.call('HVALS', dev)
  if #acked == 0 then return end
  local min = nil
  for _, v in ipairs(acked) do
    local n = tonumber(v)
    if min == nil or n < min then min = n end
  end
  if min <= 0 then return end
  local gone = redis.call('XRANGE', s, '-', min .. '-0')
  for _, e in ipairs(gone) do
    local f = e[2]
    for i = 1, #f, 2 do
      if f[i] == 'from_id' and redis.call('HINCRBY', from, f[i + 1], -1) <= 0 then
        redis.call('HDEL', from, f[i + 1])
      end
    end
  end
  if #gone > 0 then redis.call('XTRIM', s, 'MINID', (min + 1) .. '-0') end
end
-- Forgets devices not seen since `before`, then the least recently seen past `max`
-- (`keep`, the device at hand, stays).
local function forget(dev, seen, keep, before, max)
  local all = redis.call('HGETALL', seen)
  local list = {}
  for i = 1, #all, 2 do
    local uuid, at = all[i], tonumber(all[i + 1])
    if uuid ~= keep and at < before then
      redis.call('HDEL', dev, uuid)
      redis.call('HDEL', seen, uuid)
    elseif uuid ~= keep and redis.call('HEXISTS', dev, uuid) == 1 then
      table.insert(list, {uuid, at})
    end
  end
  if #list > max - 1 then
    table.sort(list, function(a, b) return a[2] > b[2] end)
    for i = max, #list do
      redis.call('HDEL', dev, list[i][1])
      redis.call('HDEL', seen, list[i][1])
    end
  end
end
local function cursor(dev, uuid, seq, last)
  local r = math.min(tonumber(seq), last)
  local old = tonumber(redis.call('HGET', dev, uuid) or '-1')
  if r > old then redis.call('HSET', dev, uuid, r) end
end
"#;

/// KEYS: meta, stream, from, send key. ARGV: keyed ('1'/'0'), from id, from name, to id,
/// to name, talk, ts, recipient cap, sender cap, new epoch, key TTL (ms), channel,
/// `PUBLISH` or `SPUBLISH` (a cluster's sharded pub/sub), keep ('1': a Redis restart
/// keeps epochs).
/// Returns {'dup', seq, ts, epoch}, {'ok', seq, ts, epoch}, {'full_recipient', cap} or
/// {'full_sender', cap}.
const APPEND: &str = r#"
local meta, s, from, k = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
if ARGV[1] == '1' then
  local old = redis.call('HMGET', k, 'seq', 'ts', 'epoch')
  if old[1] then return {'dup', old[1], old[2], old[3]} end
end
local epoch = epoch_of(meta, ARGV[10], ARGV[14])
if redis.call('XLEN', s) >= tonumber(ARGV[8]) then return {'full_recipient', ARGV[8]} end
if tonumber(redis.call('HGET', from, ARGV[2]) or '0') >= tonumber(ARGV[9]) then
  return {'full_sender', ARGV[9]}
end
local seq = redis.call('HINCRBY', meta, 'seq', 1)
redis.call('XADD', s, seq .. '-0', 'ts', ARGV[7], 'from_id', ARGV[2], 'from_name', ARGV[3],
  'to_name', ARGV[5], 'talk', ARGV[6])
redis.call('HINCRBY', from, ARGV[2], 1)
if ARGV[1] == '1' then
  redis.call('HSET', k, 'seq', seq, 'ts', ARGV[7], 'epoch', epoch)
  redis.call('PEXPIRE', k, ARGV[11])
end
redis.call(ARGV[13], ARGV[12], cjson.encode({epoch = epoch, seq = tostring(seq), ts = ARGV[7],
  from_id = ARGV[2], from_name = ARGV[3], to_id = ARGV[4], to_name = ARGV[5], talk = ARGV[6]}))
return {'ok', tostring(seq), ARGV[7], epoch}
"#;

/// KEYS: meta, stream, from, dev, seen. ARGV: device, resume ('' for none), the hello's
/// epoch ('' for none), now, new epoch, forget-before (ms), max devices, keep.
/// Returns {last seq, acked, epoch, reset '1'/'0'}.
const REGISTER: &str = r#"
local meta, s, from, dev, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local uuid = ARGV[1]
local epoch = epoch_of(meta, ARGV[5], ARGV[8])
local reset = ARGV[3] ~= '' and ARGV[3] ~= epoch
local last = tonumber(redis.call('HGET', meta, 'seq') or '0')
if ARGV[2] ~= '' and not reset then
  cursor(dev, uuid, ARGV[2], last)
  redis.call('HSET', seen, uuid, ARGV[4])
elseif redis.call('HEXISTS', dev, uuid) == 1 then
  redis.call('HSET', seen, uuid, ARGV[4])
end
local acked = redis.call('HGET', dev, uuid) or '0'
forget(dev, seen, uuid, tonumber(ARGV[6]), tonumber(ARGV[7]))
trim(s, from, dev)
return {tostring(last), tostring(acked), epoch, reset and '1' or '0'}
"#;

/// KEYS: meta, stream, from, dev, seen. ARGV: device, seq, now, forget-before, max, the
/// connection's epoch. An ack of another epoch than the queue's counts for nothing (its
/// `seq`s name other talks); returns 0 then, 1 otherwise. No restart check here: an ack
/// gives no `seq`, and one in an epoch that a restart is about to replace is still true
/// of the talks Redis kept (the cursor stops at the kept `seq`).
const ACK: &str = r#"
local meta, s, from, dev, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
if redis.call('HGET', meta, 'epoch') ~= ARGV[6] then return 0 end
local last = tonumber(redis.call('HGET', meta, 'seq') or '0')
cursor(dev, ARGV[1], ARGV[2], last)
redis.call('HSET', seen, ARGV[1], ARGV[3])
forget(dev, seen, ARGV[1], tonumber(ARGV[4]), tonumber(ARGV[5]))
trim(s, from, dev)
return 1
"#;

/// KEYS: stream, from, dev, seen. ARGV: talks-before, devices-before (ms).
/// Deletes talks past retention and forgets unseen devices; returns how many talks.
const PRUNE: &str = r#"
local s, from, dev, seen = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
forget(dev, seen, '', tonumber(ARGV[2]), 1000000000)
local n = 0
local before = tonumber(ARGV[1])
while true do
  local batch = redis.call('XRANGE', s, '-', '+', 'COUNT', 100)
  if #batch == 0 then break end
  local stop = false
  for _, e in ipairs(batch) do
    local f, ts, sender = e[2], nil, nil
    for i = 1, #f, 2 do
      if f[i] == 'ts' then ts = tonumber(f[i + 1]) elseif f[i] == 'from_id' then sender = f[i + 1] end
    end
    if ts == nil or ts >= before then stop = true break end
    redis.call('XDEL', s, e[1])
    if sender and redis.call('HINCRBY', from, sender, -1) <= 0 then redis.call('HDEL', from, sender) end
    n = n + 1
  end
  if stop then break end
end
trim(s, from, dev)
return n
"#;

/// KEYS: meta. ARGV: new epoch, keep. Returns the queue's epoch.
const EPOCH: &str = r#"
return epoch_of(KEYS[1], ARGV[1], ARGV[2])
"#;

/// The scripts, each with the helpers in front.
pub(super) struct Scripts {
    pub append: redis::Script,
    pub register: redis::Script,
    pub ack: redis::Script,
    pub prune: redis::Script,
    pub epoch: redis::Script,
}

impl Scripts {
    pub fn new() -> Self {
        let script = |body: &str| redis::Script::new(&format!("{COMMON}\n{body}"));
        Scripts {
            append: script(APPEND),
            register: script(REGISTER),
            ack: script(ACK),
            prune: script(PRUNE),
            epoch: script(EPOCH),
        }
    }
}
