//! One WebSocket connection, from the welcome to the close.
//!
//! The data path of a message, end to end:
//!
//! 1. the socket (`ws::WebSocket`, our RFC 6455 codec) reads the client's
//!    frames into whole messages; [`Session::on_text`] parses the JSON,
//!    checks the rate limit, and hands a [`Draft`] to the layer
//!    (`Layer::publish`), stamped with this connection's name;
//! 2. the layer assigns the id and serialises the event once per format
//!    (`frames::chat_frames`), and the room registry stores the shared
//!    bytes once in the room's ring (`RoomRegistry::deliver_with`, which
//!    serialises only the formats someone reads; the Redis layer's pump
//!    uses `RoomRegistry::deliver` with both);
//! 3. the room's write pass (`ring`) writes the new frames to every member
//!    whose session lent it its socket while waiting in
//!    [`Session::relay`]: one non-blocking write per member, and no
//!    member's task wakes. A member whose socket is full (or that uses TLS)
//!    gets its socket back and writes the rest itself
//!    ([`Session::catch_up`], [`Session::queue_batch`]), within its
//!    timeouts and lag limits.
//!
//! One task per connection reads, and writes what is its own (the welcome,
//! errors, history pages, pings, the close) and what the room's write pass
//! handed back; an idle connection costs one small task and no queue of its
//! own: the room's ring is the queue, and the socket holds no buffer while
//! nothing is partly read or waiting to be written.

mod echo;
mod ending;
mod welcome;

use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::time::Instant;

use chat_protocol::close;
use chat_protocol::{
    ClientMessage, ErrorCode, ErrorEvent, HistoryEvent, HistoryRequest, RoomName, ServerEvent,
    UserName, Welcome, unix_millis,
};
use futures_util::FutureExt;
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tracing::debug;

pub use echo::echo;
use ending::{End, Hangup};

use crate::AppState;
use crate::frames::{Delivery, Format};
use crate::layer::{Draft, Joined, LayerError};
use crate::limits::{RateLimit, Ticket, Verdict};
use crate::names::Identity;
use crate::ring::{Subscription, Wanted};
use crate::ws::{self, Fragment, Message, OpCode, Stream, WebSocket};

/// The socket type of an upgraded connection.
pub type Socket = WebSocket;

/// Wraps an upgraded connection in a WebSocket; plain TCP is taken back
/// out of hyper's wrapper first, with any bytes hyper read past the
/// handshake handed to the WebSocket to read first.
fn websocket(upgraded: Upgraded, max_message_size: usize) -> Socket {
    match upgraded.downcast::<TokioIo<TcpStream>>() {
        Ok(parts) => {
            let stream = Stream::Tcp(std::sync::Arc::new(parts.io.into_inner()));
            WebSocket::new(stream, &parts.read_buf, max_message_size)
        }
        Err(upgraded) => {
            let stream = Stream::Upgraded(Box::new(TokioIo::new(upgraded)));
            WebSocket::new(stream, &[], max_message_size)
        }
    }
}

/// Stop adding queued messages to a write batch past this many bytes: big
/// enough that a burst goes out in a few system calls, small enough that
/// what a blocked connection holds out of the ring stays small.
const BATCH_BYTES: usize = 16 * 1024;

/// Stop adding queued messages to a write batch past this many frames:
/// a vectored write takes a header and a payload per frame.
const BATCH_FRAMES: u64 = 64;

/// Frames larger than this are sent as fragments, each written out before
/// the next is queued, so that a welcome made as it goes (`welcome`)
/// holds one fragment at a time however slowly it is read.
const FRAGMENT_BYTES: usize = 16 * 1024;

/// While a write is blocked, how often to check whether the client has
/// fallen further behind than its queue allows.
const LAG_CHECK: Duration = Duration::from_millis(200);

