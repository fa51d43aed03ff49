//! The JSON frames on the wire, one JSON object per WebSocket text frame.
//!
//! Two shapes travel from the server:
//!
//! * [`PlainMessage`], `{"message": text}` and nothing else, for clients
//!   written for the Channels tutorial (the default);
//! * [`ServerEvent`], typed events tagged by `"type"`, for clients that opt
//!   in with the [`SUBPROTOCOL_V2`] subprotocol (or `?v=2`). Every event
//!   still carries a readable `message`, so a naive client can show it.
//!
//! Clients send [`ClientMessage`]s; `{"message": text}` is the tutorial's
//! frame and is all a plain client ever needs.

use serde::{Deserialize, Serialize};

use crate::history::{self, HistoryEvent, HistoryQuery, HistoryQueryError, HistoryRequest};
use crate::{RoomName, SearchWords, UserName, UserNameError};

/// The WebSocket subprotocol a client offers to receive [`ServerEvent`]s.
pub const SUBPROTOCOL_V2: &str = "chat.v2";

/// The query parameter that opts in to [`ServerEvent`]s, for clients that
/// cannot offer a subprotocol: `?v=2`.
pub const QUERY_OPT_IN: (&str, &str) = ("v", "2");

/// The frame a plain (tutorial) client receives: exactly one key, `message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlainMessage {
    /// The chat text, exactly as its sender wrote it.
    pub message: String,
}

impl PlainMessage {
    /// Encodes `{"message": text}` byte for byte as a Django Channels
    /// consumer sends it (Python's `json.dumps` defaults: `": "` after the
    /// key, and every character outside ASCII escaped as `\uXXXX`, as
    /// surrogate pairs beyond the BMP), so that a test comparing raw frames
    /// with Channels' output sees no difference.
    ///
    /// ```
    /// use chat_protocol::PlainMessage;
    ///
    /// assert_eq!(PlainMessage::encode("hé 🦀\n"), r#"{"message": "h\u00e9 \ud83e\udd80\n"}"#);
    /// ```
    pub fn encode(message: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(message.len() + 16);
        out.push_str("{\"message\": \"");
        for c in message.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0c}' => out.push_str("\\f"),
                ' '..='~' => out.push(c),
                _ => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        // Writing to a String cannot fail.
                        let _ = write!(out, "\\u{unit:04x}");
                    }
                }
            }
        }
        out.push_str("\"}");
        out
    }
}

/// What a client sends to the server.
///
/// | JSON                                   | meaning                          |
/// |----------------------------------------|----------------------------------|
/// | `{"message": "hi"}`                    | say "hi" (the tutorial's frame)  |
/// | `{"type": "chat", "message": "hi"}`    | the same                         |
/// | `{"type": "me", "message": "waves"}`   | an action: "* alice waves"       |
/// | `{"type": "nick", "name": "bob"}`      | change my display name           |
/// | `{"type": "history", "before": 120, "limit": 50}` | older messages (see [`crate::history`]) |
/// | `{"type": "topic", "topic": "text"}`   | set the room's topic ("" clears it) |
///
/// Unknown fields are ignored, so a client may add its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// A chat message to everyone in the room.
    Chat {
        /// The text, relayed unchanged (no trimming, no escaping).
        message: String,
    },
    /// An action ("/me waves"), shown as `* alice waves`.
    Emote {
        /// The action text.
        message: String,
    },
    /// A change of display name for this connection.
    Nick {
        /// The new name.
        name: UserName,
    },
    /// A request for stored messages (paging back or forward, search);
    /// answered with a [`ServerEvent::History`] (typed clients only).
    History(HistoryRequest),
    /// Sets the room's topic (an empty string clears it).
    Topic {
        /// The new topic, at most [`TOPIC_MAX_BYTES`] bytes.
        topic: String,
    },
}

/// The longest room topic, in bytes (UTF-8).
pub const TOPIC_MAX_BYTES: usize = 500;

