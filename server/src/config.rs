//! The server's settings ([`Config`]), as `main` builds them from its flags
//! and the tests from [`Config::default`].

use std::path::PathBuf;
use std::time::Duration;

use crate::{Access, Limits, RedisConfig, StoreConfig};

/// Server settings. [`Config::default`] is what `chat-server` runs with
/// when given no flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// Largest client message (WebSocket message payload), in bytes.
    pub max_message_size: usize,
    /// Messages of history kept per room and sent to newcomers.
    pub history_len: usize,
    /// How many empty rooms keep their history (older ones are forgotten).
    pub max_idle_rooms: usize,
    /// Bytes of history all rooms may keep in memory together (memory
    /// layer); past this the history of the rooms empty the longest is
    /// forgotten first, then the oldest messages.
    pub history_memory: usize,
    /// How many messages a connection may fall behind before it is
    /// disconnected as a slow consumer.
    pub queue_len: usize,
    /// How many bytes of messages a connection may fall behind before it
    /// is disconnected as a slow consumer: what a room's queue holds at most.
    pub queue_bytes: usize,
    /// How long a write to a client may stay blocked before the client is
    /// disconnected as a slow consumer.
    pub write_timeout: Duration,
    /// On shutdown, connections are closed in batches spread over this
    /// window, so that clients do not all reconnect at the same instant.
    pub drain_window: Duration,
    /// Caps, rates and timeouts.
    pub limits: Limits,
    /// Origin check and tokens.
    pub access: Access,
    /// Serve HTTPS and `wss://` with this certificate chain and key (PEM).
    pub tls: Option<TlsFiles>,
    /// Share rooms with other instances through Redis; `None`: in memory.
    pub redis: Option<RedisConfig>,
    /// Keep every message in SQLite (`--db`; memory layer only).
    pub store: Option<StoreConfig>,
    /// Serve `/ws/echo`, an echo endpoint over the same connection handling,
    /// for protocol conformance tests (Autobahn). Off in production.
    pub echo_endpoint: bool,
}

/// Where the TLS certificate chain and private key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            history_len: 100,
            max_idle_rooms: 1000,
            history_memory: 64 << 20,
            queue_len: 1024,
            queue_bytes: 4 << 20,
            write_timeout: Duration::from_secs(30),
            drain_window: Duration::from_millis(500),
            limits: Limits::default(),
            access: Access::new(),
            tls: None,
            redis: None,
            store: None,
            echo_endpoint: false,
        }
    }
}
