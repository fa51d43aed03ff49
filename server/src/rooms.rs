//! The local room registry: which rooms have subscribers on this instance,
//! and the fan-out that hands one published event to all of them.
//!
//! Each room with local subscribers has one [`Ring`]. An event is
//! serialised once per format by the publisher (see `frames`; a chat
//! message goes through [`RoomRegistry::deliver_with`], so that only the
//! formats someone reads are made) and stored once in the
//! ring; every subscriber reads a cheap clone of the same bytes, with no
//! per-subscriber encoding or copy. The ring doubles as every subscriber's
//! bounded outbound queue (see `ring`).
//!
//! The registry knows nothing of ids, history or other instances: that is
//! the layer's job (see `layer`). A room is created by its first local
//! subscriber and dropped with its last.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chat_protocol::RoomName;

use crate::frames::{Format, Frames};
use crate::ring::{OutCounters, Ring, Subscription};
use crate::sync::lock;

/// The local rooms of this instance.
///
/// The lock is a `std::sync::Mutex`: it is held only for a map operation,
/// never across an `.await`, so an async mutex would only add cost (see
/// mini-redis `db.rs`). Publishing clones the room's ring handle and
/// releases the lock before touching the ring.
#[derive(Debug)]
pub struct RoomRegistry {
    rooms: Mutex<HashMap<RoomName, Arc<Ring>>>,
    /// How far a subscriber may fall behind, in events, before it is dropped.
    queue_len: usize,
    /// How far a subscriber may fall behind, in bytes, before it is dropped.
    queue_bytes: usize,
    /// What the rooms' write passes count.
    counters: OutCounters,
}

impl RoomRegistry {
    /// An empty registry whose subscribers may fall `queue_len` events, or
    /// `queue_bytes` bytes, behind.
    pub fn new(queue_len: usize, queue_bytes: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            queue_len: queue_len.max(1),
            queue_bytes,
            counters: OutCounters::default(),
        }
    }

    /// Counts what the rooms' write passes write in `counters` (the
    /// server's `messages_out` and `bytes_out`).
    #[must_use]
    pub fn counting(mut self, counters: OutCounters) -> Self {
        self.counters = counters;
        self
    }

    /// Subscribes to `room` in `format`, creating the room if this is its
    /// first local subscriber.
    pub fn subscribe(&self, room: &RoomName, format: Format) -> Subscription {
        lock(&self.rooms)
            .entry(room.clone())
            .or_insert_with(|| {
                Ring::counted(self.queue_len, self.queue_bytes, self.counters.clone())
            })
            .subscribe(format)
    }

    /// Removes `room` if it has no subscribers left (call after dropping a
    /// subscription). Returns whether it was removed.
    pub fn remove_if_empty(&self, room: &RoomName) -> bool {
        let mut rooms = lock(&self.rooms);
        if rooms.get(room).is_some_and(|ring| ring.subscribers() == 0) {
            rooms.remove(room);
            return true;
        }
        false
    }

    /// Hands `frames` to every local subscriber of `room`. Returns how many
    /// subscribers will read it.
    pub fn deliver(&self, room: &RoomName, frames: Frames) -> usize {
        let ring = lock(&self.rooms).get(room).cloned();
        ring.map_or(0, |ring| ring.publish(frames))
    }

    /// Hands the frames `build` makes to every local subscriber of `room`,
    /// with one look-up of the room. `build` is told whether anyone reads
    /// typed events, and plain frames, so that only those are serialised;
    /// it is not called when the room has no local subscribers. Returns how
    /// many subscribers will read the frames.
    pub fn deliver_with(
        &self,
        room: &RoomName,
        build: impl FnOnce((bool, bool)) -> Frames,
    ) -> usize {
        let Some(ring) = lock(&self.rooms).get(room).cloned() else {
            return 0;
        };
        ring.publish(build(ring.formats_read()))
    }

    /// Local subscribers of `room`.
    pub fn subscribers(&self, room: &RoomName) -> usize {
        lock(&self.rooms)
            .get(room)
            .map_or(0, |ring| ring.subscribers())
    }

    /// How many rooms have local subscribers.
    pub fn len(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Whether no room has local subscribers.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    fn frames(id: u64, text: &str) -> Frames {
        Frames {
            id,
            events: format!("e{text}").into(),
            plain: Some(format!("p{text}").into()),
        }
    }

    #[test]
    fn delivers_to_the_room_only() {
        let registry = RoomRegistry::new(8, usize::MAX);
        let mut events = registry.subscribe(&room("a"), Format::Events);
        assert_eq!(registry.len(), 1, "the first subscriber creates the room");
        let mut plain = registry.subscribe(&room("a"), Format::Plain);
        assert_eq!(registry.len(), 1, "a second subscriber joins it");
        let mut other = registry.subscribe(&room("b"), Format::Plain);

        assert_eq!(registry.deliver(&room("a"), frames(1, "x")), 2);
        assert_eq!(events.try_next().unwrap().unwrap().frame.as_str(), "ex");
        assert_eq!(plain.try_next().unwrap().unwrap().frame.as_str(), "px");
        assert!(other.try_next().unwrap().is_none());
    }

    #[test]
    fn rooms_are_dropped_with_their_last_subscriber() {
        let registry = RoomRegistry::new(8, usize::MAX);
        let a1 = registry.subscribe(&room("a"), Format::Events);
        let a2 = registry.subscribe(&room("a"), Format::Plain);
        drop(a1);
        assert!(!registry.remove_if_empty(&room("a")));
        drop(a2);
        assert!(registry.remove_if_empty(&room("a")));
        assert!(registry.is_empty());
        assert_eq!(registry.deliver(&room("a"), frames(1, "x")), 0);
    }
}
