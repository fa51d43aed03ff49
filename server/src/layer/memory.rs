//! The in-process layer: ids, history and presence in this process's
//! memory, delivery straight into the local registry.
//!
//! History is bounded three ways: `--history` messages per room, a byte
//! budget for all rooms together (`--history-memory`), and `--idle-rooms`
//! empty rooms; see `budget`.
//!
//! With `--db`, the [`Store`] keeps every message: a room's state is then
//! loaded from it when the room is (re)created here (its epoch, last id and
//! recent history), each published message is queued for it before being
//! delivered, and memory's history is only a cache of the newest messages.
//! Topics are stored the same way. The cache never serves what retention
//! removes from the store: it holds at most `--retain-messages` per room,
//! and expired messages are dropped from it before a welcome is made.

mod budget;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chat_protocol::{ChatEvent, HistoryQuery, MessagePage, RoomName, RoomSummary};

use budget::{Budget, Eviction};

use super::{
    Draft, Joined, LayerError, NameCounts, Resume, presence_event, rename_events, select_history,
    topic_event,
};
use crate::frames::{Format, chat_frames, events_only};
use crate::metrics::HistoryMetrics;
use crate::names::Identity;
use crate::ring::Subscription;
use crate::rooms::RoomRegistry;
use crate::store::{LoadedRoom, Retention, Store, StoreError};
use crate::sync::lock;

/// How much history the layer keeps.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    /// Messages per room (0: no history).
    pub per_room: usize,
    /// Bytes for all rooms together (see `budget::cost`).
    pub bytes: usize,
    /// Empty rooms whose history is kept.
    pub idle_rooms: usize,
}

/// Per-room state shared by the room's members.
#[derive(Debug)]
struct RoomState {
    /// Names this room's id sequence: the process's epoch and the room's
    /// creation number, so that ids from before a restart (or before the
    /// room was forgotten) are never mistaken for current ones.
    epoch: String,
    /// The id of the latest message (0: none yet).
    last_id: u64,
    /// The latest messages, oldest first, at most `history_len`, each with
    /// the stamp that orders it among every room's messages (for the
    /// budget). Shared with the welcomes that send them.
    history: VecDeque<(u64, Arc<ChatEvent>)>,
    /// Who is here.
    members: NameCounts,
    /// The topic ("" when none); kept as long as the history is.
    topic: String,
    /// When the room last became empty, as a tick of `Rooms::clock`;
    /// `None` while it has members.
    emptied_at: Option<u64>,
}

impl RoomState {
    /// The stamp of the oldest message kept.
    fn oldest(&self) -> Option<u64> {
        self.history.front().map(|(stamp, _)| *stamp)
    }
}

#[derive(Debug)]
struct MemoryInner {
    registry: Arc<RoomRegistry>,
    rooms: Mutex<Rooms>,
    history_len: usize,
    /// Random per process: the first part of every room's epoch.
    process_epoch: u32,
    /// With `--db`: where every message is kept, and rooms are loaded from.
    store: Option<Store>,
    /// With `--db`: what the store removes, which the cache drops too.
    retention: Retention,
}

#[derive(Debug)]
struct Rooms {
    by_name: HashMap<RoomName, RoomState>,
    /// Monotonic counter ordering rooms by when they became empty and
    /// messages by when they were published, and numbering room creations
    /// for epochs.
    clock: u64,
    /// History's bytes, and what to forget when there is too much.
    budget: Budget,
    /// Counts rooms forgotten (removed from `by_name`): a room loaded from
    /// the store while this changed may be stale, and is loaded again.
    forgotten: u64,
}

/// Why a room could not be joined now.
#[derive(Debug)]
pub(super) enum NotReady {
    /// The room must be loaded from the store first.
    NotLoaded,
    /// Refused (the name is taken).
    Refused(LayerError),
}

impl<E: Into<LayerError>> From<E> for NotReady {
    fn from(err: E) -> Self {
        Self::Refused(err.into())
    }
}

/// Why a message was not published.
#[derive(Debug)]
pub(super) enum Unpublished {
    /// The room must be loaded from the store first; here is the draft back.
    NotLoaded(Draft),
    /// The store refused the message; nobody saw it.
    Store(StoreError),
}