/// How long sending the close frame may take, behind whatever the client
/// has not read yet: a slow client gets a few seconds to read its way to
/// it and learn why it was dropped. It then has `ending::CLOSE_REPLY` to
/// answer, and the server ends the TCP connection as soon as it does.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// How long closing may take when the server is shutting down (or a
/// keepalive gives up on a silent peer).
const SHUTDOWN_LINGER: Duration = Duration::from_millis(500);

/// What a session needs to know about its connection.
#[derive(Debug)]
pub struct SessionParams {
    /// The room, from the URL.
    pub room: RoomName,
    /// The display name: from `?name=`, or a generated guest name.
    pub user: UserName,
    /// Typed events or plain frames.
    pub format: Format,
    /// Who this is, for name ownership (see `names`).
    pub identity: Identity,
}

/// A session waiting for its upgrade to complete.
#[derive(Debug)]
pub struct Pending {
    /// The connection's parameters.
    pub params: SessionParams,
    /// The room, joined before the handshake's response was sent.
    pub joined: Joined,
    /// The peer's address, for logs.
    pub peer: SocketAddr,
    /// The connection's admission; dropped when the session ends.
    pub ticket: Ticket,
    /// Which batch of the drain this session closes in at shutdown.
    pub drain_batch: u8,
    /// The server.
    pub state: AppState,
}

/// What woke the relay loop.
enum Woken {
    /// A keepalive tick or the shutdown.
    Signal,
    /// The room: events to read, or what the write pass handed back.
    Room(Wanted),
    /// The client's next frame.
    Inbound(Option<Result<Message, ws::Error>>),
}

/// A live connection in a room.
///
/// Its task stays small while idle: rarely taken paths (join, welcome,
/// inbound frames, blocked writes, close) run as boxed futures, so that
/// their state is not part of every idle connection's task.
struct Session {
    ws: Socket,
    params: SessionParams,
    state: AppState,
    /// Holds the connection's place under the caps until the session ends.
    _ticket: Ticket,
    rate: RateLimit,
    /// The session's place in the drain window, and the shard of the
    /// signals it waits on.
    drain_batch: u8,
    /// A frame arrived since the keepalive last looked.
    heard: bool,
    /// A ping is out and unanswered.
    awaiting_pong: bool,
}

/// Runs a connection until it ends: upgrade, join, welcome, relay, leave,
/// close.
///
/// Everything the task carries is boxed, so that the task itself (alive as
/// long as the connection) holds little more than the state of its wait.
pub async fn run(upgrade: OnUpgrade, pending: Box<Pending>) {
    // Boxed: the setup's state (the upgrade, the joined room's welcome) is
    // short-lived, and must not widen the task that lives as long as the
    // connection.
    let Some((mut session, mut subscription)) = Box::pin(start(upgrade, pending)).await else {
        return;
    };
    let end = session.relay(&mut subscription).await;
    Box::pin(session.end(end, subscription)).await;
}

/// Completes the upgrade and sends the welcome: the session and its place
/// in the room, or `None` when the connection ended first (the room is
/// left then).
async fn start(upgrade: OnUpgrade, pending: Box<Pending>) -> Option<(Box<Session>, Subscription)> {
    let max_message_size = pending.state.config().max_message_size;
    let Some(ws) = open_socket(upgrade, max_message_size, pending.peer).await else {
        // The room was joined before the response went out: leave it.
        let Pending {
            params,
            joined,
            state,
            ..
        } = *pending;
        let leave = state
            .layer()
            .leave(&params.room, params.user.as_str(), joined.subscription);
        Box::pin(leave).await;
        return None;
    };
    let (mut session, joined) = Session::new(ws, pending);
    let metrics = session.state.metrics();
    metrics.connections.inc();
    metrics.connections_opened.inc();
    match Box::pin(session.welcome(joined)).await {
        Ok(subscription) => Some((session, subscription)),
        Err((end, subscription)) => {
            Box::pin(session.end(end, subscription)).await;
            None
        }
    }
}

