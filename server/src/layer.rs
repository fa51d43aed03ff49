//! The channel layer: how an event published in a room reaches every
//! member on every instance, and where the state that instances must agree
//! on lives (message ids, history, presence).
//!
//! * [`MemoryLayer`]: one instance, everything in-process (the default).
//!
//! Every layer delivers through the local [`RoomRegistry`], so a session
//! only ever reads its room's ring, whatever the layer.
//!
//! The layer is an enum rather than a trait object: the backend is picked
//! once at start, and a `match` keeps the hot path free of boxing and
//! dynamic dispatch.

mod memory;

use std::sync::Arc;

use chat_protocol::{ChatEvent, RoomName, RoomSummary};
use tokio_tungstenite::tungstenite::Utf8Bytes;

pub use memory::MemoryLayer;

use crate::ring::{Format, Frames, Subscription};
use crate::rooms::RoomRegistry;

/// Why the layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The shared backend cannot be reached now; try again later.
    #[error("the message bus is unavailable: {0}")]
    Unavailable(String),
}

/// What a session gets on joining a room.
#[derive(Debug)]
pub struct Joined {
    /// The room's events, from the moment of joining.
    pub subscription: Subscription,
    /// Display names in the room, the joiner included (typed clients only:
    /// empty for plain ones, which get no welcome).
    pub members: Vec<String>,
    /// Recent messages, oldest first, or those after `since` (typed
    /// clients only).
    pub history: Vec<ChatEvent>,
    /// The room's latest message id at the time of joining.
    pub last_id: u64,
    /// With `since`: messages after it that history no longer holds.
    pub missed: u64,
}

/// A chat message to publish; the layer stamps the id and time.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Who said it (stamped by the session from its connection, never from the frame).
    pub user: String,
    /// The text, unchanged.
    pub message: String,
    /// An action ("/me").
    pub emote: bool,
}

/// The layer behind every room.
#[derive(Debug, Clone)]
pub enum Layer {
    /// In-process rooms.
    Memory(MemoryLayer),
}

// The methods are async for the Redis layer, which talks to Redis.
#[allow(clippy::unused_async)]
impl Layer {
    /// An in-process layer delivering through `registry`.
    pub fn memory(registry: Arc<RoomRegistry>, history_len: usize, max_idle_rooms: usize) -> Self {
        Self::Memory(MemoryLayer::new(registry, history_len, max_idle_rooms))
    }

    /// Joins `user` to `room`: subscribes in `format`, records presence,
    /// announces the join, and returns the welcome's contents.
    pub async fn join(
        &self,
        room: &RoomName,
        user: &str,
        format: Format,
        since: Option<u64>,
    ) -> Result<Joined, LayerError> {
        match self {
            Self::Memory(layer) => Ok(layer.join(room, user, format, since)),
        }
    }

    /// Leaves: drops the subscription, updates presence, announces the
    /// departure when it was this name's last connection.
    pub async fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        match self {
            Self::Memory(layer) => layer.leave(room, user, subscription),
        }
    }

    /// Publishes a chat message to every member of `room`.
    pub async fn publish(&self, room: &RoomName, draft: Draft) -> Result<(), LayerError> {
        match self {
            Self::Memory(layer) => {
                layer.publish(room, draft);
                Ok(())
            }
        }
    }

    /// Renames one connection of `old` to `new` and announces it.
    pub async fn rename(&self, room: &RoomName, old: &str, new: &str) -> Result<(), LayerError> {
        match self {
            Self::Memory(layer) => {
                layer.rename(room, old, new);
                Ok(())
            }
        }
    }

    /// Active rooms with their member counts, busiest first.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, LayerError> {
        match self {
            Self::Memory(layer) => Ok(layer.rooms()),
        }
    }

    /// Rooms whose state (history, presence) the layer holds in this process.
    pub fn stored_rooms(&self) -> usize {
        match self {
            Self::Memory(layer) => layer.stored_rooms(),
        }
    }
}

/// Serialises a chat event in both formats: the typed event, and the plain
/// frame byte for byte as Channels would send it.
pub(crate) fn chat_frames(event: &ChatEvent) -> Frames {
    let events = chat_protocol::ServerEvent::Chat(event.clone()).to_json();
    let plain = chat_protocol::PlainMessage::encode(&event.message);
    Frames {
        id: event.id,
        events: Utf8Bytes::from(events),
        plain: Some(Utf8Bytes::from(plain)),
    }
}

/// Serialises an event that only typed clients see.
pub(crate) fn events_only(event: &chat_protocol::ServerEvent) -> Frames {
    Frames {
        id: 0,
        events: Utf8Bytes::from(event.to_json()),
        plain: None,
    }
}
