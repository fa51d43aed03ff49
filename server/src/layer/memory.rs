//! The in-process layer: ids, history and presence in this process's
//! memory, delivery straight into the local registry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chat_protocol::{ChatEvent, HistoryQuery, MessagePage, RoomName, RoomSummary};

use super::{
    Draft, Joined, NameCounts, Resume, chat_frames, events_only, presence_event, rename_events,
    select_history,
};
use crate::ring::{Format, Subscription};
use crate::rooms::{RoomRegistry, lock};

/// Per-room state shared by the room's members.
#[derive(Debug)]
struct RoomState {
    /// Names this room's id sequence: the process's epoch and the room's
    /// creation number, so that ids from before a restart (or before the
    /// room was forgotten) are never mistaken for current ones.
    epoch: String,
    /// The id of the latest message (0: none yet).
    last_id: u64,
    /// The latest messages, oldest first, at most `history_len`.
    history: VecDeque<ChatEvent>,
    /// Who is here.
    members: NameCounts,
    /// When the room last became empty, as a tick of `Rooms::clock`;
    /// `None` while it has members.
    emptied_at: Option<u64>,
}

#[derive(Debug)]
struct MemoryInner {
    registry: Arc<RoomRegistry>,
    rooms: Mutex<Rooms>,
    history_len: usize,
    /// How many empty rooms keep their history.
    max_idle_rooms: usize,
    /// Random per process: the first part of every room's epoch.
    process_epoch: u32,
}

#[derive(Debug, Default)]
struct Rooms {
    by_name: HashMap<RoomName, RoomState>,
    /// Rooms with no members but with history.
    idle: usize,
    /// Monotonic counter ordering rooms by when they became empty, and
    /// numbering room creations for epochs.
    clock: u64,
}

impl Rooms {
    /// The state of `room`, created (with a fresh epoch) if needed.
    fn entry(&mut self, room: &RoomName, process_epoch: u32) -> &mut RoomState {
        if !self.by_name.contains_key(room) {
            self.clock += 1;
            let state = RoomState {
                epoch: format!("{process_epoch:08x}.{}", self.clock),
                last_id: 0,
                history: VecDeque::new(),
                members: NameCounts::default(),
                emptied_at: None,
            };
            self.by_name.insert(room.clone(), state);
        }
        // Inserted just above when missing.
        self.by_name.get_mut(room).unwrap_or_else(|| unreachable!())
    }
}

/// In-process rooms. Cheap to clone.
///
/// Lock order: the room-state lock is taken before the registry's lock, and
/// a message is delivered while the room-state lock is held, so that ids
/// reach every subscriber in the order they were assigned.
#[derive(Debug, Clone)]
pub struct MemoryLayer {
    inner: Arc<MemoryInner>,
}

impl MemoryLayer {
    /// A layer delivering through `registry`, keeping `history_len` messages
    /// per room, and the history of at most `max_idle_rooms` empty rooms.
    pub fn new(registry: Arc<RoomRegistry>, history_len: usize, max_idle_rooms: usize) -> Self {
        Self {
            inner: Arc::new(MemoryInner {
                registry,
                rooms: Mutex::new(Rooms::default()),
                history_len,
                max_idle_rooms,
                process_epoch: fastrand::u32(..),
            }),
        }
    }

    pub(super) fn join(
        &self,
        room: &RoomName,
        user: &str,
        format: Format,
        resume: Option<&Resume>,
    ) -> Joined {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let subscription = inner.registry.subscribe(room, format);
        let rooms = &mut *rooms;
        let state = rooms.entry(room, inner.process_epoch);
        let was_idle = state.emptied_at.take().is_some();
        let first_of_name = state.members.add(user);
        // Only typed clients get a welcome: a plain join costs no copies.
        let (members, history, missed) = match format {
            Format::Events => {
                let history = state.history.iter().cloned().collect();
                let (history, missed) =
                    select_history(history, state.last_id, &state.epoch, resume);
                (state.members.names().cloned().collect(), history, missed)
            }
            Format::Plain => (Vec::new(), Vec::new(), 0),
        };
        let joined = Joined {
            subscription,
            members,
            history,
            last_id: state.last_id,
            missed,
            epoch: state.epoch.clone(),
            notice: None,
        };
        if was_idle {
            rooms.idle -= 1;
        }
        if first_of_name {
            inner
                .registry
                .deliver(room, events_only(&presence_event(true, room, user)));
        }
        joined
    }

