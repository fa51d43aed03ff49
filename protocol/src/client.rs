//! An async client for the protocol: connect to a room, send, receive typed
//! events, close. Works against `chat-server` (typed events) and against
//! any server that speaks the Channels tutorial protocol (plain mode).
//!
//! The client offers the [`SUBPROTOCOL_V2`] subprotocol. A server that does
//! not take it (a Django Channels tutorial app, for one) makes the
//! handshake fail; the client then connects again without it and runs in
//! [`Mode::Plain`]: chat messages arrive as [`ServerEvent::Chat`] with an
//! empty `user`, `id` 0 and the local receive time as `ts`.
//!
//! ```no_run
//! use chat_protocol::{Client, ConnectOptions, ServerEvent};
//!
//! # async fn bot() -> Result<(), Box<dyn std::error::Error>> {
//! let server = "ws://127.0.0.1:8000".parse()?;
//! let options = ConnectOptions::new().name("echo-bot".parse()?);
//! let mut client = Client::connect(&server, &"lobby".parse()?, &options).await?;
//! while let Some(event) = client.next().await {
//!     if let ServerEvent::Chat(chat) = event? {
//!         if let Some(text) = chat.message.strip_prefix("!echo ") {
//!             client.say(text).await?;
//!         }
//!     }
//! }
//! # Ok(()) }
//! ```

mod http;
mod transport;

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};

pub use http::{fetch_messages, fetch_rooms};
pub use transport::TlsOptions;
use transport::Transport;

use crate::close::Advice;
use crate::{
    ChatEvent, ClientMessage, ErrorCode, HistoryEvent, HistoryQuery, HistoryRequest, PlainMessage,
    RoomName, SUBPROTOCOL_V2, ServerEvent, ServerUrl, UrlError, UserName, unix_millis,
};

type WsStream = WebSocketStream<Transport>;

/// Everything that can go wrong for a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The server address is unusable.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// TCP connect failed.
    #[error("cannot connect to {address}: {source}; is the server running there?")]
    Connect {
        /// `host:port`.
        address: String,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// Connecting (or the HTTP call) took too long.
    #[error("no answer from {address} within {after:?}; is the address right?")]
    Timeout {
        /// What was being reached.
        address: String,
        /// The time allowed.
        after: Duration,
    },
    /// TLS setup or handshake failed.
    #[error("TLS: {reason}")]
    Tls {
        /// What failed, with the cause's text.
        reason: String,
        /// The cause (rustls's or the file system's error), when there is one.
        #[source]
        source: Option<Cause>,
    },
    /// The server answered the request with an HTTP error status.
    #[error("the server refused the request with HTTP {status}: {reason}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The server's explanation (the response body).
        reason: String,
    },
    /// An HTTP request failed.
    #[error("HTTP: {reason}")]
    Http {
        /// The request and what failed, with the cause's text.
        reason: String,
        /// The cause (hyper's or the JSON parser's error).
        #[source]
        source: Cause,
    },
    /// The server closed the connection with a close frame.
    #[error("the server closed the connection ({}): {reason}", code.map_or_else(|| "no code".to_owned(), |c| c.to_string()))]
    Closed {
        /// The close code, if the frame had one.
        code: Option<u16>,
        /// The reason text.
        reason: String,
    },
    /// The connection dropped without a close frame.
    #[error("connection lost: {reason}")]
    Disconnected {
        /// How, with the cause's text.
        reason: String,
        /// The I/O error, when there is one.
        #[source]
        source: Option<std::io::Error>,
    },
    /// Another WebSocket protocol error.
    #[error("WebSocket: {reason}")]
    WebSocket {
        /// What went wrong, with the cause's text.
        reason: String,
        /// tungstenite's error, when there is one.
        #[source]
        source: Option<Box<tungstenite::Error>>,
    },
    /// The connection's writer has stopped; the connection is gone.
    #[error("the connection is closed")]
    NotConnected,
    /// The server sends only the tutorial's plain frames: it has no
    /// history to page through.
    #[error(
        "the server speaks only the plain tutorial protocol: it has no history to page through"
    )]
    NoHistory,
}

