//! The pub/sub pump: the one task that owns this instance's pub/sub
//! connections (one to the Redis, or one per master of a cluster), keeps
//! one subscription per room with local members on the shard that owns
//! the room, and hands what arrives to the local fan-out in id order.
//!
//! Zero loss for live members: the pump knows, per room, the last message
//! id it delivered. Whenever the room's feed may have a hole (the
//! connection dropped, the master failed over, Redis unsubscribed us
//! because the slot moved, or simply an id arrived that is not the next
//! one), it reads the room's history after that id (an exclusive `XRANGE`)
//! and delivers what is there, in order, before anything newer. Messages
//! that arrive live meanwhile are held and merged; ids decide what is a
//! duplicate. What history no longer holds is reported to typed members
//! as a `gap` event. Rooms whose feed never broke cost nothing extra.
//!
//! Every Redis round trip (connecting, subscribing, reading history,
//! reading the cluster's slot map) runs as a future the loop polls, so
//! one slow shard never holds up delivery on the others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chat_protocol::{GapEvent, RoomName, ServerEvent, unix_millis};
use futures_util::future::BoxFuture;
use futures_util::stream::{FuturesUnordered, StreamExt};
use redis::aio::{AsyncPushSender, MultiplexedConnection, SendError};
use redis::{
    AsyncConnectionConfig, Client, ConnectionAddr, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::commands::PubSubTarget;
use super::keys::{Entry, Mode, entry, entry_frames, parse_envelope, slot};
use super::{RECONNECT_MAX, RECONNECT_MIN, RedisLayer};
use crate::frames::Frames;
use crate::sync::lock;

/// What the pump is asked to do with subscriptions.
#[derive(Debug)]
pub(super) enum SubCommand {
    /// Subscribe to a room's channel; confirm once the room is live.
    Subscribe(RoomName, Option<oneshot::Sender<()>>),
    /// Unsubscribe, unless the room has local members again.
    Unsubscribe(RoomName),
}

/// History entries read per catch-up round trip: at most a few MiB even
/// with the largest messages.
const CATCH_UP_BATCH: usize = 100;

/// Live messages held while catch-ups run, in bytes, all rooms together;
/// past this, newer ones are dropped from the hold and read from history
/// by another round instead.
const HOLD_BYTES: usize = 8 * 1024 * 1024;

/// How often the pump retries what failed (a connection, a subscription,
/// a history read), at most.
const TICK: Duration = Duration::from_millis(100);

/// A shard's address.
type Addr = (String, u16);

/// What the pub/sub connections hand the pump: pushes waiting to be
/// handled, bounded in bytes. The connections' readers cannot wait (the
/// push sender is synchronous), so at the bound a live message is dropped
/// instead of queued, and its room is noted: the pump then reads the room's
/// history after the last id it delivered, as after any interruption. The
/// zero-loss contract holds; only memory stops growing.
#[derive(Debug)]
pub(super) struct Inbound {
    /// Bytes of the messages queued now.
    bytes: AtomicUsize,
    /// The bound on `bytes`.
    limit: usize,
    /// Channels whose live messages were dropped at the bound (at most
    /// one entry per subscribed room).
    dropped: Mutex<HashSet<Vec<u8>>>,
    /// Wakes the pump when `dropped` gains a channel.
    wake: Notify,
}

impl Inbound {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            limit,
            dropped: Mutex::new(HashSet::new()),
            wake: Notify::new(),
        }
    }
}

/// A push and what it counts in [`Inbound::bytes`].
type Queued = (u64, PushInfo, usize);

/// Tags each push with the connection it came from, and keeps the queue
/// to the pump within its byte bound.
struct Tagged {
    serial: u64,
    tx: mpsc::UnboundedSender<Queued>,
    inbound: Arc<Inbound>,
}

impl AsyncPushSender for Tagged {
    fn send(&self, info: PushInfo) -> Result<(), SendError> {
        let size = match (&info.kind, info.data.first(), info.data.get(1)) {
            (
                PushKind::Message | PushKind::SMessage,
                Some(Value::BulkString(channel)),
                Some(Value::BulkString(payload)),
            ) => {
                let size = channel.len() + payload.len();
                let queued = self.inbound.bytes.fetch_add(size, Ordering::Relaxed);
                if queued + size > self.inbound.limit {
                    self.inbound.bytes.fetch_sub(size, Ordering::Relaxed);
                    if lock(&self.inbound.dropped).insert(channel.clone()) {
                        self.inbound.wake.notify_one();
                    }
                    return Ok(());
                }
                size
            }
            // Everything else is small and rare (connection events).
            _ => 0,
        };
        self.tx.send((self.serial, info, size)).map_err(|_| {
            self.inbound.bytes.fetch_sub(size, Ordering::Relaxed);
            SendError
        })
    }
}

