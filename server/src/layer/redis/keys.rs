//! What the Redis layer writes into Redis: key and channel names, the Lua
//! scripts, and the envelope a room's channel carries.
//!
//! Every key and channel name is built here and nowhere else. All of one
//! room's keys and its channel share the hash tag `{P:room}`, so that in a
//! Redis Cluster they live in one slot (every script is single-slot) and
//! the room's sharded channel lives on the shard that holds its keys. The
//! same names are used on a single Redis, where the tag means nothing.

use chat_protocol::{ChatEvent, RoomName, ServerEvent};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::frames::{Frames, chat_frames};
use crate::layer::Draft;

/// One Redis, or a Redis Cluster: which pub/sub commands a room's
/// channel uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// One Redis: `PUBLISH`/`SUBSCRIBE` (any Redis from 6.2).
    Single,
    /// A Redis Cluster: sharded pub/sub, `SPUBLISH`/`SSUBSCRIBE` (Redis 7),
    /// so a room's messages go only to the shard that owns the room.
    Cluster,
}

impl Mode {
    pub(super) fn publish(self) -> &'static str {
        match self {
            Self::Single => "PUBLISH",
            Self::Cluster => "SPUBLISH",
        }
    }
    pub(super) fn subscribe(self) -> &'static str {
        match self {
            Self::Single => "SUBSCRIBE",
            Self::Cluster => "SSUBSCRIBE",
        }
    }
    pub(super) fn unsubscribe(self) -> &'static str {
        match self {
            Self::Single => "UNSUBSCRIBE",
            Self::Cluster => "SUNSUBSCRIBE",
        }
    }
}

/// Allocates the id, appends to history, publishes: one atomic step.
///
/// History is bounded in entries (`keep`) and in bytes (`budget`, 0: no
/// byte bound): the script counts the bytes of the entries it adds in the
/// `bytes` key and drops the oldest entries while either bound is passed
/// (exact, not `MAXLEN ~`, so that the count stays true).
///
/// KEYS: seq, epoch, log, channel, bytes, pubs. ARGV: the event before
/// and after its id, the plain frame, history length, TTL (s), a new epoch
/// name, the floor (the highest id this instance delivered or was given
/// for its own publishes: ids never go below it, even when a failover or a
/// restart lost the last increments), the publish command,
/// the history's byte budget, a deadline (unix ms on Redis's clock; 0:
/// none), the publish's own random id.
///
/// Past the deadline the script does nothing and returns -1: by then the
/// publisher has told its client "not delivered" (the command timed out,
/// e.g. Redis was hung), so a command Redis reads late must not publish
/// after all.
///
/// A publish runs at most once: the cluster client resends a command
/// whose connection broke before the reply came back (a killed connection,
/// a failover), although Redis may have run it. The script records each
/// publish id in `pubs` (a sorted set scored by when the id may be
/// forgotten: once the deadline has passed no resend can run anyway) and
/// answers a resend with -2 ("already published") instead of publishing
/// again. The record is written with the message, so a replica promoted
/// after running the first has it too.
pub(super) const PUBLISH_LUA: &str = r"
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
if redis.call('ZSCORE', KEYS[6], ARGV[11]) then
  return -2
end
local deadline = tonumber(ARGV[10])
if deadline > 0 and now > deadline then
  return -1
end
local forget_at = now + 60000
if deadline > 0 then forget_at = deadline + 1000 end
redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now)
redis.call('ZADD', KEYS[6], forget_at, ARGV[11])
redis.call('PEXPIREAT', KEYS[6], forget_at)
local id = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[7])
if id <= floor then
  id = floor + 1
  redis.call('SET', KEYS[1], id)
