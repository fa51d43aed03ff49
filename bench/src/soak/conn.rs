//! One soak connection: a small async WebSocket client over [`crate::wire`].
//!
//! The soak's clients are few (hundreds) and slow (a few messages a second
//! each), so this client favours being easy to drive over the fan-out
//! member's zero-copy loop: it reads through the same [`FrameReader`]
//! (which reassembles fragments: the server fragments a large welcome, and
//! answers pings) but keeps whole messages as owned values in an inbox, and
//! remembers *how* the stream ended (close frame and code, end of stream,
//! reset), which is what the soak counts.
//!
//! Every `async` method is cancel-safe: the only await is a readiness wait
//! ([`Conn::pump`]), and the reads and writes after it are non-blocking. A
//! caller can therefore `select!` over [`Conn::recv`] and a timer without
//! losing bytes. What is read while the caller waits for something else
//! (say, a flush) lands in an inbox that the next [`Conn::recv`] returns.

use std::collections::VecDeque;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::io::Interest;
use tokio::net::{TcpSocket, TcpStream};

use crate::frames::{FrameReader, Message, Status};
use crate::wire::{self, OP_CLOSE, Target, WireError};

/// How much one [`Conn::pump`] reads at most, so that a flood of input
/// cannot keep a task from yielding.
const READ_PER_PUMP: usize = 256 * 1024;

/// A whole message from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// A text message (reassembled if it came in fragments).
    Text(Vec<u8>),
    /// A binary message (a chat server never sends one).
    Binary,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The server sent a close frame.
    Close {
        /// The close code, if the frame had one.
        code: Option<u16>,
        /// The close reason (possibly empty).
        reason: String,
    },
    /// The stream ended without a close frame.
    Eof,
    /// The connection was reset, or a socket call failed.
    Reset(String),
    /// The server's bytes were not a valid WebSocket stream.
    Broken(String),
}

impl Ended {
    /// A short label: `close 1008`, `close (no code)`, `eof`, `reset`, `broken`.
    pub fn label(&self) -> String {
        match self {
            Self::Close {
                code: Some(code), ..
            } => format!("close {code}"),
            Self::Close { code: None, .. } => "close (no code)".to_owned(),
            Self::Eof => "eof".to_owned(),
            Self::Reset(_) => "reset".to_owned(),
            Self::Broken(_) => "broken".to_owned(),
        }
    }

    /// The close code, if the server sent one.
    pub fn code(&self) -> Option<u16> {
        match self {
            Self::Close { code, .. } => *code,
            _ => None,
        }
    }

    /// The close reason or error text, for examples in the report.
    pub fn detail(&self) -> &str {
        match self {
            Self::Close { reason, .. } => reason,
            Self::Eof => "",
            Self::Reset(detail) | Self::Broken(detail) => detail,
        }
    }
}

/// How to open a connection.
#[derive(Debug, Clone)]
pub struct Open<'a> {
    /// Room name (the prefix included).
    pub room: &'a str,
    /// Typed events (`?v=2`, a `welcome` first) or plain frames.
    pub typed: bool,
    /// The display name (`?name=`).
    pub name: &'a str,
    /// `SO_RCVBUF` and `TCP_MAXSEG` to set before connecting (see
    /// [`SmallPipe`]); `None` keeps the kernel's defaults.
    pub small_pipe: Option<SmallPipe>,
}

/// Socket options that make a client's receive pipe as small as a remote
/// client's on a real network, for slow clients.
///
/// On loopback the maximum segment is 64 KiB, and Linux sizes a sender's
/// buffer from its congestion window in segments, so the server's kernel
/// would take megabytes for a client that never reads before the server's
/// own writes block (and its slow-consumer timers start). Advertising an
/// Ethernet-sized segment and a small receive buffer makes the server's
/// writes block after tens of kilobytes, as they would across a network.
#[derive(Debug, Clone, Copy)]
pub struct SmallPipe {
    /// `SO_RCVBUF`, bytes (the kernel doubles it and applies its minimum).
    pub recv_buffer: u32,
    /// `TCP_MAXSEG`, bytes: the segment size the client advertises.
    pub mss: u32,
}

