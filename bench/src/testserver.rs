//! A small room-broadcast server of the protocol, with faults on demand.
//!
//! chat-bench's tests run the workloads against it over real loopback
//! sockets: correct, it proves a clean run reports zero loss; with
//! [`Fault`]s it drops, duplicates, delays (reorders) or disconnects chosen
//! deliveries, and the tests check the report counts exactly those.
//! `chat-bench serve` runs it too, for trying the tool without another
//! server.
//!
//! It is deliberately built on tokio-tungstenite, not on chat-bench's own
//! frame code, so that the tests check the load generator's client against
//! an independent implementation of the protocol.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};

/// What a fault does to one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The delivery never happens.
    Drop,
    /// The delivery happens twice.
    Duplicate,
    /// The delivery happens after the room's next message.
    Delay,
    /// The member's connection is closed instead.
    Disconnect,
}

/// A fault applied to the `nth` message of every room (counting from 0, in
/// the order the server receives them, chat-bench's warm-up message
/// included), for one member (by join order) or all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What happens.
    pub kind: FaultKind,
    /// Which message of the room.
    pub nth: u64,
    /// Which member, by the order they joined; `None` is every member.
    pub member: Option<usize>,
}

/// One member of a room as the server sees it.
#[derive(Debug)]
struct Member {
    id: u64,
    tx: mpsc::UnboundedSender<Message>,
    /// A delayed message, delivered after the next one.
    held: Option<Message>,
}

#[derive(Debug, Default)]
struct Room {
    members: Vec<Member>,
    /// Messages received in this room so far.
    count: u64,
}

#[derive(Debug, Default)]
struct State {
    rooms: HashMap<String, Room>,
    next_id: u64,
}

/// A running server on its own runtime thread; stops when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on `127.0.0.1:0` with `faults`.
    ///
    /// # Errors
    ///
    /// The runtime or the listener could not be created.
    pub fn start(faults: Vec<Fault>) -> std::io::Result<Self> {
        Self::start_on(
            "127.0.0.1:0".parse().map_err(std::io::Error::other)?,
            faults,
            2,
        )
    }

    /// Starts a server on `addr` with `faults`, on `threads` threads.
    ///
    /// # Errors
    ///
    /// The runtime or the listener could not be created.
    pub fn start_on(addr: SocketAddr, faults: Vec<Fault>, threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .enable_all()
            .build()?;
        let listener = runtime.block_on(TcpListener::bind(addr))?;
        let addr = listener.local_addr()?;
        let (shutdown, stop) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("testserver".into())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::select! {
                        () = serve(listener, faults) => {}
                        _ = stop => {}
                    }
                });
                runtime.shutdown_background();
            })?;
        Ok(Self {
            addr,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs until the process ends (for `chat-bench serve`).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Accepts connections until the future is dropped.
pub async fn serve(listener: TcpListener, faults: Vec<Fault>) {
    let state = Arc::new(Mutex::new(State::default()));
    let faults: Arc<[Fault]> = faults.into();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let (state, faults) = (state.clone(), faults.clone());
        tokio::spawn(async move {
            if let Err(error) = session(stream, state, faults).await {
                tracing::debug!(%error, "test server session ended");
            }
        });
    }
}

/// The room name of a `/ws/chat/<room>/` path.
fn room_of(path: &str) -> Option<String> {
    let room = path.strip_prefix("/ws/chat/")?;
    let room = room.strip_suffix('/').unwrap_or(room);
    let valid = !room.is_empty()
        && room.len() <= 100
        && room
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid.then(|| room.to_owned())
}

async fn session(
    stream: TcpStream,
    state: Arc<Mutex<State>>,
    faults: Arc<[Fault]>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    stream.set_nodelay(true)?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let mut joined = None;
    // Join before the handshake's response is written, as a real server
    // does: a client that has seen its handshake complete is a member, so a
    // message sent right after it (chat-bench's warm-up) reaches it.
    // tungstenite's callback type fixes the error type.
    #[allow(clippy::result_large_err)]
    let callback = |request: &Request, response: Response| -> Result<Response, ErrorResponse> {
        let Some(room) = room_of(request.uri().path()) else {
            let mut refusal = ErrorResponse::new(Some("no such route".into()));
            *refusal.status_mut() = http_not_found();
            return Err(refusal);
        };
        let Ok(mut state) = state.lock() else {
            return Err(ErrorResponse::new(Some("poisoned".into())));
        };
        state.next_id += 1;
        let id = state.next_id;
        state
            .rooms
            .entry(room.clone())
            .or_default()
            .members
            .push(Member { id, tx, held: None });
        joined = Some((room, id));
        Ok(response)
    };
    let handshake = tokio_tungstenite::accept_hdr_async(stream, callback).await;
    let Some((room, id)) = joined else {
        return Err(handshake.err().map_or_else(|| "no room".into(), Into::into));
    };
    let ws = match handshake {
        Ok(ws) => ws,
        Err(error) => {
            leave(&state, &room, id);
            return Err(error.into());
        }
    };
    let (mut sink, mut source) = ws.split();
    // Writer: drain whatever is queued, then flush once.
    let writer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let close = matches!(first, Message::Close(_));
            if sink.feed(first).await.is_err() || close {
                break;
            }
            while let Ok(more) = rx.try_recv() {
                let close = matches!(more, Message::Close(_));
                if sink.feed(more).await.is_err() || close {
                    let _ = sink.flush().await;
                    return;
                }
            }
            if sink.flush().await.is_err() {
                break;
            }
        }
        let _ = sink.close().await;
    });
    while let Some(message) = source.next().await {
        let Message::Text(text) = message? else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(text.as_str()) else {
            continue;
        };
        let Some(message) = value.get("message").and_then(|m| m.as_str()) else {
            continue;
        };
        let out = Message::text(serde_json::json!({ "message": message }).to_string());
        let mut state = state.lock().map_err(|_| "poisoned")?;
        if let Some(room) = state.rooms.get_mut(&room) {
            broadcast(room, &out, &faults);
        }
    }
    leave(&state, &room, id);
    writer.abort();
    Ok(())
}