/// Completes the upgrade and wraps the connection in a WebSocket.
async fn open_socket(
    upgrade: OnUpgrade,
    max_message_size: usize,
    peer: SocketAddr,
) -> Option<Socket> {
    match upgrade.await {
        Ok(upgraded) => Some(websocket(upgraded, max_message_size)),
        Err(err) => {
            debug!(%err, %peer, "upgrade failed");
            None
        }
    }
}

impl Session {
    /// The session of an upgraded connection, and the room it joined;
    /// `pending` is freed here (a box moved out of lives on until its
    /// variable goes out of scope).
    fn new(ws: Socket, pending: Box<Pending>) -> (Box<Self>, Joined) {
        let Pending {
            params,
            joined,
            peer,
            ticket,
            drain_batch,
            state,
            ..
        } = *pending;
        debug!(room = %params.room, user = %params.user, %peer, format = ?params.format, "joined");
        let rate = RateLimit::new(&state.config().limits, state.now_ms());
        let session = Box::new(Self {
            ws,
            params,
            state,
            _ticket: ticket,
            rate,
            drain_batch,
            heard: false,
            awaiting_pong: false,
        });
        (session, joined)
    }

    /// Sends the welcome (typed clients) and sets the duplicate filter.
    async fn welcome(&mut self, joined: Joined) -> Result<Subscription, (End, Subscription)> {
        let Joined {
            mut subscription,
            members,
            history,
            last_id,
            missed,
            epoch,
            notice,
            topic,
        } = joined;
        subscription.skip_through(last_id);
        if self.params.format == Format::Plain {
            return Ok(subscription);
        }
        let people = match members.len() {
            1 => "only you".to_owned(),
            n => format!("{n} people"),
        };
        let welcome = Welcome {
            message: format!(
                "Welcome to {}, {}: {people} here",
                self.params.room, self.params.user
            ),
            room: self.params.room.clone(),
            user: self.params.user.to_string(),
            members,
            history: Vec::new(),
            last_id,
            missed,
            epoch,
            ts: unix_millis(),
            limits: Some(self.announced_limits()),
            topic,
        };
        let fragments = welcome::Fragments::new(welcome, history);
        let mut sent = self.send_frames(fragments, &subscription).await;
        if let (Ok(()), Some(notice)) = (&sent, notice) {
            sent = self.send_error(ErrorCode::Unavailable, notice).await;
        }
        match sent {
            Ok(()) => Ok(subscription),
            Err(end) => Err((end, subscription)),
        }
    }

    /// The limits the welcome announces, so that clients can pace
    /// themselves and refuse what is too big before sending it.
    fn announced_limits(&self) -> chat_protocol::Limits {
        let config = self.state.config();
        chat_protocol::Limits {
            rate: config.limits.rate_per_sec,
            burst: config.limits.rate_burst,
            max_message_bytes: config.max_message_size as u64,
        }
    }

    /// Leaves the room and closes the connection as `end` says.
    async fn end(self: Box<Self>, end: End, subscription: Subscription) {
        let state = &self.state;
        Box::pin(
            state
                .layer()
                .leave(&self.params.room, self.params.user.as_str(), subscription),
        )
        .await;
        debug!(room = %self.params.room, user = %self.params.user, reason = ?end, "left");
        Box::pin(self.finish(end)).await;
    }

