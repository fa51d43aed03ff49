//! The in-memory history's byte budget (`--history-memory`): every room's
//! history is counted in bytes against one server-wide limit. Over it, the
//! rooms that have been empty the longest are forgotten first, then the
//! oldest messages anywhere; the empty rooms kept are also capped in number
//! (`--idle-rooms`).
//!
//! The budget only keeps the books and picks what goes; the layer removes
//! it (see `Rooms::enforce` in `memory.rs`). Everything here runs under the
//! layer's lock, in O(log rooms) per message.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chat_protocol::{ChatEvent, RoomName};
use tracing::warn;

use crate::metrics::HistoryMetrics;

/// What a message of history costs besides its text, sender and room: the
/// event itself, its reference count and its slot in the room's queue,
/// rounded up for the allocator.
const ENTRY_OVERHEAD: usize = 160;

/// How often, at most, the log says that history was forgotten.
const NOTE_EVERY: Duration = Duration::from_secs(60);

/// The bytes one message of history costs.
pub(super) fn cost(event: &ChatEvent) -> usize {
    event.message.len() + event.user.len() + event.room.as_str().len() + ENTRY_OVERHEAD
}

/// What to remove next to get back within the budget.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Eviction {
    /// Forget this empty room (empty since `at`) altogether: history, ids,
    /// epoch.
    Room {
        /// When it became empty.
        at: u64,
        /// The room.
        room: RoomName,
    },
    /// Drop this room's oldest message (stamped `stamp`).
    Oldest {
        /// When it was published.
        stamp: u64,
        /// The room.
        room: RoomName,
    },
}

/// The books of the history budget.
#[derive(Debug)]
pub(super) struct Budget {
    /// The most bytes all rooms' history may hold together.
    limit: usize,
    /// The most empty rooms whose history is kept.
    max_idle_rooms: usize,
    /// Bytes all rooms' history holds now.
    used: usize,
    /// Empty rooms with history, by when they became empty.
    idle: BTreeMap<u64, RoomName>,
    /// Each room's oldest message, by when it was published: the first
    /// entry is the oldest message anywhere.
    oldest: BTreeSet<(u64, RoomName)>,
    metrics: HistoryMetrics,
    /// When the log last said that history was forgotten.
    noted_at: Option<Instant>,
    /// Rooms and messages forgotten since then.
    unnoted: (u64, u64),
}

impl Budget {
    pub(super) fn new(limit: usize, max_idle_rooms: usize, metrics: HistoryMetrics) -> Self {
        Self {
            limit,
            max_idle_rooms,
            used: 0,
            idle: BTreeMap::new(),
            oldest: BTreeSet::new(),
            metrics,
            noted_at: None,
            unnoted: (0, 0),
        }
    }

    /// Bytes held now.
    #[cfg(test)]
    pub(super) fn used(&self) -> usize {
        self.used
    }

    /// `bytes` more are held.
    pub(super) fn add(&mut self, bytes: usize) {
        self.used += bytes;
        self.publish_gauge();
    }

    /// `bytes` fewer are held.
    pub(super) fn remove(&mut self, bytes: usize) {
        self.used = self.used.saturating_sub(bytes);
        self.publish_gauge();
    }

    /// `room`'s oldest message is now the one stamped `new` (`None`: the
    /// room has no history), instead of `old`.
    pub(super) fn oldest_moved(&mut self, room: &RoomName, old: Option<u64>, new: Option<u64>) {
        if old == new {
            return;
        }
        if let Some(old) = old {
            self.oldest.remove(&(old, room.clone()));
        }
        if let Some(new) = new {
            self.oldest.insert((new, room.clone()));
        }
    }

    /// `room` became empty at `at` (and has history).
    pub(super) fn idle(&mut self, at: u64, room: &RoomName) {
        self.idle.insert(at, room.clone());
    }

    /// The room that became empty at `at` has members again, or is gone.
    pub(super) fn active(&mut self, at: u64) {
        self.idle.remove(&at);
    }

    /// What to remove next, if anything: empty rooms beyond
    /// `--idle-rooms`, then, while over the byte limit, the rooms empty the
    /// longest, then the oldest message anywhere.
    pub(super) fn next_eviction(&self) -> Option<Eviction> {
        if self.idle.len() > self.max_idle_rooms || self.used > self.limit {
            if let Some((&at, room)) = self.idle.first_key_value() {
                let room = room.clone();
                return Some(Eviction::Room { at, room });
            }
        }
        if self.used > self.limit {
            if let Some((stamp, room)) = self.oldest.first() {
                let (stamp, room) = (*stamp, room.clone());
                return Some(Eviction::Oldest { stamp, room });
            }
        }
        None
    }

    /// Counts what an eviction removed, and says so in the log at most
    /// once a minute.
    pub(super) fn evicted(&mut self, rooms: u64, messages: u64) {
        self.metrics.forgotten_rooms.inc_by(rooms);
        self.metrics.forgotten_messages.inc_by(messages);
        self.unnoted.0 += rooms;
        self.unnoted.1 += messages;
        let now = Instant::now();
        if self
            .noted_at
            .is_some_and(|at| now.duration_since(at) < NOTE_EVERY)
        {
            return;
        }
        let (rooms, messages) = std::mem::take(&mut self.unnoted);
        self.noted_at = Some(now);
        warn!(
            rooms,
            messages,
            history_bytes = self.used,
            limit = self.limit,
            max_idle_rooms = self.max_idle_rooms,
            "history forgotten to stay within --history-memory and --idle-rooms: \
             the history of the rooms empty the longest first, then the oldest messages \
             (raise the limits to keep more)"
        );
    }

    fn publish_gauge(&self) {
        self.metrics
            .bytes
            .set(i64::try_from(self.used).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    #[test]
    fn idle_rooms_go_first_then_the_oldest_message_anywhere() {
        let mut budget = Budget::new(100, 10, HistoryMetrics::default());
        budget.add(60);
        budget.oldest_moved(&room("a"), None, Some(1));
        budget.add(60);
        budget.oldest_moved(&room("b"), None, Some(2));
        budget.idle(7, &room("b"));
        assert_eq!(
            budget.next_eviction(),
            Some(Eviction::Room {
                at: 7,
                room: room("b")
            })
        );
        budget.active(7);
        assert_eq!(
            budget.next_eviction(),
            Some(Eviction::Oldest {
                stamp: 1,
                room: room("a")
            }),
            "no idle room: the oldest message"
        );
        budget.remove(60);
        assert_eq!(budget.next_eviction(), None, "within the budget");
    }

    #[test]
    fn idle_rooms_are_capped_in_number_even_within_the_bytes() {
        let mut budget = Budget::new(usize::MAX, 1, HistoryMetrics::default());
        budget.idle(1, &room("a"));
        assert_eq!(budget.next_eviction(), None);
        budget.idle(2, &room("b"));
        assert_eq!(
            budget.next_eviction(),
            Some(Eviction::Room {
                at: 1,
                room: room("a")
            })
        );
    }
}
