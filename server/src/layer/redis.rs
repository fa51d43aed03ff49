//! The Redis layer: several `chat-server` instances behind a load balancer
//! share rooms, ids, history and presence through one Redis.
//!
//! Keys, under the configured prefix `P`:
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:seq:{room}` | string | the room's last message id (`INCR`) |
//! | `P:epoch:{room}` | string | names the id sequence; new when the sequence starts again |
//! | `P:history:{room}` | list | the last N chat events as JSON, oldest first |
//! | `P:presence:{room}` | sorted set | `{node}:{name}` scored by expiry (unix ms) |
//! | `P:rooms` | sorted set | rooms with members, scored by expiry (unix ms) |
//!
//! Room keys expire after `room_ttl` without a message. A message is
//! published by one Lua script that allocates the id, appends to history
//! and publishes on the room's channel `P:room:{room}`, atomically, so ids
//! reach every instance in order. The payload is serialised once, by the
//! publisher, in both wire formats: `{id}\n{typed event}\n{plain frame}`.
//!
//! Each instance holds one Redis subscription per room that has local
//! members, on one dedicated pub/sub connection, and fans out locally
//! through the registry; every instance, the publisher's included,
//! delivers from that subscription, so all members see one order. The
//! pump task reconnects with capped backoff and resubscribes every room
//! that has local members. Presence entries are refreshed by a heartbeat,
//! so a crashed instance's members expire within `presence_ttl`.
//!
//! The layer in files, one concern each:
//!
//! * this file: the layer's operations (connect, join, leave, publish,
//!   rename, the room list, health);
//! * `keys`: every key and channel name, the Lua scripts, the envelope;
//! * `pump`: the pub/sub connection and the delivery of what it carries;
//! * `presence`: presence entries and their heartbeat.

mod keys;
mod presence;
mod pump;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{ChatEvent, RoomName, RoomSummary, ServerEvent, unix_millis};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, Script};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use self::keys::{
    Keys, PUBLISH_LUA, SNAPSHOT_LUA, envelope, presence_member, split_at_id, unique_names,
};
use self::pump::SubCommand;
use super::{Draft, Health, Joined, LayerError, NameCounts, Resume, rename_events, select_history};
use crate::ring::{Format, Subscription};
use crate::rooms::{RoomRegistry, lock};

/// How to reach Redis and how to use it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`.
    pub url: String,
    /// Prefix of every key and channel, so several deployments can share a Redis.
    pub prefix: String,
    /// How long a presence entry lives without a heartbeat: the bound on
    /// how long a crashed instance's members stay listed.
    pub presence_ttl: Duration,
    /// How long a room's ids and history outlive its last message.
    pub room_ttl: Duration,
}

impl RedisConfig {
    /// Settings for `url` with the defaults: prefix `chat`, presence
    /// entries living 15 s, rooms 7 days.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "chat".to_owned(),
            presence_ttl: Duration::from_secs(15),
            room_ttl: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Reconnect delays of the pub/sub pump: from this...
const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// ...doubling up to this, so traffic resumes within about a second of
/// Redis coming back.
const RECONNECT_MAX: Duration = Duration::from_millis(800);
/// Longest wait for any one Redis command or connection attempt.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a join waits for its room's subscription to be confirmed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

#[derive(Debug)]
struct Inner {
    registry: Arc<RoomRegistry>,
    /// Commands: a multiplexed connection that reconnects by itself.
    conn: ConnectionManager,
    keys: Keys,
    /// This instance, in presence entries.
    node: String,
    history_len: usize,
    config: RedisConfig,
    /// Rooms with local members, and who they are.
    local: Mutex<HashMap<RoomName, NameCounts>>,
    /// To the pump, which owns the pub/sub connection.
    subscriptions: mpsc::UnboundedSender<SubCommand>,
    /// Whether the pub/sub connection is up (and commands answered).
    up: AtomicBool,
    /// What went wrong last, for `/healthz`.
    last_error: Mutex<Option<String>>,
    publish_script: Script,
    snapshot_script: Script,
}

/// Rooms shared through Redis. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisLayer {
    inner: Arc<Inner>,
}

