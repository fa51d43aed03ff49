//! The accept loop: TCP connections (optionally wrapped in TLS) served as
//! HTTP/1.1 with upgrades by hyper, routed by axum.
//!
//! Serving hyper directly, rather than through `axum::serve`, is what lets
//! the server bound how long a client may take to send its request headers
//! (a client that connects and sends nothing, or trickles a header a byte
//! at a time, is dropped after `--handshake-timeout`), wrap connections in
//! TLS, and keep accepting when the process runs out of file descriptors.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;
use tracing::{debug, info, warn};

use crate::AppState;
use crate::access::AllowedHosts;

/// The send buffer asked of the kernel for each connection (Linux doubles
/// it for its own bookkeeping).
const SEND_BUFFER_BYTES: usize = 128 * 1024;

/// Accepts connections until the shutdown token is cancelled; each one is
/// served in a task of the state's tracker.
pub(crate) async fn accept_loop(
    listener: TcpListener,
    router: Router,
    state: AppState,
    tls: Option<TlsAcceptor>,
) {
    let token = state.shutdown_token().clone();
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            () = token.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(5);
                pair
            }
            Err(err) if is_per_connection(&err) => {
                debug!(%err, "a connection failed while being accepted");
                continue;
            }
            Err(err) => {
                // Out of file descriptors or memory: wait for some to free
                // up rather than spin; existing connections carry on.
                warn!(%err, "cannot accept connections for now; retrying");
                tokio::select! {
                    () = token.cancelled() => return,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Chat frames are small: send them now rather than wait for more.
        let _ = tcp.set_nodelay(true);
        // A fixed send buffer instead of the kernel's autotuning (which
        // grows it to megabytes on loopback): a client that stops reading
        // then holds little kernel memory, and its blocked writes show it
        // as a slow consumer within seconds. Batches are far smaller.
        let _ = socket2::SockRef::from(&tcp).set_send_buffer_size(SEND_BUFFER_BYTES);
        let router = router.clone();
        let state = state.clone();
        let tls = tls.clone();
        state
            .tracker()
            .clone()
            .spawn(serve_connection(tcp, peer, router, state, tls));
    }
}

/// Errors of one connection that say nothing about the listener.
fn is_per_connection(err: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        err.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    )
}

async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    router: Router,
    state: AppState,
    tls: Option<TlsAcceptor>,
) {
    let timeout = state.config().limits.handshake_timeout;
    match tls {
        None => serve_http(tcp, peer, router, state).await,
        Some(acceptor) => match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => serve_http(stream, peer, router, state).await,
            Ok(Err(err)) => debug!(%peer, %err, "TLS handshake failed"),
            Err(_) => debug!(%peer, "TLS handshake timed out"),
        },
    }
}

async fn serve_http<S>(io: S, peer: SocketAddr, router: Router, state: AppState)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let router = router.clone();
        async move {
            Ok::<_, Infallible>(
                router
                    .oneshot(request.map(Body::new))
                    .await
                    .unwrap_or_else(|e| match e {}),
            )
        }
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.config().limits.handshake_timeout)
        .keep_alive(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let token = state.shutdown_token().clone();
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = token.cancelled() => {
            // Finish the request in flight, then close; upgraded sockets
            // are not ours any more, their sessions close them.
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(Duration::from_secs(1), connection.as_mut()).await {
                Ok(result) => result,
                Err(_) => Ok(()),
            }
        }
    };
    if let Err(err) = result {
        debug!(%peer, %err, "HTTP connection ended with an error");
    }
}

/// Logs where the server listens, and which `Host` names it answers to.
pub(crate) fn announce(addr: SocketAddr, tls: bool, hosts: &AllowedHosts) {
    let (http, ws) = if tls {
        ("https", "wss")
    } else {
        ("http", "ws")
    };
    info!(%addr, "listening: pages at {http}://{addr}/chat/, sockets at {ws}://{addr}/ws/chat/<room>/");
    let allowed = hosts.describe();
    if hosts.is_any() {
        warn!(
            "--allowed-host *: answering requests for any Host; a page of any site whose name \
             resolves to this server can use it as its own (DNS rebinding)"
        );
    } else if hosts.names_need_listing() {
        warn!(
            %addr,
            "bound beyond loopback without --allowed-host: answering requests for {allowed} only; \
             requests naming this server by a DNS name get 400 until the name is listed with \
             --allowed-host NAME (e.g. chat.example.com, behind a proxy too)"
        );
    } else {
        info!("answering requests for Host {allowed} (--allowed-host NAME adds names)");
    }
}
