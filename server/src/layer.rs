//! The channel layer: how an event published in a room reaches every
//! member on every instance, and where the state that instances must agree
//! on lives (message ids, history, presence).
//!
//! * [`MemoryLayer`]: one instance, everything in-process (the default).
//! * [`RedisLayer`]: several instances share rooms through Redis.
//!
//! Every layer delivers through the local [`RoomRegistry`], so a session
//! only ever reads its room's ring, whatever the layer.
//!
//! The layer is an enum rather than a trait object: the backend is picked
//! once at start, and a `match` keeps the hot path free of boxing and
//! dynamic dispatch.

mod memory;
mod redis;

use std::sync::Arc;

use chat_protocol::{
    ChatEvent, HISTORY_LIMIT_MAX, HistoryQuery, MessagePage, NickChange, Presence, RoomName,
    RoomSummary, ServerEvent, TopicEvent, unix_millis,
};
use tracing::warn;

pub use memory::{HistoryLimits, MemoryLayer};
pub use redis::{
    DEFAULT_HISTORY_BYTES, DEFAULT_REDIS_TIMEOUT_MS, DEFAULT_ROOM_TTL, RedisConfig, RedisLayer,
};

pub(crate) use crate::names::NameCounts;
use crate::names::{Identity, NameTaken};

use crate::frames::Format;
use crate::ring::Subscription;
use crate::store::{Store, StoreError};
use memory::{NotReady, Unpublished};

/// What made the layer fail, kept for the logs.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why the layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LayerError {
    /// The shared backend cannot be reached now; try again later.
    #[error("the message bus is unavailable: {reason}")]
    Unavailable {
        /// What a client is told.
        reason: String,
        /// What failed, when something did.
        #[source]
        source: Option<Cause>,
    },
    /// The backend accepted a message, but whether it reached every member
    /// is not known (or it is known that it did not): the sender is told,
    /// and may send it again.
    #[error("the message may not have reached every member: {reason}")]
    Unconfirmed {
        /// What a client is told.
        reason: String,
    },
    /// The backend could not be set up at start: what was being set up
    /// (the cause, such as Redis's answer, is the source).
    #[error("{reason}")]
    Setup {
        /// What could not be set up, and what to check.
        reason: String,
        /// What failed, when something did.
        #[source]
        source: Option<Cause>,
    },
    /// The display name is held in the room by someone else.
    #[error(transparent)]
    NameTaken(#[from] NameTaken),
}

impl LayerError {
    /// The backend is unavailable, for `reason` (told to the client).
    pub(crate) fn unavailable(reason: impl Into<String>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: None,
        }
    }

    /// The backend is unavailable because of `source`; the client is told
    /// `reason`.
    pub(crate) fn unavailable_because(reason: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Unavailable {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }

    /// A message the backend accepted may not have reached every member,
    /// for `reason` (told to the client).
    pub(crate) fn unconfirmed(reason: impl Into<String>) -> Self {
        Self::Unconfirmed {
            reason: reason.into(),
        }
    }

    /// The backend could not be set up: `reason` says what.
    pub(crate) fn setup(reason: impl Into<String>) -> Self {
        Self::Setup {
            reason: reason.into(),
            source: None,
        }
    }

    /// The backend could not be set up because of `source`.
    pub(crate) fn setup_because(reason: impl Into<String>, source: impl Into<Cause>) -> Self {
        Self::Setup {
            reason: reason.into(),
            source: Some(source.into()),
        }
    }
}

/// A reconnecting client's place in a room's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    /// The last message id the client saw.
    pub since: u64,
    /// The epoch that id belongs to, if the client knows it.
    pub epoch: Option<String>,
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
    /// clients only). Shared with the layer's store, not copied: a welcome
    /// that a client is slow to read holds references, not a copy.
    pub history: Vec<Arc<ChatEvent>>,
    /// The room's latest message id at the time of joining.
    pub last_id: u64,
    /// With `since`: messages after it that history no longer holds.
    pub missed: u64,
    /// The epoch of the room's id sequence.
    pub epoch: String,
    /// Something the joiner should be told (e.g. history is unavailable).
    pub notice: Option<String>,
    /// The room's topic ("" when none is set; `None` when the layer could
    /// not read it).
    pub topic: Option<String>,
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

