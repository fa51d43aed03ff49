//! `chat-server`: a WebSocket chat room server, wire-compatible with the
//! Django Channels chat tutorial, that also serves the browser pages.
//!
//! # Layout
//!
//! * [`spawn`] / [`run`]: start the server on a bound listener (what
//!   `main` and the tests call).
//! * `serve`: the accept loop (TCP, TLS, HTTP/1.1, handshake timeout).
//! * `pages`: the HTML pages, static assets, `/api/rooms`, `/healthz`, `/metrics`.
//! * `history`: paging and search (`/api/rooms/<room>/messages`, the
//!   typed `history` frame).
//! * `upgrade`: the `/ws/chat/<room>/` handshake and its refusals.
//! * `access`, `limits`: who may connect, and how much.
//! * `session`: one connection: welcome, relay, rate limit, keepalive, close.
//! * `rooms` and `ring`: the local registry and fan-out (room -> subscribers).
//! * `layer`: ids, history, presence, topics and cross-instance delivery.
//! * `names`: who may use a display name in a room (per-person keys).
//! * `store`: `--db`, every message in SQLite behind the memory layer.
//!
//! The path of a message: `session` (socket in) -> `layer::Layer::publish`
//! -> `rooms::RoomRegistry::deliver` -> the room's `ring` -> every
//! `session` of the room (socket out).

pub mod access;
mod history;
pub mod layer;
pub mod limits;
mod metrics;
pub mod names;
mod pages;
pub mod ring;
pub mod rooms;
mod serve;
mod session;
pub mod store;
pub mod tls;
mod upgrade;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

pub use access::{Access, AllowedHosts};
pub use layer::{DEFAULT_HISTORY_BYTES, DEFAULT_REDIS_TIMEOUT_MS, DEFAULT_ROOM_TTL, RedisConfig};
pub use limits::Limits;
pub use store::StoreConfig;
pub use upgrade::socket_config;

use crate::layer::{HistoryLimits, Layer, LayerError, MemoryLayer, RedisLayer};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::rooms::RoomRegistry;
use crate::store::{Store, StoreError};

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
    #[error("TLS: {0}")]
    Tls(String),
    /// The message store (`--db`) could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// An `--allowed-host` entry is not a host name.
    #[error(transparent)]
    AllowedHost(#[from] access::BadPattern),
}

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    /// The `Host` names the server answers to.
    hosts: AllowedHosts,
    /// Local rooms and their subscribers.
    registry: Arc<RoomRegistry>,
    /// Ids, history, presence, delivery.
    layer: Layer,
    /// Open connections, in total and per address.
    admission: Arc<Admission>,
    metrics: Metrics,
    /// Numbers sessions, to spread them over the drain window.
    sessions_started: AtomicU64,
    /// The server's clock for per-connection times kept in milliseconds.
    started: std::time::Instant,
    /// What every session watches: keepalive ticks, and the shutdown. One
    /// shared signal instead of a timer per connection keeps idle
    /// connections small.
    signals: watch::Sender<Signals>,
    /// Cancelled when the server shuts down; every session watches it.
    shutdown: CancellationToken,
    /// Tracks connections (HTTP and upgraded), which shutdown waits for.
    tracker: TaskTracker,
}

impl AppState {
    /// Builds the state, connecting to the layer's backend first.
    async fn new(config: Config, hosts: AllowedHosts) -> Result<Self, ServerError> {
        let registry = Arc::new(RoomRegistry::new(config.queue_len, config.queue_bytes));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let metrics = Metrics::new(config.redis.is_some());
        let layer = match &config.redis {
            None => {
                let store = config.store.as_ref().map(Store::open).transpose()?;
                Layer::Memory(MemoryLayer::with_store(
                    registry.clone(),
                    HistoryLimits {
                        per_room: config.history_len,
                        bytes: config.history_memory,
                        idle_rooms: config.max_idle_rooms,
                    },
                    metrics.history.clone(),
                    store,
                ))
            }
            Some(redis) => Layer::Redis(
                RedisLayer::connect(
                    redis.clone(),
                    registry.clone(),
                    config.history_len,
                    &shutdown,
                    &tracker,
                )
                .await?,
            ),
        };
        let admission = Arc::new(Admission::new(config.limits.clone()));
        let (signals, _) = watch::channel(Signals::default());
        tracker.spawn(tick(
            signals.clone(),
            config.limits.ping_interval,
            shutdown.clone(),
        ));
        Ok(Self {
            inner: Arc::new(Shared {
                config,
                hosts,
                registry,
                layer,
                admission,
                metrics,
                sessions_started: AtomicU64::new(0),
                started: std::time::Instant::now(),
                signals,
                shutdown,
                tracker,
            }),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn hosts(&self) -> &AllowedHosts {
        &self.inner.hosts
    }

    /// The scheme a request's page was served over, as its `Origin` names
    /// it: `https` with TLS, or behind a proxy that says so
    /// (`X-Forwarded-Proto`, which a page cannot set on a socket); else
    /// `http`.
    pub(crate) fn scheme(&self, headers: &axum::http::HeaderMap) -> &'static str {
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_ascii_lowercase()
            });
        match forwarded.as_deref() {
            Some("https") => "https",
            Some("http") => "http",
            _ if self.inner.config.tls.is_some() => "https",
            _ => "http",
        }
    }