    /// The main loop: room events out, client frames in, keepalive, until
    /// one side ends.
    async fn relay(&mut self, subscription: &mut Subscription) -> End {
        loop {
            // Read before the shutdown flag: a signal sent from here on
            // ends the wait below at once.
            let seen = self.state.signals().seen();
            if self.state.signals().shutting_down() {
                // Spread closes over the drain window, so that clients
                // do not all come back at the same instant.
                Box::pin(tokio::time::sleep(self.state.drain_delay(self.drain_batch))).await;
                return End::close(
                    close::GOING_AWAY,
                    "shutdown",
                    "server shutting down; reconnect in a moment",
                );
            }
            if let Err(end) = self.catch_up(subscription).await {
                return end;
            }
            // Nothing is queued: lend the socket to the room's write pass
            // while waiting. Refused when events arrived meanwhile: they
            // are read first.
            if let Some(tcp) = self.ws.lendable() {
                if !subscription.lend(tcp) {
                    continue;
                }
            }
            // Only wait here; a handler runs in its own boxed future, made
            // once the waits are gone, so that the task's state holds the
            // waits or a pointer, never both (it is what every idle
            // connection costs). What woke the loop goes out of scope
            // before the handler runs.
            let handler = {
                let mut woken = tokio::select! {
                    biased;
                    () = self.state.signals().changed_since(seen, self.drain_batch) => Woken::Signal,
                    wanted = poll_fn(|cx| subscription.poll_wanted(cx)) => Woken::Room(wanted),
                    inbound = self.ws.next() => Woken::Inbound(inbound),
                };
                // The socket is this task's again (until the next wait).
                let handback = match woken {
                    Woken::Room(Wanted::Handback(ref mut handback)) => {
                        Some(std::mem::take(handback))
                    }
                    _ => subscription.reclaim(),
                };
                if let Some(handback) = handback {
                    if let Some(kind) = handback.broken {
                        return ending::write_failed(&std::io::Error::from(kind));
                    }
                    self.ws.queue_handback(handback.unsent);
                }
                let handler: Pin<Box<dyn Future<Output = Result<(), End>> + Send + '_>> =
                    match woken {
                        // Written at the top of the loop.
                        Woken::Room(_) => continue,
                        // Handled at the top of the loop.
                        Woken::Signal if self.state.signals().shutting_down() => continue,
                        Woken::Signal => Box::pin(self.keepalive(subscription)),
                        Woken::Inbound(inbound) => Box::pin(self.on_inbound(inbound, subscription)),
                    };
                handler
            };
            if let Err(end) = handler.await {
                return end;
            }
        }
    }

    /// Handles the client's frame (or its end).
    async fn on_inbound(
        &mut self,
        inbound: Option<Result<Message, ws::Error>>,
        subscription: &mut Subscription,
    ) -> Result<(), End> {
        self.heard = true;
        let handled = self.on_frame(inbound).await;
        self.yield_to_lagging_members(subscription).await;
        handled
    }

    /// Fairness: while the room's slowest member is far behind, let the
    /// members (woken by what this sender published) run before reading its
    /// next message. A sender that kept the CPU could otherwise publish far
    /// ahead of members that read as fast as they are scheduled, and push
    /// them over their queue. Rooms whose members keep up cost no yield, so
    /// batching is kept.
    async fn yield_to_lagging_members(&mut self, subscription: &Subscription) {
        let high_water = self.state.config().queue_len / 4;
        let mut rounds = 0;
        while subscription.room_backlog() > high_water && rounds < 16 {
            tokio::task::yield_now().await;
            rounds += 1;
        }
    }

    /// One keepalive tick: a connection heard from since the last tick is
    /// alive; a silent one gets a ping; a ping unanswered for a whole tick
    /// ends the connection.
    async fn keepalive(&mut self, subscription: &Subscription) -> Result<(), End> {
        let heard = std::mem::take(&mut self.heard);
        if heard {
            self.awaiting_pong = false;
            return Ok(());
        }
        if self.awaiting_pong {
            return Err(End::close(
                close::GOING_AWAY,
                "ping_timeout",
                "no answer to ping; closing",
            ));
        }
        self.ws.queue_ping();
        self.flush_out(subscription).await?;
        self.awaiting_pong = true;
        Ok(())
    }

    /// Writes what waits for this connection: what is queued on its socket,
    /// then the room's events it has not read, until none is left.
    async fn catch_up(&mut self, subscription: &mut Subscription) -> Result<(), End> {
        loop {
            if self.ws.has_queued() {
                self.flush_out(subscription).await?;
            }
            match subscription.try_next() {
                Ok(Some(delivery)) => self.queue_batch(delivery, subscription)?,
                Ok(None) => return Ok(()),
                Err(_lagged) => return Err(End::slow_consumer(self.state.config())),
            }
        }
    }