/// One shard's pub/sub connection.
enum Shard {
    Connecting,
    Up {
        serial: u64,
        conn: MultiplexedConnection,
    },
    Down {
        retry_at: Instant,
        delay: Duration,
    },
}

/// The pump's view of one room with local members.
// The flags are independent steps of one room's life (a subscription and a
// history read may both be under way while a retry is due).
#[allow(clippy::struct_excessive_bools)]
#[derive(Default)]
struct Room {
    /// The last id delivered here; `None` until the room is open.
    last: Option<u64>,
    /// The connection holding the room's subscription.
    on: Option<u64>,
    subscribing: bool,
    /// Redis dropped one of the room's subscriptions while another was
    /// being made: the one being made may be the one dropped (accepted,
    /// then the slot moved before the pump saw the answer), so it does not
    /// count; the room subscribes again.
    dropped_while_subscribing: bool,
    catching_up: bool,
    /// Another catch-up is needed once the running one ends.
    again: bool,
    /// A failed step to retry at the next tick.
    retry: bool,
    /// Live messages waiting for the catch-up, by id.
    held: BTreeMap<u64, Frames>,
    held_bytes: usize,
    /// Joins waiting for the room to be live.
    acks: Vec<oneshot::Sender<()>>,
}

/// What a history read found.
struct CatchUp {
    /// The room's last id.
    seq: u64,
    /// Entries after the id asked for, oldest first.
    entries: Vec<Entry>,
}

/// A finished round trip.
enum Done {
    Connected {
        addr: Addr,
        serial: u64,
        result: Result<MultiplexedConnection, String>,
    },
    Subscribed {
        room: RoomName,
        serial: u64,
        result: Result<(), String>,
    },
    CaughtUp {
        room: RoomName,
        result: Result<CatchUp, redis::RedisError>,
    },
    Topology(Result<Vec<(u16, u16, Addr)>, String>),
    /// A shard's answer to the health ping (on its pub/sub connection).
    Pinged {
        addr: Addr,
        serial: u64,
        result: Result<(), String>,
    },
    Nothing,
}

struct Pump {
    layer: RedisLayer,
    mode: Mode,
    target: PubSubTarget,
    pushes: mpsc::UnboundedSender<Queued>,
    inbound: Arc<Inbound>,
    /// Bytes held by every room's catch-up together (see [`HOLD_BYTES`]).
    held_bytes: usize,
    shards: HashMap<Addr, Shard>,
    /// Cluster: which master owns which slots. Single: empty.
    slots: Vec<(u16, u16, Addr)>,
    topology_wanted: bool,
    topology_running: bool,
    next_serial: u64,
    rooms: HashMap<RoomName, Room>,
    work: FuturesUnordered<BoxFuture<'static, Done>>,
    /// Something failed and waits for the next tick.
    retry: bool,
    /// Each shard's last health ping.
    pings: HashMap<Addr, Ping>,
    /// When the shards are pinged next.
    next_ping: Instant,
}

/// A shard's health ping: sent every [`PING_EVERY`] on its pub/sub
/// connection, so `/healthz` can say which master does not answer.
struct Ping {
    /// The connection it went out on.
    serial: u64,
    pending: bool,
    /// Why the last one failed.
    failed: Option<String>,
}

/// How often every shard is pinged.
const PING_EVERY: Duration = Duration::from_secs(1);

impl RedisLayer {
    /// Runs the pub/sub connections until `shutdown`; `ready` fires once
    /// they are all up the first time.
    pub(super) async fn pump(
        self,
        target: PubSubTarget,
        mut commands: mpsc::UnboundedReceiver<SubCommand>,
        shutdown: CancellationToken,
        ready: oneshot::Sender<()>,
    ) {
        let (pushes_tx, mut pushes) = mpsc::unbounded_channel::<Queued>();
        let inbound = Arc::clone(&self.inner.inbound);
        let mut pump = Pump {
            mode: self.inner.mode,
            layer: self,
            target,
            pushes: pushes_tx,
            inbound: Arc::clone(&inbound),
            held_bytes: 0,
            shards: HashMap::new(),
            slots: Vec::new(),
            topology_wanted: true,
            topology_running: false,
            next_serial: 0,
            rooms: HashMap::new(),
            work: FuturesUnordered::new(),
            retry: true,
            pings: HashMap::new(),
            next_ping: Instant::now(),
        };
        let mut ready = Some(ready);
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                Some((serial, push, size)) = pushes.recv() => {
                    inbound.bytes.fetch_sub(size, Ordering::Relaxed);
                    pump.on_push(serial, &push);
                }
                () = inbound.wake.notified() => pump.on_dropped(),
                Some(done) = pump.work.next(), if !pump.work.is_empty() => {
                    pump.on_done(done);
                    // A connection made or lost, or a ping answered, changes
                    // what `/healthz` says at once, not at the next tick.
                    pump.report_health();
                }
                command = commands.recv() => match command {
                    Some(command) => pump.on_command(command),
                    None => return,
                },
                _ = tick.tick() => {
                    pump.on_tick();
                    pump.ping_shards();
                    pump.report_health();
                }
            }
            let up = pump.is_up();
            if up != pump.layer.inner.up.load(Ordering::Relaxed) {
                pump.set_up(up);
            }
            if up {
                if let Some(ready) = ready.take() {
                    let _ = ready.send(());
                }
            }
        }
    }
}

