//! Who is in a room, across instances, and whether Redis answers.
//!
//! Each instance writes its members' presence entries with an expiry and
//! refreshes them from a heartbeat, so that a crashed instance's members
//! disappear within the presence TTL. A probe pings Redis every second, so
//! that a hung Redis (one that accepts connections but never answers) is
//! reported by `/healthz` within a couple of seconds even when nobody
//! publishes.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_protocol::{RoomName, unix_millis};
use futures_util::StreamExt;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use super::keys::{envelope, presence_member};
use super::{CONCURRENT_COMMANDS, RedisLayer};
use crate::layer::presence_event;
use crate::sync::lock;

/// How often the probe asks Redis the time.
const PROBE_EVERY: Duration = Duration::from_secs(1);

impl RedisLayer {
    /// Records presence and tells the room (best effort: a failure here
    /// is healed by the next heartbeat, and only costs a notice).
    pub(super) async fn announce(&self, room: &RoomName, user: &str, joined: bool) {
        let inner = &self.inner;
        let member = presence_member(&inner.node, user);
        let names = inner.keys.room(room);
        // One pipeline per hash slot: the room's keys and channel, then the
        // room index.
        let mut pipe = redis::pipe();
        if joined {
            pipe.zadd(&names.presence, member, self.expiry()).ignore();
        } else {
            pipe.zrem(&names.presence, member).ignore();
        }
        pipe.cmd(inner.mode.publish())
            .arg(&names.channel)
            .arg(envelope(&presence_event(joined, room, user)))
            .ignore();
        let mut conn = inner.conn.clone();
        let mut result: Result<(), _> = pipe.query_async(&mut conn).await;
        if joined && result.is_ok() {
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

    /// Writes every local member's presence entry with a fresh expiry, and
    /// drops expired entries (a crashed instance's): one pipeline per room
    /// (its keys share a slot), then one for the room index.
    pub(super) async fn refresh_presence(&self) {
        let inner = &self.inner;
        let expiry = self.expiry();
        let now = unix_millis();
        let ttl_secs = inner.config.presence_ttl.as_secs().max(1) * 4;
        let mut index = redis::pipe();
        let mut per_room = Vec::new();
        {
            let local = lock(&inner.local);
            for (room, state) in local.iter() {
                let presence = inner.keys.room(room).presence;
                let mut pipe = redis::pipe();
                for name in state.names.names() {
                    pipe.zadd(&presence, presence_member(&inner.node, name), expiry)
                        .ignore();
                }
                pipe.zrembyscore(&presence, "-inf", now).ignore();
                pipe.expire(&presence, i64::try_from(ttl_secs).unwrap_or(i64::MAX))
                    .ignore();
                // Name owners and the topic share the room's slot.
                self.refresh_owners(&mut pipe, room, &state.names, expiry);
                per_room.push(pipe);
                index
                    .zadd(inner.keys.rooms(), room.as_str(), expiry)
                    .ignore();
            }
        }
        index.zrembyscore(inner.keys.rooms(), "-inf", now).ignore();
        per_room.push(index);
        let failures = futures_util::stream::iter(per_room.into_iter().map(|pipe| {
            let mut conn = inner.conn.clone();
            async move { pipe.query_async::<()>(&mut conn).await }
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
