//! Reading a server's frames off a socket: the one reader every chat-bench
//! client uses (fan-out members, idle connections, soak clients).
//!
//! [`FrameReader::read`] reads what the socket holds into one buffer per
//! thread, walks the frames in place ([`crate::wire::parse_frame`]),
//! reassembles fragmented messages, answers pings (the pongs wait in
//! [`FrameReader::take_replies`] for the caller to write), and hands each
//! whole message to the caller's closure, borrowed from the buffer: a
//! delivery costs no allocation and no copy. Only a frame cut by the end of
//! a read is kept, per connection, until the rest arrives.
//!
//! A read that does not fill the buffer has drained the socket, so it
//! also clears tokio's readiness for it, as a `WouldBlock` would: the task
//! then sleeps until the next edge instead of paying a second `read` to
//! learn that the socket is empty. That halves the system calls when a
//! server writes each frame separately (every peer but a batching one). It
//! is safe: tokio clears readiness only if no new event arrived since it was
//! observed, and data arriving after the read raises a new edge.

use std::cell::RefCell;

use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::wire::{
    self, MAX_PAYLOAD, OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_PING, OP_PONG, OP_TEXT, WireError,
};

/// Size of the read buffer of a thread: large, so that a socket that
/// queued many frames is drained in one `read`.
const READ_BUF: usize = 256 * 1024;

/// Room left for a read after the bytes kept from the last one.
const MIN_READ: usize = 64 * 1024;

thread_local! {
    /// The read buffer every connection of this thread reads into.
    static BUF: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_BUF]);
}

