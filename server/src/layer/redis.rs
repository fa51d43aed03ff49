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

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{ChatEvent, RoomName, RoomSummary, ServerEvent, unix_millis};
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, PubSubSink, PubSubStream};
use redis::{AsyncCommands, Client, Script};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use super::{
    Draft, Health, Joined, LayerError, NameCounts, Resume, presence_event, rename_events,
    select_history,
};
use crate::ring::{Format, Frames, Subscription};
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

/// Allocates the id, appends to history, publishes: one atomic step.
const PUBLISH_LUA: &str = r"
local id = redis.call('INCR', KEYS[1])
if id == 1 then redis.call('SET', KEYS[2], ARGV[7], 'NX') end
local event = ARGV[1] .. id .. ARGV[2]
local keep = tonumber(ARGV[4])
if keep > 0 then
  redis.call('RPUSH', KEYS[3], event)
  redis.call('LTRIM', KEYS[3], -keep, -1)
  redis.call('EXPIRE', KEYS[3], ARGV[5])
end
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('PUBLISH', ARGV[6], id .. '\n' .. event .. '\n' .. ARGV[3])
return id
";

/// A consistent view of a room for a joiner: last id, epoch, history,
/// members. A room without an epoch gets one now, so that ids seen by this
/// joiner can be resumed later.
const SNAPSHOT_LUA: &str = r"
local seq = tonumber(redis.call('GET', KEYS[1]) or '0')
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  epoch = ARGV[2]
  redis.call('SET', KEYS[2], epoch, 'EX', ARGV[3])
end

local history = redis.call('LRANGE', KEYS[3], 0, -1)
local members = redis.call('ZRANGEBYSCORE', KEYS[4], ARGV[1], '+inf')
return {seq, epoch, history, members}
";

/// The id the publisher writes where the script puts the real one.
const ID_PLACEHOLDER: &str = ",\"id\":18446744073709551615,";

/// Key and channel names under one prefix.
#[derive(Debug)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn seq(&self, room: &RoomName) -> String {
        format!("{}:seq:{room}", self.prefix)
    }
    fn epoch(&self, room: &RoomName) -> String {
        format!("{}:epoch:{room}", self.prefix)
    }
    fn history(&self, room: &RoomName) -> String {
        format!("{}:history:{room}", self.prefix)
    }
    fn presence(&self, room: &RoomName) -> String {
        format!("{}:presence:{room}", self.prefix)
    }
    fn rooms(&self) -> String {
        format!("{}:rooms", self.prefix)
    }
    fn channel(&self, room: &RoomName) -> String {
        format!("{}:room:{room}", self.prefix)
    }
    fn room_of_channel(&self, channel: &str) -> Option<RoomName> {
        let name = channel.strip_prefix(&self.prefix)?.strip_prefix(":room:")?;
        RoomName::new(name).ok()
    }
}

