//! Inbound: bytes from the socket to whole messages and control frames.
//!
//! The socket is read into a buffer on the stack, and frames are parsed
//! straight out of it. Only what is left over (part of a frame or of a
//! fragmented message, or bytes read past the message returned) is kept,
//! in a [`Partial`] that exists only while there is such a remainder: an
//! idle connection's reader is one empty pointer.
//!
//! A frame's payload is unmasked and checked as it arrives, not when it is
//! complete: text is validated incrementally across frames and within
//! them, so invalid UTF-8 fails the connection at the first bad byte, and
//! a message over the limit is refused from the header that would take it
//! over, before its payload is read.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, ReadBuf};

use super::frame::{self, Header, OpCode};
use super::{CloseFrame, Error, Stream, close};

/// How much one read takes from the socket (a stack buffer).
const READ_CHUNK: usize = 8 * 1024;

/// A data message's buffer grows by at most this much ahead of the bytes
/// that arrive: a header announcing a large frame does not by itself make
/// the server hold that much.
const RESERVE_AHEAD: usize = 64 * 1024;

/// What the reader hands up.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A whole text message, valid UTF-8.
    Text(Bytes),
    /// A whole binary message.
    Binary(Bytes),
    /// A ping and its payload.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame.
    Close(Option<CloseFrame>),
}

/// A connection's reader.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    /// What is partly received; `None` between messages.
    partial: Option<Box<Partial>>,
}

impl Reader {
    /// A reader that first parses `read_ahead` (bytes read from the
    /// connection before the reader existed).
    pub(crate) fn new(read_ahead: &[u8]) -> Self {
        if read_ahead.is_empty() {
            return Self::default();
        }
        let partial = Partial {
            unread: BytesMut::from(read_ahead),
            ..Partial::default()
        };
        Self {
            partial: Some(Box::new(partial)),
        }
    }

    /// The next message or control frame; `Ok(None)` when the peer ended
    /// the connection.
    pub(crate) fn poll_next(
        &mut self,
        stream: &mut Stream,
        cx: &mut Context<'_>,
        max_message: usize,
    ) -> Poll<Result<Option<Inbound>, Error>> {
        if let Some(partial) = &mut self.partial {
            let polled = partial.poll_next(stream, cx, max_message);
            if partial.is_empty() {
                self.partial = None;
            }
            return polled;
        }
        let mut partial = Partial::default();
        let polled = partial.poll_next(stream, cx, max_message);
        if !partial.is_empty() {
            self.partial = Some(Box::new(partial));
        }
        polled
    }
}

/// The frame whose payload is being received.
#[derive(Debug, Clone, Copy)]
struct Receiving {
    header: Header,
    /// Payload bytes received so far.
    received: u64,
}

impl Receiving {
    fn remaining(&self) -> u64 {
        self.header.len - self.received
    }
}

/// Whatever is partly received.
#[derive(Debug, Default)]
struct Partial {
    /// Bytes read and not parsed yet.
    unread: BytesMut,
    /// The start of a frame header that has not fully arrived.
    head: [u8; frame::MAX_CLIENT_HEADER],
    head_len: u8,
    /// The frame whose payload is arriving.
    frame: Option<Receiving>,
    /// The data message being received (text or binary), if any.
    message: Option<OpCode>,
    /// Its payload so far, unmasked.
    data: BytesMut,
    /// `data` is valid UTF-8 up to here (a text message's last character
    /// may be incomplete until more arrives).
    checked: usize,
    /// The control frame's payload so far, unmasked.
    control: Vec<u8>,
}

impl Partial {
    fn is_empty(&self) -> bool {
        self.unread.is_empty()
            && self.head_len == 0
            && self.frame.is_none()
            && self.message.is_none()
    }