/// Removes member `id` from `room`, and the room once it is empty.
fn leave(state: &Mutex<State>, room: &str, id: u64) {
    let Ok(mut state) = state.lock() else {
        return;
    };
    if let Some(r) = state.rooms.get_mut(room) {
        r.members.retain(|m| m.id != id);
        if r.members.is_empty() {
            state.rooms.remove(room);
        }
    }
}

/// Sends `out` to every member of `room`, applying the faults that match.
fn broadcast(room: &mut Room, out: &Message, faults: &[Fault]) {
    let nth = room.count;
    room.count += 1;
    for (index, member) in room.members.iter_mut().enumerate() {
        let fault = faults
            .iter()
            .find(|f| f.nth == nth && f.member.is_none_or(|m| m == index))
            .map(|f| f.kind);
        match fault {
            None => {
                let _ = member.tx.send(out.clone());
            }
            Some(FaultKind::Drop) => {}
            Some(FaultKind::Duplicate) => {
                let _ = member.tx.send(out.clone());
                let _ = member.tx.send(out.clone());
            }
            Some(FaultKind::Delay) => {
                member.held = Some(out.clone());
                continue;
            }
            Some(FaultKind::Disconnect) => {
                let _ = member.tx.send(Message::Close(None));
            }
        }
        if let Some(held) = member.held.take() {
            let _ = member.tx.send(held);
        }
    }
}

fn http_not_found() -> tokio_tungstenite::tungstenite::http::StatusCode {
    tokio_tungstenite::tungstenite::http::StatusCode::NOT_FOUND
}

#[cfg(test)]
mod tests {
    use super::room_of;

    #[test]
    fn routes_rooms() {
        assert_eq!(room_of("/ws/chat/lobby/").as_deref(), Some("lobby"));
        assert_eq!(room_of("/ws/chat/lobby").as_deref(), Some("lobby"));
        assert_eq!(room_of("/ws/chat//"), None);
        assert_eq!(room_of("/chat/lobby/"), None);
        assert_eq!(room_of("/ws/chat/a b/"), None);
    }
}