/// What the pump is asked to do with subscriptions.
#[derive(Debug)]
enum SubCommand {
    /// Subscribe to a room's channel; confirm when done.
    Subscribe(RoomName, Option<oneshot::Sender<()>>),
    /// Unsubscribe, unless the room has local members again.
    Unsubscribe(RoomName),
}

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
                keys: Keys {
                    prefix: config.prefix.clone(),
                },
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
        // The placeholder cannot occur inside the message text, where every
        // quote is escaped, so the first match is the id field.
        let Some(at) = json.find(ID_PLACEHOLDER) else {
            return Err(LayerError::Unavailable(
                "could not encode the message".to_owned(),
            ));
        };
        let prefix = &json[..at + ",\"id\":".len()];
        let suffix = &json[at + ID_PLACEHOLDER.len() - 1..];
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
            pipe.zrem(&presence, format!("{}:{old}", inner.node))
                .ignore();
        }
        if new_first {
            pipe.zadd(&presence, format!("{}:{new}", inner.node), self.expiry())
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

    /// Records presence and tells the room (best effort: a failure here
    /// is healed by the next heartbeat, and only costs a notice).
    async fn announce(&self, room: &RoomName, user: &str, joined: bool) {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let member = format!("{}:{user}", inner.node);
        let presence = inner.keys.presence(room);
        let mut pipe = redis::pipe();
        if joined {
            pipe.zadd(&presence, member, self.expiry()).ignore();
            pipe.zadd(inner.keys.rooms(), room.as_str(), self.expiry())
                .ignore();
        } else {
            pipe.zrem(&presence, member).ignore();
        }
        pipe.publish(
            inner.keys.channel(room),
            envelope(&presence_event(joined, room, user)),
        )
        .ignore();
        let result: Result<(), _> = pipe.query_async(&mut conn).await;
        if let Err(err) = result {
            debug!(%room, user, %err, "presence update failed; the heartbeat will retry");
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

    /// The expiry of a presence entry written now.
    fn expiry(&self) -> u64 {
        let ttl = u64::try_from(self.inner.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
        unix_millis().saturating_add(ttl)
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

    /// Hands a message from the room's channel to the local subscribers.
    fn deliver(&self, message: &redis::Msg) {
        let Some(room) = self.inner.keys.room_of_channel(message.get_channel_name()) else {
            return;
        };
        if let Some(frames) = parse_envelope(message.get_payload_bytes()) {
            self.inner.registry.deliver(&room, frames);
        } else {
            warn!(%room, "ignoring a malformed message on the room's channel");
        }
    }

    /// Owns the pub/sub connection: connects, subscribes every room with
    /// local members, delivers, and starts again when the connection drops.
    async fn pump(
        self,
        client: Client,
        mut commands: mpsc::UnboundedReceiver<SubCommand>,
        shutdown: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        let mut ready = Some(ready);
        let mut delay = RECONNECT_MIN;
        loop {
            let attempt = tokio::select! {
                () = shutdown.cancelled() => return,
                attempt = self.connect_pubsub(&client) => attempt,
            };
            let (mut sink, mut stream) = match attempt {
                Ok(pair) => pair,
                Err(reason) => {
                    self.set_up(false, Some(reason));
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(RECONNECT_MAX);
                    continue;
                }
            };
            delay = RECONNECT_MIN;
            let was_down = !self.inner.up.load(Ordering::Relaxed);
            self.set_up(true, None);
            if was_down && ready.is_none() {
                info!("Redis is back: rooms resubscribed, publishing again");
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(());
            }
            // Presence may have been lost with Redis: write it again now.
            self.refresh_presence().await;
            let lost = loop {
                tokio::select! {
                    biased;
                    () = shutdown.cancelled() => return,
                    message = stream.next() => match message {
                        Some(message) => self.deliver(&message),
                        None => break "the pub/sub connection to Redis was lost".to_owned(),
                    },
                    command = commands.recv() => match command {
                        Some(command) => {
                            if let Err(err) = self.apply(&mut sink, command).await {
                                break format!("Redis refused a subscription: {err}");
                            }
                        }
                        None => return,
                    },
                }
            };
            self.set_up(false, Some(lost));
        }
    }

    /// A fresh pub/sub connection subscribed to every room with local
    /// members, once the command connection answers too.
    async fn connect_pubsub(&self, client: &Client) -> Result<(PubSubSink, PubSubStream), String> {
        let connect = async {
            let (mut sink, stream) = client.get_async_pubsub().await?.split();
            let channels: Vec<String> = lock(&self.inner.local)
                .keys()
                .map(|room| self.inner.keys.channel(room))
                .collect();
            if !channels.is_empty() {
                sink.subscribe(channels).await?;
            }
            let mut conn = self.inner.conn.clone();
            let _: String = redis::cmd("PING").query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>((sink, stream))
        };
        match tokio::time::timeout(COMMAND_TIMEOUT, connect).await {
            Ok(Ok(pair)) => Ok(pair),
            Ok(Err(err)) => Err(format!("cannot connect to Redis: {err}")),
            Err(_) => Err("cannot connect to Redis: no answer".to_owned()),
        }
    }

    async fn apply(
        &self,
        sink: &mut PubSubSink,
        command: SubCommand,
    ) -> Result<(), redis::RedisError> {
        match command {
            SubCommand::Subscribe(room, ack) => {
                sink.subscribe(self.inner.keys.channel(&room)).await?;
                if let Some(ack) = ack {
                    let _ = ack.send(());
                }
            }
            SubCommand::Unsubscribe(room) => {
                if !lock(&self.inner.local).contains_key(&room) {
                    sink.unsubscribe(self.inner.keys.channel(&room)).await?;
                }
            }
        }
        Ok(())
    }

    /// Keeps this instance's presence entries alive.
    async fn heartbeat(self, shutdown: CancellationToken) {
        let period = (self.inner.config.presence_ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            self.refresh_presence().await;
        }
    }

    /// Writes every local member's presence entry with a fresh expiry, and
    /// drops expired entries (a crashed instance's).
    async fn refresh_presence(&self) {
        let inner = &self.inner;
        let expiry = self.expiry();
        let now = unix_millis();
        let ttl_secs = inner.config.presence_ttl.as_secs().max(1) * 4;
        let mut pipe = redis::pipe();
        {
            let local = lock(&inner.local);
            for (room, names) in local.iter() {
                let presence = inner.keys.presence(room);
                for name in names.names() {
                    pipe.zadd(&presence, format!("{}:{name}", inner.node), expiry)
                        .ignore();
                }
                pipe.zrembyscore(&presence, "-inf", now).ignore();
                pipe.expire(&presence, i64::try_from(ttl_secs).unwrap_or(i64::MAX))
                    .ignore();
                pipe.zadd(inner.keys.rooms(), room.as_str(), expiry)
                    .ignore();
            }
        }
        pipe.zrembyscore(inner.keys.rooms(), "-inf", now).ignore();
        let mut conn = inner.conn.clone();
        let result: Result<(), _> = pipe.query_async(&mut conn).await;
        if let Err(err) = result {
            debug!(%err, "presence heartbeat failed; retrying at the next beat");
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

/// An event that carries no id, as the room's channel carries it.
fn envelope(event: &ServerEvent) -> String {
    format!("0\n{}\n", event.to_json())
}

/// Splits `{id}\n{typed event}\n{plain frame}` into ready frames. Neither
/// JSON text contains a raw newline: serialisers escape it.
fn parse_envelope(payload: &[u8]) -> Option<Frames> {
    let bytes = bytes::Bytes::copy_from_slice(payload);
    let first = bytes.iter().position(|&b| b == b'\n')?;
    let id: u64 = std::str::from_utf8(&bytes[..first]).ok()?.parse().ok()?;
    let rest = bytes.slice(first + 1..);
    let second = rest.iter().position(|&b| b == b'\n')?;
    let events = Utf8Bytes::try_from(rest.slice(..second)).ok()?;
    let plain = rest.slice(second + 1..);
    let plain = if plain.is_empty() {
        None
    } else {
        Some(Utf8Bytes::try_from(plain).ok()?)
    };
    if id == 0 {
        // Notices are for typed clients only, whatever the payload says.
        return Some(Frames {
            id,
            events,
            plain: None,
        });
    }
    Some(Frames { id, events, plain })
}

/// Display names from presence entries `{node}:{name}`, sorted, unique.
fn unique_names(entries: &[String]) -> Vec<String> {
    let mut names: Vec<String> = entries
        .iter()
        .filter_map(|e| e.split_once(':').map(|(_, name)| name.to_owned()))
        .collect();
    names.sort();
    names.dedup();
    names
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
    fn envelopes_split_into_frames() {
        let frames = parse_envelope(b"7\n{\"type\":\"chat\"}\n{\"message\": \"x\"}").unwrap();
        assert_eq!(frames.id, 7);
        assert_eq!(frames.events.as_str(), "{\"type\":\"chat\"}");
        assert_eq!(frames.plain.unwrap().as_str(), "{\"message\": \"x\"}");
        let notice = parse_envelope(b"0\n{\"type\":\"join\"}\n").unwrap();
        assert!(notice.plain.is_none());
        assert!(parse_envelope(b"x\n{}\n").is_none());
        assert!(parse_envelope(b"1\n\xff\n").is_none());
        assert!(parse_envelope(b"").is_none());
    }

    #[test]
    fn presence_entries_give_unique_names() {
        let entries = [
            "a1:bob".to_owned(),
            "b2:alice".to_owned(),
            "c3:bob".to_owned(),
            "d4:x:y".to_owned(),
        ];
        assert_eq!(unique_names(&entries), ["alice", "bob", "x:y"]);
    }

    #[test]
    fn channels_map_back_to_rooms() {
        let keys = Keys {
            prefix: "p".to_owned(),
        };
        let room = RoomName::new("lobby").unwrap();
        assert_eq!(keys.room_of_channel(&keys.channel(&room)), Some(room));
        assert_eq!(keys.room_of_channel("other:room:lobby"), None);
    }

    #[test]
    fn the_id_placeholder_splits_a_chat_event() {
        let event = ServerEvent::Chat(ChatEvent {
            message: ",\"id\":18446744073709551615,".to_owned(),
            user: "u".into(),
            room: RoomName::new("r").unwrap(),
            id: u64::MAX,
            ts: 1,
            emote: false,
        });
        let json = event.to_json();
        let at = json.find(ID_PLACEHOLDER).unwrap();
        let rebuilt = format!(
            "{}{}{}",
            &json[..at + ",\"id\":".len()],
            42,
            &json[at + ID_PLACEHOLDER.len() - 1..]
        );
        match serde_json::from_str::<ServerEvent>(&rebuilt).unwrap() {
            ServerEvent::Chat(chat) => {
                assert_eq!(chat.id, 42);
                assert_eq!(chat.message, ",\"id\":18446744073709551615,");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn passwords_stay_out_of_logs() {
        assert_eq!(redact("redis://:secret@h:1/0"), "redis://:***@h:1/0");
        assert_eq!(redact("redis://h:1/0"), "redis://h:1/0");
    }
}
