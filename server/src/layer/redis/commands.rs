//! The command connection: to one Redis (a `ConnectionManager`, which
//! reconnects by itself) or to a Redis Cluster (redis-rs's cluster
//! connection, which follows `MOVED`/`ASK`, failovers and resharding).
//! Both are multiplexed: every command of the instance shares them.

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClientBuilder;
use redis::cluster_async::ClusterConnection;
use redis::{
    Client, Cmd, ConnectionInfo, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, Value,
};

use super::{RECONNECT_MAX, RECONNECT_MIN, RedisConfig, redact};
use crate::layer::{Cause, LayerError};

/// Commands to one Redis or to a cluster.
#[derive(Clone)]
pub(super) enum Commands {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for Commands {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Single(_) => "Commands::Single",
            Self::Cluster(_) => "Commands::Cluster",
        })
    }
}

/// Where the pub/sub connections go: the one Redis, or (in a cluster)
/// every master, found from the cluster's slot map, with the seed's
/// credentials.
#[derive(Debug, Clone)]
pub(super) struct PubSubTarget {
    /// The one Redis, or a seed node whose credentials every shard's
    /// connection uses.
    pub(super) info: ConnectionInfo,
}

impl Commands {
    /// Connects as `config` says.
    ///
    /// # Errors
    ///
    /// [`LayerError::Setup`] for a bad URL or an unreachable Redis.
    pub(super) async fn connect(config: &RedisConfig) -> Result<(Self, PubSubTarget), LayerError> {
        let invalid = |url: &str, err: RedisError| {
            LayerError::setup_because(
                format!(
                    "invalid Redis URL {:?} (expected redis://HOST:PORT/DB)",
                    redact(url)
                ),
                err,
            )
        };
        let cannot_reach = |err: Cause| {
            LayerError::setup_because(
                format!(
                    "cannot reach Redis at {} (is redis-server running there?)",
                    config.describe()
                ),
                err,
            )
        };
        let timeout = config.timeout;
        if config.cluster.is_empty() {
            let info = config
                .url
                .as_str()
                .into_connection_info()
                .map_err(|err| invalid(&config.url, err))?;
            let client = Client::open(info.clone()).map_err(|err| invalid(&config.url, err))?;
            let manager_config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout))
                .set_response_timeout(Some(timeout))
                .set_min_delay(RECONNECT_MIN)
                .set_max_delay(RECONNECT_MAX)
                .set_number_of_retries(2);
            let conn = tokio::time::timeout(
                timeout * 2,
                client.get_connection_manager_with_config(manager_config),
            )
            .await
            .map_err(|_| cannot_reach("no answer".into()))?
            .map_err(|err| cannot_reach(err.into()))?;
            return Ok((Self::Single(conn), PubSubTarget { info }));
        }
        let mut seeds = Vec::with_capacity(config.cluster.len());
        for url in &config.cluster {
            seeds.push(
                url.as_str()
                    .into_connection_info()
                    .map_err(|err| invalid(url, err))?,
            );
        }
        let info = seeds[0].clone();
        let client = ClusterClientBuilder::new(seeds)
            .connection_timeout(timeout)
            .response_timeout(timeout)
            .retries(3)
            .min_retry_wait(u64::try_from(RECONNECT_MIN.as_millis()).unwrap_or(50))
            .max_retry_wait(u64::try_from(RECONNECT_MAX.as_millis()).unwrap_or(800))
            .build()
            .map_err(|err| invalid(&config.cluster.join(","), err))?;
        let conn = tokio::time::timeout(timeout * 4, client.get_async_connection())
            .await
            .map_err(|_| cannot_reach("no answer".into()))?
            .map_err(|err| cannot_reach(err.into()))?;
        Ok((Self::Cluster(conn), PubSubTarget { info }))
    }
}

impl ConnectionLike for Commands {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(conn) => conn.req_packed_command(cmd),
            Self::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(conn) => conn.req_packed_commands(cmd, offset, count),
            Self::Cluster(conn) => conn.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(conn) => conn.get_db(),
            Self::Cluster(conn) => conn.get_db(),
        }
    }
}