end
if redis.call('EXISTS', KEYS[2]) == 0 then redis.call('SET', KEYS[2], ARGV[6]) end
local event = ARGV[1] .. id .. ARGV[2]
local keep = tonumber(ARGV[4])
local budget = tonumber(ARGV[9])
if keep > 0 then
  redis.call('XADD', KEYS[3], id .. '-0', 'e', event)
  local bytes = redis.call('INCRBY', KEYS[5], #event)
  local len = redis.call('XLEN', KEYS[3])
  while len > keep or (budget > 0 and bytes > budget and len > 1) do
    local oldest = redis.call('XRANGE', KEYS[3], '-', '+', 'COUNT', 1)[1]
    redis.call('XDEL', KEYS[3], oldest[1])
    bytes = redis.call('DECRBY', KEYS[5], #oldest[2][2])
    len = len - 1
  end
  if bytes < 0 then redis.call('SET', KEYS[5], 0) end
  redis.call('EXPIRE', KEYS[3], ARGV[5])
  redis.call('EXPIRE', KEYS[5], ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call(ARGV[8], KEYS[4], id .. '\n' .. event .. '\n' .. ARGV[3])
return id
";

/// A consistent view of a room for a joiner: last id, epoch, the last N
/// history entries (newest first), members. A room without an epoch gets
/// one now, so that ids seen by this joiner can be resumed later.
///
/// KEYS: seq, epoch, log, presence. ARGV: now (ms), a new epoch name,
/// TTL (s), N.
pub(super) const SNAPSHOT_LUA: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[3])
end
local history = {}
if tonumber(ARGV[4]) > 0 then
  history = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', ARGV[4])
end
local members = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf')
return {seq, epoch, history, members}
";

/// What an instance reads to fill a hole in its feed of a room: the
/// room's last id and the history entries after `after` (none when
/// `after` is empty: a room being opened only learns where it stands).
/// The id sequence is raised to `floor` if it is below (a failover lost
/// increments this instance had already delivered or published), so ids
/// never repeat.
///
/// On a single Redis, a room still in the layout of the release before
/// history became a stream is carried over first (`migrate` = 1: the
/// legacy keys follow in KEYS): its ids, epoch and history continue.
///
/// KEYS: seq, epoch, log [, legacy seq, legacy epoch, legacy history].
/// ARGV: after, count, floor, TTL (s), migrate.
pub(super) const CATCH_UP_LUA: &str = r"
if ARGV[5] == '1' and redis.call('EXISTS', KEYS[1]) == 0
    and redis.call('EXISTS', KEYS[4]) == 1 then
  local old_seq = redis.call('GET', KEYS[4])
  local old_epoch = redis.call('GET', KEYS[5])
  if old_epoch then redis.call('SET', KEYS[2], old_epoch, 'EX', ARGV[4]) end
  for _, event in ipairs(redis.call('LRANGE', KEYS[6], 0, -1)) do
    local ok, decoded = pcall(cjson.decode, event)
    if ok and type(decoded) == 'table' and tonumber(decoded.id) then
      pcall(redis.call, 'XADD', KEYS[3], string.format('%d', decoded.id) .. '-0', 'e', event)
    end
  end
  redis.call('SET', KEYS[1], old_seq, 'EX', ARGV[4])
  redis.call('EXPIRE', KEYS[3], ARGV[4])
  redis.call('DEL', KEYS[4], KEYS[5], KEYS[6])
end
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local floor = tonumber(ARGV[3])
if seq < floor then
  redis.call('SET', KEYS[1], floor, 'EX', ARGV[4])
  seq = floor
end
local entries = {}
if ARGV[1] ~= '' then
  entries = redis.call('XRANGE', KEYS[3], '(' .. ARGV[1] .. '-0', '+', 'COUNT', ARGV[2])
end
return {seq, entries}
";

/// Claims a display name in a room for an identity, unless a live entry
/// of another identity holds it: one atomic step, so two instances cannot
/// both hand the name to different people. `KEYS[1]` is the name's owner
/// set (`Keys::owner`); `ARGV`: now (ms), the identity, the entry
/// (`{identity}:{node}`), its expiry (ms), the set's lifetime (ms).
/// Returns 1 when claimed, 0 when taken.
pub(super) const CLAIM_NAME_LUA: &str = r"
local live = redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], '+inf')
for _, entry in ipairs(live) do
  if string.match(entry, '^[^:]*') ~= ARGV[2] then return 0 end
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

// The scripts below replace what were multi-command pipelines. In a Redis
// Cluster whose room slot is moving, a pipeline that meets an `ASK` is
// resent whole to the importing master by the client (redis-rs), so
// commands the migrating master had already run (a `ZADD` that creates
// the presence set) ran on both sides: the key then existed twice and
// every `MIGRATE` of the slot failed with `BUSYKEY`. One script is one
// command on one slot: Redis runs it where all its keys are, or redirects
// it whole.

/// Updates presence entries and tells the room, in one step: removes one
/// entry, adds one, then publishes each envelope to the room's channel
/// (the rename of a member does all three).
///
/// The channel is declared among the keys, as in `PUBLISH_LUA`: while the
/// room's slot moves, Redis then refuses the script (`TRYAGAIN`, which the
/// client retries) instead of running it on the importing master, whose
/// publish would reach none of the room's subscribers (they are on the
/// migrating one until the move ends).
///
/// KEYS: presence, channel. ARGV: the publish command, the expiry (ms) of
/// the added entry, the entry to remove ('' for none), the entry to add
/// ('' for none), then the envelopes to publish, in order.
pub(super) const PRESENCE_LUA: &str = r"
if ARGV[3] ~= '' then redis.call('ZREM', KEYS[1], ARGV[3]) end
if ARGV[4] ~= '' then redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4]) end
for i = 5, #ARGV do redis.call(ARGV[1], KEYS[2], ARGV[i]) end
return 0
";

