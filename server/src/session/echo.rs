//! `/ws/echo`: every message straight back, over the same socket settings
//! and the same close handling as a chat session. It exists so that a
//! WebSocket conformance suite (Autobahn) can test the server's connection
//! handling; it is only served with `--echo-endpoint`.

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::ending::{self, End, Hangup};
use super::{CLOSE_LINGER, SHUTDOWN_LINGER};
use chat_protocol::close;

/// Runs an echo connection until it ends.
pub async fn echo(upgrade: OnUpgrade, config: WebSocketConfig, shutdown: CancellationToken) {
    let upgraded = match upgrade.await {
        Ok(upgraded) => upgraded,
        Err(err) => {
            debug!(%err, "echo upgrade failed");
            return;
        }
    };
    let mut ws = super::websocket(upgraded, config).await;
    let end = loop {
        let inbound = tokio::select! {
            () = shutdown.cancelled() => break End::close(close::GOING_AWAY, "shutdown", "server shutting down"),
            inbound = ws.next() => inbound,
        };
        let reply = match inbound {
            None => break End::Gone(Hangup::Reset),
            Some(Ok(Message::Text(text))) => Message::Text(text),
            Some(Ok(Message::Binary(data))) => Message::Binary(data),
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the close reply; send it.
                let _ = tokio::time::timeout(ending::CLOSE_REPLY, ws.flush()).await;
                break End::Gone(Hangup::Closed);
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
            Some(Err(err)) => break ending::read_failed(err),
        };
        if let Err(err) = ws.send(reply).await {
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