/// A whole message from the server, borrowed from the read buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A text message.
    Text(&'a [u8]),
    /// A binary message (a chat server never sends one).
    Binary(&'a [u8]),
    /// A close frame's payload (the code and reason, or nothing): the
    /// last thing the reader hands over.
    Close(&'a [u8]),
}

/// Where a [`FrameReader::read`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The socket is empty; its next readiness says when more comes.
    Drained,
    /// The read budget is used up; more may be waiting.
    Budget,
    /// The stream ended (no close frame).
    Eof,
    /// A close frame was handed over; nothing after it is read.
    Closed,
}

/// The receiving side of one client connection.
#[derive(Debug, Default)]
pub struct FrameReader {
    /// Bytes of a frame cut by the end of the last read.
    pending: Vec<u8>,
    /// A fragmented message being reassembled: its opcode and bytes so far
    /// (rare: servers send small messages in one frame).
    fragment: Option<(u8, Vec<u8>)>,
    /// Pongs to write.
    replies: Vec<u8>,
    /// A close frame has been handed over.
    closed: bool,
}

impl FrameReader {
    /// A reader whose first bytes are `leftover`: what the server sent
    /// right after its handshake response (see [`FrameReader::parse_pending`]).
    pub fn new(leftover: Vec<u8>) -> Self {
        Self {
            pending: leftover,
            ..Self::default()
        }
    }

    /// Hands over every whole message among the bytes already held (the
    /// handshake's leftover), without reading.
    ///
    /// # Errors
    ///
    /// The bytes are not a valid WebSocket stream.
    pub fn parse_pending(&mut self, on: impl FnMut(Message<'_>)) -> Result<Status, WireError> {
        if self.closed {
            return Ok(Status::Closed);
        }
        let bytes = std::mem::take(&mut self.pending);
        let used = self.walk(&bytes, on)?;
        if !self.closed {
            self.pending.extend_from_slice(&bytes[used..]);
        }
        Ok(if self.closed {
            Status::Closed
        } else {
            Status::Drained
        })
    }

    /// Reads what the socket holds, at most about `budget` bytes, and hands
    /// over every whole message.
    ///
    /// # Errors
    ///
    /// A socket error, or bytes that are not a valid WebSocket stream.
    pub fn read(
        &mut self,
        stream: &TcpStream,
        budget: usize,
        mut on: impl FnMut(Message<'_>),
    ) -> Result<Status, WireError> {
        if self.closed {
            return Ok(Status::Closed);
        }
        BUF.with_borrow_mut(|buf| {
            let mut total = 0;
            loop {
                let keep = self.pending.len();
                if buf.len() < keep + MIN_READ {
                    buf.resize(keep + MIN_READ, 0);
                }
                buf[..keep].copy_from_slice(&self.pending);
                let room = buf.len() - keep;
                let n = match read_once(stream, &mut buf[keep..])? {
                    Some(0) => return Ok(Status::Eof),
                    Some(n) => n,
                    None => return Ok(Status::Drained),
                };
                let used = self.walk(&buf[..keep + n], &mut on)?;
                self.pending.clear();
                if self.closed {
                    return Ok(Status::Closed);
                }
                self.pending.extend_from_slice(&buf[used..keep + n]);
                total += n;
                if n < room {
                    return Ok(Status::Drained);
                }
                if total >= budget {
                    return Ok(Status::Budget);
                }
            }
        })
    }

    /// Pongs to write (empty when no ping came), taken out of the reader.
    pub fn take_replies(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.replies)
    }

    /// Are pongs waiting to be written?
    pub fn has_replies(&self) -> bool {
        !self.replies.is_empty()
    }

    /// Handles every whole frame at the start of `bytes`; returns how many
    /// bytes it used.
    fn walk(&mut self, bytes: &[u8], mut on: impl FnMut(Message<'_>)) -> Result<usize, WireError> {
        let mut used = 0;
        while let Some((frame, len)) = wire::parse_frame(&bytes[used..])? {
            used += len;
            match (frame.opcode, frame.fin) {
                (OP_TEXT, true) => on(Message::Text(frame.payload)),
                (OP_BINARY, true) => on(Message::Binary(frame.payload)),
                (OP_TEXT | OP_BINARY, false) => {
                    if self.fragment.is_some() {
                        return Err(WireError::Protocol("a new message inside a fragmented one"));
                    }
                    self.fragment = Some((frame.opcode, frame.payload.to_vec()));
                }
                (OP_CONTINUATION, fin) => {
                    let Some((opcode, mut message)) = self.fragment.take() else {
                        return Err(WireError::Protocol("continuation without a start"));
                    };
                    if message.len() + frame.payload.len() > MAX_PAYLOAD {
                        return Err(WireError::Protocol("fragmented message too large"));
                    }
                    message.extend_from_slice(frame.payload);
                    if !fin {
                        self.fragment = Some((opcode, message));
                    } else if opcode == OP_TEXT {
                        on(Message::Text(&message));
                    } else {
                        on(Message::Binary(&message));
                    }
                }
                (OP_PING, _) => {
                    wire::push_frame(&mut self.replies, OP_PONG, frame.payload, wire::mask_key());
                }
                (OP_CLOSE, _) => {
                    self.closed = true;
                    on(Message::Close(frame.payload));
                    return Ok(used);
                }
                // A pong, or an opcode `parse_frame` has already refused.
                _ => {}
            }
        }
        Ok(used)
    }
}

/// One `read(2)` into `buf`: `Some(n)` bytes (0 at the end of the stream),
/// or `None` if there was nothing to read. A short read clears tokio's
/// readiness (see the module documentation).
#[inline]
fn read_once(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<Option<usize>> {
    let mut got = 0;
    let result = stream.try_io(Interest::READABLE, || {
        let n = rustix::io::read(stream, &mut *buf).map_err(std::io::Error::from)?;
        got = n;
        if n > 0 && n < buf.len() {
            // Drained: report it as `WouldBlock` so that tokio clears the
            // readiness; `got` still carries the bytes read.
            Err(std::io::ErrorKind::WouldBlock.into())
        } else {
            Ok(())
        }
    });
    match result {
        Ok(()) => Ok(Some(got)),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Ok(if got > 0 { Some(got) } else { None })
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        out.push(u8::try_from(payload.len()).unwrap());
        out.extend_from_slice(payload);
        out
    }

    /// Every message `bytes` yields, fed to a reader in pieces of `step`.
    fn messages(bytes: &[u8], step: usize) -> (Vec<String>, FrameReader) {
        let mut reader = FrameReader::default();
        let mut seen = Vec::new();
        for piece in bytes.chunks(step) {
            reader.pending.extend_from_slice(piece);
            reader
                .parse_pending(|m| {
                    seen.push(match m {
                        Message::Text(t) => format!("text {}", String::from_utf8_lossy(t)),
                        Message::Binary(b) => format!("binary {}", b.len()),
                        Message::Close(c) => format!("close {}", wire::describe_close(c)),
                    });
                })
                .unwrap();
        }
        (seen, reader)
    }

    #[test]
    fn reassembles_answers_pings_and_stops_at_close() {
        let mut stream = Vec::new();
        stream.extend(server_frame(OP_TEXT, true, b"one"));
        stream.extend(server_frame(OP_TEXT, false, b"tw"));
        stream.extend(server_frame(OP_PING, true, b"p"));
        stream.extend(server_frame(OP_CONTINUATION, true, b"o"));
        stream.extend(server_frame(OP_BINARY, true, b"xyz"));
        stream.extend(server_frame(OP_CLOSE, true, b"\x03\xe8"));
        stream.extend(server_frame(OP_TEXT, true, b"after the close"));
        for step in [1, 2, 5, stream.len()] {
            let (seen, mut reader) = messages(&stream, step);
            assert_eq!(
                seen,
                ["text one", "text two", "binary 3", "close 1000"],
                "step {step}"
            );
            assert!(reader.has_replies());
            let pong = reader.take_replies();
            assert_eq!(pong[0], 0x80 | OP_PONG);
            assert!(!reader.has_replies());
        }
    }

    #[test]
    fn a_continuation_without_a_start_is_a_broken_stream() {
        let mut reader = FrameReader::new(server_frame(OP_CONTINUATION, true, b"x"));
        assert!(reader.parse_pending(|_| {}).is_err());
    }
}