/// Sets the room's topic and tells the room, in one step.
///
/// KEYS: topic, channel (declared for the reason `PRESENCE_LUA` gives).
/// ARGV: the publish command, the topic, its TTL (s), the envelope to
/// publish.
pub(super) const TOPIC_LUA: &str = r"
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
redis.call(ARGV[1], KEYS[2], ARGV[4])
return 0
";

/// The heartbeat of one room: rewrites this instance's presence entries
/// with a fresh expiry, drops expired ones (a crashed instance's), and
/// refreshes this instance's name owner entries.
///
/// KEYS: presence, then one name owner set per name held here. ARGV: now
/// (ms), the expiry (ms) of the written entries, the presence set's TTL
/// (s), the owner sets' lifetime (ms), the number of presence entries
/// `n`, the `n` presence entries, then one owner entry per owner set
/// (`KEYS[2]` onwards).
pub(super) const REFRESH_ROOM_LUA: &str = r"
local expiry = ARGV[2]
local entries = tonumber(ARGV[5])
for i = 6, 5 + entries do redis.call('ZADD', KEYS[1], expiry, ARGV[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
for k = 2, #KEYS do
  redis.call('ZADD', KEYS[k], expiry, ARGV[4 + entries + k])
  redis.call('PEXPIRE', KEYS[k], ARGV[4])
end
return 0
";

/// The id the publisher writes where the script puts the real one.
const ID_PLACEHOLDER: &str = ",\"id\":18446744073709551615,";

/// A chat event as the publish script takes it: the typed event
/// serialised with the id [`u64::MAX`], split around that id. The script
/// joins [`IdTemplate::before`], the id it allocates, and
/// [`IdTemplate::after`].
pub(super) struct IdTemplate {
    json: String,
    /// Where the id's digits start.
    id_start: usize,
    /// Where the text after the id starts.
    id_end: usize,
}

impl IdTemplate {
    /// `draft` in `room`, split around its id. `None` if the placeholder
    /// is missing (an encoder that changed).
    ///
    /// The placeholder cannot occur inside the message text, where every
    /// quote is escaped, so the first match is the id field.
    pub(super) fn new(room: &RoomName, draft: Draft) -> Option<Self> {
        let json = draft.into_event(room, u64::MAX).to_event_json();
        let at = json.find(ID_PLACEHOLDER)?;
        Some(Self {
            id_start: at + ",\"id\":".len(),
            id_end: at + ID_PLACEHOLDER.len() - 1,
            json,
        })
    }

    /// The event up to the id.
    pub(super) fn before(&self) -> &str {
        &self.json[..self.id_start]
    }

    /// The event after the id.
    pub(super) fn after(&self) -> &str {
        &self.json[self.id_end..]
    }
}

/// The names of one room's keys and channel.
#[derive(Debug)]
pub(super) struct RoomKeys {
    /// String: the room's last message id (`INCR`).
    pub(super) seq: String,
    /// String: names the id sequence; new when the sequence starts again.
    pub(super) epoch: String,
    /// Stream: the last N chat events, entry id `{message id}-0`, field `e`.
    pub(super) log: String,
    /// Sorted set: `{node}:{name}` scored by expiry (unix ms).
    pub(super) presence: String,
    /// The room's (sharded) pub/sub channel.
    pub(super) channel: String,
    /// String: the bytes of the events `log` holds.
    pub(super) bytes: String,
    /// Sorted set: ids of recent publishes, scored by when they may be
    /// forgotten (unix ms), so that a resent publish runs once.
    pub(super) pubs: String,
}

/// Key and channel names under one prefix.
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    /// Names under `prefix`, which must not contain `{` or `}` (it is
    /// part of every room's hash tag).
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }

    /// Whether `prefix` can be used: braces would change the hash tag.
    pub(super) fn is_valid_prefix(prefix: &str) -> bool {
        !prefix.contains(['{', '}'])
    }

    /// Every name of `room`, all in one hash slot.
    /// Sorted set: who holds a display name (folded, see
    /// `names::name_fold`) in a room, `{identity}:{node}` scored by expiry
    /// (unix ms). In the room's hash slot.
    pub(super) fn owner(&self, room: &RoomName, folded_name: &str) -> String {
        format!("{}:owner:{folded_name}", self.tag(room))
    }

    /// String: the room's topic. In the room's hash slot.
    pub(super) fn topic(&self, room: &RoomName) -> String {
        format!("{}:topic", self.tag(room))
    }

    /// The common start of a room's keys, with its hash tag.
    fn tag(&self, room: &RoomName) -> String {
        format!("{}:{{{}:{room}}}", self.prefix, self.prefix)
    }

    pub(super) fn room(&self, room: &RoomName) -> RoomKeys {
        let tag = self.tag(room);
        RoomKeys {
            seq: format!("{tag}:seq"),
            epoch: format!("{tag}:epoch"),
            log: format!("{tag}:log"),
            presence: format!("{tag}:presence"),
            channel: format!("{tag}:ch"),
            bytes: format!("{tag}:bytes"),
            pubs: format!("{tag}:pubs"),
        }
    }

    /// The room's channel.
    pub(super) fn channel(&self, room: &RoomName) -> String {
        self.room(room).channel
    }

    /// Sorted set: rooms with members, scored by expiry (unix ms). One key,
    /// so `/api/rooms` reads one key and then each listed room's presence,
    /// never `KEYS` or a scan of every node.
    pub(super) fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }

    /// The room of a channel name, if it is one of ours.
    pub(super) fn room_of_channel(&self, channel: &str) -> Option<RoomName> {
        let rest = channel.strip_prefix(&self.prefix)?.strip_prefix(":{")?;
        let rest = rest.strip_prefix(&self.prefix)?.strip_prefix(':')?;
        let name = rest.strip_suffix("}:ch")?;
        RoomName::new(name).ok()
    }

    /// The keys the release before streams wrote for `room` (seq, epoch,
    /// history list): read once, by the catch-up script, to carry a room
    /// over on a single Redis.
    pub(super) fn legacy(&self, room: &RoomName) -> [String; 3] {
        let p = &self.prefix;
        [
            format!("{p}:seq:{room}"),
            format!("{p}:epoch:{room}"),
            format!("{p}:history:{room}"),
        ]
    }
}

