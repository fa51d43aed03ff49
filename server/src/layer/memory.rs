//! The in-process layer: ids, history and presence in this process's
//! memory, delivery straight into the local registry.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chat_protocol::{
    ChatEvent, NickChange, Presence, RoomName, RoomSummary, ServerEvent, unix_millis,
};

use super::{Draft, Joined, chat_frames, events_only};
use crate::ring::{Format, Subscription};
use crate::rooms::{RoomRegistry, lock};

/// Per-room state shared by the room's members.
#[derive(Debug, Default)]
struct RoomState {
    /// The id of the latest message (0: none yet).
    last_id: u64,
    /// The latest messages, oldest first, at most `history_len`.
    history: VecDeque<ChatEvent>,
    /// Display name -> number of connections using it.
    members: BTreeMap<String, usize>,
    /// When the room last became empty, as a tick of `MemoryInner::clock`;
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
}

#[derive(Debug, Default)]
struct Rooms {
    by_name: HashMap<RoomName, RoomState>,
    /// Rooms with no members but with history.
    idle: usize,
    /// Monotonic counter ordering rooms by when they became empty.
    clock: u64,
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
            }),
        }
    }

    pub(super) fn join(
        &self,
        room: &RoomName,
        user: &str,
        format: Format,
        since: Option<u64>,
    ) -> Joined {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let (subscription, _) = inner.registry.subscribe(room, format);
        let rooms = &mut *rooms;
        let state = rooms.by_name.entry(room.clone()).or_default();
        if state.emptied_at.take().is_some() {
            rooms.idle -= 1;
        }
        let count = state.members.entry(user.to_owned()).or_default();
        *count += 1;
        let first_of_name = *count == 1;
        // Only typed clients get a welcome: a plain join costs no copies.
        let (members, history, missed) = match format {
            Format::Events => {
                let (history, missed) = recent_history(&state.history, state.last_id, since);
                (state.members.keys().cloned().collect(), history, missed)
            }
            Format::Plain => (Vec::new(), Vec::new(), 0),
        };
        let last_id = state.last_id;
        if first_of_name {
            let join = ServerEvent::Join(Presence {
                message: format!("{user} joined"),
                user: user.to_owned(),
                room: room.clone(),
                ts: unix_millis(),
            });
            inner.registry.deliver(room, events_only(&join));
        }
        Joined {
            subscription,
            members,
            history,
            last_id,
            missed,
        }
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
        let last_of_name = match state.members.get_mut(user) {
            Some(count) if *count > 1 => {
                *count -= 1;
                false
            }
            Some(_) => {
                state.members.remove(user);
                true
            }
            None => false,
        };
        if last_of_name {
            let leave = ServerEvent::Leave(Presence {
                message: format!("{user} left"),
                user: user.to_owned(),
                room: room.clone(),
                ts: unix_millis(),
            });
            inner.registry.deliver(room, events_only(&leave));
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
        let state = rooms.by_name.entry(room.clone()).or_default();
        state.last_id += 1;
        let event = ChatEvent {
            message: draft.message,
            user: draft.user,
            room: room.clone(),
            id: state.last_id,
            ts: unix_millis(),
            emote: draft.emote,
        };
        let frames = chat_frames(&event);
        if inner.history_len > 0 {
            if state.history.len() == inner.history_len {
                state.history.pop_front();
            }
            state.history.push_back(event);
        }
        inner.registry.deliver(room, frames);
    }

    pub(super) fn rename(&self, room: &RoomName, old: &str, new: &str) {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let Some(state) = rooms.by_name.get_mut(room) else {
            return;
        };
        match state.members.get_mut(old) {
            Some(count) if *count > 1 => *count -= 1,
            Some(_) => {
                state.members.remove(old);
            }
            None => {}
        }
        *state.members.entry(new.to_owned()).or_default() += 1;
        let nick = ServerEvent::Nick(NickChange {
            message: format!("{old} is now known as {new}"),
            user: new.to_owned(),
            old: old.to_owned(),
            room: room.clone(),
            ts: unix_millis(),
        });
        inner.registry.deliver(room, events_only(&nick));
    }

    pub(super) fn rooms(&self) -> Vec<RoomSummary> {
        let rooms = lock(&self.inner.rooms);
        let mut list: Vec<RoomSummary> = rooms
            .by_name
            .iter()
            .filter(|(_, state)| !state.members.is_empty())
            .map(|(name, state)| RoomSummary {
                name: name.clone(),
                members: state.members.len() as u64,
            })
            .collect();
        list.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        list
    }

    pub(super) fn stored_rooms(&self) -> usize {
        lock(&self.inner.rooms).by_name.len()
    }
}

