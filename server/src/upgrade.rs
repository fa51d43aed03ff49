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
use crate::frames::Format;
use crate::layer::{LayerError, Resume};
use crate::limits::Refusal;
use crate::names::Identity;
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
    /// This person's secret key: connections with the same key may share
    /// a display name (see `names`).
    key: Option<String>,
}

/// `GET /ws/chat/{*room}`.
pub async fn ws_chat(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, axum::extract::rejection::PathRejection>,
    query: Result<Query<SocketQuery>, axum::extract::rejection::QueryRejection>,
    request: Request,
) -> Response {
    let headers = request.headers();
    // Access first: a stranger learns nothing else about the server.
    let query_token = query_param(request.uri(), "token");
    if let Err(response) = check_access(&state, headers, query_token.as_deref()) {
        return response;
    }
    let room = match path {
        Ok(Path(raw)) => match parse_room_path(&raw) {
            Ok(room) => room,
            Err(reason) => return refuse(&state, StatusCode::BAD_REQUEST, "bad_room", &reason),
        },
        Err(err) => {
            let reason = format!("invalid room in the URL: {err}");
            return refuse(&state, StatusCode::BAD_REQUEST, "bad_room", &reason);
        }
    };
    if !query_is_utf8(request.uri()) {
        // Decoding it anyway would turn a name into U+FFFD look-alikes.
        let reason = "the query string (?name=...) is not valid UTF-8 once percent-decoded";
        return refuse(&state, StatusCode::BAD_REQUEST, "bad_query", reason);
    }
    let Ok(Query(query)) = query else {
        let reason = "the query string could not be read";
        return refuse(&state, StatusCode::BAD_REQUEST, "bad_query", reason);
    };
    let user = match query.name.as_deref() {
        None | Some("") => guest_name(),
        Some(name) => match UserName::new(name) {
            Ok(user) => user,
            Err(err) => {
                return refuse(
                    &state,
                    StatusCode::BAD_REQUEST,
                    "bad_name",
                    &err.to_string(),
                );
            }
        },
    };
    let identity = match query.key.as_deref() {
        None | Some("") => Identity::anonymous(),
        Some(key) => match Identity::from_key(key) {
            Ok(identity) => identity,
            Err(err) => {
                return refuse(&state, StatusCode::BAD_REQUEST, "bad_key", &err.to_string());
            }
        },
    };
    let since = match query.since.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let reason = "since must be a message id (a whole number)";
            return refuse(&state, StatusCode::BAD_REQUEST, "bad_query", reason);
        }
    };
    let key = match handshake_key(&state, headers) {
        Ok(key) => key,
        Err(response) => return response,
    };
    if let Err(refusal) = check_room_caps(&state, &room) {
        return refuse_for(&state, &refusal);
    }
    let ticket = match state.admission().admit(peer.ip()) {
        Ok(ticket) => ticket,
        Err(refusal) => return refuse_for(&state, &refusal),
    };
    let offers_v2 = offered_protocols(headers).any(|p| p == SUBPROTOCOL_V2);
    let format = if offers_v2 || query.v.as_deref() == Some(QUERY_OPT_IN.1) {
        Format::Events
    } else {
        Format::Plain
    };
    // Join before the handshake's response goes out, as the Channels
    // tutorial's consumer does (`group_add`, then `accept`): a client that
    // has seen its handshake complete is a member, and receives anything
    // sent to the room from then on.
    let resume = since.map(|since| Resume {
        since,
        epoch: query.epoch.clone(),
    });
    let joined = match state
        .layer()
        .join(&room, user.as_str(), &identity, format, resume)
        .await
    {
        Ok(joined) => joined,
        Err(LayerError::NameTaken(taken)) => {
            return refuse(
                &state,
                StatusCode::CONFLICT,
                "name_taken",
                &taken.to_string(),
            );
        }
        Err(err) => {
            debug!(%room, %err, "join failed");
            return refuse_for(&state, &Refusal::Unavailable);
        }
    };
    let response = switching_protocols(&key, offers_v2.then_some(SUBPROTOCOL_V2));
    let on_upgrade = hyper::upgrade::on(request);
    let pending = Box::new(session::Pending {
        config: socket_config(state.config().max_message_size),
        params: SessionParams {
            room,
            user,
            format,
            identity,
        },
        joined,
        peer,
        ticket,
        drain_batch: state.drain_batch(),
        state: state.clone(),
    });
    state.tracker().spawn(session::run(on_upgrade, pending));
    response
}

/// `GET /ws/echo`: echoes every message back, over the same socket
/// settings and close handling as the chat endpoint (for conformance
/// tests; only served with `--echo-endpoint`).
pub async fn ws_echo(State(state): State<AppState>, request: Request) -> Response {
    let key = match handshake_key(&state, request.headers()) {
        Ok(key) => key,
        Err(response) => return response,
    };
    let response = switching_protocols(&key, None);
    let on_upgrade = hyper::upgrade::on(request);
    let config = socket_config(state.config().max_message_size);
    state.tracker().spawn(session::echo(
        on_upgrade,
        config,
        state.shutdown_token().clone(),
    ));
    response
}

/// The `101 Switching Protocols` answer.
fn switching_protocols(key: &str, protocol: Option<&'static str>) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    // The accept key is base64, always a valid header value.
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(protocol) = protocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(protocol),
        );
    }
    response
}