/// Why a client frame was refused. Each maps to an [`ErrorCode`] the server
/// reports back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The text is not JSON.
    #[error("the frame is not valid JSON ({0}); send {{\"message\": \"your text\"}}")]
    InvalidJson(String),
    /// The JSON is not an object.
    #[error("the frame is JSON but not an object; send {{\"message\": \"your text\"}}")]
    NotAnObject,
    /// The object has no `message` field.
    #[error("the frame has no \"message\" field; send {{\"message\": \"your text\"}}")]
    MissingMessage,
    /// `message` is present but not a string.
    #[error("the frame's \"message\" field is not a string; send {{\"message\": \"your text\"}}")]
    MessageNotString,
    /// The `type` field names a message this protocol does not know.
    #[error(
        "unknown frame type {0:?}; known types are \"chat\", \"me\", \"nick\", \"history\" and \"topic\""
    )]
    UnknownType(String),
    /// A `nick` frame without a usable `name`.
    #[error("invalid name in the nick frame: {0}")]
    InvalidName(#[from] UserNameError),
    /// A `nick` frame with no `name` string.
    #[error(
        "the nick frame has no \"name\" string; send {{\"type\": \"nick\", \"name\": \"new name\"}}"
    )]
    MissingName,
    /// A `history` frame with a bad field.
    #[error("invalid history request: {0}")]
    InvalidHistory(#[from] HistoryQueryError),
    /// A `topic` frame without a `topic` string.
    #[error(
        "the topic frame has no \"topic\" string; send {{\"type\": \"topic\", \"topic\": \"text\"}}"
    )]
    MissingTopic,
    /// A topic longer than [`TOPIC_MAX_BYTES`].
    #[error("the topic is {0} bytes long; the limit is {TOPIC_MAX_BYTES}")]
    TopicTooLong(usize),
}

impl FrameError {
    /// The error code the server reports for this refusal.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::InvalidJson(_) => ErrorCode::InvalidJson,
            Self::NotAnObject => ErrorCode::NotAnObject,
            Self::MissingMessage => ErrorCode::MissingMessage,
            Self::MessageNotString => ErrorCode::MessageNotString,
            Self::UnknownType(_) => ErrorCode::UnknownType,
            Self::InvalidName(_) | Self::MissingName => ErrorCode::InvalidName,
            Self::InvalidHistory(_) => ErrorCode::InvalidQuery,
            Self::MissingTopic | Self::TopicTooLong(_) => ErrorCode::InvalidTopic,
        }
    }
}

/// The raw shape of a client frame, before its meaning is checked.
///
/// Fields are `Some` whenever present, even as `null`, so that
/// `{"message": null}` is told apart from a missing `message`.
#[derive(Deserialize)]
struct RawClientFrame {
    #[serde(rename = "type", default, deserialize_with = "present")]
    kind: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    message: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    name: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    topic: Option<serde_json::Value>,
}

/// The fields of a `history` frame, read only for frames of that type (so
/// that other frames keep ignoring fields of these names).
#[derive(Deserialize)]
struct RawHistoryFrame {
    #[serde(default, deserialize_with = "present")]
    before: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    after: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    limit: Option<serde_json::Value>,
    #[serde(default, deserialize_with = "present")]
    q: Option<serde_json::Value>,
    #[serde(rename = "ref", default, deserialize_with = "present")]
    reference: Option<serde_json::Value>,
}

impl RawHistoryFrame {
    fn into_request(self) -> Result<HistoryRequest, HistoryQueryError> {
        let mut query = HistoryQuery::new();
        if let Some(before) = history::number_field(self.before, "before", 1)? {
            query = query.before(before);
        }
        if let Some(after) = history::number_field(self.after, "after", 0)? {
            query = query.after(after);
        }
        if let Some(limit) = history::number_field(self.limit, "limit", 1)? {
            query = query.limit(u32::try_from(limit).unwrap_or(u32::MAX));
        }
        match self.q {
            None | Some(serde_json::Value::Null) => {}
            Some(serde_json::Value::String(q)) if q.is_empty() => {}
            Some(serde_json::Value::String(q)) => query = query.search(SearchWords::parse(&q)?),
            Some(_) => return Err(HistoryQueryError::SearchNotString),
        }
        let reference = match self.reference {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(r)) if r.len() <= history::REF_MAX_BYTES => Some(r),
            Some(_) => return Err(HistoryQueryError::BadRef),
        };
        Ok(HistoryRequest {
            query: query.check()?,
            reference,
        })
    }
}

fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

impl ClientMessage {
    /// A plain chat message.
    pub fn chat(message: impl Into<String>) -> Self {
        Self::Chat {
            message: message.into(),
        }
    }

