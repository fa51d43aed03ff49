//! `chat-server`: a WebSocket chat room server, wire-compatible with the
//! Django Channels chat tutorial, that also serves the browser pages.
//!
//! # Layout
//!
//! * `config`: [`Config`], the server's settings.
//! * `launch`: the routes, and [`spawn`] / [`run`] to start the server on a
//!   bound listener (what `main` and the tests call), [`ServerHandle`].
//! * `state`: `AppState`, what every handler and session shares;
//!   `signals`: what every session watches (keepalive ticks, shutdown).
//! * `serve`: the accept loop (TCP, TLS, HTTP/1.1, handshake timeout).
//! * `pages`: the HTML pages, static assets, `/api/rooms`, `/healthz`, `/metrics`.
//! * `history`: paging and search (`/api/rooms/<room>/messages`, the
//!   typed `history` frame).
//! * `upgrade`: the `/ws/chat/<room>/` handshake.
//! * `rejection`: `Rejection`, how a request is refused
//!   before any work, and what handlers read alike from a request.
//! * `access`, `limits`: who may connect (and the checks that refuse), and how much.
//! * `session`: one connection: welcome, relay, rate limit, keepalive, close.
//! * `ws`: our RFC 6455 codec for the server's side of a connection
//!   (frames, messages, the outbound queue, close codes).
//! * `rooms` and `ring`: the local registry and fan-out (room -> subscribers);
//!   `frames`: what a ring stores (an event serialised once per format).
//! * `sync`: the poison-tolerant `lock` every `std::sync::Mutex` goes through.
//! * `layer`: ids, history, presence, topics and cross-instance delivery.
//! * `names`: who may use a display name in a room (per-person keys).
//! * `store`: `--db`, every message in SQLite behind the memory layer.
//!
//! The path of a chat message: `session` (socket in) ->
//! `layer::Layer::publish` -> `rooms::RoomRegistry::deliver_with` (memory
//! layer; the Redis layer's pump calls `RoomRegistry::deliver` for what its
//! subscription receives) -> the room's `ring` -> every `session` of the
//! room (socket out).

pub mod access;
mod config;
mod frames;
mod history;
mod launch;
pub(crate) mod layer;
pub(crate) mod limits;
mod log_burst;
mod metrics;
pub(crate) mod names;
mod pages;
mod rejection;
pub(crate) mod ring;
pub(crate) mod rooms;
mod serve;
mod session;
mod signals;
mod state;
pub mod store;
mod sync;
pub(crate) mod tls;
mod upgrade;
mod ws;

pub use access::{Access, AllowedHosts};
pub use layer::{
    DEFAULT_HISTORY_BYTES, DEFAULT_REDIS_TIMEOUT_MS, DEFAULT_ROOM_TTL, LayerError, RedisConfig,
};
pub use limits::Limits;
pub use store::StoreConfig;
pub use tls::TlsError;

pub use config::{Config, TlsFiles};
pub use launch::{ServerHandle, run, spawn};

pub(crate) use state::AppState;

use crate::store::StoreError;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading the listener's address failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The layer (Redis) could not be set up.
    #[error(transparent)]
    Layer(#[from] LayerError),
    /// The TLS certificate or key is unusable.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// The message store (`--db`) could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `--allowed-host` entry is not a host name.
    #[error(transparent)]
    AllowedHost(#[from] access::BadPattern),
}