/// The cause of a [`ClientError`], for `source()`.
pub(crate) type Cause = Box<dyn std::error::Error + Send + Sync>;

impl ClientError {
    /// The connection was lost for `reason` (no error behind it).
    pub fn disconnected(reason: impl Into<String>) -> Self {
        Self::Disconnected {
            reason: reason.into(),
            source: None,
        }
    }

    /// A WebSocket error with no error behind it.
    pub(crate) fn websocket(reason: impl Into<String>) -> Self {
        Self::WebSocket {
            reason: reason.into(),
            source: None,
        }
    }

    /// A TLS error: `reason` says what failed (and includes `source`'s text,
    /// when there is one).
    pub(crate) fn tls(reason: impl Into<String>, source: Option<Cause>) -> Self {
        Self::Tls {
            reason: reason.into(),
            source,
        }
    }

    /// Whether the server refused the connection because the display name
    /// is held in the room by someone else (HTTP 409, `name_taken`).
    pub fn is_name_taken(&self) -> bool {
        matches!(self, Self::Refused { status: 409, .. })
    }

    /// What to do after this error: stop, or reconnect after a delay. See
    /// [`crate::close`] for the table.
    pub fn advice(&self) -> Advice {
        match self {
            Self::Url(_) | Self::Tls { .. } | Self::NoHistory => Advice::Stop,
            Self::Refused { status, .. } => Advice::for_http_status(*status),
            Self::Closed { code, .. } => Advice::for_close_code(*code),
            Self::Connect { .. }
            | Self::Timeout { .. }
            | Self::Http { .. }
            | Self::Disconnected { .. }
            | Self::WebSocket { .. }
            | Self::NotConnected => Advice::for_close_code(None),
        }
    }
}

fn map_ws_error(err: tungstenite::Error) -> ClientError {
    use tungstenite::Error as E;
    match err {
        E::Http(response) => {
            let status = response.status().as_u16();
            let reason = response
                .body()
                .as_deref()
                .map(|b| String::from_utf8_lossy(b).trim().to_owned())
                .filter(|r| !r.is_empty())
                .unwrap_or_else(|| {
                    response
                        .status()
                        .canonical_reason()
                        .unwrap_or("refused")
                        .to_owned()
                });
            ClientError::Refused { status, reason }
        }
        E::Io(err) => ClientError::Disconnected {
            reason: err.to_string(),
            source: Some(err),
        },
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => {
            ClientError::disconnected("the server went away without closing")
        }
        E::ConnectionClosed | E::AlreadyClosed => ClientError::NotConnected,
        other => ClientError::WebSocket {
            reason: other.to_string(),
            source: Some(Box::new(other)),
        },
    }
}

/// Where the `Origin` header of the handshake comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Origin {
    /// The server's own origin (`http://host:port`), as a page it served
    /// would send: what Channels' `AllowedHostsOriginValidator` expects.
    #[default]
    Server,
    /// No `Origin` header, as most non-browser clients do.
    Omit,
    /// This exact value.
    Custom(String),
}