    /// Parses one client text frame.
    ///
    /// ```
    /// use chat_protocol::{ClientMessage, FrameError};
    ///
    /// assert_eq!(ClientMessage::from_json(r#"{"message":"hi","extra":1}"#)?, ClientMessage::chat("hi"));
    /// assert_eq!(ClientMessage::from_json("[1]"), Err(FrameError::NotAnObject));
    /// # Ok::<(), FrameError>(())
    /// ```
    ///
    /// # Errors
    ///
    /// A [`FrameError`] naming what is wrong with the frame.
    pub fn from_json(text: &str) -> Result<Self, FrameError> {
        // serde's derived struct visitor also accepts arrays, so look at the
        // first token to tell "not an object" from "not JSON".
        if !text
            .trim_start_matches([' ', '\t', '\n', '\r'])
            .starts_with('{')
        {
            return match serde_json::from_str::<serde::de::IgnoredAny>(text) {
                Ok(_) => Err(FrameError::NotAnObject),
                Err(err) => Err(FrameError::InvalidJson(err.to_string())),
            };
        }
        let raw: RawClientFrame =
            serde_json::from_str(text).map_err(|err| FrameError::InvalidJson(err.to_string()))?;
        let kind = match raw.kind {
            None | Some(serde_json::Value::Null) => "chat".to_owned(),
            Some(serde_json::Value::String(kind)) => kind,
            Some(other) => return Err(FrameError::UnknownType(other.to_string())),
        };
        let message = || match raw.message {
            Some(serde_json::Value::String(message)) => Ok(message),
            None => Err(FrameError::MissingMessage),
            Some(_) => Err(FrameError::MessageNotString),
        };
        match kind.as_str() {
            "chat" => Ok(Self::Chat {
                message: message()?,
            }),
            "me" => Ok(Self::Emote {
                message: message()?,
            }),
            "nick" => match raw.name {
                Some(serde_json::Value::String(name)) => Ok(Self::Nick {
                    name: UserName::new(name)?,
                }),
                _ => Err(FrameError::MissingName),
            },
            "history" => {
                let raw: RawHistoryFrame = serde_json::from_str(text)
                    .map_err(|err| FrameError::InvalidJson(err.to_string()))?;
                Ok(Self::History(raw.into_request()?))
            }
            "topic" => match raw.topic {
                Some(serde_json::Value::String(topic)) if topic.len() > TOPIC_MAX_BYTES => {
                    Err(FrameError::TopicTooLong(topic.len()))
                }
                Some(serde_json::Value::String(topic)) => Ok(Self::Topic { topic }),
                _ => Err(FrameError::MissingTopic),
            },
            _ => Err(FrameError::UnknownType(kind)),
        }
    }

    /// Encodes the message as the JSON text frame a server expects.
    ///
    /// A chat message is exactly the tutorial's `{"message": text}`, so it
    /// can be sent to any server that speaks the tutorial protocol.
    pub fn to_json(&self) -> String {
        let value = match self {
            Self::Chat { message } => serde_json::json!({ "message": message }),
            Self::Emote { message } => serde_json::json!({ "type": "me", "message": message }),
            Self::Nick { name } => serde_json::json!({ "type": "nick", "name": name.as_str() }),
            Self::History(request) => return request.to_json(),
            Self::Topic { topic } => serde_json::json!({ "type": "topic", "topic": topic }),
        };
        value.to_string()
    }

    /// The length of the chat or action text in bytes (0 for other frames).
    pub fn text_len(&self) -> usize {
        match self {
            Self::Chat { message } | Self::Emote { message } => message.len(),
            Self::Nick { .. } | Self::History(_) | Self::Topic { .. } => 0,
        }
    }
}

/// A typed event from the server, for clients that opted in.
///
/// Every variant carries a readable `message`. Unknown event types from a
/// newer server deserialize as [`ServerEvent::Unknown`] and are best ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerEvent {
    /// The first event on a connection: who is here and what was said.
    Welcome(Welcome),
    /// A chat message (or an action, with `emote: true`).
    Chat(ChatEvent),
    /// Someone joined the room.
    Join(Presence),
    /// Someone left the room.
    Leave(Presence),
    /// Someone changed their display name.
    Nick(NickChange),
    /// Something this client sent was refused, or the server has a problem.
    Error(ErrorEvent),
    /// The answer to a history request: a page of stored messages.
    History(HistoryEvent),
    /// Messages of this room that were published while the server's own
    /// feed was interrupted and that it could no longer recover: this
    /// client will never receive them. Live messages go on after it.
    Gap(GapEvent),
    /// The room's topic was set (or cleared).
    Topic(TopicEvent),
    /// An event type this version does not know.
    #[serde(other)]
    Unknown,
}