    /// Queues `first` and whatever else is already queued for this
    /// connection on its socket, as one batch: each frame a small header
    /// and a reference to the ring's bytes. A message larger than
    /// [`FRAGMENT_BYTES`] goes as fragments (slices of the same bytes) and
    /// ends the batch.
    ///
    /// Not async, so that the batch's state is no part of the task that
    /// every idle connection holds; [`Session::flush_out`] then writes it.
    fn queue_batch(&mut self, first: Delivery, subscription: &mut Subscription) -> Result<(), End> {
        let (mut frames, mut bytes) = (0u64, 0usize);
        let mut next = Some(first);
        loop {
            let delivery = match next.take() {
                Some(delivery) => delivery,
                None => match subscription.try_next() {
                    Ok(Some(delivery)) => delivery,
                    Ok(None) => break,
                    Err(_lagged) => return Err(End::slow_consumer(self.state.config())),
                },
            };
            frames += 1;
            bytes += delivery.frame.len();
            if delivery.frame.len() > FRAGMENT_BYTES {
                for fragment in fragments_of(delivery.frame) {
                    self.ws.queue_fragment(fragment);
                }
                break;
            }
            self.ws.queue_text(Bytes::from(delivery.frame));
            if bytes >= BATCH_BYTES || frames >= BATCH_FRAMES {
                break;
            }
        }
        self.count_out(frames, bytes);
        Ok(())
    }

    /// Writes what is queued on the socket, within the write timeout.
    async fn flush_out(&mut self, subscription: &Subscription) -> Result<(), End> {
        let deadline = Instant::now() + self.state.config().write_timeout;
        self.flush_watching(subscription, deadline).await
    }

    fn count_out(&self, frames: u64, bytes: usize) {
        let metrics = self.state.metrics();
        metrics.messages_out.inc_by(frames);
        metrics.bytes_out.inc_by(bytes as u64);
    }

    /// Flushes, but gives up on a client that stopped reading: once it is
    /// further behind on the room than its queue allows, or at `deadline`.
    async fn flush_watching(
        &mut self,
        subscription: &Subscription,
        deadline: Instant,
    ) -> Result<(), End> {
        // Most flushes complete at once; only a blocked one needs a timer.
        match std::future::poll_fn(|cx| self.ws.poll_flush(cx)).now_or_never() {
            Some(result) => result.map_err(|err| ending::write_failed(&err)),
            None => Box::pin(self.flush_blocked(subscription, deadline)).await,
        }
    }

    async fn flush_blocked(
        &mut self,
        subscription: &Subscription,
        deadline: Instant,
    ) -> Result<(), End> {
        let config = self.state.config();
        loop {
            let check = deadline.min(Instant::now() + LAG_CHECK);
            tokio::select! {
                biased;
                result = self.ws.flush() => return result.map_err(|err| ending::write_failed(&err)),
                () = tokio::time::sleep_until(check) => {
                    let behind = subscription.backlog();
                    if behind >= config.queue_len as u64 || subscription.has_lagged() {
                        return Err(End::slow_consumer(config));
                    }
                    if Instant::now() >= deadline {
                        return Err(End::not_reading());
                    }
                }
            }
        }
    }

    /// Sends one message as `frames` (whole, or fragments made as they
    /// go), flushing after each, so that the socket's write buffer never
    /// holds more than a fragment. A client that does not take it all
    /// within the write timeout, or that falls too far behind on the room
    /// meanwhile, is dropped.
    async fn send_frames(
        &mut self,
        frames: impl Iterator<Item = Fragment> + Send,
        subscription: &Subscription,
    ) -> Result<(), End> {
        let deadline = Instant::now() + self.state.config().write_timeout;
        self.flush_watching(subscription, deadline).await?;
        for frame in frames {
            self.ws.queue_fragment(frame);
            self.flush_watching(subscription, deadline).await?;
        }
        Ok(())
    }

