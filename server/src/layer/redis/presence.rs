//! Who is in a room, across instances, and whether Redis answers.
//!
//! Each instance writes its members' presence entries with an expiry and
//! refreshes them from a heartbeat, so that a crashed instance's members
//! disappear within the presence TTL. A probe pings Redis every second, so
//! that a hung Redis (one that accepts connections but never answers) is
//! reported by `/healthz` within a couple of seconds even when nobody
//! publishes.

use std::sync::LazyLock;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_protocol::{RoomName, ServerEvent, unix_millis};
use futures_util::StreamExt;
use redis::{Script, ScriptInvocation};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::commands::Commands;
use super::keys::{PRESENCE_LUA, REFRESH_ROOM_LUA, envelope, owner_member, presence_member};
use super::{CONCURRENT_COMMANDS, RedisLayer};
use crate::layer::presence_event;
use crate::sync::lock;

/// The presence update script, hashed once.
static PRESENCE: LazyLock<Script> = LazyLock::new(|| Script::new(PRESENCE_LUA));
/// The room heartbeat script, hashed once.
static REFRESH_ROOM: LazyLock<Script> = LazyLock::new(|| Script::new(REFRESH_ROOM_LUA));

/// One command of a heartbeat.
enum Beat {
    Script(ScriptInvocation<'static>),
    Command(redis::Cmd),
    Pipeline(redis::Pipeline),
}

impl Beat {
    async fn run(self, conn: &mut Commands) -> redis::RedisResult<()> {
        match self {
            Self::Script(script) => script.invoke_async(conn).await,
            Self::Command(cmd) => cmd.exec_async(conn).await,
            Self::Pipeline(pipe) => pipe.exec_async(conn).await,
        }
    }
}

/// How often the probe asks Redis the time.
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl RedisLayer {
    /// Records presence and tells the room (best effort: a failure here
    /// is healed by the next heartbeat, and only costs a notice).
    pub(super) async fn announce(&self, room: &RoomName, user: &str, joined: bool) {
        let inner = &self.inner;
        let member = presence_member(&inner.node, user);
        let (remove, add) = if joined {
            (None, Some(member.as_str()))
        } else {
            (Some(member.as_str()), None)
        };
        let event = presence_event(joined, room, user);
        let mut result = self
            .update_presence(room, remove, add, std::slice::from_ref(&event))
            .await;
        if joined && result.is_ok() {
            let mut conn = inner.conn.clone();
            result = redis::cmd("ZADD")
                .arg(inner.keys.rooms())
                .arg(self.expiry())
                .arg(room.as_str())
                .exec_async(&mut conn)
                .await;
        }
        if let Err(err) = result {
            debug!(%room, user, %err, "presence update failed; the heartbeat will retry");
        }
    }

    /// Removes the presence entry `remove`, adds `add` with a fresh expiry,
    /// and publishes `events` to the room: one script, so one command on
    /// the room's slot (see `PRESENCE_LUA`).
    pub(super) async fn update_presence(
        &self,
        room: &RoomName,
        remove: Option<&str>,
        add: Option<&str>,
        events: &[ServerEvent],
    ) -> redis::RedisResult<()> {
        let inner = &self.inner;
        let names = inner.keys.room(room);
        let mut invocation = PRESENCE.key(&names.presence);
        invocation
            .key(&names.channel)
            .arg(inner.mode.publish())
            .arg(self.expiry())
            .arg(remove.unwrap_or(""))
            .arg(add.unwrap_or(""));
        for event in events {
            invocation.arg(envelope(event));
        }
        let mut conn = inner.conn.clone();
        invocation.invoke_async(&mut conn).await
    }

    /// The expiry of a presence entry written now.
    pub(super) fn expiry(&self) -> u64 {
        let ttl = u64::try_from(self.inner.config.presence_ttl.as_millis()).unwrap_or(u64::MAX);
        unix_millis().saturating_add(ttl)
    }

    /// Keeps this instance's presence entries alive.
    pub(super) async fn heartbeat(self, shutdown: CancellationToken) {
        let period = (self.inner.config.presence_ttl / 3).max(Duration::from_millis(100));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
            self.refresh_presence().await;
        }
    }

