//! The closing handshake, for every close the server starts: the server's
//! FIN follows the client's close reply at once (RFC 6455 §7.1.1: the
//! server closes the TCP connection first, right after the handshake),
//! instead of the server waiting for the client to hang up. Measured with a
//! raw socket (which sees the FIN itself) and with Python `websockets`
//! (which only reports a close once the TCP connection is gone); the
//! browser's view is in `browser.rs`.
//!
//! Closes after a frame that cannot be read (too big, invalid UTF-8, a
//! protocol error) fail the connection instead (§7.1.7): there the FIN
//! comes right after the close frame, before the client's reply.

// Helpers outside #[test] functions unwrap as the tests do.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chat_protocol::close;
use chat_server::{Config, Limits};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How soon after the client's close reply the server's FIN must come.
const PROMPT: Duration = Duration::from_secs(1);

/// A WebSocket client written byte by byte, so that it can send what a
/// real client would refuse to, and see the TCP connection end.
struct Raw {
    tcp: TcpStream,
    /// Read and not parsed yet.
    buf: Vec<u8>,
}

impl Raw {
    async fn connect(addr: SocketAddr, path: &str) -> Self {
        Self::connect_with(addr, path, None).await
    }

    /// Connects with a receive buffer of `recv_buffer` bytes, if given.
    async fn connect_with(addr: SocketAddr, path: &str, recv_buffer: Option<u32>) -> Self {
        let socket = TcpSocket::new_v4().unwrap();
        if let Some(size) = recv_buffer {
            socket.set_recv_buffer_size(size).unwrap();
        }
        let mut tcp = within(socket.connect(addr)).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Self {
            tcp,
            buf: Vec::new(),
        };
        let head = loop {
            if let Some(end) = raw.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&raw.buf[..end]).into_owned();
                raw.buf.drain(..end + 4);
                break head;
            }
            assert!(
                raw.fill().await,
                "the connection ended during the handshake"
            );
        };
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        raw
    }

    /// Reads more into the buffer; false at the end of the stream.
    async fn fill(&mut self) -> bool {
        self.buf.reserve(16 * 1024);
        within(self.tcp.read_buf(&mut self.buf)).await.unwrap() > 0
    }

    /// Sends one masked frame (`rsv1`: with a reserved bit set, which no
    /// extension here allows: a protocol error).
    async fn send(&mut self, opcode: u8, payload: &[u8], rsv1: bool) {
        let mut frame = vec![0x80 | if rsv1 { 0x40 } else { 0 } | opcode];
        match payload.len() {
            len @ 0..126 => frame.push(0x80 | u8::try_from(len).unwrap()),
            len @ 126..65536 => {
                frame.push(0x80 | 0x7e);
                frame.extend(u16::try_from(len).unwrap().to_be_bytes());
            }
            len => {
                frame.push(0x80 | 0x7f);
                frame.extend((len as u64).to_be_bytes());
            }
        }
        let mask = [0x12, 0x34, 0x56, 0x78];
        frame.extend(mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        within(self.tcp.write_all(&frame)).await.unwrap();
    }

    /// The server's next frame (opcode, payload); `None` at the end of the
    /// stream.
    async fn frame(&mut self) -> Option<(u8, Vec<u8>)> {
        loop {
            if let Some((header, len)) = parse_header(&self.buf) {
                if self.buf.len() >= header + len {
                    let opcode = self.buf[0] & 0x0f;
                    let payload = self.buf[header..header + len].to_vec();
                    self.buf.drain(..header + len);
                    return Some((opcode, payload));
                }
            }
            if !self.fill().await {
                return None;
            }
        }
    }

    /// Reads up to the server's close frame, answers it as a client does,
    /// and returns its code and how long the server then took to end the
    /// TCP connection (with a FIN: a reset fails the test).
    async fn close_handshake(&mut self) -> (u16, Duration) {
        let code = loop {
            match self.frame().await {
                Some((0x8, payload)) => break u16::from_be_bytes([payload[0], payload[1]]),
                Some(_) => {}
                None => panic!("the connection ended without a close frame"),
            }
        };
        self.send(0x8, &code.to_be_bytes(), false).await;
        let replied = Instant::now();
        let mut rest = [0u8; 4096];
        loop {
            match within(self.tcp.read(&mut rest)).await {
                Ok(0) => return (code, replied.elapsed()),
                Ok(_) => {}
                Err(err) => panic!("the server reset the connection instead of closing it: {err}"),
            }
        }
    }
}

/// The header length and payload length of the frame at the start of
/// `buf`, once its header is complete.
fn parse_header(buf: &[u8]) -> Option<(usize, usize)> {
    let short = usize::from(*buf.get(1)? & 0x7f);
    match short {
        126 => Some((
            4,
            usize::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        )),
        127 => {
            let bytes: [u8; 8] = buf.get(2..10)?.try_into().ok()?;
            Some((10, usize::try_from(u64::from_be_bytes(bytes)).ok()?))
        }
        len => Some((2, len)),
    }
}

