//! The Redis layer: several `chat-server` instances behind a load balancer
//! share rooms, ids, history and presence through one Redis, or through a
//! Redis Cluster.
//!
//! Keys, under the configured prefix `P` (all of one room's names share
//! the hash tag `{P:room}`, so in a cluster they live in one slot):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `P:{P:room}:seq` | string | the room's last message id (`INCR`) |
//! | `P:{P:room}:epoch` | string | names the id sequence; new when the sequence starts again |
//! | `P:{P:room}:log` | stream | the last N chat events (at most `history_bytes`), entry id `{message id}-0` |
//! | `P:{P:room}:bytes` | string | the bytes of the events `log` holds |
//! | `P:{P:room}:pubs` | sorted set | ids of recent publishes (a resent publish runs once) |
//! | `P:{P:room}:presence` | sorted set | `{node}:{name}` scored by expiry (unix ms) |
//! | `P:{P:room}:ch` | channel | the room's live messages (sharded in a cluster) |
//! | `P:rooms` | sorted set | rooms with members, scored by expiry (unix ms) |
//! | `P:owner:{room}:{folded name}` | sorted set | `{identity}:{node}` holding the name, scored by expiry (unix ms) |
//! | `P:topic:{room}` | string | the room's topic |
//!
//! Room keys expire after `room_ttl` without a message. A message is
//! published by one Lua script that allocates the id, appends to history
//! and publishes on the room's channel, atomically, so ids reach every
//! instance in order. The payload is serialised once, by the publisher, in
//! both wire formats: `{id}\n{typed event}\n{plain frame}`.
//!
//! Each instance holds one subscription per room that has local members,
//! on one pub/sub connection per Redis shard, and fans out locally through
//! the registry; every instance, the publisher's included, delivers from
//! that subscription, so all members see one order. Whenever a room's
//! feed was interrupted (a lost connection, a failover, a gap in the ids),
//! the pump reads history after the last id it delivered and fills the
//! hole before anything newer: live members lose nothing that history
//! still holds, and are told (a `gap` event) what it no longer holds.
//! A publish is answered once its own message came back through that
//! subscription, so a message Redis accepted and then lost is reported to
//! its sender rather than never echoed.
//!
//! The layer in files, one concern each:
//!
//! * this file: the layer's operations (connect, join, leave, publish,
//!   rename, the room list, health);
//! * `keys`: every key and channel name, the Lua scripts, the envelope;
//! * `commands`: the command connection, to one Redis or a cluster;
//! * `history`: paging and search over a room's history;
//! * `pump`: the pub/sub connections, delivery, and catch-up from history;
//! * `progress`: where this instance stands in a room's ids, and the
//!   publishes waiting to see their message delivered here;
//! * `presence`: presence entries, their heartbeat, the health probe;
//! * `names`: who holds a display name across instances, and room topics.

mod commands;
mod history;
mod keys;
mod names;
mod presence;
mod progress;
mod pump;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{ChatEvent, RoomName, RoomSummary, unix_millis};
use futures_util::StreamExt;
use redis::{AsyncCommands, Script};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use self::commands::Commands;
use self::keys::{
    CATCH_UP_LUA, Entry, IdTemplate, Keys, Mode, PUBLISH_LUA, SNAPSHOT_LUA, entry, parse_entry,
    presence_member, unique_names,
};
use self::progress::{Fate, Progress};
use self::pump::SubCommand;
use super::{
    Cause, Draft, Health, Joined, LayerError, NameCounts, Resume, rename_events, select_history,
};
use crate::frames::Format;
use crate::log_burst::LogBurst;
use crate::names::Identity;
use crate::ring::Subscription;
use crate::rooms::RoomRegistry;
use crate::sync::lock;