impl Pump {
    /// The longest wait for a Redis command.
    fn timeout(&self) -> Duration {
        self.layer.inner.config.timeout
    }

    /// Whether every shard's connection is up.
    fn is_up(&self) -> bool {
        match self.mode {
            Mode::Single => self
                .shards
                .values()
                .any(|shard| matches!(shard, Shard::Up { .. })),
            Mode::Cluster => {
                !self.slots.is_empty()
                    && self
                        .slots
                        .iter()
                        .all(|(_, _, addr)| matches!(self.shards.get(addr), Some(Shard::Up { .. })))
            }
        }
    }

    fn set_up(&self, up: bool) {
        if up {
            if self.layer.inner.up.load(Ordering::Relaxed) {
                return;
            }
            info!("Redis pub/sub is up: rooms subscribed, catching up from history");
            self.layer.inner.up.store(true, Ordering::Relaxed);
            // Presence may have been lost with Redis: write it again now.
            let layer = self.layer.clone();
            tokio::spawn(async move { layer.refresh_presence().await });
        } else {
            self.layer.set_up(
                false,
                Some("the pub/sub connection to Redis was lost".to_owned()),
            );
        }
    }

    /// The shard that owns `room`, if known.
    fn owner(&self, room: &RoomName) -> Option<Addr> {
        match self.mode {
            Mode::Single => Some(single_addr(&self.target)),
            Mode::Cluster => {
                let slot = slot(&self.layer.inner.keys.channel(room));
                self.slots
                    .iter()
                    .find(|(start, end, _)| (*start..=*end).contains(&slot))
                    .map(|(_, _, addr)| addr.clone())
            }
        }
    }

    fn on_command(&mut self, command: SubCommand) {
        match command {
            SubCommand::Subscribe(room, ack) => {
                let state = self.rooms.entry(room.clone()).or_default();
                if let Some(ack) = ack {
                    if state.last.is_some() && state.on.is_some() {
                        let _ = ack.send(());
                    } else {
                        state.acks.push(ack);
                    }
                }
                self.ensure(&room);
            }
            SubCommand::Unsubscribe(room) => {
                if lock(&self.layer.inner.local).contains_key(&room) {
                    return;
                }
                let Some(state) = self.rooms.remove(&room) else {
                    return;
                };
                self.held_bytes -= state.held_bytes;
                let conn = state.on.and_then(|serial| self.conn_of(serial));
                if let Some(conn) = conn {
                    let command = redis::cmd(self.mode.unsubscribe())
                        .arg(self.layer.inner.keys.channel(&room))
                        .clone();
                    let timeout = self.timeout();
                    self.work.push(Box::pin(async move {
                        let mut conn = conn;
                        let _ = tokio::time::timeout(timeout, command.exec_async(&mut conn)).await;
                        Done::Nothing
                    }));
                }
            }
        }
    }

    fn conn_of(&self, serial: u64) -> Option<MultiplexedConnection> {
        self.shards.values().find_map(|shard| match shard {
            Shard::Up { serial: s, conn } if *s == serial => Some(conn.clone()),
            _ => None,
        })
    }

