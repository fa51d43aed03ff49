//! Who is in a room, across instances: each instance writes its members'
//! presence entries with an expiry and refreshes them from a heartbeat, so
//! that a crashed instance's members disappear within the presence TTL.

use std::time::Duration;

use chat_protocol::{RoomName, unix_millis};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::RedisLayer;
use super::keys::{envelope, presence_member};
use crate::layer::presence_event;
use crate::rooms::lock;

impl RedisLayer {
    /// Records presence and tells the room (best effort: a failure here
    /// is healed by the next heartbeat, and only costs a notice).
    pub(super) async fn announce(&self, room: &RoomName, user: &str, joined: bool) {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let member = presence_member(&inner.node, user);
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
    /// drops expired entries (a crashed instance's).
    pub(super) async fn refresh_presence(&self) {
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
                    pipe.zadd(&presence, presence_member(&inner.node, name), expiry)
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
