//! The server's own view: `GET /metrics` (Prometheus text) and
//! `GET /healthz`, over a plain blocking HTTP/1.1 request.
//!
//! chat-server exports `chat_disconnects_total{reason="…"}` (connections
//! it closed, by reason), `chat_refusals_total{reason="…"}` (handshakes it
//! refused), `chat_rate_limited_total` and message counters. The soak
//! reads them before and after the run and reports the difference, next
//! to what its clients saw. Servers without `/metrics` simply have no such
//! section.

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The largest response read.
const MAX_RESPONSE: u64 = 4 * 1024 * 1024;

/// Sends `GET path` and returns the status and the body.
///
/// # Errors
///
/// The connection failed, timed out, or the answer is not HTTP.
pub fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse_response(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "not an HTTP response"))
}

/// Status and body of a whole HTTP/1.1 response (chunked or not).
fn parse_response(raw: &[u8]) -> Option<(u16, String)> {
    let end = memchr::memmem::find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let status = head.split_ascii_whitespace().nth(1)?.parse().ok()?;
    let chunked = head.lines().any(|line| {
        let line = line.to_ascii_lowercase();
        line.starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(body, b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

/// Every sample of a Prometheus text exposition, keyed by the series as
/// written (`name{label="value"}`).
pub fn parse_prometheus(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.trim().to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// What the server counted during the run (after minus before).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerView {
    /// Connections the server closed, by its reason label.
    pub disconnects: BTreeMap<String, u64>,
    /// Handshakes it refused, by reason.
    pub refusals: BTreeMap<String, u64>,
    /// Messages refused or slowed by the rate limit.
    pub rate_limited: u64,
    /// WebSocket connections accepted.
    pub connections_opened: u64,
    /// Chat messages received and published.
    pub messages_in: u64,
    /// Frames written to clients.
    pub messages_out: u64,
}

impl ServerView {
    /// The difference between two scrapes.
    pub fn between(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> Self {
        let delta = |series: &str| {
            let d = after.get(series).copied().unwrap_or(0.0)
                - before.get(series).copied().unwrap_or(0.0);
            // Counters are whole numbers; a negative delta (a restart) is 0.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let d = d.max(0.0).round() as u64;
            d
        };
        let by_reason = |name: &str| {
            let prefix = format!("{name}{{reason=\"");
            after
                .keys()
                .filter_map(|series| {
                    let reason = series.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                    Some((reason.to_owned(), delta(series)))
                })
                .filter(|(_, n)| *n > 0)
                .collect()
        };
        Self {
            disconnects: by_reason("chat_disconnects_total"),
            refusals: by_reason("chat_refusals_total"),
            rate_limited: delta("chat_rate_limited_total"),
            connections_opened: delta("chat_connections_opened_total"),
            messages_in: delta("chat_messages_in_total"),
            messages_out: delta("chat_messages_out_total"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_response(plain), Some((200, "ok".to_owned())));
        let chunked =
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked), Some((503, "abcde".to_owned())));
        assert_eq!(parse_response(b"garbage"), None);
    }

    #[test]
    fn counts_the_difference_by_reason() {
        let before = parse_prometheus(
            "# HELP chat_disconnects_total x\n\
             chat_disconnects_total{reason=\"slow_consumer\"} 2\n\
             chat_connections_opened_total 10\n",
        );
        let after = parse_prometheus(
            "chat_disconnects_total{reason=\"slow_consumer\"} 5\n\
             chat_disconnects_total{reason=\"binary\"} 1\n\
             chat_refusals_total{reason=\"too_fast\"} 0\n\
             chat_rate_limited_total 7\n\
             chat_connections_opened_total 25\n",
        );
        let view = ServerView::between(&before, &after);
        assert_eq!(view.disconnects.get("slow_consumer"), Some(&3));
        assert_eq!(view.disconnects.get("binary"), Some(&1));
        assert!(view.refusals.is_empty());
        assert_eq!((view.rate_limited, view.connections_opened), (7, 15));
    }
}
