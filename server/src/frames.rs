//! What a room's ring stores: an event serialised once per wire format
//! ([`Frames`]), made by the layer when it publishes; which of the two a
//! subscriber reads ([`Format`], chosen at the upgrade); and what one
//! subscriber gets back ([`Delivery`]).

use chat_protocol::{ChatEvent, ServerEvent};
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// The two serialisations of one published event.
#[derive(Debug, Clone)]
pub struct Frames {
    /// The chat message id, or 0 for events that have none (join, leave,
    /// nick). Sessions use it to skip what the welcome's history held.
    pub id: u64,
    /// The typed event, for clients that opted in.
    pub events: Utf8Bytes,
    /// `{"message": text}` for plain clients; `None` for events plain
    /// clients never see (join, leave, nick).
    pub plain: Option<Utf8Bytes>,
}

/// One event for one subscriber, in its format.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// See [`Frames::id`] (the ring has skipped what the welcome held).
    #[cfg_attr(not(test), expect(dead_code, reason = "tests check the order by id"))]
    pub id: u64,
    /// The JSON text frame.
    pub frame: Utf8Bytes,
}

/// Which stream a subscriber reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Typed events (`chat.v2` subprotocol or `?v=2`).
    Events,
    /// The tutorial's plain frames.
    Plain,
}

impl Frames {
    /// The bytes this event holds in a ring.
    pub(crate) fn len(&self) -> usize {
        self.events.len() + self.plain.as_ref().map_or(0, |plain| plain.len())
    }
}

/// Serialises a chat event once per wire format that someone reads
/// (`readers`: typed, plain): the typed event, and the plain frame byte
/// for byte as Channels would send it. A format nobody reads is left empty.
pub(crate) fn chat_frames(event: &ChatEvent, readers: (bool, bool)) -> Frames {
    let events = if readers.0 {
        Utf8Bytes::from(event.to_event_json())
    } else {
        Utf8Bytes::default()
    };
    let plain = if readers.1 {
        Utf8Bytes::from(chat_protocol::PlainMessage::encode(&event.message))
    } else {
        Utf8Bytes::default()
    };
    Frames {
        id: event.id,
        events,
        plain: Some(plain),
    }
}

/// Serialises an event that only typed clients see.
pub(crate) fn events_only(event: &ServerEvent) -> Frames {
    Frames {
        id: 0,
        events: Utf8Bytes::from(event.to_json()),
        plain: None,
    }
}
