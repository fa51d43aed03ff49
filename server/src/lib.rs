//! `chat-server`: a WebSocket chat room server, wire-compatible with the
//! Django Channels chat tutorial, that also serves the browser pages.
//!
//! # Layout
//!
//! * [`spawn`] / [`run`]: start the server on a bound listener (what
//!   `main` and the tests call).
//! * `pages`: the HTML pages, static assets, `/api/rooms`, `/healthz`.
//! * `upgrade`: the `/ws/chat/<room>/` handshake and its refusals.
//! * `session`: one connection: welcome, relay, limits, close.
//! * `rooms`: the local registry and fan-out (room -> subscribers).
//! * `layer`: ids, history, presence and cross-instance delivery.
//!
//! The path of a message: `session` (socket in) -> `layer::Layer::publish`
//! -> `rooms::RoomRegistry::deliver` -> every `session` of the room
//! (socket out).

pub mod layer;
mod pages;
pub mod ring;
pub mod rooms;
mod session;
mod upgrade;

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::layer::{Layer, LayerError, MemoryLayer, RedisLayer};

use crate::rooms::RoomRegistry;
pub use layer::RedisConfig;

pub use upgrade::socket_config;

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
    /// How many messages a connection may fall behind before it is
    /// disconnected as a slow consumer.
    pub queue_len: usize,
    /// How long a write to a client may stay blocked before the client is
    /// disconnected as a slow consumer.
    pub write_timeout: Duration,
    /// How long shutdown waits for connections to close.
    pub shutdown_grace: Duration,
    /// Share rooms with other instances through Redis; `None`: in memory.
    pub redis: Option<RedisConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_message_size: 64 * 1024,
            history_len: 100,
            max_idle_rooms: 1000,
            queue_len: 1024,
            write_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_millis(1500),
            redis: None,
        }
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Reading the listener's address or serving failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The layer (Redis) could not be set up.
    #[error(transparent)]
    Layer(#[from] LayerError),
}

/// What every handler shares. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct AppState {
    inner: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: Config,
    /// Local rooms and their subscribers.
    registry: Arc<RoomRegistry>,
    /// Ids, history, presence, delivery.
    layer: Layer,
    /// Cancelled when the server shuts down; every session holds a child.
    shutdown: CancellationToken,
    /// Tracks upgraded connections, which axum's graceful shutdown does not
    /// see (axum #3003), so that shutdown can wait for their close frames.
    tracker: TaskTracker,
}

impl AppState {
    /// Builds the state, connecting to the layer's backend first.
    async fn new(config: Config) -> Result<Self, ServerError> {
        let registry = Arc::new(RoomRegistry::new(config.queue_len));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let layer = match &config.redis {
            None => Layer::Memory(MemoryLayer::new(
                registry.clone(),
                config.history_len,
                config.max_idle_rooms,
            )),
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
        Ok(Self {
            inner: Arc::new(Shared {
                config,
                registry,
                layer,
                shutdown,
                tracker,
            }),
        })
    }

    pub(crate) fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn layer(&self) -> &Layer {
        &self.inner.layer
    }

    pub(crate) fn shutdown_token(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    pub(crate) fn tracker(&self) -> &TaskTracker {
        &self.inner.tracker
    }
}

/// All routes of the server.
fn router(state: AppState) -> Router {
    Router::new()
        .route("/ws/chat/{*room}", get(upgrade::ws_chat))
        .merge(pages::routes())
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes, then closes every
/// socket with 1001 and returns (within `Config::shutdown_grace`).
///
/// # Errors
///
/// [`ServerError`] when serving fails.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let state = AppState::new(config).await?;
    let token = state.shutdown_token().clone();
    tokio::spawn({
        let token = token.clone();
        async move {
            tokio::select! {
                () = shutdown => token.cancel(),
                () = token.cancelled() => {}
            }
        }
    });
    serve(listener, state).await
}

async fn serve(listener: TcpListener, state: AppState) -> Result<(), ServerError> {
    let addr = listener.local_addr()?;
    let token = state.shutdown_token().clone();
    let tracker = state.tracker().clone();
    let grace = state.config().shutdown_grace;
    info!(%addr, "listening");
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        // Chat frames are small: send them now rather than wait for more.
        let _ = tcp.set_nodelay(true);
    });
    let serving =
        axum::serve(listener, app).with_graceful_shutdown(token.clone().cancelled_owned());
    let mut serving = std::pin::pin!(serving.into_future());
    // Serving stops accepting on shutdown; upgraded sockets are closed by
    // their sessions, which watch the same token. Both get `grace`.
    let result = tokio::select! {
        result = &mut serving => result,
        () = token.cancelled() => {
            let deadline = tokio::time::Instant::now() + grace;
            tokio::time::timeout_at(deadline, &mut serving).await.unwrap_or(Ok(()))
        }
    };
    token.cancel();
    tracker.close();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            open = tracker.len(),
            "shutdown: some connections did not close in time"
        );
    }
    info!("stopped");
    result.map_err(ServerError::Io)
}

/// A server running in the background, for tests and embedding.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    state: AppState,
    task: JoinHandle<Result<(), ServerError>>,
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
/// [`ServerError`] when the listener's address cannot be read, or the
/// layer's backend (Redis) cannot be reached.
pub async fn spawn(listener: TcpListener, config: Config) -> Result<ServerHandle, ServerError> {
    let addr = listener.local_addr()?;
    let state = AppState::new(config).await?;
    let task = tokio::spawn(serve(listener, state.clone()));
    Ok(ServerHandle { addr, state, task })
}

impl ServerHandle {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Rooms with at least one local subscriber.
    pub fn active_rooms(&self) -> usize {
        self.state.inner.registry.len()
    }

    /// Rooms whose history or presence the layer still holds in memory.
    pub fn stored_rooms(&self) -> usize {
        self.state.layer().stored_rooms()
    }

    /// Open WebSocket sessions.
    pub fn open_sessions(&self) -> usize {
        self.state.tracker().len()
    }

    /// Closes every socket with 1001 and waits for the server to stop.
    ///
    /// # Errors
    ///
    /// [`ServerError`] when serving had failed.
    pub async fn shutdown(mut self) -> Result<(), ServerError> {
        self.state.shutdown_token().cancel();
        match (&mut self.task).await {
            Ok(result) => result,
            Err(err) => Err(ServerError::Io(std::io::Error::other(err))),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.state.shutdown_token().cancel();
    }
}