impl Rooms {
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Keeps `event` in `room`'s history (at most `history_len`
    /// messages), then forgets what the budget no longer allows.
    fn remember(&mut self, room: &RoomName, event: Arc<ChatEvent>, history_len: usize) {
        let stamp = self.tick();
        let Some(state) = self.by_name.get_mut(room) else {
            return;
        };
        let oldest = state.oldest();
        self.budget.add(budget::cost(&event));
        state.history.push_back((stamp, event));
        if state.history.len() > history_len {
            if let Some((_, gone)) = state.history.pop_front() {
                self.budget.remove(budget::cost(&gone));
            }
        }
        self.budget.oldest_moved(room, oldest, state.oldest());
        self.enforce();
    }

    /// Drops `room`'s oldest message, the one stamped `stamp`.
    fn forget_oldest(&mut self, room: &RoomName, stamp: u64) {
        let Some(state) = self.by_name.get_mut(room) else {
            // Not expected; keeps the books from naming it again.
            self.budget.oldest_moved(room, Some(stamp), None);
            return;
        };
        let front = state.oldest();
        if let Some((_, gone)) = state.history.pop_front() {
            self.budget.remove(budget::cost(&gone));
        }
        if front != Some(stamp) {
            // Not expected; keeps the books from naming it again.
            self.budget.oldest_moved(room, Some(stamp), None);
        }
        self.budget.oldest_moved(room, front, state.oldest());
    }

    /// Drops `room`'s messages stamped before `cutoff_ms` (retention).
    fn expire(&mut self, room: &RoomName, cutoff_ms: u64) {
        loop {
            let expired = self.by_name.get(room).and_then(|state| {
                state
                    .history
                    .front()
                    .filter(|(_, event)| event.ts < cutoff_ms)
                    .map(|(stamp, _)| *stamp)
            });
            match expired {
                Some(stamp) => self.forget_oldest(room, stamp),
                None => return,
            }
        }
    }

    /// Forgets `room` altogether: history, ids, epoch.
    fn forget(&mut self, room: &RoomName) {
        let Some(state) = self.by_name.remove(room) else {
            return;
        };
        self.forgotten += 1;
        let bytes = state.history.iter().map(|(_, e)| budget::cost(e)).sum();
        self.budget.remove(bytes);
        self.budget.oldest_moved(room, state.oldest(), None);
        if let Some(at) = state.emptied_at {
            self.budget.active(at);
        }
    }

    /// Forgets what the budget no longer allows.
    fn enforce(&mut self) {
        while let Some(eviction) = self.budget.next_eviction() {
            match eviction {
                Eviction::Room { at, room } => {
                    // Off the books first, whatever `forget` finds, so
                    // that the loop always ends.
                    self.budget.active(at);
                    self.forget(&room);
                    self.budget.evicted(1, 0);
                }
                Eviction::Oldest { stamp, room } => {
                    self.forget_oldest(&room, stamp);
                    self.budget.evicted(0, 1);
                }
            }
        }
    }

    /// The state of `room`, created (with a fresh epoch) if needed; with a
    /// store, a room not loaded yet is `None`.
    fn entry_if_loaded(
        &mut self,
        room: &RoomName,
        process_epoch: u32,
        has_store: bool,
    ) -> Option<&mut RoomState> {
        if has_store && !self.by_name.contains_key(room) {
            return None;
        }
        Some(self.entry(room, process_epoch))
    }

    /// Adds a room loaded from the store, as an idle room until someone
    /// joins (`join` takes it off the idle list).
    fn insert_loaded(&mut self, room: &RoomName, loaded: LoadedRoom) {
        let mut history = VecDeque::with_capacity(loaded.history.len());
        for event in loaded.history {
            let stamp = self.tick();
            self.budget.add(budget::cost(&event));
            history.push_back((stamp, Arc::new(event)));
        }
        let now = self.tick();
        let state = RoomState {
            epoch: loaded.epoch,
            last_id: loaded.last_id,
            history,
            members: NameCounts::default(),
            emptied_at: Some(now),
            topic: loaded.topic,
        };
        self.budget.oldest_moved(room, None, state.oldest());
        self.by_name.insert(room.clone(), state);
        self.budget.idle(now, room);
    }