impl Draft {
    /// The chat event this draft becomes in `room` with message id `id`,
    /// stamped with the time now.
    fn into_event(self, room: &RoomName, id: u64) -> ChatEvent {
        ChatEvent {
            message: self.message,
            user: self.user,
            room: room.clone(),
            id,
            ts: unix_millis(),
            emote: self.emote,
        }
    }
}

/// The layer's state, for `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Which layer.
    pub layer: &'static str,
    /// Whether the layer can deliver now.
    pub ok: bool,
    /// What is wrong, when something is.
    pub detail: Option<String>,
}

/// The layer behind every room.
#[derive(Debug, Clone)]
pub enum Layer {
    /// In-process rooms.
    Memory(MemoryLayer),
    /// Rooms shared through Redis.
    Redis(RedisLayer),
}

impl Layer {
    /// Joins `user` (as `identity`, see [`crate::names`]) to `room`:
    /// subscribes in `format`, records presence, announces the join, and
    /// returns the welcome's contents; or refuses with
    /// [`LayerError::NameTaken`] when someone else holds the name there.
    ///
    /// Safe to cancel: the caller (an upgrade handler, which hyper drops
    /// when the client hangs up) may go away while a Redis join is waiting.
    /// That join runs in a task of its own and, if nobody is waiting for it
    /// any more, leaves again, so no half-done join keeps a name present.
    pub async fn join(
        &self,
        room: &RoomName,
        user: &str,
        identity: &Identity,
        format: Format,
        resume: Option<Resume>,
    ) -> Result<Joined, LayerError> {
        match self {
            Self::Memory(layer) => {
                for _ in 0..LOAD_TRIES {
                    match layer.join(room, user, identity, format, resume.as_ref()) {
                        Ok(joined) => {
                            return match (layer.store(), &resume) {
                                (Some(store), Some(resume)) if joined.missed > 0 => {
                                    let since = resume.since;
                                    catch_up(layer, store, room, user, joined, since).await
                                }
                                _ => Ok(joined),
                            };
                        }
                        Err(NotReady::Refused(err)) => return Err(err),
                        Err(NotReady::NotLoaded) => {
                            layer.load(room).await.map_err(store_unavailable)?;
                        }
                    }
                }
                Err(LayerError::unavailable(
                    "the room could not be loaded from the message store",
                ))
            }
            Self::Redis(layer) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (layer, room, user) = (layer.clone(), room.clone(), user.to_owned());
                let identity = *identity;
                tokio::spawn(async move {
                    let joined = layer
                        .join(&room, &user, &identity, format, resume.as_ref())
                        .await;
                    if let Err(Ok(joined)) = tx.send(joined) {
                        layer.leave(&room, &user, joined.subscription).await;
                    }
                });
                rx.await.map_err(|err| {
                    LayerError::unavailable_because("the join did not complete", err)
                })?
            }
        }
    }

    /// Leaves: drops the subscription, updates presence, announces the
    /// departure when it was this name's last connection.
    pub async fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        match self {
            Self::Memory(layer) => layer.leave(room, user, subscription),
            Self::Redis(layer) => layer.leave(room, user, subscription).await,
        }
    }

    /// Publishes a chat message to every member of `room`.
    pub async fn publish(&self, room: &RoomName, draft: Draft) -> Result<(), LayerError> {
        match self {
            Self::Memory(layer) => {
                let mut draft = draft;
                for _ in 0..LOAD_TRIES {
                    match layer.publish(room, draft) {
                        Ok(()) => return Ok(()),
                        Err(Unpublished::Store(err)) => return Err(store_unavailable(err)),
                        Err(Unpublished::NotLoaded(back)) => {
                            draft = back;
                            layer.load(room).await.map_err(store_unavailable)?;
                        }
                    }
                }
                Err(LayerError::unavailable(
                    "the room could not be loaded from the message store",
                ))
            }
            Self::Redis(layer) => layer.publish(room, draft).await,
        }
    }

    /// Renames one connection of `old` (as `identity`) to `new` and
    /// announces it; refuses with [`LayerError::NameTaken`] when someone
    /// else holds `new` in the room.
    pub async fn rename(
        &self,
        room: &RoomName,
        old: &str,
        new: &str,
        identity: &Identity,
    ) -> Result<(), LayerError> {
        match self {
            Self::Memory(layer) => layer.rename(room, old, new, identity),
            Self::Redis(layer) => layer.rename(room, old, new, identity).await,
        }
    }

    /// Whether `identity` may use `name` in `room` now (nobody else holds it).
    pub async fn name_free(
        &self,
        room: &RoomName,
        name: &str,
        identity: &Identity,
    ) -> Result<bool, LayerError> {
        match self {
            Self::Memory(layer) => Ok(layer.name_free(room, name, identity)),
            Self::Redis(layer) => layer.name_free(room, name, identity).await,
        }
    }

    /// Sets the room's topic (`""` clears it), keeps it with the room's
    /// history, and tells every member.
    pub async fn set_topic(
        &self,
        room: &RoomName,
        user: &str,
        topic: String,
    ) -> Result<(), LayerError> {
        match self {
            Self::Memory(layer) => layer
                .set_topic(room, user, topic)
                .map_err(store_unavailable),
            Self::Redis(layer) => layer.set_topic(room, user, topic).await,
        }
    }

    /// A page of `room`'s stored messages (oldest first): what the layer
    /// holds, walked back or forward and searched as `query` says.
    pub async fn history(
        &self,
        room: &RoomName,
        query: &HistoryQuery,
    ) -> Result<MessagePage, LayerError> {
        match self {
            Self::Memory(layer) => match layer.store() {
                Some(store) => store.page(room, query).await.map_err(store_unavailable),
                None => Ok(layer.history(room, query)),
            },
            Self::Redis(layer) => layer.history(room, query).await,
        }
    }

    /// Active rooms with their member counts, busiest first.
    pub async fn rooms(&self) -> Result<Vec<RoomSummary>, LayerError> {
        let mut list = match self {
            Self::Memory(layer) => layer.rooms(),
            Self::Redis(layer) => layer.rooms().await?,
        };
        // The busiest first, then by name.
        list.sort_by(|a, b| b.members.cmp(&a.members).then_with(|| a.name.cmp(&b.name)));
        Ok(list)
    }

    /// Whether the layer can deliver now.
    pub fn health(&self) -> Health {
        match self {
            Self::Memory(layer) => {
                let failing = layer.store().and_then(Store::failing);
                Health {
                    layer: "memory",
                    ok: failing.is_none(),
                    detail: failing
                        .map(|reason| format!("the message store (--db) cannot write: {reason}")),
                }
            }
            Self::Redis(layer) => layer.health(),
        }
    }

    /// Rooms whose state (history, presence) the layer holds in this process.
    pub fn stored_rooms(&self) -> usize {
        match self {
            Self::Memory(layer) => layer.stored_rooms(),
            Self::Redis(layer) => layer.stored_rooms(),
        }
    }
}