/// How to reach Redis and how to use it.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `redis://[:password@]host:port/db`: one Redis (ignored when
    /// `cluster` lists seed nodes).
    pub url: String,
    /// Seed nodes of a Redis Cluster (`redis://host:port` each); empty:
    /// one Redis at `url`.
    pub cluster: Vec<String>,
    /// Prefix of every key and channel, so several deployments can share a Redis.
    pub prefix: String,
    /// How long a presence entry lives without a heartbeat: the bound on
    /// how long a crashed instance's members stay listed.
    pub presence_ttl: Duration,
    /// How long a room's ids and history outlive its last message.
    pub room_ttl: Duration,
    /// The most bytes of events one room's history holds (0: bounded in
    /// messages only): the oldest go first.
    pub history_bytes: usize,
    /// Longest wait for any one Redis command or connection attempt, and
    /// for all of a join's Redis steps together. A publish must run in
    /// Redis within it (less a margin for the reply) or it is refused to
    /// its sender. The health probe waits half of it.
    pub timeout: Duration,
    /// The most bytes of live messages waiting for this instance's pub/sub
    /// pump: past it, live messages are dropped from the queue and read
    /// from history instead (nothing is lost while history holds them).
    pub pump_bytes: usize,
}

impl RedisConfig {
    /// Settings for one Redis at `url` with the defaults: prefix `chat`,
    /// presence entries living 15 s, rooms 1 day.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            cluster: Vec::new(),
            prefix: "chat".to_owned(),
            presence_ttl: Duration::from_secs(15),
            room_ttl: DEFAULT_ROOM_TTL,
            history_bytes: DEFAULT_HISTORY_BYTES,
            timeout: Duration::from_millis(DEFAULT_REDIS_TIMEOUT_MS),
            pump_bytes: DEFAULT_PUMP_BYTES,
        }
    }

    /// Settings for a Redis Cluster reached through `seeds`, with the
    /// defaults of [`RedisConfig::new`].
    pub fn cluster(seeds: Vec<String>) -> Self {
        Self {
            cluster: seeds,
            ..Self::new(String::new())
        }
    }

    fn mode(&self) -> Mode {
        if self.cluster.is_empty() {
            Mode::Single
        } else {
            Mode::Cluster
        }
    }

    /// Where Redis is, without passwords, for logs and errors.
    fn describe(&self) -> String {
        match self.mode() {
            Mode::Single => redact(&self.url),
            Mode::Cluster => format!(
                "the Redis Cluster at {}",
                self.cluster
                    .iter()
                    .map(|url| redact(url))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        }
    }
}

/// How long an idle room's ids and history are kept by default: a day, so
/// that abandoned rooms do not hold Redis memory for long.
pub const DEFAULT_ROOM_TTL: Duration = Duration::from_secs(24 * 3600);

/// How many bytes of events a room's history holds in Redis by default:
/// 1 MiB, so that 100 messages of 60 KB cannot make one room hold 6 MB.
pub const DEFAULT_HISTORY_BYTES: usize = 1024 * 1024;

/// How long a Redis command may take by default, in ms: 2 s. A healthy
/// Redis answers in well under a millisecond; a CPU-starved one with a
/// thousand publishes queued took over 1 s (bench/conns-100k.sh), which
/// the first release's fixed 1 s refused. 2 s keeps a hung Redis noticed
/// within about 2 s (`/healthz`) and a handshake waiting at most 2 s before
/// that, none after.
pub const DEFAULT_REDIS_TIMEOUT_MS: u64 = 2000;

/// How many bytes of live messages may wait for the pump by default: 8 MiB
/// (about 60 of the largest messages in both wire formats, or tens of
/// thousands of chat lines): a burst beyond it is read from history.
pub const DEFAULT_PUMP_BYTES: usize = 8 * 1024 * 1024;

/// Reconnect delays of the pub/sub connections: from this...
const RECONNECT_MIN: Duration = Duration::from_millis(50);
/// ...doubling up to this, so traffic resumes within about a second of
/// Redis coming back.
const RECONNECT_MAX: Duration = Duration::from_millis(800);
/// How much sooner than the command timeout a publish must have run in
/// Redis: room for the reply to travel back before the publisher gives up
/// (at most a quarter of the timeout).
const DEADLINE_MARGIN: Duration = Duration::from_millis(250);
/// How long a join waits for its room's subscription to be confirmed.
const SUBSCRIBE_WAIT: Duration = Duration::from_secs(2);

/// This instance's view of a room with local members.
#[derive(Debug, Default)]
struct LocalRoom {
    /// Who they are.
    names: NameCounts,
    /// Its place in the room's ids: ids published from here never go
    /// below its floor (see `PUBLISH_LUA`).
    progress: Progress,
}

