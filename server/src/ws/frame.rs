//! Frame headers (RFC 6455 §5.2): parsing a client's, encoding the
//! server's, and unmasking a client's payload.
//!
//! A client's frame must be masked and carry no RSV bit (no extension is
//! ever negotiated); control frames are at most 125 bytes and never
//! fragmented. Everything else a header can say wrong is a protocol error
//! here, so that the reader only ever sees well-formed headers.

use super::Error;

/// The largest header a client can send: 2 bytes, an 8-byte length and a
/// 4-byte mask.
pub(crate) const MAX_CLIENT_HEADER: usize = 14;

/// The largest header the server sends: 2 bytes and an 8-byte length (the
/// server never masks).
pub(crate) const MAX_SERVER_HEADER: usize = 10;

/// The most a control frame may carry (§5.5).
const MAX_CONTROL_PAYLOAD: u64 = 125;

/// A frame's opcode; the reserved ones are refused when parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpCode {
    /// A further fragment of a data message.
    Continue,
    /// The first frame of a text message.
    Text,
    /// The first frame of a binary message.
    Binary,
    /// The closing handshake.
    Close,
    /// Ping, answered with a pong.
    Ping,
    /// Pong.
    Pong,
}

impl OpCode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continue,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continue => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }

    /// Close, ping and pong.
    pub(crate) fn is_control(self) -> bool {
        matches!(self, Self::Close | Self::Ping | Self::Pong)
    }
}

/// A client frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    /// The last frame of its message.
    pub(crate) fin: bool,
    pub(crate) opcode: OpCode,
    /// The masking key.
    pub(crate) mask: [u8; 4],
    /// The payload's length.
    pub(crate) len: u64,
}

/// Parses a client frame's header from the start of `buf`: the header and
/// its length in bytes, or `None` when `buf` does not hold all of it yet.
///
/// # Errors
///
/// [`Error::Protocol`] for an RSV bit, a reserved opcode, an unmasked
/// frame, a control frame that is fragmented or over 125 bytes, or a length
/// with its top bit set.
pub(crate) fn parse(buf: &[u8]) -> Result<Option<(Header, usize)>, Error> {
    let [first, second, ..] = *buf else {
        return Ok(None);
    };
    if first & 0x70 != 0 {
        return Err(Error::Protocol(
            "reserved bits set (no extension was negotiated)",
        ));
    }
    let opcode = OpCode::from_bits(first & 0x0F).ok_or(Error::Protocol("reserved opcode"))?;
    let fin = first & 0x80 != 0;
    if second & 0x80 == 0 {
        return Err(Error::Protocol("client frames must be masked"));
    }
    let (len, at) = match second & 0x7F {
        126 => match buf.get(2..4) {
            Some(&[a, b]) => (u64::from(u16::from_be_bytes([a, b])), 4),
            _ => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(bytes) => {
                let mut be = [0; 8];
                be.copy_from_slice(bytes);
                let len = u64::from_be_bytes(be);
                if len >> 63 != 0 {
                    return Err(Error::Protocol("frame length with its top bit set"));
                }
                (len, 10)
            }
            None => return Ok(None),
        },
        short => (u64::from(short), 2),
    };
    if opcode.is_control() {
        if !fin {
            return Err(Error::Protocol("fragmented control frame"));
        }
        if len > MAX_CONTROL_PAYLOAD {
            return Err(Error::Protocol("control frame over 125 bytes"));
        }
    }
    let Some(&[a, b, c, d]) = buf.get(at..at + 4) else {
        return Ok(None);
    };
    let header = Header {
        fin,
        opcode,
        mask: [a, b, c, d],
        len,
    };
    Ok(Some((header, at + 4)))
}

/// A server frame's header, kept inline beside the payload it precedes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Encoded {
    bytes: [u8; MAX_SERVER_HEADER],
    len: u8,
}