impl ServerEvent {
    /// The readable text every event carries ("" for [`ServerEvent::Unknown`]).
    pub fn message(&self) -> &str {
        match self {
            Self::Welcome(e) => &e.message,
            Self::Chat(e) => &e.message,
            Self::Join(e) | Self::Leave(e) => &e.message,
            Self::Nick(e) => &e.message,
            Self::Error(e) => &e.message,
            Self::History(e) => &e.message,
            Self::Gap(e) => &e.message,
            Self::Topic(e) => &e.message,
            Self::Unknown => "",
        }
    }

    /// The event as one line of JSON.
    pub fn to_json(&self) -> String {
        // Serialising these plain data types cannot fail: no maps with
        // non-string keys, no failing `Serialize` impls.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A chat message as the server relays it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatEvent {
    /// The text, exactly as sent.
    pub message: String,
    /// The sender's display name, stamped by the server. Empty when the
    /// server is a plain (tutorial) server that sends no names.
    #[serde(default)]
    pub user: String,
    /// The room.
    pub room: RoomName,
    /// The per-room sequence number: strictly increasing, the same on every
    /// server instance. 0 when the server sent none (plain mode).
    #[serde(default)]
    pub id: u64,
    /// Server time in unix milliseconds. 0 when the server sent none.
    #[serde(default)]
    pub ts: u64,
    /// An action ("/me waves") rather than a plain message.
    #[serde(default, skip_serializing_if = "is_false")]
    pub emote: bool,
}

#[allow(clippy::trivially_copy_pass_by_ref)] // serde's skip_serializing_if passes a reference
fn is_false(b: &bool) -> bool {
    !*b
}

impl ChatEvent {
    /// The event as the JSON of [`ServerEvent::Chat`], without copying it
    /// into a `ServerEvent` first (servers serialise every message once).
    pub fn to_event_json(&self) -> String {
        /// `ServerEvent::Chat`'s serialisation, borrowing the fields.
        #[derive(Serialize)]
        #[serde(tag = "type", rename = "chat")]
        struct ChatRef<'a> {
            message: &'a str,
            user: &'a str,
            room: &'a RoomName,
            id: u64,
            ts: u64,
            #[serde(skip_serializing_if = "is_false")]
            emote: bool,
        }
        let borrowed = ChatRef {
            message: &self.message,
            user: &self.user,
            room: &self.room,
            id: self.id,
            ts: self.ts,
            emote: self.emote,
        };
        // The message dominates the size; the rest is under 128 bytes.
        let mut out = Vec::with_capacity(self.message.len() + self.user.len() + 128);
        // Serialising strings and numbers into a Vec cannot fail, and
        // serde_json writes valid UTF-8.
        let _ = serde_json::to_writer(&mut out, &borrowed);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// The first event on an opted-in connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Welcome {
    /// A greeting, e.g. "Welcome to lobby, alice: 3 people here".
    pub message: String,
    /// The room joined.
    pub room: RoomName,
    /// This connection's display name, as the server stamps it.
    pub user: String,
    /// Display names of everyone in the room now, this connection included.
    #[serde(default)]
    pub members: Vec<String>,
    /// Recent chat messages, oldest first: the last N, or, when the client
    /// connected with `?since=ID`, every message after `ID` that history holds.
    #[serde(default)]
    pub history: Vec<ChatEvent>,
    /// The room's latest message id when this client joined (0: none yet).
    #[serde(default)]
    pub last_id: u64,
    /// With `?since=ID`: how many messages after `ID` are no longer in
    /// history and cannot be recovered (0 means nothing was missed).
    #[serde(default)]
    pub missed: u64,
    /// Names the room's id sequence. Ids are comparable only within one
    /// epoch: when it differs from the one a client saw (the server's
    /// rooms were reset, e.g. an in-memory server restarted), the client's
    /// last id means nothing here and `since` was ignored.
    #[serde(default)]
    pub epoch: String,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
    /// What the server accepts from a client, so that clients can pace
    /// themselves and refuse too-long messages locally instead of losing
    /// them. Absent from servers that do not announce limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<Limits>,
    /// The room's topic ("" when none is set). Absent (`None`) from servers
    /// that do not support topics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

/// The limits a server announces in its welcome.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// Messages per second a connection may send, sustained (0: no limit).
    #[serde(default)]
    pub rate: f64,
    /// How many messages a connection may send at once above the rate.
    #[serde(default)]
    pub burst: u32,
    /// The largest frame a client may send: the JSON text of the frame,
    /// in bytes (0: not announced). A bigger one closes the connection
    /// with 1009.
    #[serde(default)]
    pub max_message_bytes: u64,
}

// JSON has no NaN, so a rate read from the wire is never NaN: equality is
// total for every value a `Limits` can hold.
impl Eq for Limits {}

/// The room's topic was set or cleared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEvent {
    /// E.g. "alice set the topic: release on Friday".
    pub message: String,
    /// The new topic ("" when cleared).
    pub topic: String,
    /// Who set it.
    pub user: String,
    /// The room.
    pub room: RoomName,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// Someone joined or left.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// E.g. "alice joined".
    pub message: String,
    /// Who joined or left.
    pub user: String,
    /// The room.
    pub room: RoomName,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// Someone changed their display name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NickChange {
    /// E.g. "alice is now known as bob".
    pub message: String,
    /// The new name.
    pub user: String,
    /// The old name.
    pub old: String,
    /// The room.
    pub room: RoomName,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// Messages missed by every member on one server instance: its feed from
/// the other instances was interrupted (e.g. it lost Redis for a while)
/// and history no longer holds what was published meanwhile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapEvent {
    /// E.g. "12 messages were lost here (the server lost its connection to
    /// the other instances); later messages follow".
    pub message: String,
    /// The room.
    pub room: RoomName,
    /// How many messages were missed.
    pub missed: u64,
    /// The id of the last message delivered before the gap: the missed
    /// ones are `after_id + 1 ..= after_id + missed`.
    pub after_id: u64,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// A refusal or a server-side problem, reported to one client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    /// What went wrong and what to do about it.
    pub message: String,
    /// A machine-readable reason.
    pub code: ErrorCode,
    /// Server time in unix milliseconds.
    #[serde(default)]
    pub ts: u64,
}