    /// Sends one text now (an error event, a history page): small texts
    /// whole, large ones as fragments flushed one by one; a client that
    /// does not take it within the write timeout is dropped.
    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        let timeout = self.state.config().write_timeout;
        let send = async {
            self.ws
                .flush()
                .await
                .map_err(|err| ending::write_failed(&err))?;
            for frame in fragments_of(text) {
                self.ws.queue_fragment(frame);
                self.ws
                    .flush()
                    .await
                    .map_err(|err| ending::write_failed(&err))?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, send)
            .await
            .unwrap_or_else(|_| Err(End::not_reading()))
    }

    /// Handles one inbound frame (or the end of the stream).
    async fn on_frame(&mut self, inbound: Option<Result<Message, ws::Error>>) -> Result<(), End> {
        match inbound {
            None => Err(End::Gone(Hangup::Reset)),
            Some(Ok(Message::Text(text))) => {
                let metrics = self.state.metrics();
                metrics.bytes_in.inc_by(text.len() as u64);
                // The reader validated it; this only gets the `&str`.
                match std::str::from_utf8(&text) {
                    Ok(text) => self.on_text(text).await,
                    Err(_) => Err(ending::read_failed(&ws::Error::Utf8)),
                }
            }
            Some(Ok(Message::Binary(_))) => Err(End::close(
                close::UNSUPPORTED_DATA,
                "binary",
                "binary frames are not supported; send JSON text: {\"message\": \"...\"}",
            )),
            Some(Ok(Message::Close(frame))) => {
                debug!(room = %self.params.room, code = ?frame.map(|f| f.code), "client closed");
                // The socket has queued the close reply: send it, then
                // the connection is dropped (the server closes TCP first).
                let _ = tokio::time::timeout(ending::CLOSE_REPLY, self.ws.flush()).await;
                Err(End::Gone(Hangup::Closed))
            }
            Some(Ok(Message::Ping | Message::Pong)) => Ok(()),
            Some(Err(err)) => Err(ending::read_failed(&err)),
        }
    }

