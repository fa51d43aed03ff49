//! The WebSocket endpoint `/ws/chat/<room>/`: checks the request, answers
//! the handshake, and hands the upgraded connection to a session.
//!
//! Everything that can be refused is refused here, before the upgrade, with
//! an HTTP status and a reason in the body: a bad room name, a bad display
//! name, a request that is not a WebSocket handshake.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chat_protocol::{QUERY_OPT_IN, RoomName, SUBPROTOCOL_V2, UserName};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::debug;

use crate::AppState;
use crate::layer::Resume;
use crate::ring::Format;
use crate::session::{self, SessionParams};

/// Query parameters of the socket URL.
#[derive(Debug, Default, Deserialize)]
pub struct SocketQuery {
    /// Display name.
    name: Option<String>,
    /// Last message id seen, for recovery.
    since: Option<String>,
    /// The epoch `since` belongs to.
    epoch: Option<String>,
    /// `v=2` opts in to typed events.
    v: Option<String>,
}

/// `GET /ws/chat/{*room}`.
pub async fn ws_chat(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<SocketQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let room = match path {
        Ok(Path(raw)) => match parse_room_path(&raw) {
            Ok(room) => room,
            Err(reason) => return refuse(StatusCode::BAD_REQUEST, &reason),
        },
        Err(err) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                &format!("invalid room in the URL: {err}"),
            );
        }
    };
    let Ok(Query(query)) = query else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "the query string could not be read",
        );
    };
    let user = match query.name.as_deref() {
        None | Some("") => guest_name(),
        Some(name) => match UserName::new(name) {
            Ok(user) => user,
            Err(err) => return refuse(StatusCode::BAD_REQUEST, &err.to_string()),
        },
    };
    let since = match query.since.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "since must be a message id (a whole number)",
            );
        }
    };
    let headers = request.headers();
    let key = match handshake_key(headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let offers_v2 = offered_protocols(headers).any(|p| p == SUBPROTOCOL_V2);
    let format = if offers_v2 || query.v.as_deref() == Some(QUERY_OPT_IN.1) {
        Format::Events
    } else {
        Format::Plain
    };

    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let response_headers = response.headers_mut();
    response_headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    response_headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // The accept key is base64, always a valid header value.
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        response_headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if offers_v2 {
        response_headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(SUBPROTOCOL_V2),
        );
    }

    let on_upgrade = hyper::upgrade::on(request);
    let params = SessionParams {
        room,
        user,
        format,
        resume: since.map(|since| Resume {
            since,
            epoch: query.epoch.clone(),
        }),
        peer,
        queue_len: state.config().queue_len,
        write_timeout: state.config().write_timeout,
    };
    let ws_config = socket_config(state.config().max_message_size);
    let layer = state.layer().clone();
    // A clone, not a child token: a child costs an allocation per connection.
    let shutdown = state.shutdown_token().clone();
    let pending = Box::new(session::Pending {
        config: ws_config,
        params,
        layer,
    });
    state
        .tracker()
        .spawn(session::run(on_upgrade, pending, shutdown));
    response
}

/// tungstenite's defaults (128 KiB read buffer allocated per connection,
/// 64 MiB messages, unbounded write buffer) would make idle connections
/// cost far more than they need. Frames are read into a small buffer that
/// grows only for a large frame; writes are batched by the session, which
/// flushes explicitly, so the write threshold only has to exceed a batch.
pub fn socket_config(max_message_size: usize) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_THRESHOLD_BYTES)
        .max_write_buffer_size(WRITE_THRESHOLD_BYTES + 2 * max_message_size + 64 * 1024)
        .max_message_size(Some(max_message_size))
        .max_frame_size(Some(max_message_size))
}

/// The read buffer every connection holds while idle. Chat frames are
/// small, so one read usually holds one or two; a large frame grows the
/// buffer for itself. 256 bytes instead of tungstenite's 128 KiB is what
/// keeps an idle connection under 3 KiB.
const READ_BUFFER_BYTES: usize = 256;

/// The write buffer is written out when it passes this size; the session
/// flushes long before (see `session::BATCH_BYTES`).
const WRITE_THRESHOLD_BYTES: usize = 128 * 1024;

/// Checks the WebSocket handshake headers and returns the client's key.
#[allow(clippy::result_large_err)] // the refusal is the response itself; it is built once
fn handshake_key(headers: &HeaderMap) -> Result<String, Response> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "this is a WebSocket endpoint: connect with a WebSocket client (the chat page is at /chat/<room>/)",
        ));
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok())
        != Some("13")
    {
        let mut response = refuse(
            StatusCode::UPGRADE_REQUIRED,
            "only WebSocket version 13 is supported",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "missing Sec-WebSocket-Key header"))
}

fn offered_protocols(headers: &HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
}

/// The room from what follows `/ws/chat/` or `/chat/` (already
/// percent-decoded by the router), with one optional trailing slash.
pub fn parse_room_path(raw: &str) -> Result<RoomName, String> {
    let name = raw.strip_suffix('/').unwrap_or(raw);
    RoomName::new(name).map_err(|err| err.to_string())
}

/// A display name for a client that gave none.
fn guest_name() -> UserName {
    let name = format!("guest-{:06x}", fastrand::u32(..0x100_0000));
    #[allow(clippy::expect_used)] // "guest-" and six hex digits always satisfy the name rule
    UserName::new(name).expect("guest names are valid display names")
}

/// A refusal before the upgrade: the status and the reason as plain text.
pub fn refuse(status: StatusCode, reason: &str) -> Response {
    debug!(%status, reason, "refused a socket request");
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{reason}\n"),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_paths_take_one_optional_trailing_slash() {
        assert_eq!(parse_room_path("lobby/").unwrap().as_str(), "lobby");
        assert_eq!(parse_room_path("lobby").unwrap().as_str(), "lobby");
        assert!(parse_room_path("lobby//").is_err());
        assert!(parse_room_path("../x/").is_err());
        assert!(parse_room_path("/").is_err());
        assert!(parse_room_path("</script>/").unwrap_err().contains('<'));
    }

    #[test]
    fn guest_names_are_valid() {
        for _ in 0..100 {
            assert!(guest_name().as_str().starts_with("guest-"));
        }
    }
}