/// A resuming joiner's welcome, with what the memory cache no longer held
/// of what it missed read back from the store: up to a page
/// ([`HISTORY_LIMIT_MAX`] messages, [`crate::history::PAGE_MAX_BYTES`]),
/// the newest of them, so that `missed` counts only the ids before them.
///
/// Runs in a task of its own: a caller that goes away while the store is
/// read (the client hung up) must not leave a half-done join present, so
/// the task leaves again when nobody takes the result.
async fn catch_up(
    layer: &MemoryLayer,
    store: &Store,
    room: &RoomName,
    user: &str,
    joined: Joined,
    since: u64,
) -> Result<Joined, LayerError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let (layer, store, room, user) = (layer.clone(), store.clone(), room.clone(), user.to_owned());
    tokio::spawn(async move {
        let mut joined = joined;
        fill_from_store(&store, &room, &mut joined, since).await;
        if let Err(joined) = tx.send(joined) {
            layer.leave(&room, &user, joined.subscription);
        }
    });
    rx.await
        .map_err(|err| LayerError::unavailable_because("the join did not complete", err))
}

/// Puts the newest stored messages between `since` and the first one
/// `joined` holds in front of them, and counts as `missed` only the ids
/// still not covered. A store that cannot answer leaves `joined` as it is
/// (the client is told what it missed, as without a store).
async fn fill_from_store(store: &Store, room: &RoomName, joined: &mut Joined, since: u64) {
    let first_held = joined.history.first().map_or(joined.last_id + 1, |e| e.id);
    let retention = store.retention();
    let room_left = retention.messages.map_or(u64::MAX, |keep| {
        keep.saturating_sub(joined.history.len() as u64)
    });
    let limit = u32::try_from(room_left.min(u64::from(HISTORY_LIMIT_MAX))).unwrap_or(0);
    if limit == 0 {
        return;
    }
    let query = HistoryQuery::new()
        .after(since)
        .before(first_held)
        .limit(limit);
    let mut page = match store.page(room, &query).await {
        Ok(page) => page,
        Err(err) => {
            warn!(%room, %err, "a resuming client's missed messages could not be read from the store");
            return;
        }
    };
    crate::history::cap_bytes(&mut page, false);
    let cutoff = retention.cutoff_ms();
    page.messages.retain(|event| event.ts >= cutoff);
    let Some(first) = page.messages.first() else {
        return;
    };
    joined.missed = first.id.saturating_sub(since + 1);
    let held = std::mem::take(&mut joined.history);
    joined.history = page
        .messages
        .into_iter()
        .map(Arc::new)
        .chain(held)
        .collect();
}