/// How to connect: name, origin, recovery point, TLS, timeouts.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    name: Option<UserName>,
    origin: Origin,
    since: Option<u64>,
    epoch: Option<String>,
    events: bool,
    token: Option<String>,
    key: Option<String>,
    tls: TlsOptions,
    timeout: Duration,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl ConnectOptions {
    /// Defaults: no name (the server picks a guest name), the server's own
    /// origin, typed events requested, a 10 s connect timeout.
    pub fn new() -> Self {
        Self {
            name: None,
            origin: Origin::Server,
            since: None,
            epoch: None,
            events: true,
            token: None,
            key: None,
            tls: TlsOptions::default(),
            timeout: Duration::from_secs(10),
        }
    }

    /// The display name to join with.
    #[must_use]
    pub fn name(mut self, name: UserName) -> Self {
        self.name = Some(name);
        self
    }

    /// The `Origin` header policy.
    #[must_use]
    pub fn origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Resume after the message with this id: the welcome's history then
    /// holds every message after it that the server still has.
    #[must_use]
    pub fn since(mut self, last_seen_id: Option<u64>) -> Self {
        self.since = last_seen_id;
        self
    }

    /// The epoch of the welcome in which `since` was seen (see
    /// [`crate::Welcome::epoch`]): the server ignores `since` from another
    /// epoch instead of misreading it.
    #[must_use]
    pub fn epoch(mut self, epoch: Option<String>) -> Self {
        self.epoch = epoch;
        self
    }

    /// Ask for typed events (the default) or only the tutorial's plain frames.
    #[must_use]
    pub fn events(mut self, events: bool) -> Self {
        self.events = events;
        self
    }

    /// A bearer token for servers that require one.
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    /// This person's secret key, sent as `?key=`: it lets several
    /// connections of one person (two terminals, two tabs) share a display
    /// name, which another person cannot then take (the server refuses
    /// them with HTTP 409, [`ClientError::is_name_taken`]). Keep it secret
    /// and stable, e.g. in a file, and send the same key every time; see
    /// [`generate_key`]. Without a key, a name is held by one connection.
    #[must_use]
    pub fn key(mut self, key: Option<String>) -> Self {
        self.key = key;
        self
    }

    /// TLS trust settings for `wss://`.
    #[must_use]
    pub fn tls(mut self, tls: TlsOptions) -> Self {
        self.tls = tls;
        self
    }

    /// How long connecting may take.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The configured display name.
    pub fn user_name(&self) -> Option<&UserName> {
        self.name.as_ref()
    }

    /// The configured TLS settings.
    pub fn tls_options(&self) -> &TlsOptions {
        &self.tls
    }

    /// The configured connect timeout.
    pub fn connect_timeout(&self) -> Duration {
        self.timeout
    }

    /// The configured bearer token.
    pub fn bearer_token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

/// Which stream the server agreed to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Typed events: welcome, chat with names and ids, join, leave, errors.
    Events,
    /// The tutorial's plain `{"message": text}` frames only.
    Plain,
}

/// What the receiving half needs to turn frames into events.
#[derive(Debug, Clone)]
struct Decoder {
    room: RoomName,
    mode: Mode,
}

impl Decoder {
    fn decode(&self, text: &str) -> Option<ServerEvent> {
        match self.mode {
            Mode::Events => match serde_json::from_str::<ServerEvent>(text) {
                Ok(ServerEvent::Unknown) => {
                    tracing::debug!(text, "ignoring an event of an unknown type");
                    None
                }
                Ok(event) => Some(event),
                Err(err) => {
                    tracing::warn!(%err, text, "ignoring a frame that is not a valid event");
                    None
                }
            },
            Mode::Plain => match serde_json::from_str::<PlainMessage>(text) {
                Ok(plain) => Some(ServerEvent::Chat(ChatEvent {
                    message: plain.message,
                    user: String::new(),
                    room: self.room.clone(),
                    id: 0,
                    ts: unix_millis(),
                    emote: false,
                })),
                Err(err) => {
                    tracing::warn!(%err, text, "ignoring a frame without a string \"message\"");
                    None
                }
            },
        }
    }

    /// Reads frames until one makes an event. Cancel-safe: nothing is held
    /// across the await but the stream itself.
    async fn next_event<S>(&self, stream: &mut S) -> Option<Result<ServerEvent, ClientError>>
    where
        S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin,
    {
        loop {
            let message = match stream.next().await? {
                Ok(message) => message,
                Err(err) => {
                    return match map_ws_error(err) {
                        ClientError::NotConnected => None,
                        other => Some(Err(other)),
                    };
                }
            };
            match message {
                Message::Text(text) => {
                    if let Some(event) = self.decode(text.as_str()) {
                        return Some(Ok(event));
                    }
                }
                Message::Close(frame) => {
                    let (code, reason) = frame.map_or((None, String::new()), |f| {
                        (Some(u16::from(f.code)), f.reason.as_str().to_owned())
                    });
                    return Some(Err(ClientError::Closed { code, reason }));
                }
                Message::Binary(_) => tracing::debug!("ignoring a binary frame"),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
            }
        }
    }
}

