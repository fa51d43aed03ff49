//! A TCP proxy between the browser and the server whose network can be cut:
//! `cut` drops every open connection without a WebSocket close (as a lost
//! Wi-Fi does) and refuses new ones until `resume`. The server keeps
//! running, so what was said meanwhile is there to be recovered.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    /// Stops the accept loop (and every connection) when the proxy drops.
    stop: CancellationToken,
}

#[derive(Debug)]
struct State {
    /// Whether the network is down.
    is_cut: bool,
    /// Cancelled to drop every connection opened before a cut.
    connections: CancellationToken,
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let stop = CancellationToken::new();
        let state = Arc::new(Mutex::new(State {
            is_cut: false,
            connections: stop.child_token(),
        }));
        tokio::spawn(accept_loop(listener, upstream, state.clone(), stop.clone()));
        Self { addr, state, stop }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every connection and refuses new ones.
    pub fn cut(&self) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.is_cut = true;
        state.connections.cancel();
        state.connections = self.stop.child_token();
    }

    /// Lets connections through again.
    pub fn resume(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_cut = false;
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((mut client, _)) = accepted else {
            continue;
        };
        let token = {
            let state = state.lock().unwrap_or_else(PoisonError::into_inner);
            if state.is_cut {
                // Dropping the socket refuses the connection.
                continue;
            }
            state.connections.clone()
        };
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                return;
            };
            tokio::select! {
                () = token.cancelled() => {}
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
            }
        });
    }
}
