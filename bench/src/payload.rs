//! What chat-bench puts inside a chat message, and how it reads it back.
//!
//! Every server relays the message *text* unchanged, so the load
//! generator's own data lives in the text, which works with any server of
//! the protocol:
//!
//! | text | meaning |
//! |---|---|
//! | `s3 n1234 t5000123 xxxx…` | data: sender 3, its sequence number 1234, sent 5000123 ns after the run's origin, padded to the message size |
//! | `w…` | warm-up: proves a member is subscribed before the timed run |
//! | `p…` | probe: proves an idle connection still receives |
//!
//! The text is ASCII letters, digits and spaces only, so no server needs to
//! escape it and the reader can find it without a JSON parser.

use memchr::memmem;
use std::sync::LazyLock;

/// One decoded delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Payload {
    /// A timed message: sender id, the sender's sequence number, and the
    /// send time in nanoseconds since the run's origin.
    Data {
        /// Global sender id.
        sender: u32,
        /// The sender's sequence number, from 0.
        seq: u64,
        /// Send time, nanoseconds since the run's origin.
        sent_ns: u64,
    },
    /// A warm-up message.
    Warmup,
    /// A probe message (idle connections).
    Probe,
    /// A `{"message": ...}` frame whose text is not ours.
    Foreign,
}

/// Why a frame could not be read as `{"message": "<text>"}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("frame is not {{\"message\": text}} with chat-bench text")]
pub struct NotAMessage;

/// Appends the JSON of a data message (`{"message":"s.. n.. t.. xx"}`) to
/// `out`, its text padded with `x` to at least `size` bytes.
pub fn write_data(out: &mut Vec<u8>, sender: u32, seq: u64, sent_ns: u64, size: usize) {
    out.extend_from_slice(b"{\"message\":\"s");
    let start = out.len() - 1;
    push_u64(out, u64::from(sender));
    out.extend_from_slice(b" n");
    push_u64(out, seq);
    out.extend_from_slice(b" t");
    push_u64(out, sent_ns);
    let text_len = out.len() - start;
    if text_len < size {
        out.push(b' ');
        out.resize(out.len() + (size - text_len - 1), b'x');
    }
    out.extend_from_slice(b"\"}");
}

/// Appends the JSON of a control message whose text is `tag` then `rest`.
pub fn write_control(out: &mut Vec<u8>, tag: u8, rest: &str) {
    out.extend_from_slice(b"{\"message\":\"");
    out.push(tag);
    out.extend_from_slice(rest.as_bytes());
    out.extend_from_slice(b"\"}");
}

fn push_u64(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        // A single decimal digit, always below 10.
        #[allow(clippy::cast_possible_truncation)]
        let digit = (value % 10) as u8;
        digits[i] = b'0' + digit;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

static MESSAGE_KEY: LazyLock<memmem::Finder<'static>> =
    LazyLock::new(|| memmem::Finder::new(b"\"message\""));

/// Reads the chat-bench text out of a server frame.
///
/// Accepts any JSON spacing (`{"message":"…"}`, `{"message": "…"}`) and
/// other keys around it, as long as the text itself is ours: chat-bench's
/// text never needs escaping, so the first `"` after the opening one ends it.
///
/// # Errors
///
/// [`NotAMessage`] when the frame has no `"message"` string.
#[inline]
pub fn parse(frame: &[u8]) -> Result<Payload, NotAMessage> {
    // Fast path: every known server puts the key first.
    let after_key = if frame.starts_with(b"{\"message\"") {
        10
    } else {
        MESSAGE_KEY.find(frame).ok_or(NotAMessage)? + 9
    };
    let mut rest = frame.get(after_key..).ok_or(NotAMessage)?;
    rest = skip_space(rest);
    rest = rest.strip_prefix(b":").ok_or(NotAMessage)?;
    rest = skip_space(rest);
    rest = rest.strip_prefix(b"\"").ok_or(NotAMessage)?;
    let end = memchr::memchr(b'"', rest).ok_or(NotAMessage)?;
    Ok(parse_text(&rest[..end]))
}

/// Decodes chat-bench text (without the JSON around it).
#[inline]
pub fn parse_text(text: &[u8]) -> Payload {
    match text.first() {
        Some(b's') => parse_data(&text[1..]).unwrap_or(Payload::Foreign),
        Some(b'w') => Payload::Warmup,
        Some(b'p') => Payload::Probe,
        _ => Payload::Foreign,
    }
}

#[inline]
fn parse_data(text: &[u8]) -> Option<Payload> {
    let (sender, rest) = take_u64(text)?;
    let rest = rest.strip_prefix(b" n")?;
    let (seq, rest) = take_u64(rest)?;
    let rest = rest.strip_prefix(b" t")?;
    let (sent_ns, rest) = take_u64(rest)?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    Some(Payload::Data {
        sender: u32::try_from(sender).ok()?,
        seq,
        sent_ns,
    })
}

#[inline]
fn take_u64(text: &[u8]) -> Option<(u64, &[u8])> {
    let digits = text.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return None;
    }
    let mut value = 0u64;
    for &b in &text[..digits] {
        value = value * 10 + u64::from(b - b'0');
    }
    Some((value, &text[digits..]))
}

fn skip_space(bytes: &[u8]) -> &[u8] {
    let n = bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count();
    &bytes[n..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_round_trips_with_padding() {
        let mut out = Vec::new();
        write_data(&mut out, 7, 123_456, 9_876_543_210, 64);
        let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let text = json["message"].as_str().unwrap();
        assert_eq!(text.len(), 64);
        assert!(text.starts_with("s7 n123456 t9876543210 x"));
        assert_eq!(
            parse(&out).unwrap(),
            Payload::Data {
                sender: 7,
                seq: 123_456,
                sent_ns: 9_876_543_210
            }
        );
    }

    #[test]
    fn short_size_is_not_padded() {
        let mut out = Vec::new();
        write_data(&mut out, 0, 0, 0, 1);
        assert_eq!(out, br#"{"message":"s0 n0 t0"}"#);
        assert_eq!(
            parse(&out).unwrap(),
            Payload::Data {
                sender: 0,
                seq: 0,
                sent_ns: 0
            }
        );
    }

    #[test]
    fn accepts_any_spacing_and_key_order() {
        let python = br#"{"message": "s1 n2 t3 xx"}"#;
        let other = br#"{"type": "chat", "message" : "s1 n2 t3", "id": 4}"#;
        let want = Payload::Data {
            sender: 1,
            seq: 2,
            sent_ns: 3,
        };
        assert_eq!(parse(python).unwrap(), want);
        assert_eq!(parse(other).unwrap(), want);
    }

    #[test]
    fn control_and_foreign_texts() {
        let mut out = Vec::new();
        write_control(&mut out, b'w', "room7");
        assert_eq!(parse(&out).unwrap(), Payload::Warmup);
        assert_eq!(parse(br#"{"message":"p"}"#).unwrap(), Payload::Probe);
        assert_eq!(parse(br#"{"message":"hello"}"#).unwrap(), Payload::Foreign);
        assert_eq!(
            parse(br#"{"message":"s1 nX t3"}"#).unwrap(),
            Payload::Foreign
        );
        assert_eq!(parse(br#"{"message":""}"#).unwrap(), Payload::Foreign);
        assert!(parse(br#"{"text":"s1 n2 t3"}"#).is_err());
        assert!(parse(b"garbage").is_err());
    }
}
