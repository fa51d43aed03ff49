//! One WebSocket connection, from the welcome to the close.
//!
//! The data path of a message, end to end:
//!
//! 1. [`Session::on_text`] parses the client's frame and hands a [`Draft`]
//!    to the layer (`Layer::publish`), stamped with this connection's name;
//! 2. the layer assigns the id and serialises the event once per format
//!    (`layer::chat_frames`), and the room registry sends the shared bytes
//!    into the room's broadcast ring (`RoomRegistry::deliver`);
//! 3. every session of the room wakes in [`Session::run`], takes what is
//!    queued for it and writes it to its socket in one batch
//!    ([`Session::forward`]).
//!
//! One task per connection does both directions, so an idle connection
//! costs one task and no queue of its own: the room's ring is the queue.

use std::borrow::Cow;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use chat_protocol::close;
use chat_protocol::{
    ClientMessage, ErrorCode, ErrorEvent, RoomName, ServerEvent, UserName, Welcome, unix_millis,
};
use futures_util::{FutureExt, Sink, SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, Frame};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::layer::{Draft, Joined, Layer, LayerError, Resume};
use crate::ring::{Format, Lagged, Subscription};

/// The socket type of an upgraded connection.
pub type Socket = WebSocketStream<TokioIo<Upgraded>>;

/// Stop adding queued messages to a write batch past this many bytes: big
/// enough that a burst goes out in a few system calls, small enough that
/// the socket's write buffer (which keeps its capacity) stays small.
const BATCH_BYTES: usize = 16 * 1024;

/// Frames larger than this are sent as fragments, flushed one by one, so
/// that a large welcome or message does not leave a large write buffer
/// behind on the connection.
const FRAGMENT_BYTES: usize = 16 * 1024;

/// While a write is blocked, how often to check whether the client has
/// fallen further behind than its queue allows.
const LAG_CHECK: Duration = Duration::from_millis(200);

/// How long closing may take: sending the close frame (behind whatever the
/// client has not read yet), then waiting for the client's reply. A slow
/// client gets a few seconds to read its way to the close frame and learn
/// why it was dropped.
const CLOSE_LINGER: Duration = Duration::from_secs(5);

/// How long closing may take when the server is shutting down.
const SHUTDOWN_LINGER: Duration = Duration::from_secs(1);

/// What a session needs to know about its connection.
#[derive(Debug)]
pub struct SessionParams {
    /// The room, from the URL.
    pub room: RoomName,
    /// The display name: from `?name=`, or a generated guest name.
    pub user: UserName,
    /// Typed events or plain frames.
    pub format: Format,
    /// `?since=` (and `&epoch=`): where a reconnecting client left off.
    pub resume: Option<Resume>,
    /// The peer's address, for logs.
    pub peer: SocketAddr,
    /// How many messages the client may fall behind.
    pub queue_len: usize,
    /// How long a blocked write may wait before the client counts as gone.
    pub write_timeout: Duration,
}

/// A session waiting for its upgrade to complete.
#[derive(Debug)]
pub struct Pending {
    /// Socket limits.
    pub config: WebSocketConfig,
    /// The connection's parameters.
    pub params: SessionParams,
    /// Where the room lives.
    pub layer: Layer,
}

/// Why the session loop ended.
#[derive(Debug)]
enum End {
    /// The client closed, or the connection dropped: nothing more to send.
    Gone,
    /// Close with this code and reason.
    Close(u16, Cow<'static, str>),
}

impl End {
    fn close(code: u16, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close(code, reason.into())
    }

