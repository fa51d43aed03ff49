//! Display names and topics across instances (issue #13).
//!
//! Names: each instance checks its own members first (`NameCounts`), then
//! claims the name in Redis with one atomic script (`CLAIM_NAME_LUA`) on the
//! name's owner set `P:owner:{room}:{folded name}`, whose entries are
//! `{identity}:{node}` scored by expiry. The heartbeat refreshes the
//! entries of local holders, like presence, so a crashed instance's names
//! free themselves within the presence TTL. Only the identity (the hash of
//! the client's key) reaches Redis, never the key.
//!
//! While Redis cannot be reached, a join is not refused for its name
//! (nobody can publish then anyway); the name is checked against this
//! instance's members only.
//!
//! Topics: `P:topic:{room}`, a string kept as long as the room's other
//! keys, published to the room as a notice.

use std::sync::LazyLock;

use chat_protocol::{RoomName, unix_millis};
use redis::{AsyncCommands, Script};
use tracing::warn;

use super::RedisLayer;
use super::keys::{CLAIM_NAME_LUA, TOPIC_LUA, envelope, owner_member};
use crate::layer::{LayerError, topic_event};
use crate::names::{Identity, NameTaken, name_fold};
use crate::sync::lock;

/// The claim script, hashed once.
static CLAIM_NAME: LazyLock<Script> = LazyLock::new(|| Script::new(CLAIM_NAME_LUA));
/// The topic script, hashed once.
static TOPIC: LazyLock<Script> = LazyLock::new(|| Script::new(TOPIC_LUA));

impl RedisLayer {
    /// How long an owner set lives without a heartbeat (ms).
    pub(super) fn owner_lifetime_ms(&self) -> u64 {
        u64::try_from(self.inner.config.presence_ttl.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_mul(4)
            .max(1000)
    }

    /// Claims `name` in `room` for `identity` across instances.
    ///
    /// # Errors
    ///
    /// [`LayerError::NameTaken`] when a live entry of another identity
    /// holds it. A Redis failure is logged and lets the claim through.
    pub(super) async fn claim_name(
        &self,
        room: &RoomName,
        name: &str,
        identity: &Identity,
    ) -> Result<(), LayerError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let claimed: Result<u8, _> = CLAIM_NAME
            .key(inner.keys.owner(room, &name_fold(name)))
            .arg(unix_millis())
            .arg(identity.to_string())
            .arg(owner_member(&identity.to_string(), &inner.node))
            .arg(self.expiry())
            .arg(self.owner_lifetime_ms())
            .invoke_async(&mut conn)
            .await;
        match claimed {
            Ok(1) => Ok(()),
            Ok(_) => Err(NameTaken {
                name: name.to_owned(),
            }
            .into()),
            Err(err) => {
                warn!(%room, %err, "Redis: cannot check a name; only this instance's members were checked");
                Ok(())
            }
        }
    }

    /// Removes this instance's entry of `identity` for `name` (best
    /// effort: an entry left behind expires within the presence TTL).
    pub(super) async fn release_name(&self, room: &RoomName, name: &str, identity: &Identity) {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let result: Result<(), _> = conn
            .zrem(
                inner.keys.owner(room, &name_fold(name)),
                owner_member(&identity.to_string(), &inner.node),
            )
            .await;
        if let Err(err) = result {
            self.warn_failed(
                &format!("releasing a name in {room} failed; it expires by itself"),
                &err,
            );
        }
    }

    pub(in crate::layer) async fn name_free(
        &self,
        room: &RoomName,
        name: &str,
        identity: &Identity,
    ) -> Result<bool, LayerError> {
        let locally_free = lock(&self.inner.local)
            .get(room)
            .is_none_or(|state| state.names.check(name, identity).is_ok());
        if !locally_free {
            return Ok(false);
        }
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let live: Vec<String> = conn
            .zrangebyscore(
                inner.keys.owner(room, &name_fold(name)),
                unix_millis(),
                "+inf",
            )
            .await
            .map_err(|err| self.failed("check a name", &err))?;
        let identity = identity.to_string();
        Ok(live
            .iter()
            .all(|entry| entry.split(':').next() == Some(identity.as_str())))
    }

    pub(in crate::layer) async fn set_topic(
        &self,
        room: &RoomName,
        user: &str,
        topic: String,
    ) -> Result<(), LayerError> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let ttl = inner.config.room_ttl.as_secs().max(1);
        // One script, so one command on the room's slot (see `TOPIC_LUA`).
        let result: Result<(), _> = TOPIC
            .key(inner.keys.topic(room))
            .key(inner.keys.channel(room))
            .arg(inner.mode.publish())
            .arg(&topic)
            .arg(ttl)
            .arg(envelope(&topic_event(room, user, topic)))
            .invoke_async(&mut conn)
            .await;
        result.map_err(|err| self.failed("set the topic", &err))
    }

    /// The room's topic ("" when none), or `None` when Redis cannot say.
    pub(super) async fn topic(&self, room: &RoomName) -> Option<String> {
        let inner = &self.inner;
        let mut conn = inner.conn.clone();
        let topic: Result<Option<String>, _> = conn.get(inner.keys.topic(room)).await;
        match topic {
            Ok(topic) => Some(topic.unwrap_or_default()),
            Err(err) => {
                warn!(%room, %err, "Redis: cannot read the topic");
                None
            }
        }
    }
}
