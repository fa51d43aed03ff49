//! What the Redis layer writes into Redis: key and channel names, the Lua
//! scripts, and the envelope a room's channel carries.
//!
//! Every key and channel name is built here and nowhere else, so that the
//! layout (see the table in `layer::redis`) has one owner.

use chat_protocol::{RoomName, ServerEvent};
use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::ring::Frames;

/// Allocates the id, appends to history, publishes: one atomic step.
pub(super) const PUBLISH_LUA: &str = r"
local id = redis.call('INCR', KEYS[1])
if id == 1 then redis.call('SET', KEYS[2], ARGV[7], 'NX') end
local event = ARGV[1] .. id .. ARGV[2]
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('RPUSH', KEYS[3], event)
  redis.call('LTRIM', KEYS[3], -keep, -1)
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], id .. '\n' .. event .. '\n' .. ARGV[3])
return id
";

/// A consistent view of a room for a joiner: last id, epoch, history,
/// members. A room without an epoch gets one now, so that ids seen by this
/// joiner can be resumed later.
pub(super) const SNAPSHOT_LUA: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[3])
end

local history = redis.call('LRANGE', KEYS[3], 0, -1)
local members = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf')
return {seq, epoch, history, members}
";

/// The id the publisher writes where the script puts the real one.
const ID_PLACEHOLDER: &str = ",\"id\":18446744073709551615,";

/// Splits a chat event serialised with the id [`u64::MAX`] around that id:
/// the publish script joins `before`, the id it allocates, and `after`.
/// `None` if the placeholder is missing (an event that is not a chat
/// event, or an encoder that changed).
///
/// The placeholder cannot occur inside the message text, where every
/// quote is escaped, so the first match is the id field.
pub(super) fn split_at_id(json: &str) -> Option<(&str, &str)> {
    let at = json.find(ID_PLACEHOLDER)?;
    Some((
        &json[..at + ",\"id\":".len()],
        &json[at + ID_PLACEHOLDER.len() - 1..],
    ))
}

/// Key and channel names under one prefix.
#[derive(Debug)]
pub(super) struct Keys {
    prefix: String,
}

impl Keys {
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
        }
    }
    pub(super) fn seq(&self, room: &RoomName) -> String {
        format!("{}:seq:{room}", self.prefix)
    }
    pub(super) fn epoch(&self, room: &RoomName) -> String {
        format!("{}:epoch:{room}", self.prefix)
    }
    pub(super) fn history(&self, room: &RoomName) -> String {
        format!("{}:history:{room}", self.prefix)
    }
    pub(super) fn presence(&self, room: &RoomName) -> String {
        format!("{}:presence:{room}", self.prefix)
    }
    pub(super) fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
    pub(super) fn channel(&self, room: &RoomName) -> String {
        format!("{}:room:{room}", self.prefix)
    }
    pub(super) fn room_of_channel(&self, channel: &str) -> Option<RoomName> {
        let name = channel.strip_prefix(&self.prefix)?.strip_prefix(":room:")?;
        RoomName::new(name).ok()
    }
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

/// A presence entry: `{node}:{name}`.
pub(super) fn presence_member(node: &str, name: &str) -> String {
    format!("{node}:{name}")
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

#[cfg(test)]
mod tests {
    use chat_protocol::ChatEvent;

    use super::*;
    use crate::layer::Draft;

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
    fn channels_map_back_to_rooms() {
        let keys = Keys::new("p");
        let room = RoomName::new("lobby").unwrap();
        assert_eq!(keys.room_of_channel(&keys.channel(&room)), Some(room));
        assert_eq!(keys.room_of_channel("other:room:lobby"), None);
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
                let json = draft.into_event(&room, u64::MAX).to_event_json();
                let (before, after) = split_at_id(&json).expect("a chat event has the id field");
                let rebuilt = format!("{before}42{after}");
                match serde_json::from_str::<ServerEvent>(&rebuilt).unwrap() {
                    ServerEvent::Chat(ChatEvent {
                        id,
                        message,
                        emote: was_emote,
                        ..
                    }) => {
                        assert_eq!((id, message.as_str(), was_emote), (42, text, emote));
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        assert!(split_at_id("{\"type\":\"join\"}").is_none());
    }
}