/// How long [`Client::history`] waits for its answer.
const HISTORY_TIMEOUT: Duration = Duration::from_secs(30);

/// A connection to one room.
#[derive(Debug)]
pub struct Client {
    ws: WsStream,
    decoder: Decoder,
    /// Events that arrived while [`Client::history`] waited for its
    /// answer; [`Client::next`] hands them out first.
    backlog: VecDeque<ServerEvent>,
    /// Numbers history requests, for their `ref`.
    requests: u64,
}

impl Client {
    /// Connects to `room` on `server`.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] when the server is unreachable or refuses: a bad
    /// room or name gives [`ClientError::Refused`] with the server's reason.
    pub async fn connect(
        server: &ServerUrl,
        room: &RoomName,
        options: &ConnectOptions,
    ) -> Result<Self, ClientError> {
        if !options.events {
            return Self::handshake(server, room, options, Mode::Plain).await;
        }
        match Self::handshake(server, room, options, Mode::Events).await {
            Err(ClientError::WebSocket { reason, .. }) if reason == NO_SUBPROTOCOL => {
                tracing::info!(%server, "the server does not offer typed events; using the plain tutorial protocol");
                Self::handshake(server, room, options, Mode::Plain).await
            }
            other => other,
        }
    }

    async fn handshake(
        server: &ServerUrl,
        room: &RoomName,
        options: &ConnectOptions,
        mode: Mode,
    ) -> Result<Self, ClientError> {
        let mut url = server.socket_url(room);
        {
            let mut query = url.query_pairs_mut();
            if let Some(name) = &options.name {
                query.append_pair("name", name.as_str());
            }
            if let Some(key) = &options.key {
                query.append_pair("key", key);
            }
            if let Some(since) = options.since {
                query.append_pair("since", &since.to_string());
                if let Some(epoch) = &options.epoch {
                    query.append_pair("epoch", epoch);
                }
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut request = url.as_str().into_client_request().map_err(map_ws_error)?;
        let headers = request.headers_mut();
        if mode == Mode::Events {
            headers.insert(
                "Sec-WebSocket-Protocol",
                HeaderValue::from_static(SUBPROTOCOL_V2),
            );
        }
        let origin = match &options.origin {
            Origin::Server => Some(server.origin()),
            Origin::Omit => None,
            Origin::Custom(origin) => Some(origin.clone()),
        };
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(&origin).map_err(|_| {
                ClientError::websocket(format!("{origin:?} is not a valid Origin header"))
            })?;
            headers.insert("Origin", value);
        }
        if let Some(token) = &options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| ClientError::websocket("the token is not a valid header value"))?;
            headers.insert("Authorization", value);
        }
        let transport = transport::connect(server, &options.tls, options.timeout).await?;
        let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
        let handshake =
            tokio_tungstenite::client_async_with_config(request, transport, Some(config));
        let (ws, _response) = tokio::time::timeout(options.timeout, handshake)
            .await
            .map_err(|_| ClientError::Timeout {
                address: url.to_string(),
                after: options.timeout,
            })?
            .map_err(|err| match err {
                tungstenite::Error::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                    SubProtocolError::NoSubProtocol,
                )) => ClientError::websocket(NO_SUBPROTOCOL),
                other => map_ws_error(other),
            })?;
        Ok(Self {
            ws,
            decoder: Decoder {
                room: room.clone(),
                mode,
            },
            backlog: VecDeque::new(),
            requests: 0,
        })
    }

    /// Which stream the server agreed to send.
    pub fn mode(&self) -> Mode {
        self.decoder.mode
    }

    /// The room this client is in.
    pub fn room(&self) -> &RoomName {
        &self.decoder.room
    }

    /// Sends a message and flushes it to the socket.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), ClientError> {
        self.ws
            .send(Message::text(message.to_json()))
            .await
            .map_err(map_ws_error)
    }

    /// Says `text` in the room: sends `{"message": text}`.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn say(&mut self, text: &str) -> Result<(), ClientError> {
        self.send(&ClientMessage::chat(text)).await
    }

    /// Sends an already-encoded text frame as it is (for tests and tools
    /// that need to send something other than a [`ClientMessage`]).
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn send_raw(&mut self, frame: Message) -> Result<(), ClientError> {
        self.ws.send(frame).await.map_err(map_ws_error)
    }

    /// The next event from the server; `None` once the connection has ended.
    /// A close from the server arrives once as [`ClientError::Closed`].
    /// Cancel-safe, so it can sit in a `tokio::select!`.
    pub async fn next(&mut self) -> Option<Result<ServerEvent, ClientError>> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(Ok(event));
        }
        self.decoder.next_event(&mut self.ws).await
    }

    /// Fetches a page of the room's stored messages (oldest first) and
    /// waits for it: sends a `history` frame and returns its answer. Events
    /// that arrive meanwhile are kept, in order, for [`Client::next`].
    ///
    /// ```no_run
    /// # async fn older(client: &mut chat_protocol::Client) -> Result<(), chat_protocol::ClientError> {
    /// use chat_protocol::HistoryQuery;
    ///
    /// // Walk back from the newest message to the oldest one kept.
    /// let mut page = client.history(HistoryQuery::new().limit(100)).await?;
    /// while page.more {
    ///     let Some(oldest) = page.messages.first() else { break };
    ///     page = client.history(HistoryQuery::new().before(oldest.id).limit(100)).await?;
    /// }
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// [`ClientError::NoHistory`] in plain mode; [`ClientError::Refused`]
    /// (status 400, the server's reason) when the server refuses the query;
    /// [`ClientError::Timeout`] without an answer in 30 s; other
    /// [`ClientError`]s when the connection fails.
    pub async fn history(&mut self, query: HistoryQuery) -> Result<HistoryEvent, ClientError> {
        if self.decoder.mode == Mode::Plain {
            return Err(ClientError::NoHistory);
        }
        self.requests += 1;
        let reference = format!("client-{}", self.requests);
        let request = HistoryRequest {
            query,
            reference: Some(reference.clone()),
        };
        self.send(&ClientMessage::History(request)).await?;
        let wait = async {
            loop {
                match self.decoder.next_event(&mut self.ws).await {
                    None => return Err(ClientError::NotConnected),
                    Some(Err(err)) => return Err(err),
                    Some(Ok(ServerEvent::History(answer)))
                        if answer.reference.as_deref() == Some(reference.as_str()) =>
                    {
                        return Ok(answer);
                    }
                    Some(Ok(ServerEvent::Error(error)))
                        if error.code == ErrorCode::InvalidQuery =>
                    {
                        return Err(ClientError::Refused {
                            status: 400,
                            reason: error.message,
                        });
                    }
                    Some(Ok(event)) => self.backlog.push_back(event),
                }
            }
        };
        tokio::time::timeout(HISTORY_TIMEOUT, wait)
            .await
            .map_err(|_| ClientError::Timeout {
                address: format!("history of {}", self.decoder.room),
                after: HISTORY_TIMEOUT,
            })?
    }

    /// Closes the connection with code 1000 and waits (up to 2 s) for the
    /// server's reply.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the close frame cannot be sent.
    pub async fn close(mut self) -> Result<(), ClientError> {
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "bye".into(),
        };
        self.ws.close(Some(frame)).await.map_err(map_ws_error)?;
        let drain = async { while let Some(Ok(_)) = self.ws.next().await {} };
        let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
        Ok(())
    }

    /// Splits the client into a cloneable sending handle and the event stream,
    /// so that one task can read while others send.
    pub fn split(self) -> (ClientSender, ClientEvents) {
        let (sink, stream) = self.ws.split();
        let (commands, inbox) = mpsc::channel(64);
        tokio::spawn(run_writer(sink, inbox));
        (
            ClientSender { commands },
            ClientEvents {
                stream,
                decoder: self.decoder,
                backlog: self.backlog,
            },
        )
    }
}