/// Checks one close: its code, and a FIN soon after the reply.
fn assert_prompt(case: &str, expected: u16, (code, fin_after): (u16, Duration)) {
    eprintln!("raw socket, {case}: close {code}, FIN {fin_after:?} after the close reply");
    assert_eq!(code, expected, "{case}");
    assert!(
        fin_after < PROMPT,
        "{case}: the server ended TCP {fin_after:?} after the client's close reply"
    );
}

fn config(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = Config::default();
    change(&mut config);
    config
}

/// What a client sends to earn each close that ends a frame's processing.
#[derive(Debug, Clone, Copy)]
enum Trigger {
    Binary,
    InvalidUtf8,
    NotJson,
    ReservedBit,
    TooBig,
    TypedFlood,
}

#[tokio::test]
async fn every_close_the_server_starts_ends_tcp_right_after_the_reply() {
    let cases = [
        ("binary frame", Trigger::Binary, close::UNSUPPORTED_DATA),
        (
            "invalid UTF-8",
            Trigger::InvalidUtf8,
            close::INVALID_PAYLOAD,
        ),
        (
            "plain frame not JSON",
            Trigger::NotJson,
            close::INVALID_PAYLOAD,
        ),
        ("reserved bit", Trigger::ReservedBit, close::PROTOCOL_ERROR),
        ("too big", Trigger::TooBig, close::MESSAGE_TOO_BIG),
        ("typed flood", Trigger::TypedFlood, close::POLICY_VIOLATION),
    ];
    for (case, trigger, code) in cases {
        let server = TestServer::start_with(config(|c| {
            c.max_message_size = 1024;
            c.limits = Limits {
                rate_per_sec: 1.0,
                rate_burst: 1,
                ..Limits::default()
            };
        }))
        .await;
        let path = match trigger {
            Trigger::TypedFlood => "/ws/chat/close/?v=2",
            _ => "/ws/chat/close/",
        };
        let mut raw = Raw::connect(server.addr(), path).await;
        match trigger {
            Trigger::Binary => raw.send(0x2, b"\x01\x02", false).await,
            Trigger::InvalidUtf8 => raw.send(0x1, b"\xff\xfe", false).await,
            Trigger::NotJson => raw.send(0x1, b"not json", false).await,
            Trigger::ReservedBit => raw.send(0x1, b"{}", true).await,
            Trigger::TooBig => raw.send(0x1, &[b'x'; 2000], false).await,
            Trigger::TypedFlood => {
                for _ in 0..3 {
                    raw.send(0x1, br#"{"message": "flood"}"#, false).await;
                }
            }
        }
        assert_prompt(case, code, raw.close_handshake().await);
    }
}

#[tokio::test]
async fn keepalive_and_shutdown_closes_end_tcp_right_after_the_reply() {
    let server = TestServer::start_with(config(|c| {
        c.limits.ping_interval = Duration::from_millis(200);
    }))
    .await;
    // Reads the pings, never answers them.
    let mut silent = Raw::connect(server.addr(), "/ws/chat/close/").await;
    assert_prompt(
        "ping timeout",
        close::GOING_AWAY,
        silent.close_handshake().await,
    );

    let server = TestServer::start_with(config(|c| c.drain_window = Duration::ZERO)).await;
    let mut raw = Raw::connect(server.addr(), "/ws/chat/close/").await;
    let stopping = tokio::spawn(server.shutdown());
    assert_prompt("shutdown", close::GOING_AWAY, raw.close_handshake().await);
    within(stopping).await.unwrap();
}

#[tokio::test]
async fn a_slow_consumer_close_ends_tcp_right_after_the_reply() {
    let server = TestServer::start_with(config(|c| {
        c.queue_len = 8;
        c.queue_bytes = 64 * 1024;
        c.limits.rate_per_sec = 0.0;
    }))
    .await;
    let mut slow = Raw::connect_with(server.addr(), "/ws/chat/slow/", Some(4096)).await;
    let (sender, _) = server.joined("slow", "sender").await;
    let (tx, mut echoes) = sender.split();
    tokio::spawn(async move { while echoes.next().await.is_some() {} });
    let text = "x".repeat(4000);
    // Until the server has given up on the slow reader.
    let deadline = Instant::now() + WITHIN;
    loop {
        for _ in 0..50 {
            tx.say(&text).await.unwrap();
        }
        let metrics = get(server.addr(), "/metrics").await.body;
        if metric(&metrics, "chat_disconnects_total{reason=\"slow_consumer\"}") == Some(1.0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the slow reader was never dropped"
        );
    }
    // It reads its way to the close frame now, and answers.
    assert_prompt(
        "slow consumer",
        close::POLICY_VIOLATION,
        slow.close_handshake().await,
    );
}

#[tokio::test]
async fn a_close_for_an_unavailable_layer_ends_tcp_right_after_the_reply() {
    let Some(mut redis) = redis::RedisServer::start() else {
        return;
    };
    let server = TestServer::start_with(Config {
        redis: Some(Cluster::redis_config(&redis, "closing")),
        ..Config::default()
    })
    .await;
    let mut raw = Raw::connect(server.addr(), "/ws/chat/close/").await;
    redis.kill();
    raw.send(0x1, br#"{"message": "not deliverable"}"#, false)
        .await;
    assert_prompt(
        "Redis gone (plain client)",
        close::TRY_AGAIN_LATER,
        raw.close_handshake().await,
    );
}

/// A client's close reply and what it saw, from Python `websockets`.
const PYTHON_PROBE: &str = r#"
import asyncio, json, logging, sys, time
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

class Stamps(logging.Handler):
    """When websockets sent its close reply."""
    def __init__(self):
        super().__init__()
        self.at = {}
    def emit(self, record):
        message = record.getMessage()
        if message.startswith("> CLOSE"):
            self.at.setdefault("reply", time.monotonic())

async def main(url, action, arg):
    stamps = Stamps()
    logger = logging.getLogger("probe")
    logger.setLevel(logging.DEBUG)
    logger.addHandler(stamps)
    logger.propagate = False
    code, closed_at = None, None
    async with connect(url, logger=logger, ping_interval=None, open_timeout=10, close_timeout=10) as ws:
        print("open", flush=True)
        try:
            if action == "binary":
                await ws.send(b"\x01\x02")
            elif action == "text":
                for text in json.loads(arg):
                    await ws.send(text)
            elif action == "big":
                await ws.send("x" * int(arg))
            while True:
                await ws.recv()
        except ConnectionClosed as closed:
            closed_at = time.monotonic()
            code = closed.rcvd.code if closed.rcvd else None
    reply = stamps.at.get("reply")
    print(json.dumps({
        "code": code,
        "closed_after_reply": closed_at - reply if reply and closed_at else None,
    }), flush=True)

asyncio.run(main(*sys.argv[1:]))
"#;

/// A Python with `websockets` (`.ci/run` installs it into `.ci/venv`, or
/// `CHAT_TEST_PYTHON` names one), or `None` after saying so loudly (a
/// failure under CI).
fn python_with_websockets() -> Option<String> {
    let python = std::env::var("CHAT_TEST_PYTHON")
        .unwrap_or_else(|_| format!("{}/../.ci/venv/bin/python", env!("CARGO_MANIFEST_DIR")));
    let found = Command::new(&python)
        .args(["-c", "import websockets"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if found {
        Some(python)
    } else {
        redis::may_skip("Python websockets (.ci/run installs it into .ci/venv)");
        None
    }
}

/// Runs the Python probe against `url` and returns its report.
async fn python_probe(python: &str, url: &str, action: &str, arg: &str) -> serde_json::Value {
    let mut child = Command::new(python)
        .args(["-c", PYTHON_PROBE, url, action, arg])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WITHIN * 2;
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the Python probe did not finish in time ({action})");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report = stdout
        .lines()
        .last()
        .and_then(|line| serde_json::from_str(line).ok());
    report.unwrap_or_else(|| {
        panic!(
            "the Python probe failed ({action}): {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

#[tokio::test]
async fn python_websockets_sees_each_close_as_soon_as_it_replies() {
    let Some(python) = python_with_websockets() else {
        return;
    };
    let cases = [
        ("binary frame", "", "binary", "", close::UNSUPPORTED_DATA),
        (
            "plain frame not JSON",
            "",
            "text",
            r#"["not json"]"#,
            close::INVALID_PAYLOAD,
        ),
        ("too big", "", "big", "2000", close::MESSAGE_TOO_BIG),
        (
            "typed flood",
            "?v=2",
            "text",
            r#"["{\"message\": \"a\"}", "{\"message\": \"b\"}", "{\"message\": \"c\"}"]"#,
            close::POLICY_VIOLATION,
        ),
        ("shutdown", "", "wait", "", close::GOING_AWAY),
    ];
    for (case, query, action, arg, code) in cases {
        let server = TestServer::start_with(config(|c| {
            c.max_message_size = 1024;
            c.drain_window = Duration::ZERO;
            c.limits = Limits {
                rate_per_sec: 1.0,
                rate_burst: 1,
                ..Limits::default()
            };
        }))
        .await;
        let url = format!("ws://{}/ws/chat/close/{query}", server.addr());
        let probe = python_probe(&python, &url, action, arg);
        let report = if action == "wait" {
            let stop = async {
                let deadline = Instant::now() + WITHIN;
                while server.handle().open_sessions() == 0 {
                    assert!(Instant::now() < deadline, "the probe never connected");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                server.shutdown().await;
            };
            let (report, ()) = tokio::join!(probe, stop);
            report
        } else {
            probe.await
        };
        eprintln!("python websockets, {case}: {report}");
        assert_eq!(report["code"], code, "{case}: {report}");
        let closed_after = report["closed_after_reply"].as_f64().unwrap_or(f64::MAX);
        assert!(
            closed_after < PROMPT.as_secs_f64(),
            "{case}: websockets saw the connection closed {closed_after} s after its reply"
        );
    }
}
