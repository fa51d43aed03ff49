//! What clients can make the server hold, measured on the real binary's
//! resident memory (`/proc/<pid>/status`), with the default limits: the
//! memory model of the README's "Limits and security", checked.
//!
//! * typed joiners that never read their welcome do not each pin a copy of
//!   the room's history (it is streamed from the shared store);
//! * the history of rooms everyone left is bounded by `--history-memory`;
//! * a member that stops reading costs at most `--queue-bytes` of queue.

// Helpers outside #[test] functions unwrap as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::Message;

const MIB: u64 = 1024;

/// The size of the review's messages: about 60 KB of text.
const TEXT_BYTES: usize = 60_000;

/// `count` messages of [`TEXT_BYTES`] into `room`, from a plain client
/// that reads what the room relays back meanwhile (as any member must, or
/// it is a slow consumer), and leaves once it has seen them all.
async fn fill(addr: SocketAddr, room: String, count: usize) {
    let url = format!("ws://{addr}/ws/chat/{room}/");
    let (socket, _) = within(Box::pin(tokio_tungstenite::connect_async(url)))
        .await
        .expect("connect the filler");
    let (mut tx, mut rx) = socket.split();
    let reader = tokio::spawn(async move {
        for _ in 0..count {
            match within(rx.next()).await {
                Some(Ok(Message::Text(_))) => {}
                other => panic!("the filler expected its echo, got {other:?}"),
            }
        }
        rx
    });
    let text = "x".repeat(TEXT_BYTES);
    for n in 0..count {
        let frame = format!(r#"{{"message": "{n:04} {text}"}}"#);
        within(tx.send(Message::text(frame))).await.unwrap();
    }
    let rx = within(reader).await.unwrap();
    let mut socket = tx.reunite(rx).unwrap();
    let _ = within(socket.close(None)).await;
}

/// A client that connects to `path` with a small receive buffer, sends its
/// handshake, and never reads a byte.
async fn silent(addr: SocketAddr, path: &str) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut tcp = within(socket.connect(addr)).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    tcp
}

/// Waits until the server's gauge or counter `name` reads `value`.
async fn wait_for_metric(server: &ServerProcess, name: &str, value: f64) {
    if let Err(err) = metric_reaches(server, name, value).await {
        panic!("{err}");
    }
}

/// Waits until `name` reads `value`, or says what it read last.
async fn metric_reaches(server: &ServerProcess, name: &str, value: f64) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + WITHIN * 3;
    loop {
        // A server hard at work may answer late: that is "not yet".
        let now = server.try_metric(name, Duration::from_secs(1)).await;
        if now.is_some_and(|now| (now - value).abs() < f64::EPSILON) {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(match now {
                Some(now) => format!("{name} is {now}, expected {value}"),
                None => {
                    format!("the server did not answer /metrics in time (expected {name} {value})")
                }
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The highest resident memory of a process, sampled every 20 ms in a
/// task of its own (so that it goes on while the test waits), and said
/// in the output at every new high, so that a test that fails on a
/// deadline still shows how far memory went.
struct PeakRss {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<u64>,
}

impl PeakRss {
    fn watch(pid: u32) -> Self {
        let (stop, mut stopped) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let mut peak = rss_kib_of(pid).unwrap_or(0);
            let mut said = peak;
            loop {
                let rss = rss_kib_of(pid).unwrap_or(0);
                if rss > said + 64 * MIB {
                    eprintln!("server RSS now {rss} KiB");
                    said = rss;
                }
                peak = peak.max(rss);
                tokio::select! {
                    _ = &mut stopped => return peak,
                    () = tokio::time::sleep(Duration::from_millis(20)) => {}
                }
            }
        });
        Self { stop, task }
    }

    async fn stop(self) -> u64 {
        let _ = self.stop.send(());
        within(self.task).await.unwrap()
    }
}

#[tokio::test]
async fn typed_joiners_that_never_read_their_welcome_do_not_pin_copies_of_the_history() {
    let server = ServerProcess::start(&[]).await;
    let addr = server.addr();
    Box::pin(fill(addr, "big".into(), 100)).await;
    wait_for_metric(&server, "chat_connections", 0.0).await;
    let before = server.rss_kib();
    // Watch the server's memory from the first joiner on.
    let peak = PeakRss::watch(server.pid());
    // 200 joiners, each owed a welcome of about 6 MB it will never read.
    let mut joiners = Vec::new();
    for _ in 0..200 {
        joiners.push(silent(addr, "/ws/chat/big/?v=2").await);
    }
    let all_in = metric_reaches(&server, "chat_connections", 200.0).await;
    // Every session is now writing its welcome, or stuck writing it.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let peak = peak.stop().await;
    let grown = peak.saturating_sub(before);
    eprintln!(
        "200 silent typed joiners of a 100 x 60 KB room: RSS {before} KiB -> peak {peak} KiB (+{grown} KiB)"
    );
    assert!(
        grown <= 64 * MIB,
        "the server grew by {grown} KiB for 200 unread welcomes"
    );
    all_in.unwrap();
    drop(joiners);
}

#[tokio::test]
async fn the_history_of_rooms_everyone_left_is_bounded_by_the_history_budget() {
    let server = ServerProcess::start(&[]).await;
    let addr = server.addr();
    // 100 rooms x 100 x 60 KB (600 MB of history without a budget), four
    // rooms at a time, each filler leaving when its room is full.
    futures_util::stream::iter(0..100)
        .for_each_concurrent(4, |i| fill(addr, format!("room-{i}"), 100))
        .await;
    wait_for_metric(&server, "chat_connections", 0.0).await;
    let rss = server.rss_kib();
    let held = server.metric("chat_history_bytes").await;
    let forgotten = server.metric("chat_history_forgotten_rooms_total").await;
    eprintln!(
        "after 100 rooms x 100 x 60 KB, everyone gone: RSS {rss} KiB, history {held} bytes, {forgotten} rooms forgotten"
    );
    assert!(rss <= 256 * MIB, "RSS {rss} KiB with nobody connected");
    assert!(held <= f64::from(64u32 << 20), "history holds {held} bytes");
    assert!(
        forgotten > 0.0,
        "idle rooms were forgotten to stay within the budget"
    );
}

#[tokio::test]
async fn a_member_that_stops_reading_costs_at_most_the_queue_bytes() {
    // No rate limit: the sender floods on purpose.
    let server = ServerProcess::start(&["--rate-limit", "0"]).await;
    let addr = server.addr();
    let _silent = silent(addr, "/ws/chat/flood/").await;
    wait_for_metric(&server, "chat_connections", 1.0).await;
    let before = server.rss_kib();
    let peak = PeakRss::watch(server.pid());
    // 1000 x 60 KB (60 MB) into the room; the sender reads its echoes.
    Box::pin(fill(addr, "flood".into(), 1000)).await;
    let peak = peak.stop().await;
    let grown = peak.saturating_sub(before);
    eprintln!(
        "1000 x 60 KB past a member that does not read: RSS {before} KiB -> peak {peak} KiB (+{grown} KiB)"
    );
    // The queue (4 MiB) and the room's history (100 x 60 KB), with room to spare.
    assert!(grown <= 32 * MIB, "the server grew by {grown} KiB");
    wait_for_metric(
        &server,
        "chat_disconnects_total{reason=\"slow_consumer\"}",
        1.0,
    )
    .await;
}
