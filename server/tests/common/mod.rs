//! Helpers shared by the integration tests: a real server on 127.0.0.1:0,
//! clients of both kinds, raw HTTP, and receives that cannot hang.
#![allow(dead_code)] // each test file uses its own subset

pub mod proxy;
pub mod redis;
pub mod redis_cluster;
pub mod traffic;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use chat_protocol::{
    ChatEvent, Client, ConnectOptions, RoomName, ServerEvent, ServerUrl, UserName,
};
use chat_server::{Config, ServerHandle};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expected event may take.
pub const WITHIN: Duration = Duration::from_secs(10);

/// How long to listen when asserting that nothing arrives.
pub const SILENCE: Duration = Duration::from_millis(300);

/// A plain (tutorial) client: a bare WebSocket, no subprotocol.
pub type PlainSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// A server on a free loopback port, stopped when dropped.
pub struct TestServer {
    handle: Option<ServerHandle>,
    addr: SocketAddr,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> Self {
        Self::start_on("127.0.0.1:0".parse().expect("addr"), config).await
    }

    /// Starts on `addr` (to restart a server on the port it had).
    pub async fn start_on(addr: SocketAddr, config: Config) -> Self {
        init_tracing();
        let listener = bind_retrying(addr).await;
        let handle = chat_server::spawn(listener, config)
            .await
            .expect("spawn the server");
        let addr = handle.local_addr();
        Self {
            handle: Some(handle),
            addr,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn handle(&self) -> &ServerHandle {
        self.handle.as_ref().expect("server running")
    }

    pub fn url(&self) -> ServerUrl {
        ServerUrl::parse(&format!("ws://{}", self.addr)).expect("valid url")
    }

    /// A typed-events client named `name` in `room`.
    pub async fn client(&self, room: &str, name: &str) -> Client {
        let options = ConnectOptions::new().name(UserName::new(name).expect("valid name"));
        within(Client::connect(
            &self.url(),
            &RoomName::new(room).expect("valid room"),
            &options,
        ))
        .await
        .expect("connect")
    }

    /// A typed client that has read its welcome (returned).
    pub async fn joined(&self, room: &str, name: &str) -> (Client, chat_protocol::Welcome) {
        let mut client = self.client(room, name).await;
        match next_event(&mut client).await {
            ServerEvent::Welcome(welcome) => (client, welcome),
            other => panic!("expected a welcome, got {other:?}"),
        }
    }

    /// A client written for the Channels tutorial: no subprotocol, no name.
    pub async fn plain(&self, room: &str) -> PlainSocket {
        let url = format!("ws://{}/ws/chat/{room}/", self.addr);
        let (socket, _) = within(Box::pin(tokio_tungstenite::connect_async(url)))
            .await
            .expect("connect plain");
        socket
    }

    pub async fn shutdown(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
    }

    /// Shuts the server down (clients get 1001) and starts a new one, with
    /// the default config, on the same address.
    pub async fn restart(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown().await.expect("clean shutdown");
        }
        *self = Self::start_on(self.addr, Config::default()).await;
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // Dropping the handle cancels the server.
        self.handle.take();
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// Awaits `future`, failing the test if it takes longer than [`WITHIN`].
pub async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(WITHIN, future)
        .await
        .expect("timed out")
}

/// The next typed event.
pub async fn next_event(client: &mut Client) -> ServerEvent {
    within(client.next())
        .await
        .expect("stream ended")
        .expect("event")
}

/// The next chat event, skipping presence and other notices.
pub async fn next_chat(client: &mut Client) -> ChatEvent {
    loop {
        match next_event(client).await {
            ServerEvent::Chat(chat) => return chat,
            ServerEvent::Error(error) => panic!("unexpected error event: {error:?}"),
            _ => {}
        }
    }
}

/// The next chat event for the client called `name`, skipping presence
/// and other notices; a failure (an error event, the stream's end, nothing
/// within [`WITHIN`]) names the client, so a test with several members
/// says which one missed a message.
pub async fn next_chat_of(name: &str, client: &mut Client) -> ChatEvent {
    let deadline = tokio::time::Instant::now() + WITHIN;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Ok(Some(Ok(ServerEvent::Chat(chat)))) => return chat,
            Ok(Some(Ok(ServerEvent::Error(error)))) => panic!("{name}: {error:?}"),
            Ok(Some(Ok(_))) => {}
            other => panic!("{name}: no chat message within {WITHIN:?}: {other:?}"),
        }
    }
}