impl RedisLayer {
    /// Connects to Redis, starts the pub/sub pump and the presence
    /// heartbeat (both stop on `shutdown`), and waits until the pub/sub
    /// connection is up.
    ///
    /// # Errors
    ///
    /// [`LayerError::Setup`] when the URL is invalid or Redis cannot be
    /// reached: the server should not start half-working.
    pub async fn connect(
        config: RedisConfig,
        registry: Arc<RoomRegistry>,
        history_len: usize,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, LayerError> {
        let client = Client::open(config.url.as_str()).map_err(|err| {
            LayerError::Setup(format!(
                "invalid Redis URL {:?}: {err}; expected redis://HOST:PORT/DB",
                redact(&config.url)
            ))
        })?;
        let where_ = redact(&config.url);
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(COMMAND_TIMEOUT))
            .set_min_delay(RECONNECT_MIN)
            .set_max_delay(RECONNECT_MAX)
            .set_number_of_retries(2);
        let cannot_reach = |err: &dyn std::fmt::Display| {
            LayerError::Setup(format!(
                "cannot reach Redis at {where_}: {err}; is redis-server running there?"
            ))
        };
        let mut conn = tokio::time::timeout(
            COMMAND_TIMEOUT,
            client.get_connection_manager_with_config(manager_config),
        )
        .await
        .map_err(|_| cannot_reach(&"no answer"))?
        .map_err(|err| cannot_reach(&err))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|err| cannot_reach(&err))?;