    /// Writes every local member's presence entry with a fresh expiry,
    /// drops expired entries (a crashed instance's) and refreshes the name
    /// owners: one script per room (its keys share a slot), an `EXPIRE`
    /// of its topic, then one command for the room index.
    pub(super) async fn refresh_presence(&self) {
        let inner = &self.inner;
        let expiry = self.expiry();
        let now = unix_millis();
        let presence_ttl_secs = inner.config.presence_ttl.as_secs().max(1) * 4;
        let room_ttl_secs = inner.config.room_ttl.as_secs().max(1);
        let owner_lifetime_ms = self.owner_lifetime_ms();
        let mut commands = Vec::new();
        let mut index = redis::pipe();
        {
            let local = lock(&inner.local);
            for (room, state) in local.iter() {
                let names = state.names.names();
                let mut refresh = REFRESH_ROOM.key(inner.keys.room(room).presence);
                refresh
                    .arg(now)
                    .arg(expiry)
                    .arg(presence_ttl_secs)
                    .arg(owner_lifetime_ms)
                    .arg(names.len());
                for name in names {
                    refresh.arg(presence_member(&inner.node, name));
                }
                for (folded, identity) in state.names.holders() {
                    refresh
                        .key(inner.keys.owner(room, folded))
                        .arg(owner_member(&identity.to_string(), &inner.node));
                }
                commands.push(Beat::Script(refresh));
                // EXPIRE creates nothing, so it needs no script: a resend
                // after an ASK cannot leave a key on both sides.
                let mut topic = redis::cmd("EXPIRE");
                topic.arg(inner.keys.topic(room)).arg(room_ttl_secs);
                commands.push(Beat::Command(topic));
                index
                    .zadd(inner.keys.rooms(), room.as_str(), expiry)
                    .ignore();
            }
        }
        // One key, so a pipeline is safe here: an ASK for it means the key
        // has left the migrating master, and the resend runs wholly on the
        // importing one.
        index.zrembyscore(inner.keys.rooms(), "-inf", now).ignore();
        commands.push(Beat::Pipeline(index));
        let failures = futures_util::stream::iter(commands.into_iter().map(|command| {
            let mut conn = inner.conn.clone();
            async move { command.run(&mut conn).await }
        }))
        .buffer_unordered(CONCURRENT_COMMANDS)
        .filter_map(|result| async move { result.err() })
        .collect::<Vec<_>>()
        .await;
        if let Some(err) = failures.first() {
            debug!(%err, failed = failures.len(), "presence heartbeat failed; retrying at the next beat");
        }
    }

    /// Pings Redis every second: a command that fails or times out marks
    /// the layer unhealthy (`/healthz` 503) until one succeeds again.
    pub(super) async fn probe(self, shutdown: CancellationToken) {
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(PROBE_EVERY) => {}
            }
            // TIME rather than PING: it also keeps the clock offset that
            // publish deadlines use up to date.
            // Half the command timeout: a Redis this slow to answer the
            // cheapest command is as good as hung, and is reported before
            // publishes start failing.
            let probe_timeout = self.timeout() / 2;
            let ping = tokio::time::timeout(probe_timeout, self.measure_clock()).await;
            match ping {
                Ok(Ok(())) => {
                    if !self.inner.answering.swap(true, Ordering::Relaxed) {
                        info!("Redis answers again");
                    }
                }
                Ok(Err(err)) => {
                    self.failed("health check", &err);
                }
                Err(_) => {
                    let err = redis::RedisError::from(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {probe_timeout:?}"),
                    ));
                    self.failed("health check", &err);
                }
            }
        }
    }
}
