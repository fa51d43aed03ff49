//! The server's side of a WebSocket connection (RFC 6455), after the
//! handshake: our own small codec, shaped by what a chat server's
//! connection does most of the time, which is nothing.
//!
//! * [`frame`]: frame headers, parsed (client frames) and encoded (server
//!   frames), and unmasking;
//! * [`read`]: bytes to messages: fragments, control frames, UTF-8 checked
//!   as it arrives, the message size limit; it keeps bytes only while a
//!   frame or a message is partly received;
//! * [`write`]: a queue of frames whose payloads are shared `Bytes` (the
//!   room's serialised event); small frames are copied into the worker
//!   thread's scratch buffer and sent with one `send`, large ones written
//!   from the shared bytes; it holds nothing once empty. The room's write
//!   pass (`ring`) encodes into the same scratch buffer and sends to lent
//!   sockets directly;
//! * [`close`]: close codes and close payloads.
//!
//! [`WebSocket`] ties them to the connection's [`Stream`]: it answers pings
//! and the client's close frame by itself, as it reads. An idle connection
//! holds the stream, two empty queues and a few flags.

mod close;
mod frame;
mod read;
mod stream;
mod write;

use std::future::poll_fn;
use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;

pub use close::CloseFrame;
pub(crate) use frame::OpCode;
pub use stream::Stream;
pub(crate) use stream::send_now;
pub(crate) use write::{encode_text, with_scratch};

use read::{Inbound, Reader};
use write::Writer;

/// A message from the client.
#[derive(Debug)]
pub enum Message {
    /// A text message, valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping (already answered).
    Ping,
    /// A pong.
    Pong,
    /// The client's close frame (already answered, unless the server had
    /// sent its own close first). Nothing is read after it.
    Close(Option<CloseFrame>),
}

/// Why reading from a client failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The client broke the protocol (close code 1002).
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// A message over the size limit (close code 1009).
    #[error("message of {size} bytes is over the limit of {max}")]
    TooBig {
        /// The size the message would have reached.
        size: u64,
        /// The limit.
        max: usize,
    },
    /// Text that is not UTF-8 (close code 1007).
    #[error("text is not valid UTF-8")]
    Utf8,
    /// The connection failed.
    #[error("connection failed")]
    Io(#[source] io::Error),
}

/// One client connection, after the handshake.
#[derive(Debug)]
pub struct WebSocket {
    stream: Stream,
    reader: Reader,
    writer: Writer,
    /// The largest message the client may send.
    max_message: usize,
    /// The server's close frame is queued: answer nothing more.
    close_sent: bool,
    /// The client's close frame arrived: read nothing more.
    close_received: bool,
}

impl WebSocket {
    /// The WebSocket over `stream`, reading `read_ahead` first (bytes read
    /// past the handshake), refusing messages over `max_message` bytes.
    pub fn new(stream: Stream, read_ahead: &[u8], max_message: usize) -> Self {
        Self {
            stream,
            reader: Reader::new(read_ahead),
            writer: Writer::default(),
            max_message,
            close_sent: false,
            close_received: false,
        }
    }