/// Machine-readable reasons in [`ErrorEvent`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame was not JSON.
    InvalidJson,
    /// The frame was JSON but not an object.
    NotAnObject,
    /// The frame had no `message`.
    MissingMessage,
    /// `message` was not a string.
    MessageNotString,
    /// The frame's `type` is unknown.
    UnknownType,
    /// A display name broke the name rule.
    InvalidName,
    /// The display name is held in the room by someone else (another
    /// connection without this one's key).
    NameTaken,
    /// A topic frame was malformed or too long.
    InvalidTopic,
    /// The client is sending faster than the rate limit allows.
    RateLimited,
    /// The message could not be delivered because the server's message bus
    /// is unavailable (e.g. Redis is down); it was not sent, send it again
    /// later. Rarely, the bus accepted it and then lost it before it came
    /// back (the text then says it "may not have reached every member"):
    /// some members may have it, and no echo will come.
    Unavailable,
    /// The client fell behind and missed messages.
    Lagged,
    /// A history request had a bad field (see the message); nothing was
    /// fetched.
    InvalidQuery,
    /// A reason this version does not know.
    #[serde(other)]
    Other,
}

/// One row of `GET /api/rooms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoomSummary {
    /// The room.
    pub name: RoomName,
    /// How many people are in it now.
    pub members: u64,
}

/// The body of `GET /api/rooms`: active rooms, busiest first.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RoomList {
    /// The rooms with at least one member.
    pub rooms: Vec<RoomSummary>,
}