    /// The state of `room`, created (with a fresh epoch) if needed.
    fn entry(&mut self, room: &RoomName, process_epoch: u32) -> &mut RoomState {
        if !self.by_name.contains_key(room) {
            self.clock += 1;
            let state = RoomState {
                epoch: format!("{process_epoch:08x}.{}", self.clock),
                last_id: 0,
                history: VecDeque::new(),
                members: NameCounts::default(),
                topic: String::new(),
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
    /// A layer delivering through `registry`, keeping history within
    /// `limits`, reporting its size in `metrics` (the server always goes
    /// through [`MemoryLayer::with_store`]).
    #[cfg(test)]
    pub fn new(
        registry: Arc<RoomRegistry>,
        limits: HistoryLimits,
        metrics: HistoryMetrics,
    ) -> Self {
        Self::with_store(registry, limits, metrics, None)
    }

    /// A layer delivering through `registry`, keeping history within
    /// `limits`, reporting its size in `metrics`, and keeping every
    /// message in `store` too, if any.
    pub fn with_store(
        registry: Arc<RoomRegistry>,
        limits: HistoryLimits,
        metrics: HistoryMetrics,
        store: Option<Store>,
    ) -> Self {
        let rooms = Rooms {
            by_name: HashMap::new(),
            clock: 0,
            budget: Budget::new(limits.bytes, limits.idle_rooms, metrics),
            forgotten: 0,
        };
        let retention = store.as_ref().map(Store::retention).unwrap_or_default();
        // The cache holds no more than the store keeps.
        let history_len = retention.messages.map_or(limits.per_room, |keep| {
            limits
                .per_room
                .min(usize::try_from(keep).unwrap_or(usize::MAX))
        });
        Self {
            inner: Arc::new(MemoryInner {
                registry,
                rooms: Mutex::new(rooms),
                history_len,
                process_epoch: fastrand::u32(..),
                store,
                retention,
            }),
        }
    }

    /// The store behind this layer, if any.
    pub(super) fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// With a store: makes sure `room`'s state is here, loading it from
    /// the store if needed.
    pub(super) async fn load(&self, room: &RoomName) -> Result<(), StoreError> {
        let Some(store) = &self.inner.store else {
            return Ok(());
        };
        loop {
            let forgotten = {
                let rooms = lock(&self.inner.rooms);
                if rooms.by_name.contains_key(room) {
                    return Ok(());
                }
                rooms.forgotten
            };
            let loaded = store.load_room(room, self.inner.history_len).await?;
            let mut rooms = lock(&self.inner.rooms);
            if rooms.by_name.contains_key(room) {
                return Ok(());
            }
            // A room forgotten meanwhile may have had messages after the
            // load read it: load again.
            if rooms.forgotten == forgotten {
                rooms.insert_loaded(room, loaded);
                return Ok(());
            }
        }
    }

    pub(super) fn join(
        &self,
        room: &RoomName,
        user: &str,
        identity: &Identity,
        format: Format,
        resume: Option<&Resume>,
    ) -> Result<Joined, NotReady> {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let rooms = &mut *rooms;
        if let Some(state) = rooms.by_name.get(room) {
            state.members.check(user, identity)?;
        } else if inner.store.is_some() {
            return Err(NotReady::NotLoaded);
        }
        let cutoff = inner.retention.cutoff_ms();
        if cutoff > 0 {
            rooms.expire(room, cutoff);
        }
        let subscription = inner.registry.subscribe(room, format);
        let state = rooms.entry(room, inner.process_epoch);
        let was_idle = state.emptied_at.take();
        let first_of_name = state.members.add(user, identity)?;
        // Only typed clients get a welcome: a plain join costs no copies.
        let (members, history, missed) = match format {
            Format::Events => {
                let history = state.history.iter().map(|(_, e)| Arc::clone(e)).collect();
                let (history, missed) =
                    select_history(history, state.last_id, &state.epoch, resume);
                (
                    state
                        .members
                        .names()
                        .into_iter()
                        .map(str::to_owned)
                        .collect(),
                    history,
                    missed,
                )
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
            topic: Some(state.topic.clone()),
        };
        if let Some(at) = was_idle {
            rooms.budget.active(at);
        }
        if first_of_name {
            inner
                .registry
                .deliver(room, events_only(&presence_event(true, room, user)));
        }
        Ok(joined)
    }

    pub(super) fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        drop(subscription);
        inner.registry.remove_if_empty(room);
        let rooms = &mut *rooms;
        let now = rooms.tick();
        let Some(state) = rooms.by_name.get_mut(room) else {
            return;
        };
        if state.members.remove(user) {
            inner
                .registry
                .deliver(room, events_only(&presence_event(false, room, user)));
        }
        if state.members.is_empty() {
            if state.history.is_empty() && state.topic.is_empty() {
                rooms.forget(room);
            } else {
                state.emptied_at = Some(now);
                rooms.budget.idle(now, room);
                rooms.enforce();
            }
        }
    }

    /// Publishes; with a store, `Unpublished::NotLoaded` until
    /// [`load`](Self::load) has run, and `Unpublished::Store` (nothing
    /// delivered) when the store refuses the message.
    pub(super) fn publish(&self, room: &RoomName, draft: Draft) -> Result<(), Unpublished> {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let has_store = inner.store.is_some();
        let Some(state) = rooms.entry_if_loaded(room, inner.process_epoch, has_store) else {
            return Err(Unpublished::NotLoaded(draft));
        };
        let event = Arc::new(draft.into_event(room, state.last_id + 1));
        // Queued for the store before anyone sees it: a message the store
        // refuses is refused to its sender, never delivered unrecorded.
        if let Some(store) = &inner.store {
            store.append(&event).map_err(Unpublished::Store)?;
        }
        state.last_id += 1;
        // Subscribing takes the rooms lock too, so nobody can start reading
        // a format between the look at who reads what and the delivery.
        inner
            .registry
            .deliver_with(room, |readers| chat_frames(&event, readers));
        if inner.history_len > 0 {
            rooms.remember(room, event, inner.history_len);
        }
        Ok(())
    }

    pub(super) fn rename(
        &self,
        room: &RoomName,
        old: &str,
        new: &str,
        identity: &Identity,
    ) -> Result<(), LayerError> {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        let Some(state) = rooms.by_name.get_mut(room) else {
            return Ok(());
        };
        let (old_gone, new_first) = state.members.rename(old, new, identity)?;
        for event in rename_events(room, old, new, old_gone, new_first) {
            inner.registry.deliver(room, events_only(&event));
        }
        Ok(())
    }

    pub(super) fn name_free(&self, room: &RoomName, name: &str, identity: &Identity) -> bool {
        let rooms = lock(&self.inner.rooms);
        rooms
            .by_name
            .get(room)
            .is_none_or(|state| state.members.check(name, identity).is_ok())
    }

    /// Sets the topic; with a store, stores it first (and refuses, with
    /// nothing announced, when the store refuses).
    pub(super) fn set_topic(
        &self,
        room: &RoomName,
        user: &str,
        topic: String,
    ) -> Result<(), StoreError> {
        let inner = &self.inner;
        let mut rooms = lock(&inner.rooms);
        // With a store, a room is only created by loading it (a fresh
        // entry would restart its ids); members' rooms are loaded.
        let has_store = inner.store.is_some();
        let Some(state) = rooms.entry_if_loaded(room, inner.process_epoch, has_store) else {
            return Ok(());
        };
        if let Some(store) = &inner.store {
            store.set_topic(room, &topic)?;
        }
        state.topic.clone_from(&topic);
        inner
            .registry
            .deliver(room, events_only(&topic_event(room, user, topic)));
        Ok(())
    }

    /// A page of what memory holds of `room` (a room it does not hold
    /// has no messages).
    pub(super) fn history(&self, room: &RoomName, query: &HistoryQuery) -> MessagePage {
        let rooms = lock(&self.inner.rooms);
        rooms
            .by_name
            .get(room)
            .map_or_else(MessagePage::default, |state| {
                query.select(state.history.iter().map(|(_, event)| &**event))
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

    /// Bytes of history held, as the budget counts them.
    #[cfg(test)]
    fn history_bytes(&self) -> usize {
        lock(&self.inner.rooms).budget.used()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> RoomName {
        RoomName::new(name).unwrap()
    }

    fn layer(history: usize, idle: usize) -> (MemoryLayer, Arc<RoomRegistry>) {
        layer_within(history, idle, usize::MAX)
    }

    fn layer_within(history: usize, idle: usize, bytes: usize) -> (MemoryLayer, Arc<RoomRegistry>) {
        let registry = Arc::new(RoomRegistry::new(64, usize::MAX));
        let limits = HistoryLimits {
            per_room: history,
            bytes,
            idle_rooms: idle,
        };
        let layer = MemoryLayer::new(registry.clone(), limits, HistoryMetrics::default());
        (layer, registry)
    }

    /// Every user name its own person, with its own key.
    fn id(user: &str) -> Identity {
        Identity::from_key(&format!("key-of-{user}-0123456789")).unwrap()
    }

    fn join(
        layer: &MemoryLayer,
        room: &RoomName,
        user: &str,
        format: Format,
        resume: Option<&Resume>,
    ) -> Joined {
        layer
            .join(room, user, &id(user), format, resume)
            .expect("the name is free")
    }

    fn say(layer: &MemoryLayer, room_name: &str, text: &str) {
        layer
            .publish(
                &room(room_name),
                Draft {
                    user: "u".into(),
                    message: text.into(),
                    emote: false,
                },
            )
            .unwrap();
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
        let mut joined = join(&layer, &room("a"), "alice", Format::Plain, None);
        for i in 1..=5 {
            say(&layer, "a", &i.to_string());
        }
        for id in 1..=5 {
            assert_eq!(joined.subscription.try_next().unwrap().unwrap().id, id);
        }
        let late = join(&layer, &room("a"), "bob", Format::Events, None);
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
        let keep = join(&layer, &room("a"), "alice", Format::Plain, None);
        for i in 1..=5 {
            say(&layer, "a", &i.to_string());
        }
        let epoch = Some(keep.epoch.clone());
        let resume = |since| Resume {
            since,
            epoch: epoch.clone(),
        };
        let resumed = join(&layer, &room("a"), "bob", Format::Events, Some(&resume(3)));
        assert_eq!(
            resumed.history.iter().map(|e| e.id).collect::<Vec<_>>(),
            vec![4, 5]
        );
        assert_eq!(resumed.missed, 0);
        let far = join(
            &layer,
            &room("a"),
            "carol",
            Format::Events,
            Some(&resume(0)),
        );
        assert_eq!(far.missed, 2);
    }

    #[test]
    fn presence_counts_names_and_announces_first_and_last() {
        let (layer, registry) = layer(3, 10);
        let mut watcher = join(&layer, &room("a"), "watcher", Format::Events, None);
        assert!(next_frame(&mut watcher).unwrap().contains("watcher joined"));
        let one = join(&layer, &room("a"), "alice", Format::Plain, None);
        let two = join(&layer, &room("a"), "alice", Format::Plain, None);
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
        let mut watcher = join(&layer, &room("a"), "watcher", Format::Events, None);
        let _one = join(&layer, &room("a"), "alice", Format::Plain, None);
        let _two = join(&layer, &room("a"), "alice", Format::Plain, None);
        while next_frame(&mut watcher).is_some() {}
        layer
            .rename(&room("a"), "alice", "alicia", &id("alice"))
            .unwrap();
        let event = next_frame(&mut watcher).unwrap();
        assert!(
            event.contains("\"type\":\"join\"") && event.contains("alicia"),
            "{event}"
        );
        let names = join(&layer, &room("a"), "x", Format::Events, None).members;
        assert!(names.contains(&"alice".to_owned()) && names.contains(&"alicia".to_owned()));
    }

    #[test]
    fn idle_rooms_keep_history_up_to_a_bound_and_a_new_room_has_a_new_epoch() {
        let (layer, registry) = layer(3, 2);
        let mut epochs = Vec::new();
        for name in ["a", "b", "c"] {
            let joined = join(&layer, &room(name), "alice", Format::Plain, None);
            epochs.push(joined.epoch.clone());
            say(&layer, name, "hello");
            layer.leave(&room(name), "alice", joined.subscription);
        }
        assert!(registry.is_empty());
        assert_eq!(layer.stored_rooms(), 2, "the oldest idle room was evicted");
        let back = join(&layer, &room("c"), "bob", Format::Events, None);
        assert_eq!(back.history.len(), 1);
        assert_eq!(back.epoch, epochs[2]);
        let gone = join(&layer, &room("a"), "bob", Format::Events, None);
        assert!(gone.history.is_empty());
        assert_ne!(gone.epoch, epochs[0], "a forgotten room starts a new epoch");
    }

    #[test]
    fn the_history_budget_forgets_idle_rooms_first_then_the_oldest_messages() {
        let text = "x".repeat(1000);
        let one = budget::cost(
            &Draft {
                user: "u".into(),
                message: text.clone(),
                emote: false,
            }
            .into_event(&room("a"), 1),
        );
        // Room for ten messages in all.
        let (layer, _) = layer_within(100, 100, one * 10);
        let fill = |name: &str, count: usize| {
            for _ in 0..count {
                say(&layer, name, &text);
                assert!(layer.history_bytes() <= one * 10);
            }
        };
        let idle = join(&layer, &room("i"), "u", Format::Plain, None);
        fill("i", 4);
        layer.leave(&room("i"), "u", idle.subscription);
        let a = join(&layer, &room("a"), "u", Format::Plain, None);
        let b = join(&layer, &room("b"), "u", Format::Plain, None);
        fill("a", 3);
        fill("b", 3);
        assert_eq!(layer.stored_rooms(), 3, "within the budget: all kept");
        fill("a", 1);
        assert_eq!(layer.stored_rooms(), 2, "over it: the idle room goes first");
        assert_eq!(layer.history_bytes(), one * 7);
        fill("b", 4);
        let history = |name: &str| {
            join(&layer, &room(name), "reader", Format::Events, None)
                .history
                .iter()
                .map(|e| e.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(history("a"), [2, 3, 4], "then the oldest message anywhere");
        assert_eq!(history("b"), [1, 2, 3, 4, 5, 6, 7]);
        drop((a, b));
    }

    #[test]
    fn a_name_held_by_someone_else_is_refused_on_join_and_rename() {
        let (layer, registry) = layer(3, 10);
        let mut watcher = join(&layer, &room("a"), "watcher", Format::Events, None);
        let alice = join(&layer, &room("a"), "alice", Format::Events, None);
        let bob = join(&layer, &room("a"), "bob", Format::Events, None);
        while next_frame(&mut watcher).is_some() {}

        let impostor = layer.join(&room("a"), "Alice", &id("bob"), Format::Events, None);
        assert!(matches!(
            impostor,
            Err(NotReady::Refused(LayerError::NameTaken(_)))
        ));
        assert_eq!(
            registry.subscribers(&room("a")),
            3,
            "no subscription left behind"
        );
        let renamed = layer.rename(&room("a"), "bob", "alice", &id("bob"));
        assert!(matches!(renamed, Err(LayerError::NameTaken(_))));
        assert_eq!(next_frame(&mut watcher), None, "nothing announced");

        let second_tab = layer.join(&room("a"), "alice", &id("alice"), Format::Events, None);
        assert!(second_tab.is_ok(), "the same key shares the name");
        assert_eq!(next_frame(&mut watcher), None, "a second tab is not a join");
        let other_room = layer.join(&room("b"), "alice", &id("bob"), Format::Events, None);
        assert!(other_room.is_ok(), "names are held per room");

        layer.leave(&room("a"), "alice", alice.subscription);
        layer.leave(&room("a"), "alice", second_tab.unwrap().subscription);
        assert!(next_frame(&mut watcher).unwrap().contains("alice left"));
        layer
            .rename(&room("a"), "bob", "alice", &id("bob"))
            .expect("free once alice is gone");
        drop(bob);
    }

    #[test]
    fn expired_messages_leave_the_cache_and_the_budget() {
        let (layer, _) = layer(10, 10);
        let a = room("a");
        let _alice = join(&layer, &a, "alice", Format::Plain, None);
        let stamped = |id, ts| {
            let mut event = Draft {
                user: "u".into(),
                message: "x".repeat(100),
                emote: false,
            }
            .into_event(&a, id);
            event.ts = ts;
            Arc::new(event)
        };
        let one = budget::cost(&stamped(1, 0));
        {
            let mut rooms = lock(&layer.inner.rooms);
            for (id, ts) in [(1, 1000), (2, 2000), (3, 3000)] {
                rooms.remember(&a, stamped(id, ts), 10);
            }
            rooms.expire(&a, 2500);
        }
        assert_eq!(layer.history_bytes(), one);
        let bob = join(&layer, &a, "bob", Format::Events, None);
        assert_eq!(bob.history.iter().map(|e| e.id).collect::<Vec<_>>(), [3]);
    }

    #[test]
    fn topics_are_announced_kept_and_welcomed() {
        let (layer, _) = layer(3, 10);
        let mut alice = join(&layer, &room("a"), "alice", Format::Events, None);
        assert_eq!(alice.topic.as_deref(), Some(""));
        while next_frame(&mut alice).is_some() {}
        layer
            .set_topic(&room("a"), "alice", "release on Friday".into())
            .unwrap();
        let event = next_frame(&mut alice).unwrap();
        assert!(
            event.contains(r#""type":"topic""#) && event.contains("release on Friday"),
            "{event}"
        );
        layer.leave(&room("a"), "alice", alice.subscription);
        assert_eq!(layer.stored_rooms(), 1, "a room with a topic is kept");
        let bob = join(&layer, &room("a"), "bob", Format::Events, None);
        assert_eq!(bob.topic.as_deref(), Some("release on Friday"));
        layer.set_topic(&room("a"), "bob", String::new()).unwrap();
        let cleared = join(&layer, &room("a"), "carol", Format::Events, None);
        assert_eq!(cleared.topic.as_deref(), Some(""));
    }
}
