//! The server's own view: `GET /metrics` (Prometheus text) and
//! `GET /healthz`, over hyper's HTTP/1.1 client.
//!
//! chat-server exports `chat_disconnects_total{reason="…"}` (connections
//! it closed, by reason), `chat_refusals_total{reason="…"}` (handshakes it
//! refused), `chat_rate_limited_total` and message counters. The soak
//! reads them before and after the run and reports the difference, next
//! to what its clients saw. Servers without `/metrics` simply have no such
//! section.

use std::collections::BTreeMap;
use std::time::Duration;

use http_body_util::{BodyExt as _, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;

use crate::wire::Target;

/// Why a `GET` failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The TCP connection failed.
    #[error("connecting")]
    Connect(#[source] std::io::Error),
    /// The request or the response failed.
    #[error("HTTP")]
    Http(#[source] hyper::Error),
    /// The request could not be built (a bad path).
    #[error("building the request")]
    Request(#[source] hyper::http::Error),
    /// No whole answer within the time allowed.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Sends `GET path` to the server and returns the status and the body.
///
/// # Errors
///
/// The connection failed, the answer is not HTTP, or it took longer than
/// `timeout`.
pub async fn get(
    target: &Target,
    path: &str,
    timeout: Duration,
) -> Result<(u16, String), HttpError> {
    let exchange = async {
        let stream = TcpStream::connect(target.addr)
            .await
            .map_err(HttpError::Connect)?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(HttpError::Http)?;
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, &target.host)
            .body(Empty::<Bytes>::new())
            .map_err(HttpError::Request)?;
        // The sender goes with the request, so that the connection ends
        // once the response is read.
        let response = async move {
            let response = sender.send_request(request).await?;
            let status = response.status().as_u16();
            let body = response.into_body().collect().await?.to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        };
        let (answer, _) = tokio::join!(response, connection);
        answer.map_err(HttpError::Http)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| HttpError::Timeout(timeout))?
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