        let (subscriptions, commands) = mpsc::unbounded_channel();
        let layer = Self {
            inner: Arc::new(Inner {
                registry,
                conn,
                keys: Keys::new(&config.prefix),
                node: format!("{:016x}", fastrand::u64(..)),
                history_len,
                config,
                local: Mutex::new(HashMap::new()),
                subscriptions,
                up: AtomicBool::new(false),
                last_error: Mutex::new(None),
                publish_script: Script::new(PUBLISH_LUA),
                snapshot_script: Script::new(SNAPSHOT_LUA),
            }),
        };
        let (ready_tx, ready) = oneshot::channel();
        tracker.spawn(
            layer
                .clone()
                .pump(client, commands, shutdown.clone(), ready_tx),
        );
        tracker.spawn(layer.clone().heartbeat(shutdown.clone()));
        tokio::time::timeout(COMMAND_TIMEOUT, ready)
            .await
            .map_err(|_| cannot_reach(&"the pub/sub connection did not come up"))?
            .map_err(|_| cannot_reach(&"the pub/sub connection did not come up"))?;
        info!(redis = %where_, node = %layer.inner.node, "sharing rooms through Redis");
        Ok(layer)
    }

    pub(super) async fn join(
        &self,
        room: &RoomName,
        user: &str,
        format: Format,
        resume: Option<&Resume>,
    ) -> Joined {
        let inner = &self.inner;
        let subscription = inner.registry.subscribe(room, format);
        let (first_in_room, first_of_name) = {
            let mut local = lock(&inner.local);
            let names = local.entry(room.clone()).or_default();
            let first_in_room = names.is_empty();
            (first_in_room, names.add(user))
        };
        if first_in_room {
            self.subscribe_room(room).await;
        }
        if first_of_name {
            self.announce(room, user, true).await;
        }
        if format == Format::Plain {
            // No welcome: nothing to read.
            return Joined {
                subscription,
                members: Vec::new(),
                history: Vec::new(),
                last_id: 0,
                missed: 0,
                epoch: String::new(),
                notice: None,
            };
        }
        match self.snapshot(room).await {
            Ok(snapshot) => {
                let (history, missed) =
                    select_history(snapshot.history, snapshot.last_id, &snapshot.epoch, resume);
                Joined {
                    subscription,
                    members: snapshot.members,
                    history,
                    last_id: snapshot.last_id,
                    missed,
                    epoch: snapshot.epoch,
                    notice: None,
                }
            }
            Err(err) => {
                warn!(%room, %err, "no history or member list for a joiner: Redis is unavailable");
                Joined {
                    subscription,
                    members: vec![user.to_owned()],
                    history: Vec::new(),
                    last_id: 0,
                    missed: 0,
                    epoch: String::new(),
                    notice: Some(
                        "the room's history and member list are unavailable right now \
                         (the server cannot reach Redis); live messages will resume by themselves"
                            .to_owned(),
                    ),
                }
            }
        }
    }

    pub(super) async fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        let inner = &self.inner;
        drop(subscription);
        inner.registry.remove_if_empty(room);
        let (last_of_name, last_in_room) = {
            let mut local = lock(&inner.local);
            match local.get_mut(room) {
                Some(names) => {
                    let last_of_name = names.remove(user);
                    let last_in_room = names.is_empty();
                    if last_in_room {
                        local.remove(room);
                    }
                    (last_of_name, last_in_room)
                }
                None => (false, false),
            }
        };
        if last_of_name {
            self.announce(room, user, false).await;
        }
        if last_in_room {
            let _ = inner
                .subscriptions
                .send(SubCommand::Unsubscribe(room.clone()));
        }
    }

    pub(super) async fn publish(&self, room: &RoomName, draft: Draft) -> Result<(), LayerError> {
        let inner = &self.inner;
        let plain = chat_protocol::PlainMessage::encode(&draft.message);
        let json = draft.into_event(room, u64::MAX).to_event_json();
        let Some((prefix, suffix)) = split_at_id(&json) else {
            return Err(LayerError::Unavailable(
                "could not encode the message".to_owned(),
            ));
        };
        let ttl = inner.config.room_ttl.as_secs().max(1);
        let mut conn = inner.conn.clone();
        let result: Result<u64, _> = inner
            .publish_script
            .key(inner.keys.seq(room))
            .key(inner.keys.epoch(room))
            .key(inner.keys.history(room))
            .arg(prefix)
            .arg(suffix)
            .arg(plain)
            .arg(inner.history_len)
            .arg(ttl)
            .arg(inner.keys.channel(room))
            .arg(self.new_epoch())
            .invoke_async(&mut conn)
            .await;
        result
            .map(|_| ())
            .map_err(|err| self.failed("publish", &err))
    }

    pub(super) async fn rename(
        &self,
        room: &RoomName,
        old: &str,
        new: &str,
    ) -> Result<(), LayerError> {
        let (old_gone, new_first) = {
            let mut local = lock(&self.inner.local);
            let Some(names) = local.get_mut(room) else {
                return Ok(());
            };
            (names.remove(old), names.add(new))
        };
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let presence = inner.keys.presence(room);
        let mut pipe = redis::pipe();
        if old_gone {
            pipe.zrem(&presence, presence_member(&inner.node, old))
                .ignore();
        }
        if new_first {
            pipe.zadd(&presence, presence_member(&inner.node, new), self.expiry())
                .ignore();
        }
        for event in rename_events(room, old, new, old_gone, new_first) {
            pipe.publish(inner.keys.channel(room), envelope(&event))
                .ignore();
        }
        let result: Result<(), _> = pipe.query_async(&mut conn).await;
        result.map_err(|err| self.failed("rename", &err))
    }

    pub(super) async fn rooms(&self) -> Result<Vec<RoomSummary>, LayerError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let now = unix_millis();
        let names: Vec<String> = conn
            .zrangebyscore(inner.keys.rooms(), now, "+inf")
            .await
            .map_err(|err| self.failed("list rooms", &err))?;
        let rooms: Vec<RoomName> = names
            .into_iter()
            .filter_map(|n| RoomName::new(n).ok())
            .collect();
        let mut pipe = redis::pipe();
        for room in &rooms {
            pipe.zrangebyscore(inner.keys.presence(room), now, "+inf");
        }
        let members: Vec<Vec<String>> = if rooms.is_empty() {
            Vec::new()
        } else {
            pipe.query_async(&mut conn)
                .await
                .map_err(|err| self.failed("list rooms", &err))?
        };
        let list: Vec<RoomSummary> = rooms
            .into_iter()
            .zip(members)
            .map(|(name, entries)| RoomSummary {
                name,
                members: unique_names(&entries).len() as u64,
            })
            .filter(|summary| summary.members > 0)
            .collect();
        Ok(list)
    }

    pub(super) fn health(&self) -> Health {
        let ok = self.inner.up.load(Ordering::Relaxed);
        let detail = if ok {
            None
        } else {
            lock(&self.inner.last_error).clone()
        };
        Health {
            layer: "redis",
            ok,
            detail,
        }
    }

    pub(super) fn stored_rooms(&self) -> usize {
        lock(&self.inner.local).len()
    }

    /// Subscribes to `room`'s channel; waits for the confirmation while
    /// Redis is up (so no message published after the join is missed).
    async fn subscribe_room(&self, room: &RoomName) {
        let inner = &self.inner;
        if !inner.up.load(Ordering::Relaxed) {
            // The pump subscribes every room with local members when it
            // reconnects; nothing to wait for now.
            let _ = inner
                .subscriptions
                .send(SubCommand::Subscribe(room.clone(), None));
            return;
        }
        let (ack, confirmed) = oneshot::channel();
        if inner
            .subscriptions
            .send(SubCommand::Subscribe(room.clone(), Some(ack)))
            .is_ok()
            && tokio::time::timeout(SUBSCRIBE_WAIT, confirmed)
                .await
                .is_err()
        {
            warn!(%room, "Redis did not confirm the room's subscription in time");
        }
    }

    async fn snapshot(&self, room: &RoomName) -> Result<Snapshot, LayerError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let (last_id, epoch, history, members): (u64, String, Vec<String>, Vec<String>) = inner
            .snapshot_script
            .key(inner.keys.seq(room))
            .key(inner.keys.epoch(room))
            .key(inner.keys.history(room))
            .key(inner.keys.presence(room))
            .arg(unix_millis())
            .arg(self.new_epoch())
            .arg(inner.config.room_ttl.as_secs().max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.failed("read the room", &err))?;
        let history = history
            .iter()
            .filter_map(|json| match serde_json::from_str::<ServerEvent>(json) {
                Ok(ServerEvent::Chat(chat)) => Some(chat),
                _ => None,
            })
            .collect();
        Ok(Snapshot {
            last_id,
            epoch,
            history,
            members: unique_names(&members),
        })
    }

    /// A fresh epoch name, unique across instances and restarts.
    fn new_epoch(&self) -> String {
        format!("{}.{:x}", self.inner.node, unix_millis())
    }

    /// Records a failed command and turns it into the error a client sees.
    fn failed(&self, what: &str, err: &redis::RedisError) -> LayerError {
        let reason = format!("Redis: {what} failed: {err}");
        warn!(%err, "Redis: {what} failed");
        *lock(&self.inner.last_error) = Some(reason.clone());
        LayerError::Unavailable("the server cannot reach its message bus (Redis)".to_owned())
    }

    fn set_up(&self, up: bool, reason: Option<String>) {
        let was = self.inner.up.swap(up, Ordering::Relaxed);
        if let Some(reason) = reason {
            *lock(&self.inner.last_error) = Some(reason);
        }
        if was && !up {
            warn!(reason = ?lock(&self.inner.last_error), "Redis unavailable: messages cannot be published until it is back");
        }
    }
}

/// A room as a joiner sees it.
#[derive(Debug)]
struct Snapshot {
    last_id: u64,
    epoch: String,
    history: Vec<ChatEvent>,
    members: Vec<String>,
}

/// The URL without its password, for logs and errors.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