/// The hash slot (0..16384) of a key or channel name, as Redis Cluster
/// computes it: CRC16 (XMODEM) of the hash tag, or of the whole name.
pub(super) fn slot(name: &str) -> u16 {
    let bytes = name.as_bytes();
    let tagged = bytes.iter().position(|&b| b == b'{').and_then(|open| {
        let len = bytes[open + 1..].iter().position(|&b| b == b'}')?;
        (len > 0).then(|| &bytes[open + 1..open + 1 + len])
    });
    crc16(tagged.unwrap_or(bytes)) % 16384
}

/// CRC16-CCITT (XMODEM), the checksum Redis Cluster uses for slots.
fn crc16(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 == 0 {
                crc << 1
            } else {
                (crc << 1) ^ 0x1021
            };
        }
    }
    crc
}

/// An event that carries no id, as the room's channel carries it.
pub(super) fn envelope(event: &ServerEvent) -> String {
    format!("0\n{}\n", event.to_json())
}

/// Splits `{id}\n{typed event}\n{plain frame}` into ready frames. Neither
/// JSON text contains a raw newline: serialisers escape it.
pub(super) fn parse_envelope(payload: &[u8]) -> Option<Frames> {
    let bytes = bytes::Bytes::copy_from_slice(payload);
    let first = bytes.iter().position(|&b| b == b'\n')?;
    let id: u64 = std::str::from_utf8(&bytes[..first]).ok()?.parse().ok()?;
    let rest = bytes.slice(first + 1..);
    let second = rest.iter().position(|&b| b == b'\n')?;
    let events = Utf8Bytes::try_from(rest.slice(..second)).ok()?;
    let plain = rest.slice(second + 1..);
    let plain = if plain.is_empty() {
        None
    } else {
        Some(Utf8Bytes::try_from(plain).ok()?)
    };
    if id == 0 {
        // Notices are for typed clients only, whatever the payload says.
        return Some(Frames {
            id,
            events,
            plain: None,
        });
    }
    Some(Frames { id, events, plain })
}

/// A history entry (the stored typed event) as a chat event.
pub(super) fn parse_entry(json: &str) -> Option<ChatEvent> {
    match serde_json::from_str::<ServerEvent>(json) {
        Ok(ServerEvent::Chat(chat)) => Some(chat),
        _ => None,
    }
}

/// A history entry as the frames a live delivery would have carried.
pub(super) fn entry_frames(json: &str) -> Option<Frames> {
    parse_entry(json).map(|chat| chat_frames(&chat, (true, true)))
}

/// A presence entry: `{node}:{name}`.
pub(super) fn presence_member(node: &str, name: &str) -> String {
    format!("{node}:{name}")
}