/// How often a join or publish loads a room from the store before giving
/// up (only a room forgotten again at once needs a second try).
const LOAD_TRIES: usize = 4;

/// The store's refusal as the layer's: the message was not delivered.
fn store_unavailable(err: StoreError) -> LayerError {
    LayerError::unavailable_because(err.to_string(), err)
}

impl Layer {
    /// Commits what the store has queued and closes it cleanly (a no-op
    /// without `--db`). Called once the sessions have ended.
    pub async fn close(&self) {
        if let Self::Memory(layer) = self {
            if let Some(store) = layer.store() {
                store.close().await;
            }
        }
    }
}

/// A join or leave notice.
pub(crate) fn presence_event(joined: bool, room: &RoomName, user: &str) -> ServerEvent {
    let presence = Presence {
        message: format!("{user} {}", if joined { "joined" } else { "left" }),
        user: user.to_owned(),
        room: room.clone(),
        ts: unix_millis(),
    };
    if joined {
        ServerEvent::Join(presence)
    } else {
        ServerEvent::Leave(presence)
    }
}

/// The event telling a room its topic was set (or cleared) by `user`.
pub(crate) fn topic_event(room: &RoomName, user: &str, topic: String) -> ServerEvent {
    let message = if topic.is_empty() {
        format!("{user} cleared the topic")
    } else {
        format!("{user} set the topic: {topic}")
    };
    ServerEvent::Topic(TopicEvent {
        message,
        topic,
        user: user.to_owned(),
        room: room.clone(),
        ts: unix_millis(),
    })
}

