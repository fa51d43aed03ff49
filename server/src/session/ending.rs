//! How a connection ends: why ([`End`]), which close code a read error
//! earns, and the close itself (send the close frame, then drain what the
//! client still sends, so that unread bytes do not turn the close into a
//! TCP reset that would lose the close frame).

use std::borrow::Cow;
use std::time::Duration;

use chat_protocol::close;
use futures_util::SinkExt;
use tokio::io::AsyncReadExt;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};
use tracing::debug;

use super::Socket;
use crate::Config;

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The client closed, or the connection dropped: nothing more to send.
    Gone,
    /// Close with this code and reason; `label` names the reason in metrics.
    Close {
        code: u16,
        reason: Cow<'static, str>,
        label: &'static str,
    },
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

    /// The metrics label of a close by the server.
    pub(crate) fn label(&self) -> Option<&'static str> {
        match self {
            Self::Gone => None,
            Self::Close { label, .. } => Some(label),
        }
    }
}

/// The end a failed read earns.
pub(crate) fn read_failed(err: tungstenite::Error) -> End {
    use tungstenite::Error as E;
    match err {
        E::Capacity(CapacityError::MessageTooLong { size, max_size }) => End::close(
            close::MESSAGE_TOO_BIG,
            "too_big",
            format!("message of {size} bytes is over the limit of {max_size}"),
        ),
        E::Utf8(_) => End::close(
            close::INVALID_PAYLOAD,
            "invalid_utf8",
            "text frame is not valid UTF-8",
        ),
        E::Protocol(err) => End::close(1002, "protocol_error", format!("protocol error: {err}")),
        E::ConnectionClosed | E::AlreadyClosed | E::Io(_) => {
            debug!(%err, "connection dropped");
            End::Gone
        }
        other => End::close(1002, "protocol_error", format!("{other}")),
    }
}

/// The end a failed write earns: the client is gone.
pub(crate) fn write_failed(err: &tungstenite::Error) -> End {
    debug!(%err, "write failed");
    End::Gone
}

/// Sends the close frame, then reads and discards what the client sends
/// until its side closes or `linger` passes.
pub(crate) async fn close(ws: &mut Socket, code: u16, reason: &str, linger: Duration) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: Utf8Bytes::from(truncate_reason(reason)),
    };
    let closing = async {
        if ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        let socket = ws.get_mut();
        // On the heap: a buffer here would be part of every idle session's task.
        let mut sink = vec![0u8; 4096];
        let mut total = 0usize;
        while let Ok(n) = socket.read(&mut sink).await {
            total += n;
            // Bounded by the linger time; the byte cap only stops a client
            // that floods faster than any chat client could.
            if n == 0 || total > (64 << 20) {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(linger, closing).await;
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
        assert!(matches!(
            read_failed(tungstenite::Error::ConnectionClosed),
            End::Gone
        ));
    }
}