    /// Handles one client text frame: parse, rate-limit, then publish,
    /// rename or refuse.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message = match ClientMessage::from_json(text) {
            Ok(message) => message,
            Err(err) => {
                debug!(room = %self.params.room, user = %self.params.user, %err, "refused a frame");
                return match self.params.format {
                    Format::Events => self.send_error(err.code(), err.to_string()).await,
                    // A plain client has no error channel but the close.
                    Format::Plain => Err(End::close(
                        close::INVALID_PAYLOAD,
                        "invalid_payload",
                        err.to_string(),
                    )),
                };
            }
        };
        let now_ms = self.state.now_ms();
        match self.rate.check(
            &self.state.config().limits,
            now_ms,
            self.params.format == Format::Plain,
        ) {
            Verdict::Allow => {}
            Verdict::Wait(wait) => {
                // Slow a plain client down: its next frame is read only
                // after this, so TCP pushes back on it.
                self.state.metrics().rate_limited.inc();
                tokio::time::sleep(wait).await;
            }
            verdict => return self.rate_limited(verdict).await,
        }
        let published = match message {
            ClientMessage::History(request) => return Box::pin(self.answer_history(request)).await,
            ClientMessage::Chat { message } => self.publish(message, false).await,
            ClientMessage::Emote { message } => self.publish(message, true).await,
            ClientMessage::Nick { name } => {
                let old = std::mem::replace(&mut self.params.user, name);
                let result = self
                    .state
                    .layer()
                    .rename(
                        &self.params.room,
                        old.as_str(),
                        self.params.user.as_str(),
                        &self.params.identity,
                    )
                    .await;
                if result.is_err() {
                    self.params.user = old;
                }
                result
            }
            ClientMessage::Topic { topic } => {
                let user = self.params.user.as_str();
                self.state
                    .layer()
                    .set_topic(&self.params.room, user, topic)
                    .await
            }
        };
        match published {
            Ok(()) => Ok(()),
            Err(LayerError::NameTaken(taken)) => match self.params.format {
                Format::Events => {
                    let message = format!("you keep your name: {taken}");
                    self.send_error(ErrorCode::NameTaken, message).await
                }
                // A plain client has no error channel and shows no names:
                // it keeps its name, and its connection.
                Format::Plain => {
                    debug!(room = %self.params.room, %taken, "refused a plain client's rename");
                    Ok(())
                }
            },
            Err(LayerError::Unconfirmed { reason }) => {
                let message = format!(
                    "your message may not have reached every member: {reason}; \
                     send it again if it matters"
                );
                let close_reason =
                    "message may not have been delivered: server lost its message bus";
                self.refuse_message(message, "unconfirmed", close_reason)
                    .await
            }
            Err(LayerError::Unavailable { reason, .. } | LayerError::Setup { reason, .. }) => {
                let message =
                    format!("your message was NOT delivered: {reason}; send it again in a moment");
                let close_reason = "message not delivered: server unavailable";
                self.refuse_message(message, "unavailable", close_reason)
                    .await
            }
        }
    }

    /// Tells the sender its message did not reach (or may not have reached) the
    /// room: an `unavailable` error event saying `message`, or, for a plain
    /// client, which has no error channel, a close with 1013 (try again
    /// later) labelled `label` in the metrics.
    async fn refuse_message(
        &mut self,
        message: String,
        label: &'static str,
        close_reason: &'static str,
    ) -> Result<(), End> {
        match self.params.format {
            Format::Events => self.send_error(ErrorCode::Unavailable, message).await,
            Format::Plain => Err(End::close(close::TRY_AGAIN_LATER, label, close_reason)),
        }
    }

    /// Answers a history request with a page of stored messages, or an
    /// error event saying why not. Plain clients have no way to receive
    /// the answer: asking is a protocol error for them.
    async fn answer_history(&mut self, request: HistoryRequest) -> Result<(), End> {
        if self.params.format == Format::Plain {
            return Err(End::close(
                close::INVALID_PAYLOAD,
                "invalid_payload",
                "history requests need typed events (the chat.v2 subprotocol or ?v=2)",
            ));
        }
        match crate::history::page(&self.state, &self.params.room, &request.query).await {
            Ok(page) => {
                let answer = HistoryEvent::answer(self.params.room.clone(), &request, page);
                self.send_text(Utf8Bytes::from(ServerEvent::History(answer).to_json()))
                    .await
            }
            Err(err) => {
                let message = format!("no history now: {err}; ask again in a moment");
                self.send_error(ErrorCode::Unavailable, message).await
            }
        }
    }

    /// A message over the rate limit: refused with an error event (a plain
    /// client, which has no error channel, is closed), and a client that
    /// keeps on flooding is closed with 1008.
    async fn rate_limited(&mut self, verdict: Verdict) -> Result<(), End> {
        let state = self.state.clone();
        state.metrics().rate_limited.inc();
        let limit = RateLimit::describe(&state.config().limits);
        match (verdict, self.params.format) {
            (Verdict::Refuse, Format::Events) => {
                let message =
                    format!("slow down: your message was NOT delivered; the limit is {limit}");
                self.send_error(ErrorCode::RateLimited, message).await
            }
            _ => Err(End::close(
                close::POLICY_VIOLATION,
                "rate_limit",
                format!("rate limit exceeded: at most {limit}"),
            )),
        }
    }

    async fn publish(&mut self, message: String, emote: bool) -> Result<(), LayerError> {
        debug!(room = %self.params.room, user = %self.params.user, len = message.len(), "message");
        let draft = Draft {
            user: self.params.user.to_string(),
            message,
            emote,
        };
        let result = self.state.layer().publish(&self.params.room, draft).await;
        if result.is_ok() {
            self.state.metrics().messages_in.inc();
        }
        result
    }

    async fn send_error(&mut self, code: ErrorCode, message: String) -> Result<(), End> {
        let event = ServerEvent::Error(ErrorEvent {
            message,
            code,
            ts: unix_millis(),
        });
        self.send_text(Utf8Bytes::from(event.to_json())).await
    }

    /// Closes the connection as `end` says, and counts it.
    async fn finish(mut self: Box<Self>, end: End) {
        let metrics = self.state.metrics();
        metrics.connections.dec();
        let (code, reason, failed) = match end {
            End::Gone(hangup) => {
                metrics.client_disconnected(hangup.label());
                return;
            }
            End::Close {
                code,
                reason,
                label,
                failed,
            } => {
                metrics.disconnected(label);
                (code, reason, failed)
            }
        };
        let linger = if code == close::GOING_AWAY {
            SHUTDOWN_LINGER
        } else {
            CLOSE_LINGER
        };
        let shutdown = self.state.shutdown_token().clone();
        tokio::select! {
            () = ending::close(&mut self.ws, code, &reason, failed, linger) => {}
            // Shutting down: a lingering close must not hold up the exit.
            () = shutdown.cancelled(), if code != close::GOING_AWAY => {}
        }
    }
}