impl Encoded {
    /// The header of an unmasked frame of `len` payload bytes.
    pub(crate) fn new(opcode: OpCode, fin: bool, len: usize) -> Self {
        let mut bytes = [0; MAX_SERVER_HEADER];
        bytes[0] = u8::from(fin) << 7 | opcode.bits();
        let used = if len < 126 {
            // Below 126: fits the 7 bits.
            #[allow(clippy::cast_possible_truncation)]
            let short = len as u8;
            bytes[1] = short;
            2
        } else if let Ok(medium) = u16::try_from(len) {
            bytes[1] = 126;
            bytes[2..4].copy_from_slice(&medium.to_be_bytes());
            4
        } else {
            bytes[1] = 127;
            bytes[2..10].copy_from_slice(&(len as u64).to_be_bytes());
            10
        };
        Self { bytes, len: used }
    }

    /// No header: for bytes that are already whole encoded frames.
    pub(crate) fn empty() -> Self {
        Self {
            bytes: [0; MAX_SERVER_HEADER],
            len: 0,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

/// Unmasks (or masks) `payload` in place with `mask`, where `payload`
/// starts `offset` bytes into its frame's payload.
pub(crate) fn unmask(payload: &mut [u8], mask: [u8; 4], offset: usize) {
    let mut key = mask;
    key.rotate_left(offset % 4);
    let wide = u64::from_ne_bytes([
        key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3],
    ]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= key[i % 4];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, len_bytes: &[u8]) -> Vec<u8> {
        let mut frame = vec![first];
        frame.extend_from_slice(len_bytes);
        frame[1] |= 0x80;
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame
    }

    #[test]
    fn headers_of_every_length_form_parse_and_need_all_their_bytes() {
        for (len_bytes, len) in [
            (vec![5u8], 5u64),
            (vec![126, 0x01, 0x00], 256),
            (vec![127, 0, 0, 0, 0, 0, 1, 0, 0], 65_536),
        ] {
            let frame = masked(0x81, &len_bytes);
            for cut in 0..frame.len() {
                assert_eq!(parse(&frame[..cut]).unwrap(), None, "{cut}");
            }
            let (header, used) = parse(&frame).unwrap().unwrap();
            assert_eq!(used, frame.len());
            assert_eq!(
                header,
                Header {
                    fin: true,
                    opcode: OpCode::Text,
                    mask: [1, 2, 3, 4],
                    len
                }
            );
        }
    }

    #[test]
    fn bad_headers_are_protocol_errors() {
        let refused = |frame: &[u8]| matches!(parse(frame), Err(Error::Protocol(_)));
        assert!(refused(&masked(0x91, &[0])), "RSV1");
        assert!(refused(&masked(0xC1, &[0])), "RSV2");
        assert!(refused(&masked(0x83, &[0])), "reserved data opcode");
        assert!(refused(&masked(0x8B, &[0])), "reserved control opcode");
        assert!(refused(&[0x81, 0x00]), "unmasked");
        assert!(refused(&masked(0x09, &[0])), "fragmented ping");
        assert!(refused(&masked(0x89, &[126, 0, 126])), "ping over 125");
        assert!(refused(&masked(0x82, &[127, 0x80, 0, 0, 0, 0, 0, 0, 0])));
    }

    #[test]
    fn server_headers_use_the_shortest_length_form() {
        let header = |len| Encoded::new(OpCode::Text, true, len).as_bytes().to_vec();
        assert_eq!(header(0), [0x81, 0]);
        assert_eq!(header(125), [0x81, 125]);
        assert_eq!(header(126), [0x81, 126, 0, 126]);
        assert_eq!(header(65_535), [0x81, 126, 0xFF, 0xFF]);
        assert_eq!(header(65_536), [0x81, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
        let continued = Encoded::new(OpCode::Continue, false, 3);
        assert_eq!(continued.as_bytes(), [0x00, 3]);
    }

    #[test]
    fn unmasking_in_pieces_is_unmasking_at_once() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let plain: Vec<u8> = (0..=255).collect();
        let mut whole = plain.clone();
        unmask(&mut whole, mask, 0);
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, plain[i] ^ mask[i % 4]);
        }
        for cut in [1, 3, 7, 8, 13, 100] {
            let mut pieces = plain.clone();
            let (a, b) = pieces.split_at_mut(cut);
            unmask(a, mask, 0);
            unmask(b, mask, cut);
            assert_eq!(pieces, whole, "{cut}");
        }
    }
}