    pub(super) fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        drop(subscription);
        inner.registry.remove_if_empty(room);
        let rooms = &mut *rooms;
        let Some(state) = rooms.by_name.get_mut(room) else {
            return;
        };
        if state.members.remove(user) {
            inner
                .registry
                .deliver(room, events_only(&presence_event(false, room, user)));
        }
        if state.members.is_empty() {
            if state.history.is_empty() {
                rooms.by_name.remove(room);
            } else {
                rooms.clock += 1;
                state.emptied_at = Some(rooms.clock);
                rooms.idle += 1;
                evict_idle_rooms(rooms, inner.max_idle_rooms);
            }
        }
    }

    pub(super) fn publish(&self, room: &RoomName, draft: Draft) {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let state = rooms.entry(room, inner.process_epoch);
        state.last_id += 1;
        let event = draft.into_event(room, state.last_id);
        // Subscribing takes the rooms lock too, so nobody can start reading
        // a format between the look at who reads what and the delivery.
        inner
            .registry
            .deliver_with(room, |readers| chat_frames(&event, readers));
        if inner.history_len > 0 {
            if state.history.len() == inner.history_len {
                state.history.pop_front();
            }
            state.history.push_back(event);
        }
    }

    pub(super) fn rename(&self, room: &RoomName, old: &str, new: &str) {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let Some(state) = rooms.by_name.get_mut(room) else {
            return;
        };
        let old_gone = state.members.remove(old);
        let new_first = state.members.add(new);
        for event in rename_events(room, old, new, old_gone, new_first) {
            inner.registry.deliver(room, events_only(&event));
        }
    }

    /// A page of what memory holds of `room` (a room it does not hold
    /// has no messages).
    pub(super) fn history(&self, room: &RoomName, query: &HistoryQuery) -> MessagePage {
        let rooms = lock(&self.inner.rooms);
        rooms
            .by_name
            .get(room)
            .map_or_else(MessagePage::default, |state| {
                query.select(state.history.iter())
            })
    }

    pub(super) fn rooms(&self) -> Vec<RoomSummary> {
        let rooms = lock(&self.inner.rooms);
        rooms
            .by_name
            .iter()
            .filter(|(_, state)| !state.members.is_empty())
            .map(|(name, state)| RoomSummary {
                name: name.clone(),
                members: state.members.len() as u64,
            })
            .collect()
    }

    pub(super) fn stored_rooms(&self) -> usize {
        lock(&self.inner.rooms).by_name.len()
    }
}

