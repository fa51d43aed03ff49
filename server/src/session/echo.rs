//! `/ws/echo`: every message straight back, over the same WebSocket codec
//! (`ws`) and the same close handling as a chat session. It exists so that
//! a WebSocket conformance suite (Autobahn) can test the server's
//! connection handling; it is only served with `--echo-endpoint`.

use hyper::upgrade::OnUpgrade;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ending::{self, End, Hangup};
use super::{CLOSE_LINGER, SHUTDOWN_LINGER};
use crate::ws::{Message, OpCode};
use chat_protocol::close;

/// Runs an echo connection until it ends; messages over
/// `max_message_size` bytes are refused (close 1009).
pub async fn echo(upgrade: OnUpgrade, max_message_size: usize, shutdown: CancellationToken) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            debug!(%err, "echo upgrade failed");
            return;
        }
    };
    let mut ws = super::websocket(upgraded, max_message_size);
    let end = loop {
        let inbound = tokio::select! {
            () = shutdown.cancelled() => break End::close(close::GOING_AWAY, "shutdown", "server shutting down"),
            inbound = ws.next() => inbound,
        };
        let (opcode, payload) = match inbound {
            None => break End::Gone(Hangup::Reset),
            Some(Ok(Message::Text(text))) => (OpCode::Text, text),
            Some(Ok(Message::Binary(data))) => (OpCode::Binary, data),
            Some(Ok(Message::Close(_))) => {
                // The socket has queued the close reply; send it.
                let _ = tokio::time::timeout(ending::CLOSE_REPLY, ws.flush()).await;
                break End::Gone(Hangup::Closed);
            }
            Some(Ok(Message::Ping | Message::Pong)) => continue,
            Some(Err(err)) => break ending::read_failed(&err),
        };
        ws.queue_fragment(crate::ws::Fragment {
            opcode,
            fin: true,
            payload,
        });
        if let Err(err) = ws.flush().await {
            break ending::write_failed(&err);
        }
    };
    if let End::Close {
        code,
        reason,
        failed,
        ..
    } = end
    {
        let linger = if code == close::GOING_AWAY {
            SHUTDOWN_LINGER
        } else {
            CLOSE_LINGER
        };
        ending::close(&mut ws, code, &reason, failed, linger).await;
    }
}