/// The current time in unix milliseconds, as `ts` fields carry it.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room() -> RoomName {
        RoomName::new("lobby").unwrap()
    }

    #[test]
    fn parses_the_tutorial_frame_and_ignores_unknown_fields() {
        assert_eq!(
            ClientMessage::from_json(r#"{"message": "hi"}"#),
            Ok(ClientMessage::chat("hi"))
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"message": "hi", "user": "mallory", "x": [1]}"#),
            Ok(ClientMessage::chat("hi"))
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"message": ""}"#),
            Ok(ClientMessage::chat(""))
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"type": "chat", "message": " a\n\u0000 "}"#),
            Ok(ClientMessage::chat(" a\n\0 "))
        );
    }

    #[test]
    fn parses_typed_frames() {
        assert_eq!(
            ClientMessage::from_json(r#"{"type": "me", "message": "waves"}"#),
            Ok(ClientMessage::Emote {
                message: "waves".into()
            })
        );
        assert_eq!(
            ClientMessage::from_json(r#"{"type": "nick", "name": "bob"}"#),
            Ok(ClientMessage::Nick {
                name: UserName::new("bob").unwrap()
            })
        );
    }

    #[test]
    fn refuses_malformed_frames_with_a_precise_reason() {
        let cases: &[(&str, ErrorCode)] = &[
            ("not json", ErrorCode::InvalidJson),
            ("{\"message\": \"unterminated", ErrorCode::InvalidJson),
            ("", ErrorCode::InvalidJson),
            ("[1, 2]", ErrorCode::NotAnObject),
            ("\"message\"", ErrorCode::NotAnObject),
            ("42", ErrorCode::NotAnObject),
            ("null", ErrorCode::NotAnObject),
            ("{}", ErrorCode::MissingMessage),
            ("{\"text\": \"hi\"}", ErrorCode::MissingMessage),
            ("{\"message\": 5}", ErrorCode::MessageNotString),
            ("{\"message\": null}", ErrorCode::MessageNotString),
            ("{\"message\": {\"a\": 1}}", ErrorCode::MessageNotString),
            (
                "{\"type\": \"shout\", \"message\": \"hi\"}",
                ErrorCode::UnknownType,
            ),
            ("{\"type\": 7, \"message\": \"hi\"}", ErrorCode::UnknownType),
            ("{\"type\": \"nick\"}", ErrorCode::InvalidName),
            ("{\"type\": \"topic\"}", ErrorCode::InvalidTopic),
            (
                "{\"type\": \"topic\", \"topic\": 5}",
                ErrorCode::InvalidTopic,
            ),
            (
                "{\"type\": \"nick\", \"name\": \"a\\u202eb\"}",
                ErrorCode::InvalidName,
            ),
        ];
        let long = format!(
            r#"{{"type": "topic", "topic": "{}"}}"#,
            "x".repeat(TOPIC_MAX_BYTES + 1)
        );
        let err = ClientMessage::from_json(&long).unwrap_err();
        assert_eq!(err.code(), ErrorCode::InvalidTopic);
        assert!(err.to_string().contains("limit is 500"), "{err}");
        for (text, code) in cases {
            let err = ClientMessage::from_json(text).expect_err(text);
            assert_eq!(err.code(), *code, "{text}: {err}");
            assert!(!err.to_string().is_empty());
        }
    }

    #[test]
    fn client_frames_round_trip() {
        for msg in [
            ClientMessage::chat("hé 🦀 \"quoted\" \n"),
            ClientMessage::Emote {
                message: "waves".into(),
            },
            ClientMessage::Nick {
                name: UserName::new("Zoë").unwrap(),
            },
            ClientMessage::Topic {
                topic: "release \"on\" Friday 🎉".into(),
            },
            ClientMessage::Topic {
                topic: String::new(),
            },
        ] {
            assert_eq!(ClientMessage::from_json(&msg.to_json()), Ok(msg));
        }
        assert_eq!(ClientMessage::chat("hi").to_json(), r#"{"message":"hi"}"#);
    }

    #[test]
    fn plain_frames_match_python_json_dumps() {
        // Expected values are what `json.dumps({"message": m})` prints in CPython 3.
        let cases = [
            ("hello", r#"{"message": "hello"}"#),
            ("", r#"{"message": ""}"#),
            ("a\"b\\c/d", r#"{"message": "a\"b\\c/d"}"#),
            (
                "\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}",
                r#"{"message": "\n\r\t\b\f\u0000\u001f\u007f"}"#,
            ),
            (
                "é日本😀",
                r#"{"message": "\u00e9\u65e5\u672c\ud83d\ude00"}"#,
            ),
            ("<script>&", r#"{"message": "<script>&"}"#),
        ];
        for (message, expected) in cases {
            let encoded = PlainMessage::encode(message);
            assert_eq!(encoded, expected, "{message:?}");
            let decoded: PlainMessage = serde_json::from_str(&encoded).unwrap();
            assert_eq!(decoded.message, message);
        }
    }

    #[test]
    fn plain_frame_has_exactly_one_key() {
        let json = serde_json::to_string(&PlainMessage {
            message: "hi".into(),
        })
        .unwrap();
        assert_eq!(json, r#"{"message":"hi"}"#);
    }

    #[test]
    fn events_have_golden_json() {
        let chat = ServerEvent::Chat(ChatEvent {
            message: "hello".into(),
            user: "alice".into(),
            room: room(),
            id: 7,
            ts: 1_700_000_000_000,
            emote: false,
        });
        assert_eq!(
            chat.to_json(),
            r#"{"type":"chat","message":"hello","user":"alice","room":"lobby","id":7,"ts":1700000000000}"#
        );
        let error = ServerEvent::Error(ErrorEvent {
            message: "slow down".into(),
            code: ErrorCode::RateLimited,
            ts: 1,
        });
        assert_eq!(
            error.to_json(),
            r#"{"type":"error","message":"slow down","code":"rate_limited","ts":1}"#
        );
        let gap = ServerEvent::Gap(GapEvent {
            message: "3 messages were lost".into(),
            room: room(),
            missed: 3,
            after_id: 41,
            ts: 2,
        });
        let json = r#"{"type":"gap","message":"3 messages were lost","room":"lobby","missed":3,"after_id":41,"ts":2}"#;
        assert_eq!(gap.to_json(), json);
        assert_eq!(serde_json::from_str::<ServerEvent>(json).unwrap(), gap);
        let taken = ServerEvent::Error(ErrorEvent {
            message: "taken".into(),
            code: ErrorCode::NameTaken,
            ts: 1,
        });
        assert!(taken.to_json().contains(r#""code":"name_taken""#));
        let topic = ServerEvent::Topic(TopicEvent {
            message: "alice set the topic: x".into(),
            topic: "x".into(),
            user: "alice".into(),
            room: room(),
            ts: 2,
        });
        assert_eq!(
            topic.to_json(),
            r#"{"type":"topic","message":"alice set the topic: x","topic":"x","user":"alice","room":"lobby","ts":2}"#
        );
    }

    #[test]
    fn borrowed_chat_json_is_the_events_json() {
        for emote in [false, true] {
            let chat = ChatEvent {
                message: "hé \"q\" \n 🦀".into(),
                user: "zoë".into(),
                room: room(),
                id: 42,
                ts: 7,
                emote,
            };
            assert_eq!(
                chat.to_event_json(),
                ServerEvent::Chat(chat.clone()).to_json()
            );
        }
    }

    #[test]
    fn events_round_trip_and_tolerate_the_unknown() {
        let welcome = ServerEvent::Welcome(Welcome {
            message: "Welcome".into(),
            room: room(),
            user: "alice".into(),
            members: vec!["alice".into(), "bob".into()],
            history: vec![ChatEvent {
                message: "x".into(),
                user: "bob".into(),
                room: room(),
                id: 1,
                ts: 2,
                emote: true,
            }],
            last_id: 1,
            missed: 0,
            epoch: "e1".into(),
            ts: 3,
            limits: Some(Limits {
                rate: 50.0,
                burst: 500,
                max_message_bytes: 65_536,
            }),
            topic: Some("release on Friday".into()),
        });
        let json = welcome.to_json();
        assert!(
            json.contains(r#""limits":{"rate":50.0,"burst":500,"max_message_bytes":65536}"#),
            "{json}"
        );
        assert_eq!(serde_json::from_str::<ServerEvent>(&json).unwrap(), welcome);

        // A welcome from a server without limits or topics.
        let old: ServerEvent = serde_json::from_str(
            r#"{"type":"welcome","message":"hi","room":"lobby","user":"a","ts":1}"#,
        )
        .unwrap();
        let ServerEvent::Welcome(old) = old else {
            panic!("a welcome")
        };
        assert_eq!((old.limits, old.topic), (None, None));

        let future: ServerEvent =
            serde_json::from_str(r#"{"type":"typing","message":"bob is typing","user":"bob"}"#)
                .unwrap();
        assert_eq!(future, ServerEvent::Unknown);
        let code: ErrorEvent =
            serde_json::from_str(r#"{"message":"m","code":"brand_new"}"#).unwrap();
        assert_eq!(code.code, ErrorCode::Other);
    }
}