/// The history a joiner gets: the whole (bounded) history, or with `since`
/// the messages after it, plus how many of those are gone.
fn recent_history(
    history: &VecDeque<ChatEvent>,
    last_id: u64,
    since: Option<u64>,
) -> (Vec<ChatEvent>, u64) {
    let Some(since) = since else {
        return (history.iter().cloned().collect(), 0);
    };
    if since >= last_id {
        return (Vec::new(), 0);
    }
    let kept: Vec<ChatEvent> = history.iter().filter(|e| e.id > since).cloned().collect();
    let first_kept = kept.first().map_or(last_id + 1, |e| e.id);
    (kept, first_kept.saturating_sub(since + 1))
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
    }

    #[test]
    fn since_returns_exactly_what_was_missed() {
        let (layer, _) = layer(3, 10);
        let _keep = layer.join(&room("a"), "alice", Format::Plain, None);
        for i in 1..=5 {
            say(&layer, "a", &i.to_string());
        }
        let resumed = layer.join(&room("a"), "bob", Format::Events, Some(3));
        assert_eq!(
            resumed.history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(resumed.missed, 0);
        let far = layer.join(&room("a"), "carol", Format::Events, Some(0));
        assert_eq!(
            far.history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(far.missed, 2);
        let current = layer.join(&room("a"), "dave", Format::Events, Some(5));
        assert!(current.history.is_empty());
        assert_eq!(current.missed, 0);
    }

    #[test]
    fn presence_counts_names_and_announces_first_and_last() {
        let (layer, registry) = layer(3, 10);
        let mut watcher = layer.join(&room("a"), "watcher", Format::Events, None);
        let _ = watcher.subscription.try_next(); // own join
        let one = layer.join(&room("a"), "alice", Format::Plain, None);
        let two = layer.join(&room("a"), "alice", Format::Plain, None);
        assert!(
            watcher
                .subscription
                .try_next()
                .unwrap()
                .unwrap()
                .frame
                .contains("alice joined")
        );
        assert!(
            watcher.subscription.try_next().unwrap().is_none(),
            "a second tab is not a second join"
        );
        assert_eq!(layer.rooms()[0].members, 2);
        layer.leave(&room("a"), "alice", one.subscription);
        assert!(watcher.subscription.try_next().unwrap().is_none());
        layer.leave(&room("a"), "alice", two.subscription);
        assert!(
            watcher
                .subscription
                .try_next()
                .unwrap()
                .unwrap()
                .frame
                .contains("alice left")
        );
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
    fn idle_rooms_keep_history_up_to_a_bound() {
        let (layer, registry) = layer(3, 2);
        for name in ["a", "b", "c"] {
            let joined = layer.join(&room(name), "alice", Format::Plain, None);
            say(&layer, name, "hello");
            layer.leave(&room(name), "alice", joined.subscription);
        }
        assert!(registry.is_empty());
        assert_eq!(layer.stored_rooms(), 2, "the oldest idle room was evicted");
        let back = layer.join(&room("c"), "bob", Format::Events, None);
        assert_eq!(back.history.len(), 1);
        let gone = layer.join(&room("a"), "bob", Format::Events, None);
        assert!(gone.history.is_empty());
    }
}