/// The token (401) and origin (403) checks of a socket request.
#[allow(clippy::result_large_err)] // the refusal is the response itself
fn check_access(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), Response> {
    check_access_token(state, headers, token)?;
    let access = &state.config().access;
    let host = match state.hosts().check(headers, &axum::http::Uri::default()) {
        Ok(host) => host,
        Err(refusal) => {
            let reason = refusal.to_string();
            return Err(refuse(state, StatusCode::BAD_REQUEST, "bad_host", &reason));
        }
    };
    if let Err(refusal) = access.check_origin(headers, &host, state.scheme(headers)) {
        let reason = refusal.to_string();
        return Err(refuse(state, StatusCode::FORBIDDEN, "origin", &reason));
    }
    Ok(())
}

/// The token check (401), for sockets and pages alike.
#[allow(clippy::result_large_err)] // the refusal is the response itself
pub(crate) fn check_access_token(
    state: &AppState,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<(), Response> {
    let access = &state.config().access;
    if let Err(reason) = access.check_token(headers, token) {
        let mut response = refuse(state, StatusCode::UNAUTHORIZED, "unauthorized", reason);
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Err(response);
    }
    Ok(())
}

/// Refuses a new room past `--max-rooms`, a member past `--max-members-per-room`.
fn check_room_caps(state: &AppState, room: &RoomName) -> Result<(), Refusal> {
    let limits = &state.config().limits;
    let members = state.registry().subscribers(room);
    if limits.max_members_per_room > 0 && members >= limits.max_members_per_room {
        return Err(Refusal::RoomFull(limits.max_members_per_room));
    }
    if limits.max_rooms > 0 && members == 0 && state.registry().len() >= limits.max_rooms {
        return Err(Refusal::TooManyRooms(limits.max_rooms));
    }
    Ok(())
}

fn refuse_for(state: &AppState, refusal: &Refusal) -> Response {
    let status = StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let mut response = refuse(state, status, refusal.label(), &refusal.to_string());
    // Clients should not come back at once.
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
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
fn handshake_key(state: &AppState, headers: &HeaderMap) -> Result<String, Response> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if !has_token(header::UPGRADE, "websocket") || !has_token(header::CONNECTION, "upgrade") {
        let reason = "this is a WebSocket endpoint: connect with a WebSocket client \
                      (the chat page is at /chat/<room>/)";
        return Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "not_websocket",
            reason,
        ));
    }
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        let reason = "only WebSocket version 13 is supported";
        let mut response = refuse(state, StatusCode::UPGRADE_REQUIRED, "not_websocket", reason);
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(response);
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().and_then(|v| v.to_str().ok());
    match key {
        Some(key) if keys.next().is_none() && is_handshake_key(key) => Ok(key.to_owned()),
        _ => Err(refuse(
            state,
            StatusCode::BAD_REQUEST,
            "not_websocket",
            "Sec-WebSocket-Key must be one header holding 16 bytes in base64 (24 characters)",
        )),
    }
}

/// Whether `key` is 16 bytes in base64 (RFC 6455 §4.2.1): 22 characters of
/// the base64 alphabet and `==`.
fn is_handshake_key(key: &str) -> bool {
    let key = key.trim().as_bytes();
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

/// The first value of the query parameter `name` (decoded leniently: for
/// a token, which is compared, not shown).
fn query_param(uri: &axum::http::Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// Whether the query string is valid UTF-8 once percent-decoded (the `&`
/// and `=` between parameters are ASCII, so the whole is valid exactly
/// when every name and value is).
fn query_is_utf8(uri: &axum::http::Uri) -> bool {
    let Some(query) = uri.query() else {
        return true;
    };
    let mut bytes = Vec::with_capacity(query.len());
    let mut raw = query.bytes();
    while let Some(b) = raw.next() {
        if b == b'%' {
            let hex = [raw.next(), raw.next()];
            let digit = |d: Option<u8>| char::from(d?).to_digit(16);
            match (digit(hex[0]), digit(hex[1])) {
                // Both are below 16.
                #[allow(clippy::cast_possible_truncation)]
                (Some(high), Some(low)) => bytes.push((high * 16 + low) as u8),
                // Not an escape: kept as written, as the form decoder does.
                _ => bytes.extend([b'%'].into_iter().chain(hex.into_iter().flatten())),
            }
        } else {
            bytes.push(b);
        }
    }
    std::str::from_utf8(&bytes).is_ok()
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

/// A refusal before the upgrade: the status and the reason as plain text,
/// counted in the metrics under `label`.
pub fn refuse(state: &AppState, status: StatusCode, label: &'static str, reason: &str) -> Response {
    debug!(%status, reason, "refused a socket request");
    state.metrics().refused(label);
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
    fn handshake_keys_are_16_bytes_of_base64() {
        assert!(is_handshake_key("dGhlIHNhbXBsZSBub25jZQ=="));
        for bad in [
            "",
            "x",
            "dGhlIHNhbXBsZSBub25jZQ",
            "dGhlIHNhbXBsZSBub25jZQ==x",
            "dGhlIHNhbXBsZSBub25j*Q==",
        ] {
            assert!(!is_handshake_key(bad), "{bad:?}");
        }
        assert!(!is_handshake_key(&"A".repeat(5000)));
    }

    #[test]
    fn queries_must_decode_to_utf8() {
        let ok = |q: &str| query_is_utf8(&format!("/ws/chat/r/?{q}").parse().unwrap());
        assert!(ok("name=ann&v=2"));
        assert!(ok("name=%C3%A9t%C3%A9"));
        assert!(ok("name=100%"), "a stray % is kept as written");
        assert!(!ok("name=%ff"));
        assert!(!ok("name=%C3"));
        assert!(!ok("v=2&name=%e9t%e9"));
    }

    #[test]
    fn guest_names_are_valid() {
        for _ in 0..100 {
            assert!(guest_name().as_str().starts_with("guest-"));
        }
    }
}