#[derive(Debug)]
struct Inner {
    registry: Arc<RoomRegistry>,
    /// Commands: multiplexed, reconnecting by itself (and, in a cluster,
    /// following MOVED/ASK and failovers).
    conn: Commands,
    mode: Mode,
    keys: Keys,
    /// This instance, in presence entries.
    node: String,
    history_len: usize,
    config: RedisConfig,
    /// Rooms with local members.
    local: Mutex<HashMap<RoomName, LocalRoom>>,
    /// To the pump, which owns the pub/sub connections.
    subscriptions: mpsc::UnboundedSender<SubCommand>,
    /// Whether every pub/sub connection is up.
    up: AtomicBool,
    /// Whether Redis answered the last command (false after a failure or
    /// a timeout, until a command succeeds again).
    answering: AtomicBool,
    /// What went wrong last, for `/healthz`.
    last_error: Mutex<Option<String>>,
    /// Failed commands, logged at most once per window (an outage fails
    /// one command per message and per leaving connection).
    failures_logged: LogBurst,
    /// Redis's clock minus ours, in ms (`i64::MIN`: not measured yet).
    clock_offset_ms: AtomicI64,
    /// The Redis nodes (each master, in a cluster) that do not answer or
    /// cannot be reached now, each as `host:port: why`, from the pump's
    /// pings.
    unwell: Mutex<Vec<String>>,
    /// What the pub/sub connections hand the pump, bounded in bytes.
    inbound: Arc<pump::Inbound>,
    publish_script: Script,
    snapshot_script: Script,
    catch_up_script: Script,
}

/// Rooms shared through Redis. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RedisLayer {
    inner: Arc<Inner>,
}

impl RedisLayer {
    /// Connects to Redis (or the cluster), starts the pub/sub pump, the
    /// presence heartbeat and the health probe (all stop on `shutdown`),
    /// and waits until the pub/sub connections are up.
    ///
    /// # Errors
    ///
    /// [`LayerError::Setup`] when a URL or the prefix is invalid or Redis
    /// cannot be reached: the server should not start half-working.
    pub async fn connect(
        config: RedisConfig,
        registry: Arc<RoomRegistry>,
        history_len: usize,
        shutdown: &CancellationToken,
        tracker: &TaskTracker,
    ) -> Result<Self, LayerError> {
        if !Keys::is_valid_prefix(&config.prefix) {
            return Err(LayerError::setup(format!(
                "invalid Redis prefix {:?}: it must not contain '{{' or '}}' (they decide a key's cluster slot)",
                config.prefix
            )));
        }
        let where_ = config.describe();
        let cannot_reach = |err: Cause| {
            LayerError::setup_because(
                format!("cannot reach Redis at {where_} (is redis-server running there?)"),
                err,
            )
        };
        let (conn, pubsub) = Commands::connect(&config).await?;
        let mut probe = conn.clone();
        let _: String =
            tokio::time::timeout(config.timeout, redis::cmd("PING").query_async(&mut probe))
                .await
                .map_err(|_| cannot_reach("no answer".into()))?
                .map_err(|err| cannot_reach(err.into()))?;

        let (subscriptions, commands) = mpsc::unbounded_channel();
        let pump_bytes = config.pump_bytes;

        let layer = Self {
            inner: Arc::new(Inner {
                registry,
                conn,
                mode: config.mode(),
                keys: Keys::new(&config.prefix),
                node: format!("{:016x}", fastrand::u64(..)),
                history_len,
                config,
                local: Mutex::new(HashMap::new()),
                subscriptions,
                up: AtomicBool::new(false),
                answering: AtomicBool::new(true),
                last_error: Mutex::new(None),
                failures_logged: LogBurst::default(),
                clock_offset_ms: AtomicI64::new(i64::MIN),
                unwell: Mutex::new(Vec::new()),
                inbound: Arc::new(pump::Inbound::new(pump_bytes)),
                publish_script: Script::new(PUBLISH_LUA),
                snapshot_script: Script::new(SNAPSHOT_LUA),
                catch_up_script: Script::new(CATCH_UP_LUA),
            }),
        };
        let (ready_tx, ready) = oneshot::channel();
        tracker.spawn(
            layer
                .clone()
                .pump(pubsub, commands, shutdown.clone(), ready_tx),
        );
        tracker.spawn(layer.clone().heartbeat(shutdown.clone()));
        layer
            .measure_clock()
            .await
            .map_err(|err| cannot_reach(err.into()))?;
        tracker.spawn(layer.clone().probe(shutdown.clone()));
        tokio::time::timeout(SUBSCRIBE_WAIT * 2, ready)
            .await
            .map_err(|_| cannot_reach("the pub/sub connections did not come up".into()))?
            .map_err(|_| cannot_reach("the pub/sub connections did not come up".into()))?;
        info!(redis = %where_, node = %layer.inner.node, "sharing rooms through Redis");
        Ok(layer)
    }