    /// The next message; `None` once the connection or the client's
    /// close has ended the stream. Answers to pings and to the client's
    /// close are written on the way.
    pub fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        if self.close_received {
            return Poll::Ready(None);
        }
        if !self.writer.is_empty() {
            if let Poll::Ready(Err(err)) = self.writer.poll_drain(&mut self.stream, cx) {
                return Poll::Ready(Some(Err(Error::Io(err))));
            }
        }
        let inbound = match self
            .reader
            .poll_next(&mut self.stream, cx, self.max_message)
        {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Err(err)) => return Poll::Ready(Some(Err(err))),
            Poll::Ready(Ok(None)) => return Poll::Ready(None),
            Poll::Ready(Ok(Some(inbound))) => inbound,
        };
        let message = match inbound {
            Inbound::Text(text) => Message::Text(text),
            Inbound::Binary(data) => Message::Binary(data),
            Inbound::Ping(payload) => {
                if !self.close_sent {
                    self.writer.push_pong(payload);
                }
                Message::Ping
            }
            Inbound::Pong => Message::Pong,
            Inbound::Close(frame) => {
                self.close_received = true;
                if !self.close_sent {
                    // Echo the client's code (RFC 6455 §5.5.1).
                    let payload = frame
                        .as_ref()
                        .map_or_else(Bytes::new, |frame| close::payload(frame.code, ""));
                    self.queue_control(OpCode::Close, payload);
                }
                Message::Close(frame)
            }
        };
        Poll::Ready(Some(Ok(message)))
    }

    /// Waits for the next message (see [`WebSocket::poll_next`]).
    pub async fn next(&mut self) -> Option<Result<Message, Error>> {
        poll_fn(|cx| self.poll_next(cx)).await
    }

    /// Queues a whole text message; `text` must be valid UTF-8.
    pub fn queue_text(&mut self, text: Bytes) {
        self.queue_frame(OpCode::Text, true, text);
    }

    /// Queues one data frame (a whole message or a fragment of one).
    pub(crate) fn queue_fragment(&mut self, fragment: Fragment) {
        self.queue_frame(fragment.opcode, fragment.fin, fragment.payload);
    }

    fn queue_frame(&mut self, opcode: OpCode, fin: bool, payload: Bytes) {
        if !self.close_sent {
            self.writer.push(opcode, fin, payload);
        }
    }

    /// Queues a ping.
    pub fn queue_ping(&mut self) {
        self.queue_control(OpCode::Ping, Bytes::new());
    }

    /// Queues the server's close frame; nothing is sent after it.
    pub fn queue_close(&mut self, code: u16, reason: &str) {
        self.queue_control(OpCode::Close, close::payload(code, reason));
    }

    fn queue_control(&mut self, opcode: OpCode, payload: Bytes) {
        if self.close_sent {
            return;
        }
        if opcode == OpCode::Close {
            self.close_sent = true;
        }
        self.writer.push(opcode, true, payload);
    }

    /// Writes everything queued.
    pub fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.writer.poll_drain(&mut self.stream, cx)
    }

    /// Writes everything queued (see [`WebSocket::poll_flush`]).
    pub async fn flush(&mut self) -> io::Result<()> {
        poll_fn(|cx| self.poll_flush(cx)).await
    }

    /// Whether frames are queued and not all written yet.
    pub fn has_queued(&self) -> bool {
        !self.writer.is_empty()
    }

    /// The TCP socket, to lend to the room's write pass while this
    /// connection waits: only a plain TCP connection with nothing queued
    /// (the pass and the queue must never both write) and no close sent.
    pub fn lendable(&self) -> Option<&std::sync::Arc<tokio::net::TcpStream>> {
        if self.writer.is_empty() && !self.close_sent {
            self.stream.shared_tcp()
        } else {
            None
        }
    }

    /// Queues what the room's write pass handed back: bytes of whole
    /// encoded frames it could not send. Call only with nothing else
    /// queued (as when the socket was lent).
    pub fn queue_handback(&mut self, frames: Bytes) {
        debug_assert!(self.writer.is_empty(), "a hand-back goes first");
        if !frames.is_empty() {
            self.writer.push_raw(frames);
        }
    }

    /// The connection itself, to end it.
    pub fn stream_mut(&mut self) -> &mut Stream {
        &mut self.stream
    }
}

impl Error {
    /// The close code that fails the connection after this error; `None`
    /// when the connection itself failed (nothing can be sent).
    pub fn close_code(&self) -> Option<u16> {
        match self {
            Self::Protocol(_) => Some(1002),
            Self::TooBig { .. } => Some(1009),
            Self::Utf8 => Some(1007),
            Self::Io(_) => None,
        }
    }
}

/// A data frame to send: a whole message, or one fragment of one.
#[derive(Debug)]
pub(crate) struct Fragment {
    /// `Text` for the first frame of a text message, `Continue` after it.
    pub(crate) opcode: OpCode,
    /// The message's last frame.
    pub(crate) fin: bool,
    /// The payload, shared.
    pub(crate) payload: Bytes,
}