    fn slow_consumer(behind: u64) -> Self {
        Self::close(
            close::POLICY_VIOLATION,
            format!("slow consumer: fell {behind} messages behind"),
        )
    }
}

impl From<Lagged> for End {
    fn from(Lagged(behind): Lagged) -> Self {
        Self::slow_consumer(behind)
    }
}

/// A live connection in a room.
///
/// Its task stays small while idle: rarely taken paths (join, welcome,
/// inbound frames, blocked writes, close) run as boxed futures, so that
/// their state is not part of every idle connection's task.
struct Session {
    ws: Socket,
    params: SessionParams,
    layer: Layer,
    /// Deliveries with an id up to this one were in the welcome (or predate
    /// the join) and are skipped.
    skip_through: u64,
}

/// Runs a connection until it ends: upgrade, join, welcome, relay, leave,
/// close.
///
/// Everything the task carries is boxed, so that the task itself (alive as
/// long as the connection) holds little more than the state of its wait.
pub async fn run(upgrade: OnUpgrade, pending: Box<Pending>, shutdown: CancellationToken) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            debug!(%err, peer = %pending.params.peer, "upgrade failed");
            return;
        }
    };
    let Pending {
        config,
        params,
        layer,
    } = *pending;
    let ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let mut session = Box::new(Session {
        ws,
        params,
        layer,
        skip_through: 0,
    });
    let joined = Box::pin(session.layer.join(
        &session.params.room,
        session.params.user.as_str(),
        session.params.format,
        session.params.resume.take(),
    ))
    .await;
    let joined = match joined {
        Ok(joined) => joined,
        Err(err) => {
            warn!(room = %session.params.room, %err, "join failed");
            let end = End::close(
                close::TRY_AGAIN_LATER,
                "the server cannot join rooms right now; try again later",
            );
            Box::pin(session.finish(end, &shutdown)).await;
            return;
        }
    };
    info!(
        room = %session.params.room,
        user = %session.params.user,
        peer = %session.params.peer,
        format = ?session.params.format,
        "joined"
    );
    let mut subscription = match Box::pin(session.welcome(joined)).await {
        Ok(subscription) => subscription,
        Err((end, subscription)) => {
            Box::pin(session.end(end, subscription, &shutdown)).await;
            return;
        }
    };
    let end = session.relay(&mut subscription, &shutdown).await;
    Box::pin(session.end(end, subscription, &shutdown)).await;
}

impl Session {
    /// Sends the welcome (typed clients) and sets the duplicate filter.
    async fn welcome(&mut self, joined: Joined) -> Result<Subscription, (End, Subscription)> {
        let Joined {
            subscription,
            members,
            history,
            last_id,
            missed,
            epoch,
            notice,
        } = joined;
        self.skip_through = last_id;
        if self.params.format == Format::Plain {
            return Ok(subscription);
        }
        let welcome = ServerEvent::Welcome(Welcome {
            message: format!(
                "Welcome to {}, {}: {} here",
                self.params.room,
                self.params.user,
                match members.len() {
                    1 => "only you".to_owned(),
                    n => format!("{n} people"),
                }
            ),
            room: self.params.room.clone(),
            user: self.params.user.to_string(),
            members,
            history,
            last_id,
            missed,
            epoch,
            ts: unix_millis(),
        });
        let mut sent = self.send_text(Utf8Bytes::from(welcome.to_json())).await;
        if let (Ok(()), Some(notice)) = (&sent, notice) {
            sent = self.send_error(ErrorCode::Unavailable, notice).await;
        }
        match sent {
            Ok(()) => Ok(subscription),
            Err(end) => Err((end, subscription)),
        }
    }

    /// Leaves the room and closes the connection as `end` says.
    async fn end(
        self: Box<Self>,
        end: End,
        subscription: Subscription,
        shutdown: &CancellationToken,
    ) {
        Box::pin(
            self.layer
                .leave(&self.params.room, self.params.user.as_str(), subscription),
        )
        .await;
        info!(room = %self.params.room, user = %self.params.user, reason = ?end, "left");
        Box::pin(self.finish(end, shutdown)).await;
    }