/// Asserts that no chat message reaches `client` for a short while.
pub async fn assert_no_chat(client: &mut Client) {
    let deadline = tokio::time::Instant::now() + SILENCE;
    loop {
        match tokio::time::timeout_at(deadline, client.next()).await {
            Err(_) => return,
            Ok(Some(Ok(ServerEvent::Chat(chat)))) => panic!("unexpected chat: {chat:?}"),
            Ok(Some(Ok(_))) => {}
            Ok(other) => panic!("connection ended: {other:?}"),
        }
    }
}

/// The next text frame of a plain socket, as raw text.
pub async fn next_text(socket: &mut PlainSocket) -> String {
    loop {
        match within(socket.next())
            .await
            .expect("plain stream ended")
            .expect("frame")
        {
            Message::Text(text) => return text.as_str().to_owned(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected text, got {other:?}"),
        }
    }
}

/// Sends a raw text frame on a plain socket.
pub async fn send_text(socket: &mut PlainSocket, text: &str) {
    within(socket.send(Message::text(text)))
        .await
        .expect("send");
}

/// Reads a plain socket until the server's close frame; returns its code and reason.
pub async fn close_code(socket: &mut PlainSocket) -> (u16, String) {
    loop {
        match within(socket.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.as_str().to_owned());
            }
            Some(Ok(Message::Close(None))) => panic!("close frame without a code"),
            Some(Ok(_)) => {}
            Some(Err(err)) => panic!("connection failed before a close frame: {err}"),
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// Reads a typed client until the server closes it; returns the close
/// code (panics if the connection ends any other way).
pub async fn client_close_code(client: &mut Client) -> u16 {
    loop {
        match within(client.next()).await {
            Some(Err(chat_protocol::ClientError::Closed {
                code: Some(code), ..
            })) => return code,
            Some(Err(err)) => panic!("ended without a close code: {err}"),
            Some(Ok(_)) => {}
            None => panic!("connection ended without a close frame"),
        }
    }
}

/// A raw HTTP/1.1 response.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request_head` (without the final blank line) and reads the
/// response up to the end of the connection.
pub async fn raw_http(addr: SocketAddr, request_head: &str) -> RawResponse {
    try_raw_http(addr, request_head, WITHIN)
        .await
        .expect("an HTTP answer in time")
}

/// [`raw_http`] with `Host: host` instead of the server's address (a
/// request for another name, as DNS rebinding makes).
pub async fn raw_http_for(addr: SocketAddr, host: &str, request_head: &str) -> RawResponse {
    exchange(addr, &format!("{request_head}\r\nHost: {host}"), WITHIN)
        .await
        .expect("an HTTP answer in time")
}

/// [`raw_http`], or `None` when the answer takes longer than `limit`.
pub async fn try_raw_http(
    addr: SocketAddr,
    request_head: &str,
    limit: Duration,
) -> Option<RawResponse> {
    exchange(addr, &format!("{request_head}\r\nHost: {addr}"), limit).await
}

/// Sends `request_head` (with its Host, if any) and reads the response,
/// within `limit`.
async fn exchange(addr: SocketAddr, request_head: &str, limit: Duration) -> Option<RawResponse> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let request = format!("{request_head}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("write request");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read response");
        raw
    };
    let raw = tokio::time::timeout(limit, exchange).await.ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some(RawResponse {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// The status of the answer to `request_head` (sent with the server's
/// address as `Host`), read from the status line only: for handshakes,
/// whose connection stays open when they succeed.
pub async fn status_of(addr: SocketAddr, request_head: &str) -> u16 {
    let mut stream = within(TcpStream::connect(addr)).await.expect("connect");
    let request = format!("{request_head}\r\nHost: {addr}\r\n\r\n");
    within(stream.write_all(request.as_bytes()))
        .await
        .expect("write request");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        let n = within(stream.read(&mut byte))
            .await
            .expect("read the answer");
        assert!(n > 0, "the server hung up without an answer");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head)
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("status line")
}

/// The active rooms, as `GET /api/rooms` lists them.
pub async fn room_list(addr: SocketAddr) -> chat_protocol::RoomList {
    let response = get(addr, "/api/rooms").await;
    serde_json::from_str(&response.body)
        .unwrap_or_else(|err| panic!("/api/rooms: {err}: {}", response.body))
}

/// `GET path` over HTTP.
pub async fn get(addr: SocketAddr, path: &str) -> RawResponse {
    raw_http(addr, &format!("GET {path} HTTP/1.1")).await
}

/// A WebSocket upgrade request for exactly `path`, sent raw so that the
/// path reaches the server as written.
pub async fn upgrade(addr: SocketAddr, path: &str) -> RawResponse {
    raw_http(
        addr,
        &format!(
            "GET {path} HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
        ),
    )
    .await
}

/// Resident memory of this process in KiB, from /proc.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Binds `addr`, retrying briefly while a just-stopped server releases it.
pub async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(err) => panic!("cannot bind {addr}: {err}"),
        }
    }
}