/// A new random key for [`ConnectOptions::key`]: 32 hex digits (128 bits)
/// from the operating system's random source.
///
/// # Errors
///
/// When the random source cannot be read.
pub fn generate_key() -> std::io::Result<String> {
    use std::fmt::Write as _;
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().fold(String::with_capacity(32), |mut out, b| {
        // Writing to a String cannot fail.
        let _ = write!(out, "{b:02x}");
        out
    }))
}

const NO_SUBPROTOCOL: &str = "the server did not accept the chat.v2 subprotocol";

enum Command {
    Send(Message, oneshot::Sender<Result<(), ClientError>>),
    Close(oneshot::Sender<Result<(), ClientError>>),
}

/// The task that owns the sending half after [`Client::split`].
async fn run_writer(mut sink: SplitSink<WsStream, Message>, mut inbox: mpsc::Receiver<Command>) {
    while let Some(command) = inbox.recv().await {
        match command {
            Command::Send(message, done) => {
                let _ = done.send(sink.send(message).await.map_err(map_ws_error));
            }
            Command::Close(done) => {
                let frame = CloseFrame {
                    code: CloseCode::Normal,
                    reason: "bye".into(),
                };
                let _ = done.send(
                    sink.send(Message::Close(Some(frame)))
                        .await
                        .map_err(map_ws_error),
                );
                return;
            }
        }
    }
    // Every sender is gone: say goodbye.
    let frame = CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    };
    let _ = sink.send(Message::Close(Some(frame))).await;
}