    /// The main loop: room events out, client frames in, until one side ends.
    async fn relay(
        &mut self,
        subscription: &mut Subscription,
        shutdown: &CancellationToken,
    ) -> End {
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return End::close(close::GOING_AWAY, "server shutting down"),
                delivery = subscription.next() => {
                    let result = match delivery {
                        Ok(delivery) => self.forward(delivery, subscription).await,
                        Err(lagged) => Err(lagged.into()),
                    };
                    if let Err(end) = result {
                        return end;
                    }
                }
                inbound = self.ws.next() => {
                    if let Err(end) = Box::pin(self.on_frame(inbound)).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Writes `first` and whatever else is already queued, as one batch and
    /// one flush.
    async fn forward(
        &mut self,
        first: crate::ring::Delivery,
        subscription: &mut Subscription,
    ) -> Result<(), End> {
        if first.frame.len() > FRAGMENT_BYTES {
            return Box::pin(self.send_text(first.frame)).await;
        }
        let skip_through = self.skip_through;
        let ws = &mut self.ws;
        let mut first = Some(first);
        // Queue the batch into the socket's write buffer in one poll: no
        // state is kept across awaits, and nothing is copied but the frame
        // bytes into the buffer.
        let large = poll_fn(|cx| {
            let mut batch = 0;
            loop {
                if let Err(err) = std::task::ready!(Pin::new(&mut *ws).poll_ready(cx)) {
                    return Poll::Ready(Err(write_failed(&err)));
                }
                let delivery = match first.take() {
                    Some(delivery) => delivery,
                    None => match subscription.try_next() {
                        Ok(Some(delivery)) => delivery,
                        Ok(None) => return Poll::Ready(Ok(None)),
                        Err(lagged) => return Poll::Ready(Err(lagged.into())),
                    },
                };
                if delivery.id != 0 && delivery.id <= skip_through {
                    continue;
                }
                if delivery.frame.len() > FRAGMENT_BYTES {
                    return Poll::Ready(Ok(Some(delivery.frame)));
                }
                batch += delivery.frame.len();
                if let Err(err) = Pin::new(&mut *ws).start_send(Message::Text(delivery.frame)) {
                    return Poll::Ready(Err(write_failed(&err)));
                }
                if batch >= BATCH_BYTES {
                    return Poll::Ready(Ok(None));
                }
            }
        })
        .await?;
        self.flush_watching(subscription).await?;
        if let Some(frame) = large {
            Box::pin(self.send_text(frame)).await?;
        }
        Ok(())
    }

    /// Flushes, but gives up on a client that stopped reading: once it is
    /// further behind than its queue allows, or after the write timeout.
    async fn flush_watching(&mut self, subscription: &Subscription) -> Result<(), End> {
        // Most flushes complete at once; only a blocked one needs a timer.
        match self.ws.flush().now_or_never() {
            Some(result) => result.map_err(|err| write_failed(&err)),
            None => Box::pin(self.flush_blocked(subscription)).await,
        }
    }

    async fn flush_blocked(&mut self, subscription: &Subscription) -> Result<(), End> {
        let started = tokio::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                result = self.ws.flush() => return result.map_err(|err| write_failed(&err)),
                () = tokio::time::sleep(LAG_CHECK) => {
                    let behind = subscription.backlog();
                    if behind >= self.params.queue_len as u64 {
                        return Err(End::slow_consumer(behind));
                    }
                    if started.elapsed() >= self.params.write_timeout {
                        return Err(End::close(close::POLICY_VIOLATION, "slow consumer: not reading"));
                    }
                }
            }
        }
    }

    /// Sends one text frame now: small frames whole, large ones as
    /// fragments; a client that does not read it within the write timeout
    /// is dropped.
    async fn send_text(&mut self, text: Utf8Bytes) -> Result<(), End> {
        let timeout = self.params.write_timeout;
        let send = async {
            if text.len() > FRAGMENT_BYTES {
                self.send_fragmented(text).await
            } else {
                self.ws
                    .send(Message::Text(text))
                    .await
                    .map_err(|err| write_failed(&err))
            }
        };
        tokio::time::timeout(timeout, send)
            .await
            .unwrap_or_else(|_| {
                Err(End::close(
                    close::POLICY_VIOLATION,
                    "slow consumer: not reading",
                ))
            })
    }