/// Generates `memory` and `redis` tests from one async body taking a `Backend`.
#[allow(unused_macros)] // not every test file runs on both layers
macro_rules! on_both_layers {
    ($($body:ident),* $(,)?) => {$(
        mod $body {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$body(Backend::Memory).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redis() {
                super::$body(Backend::Redis).await;
            }
        }
    )*};
}

/// Which layer a shared test body runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Memory,
    Redis,
}

/// One or more servers sharing rooms: a single in-memory server (every
/// "instance" is the same one), or several servers on one Redis.
pub struct Cluster {
    pub servers: Vec<TestServer>,
    pub redis: Option<redis::RedisServer>,
    pub backend: Backend,
    pub prefix: String,
}

impl Cluster {
    /// `instances` servers on `backend`, or `None` when Redis is needed and
    /// missing (said loudly; a failure under CI).
    pub async fn start(backend: Backend, instances: usize, config: Config) -> Option<Self> {
        match backend {
            Backend::Memory => Some(Self {
                servers: vec![TestServer::start_with(config).await],
                redis: None,
                backend,
                prefix: String::new(),
            }),
            Backend::Redis => {
                let redis = redis::RedisServer::start()?;
                let prefix = format!("t{}", redis.port());
                let mut servers = Vec::new();
                for _ in 0..instances {
                    let config = Config {
                        redis: Some(Self::redis_config(&redis, &prefix)),
                        ..config.clone()
                    };
                    servers.push(TestServer::start_with(config).await);
                }
                Some(Self {
                    servers,
                    redis: Some(redis),
                    backend,
                    prefix,
                })
            }
        }
    }

    pub fn redis_config(redis: &redis::RedisServer, prefix: &str) -> chat_server::RedisConfig {
        chat_server::RedisConfig {
            prefix: prefix.to_owned(),
            presence_ttl: Duration::from_secs(2),
            ..chat_server::RedisConfig::new(redis.url())
        }
    }

    /// Instance `i` (round robin; the one server in memory).
    pub fn server(&self, i: usize) -> &TestServer {
        &self.servers[i % self.servers.len()]
    }
}

/// The real `chat-server` binary in a child process on a free loopback
/// port, killed when dropped: what a test uses to measure the server's own
/// memory (`/proc/<pid>/status`), apart from the test's.
pub struct ServerProcess {
    child: std::process::Child,
    addr: SocketAddr,
}

impl ServerProcess {
    /// Starts `chat-server` with `args` (besides `--addr`), and waits until
    /// it answers.
    pub async fn start(args: &[&str]) -> Self {
        Self::start_logging(args, "warn", None).await
    }

    /// [`Self::start`], logging at `level` (`RUST_LOG`) into `log`, or
    /// nowhere.
    pub async fn start_logging(args: &[&str], level: &str, log: Option<&std::path::Path>) -> Self {
        let deadline = tokio::time::Instant::now() + WITHIN;
        loop {
            let addr = {
                let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
                probe.local_addr().expect("its address")
            };
            let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
                .arg("--addr")
                .arg(addr.to_string())
                .args(args)
                .env("RUST_LOG", level)
                .stdout(std::process::Stdio::null())
                .stderr(match log {
                    Some(path) => std::fs::File::create(path).expect("the log file").into(),
                    None => std::process::Stdio::null(),
                })
                .spawn()
                .expect("start chat-server");
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    // Most likely the port was taken meanwhile: another one.
                    break;
                }
                if TcpStream::connect(addr).await.is_ok() {
                    return Self { child, addr };
                }
                if tokio::time::Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("chat-server {args:?} did not come up within {WITHIN:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "chat-server {args:?} kept exiting at start"
            );
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's resident memory in KiB, from /proc.
    pub fn rss_kib(&self) -> u64 {
        rss_kib_of(self.pid()).expect("VmRSS of the server")
    }

    /// One metric's value from `/metrics` (the series of exactly that name
    /// and labels); 0 when the server has not counted any yet.
    pub async fn metric(&self, name: &str) -> f64 {
        metric(&get(self.addr, "/metrics").await.body, name).unwrap_or(0.0)
    }

    /// [`Self::metric`], or `None` when the server takes longer than
    /// `limit` to answer.
    pub async fn try_metric(&self, name: &str, limit: Duration) -> Option<f64> {
        let response = try_raw_http(self.addr, "GET /metrics HTTP/1.1", limit).await?;
        Some(metric(&response.body, name).unwrap_or(0.0))
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the series `name` (with its labels, if any) in a
/// Prometheus text exposition.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
}

/// The resident memory of process `pid` in KiB, from /proc (`None` once it
/// has exited).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}