/// What a rename looks like to the room. A connection renamed from `old`
/// to `new`; `old_gone` says no connection uses `old` any more,
/// `new_first` that none used `new` before. When another tab still uses
/// the old name, the room sees a join of the new one rather than a nick
/// change that would wrongly take the old name off everyone's list.
pub(crate) fn rename_events(
    room: &RoomName,
    old: &str,
    new: &str,
    old_gone: bool,
    new_first: bool,
) -> Vec<ServerEvent> {
    match (old_gone, new_first) {
        (true, true) => vec![ServerEvent::Nick(NickChange {
            message: format!("{old} is now known as {new}"),
            user: new.to_owned(),
            old: old.to_owned(),
            room: room.clone(),
            ts: unix_millis(),
        })],
        (true, false) => vec![presence_event(false, room, old)],
        (false, true) => vec![presence_event(true, room, new)],
        (false, false) => Vec::new(),
    }
}

/// The history a joiner gets from `history` (oldest first): all of it,
/// or with a resume point in this epoch the messages after it, plus how
/// many of those are gone.
pub(crate) fn select_history<E: Into<Arc<ChatEvent>>>(
    history: Vec<E>,
    last_id: u64,
    epoch: &str,
    resume: Option<&Resume>,
) -> (Vec<Arc<ChatEvent>>, u64) {
    let history = history.into_iter().map(Into::into);
    let Some(resume) = resume else {
        return (history.collect(), 0);
    };
    if resume.epoch.as_deref().is_some_and(|e| e != epoch) {
        // Ids from another epoch mean nothing here: start afresh.
        return (history.collect(), 0);
    }
    if resume.since >= last_id {
        return (Vec::new(), 0);
    }
    let kept: Vec<Arc<ChatEvent>> = history.filter(|e| e.id > resume.since).collect();
    let first_kept = kept.first().map_or(last_id + 1, |e| e.id);
    (kept, first_kept.saturating_sub(resume.since + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: u64) -> ChatEvent {
        ChatEvent {
            message: id.to_string(),
            user: "u".into(),
            room: RoomName::new("r").unwrap(),
            id,
            ts: 0,
            emote: false,
        }
    }

    fn ids(events: &[Arc<ChatEvent>]) -> Vec<u64> {
        events.iter().map(|e| e.id).collect()
    }

    #[test]
    fn history_selection_resumes_within_an_epoch_only() {
        let history: Vec<ChatEvent> = (3..=5).map(chat).collect();
        let resume = |since, epoch: Option<&str>| Resume {
            since,
            epoch: epoch.map(str::to_owned),
        };
        let (all, missed) = select_history(history.clone(), 5, "e", None);
        assert_eq!((ids(&all), missed), (vec![3, 4, 5], 0));
        let (after, missed) = select_history(history.clone(), 5, "e", Some(&resume(3, Some("e"))));
        assert_eq!((ids(&after), missed), (vec![4, 5], 0));
        let (gap, missed) = select_history(history.clone(), 5, "e", Some(&resume(0, None)));
        assert_eq!((ids(&gap), missed), (vec![3, 4, 5], 2));
        let (none, missed) = select_history(history.clone(), 5, "e", Some(&resume(5, Some("e"))));
        assert_eq!((ids(&none), missed), (vec![], 0));
        let (reset, missed) = select_history(history, 5, "e", Some(&resume(9, Some("old"))));
        assert_eq!(
            (ids(&reset), missed),
            (vec![3, 4, 5], 0),
            "another epoch: everything, afresh"
        );
    }

    #[test]
    fn renames_keep_every_members_list_right() {
        let room = RoomName::new("r").unwrap();
        let kinds = |events: Vec<ServerEvent>| {
            events
                .iter()
                .map(|e| match e {
                    ServerEvent::Nick(_) => "nick",
                    ServerEvent::Join(_) => "join",
                    ServerEvent::Leave(_) => "leave",
                    _ => "other",
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(kinds(rename_events(&room, "a", "b", true, true)), ["nick"]);
        assert_eq!(kinds(rename_events(&room, "a", "b", false, true)), ["join"]);
        assert_eq!(
            kinds(rename_events(&room, "a", "b", true, false)),
            ["leave"]
        );
        assert!(rename_events(&room, "a", "b", false, false).is_empty());
    }
}