/// A name owner entry: `{identity}:{node}` (identities hold no `:`).
pub(super) fn owner_member(identity: &str, node: &str) -> String {
    format!("{identity}:{node}")
}

/// Display names from presence entries `{node}:{name}`, sorted, unique.
pub(super) fn unique_names(entries: &[String]) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.split_once(':').map(|(_, name)| name.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
}

/// A stream entry as Redis returns it: `[id, [field, value, ...]]`, read
/// as the message id and the event (field `e`).
pub(super) type Entry = (String, Vec<String>);

/// The message id and event text of a stream entry.
pub(super) fn entry(entry: &Entry) -> Option<(u64, &str)> {
    let id = entry.0.strip_suffix("-0")?.parse().ok()?;
    let mut fields = entry.1.chunks_exact(2);
    let event = fields.find(|pair| pair[0] == "e")?;
    Some((id, event[1].as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_split_into_frames() {
        let frames = parse_envelope(b"7\n{\"type\":\"chat\"}\n{\"message\": \"x\"}").unwrap();
        assert_eq!(frames.id, 7);
        assert_eq!(frames.events.as_str(), "{\"type\":\"chat\"}");
        assert_eq!(frames.plain.unwrap().as_str(), "{\"message\": \"x\"}");
        let notice = parse_envelope(b"0\n{\"type\":\"join\"}\n").unwrap();
        assert!(notice.plain.is_none());
        assert!(parse_envelope(b"x\n{}\n").is_none());
        assert!(parse_envelope(b"1\n\xff\n").is_none());
        assert!(parse_envelope(b"").is_none());
    }

    #[test]
    fn presence_entries_give_unique_names() {
        let entries = [
            presence_member("a1", "bob"),
            presence_member("b2", "alice"),
            presence_member("c3", "bob"),
            presence_member("d4", "x:y"),
        ];
        assert_eq!(unique_names(&entries), ["alice", "bob", "x:y"]);
    }

    #[test]
    fn a_rooms_names_share_one_slot_and_channels_map_back() {
        let keys = Keys::new("p");
        let room = RoomName::new("lobby").unwrap();
        let names = keys.room(&room);
        assert_eq!(names.seq, "p:{p:lobby}:seq");
        let slot_of_room = slot(&names.seq);
        for name in [
            &names.epoch,
            &names.log,
            &names.presence,
            &names.channel,
            &names.bytes,
            &names.pubs,
        ] {
            assert_eq!(slot(name), slot_of_room, "{name}");
        }
        assert_eq!(keys.room_of_channel(&names.channel), Some(room));
        assert_eq!(keys.room_of_channel("other:{other:lobby}:ch"), None);
        assert_eq!(keys.room_of_channel("p:{p:lobby}:seq"), None);
        assert!(Keys::is_valid_prefix("chat-1"));
        assert!(!Keys::is_valid_prefix("a{b}"));
    }

    /// Known slots, from `CLUSTER KEYSLOT` on Redis 7.
    #[test]
    fn slots_match_redis() {
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(
            slot("foo{}{bar}"),
            slot("foo{}{bar}"),
            "an empty tag hashes the whole name"
        );
        assert_eq!(
            slot("123456789"),
            0x31C3,
            "the CRC16 check value (below 16384)"
        );
    }

    #[test]
    fn stream_entries_give_id_and_event() {
        let raw: Entry = ("42-0".into(), vec!["e".into(), "{}".into()]);
        assert_eq!(entry(&raw), Some((42, "{}")));
        assert_eq!(entry(&("42-1".into(), vec!["e".into(), "{}".into()])), None);
        assert_eq!(entry(&("42-0".into(), vec!["x".into(), "{}".into()])), None);
    }

    /// The split the publisher makes of a real chat event, joined around
    /// an id as the publish script joins it, gives that event with that
    /// id, even when the text itself looks like the placeholder.
    #[test]
    fn the_id_placeholder_splits_a_chat_event() {
        let room = RoomName::new("r").unwrap();
        for text in [",\"id\":18446744073709551615,", "plain", "", "\"id\":1,"] {
            for emote in [false, true] {
                let draft = Draft {
                    user: "u".into(),
                    message: text.to_owned(),
                    emote,
                };
                let template =
                    IdTemplate::new(&room, draft).expect("a chat event has the id field");
                let rebuilt = format!("{}42{}", template.before(), template.after());
                let chat = parse_entry(&rebuilt).expect("a chat event");
                assert_eq!(
                    (chat.id, chat.message.as_str(), chat.emote),
                    (42, text, emote)
                );
            }
        }
    }
}