    /// Sends a large text as fragments of [`FRAGMENT_BYTES`], flushing each,
    /// so the socket's write buffer never has to grow to hold it whole.
    async fn send_fragmented(&mut self, text: Utf8Bytes) -> Result<(), End> {
        self.flush().await?;
        let bytes = bytes::Bytes::from(text);
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + FRAGMENT_BYTES).min(bytes.len());
            let opcode = if offset == 0 {
                OpCode::Data(Data::Text)
            } else {
                OpCode::Data(Data::Continue)
            };
            let frame = Frame::message(bytes.slice(offset..end), opcode, end == bytes.len());
            self.ws
                .send(Message::Frame(frame))
                .await
                .map_err(|err| write_failed(&err))?;
            offset = end;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), End> {
        self.ws.flush().await.map_err(|err| write_failed(&err))
    }

    /// Handles one inbound frame (or the end of the stream).
    async fn on_frame(
        &mut self,
        inbound: Option<Result<Message, tungstenite::Error>>,
    ) -> Result<(), End> {
        match inbound {
            None => Err(End::Gone),
            Some(Ok(Message::Text(text))) => self.on_text(&text).await,
            Some(Ok(Message::Binary(_))) => Err(End::close(
                close::UNSUPPORTED_DATA,
                "binary frames are not supported; send JSON text: {\"message\": \"...\"}",
            )),
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the close reply; send it.
                let _ = self.ws.flush().await;
                Err(End::Gone)
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => Ok(()),
            Some(Err(err)) => Err(self.read_failed(err)),
        }
    }

    /// Handles one client text frame: parse, then publish, rename or refuse.
    async fn on_text(&mut self, text: &str) -> Result<(), End> {
        let message = match ClientMessage::from_json(text) {
            Ok(message) => message,
            Err(err) => {
                debug!(room = %self.params.room, user = %self.params.user, %err, "refused a frame");
                return match self.params.format {
                    Format::Events => self.send_error(err.code(), err.to_string()).await,
                    // A plain client has no error channel but the close.
                    Format::Plain => Err(End::close(close::INVALID_PAYLOAD, err.to_string())),
                };
            }
        };
        let published = match message {
            ClientMessage::Chat { message } => self.publish(message, false).await,
            ClientMessage::Emote { message } => self.publish(message, true).await,
            ClientMessage::Nick { name } => {
                let old = std::mem::replace(&mut self.params.user, name);
                let result = self
                    .layer
                    .rename(&self.params.room, old.as_str(), self.params.user.as_str())
                    .await;
                if result.is_err() {
                    self.params.user = old;
                }
                result
            }
        };
        match published {
            Ok(()) => Ok(()),
            Err(LayerError::Unavailable(reason) | LayerError::Setup(reason)) => match self
                .params
                .format
            {
                Format::Events => {
                    self.send_error(
                        ErrorCode::Unavailable,
                        format!(
                            "your message was NOT delivered: {reason}; send it again in a moment"
                        ),
                    )
                    .await
                }
                Format::Plain => Err(End::close(
                    close::TRY_AGAIN_LATER,
                    "message not delivered: server unavailable",
                )),
            },
        }
    }

    async fn publish(&mut self, message: String, emote: bool) -> Result<(), LayerError> {
        debug!(room = %self.params.room, user = %self.params.user, len = message.len(), "message");
        let draft = Draft {
            user: self.params.user.to_string(),
            message,
            emote,
        };
        self.layer.publish(&self.params.room, draft).await
    }

    async fn send_error(&mut self, code: ErrorCode, message: String) -> Result<(), End> {
        let event = ServerEvent::Error(ErrorEvent {
            message,
            code,
            ts: unix_millis(),
        });
        self.send_text(Utf8Bytes::from(event.to_json())).await
    }

    /// Maps a read error to how the connection ends.
    fn read_failed(&self, err: tungstenite::Error) -> End {
        use tungstenite::Error as E;
        match err {
            E::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::Close(
                close::MESSAGE_TOO_BIG,
                format!("message of {size} bytes is over the limit of {max_size}").into(),
            ),
            E::Utf8(_) => End::close(close::INVALID_PAYLOAD, "text frame is not valid UTF-8"),
            E::Protocol(err) => End::Close(1002, format!("protocol error: {err}").into()),
            E::ConnectionClosed | E::AlreadyClosed | E::Io(_) => {
                debug!(room = %self.params.room, user = %self.params.user, %err, "connection dropped");
                End::Gone
            }
            other => End::Close(1002, format!("{other}").into()),
        }
    }

    /// Closes the connection as `end` says: send the close frame, then read
    /// and discard what the client still sends (up to its close reply or a
    /// short timeout), so that unread bytes do not turn the close into a
    /// TCP reset that would lose the close frame.
    async fn finish(mut self: Box<Self>, end: End, shutdown: &CancellationToken) {
        let End::Close(code, reason) = end else {
            return;
        };
        let linger_for = if code == close::GOING_AWAY {
            SHUTDOWN_LINGER
        } else {
            CLOSE_LINGER
        };
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from(truncate_reason(&reason)),
        };
        let linger = async {
            if self.ws.send(Message::Close(Some(frame))).await.is_err() {
                return;
            }
            let socket = self.ws.get_mut();
            let mut sink = vec![0u8; 4096];
            let mut total = 0usize;
            while let Ok(n) = socket.read(&mut sink).await {
                total += n;
                if n == 0 || total > (1 << 20) {
                    break;
                }
            }
        };
        tokio::select! {
            _ = tokio::time::timeout(linger_for, linger) => {}
            // Shutting down: a lingering close must not hold up the exit.
            () = shutdown.cancelled(), if code != close::GOING_AWAY => {}
        }
    }
}

fn write_failed(err: &tungstenite::Error) -> End {
    debug!(%err, "write failed");
    End::Gone
}

/// Close reasons must fit in a control frame: at most 123 bytes of UTF-8.
fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(truncate_reason("short"), "short");
        let long = "é".repeat(100);
        let cut = truncate_reason(&long);
        assert!(cut.len() <= 123 && long.starts_with(&cut));
    }
}
