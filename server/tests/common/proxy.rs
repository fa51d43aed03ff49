//! A TCP proxy on a free loopback port that the test controls: it relays
//! to an upstream address until told to cut the line, then closes every
//! relayed connection and refuses new ones until the line is restored.
//! It stands for a network partition between one instance and Redis.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A controllable TCP relay; stops when dropped.
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
    stop: CancellationToken,
}

struct State {
    /// Cancelled to close every connection relayed so far; `None` while
    /// the line is cut.
    line: Mutex<Option<CancellationToken>>,
}

impl Proxy {
    /// Relays connections on a free loopback port to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let state = Arc::new(State {
            line: Mutex::new(Some(CancellationToken::new())),
        });
        let stop = CancellationToken::new();
        let (accept_state, accept_stop) = (Arc::clone(&state), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = accept_stop.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((client, _)) = accepted else { continue };
                let line = accept_state.line.lock().expect("proxy state").clone();
                // While the line is cut, a new connection is closed at once.
                let Some(line) = line else { continue };
                let stop = accept_stop.clone();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    relay(client, server, line, stop).await;
                });
            }
        });
        Self { addr, state, stop }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A `redis://` URL through the proxy.
    pub fn redis_url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// Cuts the line: every relayed connection is closed, new ones too.
    pub fn cut(&self) {
        if let Some(line) = self.state.line.lock().expect("proxy state").take() {
            line.cancel();
        }
    }

    /// Restores the line: new connections are relayed again.
    pub fn restore(&self) {
        let mut line = self.state.line.lock().expect("proxy state");
        if line.is_none() {
            *line = Some(CancellationToken::new());
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.cut();
    }
}

async fn relay(
    mut client: TcpStream,
    mut server: TcpStream,
    line: CancellationToken,
    stop: CancellationToken,
) {
    tokio::select! {
        () = line.cancelled() => {}
        () = stop.cancelled() => {}
        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
    }
}