/// A socket for `open`: with the [`SmallPipe`] options if asked.
fn socket(target: &Target, open: &Open<'_>) -> std::io::Result<TcpSocket> {
    let Some(pipe) = open.small_pipe else {
        return wire::new_socket(target);
    };
    let domain = if target.addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    socket.set_recv_buffer_size(pipe.recv_buffer as usize)?;
    socket.set_tcp_mss(pipe.mss)?;
    socket.set_nonblocking(true)?;
    Ok(TcpSocket::from_std_stream(socket.into()))
}

/// One WebSocket connection.
#[derive(Debug)]
pub struct Conn {
    stream: TcpStream,
    reader: FrameReader,
    /// Whole messages parsed and not yet taken by [`Conn::recv`].
    inbox: VecDeque<Incoming>,
    /// Bytes to write: `out[out_pos..]`.
    out: Vec<u8>,
    out_pos: usize,
    /// How the stream ended, once it has.
    ended: Option<Ended>,
    /// Writing failed: the peer is gone, but reading may still find its
    /// close frame, so this is not yet an end.
    write_failed: bool,
    /// This side has queued a close frame.
    close_sent: bool,
    /// The bytes that came with the handshake have been parsed.
    opened: bool,
}

impl Conn {
    /// Opens a connection to `/ws/chat/<room>/` of `target`, within
    /// `timeout` (the TCP connect plus the handshake).
    ///
    /// # Errors
    ///
    /// The socket, the TCP connection or the handshake failed.
    pub async fn open(
        target: &Target,
        timeout: Duration,
        open: &Open<'_>,
    ) -> Result<Self, WireError> {
        let socket = socket(target, open)?;
        let mut path = format!("/ws/chat/{}/?name={}", open.room, open.name);
        if open.typed {
            path.push_str("&v=2");
        }
        let (stream, leftover) = wire::connect_socket(socket, target, &path, timeout).await?;
        let mut conn = Self {
            stream,
            reader: FrameReader::new(leftover),
            inbox: VecDeque::new(),
            out: Vec::new(),
            out_pos: 0,
            ended: None,
            write_failed: false,
            close_sent: false,
            opened: false,
        };
        conn.try_read();
        Ok(conn)
    }

    /// The next whole message, or how the connection ended.
    ///
    /// # Errors
    ///
    /// The connection has ended (and every message before the end was
    /// returned).
    pub async fn recv(&mut self) -> Result<Incoming, Ended> {
        loop {
            if let Some(message) = self.try_recv() {
                return Ok(message);
            }
            if let Some(ended) = &self.ended {
                return Err(ended.clone());
            }
            self.pump().await;
        }
    }

    /// A message already read, if any.
    pub fn try_recv(&mut self) -> Option<Incoming> {
        self.inbox.pop_front()
    }

    /// How the connection ended, if it has.
    pub fn ended(&self) -> Option<&Ended> {
        self.ended.as_ref()
    }

