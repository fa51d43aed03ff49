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
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::{CapacityError, ProtocolError};
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::debug;

use super::Socket;
use crate::Config;

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

/// The end a failed read earns.
pub(crate) fn read_failed(err: tungstenite::Error) -> End {
    use tungstenite::Error as E;
    match err {
        E::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::fail(
            close::MESSAGE_TOO_BIG,
            "too_big",
            format!("message of {size} bytes is over the limit of {max_size}"),
        ),
        E::Utf8(_) => End::fail(
            close::INVALID_PAYLOAD,
            "invalid_utf8",
            "text frame is not valid UTF-8",
        ),
        // The client went away without a closing handshake.
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake)
        | E::ConnectionClosed
        | E::AlreadyClosed
        | E::Io(_) => {
            debug!(%err, "connection dropped");
            End::Gone(Hangup::Reset)
        }
        E::Protocol(err) => End::fail(
            close::PROTOCOL_ERROR,
            "protocol_error",
            format!("protocol error: {err}"),
        ),
        other => End::fail(close::PROTOCOL_ERROR, "protocol_error", format!("{other}")),
    }
}

/// The end a failed write earns: the client is gone.
pub(crate) fn write_failed(err: &tungstenite::Error) -> End {
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
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(truncate_reason(reason)),
    };
    let deadline = Instant::now() + linger;
    let sent = tokio::time::timeout_at(deadline, ws.send(Message::Close(Some(frame)))).await;
    if !matches!(sent, Ok(Ok(()))) {
        return;
    }
    let answered_by = deadline.min(Instant::now() + CLOSE_REPLY);
    if !failed {
        // Frames the client sent before it saw ours are dropped (and
        // tungstenite answers nothing once the close is out), until the
        // client's close frame answers ours, or the connection ends.
        let handshake = async {
            while let Some(Ok(message)) = ws.next().await {
                if let Message::Close(_) = message {
                    break;
                }
            }
            let _ = ws.get_mut().shutdown().await;
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
    let socket = ws.get_mut();
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

/// Close reasons must fit in a control frame: at most 123 bytes of UTF-8.
pub(crate) fn truncate_reason(reason: &str) -> String {
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

    #[test]
    fn read_errors_map_to_close_codes() {
        let too_big = read_failed(tungstenite::Error::Capacity(
            CapacityError::MessageTooLong {
                size: 10,
                max_size: 5,
            },
        ));
        assert!(matches!(
            too_big,
            End::Close {
                code: 1009,
                label: "too_big",
                ..
            }
        ));
        assert!(matches!(too_big, End::Close { failed: true, .. }));
        assert!(matches!(
            read_failed(tungstenite::Error::ConnectionClosed),
            End::Gone(Hangup::Reset)
        ));
        assert!(matches!(
            read_failed(tungstenite::Error::Protocol(
                ProtocolError::ResetWithoutClosingHandshake
            )),
            End::Gone(Hangup::Reset)
        ));
        assert!(matches!(
            read_failed(tungstenite::Error::Protocol(
                ProtocolError::NonZeroReservedBits
            )),
            End::Close {
                code: close::PROTOCOL_ERROR,
                failed: true,
                ..
            }
        ));
    }
}
