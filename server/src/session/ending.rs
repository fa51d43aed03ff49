//! How a connection ends: why ([`End`]), which close code a read error
//! earns, and the close itself.
//!
//! RFC 6455 gives a close two shapes, and so does [`close`]:
//!
//! * the closing handshake (§7.1.2, §5.5.1): the server sends its close
//!   frame, reads the client's frames until its close frame answers, and
//!   then closes the TCP connection at once (§7.1.1: the server closes it
//!   first). Everything the server decides on its own ends this way: limits,
//!   a slow consumer, keepalive, shutdown, a refused payload;
//! * failing the connection (§7.1.7), after a frame that could not be read
//!   (too big, invalid UTF-8, a protocol error): what follows cannot be
//!   parsed as frames, and must not be processed. The server sends its close
//!   frame, half-closes (its FIN follows the close frame at once), and
//!   discards what the client still sends until it hangs up, so that unread
//!   bytes do not turn the close into a reset that would lose the close
//!   frame.
//!
//! Either way both ends are bounded in time: a client gets the linger to
//! read its way to the close frame, then [`CLOSE_REPLY`] to answer it; one
//! that does not is treated as failed (FIN, then discard for a moment).

use std::borrow::Cow;
use std::time::Duration;

use chat_protocol::close;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tracing::debug;

use super::Socket;
use crate::Config;
use crate::ws::{self, Message};

/// How long a client has to answer the server's close frame once it is
/// out, before the server closes the TCP connection anyway.
pub(crate) const CLOSE_REPLY: Duration = Duration::from_secs(2);

/// The most a failing connection reads and discards while it waits for the
/// client to hang up: a client flooding faster than any chat client could
/// is cut off sooner.
const DISCARD_BYTES: usize = 1 << 20;

/// How long a client that did not answer the close frame in time gets to
/// hang up after the server's FIN, before the server lets go of the socket.
const DISCARD_TIME: Duration = Duration::from_millis(500);

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client ended the connection: nothing more to send.
    Gone(Hangup),
    /// Close with this code and reason; `label` names the reason in metrics.
    Close {
        code: u16,
        reason: Cow<'static, str>,
        label: &'static str,
        /// The connection is failed (a frame could not be read): no
        /// closing handshake, see the module doc.
        failed: bool,
    },
}

/// How a client ended its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hangup {
    /// With a close frame (answered).
    Closed,
    /// Without one: a TCP reset, or the connection closed or broke.
    Reset,
}

impl Hangup {
    /// The metrics label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Reset => "reset",
        }
    }
}

impl End {
    pub(crate) fn close(
        code: u16,
        label: &'static str,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::Close {
            code,
            reason: reason.into(),
            label,
            failed: false,
        }
    }

    /// Fails the connection (RFC 6455 §7.1.7) with `code`.
    fn fail(code: u16, label: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Self::Close {
            code,
            reason: reason.into(),
            label,
            failed: true,
        }
    }

    /// A client more than `--queue` messages or `--queue-bytes` bytes
    /// behind (its outbound queue is full).
    pub(crate) fn slow_consumer(config: &Config) -> Self {
        Self::close(
            close::POLICY_VIOLATION,
            "slow_consumer",
            format!(
                "slow consumer: fell more than {} messages or {} bytes behind",
                config.queue_len, config.queue_bytes
            ),
        )
    }

    /// A client that has not read what was written to it within the write
    /// timeout.
    pub(crate) fn not_reading() -> Self {
        Self::close(
            close::POLICY_VIOLATION,
            "slow_consumer",
            "slow consumer: not reading",
        )
    }
}

/// The end a failed read earns: the connection is failed with the close
/// code the error calls for, or is gone when the connection itself failed.
pub(crate) fn read_failed(err: &ws::Error) -> End {
    let label = match err {
        ws::Error::TooBig { .. } => "too_big",
        ws::Error::Utf8 => "invalid_utf8",
        ws::Error::Protocol(_) => "protocol_error",
        ws::Error::Io(_) => "reset",
    };
    if let Some(code) = err.close_code() {
        End::fail(code, label, err.to_string())
    } else {
        debug!(%err, cause = ?std::error::Error::source(err), "connection dropped");
        End::Gone(Hangup::Reset)
    }
}

/// The end a failed write earns: the client is gone.
pub(crate) fn write_failed(err: &std::io::Error) -> End {
    debug!(%err, "write failed");
    End::Gone(Hangup::Reset)
}

/// Closes the connection with `code` and `reason`, as the module doc says:
/// the closing handshake, or, when `failed`, failing the connection.
/// Sending the close frame may take `linger` (a slow client reading its way
/// to it); the client then has [`CLOSE_REPLY`] to answer. Returns with the
/// TCP connection closed, or ready to be dropped.
pub(crate) async fn close(
    ws: &mut Socket,
    code: u16,
    reason: &str,
    failed: bool,
    linger: Duration,
) {
    ws.queue_close(code, reason);
    let deadline = Instant::now() + linger;
    let sent = tokio::time::timeout_at(deadline, ws.flush()).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let answered_by = deadline.min(Instant::now() + CLOSE_REPLY);
    if !failed {
        // Frames the client sent before it saw ours are dropped (and the
        // socket answers nothing once the close is out), until the
        // client's close frame answers ours, or the connection ends.
        let handshake = async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
            let _ = ws.stream_mut().shutdown().await;
        };
        if tokio::time::timeout_at(answered_by, handshake)
            .await
            .is_ok()
        {
            return;
        }
    }
    // Failing the connection, or a client that does not answer: the FIN
    // right after the close frame, then what the client still sends is
    // discarded until it hangs up, so that unread bytes do not turn the
    // close into a reset that would lose the close frame.
    let discard_until = if failed {
        answered_by
    } else {
        Instant::now() + DISCARD_TIME
    };
    let socket = ws.stream_mut();
    let discard = async {
        let _ = socket.shutdown().await;
        // On the heap: a buffer here would be part of every idle session's
        // task.
        let mut sink = vec![0u8; 4096];
        let mut total = 0;
        while let Ok(n @ 1..) = socket.read(&mut sink).await {
            total += n;
            if total > DISCARD_BYTES {
                break;
            }
        }
    };
    let _ = tokio::time::timeout_at(discard_until, discard).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_errors_map_to_close_codes() {
        let too_big = read_failed(&ws::Error::TooBig { size: 10, max: 5 });
        assert!(matches!(
            too_big,
            End::Close {
                code: 1009,
                label: "too_big",
                failed: true,
                ..
            }
        ));
        assert!(matches!(
            read_failed(&ws::Error::Utf8),
            End::Close {
                code: close::INVALID_PAYLOAD,
                failed: true,
                ..
            }
        ));
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(matches!(
            read_failed(&ws::Error::Io(reset)),
            End::Gone(Hangup::Reset)
        ));
        assert!(matches!(
            read_failed(&ws::Error::Protocol("reserved bits set")),
            End::Close {
                code: close::PROTOCOL_ERROR,
                failed: true,
                ..
            }
        ));
    }
}