    /// Starts whatever `room` needs to get subscribed.
    fn ensure(&mut self, room: &RoomName) {
        let Some(state) = self.rooms.get(room) else {
            return;
        };
        if state.on.is_some() || state.subscribing {
            return;
        }
        let Some(addr) = self.owner(room) else {
            self.look_again();
            return;
        };
        match self.shards.get(&addr) {
            Some(Shard::Up { serial, conn }) => {
                let (serial, mut conn) = (*serial, conn.clone());
                let command = redis::cmd(self.mode.subscribe())
                    .arg(self.layer.inner.keys.channel(room))
                    .clone();
                let room = room.clone();
                if let Some(state) = self.rooms.get_mut(&room) {
                    state.subscribing = true;
                }
                let timeout = self.timeout();
                self.work.push(Box::pin(async move {
                    let result =
                        match tokio::time::timeout(timeout, command.exec_async(&mut conn)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(err)) => Err(err.to_string()),
                            Err(_) => Err("no answer".to_owned()),
                        };
                    Done::Subscribed {
                        room,
                        serial,
                        result,
                    }
                }));
            }
            _ => self.connect(addr),
        }
    }

    /// Opens a pub/sub connection to `addr` unless one is up, coming, or
    /// waiting for its retry.
    fn connect(&mut self, addr: Addr) {
        match self.shards.get(&addr) {
            Some(Shard::Up { .. } | Shard::Connecting) => return,
            Some(Shard::Down { retry_at, .. }) if Instant::now() < *retry_at => {
                self.retry = true;
                return;
            }
            _ => {}
        }
        self.shards.insert(addr.clone(), Shard::Connecting);
        self.next_serial += 1;
        let serial = self.next_serial;
        let info = self
            .target
            .info
            .clone()
            .set_addr(ConnectionAddr::Tcp(addr.0.clone(), addr.1));
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let info = info.set_redis_settings(settings);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout()))
            .set_response_timeout(Some(self.timeout()))
            .set_push_sender(Tagged {
                serial,
                tx: self.pushes.clone(),
                inbound: Arc::clone(&self.inbound),
            });
        let timeout = self.timeout();
        self.work.push(Box::pin(async move {
            let connect = async {
                let client = Client::open(info)?;
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await
            };
            let result = match tokio::time::timeout(timeout * 2, connect).await {
                Ok(Ok(conn)) => Ok(conn),
                Ok(Err(err)) => Err(err.to_string()),
                Err(_) => Err("no answer".to_owned()),
            };
            Done::Connected {
                addr,
                serial,
                result,
            }
        }));
    }

    fn on_push(&mut self, serial: u64, push: &PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => {
                let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
                    (push.data.first(), push.data.get(1))
                else {
                    return;
                };
                let Some(room) = std::str::from_utf8(channel)
                    .ok()
                    .and_then(|channel| self.layer.inner.keys.room_of_channel(channel))
                else {
                    return;
                };
                if let Some(frames) = parse_envelope(payload) {
                    self.on_live(&room, serial, frames);
                } else {
                    warn!(%room, "ignoring a malformed message on the room's channel");
                }
            }
            PushKind::Disconnection => self.lost(serial),
            PushKind::SUnsubscribe | PushKind::Unsubscribe => {
                // Either our own unsubscribe (the room is gone from
                // `rooms`), or Redis dropping a subscription: the slot
                // moved to another shard, or this node is no master now.
                let Some(Value::BulkString(channel)) = push.data.first() else {
                    return;
                };
                let Some(room) = std::str::from_utf8(channel)
                    .ok()
                    .and_then(|channel| self.layer.inner.keys.room_of_channel(channel))
                else {
                    return;
                };
                match self.rooms.get_mut(&room) {
                    Some(state) if state.on == Some(serial) => {
                        info!(%room, "Redis dropped the room's subscription (slot moved?): resubscribing");
                        state.on = None;
                        self.look_again();
                    }
                    Some(state) if state.subscribing => state.dropped_while_subscribing = true,
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Something may have moved (a connection dropped, a subscription was
    /// refused or dropped, a room has no known owner): retry what is
    /// pending at the next tick and, in a cluster, read the slot map again
    /// first. Any refusal counts (MOVED, ASK, CLUSTERDOWN, no answer):
    /// with a stale map, a retry would go to the same wrong master for
    /// ever. A map read while the masters still disagree (a reshard that
    /// told the old owner first) is stale too, and is read again after
    /// the next refusal, until they agree.
    fn look_again(&mut self) {
        if self.mode == Mode::Cluster {
            self.topology_wanted = true;
        }
        self.retry = true;
    }

    /// A shard's connection is gone: its rooms subscribe again (wherever
    /// their slot now lives) and catch up.
    fn lost(&mut self, serial: u64) {
        let Some(addr) = self.shards.iter().find_map(|(addr, shard)| match shard {
            Shard::Up { serial: s, .. } if *s == serial => Some(addr.clone()),
            _ => None,
        }) else {
            return;
        };
        warn!(shard = %format!("{}:{}", addr.0, addr.1), "lost a pub/sub connection to Redis; rooms on it will catch up from history");
        self.shards.insert(
            addr.clone(),
            Shard::Down {
                retry_at: Instant::now(),
                delay: RECONNECT_MIN,
            },
        );
        for state in self.rooms.values_mut() {
            if state.on == Some(serial) {
                state.on = None;
            }
        }
        self.look_again();
        self.connect(addr);
    }

    fn on_done(&mut self, done: Done) {
        match done {
            Done::Nothing => {}
            Done::Pinged {
                addr,
                serial,
                result,
            } => {
                if let Some(ping) = self.pings.get_mut(&addr) {
                    if ping.serial == serial {
                        ping.pending = false;
                        ping.failed = result.err();
                    }
                }
            }
            Done::Connected {
                addr,
                serial,
                result,
            } => match result {
                Ok(conn) => {
                    debug!(shard = %format!("{}:{}", addr.0, addr.1), "pub/sub connection up");
                    self.shards.insert(addr.clone(), Shard::Up { serial, conn });
                    let waiting: Vec<RoomName> = self
                        .rooms
                        .iter()
                        .filter(|(_, state)| state.on.is_none() && !state.subscribing)
                        .map(|(room, _)| room.clone())
                        .collect();
                    for room in waiting {
                        if self.owner(&room).as_ref() == Some(&addr) {
                            self.ensure(&room);
                        }
                    }
                }
                Err(reason) => {
                    let delay = match self.shards.get(&addr) {
                        Some(Shard::Down { delay, .. }) => (*delay * 2).min(RECONNECT_MAX),
                        _ => RECONNECT_MIN,
                    };
                    debug!(shard = %format!("{}:{}", addr.0, addr.1), %reason, "pub/sub connection failed");
                    *lock(&self.layer.inner.last_error) =
                        Some(format!("cannot connect to Redis: {reason}"));
                    self.shards.insert(
                        addr,
                        Shard::Down {
                            retry_at: Instant::now() + delay,
                            delay,
                        },
                    );
                    self.look_again();
                }
            },
            Done::Subscribed {
                room,
                serial,
                result,
            } => {
                let live = self.conn_of(serial).is_some();
                let Some(state) = self.rooms.get_mut(&room) else {
                    // Left while subscribing: the unsubscribe went out
                    // before the subscription existed; send it again.
                    if result.is_ok() && live {
                        self.rooms.insert(
                            room.clone(),
                            Room {
                                on: Some(serial),
                                ..Room::default()
                            },
                        );
                        self.on_command(SubCommand::Unsubscribe(room));
                    }
                    return;
                };
                state.subscribing = false;
                let dropped = std::mem::take(&mut state.dropped_while_subscribing);
                match result {
                    Ok(()) if dropped => {
                        debug!(%room, "a subscription was dropped while this one was made; subscribing again");
                        self.look_again();
                    }
                    Ok(()) if live => {
                        state.on = Some(serial);
                        self.start_catch_up(&room);
                    }
                    Ok(()) => self.retry = true,
                    Err(reason) => {
                        debug!(%room, %reason, "subscription refused; retrying");
                        self.look_again();
                    }
                }
            }
            Done::CaughtUp { room, result } => self.caught_up(&room, result),
            Done::Topology(result) => {
                self.topology_running = false;
                match result {
                    Ok(slots) if !slots.is_empty() => self.new_topology(slots),
                    Ok(_) => self.retry = true,
                    Err(reason) => {
                        debug!(%reason, "cannot read the cluster's slot map; retrying");
                        self.retry = true;
                    }
                }
            }
        }
    }

    /// Adopts a new slot map: one connection per master, rooms moved to
    /// their new owner.
    fn new_topology(&mut self, slots: Vec<(u16, u16, Addr)>) {
        self.topology_wanted = false;
        self.slots = slots;
        let masters: Vec<Addr> = self.slots.iter().map(|(_, _, a)| a.clone()).collect();
        // Connections to nodes that are no longer masters are closed.
        let gone: Vec<Addr> = self
            .shards
            .keys()
            .filter(|addr| !masters.contains(addr))
            .cloned()
            .collect();
        for addr in gone {
            if let Some(Shard::Up { serial, .. }) = self.shards.remove(&addr) {
                for state in self.rooms.values_mut() {
                    if state.on == Some(serial) {
                        state.on = None;
                    }
                }
            }
        }
        for addr in masters {
            self.connect(addr);
        }
        let rooms: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.ensure(&room);
        }
    }

    /// Pings every shard whose connection is up (once a second).
    fn ping_shards(&mut self) {
        let now = Instant::now();
        if now >= self.next_ping {
            self.next_ping = now + PING_EVERY;
            let timeout = self.timeout() / 2;
            for (addr, shard) in &self.shards {
                let Shard::Up { serial, conn } = shard else {
                    continue;
                };
                let ping = self.pings.entry(addr.clone()).or_insert(Ping {
                    serial: *serial,
                    pending: false,
                    failed: None,
                });
                if ping.serial != *serial {
                    *ping = Ping {
                        serial: *serial,
                        pending: false,
                        failed: None,
                    };
                }
                if ping.pending {
                    continue;
                }
                ping.pending = true;
                let (addr, serial, mut conn) = (addr.clone(), *serial, conn.clone());
                self.work.push(Box::pin(async move {
                    let ping = redis::cmd("PING");
                    let result =
                        match tokio::time::timeout(timeout, ping.exec_async(&mut conn)).await {
                            Ok(Ok(())) => Ok(()),
                            Ok(Err(err)) => Err(err.to_string()),
                            Err(_) => Err(format!("no answer within {timeout:?}")),
                        };
                    Done::Pinged {
                        addr,
                        serial,
                        result,
                    }
                }));
            }
        }
    }

    /// Publishes which shards are unwell for `/healthz`: not connected, or
    /// their last ping failed.
    fn report_health(&self) {
        let wanted: Vec<Addr> = match self.mode {
            Mode::Single => vec![single_addr(&self.target)],
            Mode::Cluster => {
                let mut masters: Vec<Addr> =
                    self.slots.iter().map(|(_, _, addr)| addr.clone()).collect();
                masters.sort();
                masters.dedup();
                masters
            }
        };
        let mut unwell = Vec::new();
        for addr in wanted {
            let name = format!("{}:{}", addr.0, addr.1);
            let problem = match self.shards.get(&addr) {
                Some(Shard::Up { serial, .. }) => self
                    .pings
                    .get(&addr)
                    .filter(|ping| ping.serial == *serial)
                    .and_then(|ping| ping.failed.clone()),
                Some(Shard::Connecting) => Some("connecting".to_owned()),
                Some(Shard::Down { .. }) | None => Some("no connection".to_owned()),
            };
            if let Some(problem) = problem {
                unwell.push(format!("{name}: {problem}"));
            }
        }
        let mut shared = lock(&self.layer.inner.unwell);
        if *shared != unwell {
            // Logged when the set of unwell shards changes, not each time
            // a down shard goes from "no connection" to "connecting" and
            // back (every retry): /healthz shows the current reason.
            let shard_of = |entry: &String| entry.split(": ").next().map(str::to_owned);
            let names: Vec<_> = unwell.iter().filter_map(shard_of).collect();
            let before: Vec<_> = shared.iter().filter_map(shard_of).collect();
            if !unwell.is_empty() && names != before {
                warn!(shards = ?unwell, "Redis shards unwell");
            }
            *shared = unwell;
        }
    }

    fn on_tick(&mut self) {
        if !self.retry && !self.topology_wanted {
            return;
        }
        self.retry = false;
        if self.mode == Mode::Cluster && self.topology_wanted && !self.topology_running {
            self.topology_running = true;
            let mut conn = self.layer.inner.conn.clone();
            let timeout = self.timeout();
            self.work.push(Box::pin(async move {
                let result = tokio::time::timeout(timeout, read_slots(&mut conn)).await;
                Done::Topology(match result {
                    Ok(result) => result,
                    Err(_) => Err("no answer".to_owned()),
                })
            }));
        }
        match self.mode {
            Mode::Single => self.connect(single_addr(&self.target)),
            Mode::Cluster => {
                let masters: Vec<Addr> = self.slots.iter().map(|(_, _, a)| a.clone()).collect();
                for addr in masters {
                    self.connect(addr);
                }
            }
        }
        let rooms: Vec<RoomName> = self.rooms.keys().cloned().collect();
        for room in rooms {
            self.ensure(&room);
            let retry = self
                .rooms
                .get_mut(&room)
                .filter(|state| state.retry && state.on.is_some())
                .map(|state| state.retry = false)
                .is_some();
            if retry {
                self.start_catch_up(&room);
            }
        }
    }

    /// A live message for `room` from connection `serial`.
    fn on_live(&mut self, room: &RoomName, serial: u64, frames: Frames) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.on != Some(serial) {
            return;
        }
        if frames.id == 0 {
            // Notices carry no id: nothing to order or to recover.
            self.layer.inner.registry.deliver(room, frames);
            return;
        }
        match state.last {
            Some(last) if !state.catching_up => {
                if frames.id <= last {
                    // Already delivered (by a catch-up).
                } else if frames.id == last + 1 {
                    self.deliver(room, frames);
                } else {
                    // A hole in the ids: fill it from history first.
                    hold(state, &mut self.held_bytes, frames);
                    self.start_catch_up(room);
                }
            }
            _ => hold(state, &mut self.held_bytes, frames),
        }
    }

    /// Live messages were dropped at the inbound queue's bound: their
    /// rooms read them from history.
    fn on_dropped(&mut self) {
        let channels = std::mem::take(&mut *lock(&self.inbound.dropped));
        let rooms: Vec<RoomName> = channels
            .iter()
            .filter_map(|channel| std::str::from_utf8(channel).ok())
            .filter_map(|channel| self.layer.inner.keys.room_of_channel(channel))
            .collect();
        if !rooms.is_empty() {
            debug!(
                rooms = rooms.len(),
                "the pump fell behind: live messages dropped, catching up from history"
            );
        }
        for room in rooms {
            let Some(state) = self.rooms.get_mut(&room) else {
                continue;
            };
            if state.catching_up {
                state.again = true;
            } else if state.last.is_some() && state.on.is_some() {
                self.start_catch_up(&room);
            }
            // A room still opening reads where it stands once subscribed:
            // what was dropped is before that.
        }
    }

    fn deliver(&mut self, room: &RoomName, frames: Frames) {
        let id = frames.id;
        self.layer.inner.registry.deliver(room, frames);
        if let Some(state) = self.rooms.get_mut(room) {
            state.last = Some(id);
        }
        if let Some(local) = lock(&self.layer.inner.local).get_mut(room) {
            local.progress.delivered(id);
        }
    }

    /// Tells typed members that `missed` messages after `after` are lost.
    fn gap(&mut self, room: &RoomName, after: u64, missed: u64) {
        warn!(%room, after, missed, "messages missed here are no longer in history: members are told");
        let event = ServerEvent::Gap(GapEvent {
            message: format!(
                "{missed} message{} of this room could not be delivered here (this server lost \
                 its connection to Redis and history no longer holds them); later messages follow",
                if missed == 1 { "" } else { "s" }
            ),
            room: room.clone(),
            missed,
            after_id: after,
            ts: unix_millis(),
        });
        // The id of the last missed message: a member whose welcome
        // already went past it skips the notice.
        let frames = Frames {
            id: after + missed,
            events: Utf8Bytes::from(event.to_json()),
            plain: None,
        };
        self.layer.inner.registry.deliver(room, frames);
        if let Some(state) = self.rooms.get_mut(room) {
            state.last = Some(after + missed);
        }
        if let Some(local) = lock(&self.layer.inner.local).get_mut(room) {
            local.progress.lost(after + 1..=after + missed);
        }
    }

    /// Reads history after the last id delivered (or, for a room being
    /// opened, only where the room stands).
    fn start_catch_up(&mut self, room: &RoomName) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        if state.catching_up {
            state.again = true;
            return;
        }
        state.catching_up = true;
        let after = state.last;
        let layer = self.layer.clone();
        let room = room.clone();
        self.work.push(Box::pin(async move {
            let result = layer.read_after(&room, after).await;
            Done::CaughtUp { room, result }
        }));
    }

    fn caught_up(&mut self, room: &RoomName, result: Result<CatchUp, redis::RedisError>) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        state.catching_up = false;
        let CatchUp { seq, entries } = match result {
            Ok(catch_up) => catch_up,
            Err(err) => {
                debug!(%room, %err, "cannot read the room's history yet; retrying");
                state.retry = true;
                self.retry = true;
                return;
            }
        };
        let Some(mut last) = state.last else {
            // Opening: the room's feed starts after `seq`, or earlier
            // where a member was welcomed or a message was published from
            // here before the subscription was made (`opening_point`); the
            // ids in between are read from history first.
            let start = lock(&self.layer.inner.local)
                .get_mut(room)
                .map_or(seq, |local| {
                    let start = local.progress.opening_point(seq);
                    local.progress.opened_after(start);
                    start
                });
            state.last = Some(start);
            if start < seq {
                self.start_catch_up(room);
            } else {
                self.drain_held(room);
            }
            return;
        };
        let full = entries.len() >= CATCH_UP_BATCH;
        let mut recovered = 0u64;
        for raw in &entries {
            let Some((id, json)) = entry(raw) else {
                continue;
            };
            if id <= last {
                continue;
            }
            if id > last + 1 {
                self.gap(room, last, id - last - 1);
            }
            match entry_frames(json) {
                Some(frames) => self.deliver(room, frames),
                None => self.gap(room, id - 1, 1),
            }
            last = id;
            recovered += 1;
        }
        if recovered > 0 {
            info!(%room, recovered, "caught up from history after an interruption");
        }
        if full {
            self.start_catch_up(room);
            return;
        }
        // History is read up to `seq`: what it lacks up to the first held
        // message (or `seq`) is lost.
        let next_held = self
            .rooms
            .get(room)
            .and_then(|state| state.held.keys().next().copied());
        let upto = next_held.map_or(seq, |held| seq.min(held - 1));
        if upto > last {
            self.gap(room, last, upto - last);
        }
        self.drain_held(room);
    }

    /// Delivers the held live messages after the last id, then confirms
    /// the waiting joins, then runs the catch-up asked for meanwhile.
    fn drain_held(&mut self, room: &RoomName) {
        let Some(state) = self.rooms.get_mut(room) else {
            return;
        };
        let held = std::mem::take(&mut state.held);
        self.held_bytes -= std::mem::take(&mut state.held_bytes);
        let acks = std::mem::take(&mut state.acks);
        let again = std::mem::take(&mut state.again);
        let mut last = state.last.unwrap_or(0);
        for (id, frames) in held {
            if id <= last {
                continue;
            }
            if id > last + 1 {
                self.gap(room, last, id - last - 1);
            }
            self.deliver(room, frames);
            last = id;
        }
        for ack in acks {
            let _ = ack.send(());
        }
        if again {
            self.start_catch_up(room);
        }
    }
}