    pub(super) async fn join(
        &self,
        room: &RoomName,
        user: &str,
        identity: &Identity,
        format: Format,
        resume: Option<&Resume>,
    ) -> Result<Joined, LayerError> {
        let inner = &self.inner;
        let locally_taken = lock(&inner.local)
            .get(room)
            .and_then(|state| state.names.check(user, identity).err());
        if let Some(taken) = locally_taken {
            return Err(taken.into());
        }
        // All of the join's Redis steps together wait at most one command
        // timeout: past it, Redis counts as not answering and the join
        // goes on without it (so a hung Redis holds a handshake at most
        // that long, and not at all once the health probe has noticed).
        let budget = Instant::now() + self.timeout();
        if self.is_answering() {
            if let Some(claimed) = self
                .within(
                    budget,
                    "join (name claim)",
                    self.claim_name(room, user, identity),
                )
                .await
            {
                claimed?;
            }
        }
        let (first_in_room, first_of_name) = {
            let mut local = lock(&inner.local);
            let state = local.entry(room.clone()).or_default();
            let first_in_room = state.names.is_empty();
            match state.names.add(user, identity) {
                Ok(first_of_name) => (first_in_room, first_of_name),
                Err(taken) => {
                    if first_in_room {
                        local.remove(room);
                    }
                    return Err(taken.into());
                }
            }
        };
        let subscription = inner.registry.subscribe(room, format);
        if first_in_room {
            // Not confirmed in time: the pump subscribes and catches up by
            // itself; the join does not wait longer.
            let _ = tokio::time::timeout_at(budget, self.subscribe_room(room)).await;
        }
        // While Redis does not answer, a join does not wait for it: the
        // heartbeat writes presence once it is back.
        if first_of_name && self.is_answering() {
            self.within(budget, "join (presence)", self.announce(room, user, true))
                .await;
        }
        let answering = self.is_answering();
        if format == Format::Plain {
            // No welcome; but in a room whose feed has no start yet (the
            // join could not wait for the subscription), the plain member
            // must get what is published from now on.
            if answering {
                self.within(budget, "join (room position)", self.mark_plain_join(room))
                    .await;
            }
            return Ok(Joined {
                subscription,
                members: Vec::new(),
                history: Vec::new(),
                last_id: 0,
                missed: 0,
                epoch: String::new(),
                notice: None,
                topic: None,
            });
        }
        let not_answering = || LayerError::unavailable("Redis is not answering");
        let snapshot = if answering {
            self.within(budget, "join (room snapshot)", self.snapshot(room))
                .await
                .unwrap_or_else(|| Err(not_answering()))
        } else {
            Err(not_answering())
        };
        Ok(match snapshot {
            Ok(snapshot) => {
                if let Some(state) = lock(&inner.local).get_mut(room) {
                    state.progress.welcomed_at(snapshot.last_id);
                }
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
                    topic: self
                        .within(budget, "join (topic)", self.topic(room))
                        .await
                        .flatten(),
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
                    topic: None,
                }
            }
        })
    }

    pub(super) async fn leave(&self, room: &RoomName, user: &str, subscription: Subscription) {
        let inner = &self.inner;
        drop(subscription);
        inner.registry.remove_if_empty(room);
        let (last_of_name, last_in_room, released) = {
            let mut local = lock(&inner.local);
            match local.get_mut(room) {
                Some(state) => {
                    let (last_of_name, released) = state.names.release(user);
                    let last_in_room = state.names.is_empty();
                    if last_in_room {
                        local.remove(room);
                    }
                    (last_of_name, last_in_room, released)
                }
                None => (false, false, None),
            }
        };
        if let Some(identity) = released {
            self.release_name(room, user, &identity).await;
        }
        if last_of_name && self.is_answering() {
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
        let Some(template) = IdTemplate::new(room, draft) else {
            return Err(LayerError::unavailable("could not encode the message"));
        };
        let floor = lock(&inner.local)
            .get(room)
            .map_or(0, |state| state.progress.floor());
        let names = inner.keys.room(room);
        let mut conn = inner.conn.clone();
        let result: Result<i64, _> = inner
            .publish_script
            .key(names.seq)
            .key(names.epoch)
            .key(names.log)
            .key(names.channel)
            .key(names.bytes)
            .key(names.pubs)
            .arg(template.before())
            .arg(template.after())
            .arg(plain)
            .arg(inner.history_len)
            .arg(self.ttl_secs())
            .arg(self.new_epoch())
            .arg(floor)
            .arg(inner.mode.publish())
            .arg(inner.config.history_bytes)
            .arg(self.deadline())
            .arg(format!(
                "{:016x}{:016x}",
                fastrand::u64(..),
                fastrand::u64(..)
            ))
            .invoke_async(&mut conn)
            .await;
        match result {
            Ok(id) if id >= 0 => {
                inner.answering.store(true, Ordering::Relaxed);
                self.delivered_here(room, id.unsigned_abs()).await
            }
            // A resend of a publish that already ran (its first reply was
            // lost): delivered once, as it should be.
            Ok(-2) => {
                info!(%room, "a resent publish had already run: not published twice");
                inner.answering.store(true, Ordering::Relaxed);
                Ok(())
            }
            Ok(_) => {
                let err = redis::RedisError::from(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "Redis ran the publish after its deadline (it was not answering)",
                ));
                Err(self.failed("publish", &err))
            }
            Err(err) => Err(self.failed("publish", &err)),
        }
    }

    /// For a plain joiner of a room the pump has not opened yet: reads where
    /// the room stands, so that its feed starts no later than that.
    async fn mark_plain_join(&self, room: &RoomName) {
        let open = lock(&self.inner.local)
            .get(room)
            .is_none_or(|state| state.progress.is_open());
        if open {
            return;
        }
        let mut conn = self.inner.conn.clone();
        let seq: Result<Option<u64>, _> = conn.get(self.inner.keys.room(room).seq).await;
        match seq {
            Ok(seq) => {
                if let Some(state) = lock(&self.inner.local).get_mut(room) {
                    state.progress.welcomed_at(seq.unwrap_or(0));
                }
            }
            Err(err) => self.warn_failed("read where a room stands", &err),
        }
    }

    /// Waits until the message Redis published as `id` is delivered here
    /// (so its sender has its echo), at most the command timeout. Refused
    /// when the pump reports it lost (Redis lost it before sending it to
    /// this instance) or it does not come back in time (the pub/sub
    /// connection is down): the sender is told that it may not have reached
    /// every member, instead of never getting an echo.
    async fn delivered_here(&self, room: &RoomName, id: u64) -> Result<(), LayerError> {
        let fate = lock(&self.inner.local)
            .get_mut(room)
            .and_then(|state| state.progress.published(id));
        let Some(fate) = fate else {
            return Ok(());
        };
        let waited = self.timeout();
        match tokio::time::timeout(waited, fate).await {
            Ok(Ok(Fate::Delivered)) => Ok(()),
            Ok(Ok(Fate::Lost)) => {
                warn!(%room, id, "a message Redis accepted never reached this server: its sender is told");
                Err(LayerError::unconfirmed(
                    "it never came back to this server from Redis (Redis lost it, e.g. it \
                     restarted without its data, or the room's history dropped it before this \
                     server caught up); members here on typed events were told a message is \
                     missing",
                ))
            }
            Ok(Err(_)) | Err(_) => {
                if let Some(state) = lock(&self.inner.local).get_mut(room) {
                    state.progress.forget(id);
                }
                warn!(%room, id, ?waited, "a published message did not come back from Redis in time: its sender is told");
                Err(LayerError::unconfirmed(format!(
                    "Redis accepted it, but this server has not received it back within \
                     {waited:?} (its connection to Redis is down); members will still get it \
                     if Redis kept it"
                )))
            }
        }
    }

    pub(super) async fn rename(
        &self,
        room: &RoomName,
        old: &str,
        new: &str,
        identity: &Identity,
    ) -> Result<(), LayerError> {
        let locally_taken = match lock(&self.inner.local).get(room) {
            None => return Ok(()),
            Some(state) => state.names.check(new, identity).err(),
        };
        if let Some(taken) = locally_taken {
            return Err(taken.into());
        }
        if self.is_answering() {
            self.claim_name(room, new, identity).await?;
        }
        let (old_gone, new_first, released) = {
            let mut local = lock(&self.inner.local);
            let Some(state) = local.get_mut(room) else {
                return Ok(());
            };
            let (old_gone, released) = state.names.release(old);
            (old_gone, state.names.add(new, identity)?, released)
        };
        if let Some(identity) = released {
            self.release_name(room, old, &identity).await;
        }
        let node = &self.inner.node;
        let removed = old_gone.then(|| presence_member(node, old));
        let added = new_first.then(|| presence_member(node, new));
        let events = rename_events(room, old, new, old_gone, new_first);
        let result = self
            .update_presence(room, removed.as_deref(), added.as_deref(), &events)
            .await;
        result.map_err(|err| self.failed("rename", &err))
    }

    /// Rooms with members: one read of the room index, then each listed
    /// room's presence (concurrently; in a cluster each goes to the shard
    /// that holds the room).
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
        let presences: Vec<String> = rooms
            .iter()
            .map(|room| inner.keys.room(room).presence)
            .collect();
        let members: Vec<Result<Vec<String>, redis::RedisError>> =
            futures_util::stream::iter(presences)
                .map(|presence| {
                    let mut conn = conn.clone();
                    async move { conn.zrangebyscore(presence, now, "+inf").await }
                })
                .buffered(CONCURRENT_COMMANDS)
                .collect()
                .await;
        let mut list = Vec::with_capacity(rooms.len());
        for (name, entries) in rooms.into_iter().zip(members) {
            let entries = entries.map_err(|err| self.failed("list rooms", &err))?;
            let members = unique_names(&entries).len() as u64;
            if members > 0 {
                list.push(RoomSummary { name, members });
            }
        }
        Ok(list)
    }

    pub(super) fn health(&self) -> Health {
        let unwell = lock(&self.inner.unwell).clone();
        let ok = self.inner.up.load(Ordering::Relaxed) && self.is_answering() && unwell.is_empty();
        let detail = if ok {
            None
        } else {
            let nodes = (!unwell.is_empty()).then(|| {
                let what = if self.inner.mode == Mode::Cluster {
                    "masters unwell"
                } else {
                    "Redis unwell"
                };
                format!("{what}: {}", unwell.join("; "))
            });
            let last = lock(&self.inner.last_error).clone();
            match (nodes, last) {
                (Some(nodes), Some(last)) => Some(format!("{nodes}; last error: {last}")),
                (nodes, last) => nodes.or(last),
            }
        };
        Health {
            layer: if self.inner.mode == Mode::Cluster {
                "redis-cluster"
            } else {
                "redis"
            },
            ok,
            detail,
        }
    }

    pub(super) fn stored_rooms(&self) -> usize {
        lock(&self.inner.local).len()
    }

    /// Whether Redis answered the last command it was sent.
    fn is_answering(&self) -> bool {
        self.inner.answering.load(Ordering::Relaxed)
    }

    /// Subscribes to `room`'s channel; while Redis is up, waits until the
    /// subscription is confirmed and the room's place in its id sequence
    /// is known (so no message published after the join is missed).
    async fn subscribe_room(&self, room: &RoomName) {
        let inner = &self.inner;
        if !inner.up.load(Ordering::Relaxed) || !self.is_answering() {
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
        let names = inner.keys.room(room);
        let (last_id, epoch, history, members): (u64, String, Vec<Entry>, Vec<String>) = inner
            .snapshot_script
            .key(names.seq)
            .key(names.epoch)
            .key(names.log)
            .key(names.presence)
            .arg(unix_millis())
            .arg(self.new_epoch())
            .arg(self.ttl_secs())
            .arg(inner.history_len)
            .invoke_async(&mut conn)
            .await
            .map_err(|err| self.failed("read the room", &err))?;
        // Newest first from Redis; oldest first for the joiner.
        let history = history
            .iter()
            .rev()
            .filter_map(|raw| entry(raw).and_then(|(_, json)| parse_entry(json)))
            .collect();
        Ok(Snapshot {
            last_id,
            epoch,
            history,
            members: unique_names(&members),
        })
    }

    /// The last moment, on Redis's clock (unix ms), at which a publish
    /// sent now may still run: before the command times out here, with a
    /// margin for the reply's way back. 0 (no deadline) until Redis's
    /// clock is known.
    fn deadline(&self) -> u64 {
        let offset = self.inner.clock_offset_ms.load(Ordering::Relaxed);
        if offset == i64::MIN {
            return 0;
        }
        let timeout = self.timeout();
        let margin = DEADLINE_MARGIN.min(timeout / 4);
        let margin = u64::try_from(timeout.saturating_sub(margin).as_millis()).unwrap_or(0);
        unix_millis()
            .saturating_add_signed(offset)
            .saturating_add(margin)
    }

    /// Learns how far Redis's clock is from ours (for publish deadlines).
    async fn measure_clock(&self) -> Result<(), redis::RedisError> {
        let mut conn = self.inner.conn.clone();
        let before = unix_millis();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut conn).await?;
        let after = unix_millis();
        let redis_ms = secs.saturating_mul(1000).saturating_add(micros / 1000);
        let local_ms = before + (after - before) / 2;
        let offset = i64::try_from(redis_ms).unwrap_or(i64::MAX)
            - i64::try_from(local_ms).unwrap_or(i64::MAX);
        self.inner.clock_offset_ms.store(offset, Ordering::Relaxed);
        Ok(())
    }

    /// The longest wait for a Redis command (see [`RedisConfig::timeout`]).
    fn timeout(&self) -> Duration {
        self.inner.config.timeout
    }

    /// Runs one step of an operation that must end by `budget`; past it,
    /// records Redis as not answering (`/healthz` 503 until the probe gets
    /// an answer) and gives up on the step.
    async fn within<T>(
        &self,
        budget: Instant,
        what: &str,
        step: impl Future<Output = T>,
    ) -> Option<T> {
        if let Ok(done) = tokio::time::timeout_at(budget, step).await {
            return Some(done);
        }
        let err = redis::RedisError::from(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer within {:?}", self.timeout()),
        ));
        self.failed(what, &err);
        None
    }

    /// A fresh epoch name, unique across instances and restarts.
    fn new_epoch(&self) -> String {
        format!("{}.{:x}", self.inner.node, unix_millis())
    }

    /// How long a room's keys live without a message, in seconds.
    fn ttl_secs(&self) -> u64 {
        self.inner.config.room_ttl.as_secs().max(1)
    }

    /// Records a failed command and turns it into the error a client sees.
    /// A failure marks Redis as not answering (`/healthz` 503) until the
    /// probe gets an answer, except a slot on the move, which is no fault.
    fn failed(&self, what: &str, err: &redis::RedisError) -> LayerError {
        if err.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::TryAgain) {
            // TRYAGAIN: the room's slot is moving between masters (its
            // keys are split, for a moment). Redis answers; only this
            // room's writes wait, so the instance stays healthy.
            debug!(%err, "Redis: {what} met a slot on the move");
            return LayerError::unavailable_because(
                "the room is moving between Redis nodes",
                err.clone(),
            );
        }
        let reason = format!("Redis: {what} failed: {err}");
        self.warn_failed(&format!("{what} failed"), err);
        *lock(&self.inner.last_error) = Some(reason);
        self.inner.answering.store(false, Ordering::Relaxed);
        LayerError::unavailable_because(
            "the server cannot reach its message bus (Redis)",
            err.clone(),
        )
    }

    /// Logs a failed command, unless one was logged moments ago: then it
    /// is counted into the next line logged.
    fn warn_failed(&self, what: &str, err: &redis::RedisError) {
        if let Some(held_back) = self.inner.failures_logged.admit(std::time::Instant::now()) {
            if held_back == 0 {
                warn!(%err, "Redis: {what}");
            } else {
                warn!(%err, held_back, "Redis: {what} (and {held_back} other failed commands since the last such line)");
            }
        }
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

/// How many commands one operation (the room list, the heartbeat) keeps in
/// flight at once.
const CONCURRENT_COMMANDS: usize = 32;

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
