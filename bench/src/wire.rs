//! The client side of RFC 6455, as much of it as a load generator needs.
//!
//! Written by hand rather than through tungstenite because the receive side
//! is the load generator's hot path: a connection reads whatever the kernel
//! holds into one large buffer shared by every connection of a thread, and
//! [`parse_frame`] walks the frames in place, so a delivery costs no
//! allocation and no copy. The handshake uses tungstenite's key helpers so
//! that the accept check is the standard one.
//!
//! What is covered: the opening handshake (no subprotocol, no extension, an
//! `Origin` header), masked client frames ([`push_frame`]), and the server
//! frames a chat server sends: text, binary, continuation, ping, pong, close.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

/// Opcode of a continuation frame.
pub const OP_CONTINUATION: u8 = 0x0;
/// Opcode of a text frame.
pub const OP_TEXT: u8 = 0x1;
/// Opcode of a binary frame.
pub const OP_BINARY: u8 = 0x2;
/// Opcode of a close frame.
pub const OP_CLOSE: u8 = 0x8;
/// Opcode of a ping frame.
pub const OP_PING: u8 = 0x9;
/// Opcode of a pong frame.
pub const OP_PONG: u8 = 0xA;

/// The largest handshake response we accept, headers included.
const MAX_RESPONSE: usize = 16 * 1024;

/// The largest frame payload we accept from a server: chat messages are
/// small, so anything bigger is a broken stream, not a message.
pub const MAX_PAYLOAD: usize = 16 * 1024 * 1024;

/// Why a connection could not be opened or a frame not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The TCP connection or the socket I/O failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The handshake did not finish in time.
    #[error("handshake timed out")]
    Timeout,
    /// The server answered the upgrade with something else than 101.
    #[error("handshake refused: {0}")]
    Refused(String),
    /// The server's bytes are not a valid WebSocket stream.
    #[error("protocol: {0}")]
    Protocol(&'static str),
}

/// Where and how to open one WebSocket connection.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Target {
    /// The server's socket address.
    pub addr: SocketAddr,
    /// The `Host` header (`127.0.0.1:8000`).
    pub host: String,
    /// The `Origin` header, if any (Channels' `AllowedHostsOriginValidator`
    /// refuses a handshake without one).
    pub origin: Option<String>,
}

/// Opens a TCP connection from `source` (if given) and performs the
/// WebSocket handshake for `path`.
///
/// Returns the stream and any bytes the server sent after its 101 response
/// (normally none: a chat server sends nothing before the first message).
pub async fn connect(
    target: &Target,
    path: &str,
    source: Option<IpAddr>,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), WireError> {
    let socket = new_socket(target)?;
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    connect_socket(socket, target, path, timeout).await
}

/// A fresh, unconnected socket of the target's address family, for callers
/// that set options (a receive buffer size) before [`connect_socket`].
///
/// # Errors
///
/// The kernel refused a socket.
pub fn new_socket(target: &Target) -> std::io::Result<TcpSocket> {
    if target.addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
}

/// Connects `socket` to the target and performs the WebSocket handshake for
/// `path`, as [`connect`] does.
///
/// # Errors
///
/// The connection failed, was refused, or did not finish within `timeout`.
pub async fn connect_socket(
    socket: TcpSocket,
    target: &Target,
    path: &str,
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), WireError> {
    tokio::time::timeout(timeout, connect_inner(socket, target, path))
        .await
        .map_err(|_| WireError::Timeout)?
}

async fn connect_inner(
    socket: TcpSocket,
    target: &Target,
    path: &str,
) -> Result<(TcpStream, Vec<u8>), WireError> {
    let mut stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;

    let key = tokio_tungstenite::tungstenite::handshake::client::generate_key();
    let mut request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n",
        host = target.host
    );
    if let Some(origin) = &target.origin {
        request.push_str("Origin: ");
        request.push_str(origin);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;

    let mut buf = Vec::with_capacity(1024);
    let header_len = loop {
        if buf.len() >= MAX_RESPONSE {
            return Err(WireError::Protocol("handshake response too large"));
        }
        let mut chunk = [0u8; 1024];
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(WireError::Refused(
                "connection closed during handshake".into(),
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break end + 4;
        }
    };
    check_response(&buf[..header_len], &key)?;
    let rest = buf.split_off(header_len);
    Ok((stream, rest))
}

/// Checks a handshake response: status 101 and the right accept key.
fn check_response(head: &[u8], key: &str) -> Result<(), WireError> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) | Err(_) => {
            return Err(WireError::Protocol("malformed handshake response"));
        }
    }
    let code = response.code.unwrap_or(0);
    if code != 101 {
        let reason = response.reason.unwrap_or("");
        return Err(WireError::Refused(format!("HTTP {code} {reason}")));
    }
    let expected = derive_accept_key(key.as_bytes());
    let accept = response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
        .map(|h| h.value);
    if accept != Some(expected.as_bytes()) {
        return Err(WireError::Protocol("wrong Sec-WebSocket-Accept"));
    }
    Ok(())
}

/// One frame from the server, borrowed from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame<'a> {
    /// The FIN bit: this frame ends its message.
    pub fin: bool,
    /// The opcode (`OP_*`).
    pub opcode: u8,
    /// The (unmasked) payload.
    pub payload: &'a [u8],
}

