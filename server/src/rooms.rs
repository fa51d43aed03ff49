//! The local room registry: which sockets on this instance are in which
//! room, and the fan-out that hands one published event to all of them.
//!
//! Each room with local members has two `tokio::sync::broadcast` channels,
//! one per wire format (typed events, and the tutorial's plain frames). An
//! event is serialised once per format by the publisher and every
//! subscriber receives a cheap clone of the same bytes: no per-subscriber
//! encoding or copy. A broadcast channel is a ring buffer with a cursor per
//! receiver, so it doubles as every subscriber's bounded outbound queue: a
//! subscriber that falls `capacity` messages behind gets `Lagged` and is
//! disconnected, and the ring never grows.
//!
//! The registry knows nothing of ids, history or other instances: that is
//! the layer's job (see `layer`). A room is created by its first local
//! subscriber and dropped with its last.

use std::collections::HashMap;
use std::sync::Mutex;

use chat_protocol::RoomName;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One event ready for the wire, shared by every subscriber of a format.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The chat message id, or 0 for events that have none (join, leave,
    /// nick). Sessions use it to skip what the welcome's history already held.
    pub id: u64,
    /// The serialised JSON text frame.
    pub frame: Utf8Bytes,
}

/// The two serialisations of one published event.
#[derive(Debug, Clone)]
pub struct Frames {
    /// See [`Delivery::id`].
    pub id: u64,
    /// The typed event, for clients that opted in.
    pub events: Utf8Bytes,
    /// `{"message": text}` for plain clients; `None` for events plain
    /// clients never see (join, leave, nick).
    pub plain: Option<Utf8Bytes>,
}

/// Which stream a subscriber reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// Typed events (`chat.v2` subprotocol or `?v=2`).
    Events,
    /// The tutorial's plain frames.
    Plain,
}

/// A room's local fan-out.
#[derive(Debug)]
struct LocalRoom {
    events: broadcast::Sender<Delivery>,
    plain: broadcast::Sender<Delivery>,
}

impl LocalRoom {
    fn subscribers(&self) -> usize {
        self.events.receiver_count() + self.plain.receiver_count()
    }
}

/// The local rooms of this instance.
///
/// The lock is a `std::sync::Mutex`: it is held only for map operations and
/// a channel send, never across an `.await`, so an async mutex would only
/// add cost (see mini-redis `db.rs`).
#[derive(Debug)]
pub struct RoomRegistry {
    rooms: Mutex<HashMap<RoomName, LocalRoom>>,
    /// How far a subscriber may fall behind before it is dropped: the
    /// capacity of every room's broadcast ring.
    queue_len: usize,
}

impl RoomRegistry {
    /// An empty registry whose subscribers may fall `queue_len` events behind.
    pub fn new(queue_len: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            queue_len: queue_len.max(1),
        }
    }

    /// Subscribes to `room` in `format`, creating the room if this is its
    /// first local subscriber. Returns the receiver and whether the room
    /// was created.
    pub fn subscribe(
        &self,
        room: &RoomName,
        format: Format,
    ) -> (broadcast::Receiver<Delivery>, bool) {
        let mut rooms = lock(&self.rooms);
        let created = !rooms.contains_key(room);
        let local = rooms.entry(room.clone()).or_insert_with(|| LocalRoom {
            events: broadcast::channel(self.queue_len).0,
            plain: broadcast::channel(self.queue_len).0,
        });
        let receiver = match format {
            Format::Events => local.events.subscribe(),
            Format::Plain => local.plain.subscribe(),
        };
        (receiver, created)
    }

    /// Removes `room` if it has no subscribers left (call after dropping a
    /// receiver). Returns whether it was removed.
    pub fn remove_if_empty(&self, room: &RoomName) -> bool {
        let mut rooms = lock(&self.rooms);
        if rooms
            .get(room)
            .is_some_and(|local| local.subscribers() == 0)
        {
            rooms.remove(room);
            return true;
        }
        false
    }

    /// Hands `frames` to every local subscriber of `room`. Returns how many
    /// subscribers it reached.
    pub fn deliver(&self, room: &RoomName, frames: Frames) -> usize {
        let rooms = lock(&self.rooms);
        let Some(local) = rooms.get(room) else {
            return 0;
        };
        // `send` fails only when there is no receiver, which is fine.
        let mut reached = local
            .events
            .send(Delivery {
                id: frames.id,
                frame: frames.events,
            })
            .unwrap_or(0);
        if let Some(plain) = frames.plain {
            reached += local
                .plain
                .send(Delivery {
                    id: frames.id,
                    frame: plain,
                })
                .unwrap_or(0);
        }
        reached
    }

    /// Local subscribers of `room`.
    pub fn subscribers(&self, room: &RoomName) -> usize {
        lock(&self.rooms)
            .get(room)
            .map_or(0, LocalRoom::subscribers)
    }

    /// Rooms with local subscribers.
    pub fn room_names(&self) -> Vec<RoomName> {
        lock(&self.rooms).keys().cloned().collect()
    }

    /// How many rooms have local subscribers.
    pub fn len(&self) -> usize {
        lock(&self.rooms).len()
    }

    /// Whether no room has local subscribers.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Locks a mutex, recovering from poisoning: the maps stay consistent
/// because no code panics while holding these locks, and one panicking
/// session must not take every other session down with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
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
    fn fans_out_each_format_to_its_subscribers_only() {
        let registry = RoomRegistry::new(8);
        let (mut events, created) = registry.subscribe(&room("a"), Format::Events);
        assert!(created);
        let (mut plain, created) = registry.subscribe(&room("a"), Format::Plain);
        assert!(!created);
        let (mut other, _) = registry.subscribe(&room("b"), Format::Plain);

        assert_eq!(registry.deliver(&room("a"), frames(1, "x")), 2);
        assert_eq!(events.try_recv().unwrap().frame.as_str(), "ex");
        assert_eq!(plain.try_recv().unwrap().frame.as_str(), "px");
        assert!(other.try_recv().is_err());

        // Events plain clients never see.
        let join = Frames {
            id: 0,
            events: "join".into(),
            plain: None,
        };
        assert_eq!(registry.deliver(&room("a"), join), 1);
        assert!(plain.try_recv().is_err());
    }

    #[test]
    fn rooms_are_dropped_with_their_last_subscriber() {
        let registry = RoomRegistry::new(8);
        let (a1, _) = registry.subscribe(&room("a"), Format::Events);
        let (a2, _) = registry.subscribe(&room("a"), Format::Plain);
        drop(a1);
        assert!(!registry.remove_if_empty(&room("a")));
        drop(a2);
        assert!(registry.remove_if_empty(&room("a")));
        assert!(registry.is_empty());
        assert_eq!(registry.deliver(&room("a"), frames(1, "x")), 0);
    }

    #[test]
    fn a_subscriber_that_falls_behind_lags_without_growing_the_queue() {
        let registry = RoomRegistry::new(4);
        let (mut slow, _) = registry.subscribe(&room("a"), Format::Plain);
        let (mut fast, _) = registry.subscribe(&room("a"), Format::Plain);
        for id in 1..=10 {
            registry.deliver(&room("a"), frames(id, &id.to_string()));
            assert_eq!(fast.try_recv().unwrap().id, id);
        }
        assert!(matches!(
            slow.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(6))
        ));
    }
}