    /// Appends a masked frame to the output.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) {
        wire::push_frame(&mut self.out, opcode, payload, wire::mask_key());
    }

    /// Bytes queued and not yet written.
    pub fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Sends one frame: queues it and writes everything queued.
    ///
    /// # Errors
    ///
    /// The connection ended before everything was written.
    pub async fn send(&mut self, opcode: u8, payload: &[u8]) -> Result<(), Ended> {
        self.queue(opcode, payload);
        self.flush().await
    }

    /// Writes everything queued (reading meanwhile, into the inbox).
    ///
    /// # Errors
    ///
    /// The connection ended, or writing failed, first.
    pub async fn flush(&mut self) -> Result<(), Ended> {
        while self.pending_output() > 0 {
            if let Some(ended) = &self.ended {
                return Err(ended.clone());
            }
            if self.write_failed {
                return Err(Ended::Reset("write failed".to_owned()));
            }
            self.pump().await;
        }
        Ok(())
    }

    /// Waits for the socket once, then reads and writes what it can
    /// without blocking. Cancel-safe.
    pub async fn pump(&mut self) {
        if self.ended.is_some() {
            // Nothing can happen any more; do not spin.
            std::future::pending::<()>().await;
        }
        let writing = self.pending_output() > 0 && !self.write_failed;
        let interest = if writing {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        match self.stream.ready(interest).await {
            Ok(ready) => {
                if ready.is_writable() && writing {
                    self.try_flush();
                }
                if ready.is_readable() || ready.is_read_closed() {
                    self.try_read();
                }
            }
            Err(error) => self.end(Ended::Reset(error.to_string())),
        }
    }

    /// Writes what the socket takes now, without waiting; a failed write
    /// marks the connection (the peer is gone).
    pub fn try_flush(&mut self) {
        while !self.write_failed && self.out_pos < self.out.len() {
            match self.stream.try_write(&self.out[self.out_pos..]) {
                Ok(0) => self.write_failed = true,
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => self.write_failed = true,
            }
        }
        if self.out_pos == self.out.len() || self.write_failed {
            self.out.clear();
            self.out_pos = 0;
        }
    }

    /// Checks, without reading any data, whether the peer has closed or
    /// reset the connection: `true` when the kernel reports the read side
    /// closed (a FIN or a reset arrived) or writing has failed.
    pub fn peer_gone(&self) -> bool {
        if self.write_failed || self.ended.is_some() {
            return true;
        }
        match self.stream.ready(Interest::READABLE).now_or_never() {
            Some(Ok(ready)) => ready.is_read_closed() || ready.is_error(),
            Some(Err(_)) => true,
            None => false,
        }
    }

    /// Starts a clean close: queues a close frame with `code` and writes
    /// what it can. The server's answer comes through [`Conn::recv`] (as
    /// the end) or [`Conn::finish`].
    pub fn start_close(&mut self, code: u16) {
        if !self.close_sent && self.ended.is_none() {
            self.close_sent = true;
            self.queue(OP_CLOSE, &code.to_be_bytes());
            self.try_flush();
        }
    }

    /// Waits, at most `within`, for the connection to end; messages read
    /// meanwhile stay in the inbox. Returns the end, if it came.
    pub async fn finish(&mut self, within: Duration) -> Option<Ended> {
        let wait = async {
            while self.ended.is_none() {
                self.pump().await;
            }
        };
        let _ = tokio::time::timeout(within, wait).await;
        self.ended.clone()
    }

    fn end(&mut self, ended: Ended) {
        if self.ended.is_none() {
            self.ended = Some(ended);
        }
    }

    /// Reads what the socket holds (up to [`READ_PER_PUMP`]; at the
    /// start, the bytes that came with the handshake), keeps the messages
    /// in the inbox, answers pings, and notes how the stream ended.
    fn try_read(&mut self) {
        if self.ended.is_some() {
            return;
        }
        let mut close = None;
        let inbox = &mut self.inbox;
        let on = |message: Message<'_>| match message {
            Message::Text(text) => inbox.push_back(Incoming::Text(text.to_vec())),
            Message::Binary(_) => inbox.push_back(Incoming::Binary),
            Message::Close(payload) => {
                close = Some(match payload {
                    [hi, lo, reason @ ..] => (
                        Some(u16::from_be_bytes([*hi, *lo])),
                        String::from_utf8_lossy(reason).into_owned(),
                    ),
                    _ => (None, String::new()),
                });
            }
        };
        let status = if self.opened {
            self.reader.read(&self.stream, READ_PER_PUMP, on)
        } else {
            self.opened = true;
            self.reader.parse_pending(on)
        };
        if self.reader.has_replies() {
            self.out.extend_from_slice(&self.reader.take_replies());
            self.try_flush();
        }
        match status {
            Ok(Status::Drained | Status::Budget) => {}
            Ok(Status::Eof) => self.end(Ended::Eof),
            Ok(Status::Closed) => {
                let (code, reason) = close.unwrap_or_default();
                // Answer the close (RFC 6455 §5.5.1), unless we started it.
                if !self.close_sent {
                    self.close_sent = true;
                    self.queue(OP_CLOSE, &code.unwrap_or(1000).to_be_bytes());
                    self.try_flush();
                }
                self.end(Ended::Close { code, reason });
            }
            Err(WireError::Io(error)) => self.end(Ended::Reset(error.to_string())),
            Err(error) => self.end(Ended::Broken(error.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_code() {
        let close = Ended::Close {
            code: Some(1008),
            reason: "slow consumer".into(),
        };
        assert_eq!(close.label(), "close 1008");
        assert_eq!(close.code(), Some(1008));
        assert_eq!(close.detail(), "slow consumer");
        assert_eq!(Ended::Eof.label(), "eof");
        assert_eq!(Ended::Reset("x".into()).label(), "reset");
    }
}