    pub(crate) fn layer(&self) -> &Layer {
        &self.inner.layer
    }

    pub(crate) fn registry(&self) -> &RoomRegistry {
        &self.inner.registry
    }

    pub(crate) fn admission(&self) -> &Arc<Admission> {
        &self.inner.admission
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }

    /// Which of ten batches a new session closes in when the server shuts
    /// down, so that closes spread across the drain window.
    pub(crate) fn drain_batch(&self) -> u8 {
        let n = self.inner.sessions_started.fetch_add(1, Ordering::Relaxed);
        u8::try_from(n % 10).unwrap_or(0)
    }

    /// How long a session of `batch` waits before closing at shutdown.
    pub(crate) fn drain_delay(&self, batch: u8) -> Duration {
        self.inner.config.drain_window * u32::from(batch) / 10
    }

    /// Milliseconds since the server started (wrapping), for times kept
    /// per connection.
    pub(crate) fn now_ms(&self) -> u32 {
        #[allow(clippy::cast_possible_truncation)] // wrapping on purpose
        let ms = self.inner.started.elapsed().as_millis() as u32;
        ms
    }

    /// The keepalive ticks and the shutdown, for a session to watch.
    pub(crate) fn signals(&self) -> watch::Receiver<Signals> {
        self.inner.signals.subscribe()
    }
}

/// What the server tells every session at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Signals {
    /// Counts keepalive ticks (one per ping interval).
    pub tick: u64,
    /// The server is shutting down.
    pub shutting_down: bool,
}

/// Ticks every `interval` for the sessions' keepalive, and says when the
/// server shuts down.
async fn tick(signals: watch::Sender<Signals>, interval: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => {
                signals.send_modify(|s| s.shutting_down = true);
                return;
            }
            () = tokio::time::sleep(interval) => signals.send_modify(|s| s.tick += 1),
        }
    }
}

/// All routes of the server. Every request but the health check must be
/// for a host the server answers to (see `access::AllowedHosts`).
fn router(state: AppState) -> Router {
    let mut router = Router::new().route("/ws/chat/{*room}", get(upgrade::ws_chat));
    if state.config().echo_endpoint {
        router = router.route("/ws/echo", get(upgrade::ws_echo));
    }
    router
        .merge(pages::routes(&state))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            pages::require_host,
        ))
        .merge(pages::health_routes())
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then closes every
/// socket with 1001 (spread over the drain window) and returns.
///
/// # Errors
///
/// [`ServerError`] when the layer or TLS cannot be set up.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let handle = spawn(listener, config).await?;
    let token = handle.state.shutdown_token().clone();
    tokio::select! {
        () = shutdown => {}
        () = token.cancelled() => {}
    }
    handle.shutdown().await
}

/// The serving task: accept until shutdown, then wait for connections to
/// close, within the drain window plus a second.
async fn serve(listener: TcpListener, state: AppState, tls: Option<tokio_rustls::TlsAcceptor>) {
    let addr = listener.local_addr().ok();
    if let Some(addr) = addr {
        serve::announce(addr, tls.is_some(), state.hosts());
    }
    let token = state.shutdown_token().clone();
    serve::accept_loop(listener, router(state.clone()), state.clone(), tls).await;
    token.cancel();
    let tracker = state.tracker().clone();
    tracker.close();
    let grace = state.config().drain_window + Duration::from_secs(1);
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            open = tracker.len(),
            "shutdown: some connections did not close in time"
        );
    }
    state.layer().close().await;
    info!("stopped");
}

/// A server running in the background, for tests and embedding.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: AppState,
    task: JoinHandle<()>,
}

/// Starts serving on `listener` in a background task.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let server = chat_server::spawn(listener, chat_server::Config::default()).await?;
/// println!("listening on {}", server.local_addr());
/// server.shutdown().await?;
/// # Ok(()) }
/// ```
///
/// # Errors
///
/// [`ServerError`] when the listener's address cannot be read, the TLS
/// files are unusable, or the layer's backend (Redis) cannot be reached.
pub async fn spawn(listener: TcpListener, config: Config) -> Result<ServerHandle, ServerError> {
    let addr = listener.local_addr()?;
    let tls = match &config.tls {
        Some(files) => Some(tls::acceptor(&files.cert, &files.key).map_err(ServerError::Tls)?),
        None => None,
    };
    let hosts = AllowedHosts::new(&config.access.allowed_hosts, addr, config.tls.is_some())?;
    let state = AppState::new(config, hosts).await?;
    let task = tokio::spawn(serve(listener, state.clone(), tls));
    Ok(ServerHandle { addr, state, task })
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Rooms with at least one local subscriber.
    pub fn active_rooms(&self) -> usize {
        self.state.registry().len()
    }

    /// Rooms whose history or presence the layer still holds in memory.
    pub fn stored_rooms(&self) -> usize {
        self.state.layer().stored_rooms()
    }

    /// Open WebSocket sessions.
    pub fn open_sessions(&self) -> usize {
        self.state.admission().open()
    }

    /// Closes every socket with 1001 and waits for the server to stop.
    ///
    /// # Errors
    ///
    /// [`ServerError::Io`] when the serving task failed.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.state.shutdown_token().cancel();
        (&mut self.task)
            .await
            .map_err(|err| ServerError::Io(std::io::Error::other(err)))
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.shutdown_token().cancel();
    }
}