    fn poll_next(
        &mut self,
        stream: &mut Stream,
        cx: &mut Context<'_>,
        max_message: usize,
    ) -> Poll<Result<Option<Inbound>, Error>> {
        if !self.unread.is_empty() {
            let mut unread = std::mem::take(&mut self.unread);
            let (used, inbound) = self.feed(&unread, max_message)?;
            if used < unread.len() {
                unread.advance(used);
                self.unread = unread;
            }
            if let Some(inbound) = inbound {
                return Poll::Ready(Ok(Some(inbound)));
            }
        }
        loop {
            let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); READ_CHUNK];
            let mut read = ReadBuf::uninit(&mut buf);
            match Pin::new(&mut *stream).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(err)) => return Poll::Ready(Err(Error::Io(err))),
                Poll::Ready(Ok(())) => {}
            }
            let got = read.filled();
            if got.is_empty() {
                return Poll::Ready(Ok(None));
            }
            let (used, inbound) = self.feed(got, max_message)?;
            if used < got.len() {
                self.unread.extend_from_slice(&got[used..]);
            }
            if let Some(inbound) = inbound {
                return Poll::Ready(Ok(Some(inbound)));
            }
        }
    }

    /// Parses `input` up to the end of the first message or control frame
    /// it completes: how many bytes were used, and what was completed.
    fn feed(
        &mut self,
        mut input: &[u8],
        max_message: usize,
    ) -> Result<(usize, Option<Inbound>), Error> {
        let total = input.len();
        loop {
            let Some(receiving) = &mut self.frame else {
                // A header, whole in `input` or continuing `head`.
                let parsed = if self.head_len == 0 {
                    frame::parse(input)?
                } else {
                    let had = usize::from(self.head_len);
                    let take = input.len().min(frame::MAX_CLIENT_HEADER - had);
                    let mut joined = self.head;
                    joined[had..had + take].copy_from_slice(&input[..take]);
                    frame::parse(&joined[..had + take])?.map(|(header, len)| (header, len - had))
                };
                let Some((header, len)) = parsed else {
                    let had = usize::from(self.head_len);
                    // An incomplete header is under 14 bytes.
                    self.head[had..had + input.len()].copy_from_slice(input);
                    #[allow(clippy::cast_possible_truncation)]
                    let head_len = (had + input.len()) as u8;
                    self.head_len = head_len;
                    return Ok((total, None));
                };
                self.head_len = 0;
                input = &input[len..];
                self.begin(header, max_message)?;
                continue;
            };
            // The payload: as much of it as `input` holds.
            let available = u64::try_from(input.len()).unwrap_or(u64::MAX);
            let take = usize::try_from(receiving.remaining().min(available)).unwrap_or(0);
            let (chunk, rest) = input.split_at(take);
            input = rest;
            let header = receiving.header;
            let offset = usize::try_from(receiving.received % 4).unwrap_or(0);
            receiving.received += take as u64;
            let complete = receiving.remaining() == 0;
            if header.opcode.is_control() {
                let at = self.control.len();
                self.control.extend_from_slice(chunk);
                frame::unmask(&mut self.control[at..], header.mask, offset);
            } else {
                let at = self.data.len();
                self.data.extend_from_slice(chunk);
                frame::unmask(&mut self.data[at..], header.mask, offset);
                if self.message == Some(OpCode::Text) {
                    self.check_utf8()?;
                }
            }
            if !complete {
                return Ok((total, None));
            }
            self.frame = None;
            if let Some(inbound) = self.end_frame(header)? {
                return Ok((total - input.len(), Some(inbound)));
            }
        }
    }

    /// Checks a header against the message in progress and starts its
    /// frame.
    fn begin(&mut self, header: Header, max_message: usize) -> Result<(), Error> {
        match header.opcode {
            OpCode::Close | OpCode::Ping | OpCode::Pong => self.control.clear(),
            OpCode::Continue if self.message.is_none() => {
                return Err(Error::Protocol(
                    "continuation frame with no message to continue",
                ));
            }
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                return Err(Error::Protocol("new message inside a fragmented message"));
            }
            OpCode::Text | OpCode::Binary => {
                self.message = Some(header.opcode);
                self.checked = 0;
            }
            OpCode::Continue => {}
        }
        if !header.opcode.is_control() {
            let size = (self.data.len() as u64).saturating_add(header.len);
            if size > max_message as u64 {
                return Err(Error::TooBig {
                    size,
                    max: max_message,
                });
            }
            let ahead =
                usize::try_from(header.len).map_or(RESERVE_AHEAD, |len| len.min(RESERVE_AHEAD));
            self.data.reserve(ahead);
        }
        self.frame = Some(Receiving {
            header,
            received: 0,
        });
        Ok(())
    }

    /// Validates what arrived of a text message since the last check; an
    /// incomplete last character waits for the next bytes.
    fn check_utf8(&mut self) -> Result<(), Error> {
        match std::str::from_utf8(&self.data[self.checked..]) {
            Ok(_) => self.checked = self.data.len(),
            Err(err) if err.error_len().is_none() => self.checked += err.valid_up_to(),
            Err(_) => return Err(Error::Utf8),
        }
        Ok(())
    }

    /// What a complete frame completes, if anything.
    fn end_frame(&mut self, header: Header) -> Result<Option<Inbound>, Error> {
        let inbound = match header.opcode {
            OpCode::Ping => Inbound::Ping(Bytes::from(std::mem::take(&mut self.control))),
            OpCode::Pong => {
                self.control = Vec::new();
                Inbound::Pong
            }
            OpCode::Close => {
                let frame = close::parse(&self.control)?;
                self.control = Vec::new();
                Inbound::Close(frame)
            }
            OpCode::Text | OpCode::Binary | OpCode::Continue => {
                if !header.fin {
                    return Ok(None);
                }
                let data = std::mem::take(&mut self.data).freeze();
                match self.message.take() {
                    Some(OpCode::Text) if self.checked != data.len() => return Err(Error::Utf8),
                    Some(OpCode::Text) => Inbound::Text(data),
                    _ => Inbound::Binary(data),
                }
            }
        };
        Ok(Some(inbound))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MASK: [u8; 4] = [0xA1, 0xB2, 0xC3, 0xD4];

    /// A masked client frame.
    fn frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![first];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | u8::try_from(len).unwrap()),
            len @ 126..=65_535 => {
                out.push(0xFE);
                out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
            }
            len => {
                out.push(0xFF);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        let at = out.len();
        out.extend_from_slice(payload);
        frame::unmask(&mut out[at..], MASK, 0);
        out
    }

    /// Feeds `bytes` in pieces of `piece`, collecting what completes.
    fn feed_all(bytes: &[u8], piece: usize, max: usize) -> Result<Vec<Inbound>, Error> {
        let mut partial = Partial::default();
        let mut out = Vec::new();
        for chunk in bytes.chunks(piece) {
            let mut input = chunk;
            while !input.is_empty() {
                let (used, inbound) = partial.feed(input, max)?;
                input = &input[used..];
                out.extend(inbound);
            }
        }
        assert!(partial.is_empty(), "nothing left over");
        Ok(out)
    }

    fn texts(inbound: &[Inbound]) -> Vec<String> {
        inbound
            .iter()
            .map(|i| match i {
                Inbound::Text(t) => String::from_utf8(t.to_vec()).unwrap(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn messages_whole_fragmented_and_interleaved_with_control_frames_in_any_pieces() {
        let mut wire = frame(0x81, b"hello");
        wire.extend(frame(0x01, "h\u{e9}".as_bytes()));
        wire.extend(frame(0x89, b"ping"));
        wire.extend(frame(0x00, b"ll"));
        wire.extend(frame(0x80, b"o"));
        wire.extend(frame(0x81, &[b'x'; 300]));
        wire.extend(frame(0x81, b""));
        for piece in [1, 2, 3, 7, 14, 100, wire.len()] {
            let got = feed_all(&wire, piece, 1000).unwrap();
            let got = texts(&got);
            assert_eq!(got[0], "hello");
            assert!(got[1].starts_with("Ping(b\"ping\""), "{}", got[1]);
            assert_eq!(got[2], "h\u{e9}llo");
            assert_eq!(got[3], "x".repeat(300));
            assert_eq!(got[4], "");
            assert_eq!(got.len(), 5, "{piece}");
        }
    }

    #[test]
    fn fragments_must_follow_the_rules() {
        let protocol = |wire: Vec<u8>| matches!(feed_all(&wire, 5, 100), Err(Error::Protocol(_)));
        assert!(protocol(frame(0x80, b"x")), "continuation with no start");
        let mut nested = frame(0x01, b"a");
        nested.extend(frame(0x81, b"b"));
        assert!(protocol(nested), "a new message inside a fragmented one");
        assert!(protocol(frame(0x88, &[3])), "a one-byte close");
    }

    #[test]
    fn invalid_utf8_fails_at_the_first_bad_byte_even_mid_frame() {
        let mut partial = Partial::default();
        // A frame of 100 bytes whose third is invalid; only 10 arrive.
        let mut payload = b"ab\xFFxxxxx".to_vec();
        payload.resize(100, b'x');
        let wire = frame(0x81, &payload);
        assert!(matches!(partial.feed(&wire[..10], 1000), Err(Error::Utf8)));
        // A character cut between fragments is fine; a bad one across them is not.
        let mut split = frame(0x01, &[0xC3]);
        split.extend(frame(0x80, &[0xA9]));
        assert_eq!(texts(&feed_all(&split, 3, 100).unwrap()), ["\u{e9}"]);
        let mut bad = frame(0x01, &[0xED]);
        bad.extend(frame(0x80, &[0xA0, 0x80]));
        assert!(
            matches!(feed_all(&bad, 3, 100), Err(Error::Utf8)),
            "a surrogate"
        );
        let truncated = frame(0x81, &[b'a', 0xC3]);
        assert!(matches!(feed_all(&truncated, 100, 100), Err(Error::Utf8)));
    }

    #[test]
    fn a_message_over_the_limit_is_refused_from_its_header() {
        let mut partial = Partial::default();
        let wire = frame(0x82, &[0; 2000]);
        let refused = partial.feed(&wire[..8], 1000);
        assert!(matches!(
            refused,
            Err(Error::TooBig {
                size: 2000,
                max: 1000
            })
        ));
        // Across fragments too.
        let mut wire = frame(0x01, &[b'a'; 600]);
        wire.extend(frame(0x80, &[b'a'; 600]));
        assert!(matches!(
            feed_all(&wire, 50, 1000),
            Err(Error::TooBig { .. })
        ));
        // At the limit is fine.
        assert_eq!(
            feed_all(&frame(0x81, &[b'a'; 1000]), 50, 1000)
                .unwrap()
                .len(),
            1
        );
    }

    /// Whatever a peer sends, the reader returns messages or an error,
    /// never panics, and never holds more than the limit allows.
    #[test]
    fn arbitrary_bytes_in_arbitrary_pieces_never_panic() {
        let mut rng = fastrand::Rng::with_seed(16);
        for _ in 0..20_000 {
            let mut wire: Vec<u8> = Vec::new();
            // Near-valid frames (so that parsing gets past the header) and
            // noise.
            for _ in 0..rng.usize(1..6) {
                if rng.bool() {
                    let first = [0x81, 0x01, 0x80, 0x82, 0x88, 0x89, 0x8A, 0x00][rng.usize(..8)];
                    let len = [0, 1, 2, 5, 125, 126, 300][rng.usize(..7)];
                    let payload: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
                    wire.extend(frame(first, &payload));
                } else {
                    wire.extend((0..rng.usize(..40)).map(|_| rng.u8(..)));
                }
            }
            let mut partial = Partial::default();
            let mut input = &wire[..];
            while !input.is_empty() {
                let piece = rng.usize(1..=input.len());
                match partial.feed(&input[..piece], 200) {
                    Ok((used, _)) => input = &input[used..],
                    Err(_) => break,
                }
                assert!(partial.data.len() <= 200);
                assert!(partial.control.len() <= 125);
            }
        }
    }

    #[test]
    fn what_is_left_over_is_kept_for_the_next_call() {
        let mut wire = frame(0x81, b"one");
        wire.extend(frame(0x81, b"two"));
        let mut partial = Partial::default();
        let (used, first) = partial.feed(&wire, 100).unwrap();
        assert_eq!(texts(&[first.unwrap()]), ["one"]);
        assert!(used < wire.len());
        let (rest, second) = partial.feed(&wire[used..], 100).unwrap();
        assert_eq!(used + rest, wire.len());
        assert_eq!(texts(&[second.unwrap()]), ["two"]);
        assert!(partial.is_empty());
    }
}
