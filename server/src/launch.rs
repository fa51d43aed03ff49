//! Starting and stopping the server: the routes, [`spawn`] and [`run`] on
//! a bound listener, and the [`ServerHandle`] that stops it.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::{AllowedHosts, AppState, Config, ServerError, access, pages, serve, tls, upgrade};

/// All routes of the server. Every request but the health check must be
/// for a host the server answers to (see `access::AllowedHosts`).
pub(crate) fn router(state: AppState) -> Router {
    let mut router = Router::new().route("/ws/chat/{*room}", get(upgrade::ws_chat));
    if state.config().echo_endpoint {
        router = router.route("/ws/echo", get(upgrade::ws_echo));
    }
    router
        .merge(pages::routes(&state))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            access::require_host,
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
        Some(files) => Some(tls::acceptor(&files.cert, &files.key)?),
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