/// Holds a live message until the room's catch-up ends; past the hold's
/// budget (`total`: every room's held bytes), the newest are dropped and
/// read from history by another round.
fn hold(state: &mut Room, total: &mut usize, frames: Frames) {
    let size = frames.events.len() + frames.plain.as_ref().map_or(0, |plain| plain.len());
    if *total + size > HOLD_BYTES {
        state.again = true;
        return;
    }
    *total += size;
    state.held_bytes += size;
    if let Some(replaced) = state.held.insert(frames.id, frames) {
        let size = replaced.events.len() + replaced.plain.as_ref().map_or(0, |plain| plain.len());
        *total -= size;
        state.held_bytes -= size;
    }
}

/// The one Redis's address.
fn single_addr(target: &PubSubTarget) -> Addr {
    match target.info.addr() {
        ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } => {
            (host.clone(), *port)
        }
        _ => (String::new(), 0),
    }
}

/// The cluster's masters and their slot ranges (`CLUSTER SLOTS`).
async fn read_slots(conn: &mut super::Commands) -> Result<Vec<(u16, u16, Addr)>, String> {
    let value: Value = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(conn)
        .await
        .map_err(|err| err.to_string())?;
    let Value::Array(ranges) = value else {
        return Err("unexpected CLUSTER SLOTS reply".to_owned());
    };
    let mut slots = Vec::new();
    for range in ranges {
        let Value::Array(parts) = range else { continue };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            continue;
        };
        let host = match master.first() {
            Some(Value::BulkString(host)) => String::from_utf8_lossy(host).into_owned(),
            Some(Value::SimpleString(host)) => host.clone(),
            _ => continue,
        };
        let Some(Value::Int(port)) = master.get(1) else {
            continue;
        };
        let (Ok(start), Ok(end), Ok(port)) = (
            u16::try_from(*start),
            u16::try_from(*end),
            u16::try_from(*port),
        ) else {
            continue;
        };
        slots.push((start, end, (host, port)));
    }
    Ok(slots)
}

impl RedisLayer {
    /// The room's last id and its history entries after `after` (none
    /// when `after` is `None`), raising the id sequence to what this
    /// instance delivered or published if a failover lost increments.
    async fn read_after(
        &self,
        room: &RoomName,
        after: Option<u64>,
    ) -> Result<CatchUp, redis::RedisError> {
        let inner = &self.inner;
        let names = inner.keys.room(room);
        let floor = lock(&inner.local)
            .get(room)
            .map_or(0, |state| state.progress.floor());
        let mut invocation = inner.catch_up_script.prepare_invoke();
        invocation.key(names.seq).key(names.epoch).key(names.log);
        let migrate = inner.mode == Mode::Single;
        if migrate {
            for key in inner.keys.legacy(room) {
                invocation.key(key);
            }
        }
        invocation
            .arg(after.map(|id| id.to_string()).unwrap_or_default())
            .arg(CATCH_UP_BATCH)
            .arg(floor)
            .arg(self.ttl_secs())
            .arg(if migrate { "1" } else { "0" });
        let mut conn = inner.conn.clone();
        let (seq, entries): (u64, Vec<Entry>) = invocation.invoke_async(&mut conn).await?;
        Ok(CatchUp { seq, entries })
    }
}