/// Forgets the history of the longest-empty rooms beyond `max_idle_rooms`.
fn evict_idle_rooms(rooms: &mut Rooms, max_idle_rooms: usize) {
    while rooms.idle > max_idle_rooms {
        let oldest = rooms
            .by_name
            .iter()
            .filter_map(|(name, state)| state.emptied_at.map(|at| (at, name)))
            .min()
            .map(|(_, name)| name.clone());
        let Some(oldest) = oldest else { break };
        rooms.by_name.remove(&oldest);
        rooms.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    fn layer(history: usize, idle: usize) -> (MemoryLayer, Arc<RoomRegistry>) {
        let registry = Arc::new(RoomRegistry::new(64));
        (MemoryLayer::new(registry.clone(), history, idle), registry)
    }

    fn say(layer: &MemoryLayer, room_name: &str, text: &str) {
        layer.publish(
            &room(room_name),
            Draft {
                user: "u".into(),
                message: text.into(),
                emote: false,
            },
        );
    }

    fn next_frame(joined: &mut Joined) -> Option<String> {
        joined
            .subscription
            .try_next()
            .unwrap()
            .map(|d| d.frame.to_string())
    }

    #[test]
    fn ids_increase_and_history_is_bounded() {
        let (layer, _) = layer(3, 10);
        let mut joined = layer.join(&room("a"), "alice", Format::Plain, None);
        for i in 1..=5 {
            say(&layer, "a", &i.to_string());
        }
        for id in 1..=5 {
            assert_eq!(joined.subscription.try_next().unwrap().unwrap().id, id);
        }
        let late = layer.join(&room("a"), "bob", Format::Events, None);
        assert_eq!(
            late.history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(late.last_id, 5);
        assert_eq!(late.members, vec!["alice".to_owned(), "bob".to_owned()]);
        assert_eq!(late.epoch, joined.epoch);
    }

    #[test]
    fn resume_returns_exactly_what_was_missed() {
        let (layer, _) = layer(3, 10);
        let keep = layer.join(&room("a"), "alice", Format::Plain, None);
        for i in 1..=5 {
            say(&layer, "a", &i.to_string());
        }
        let epoch = Some(keep.epoch.clone());
        let resume = |since| Resume {
            since,
            epoch: epoch.clone(),
        };
        let resumed = layer.join(&room("a"), "bob", Format::Events, Some(&resume(3)));
        assert_eq!(
            resumed.history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(resumed.missed, 0);
        let far = layer.join(&room("a"), "carol", Format::Events, Some(&resume(0)));
        assert_eq!(far.missed, 2);
    }

    #[test]
    fn presence_counts_names_and_announces_first_and_last() {
        let (layer, registry) = layer(3, 10);
        let mut watcher = layer.join(&room("a"), "watcher", Format::Events, None);
        assert!(next_frame(&mut watcher).unwrap().contains("watcher joined"));
        let one = layer.join(&room("a"), "alice", Format::Plain, None);
        let two = layer.join(&room("a"), "alice", Format::Plain, None);
        assert!(next_frame(&mut watcher).unwrap().contains("alice joined"));
        assert_eq!(
            next_frame(&mut watcher),
            None,
            "a second tab is not a second join"
        );
        assert_eq!(layer.rooms()[0].members, 2);
        layer.leave(&room("a"), "alice", one.subscription);
        assert_eq!(next_frame(&mut watcher), None);
        layer.leave(&room("a"), "alice", two.subscription);
        assert!(next_frame(&mut watcher).unwrap().contains("alice left"));
        layer.leave(&room("a"), "watcher", watcher.subscription);
        assert!(registry.is_empty());
        assert!(layer.rooms().is_empty());
        assert_eq!(
            layer.stored_rooms(),
            0,
            "a room without history is forgotten at once"
        );
    }

    #[test]
    fn renaming_one_of_two_tabs_is_a_join_not_a_nick() {
        let (layer, _) = layer(3, 10);
        let mut watcher = layer.join(&room("a"), "watcher", Format::Events, None);
        let _one = layer.join(&room("a"), "alice", Format::Plain, None);
        let _two = layer.join(&room("a"), "alice", Format::Plain, None);
        while next_frame(&mut watcher).is_some() {}
        layer.rename(&room("a"), "alice", "alicia");
        let event = next_frame(&mut watcher).unwrap();
        assert!(
            event.contains("\"type\":\"join\"") && event.contains("alicia"),
            "{event}"
        );
        let names = layer.join(&room("a"), "x", Format::Events, None).members;
        assert!(names.contains(&"alice".to_owned()) && names.contains(&"alicia".to_owned()));
    }

    #[test]
    fn idle_rooms_keep_history_up_to_a_bound_and_a_new_room_has_a_new_epoch() {
        let (layer, registry) = layer(3, 2);
        let mut epochs = Vec::new();
        for name in ["a", "b", "c"] {
            let joined = layer.join(&room(name), "alice", Format::Plain, None);
            epochs.push(joined.epoch.clone());
            say(&layer, name, "hello");
            layer.leave(&room(name), "alice", joined.subscription);
        }
        assert!(registry.is_empty());
        assert_eq!(layer.stored_rooms(), 2, "the oldest idle room was evicted");
        let back = layer.join(&room("c"), "bob", Format::Events, None);
        assert_eq!(back.history.len(), 1);
        assert_eq!(back.epoch, epochs[2]);
        let gone = layer.join(&room("a"), "bob", Format::Events, None);
        assert!(gone.history.is_empty());
        assert_ne!(gone.epoch, epochs[0], "a forgotten room starts a new epoch");
    }
}