/// `text` as one frame, or as fragments of [`FRAGMENT_BYTES`] when it is
/// larger (slices of the same bytes: nothing is copied).
fn fragments_of(text: Utf8Bytes) -> impl Iterator<Item = Fragment> + Send {
    let bytes = Bytes::from(text);
    let len = bytes.len();
    let starts = (0..len.max(1)).step_by(FRAGMENT_BYTES);
    starts.map(move |start| {
        let end = (start + FRAGMENT_BYTES).min(len);
        let opcode = if start == 0 {
            OpCode::Text
        } else {
            OpCode::Continue
        };
        Fragment {
            opcode,
            fin: end == len,
            payload: bytes.slice(start..end),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AllowedHosts, Config};

    /// What every idle connection costs: its task's future (the relay
    /// loop's wait) and the boxed session. Printed for BENCHMARKS.md, and
    /// bounded so that a change that widens them is noticed.
    #[tokio::test]
    async fn an_idle_connection_s_task_and_session_stay_small() {
        let config = Config::default();
        let addr: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let hosts = AllowedHosts::new(&config.access.allowed_hosts, addr, false).unwrap();
        let state = AppState::new(config, hosts).await.unwrap();
        let room = RoomName::new("lobby").unwrap();
        let identity = Identity::anonymous();
        let joined = state
            .layer()
            .join(&room, "ann", &identity, Format::Events, None)
            .await
            .unwrap();
        let pending = Box::new(Pending {
            params: SessionParams {
                room,
                user: UserName::new("ann").unwrap(),
                format: Format::Events,
                identity,
            },
            joined,
            peer: addr,
            ticket: state.admission().admit(addr.ip()).unwrap(),
            drain_batch: 0,
            state: state.clone(),
        });
        let mut request = hyper::Request::new(());
        let task = run(hyper::upgrade::on(&mut request), pending);
        let (task, session, socket) = (
            std::mem::size_of_val(&task),
            std::mem::size_of::<Session>(),
            std::mem::size_of::<Socket>(),
        );
        eprintln!(
            "session task future {task} B, Session {session} B, of which WebSocket {socket} B"
        );
        // At most 272 B, tokio's task cell (a 32 B header, the future
        // tracked and staged in 32 B more, a 48 B trailer, aligned to
        // 128 B) is 384 B: it was 512 B with a 376 B future, 768 B with a
        // 576 B one.
        assert!(task <= 272, "the task future is {task} B");
        // At most 256 B, the boxed session fits the allocator's 256-byte
        // bin (the next one is 320 B).
        assert!(session <= 256, "the session is {session} B");
    }
}