/// Parses the frame at the start of `buf`.
///
/// Returns the frame and its length in bytes, or `None` when `buf` holds
/// only part of a frame.
///
/// # Errors
///
/// A masked frame, reserved bits, an unknown opcode or a payload over
/// [`MAX_PAYLOAD`] are protocol errors.
#[inline]
pub fn parse_frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, WireError> {
    let [b0, b1, ..] = *buf else {
        return Ok(None);
    };
    if b0 & 0x70 != 0 {
        return Err(WireError::Protocol("reserved bits set"));
    }
    if b1 & 0x80 != 0 {
        return Err(WireError::Protocol("masked frame from server"));
    }
    let opcode = b0 & 0x0F;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(WireError::Protocol("unknown opcode"));
    }
    let (len, header) = match b1 & 0x7F {
        126 => {
            let Some(bytes) = buf.get(2..4) else {
                return Ok(None);
            };
            (u64::from(u16::from_be_bytes([bytes[0], bytes[1]])), 4)
        }
        127 => {
            let Some(bytes) = buf.get(2..10) else {
                return Ok(None);
            };
            let mut raw = [0u8; 8];
            raw.copy_from_slice(bytes);
            (u64::from_be_bytes(raw), 10)
        }
        short => (u64::from(short), 2),
    };
    let len = usize::try_from(len)
        .ok()
        .filter(|&len| len <= MAX_PAYLOAD)
        .ok_or(WireError::Protocol("frame too large"))?;
    let total = header + len;
    let Some(payload) = buf.get(header..total) else {
        return Ok(None);
    };
    Ok(Some((
        Frame {
            fin: b0 & 0x80 != 0,
            opcode,
            payload,
        },
        total,
    )))
}

/// Appends one masked client frame (FIN set) to `out`.
pub fn push_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(0x80 | opcode);
    let len = payload.len();
    if len < 126 {
        // Fits in seven bits, checked just above.
        #[allow(clippy::cast_possible_truncation)]
        out.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        out.push(0x80 | 0x7E);
        out.extend_from_slice(&len16.to_be_bytes());
    } else {
        out.push(0x80 | 0x7F);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    for (i, byte) in out[start..].iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// A close frame's payload as text: `1008 slow consumer`, or `no code`.
pub fn describe_close(payload: &[u8]) -> String {
    match payload {
        [hi, lo, reason @ ..] => {
            let code = u16::from_be_bytes([*hi, *lo]);
            let reason = String::from_utf8_lossy(reason);
            if reason.is_empty() {
                code.to_string()
            } else {
                format!("{code} {reason}")
            }
        }
        _ => "no code".to_owned(),
    }
}

/// A fresh masking key: clients must mask, and a key that varies keeps
/// the server's unmasking honest.
pub fn mask_key() -> [u8; 4] {
    fastrand::u32(..).to_ne_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 {
            out.push(u8::try_from(len).unwrap());
        } else if len <= 0xFFFF {
            out.push(126);
            out.extend_from_slice(&u16::try_from(len).unwrap().to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn parses_short_medium_and_long_frames() {
        for len in [0, 5, 125, 126, 300, 65_535, 65_536, 70_000] {
            let payload = vec![b'a'; len];
            let bytes = server_frame(OP_TEXT, true, &payload);
            let (frame, used) = parse_frame(&bytes).unwrap().unwrap();
            assert_eq!(used, bytes.len());
            assert_eq!(frame.payload.len(), len);
            assert!(frame.fin);
            assert_eq!(frame.opcode, OP_TEXT);
            // Every strict prefix is incomplete, never an error.
            for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
                if cut < bytes.len() {
                    assert!(
                        parse_frame(&bytes[..cut]).unwrap().is_none(),
                        "len {len} cut {cut}"
                    );
                }
            }
        }
    }

    #[test]
    fn describes_close_frames() {
        assert_eq!(
            describe_close(b"\x03\xf0slow consumer"),
            "1008 slow consumer"
        );
        assert_eq!(describe_close(b"\x03\xe8"), "1000");
        assert_eq!(describe_close(b""), "no code");
    }

    #[test]
    fn rejects_masked_and_reserved() {
        assert!(parse_frame(&[0x81, 0x81, 0, 0, 0, 0, b'a']).is_err());
        assert!(parse_frame(&[0xC1, 0x01, b'a']).is_err());
        assert!(parse_frame(&[0x83, 0x01, b'a']).is_err());
    }

    #[test]
    fn client_frames_are_masked_and_round_trip() {
        for len in [3, 200, 70_000] {
            let payload: Vec<u8> = (0..len).map(|i| u8::try_from(i % 251).unwrap()).collect();
            let mut out = Vec::new();
            let mask = [1, 2, 3, 4];
            push_frame(&mut out, OP_TEXT, &payload, mask);
            assert_eq!(out[0], 0x81);
            assert_eq!(out[1] & 0x80, 0x80);
            let header = match out[1] & 0x7F {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            assert_eq!(&out[header..header + 4], &mask);
            let unmasked: Vec<u8> = out[header + 4..]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i & 3])
                .collect();
            assert_eq!(unmasked, payload);
        }
    }
}