/// The sending half of a split [`Client`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ClientSender {
    commands: mpsc::Sender<Command>,
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Send(message, _) => f.debug_tuple("Send").field(message).finish(),
            Self::Close(_) => f.write_str("Close"),
        }
    }
}

impl ClientSender {
    /// Sends a message; returns once it has been written to the socket.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn send(&self, message: &ClientMessage) -> Result<(), ClientError> {
        self.request(|done| Command::Send(Message::text(message.to_json()), done))
            .await
    }

    /// Says `text` in the room.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn say(&self, text: &str) -> Result<(), ClientError> {
        self.send(&ClientMessage::chat(text)).await
    }

    /// Asks for a page of stored messages; the answer arrives on the
    /// [`ClientEvents`] stream as [`ServerEvent::History`] (with the
    /// request's `reference` echoed), or as an error event with code
    /// [`ErrorCode::InvalidQuery`] when the server refuses the query.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is gone.
    pub async fn history(&self, request: HistoryRequest) -> Result<(), ClientError> {
        self.send(&ClientMessage::History(request)).await
    }

    /// Sends a close frame (1000); the event stream then ends.
    ///
    /// # Errors
    ///
    /// [`ClientError`] when the connection is already gone.
    pub async fn close(&self) -> Result<(), ClientError> {
        self.request(Command::Close).await
    }

    async fn request(
        &self,
        command: impl FnOnce(oneshot::Sender<Result<(), ClientError>>) -> Command,
    ) -> Result<(), ClientError> {
        let (done, result) = oneshot::channel();
        self.commands
            .send(command(done))
            .await
            .map_err(|_| ClientError::NotConnected)?;
        result.await.map_err(|_| ClientError::NotConnected)?
    }
}

/// The receiving half of a split [`Client`].
#[derive(Debug)]
pub struct ClientEvents {
    stream: SplitStream<WsStream>,
    decoder: Decoder,
    /// Events read by [`Client::history`] before the split.
    backlog: VecDeque<ServerEvent>,
}

impl ClientEvents {
    /// The next event; see [`Client::next`]. Cancel-safe.
    pub async fn next(&mut self) -> Option<Result<ServerEvent, ClientError>> {
        if let Some(event) = self.backlog.pop_front() {
            return Some(Ok(event));
        }
        self.decoder.next_event(&mut self.stream).await
    }

    /// Which stream the server agreed to send.
    pub fn mode(&self) -> Mode {
        self.decoder.mode
    }

    /// The room.
    pub fn room(&self) -> &RoomName {
        &self.decoder.room
    }
}
