//! The WebSocket endpoint `/ws/chat/<room>/`: checks the request, answers
//! the handshake, and hands the upgraded connection to a session.
//!
//! Everything that can be refused is refused here, before the upgrade, with
//! an HTTP status and a reason in the body ([`Rejection`]): no access (see
//! `access`), a bad room name, a bad display name, a request that is not a
//! WebSocket handshake, a limit reached.
//!
//! The handshake is answered here rather than with axum's
//! `WebSocketUpgrade`, for three reasons: the connection then runs on our
//! own codec (`ws`), which writes the room's shared bytes without a copy
//! and sends large messages as fragments flushed one by one (see
//! `session::fragments_of`); the session task is spawned on the server's `TaskTracker`,
//! so that shutdown waits for it, where axum's `on_upgrade` spawns a task
//! nothing tracks (axum #3003); and the refusals keep their own statuses
//! and reasons (426 naming the version, a checked `Sec-WebSocket-Key`),
//! which axum's extractor words differently.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chat_protocol::{QUERY_OPT_IN, RoomName, SUBPROTOCOL_V2, UserName};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tracing::debug;

use crate::AppState;
use crate::access;
use crate::frames::Format;
use crate::layer::{Joined, Layer, LayerError, Resume};
use crate::limits::Refusal;
use crate::names::Identity;
use crate::rejection::{Rejection, parse_room_path};
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
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SocketQuery>, QueryRejection>,
    request: Request,
) -> Response {
    match accept_chat(&state, peer, path, query, request).await {
        Ok(response) => response,
        Err(rejection) => rejection.respond(&state),
    }
}

/// Checks a chat socket request, joins the room and answers the handshake;
/// the checks run in the order a client would fix them in.
async fn accept_chat(
    state: &AppState,
    peer: SocketAddr,
    path: Result<Path<String>, PathRejection>,
    query: Result<Query<SocketQuery>, QueryRejection>,
    request: Request,
) -> Result<Response, Rejection> {
    let headers = request.headers();
    // Access first: a stranger learns nothing else about the server.
    access::check_socket(state, headers, request.uri())?;
    let room = match path {
        Ok(Path(raw)) => parse_room_path(&raw)
            .map_err(|err| Rejection::bad_request("bad_room", err.to_string()))?,
        Err(err) => {
            let reason = format!("invalid room in the URL: {err}");
            return Err(Rejection::bad_request("bad_room", reason));
        }
    };
    if !query_is_utf8(request.uri()) {
        // Decoding it anyway would turn a name into U+FFFD look-alikes.
        let reason = "the query string (?name=...) is not valid UTF-8 once percent-decoded";
        return Err(Rejection::bad_request("bad_query", reason));
    }
    let Ok(Query(query)) = query else {
        let reason = "the query string could not be read";
        return Err(Rejection::bad_request("bad_query", reason));
    };
    let requested = match query.name.as_deref() {
        None | Some("") => None,
        Some(name) => Some(
            UserName::new(name)
                .map_err(|err| Rejection::bad_request("bad_name", err.to_string()))?,
        ),
    };
    let identity = match query.key.as_deref() {
        None | Some("") => Identity::anonymous(),
        Some(key) => Identity::from_key(key)
            .map_err(|err| Rejection::bad_request("bad_key", err.to_string()))?,
    };
    let since = match query.since.as_deref().map(str::parse::<u64>) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => {
            let reason = "since must be a message id (a whole number)";
            return Err(Rejection::bad_request("bad_query", reason));
        }
    };
    let key = handshake_key(headers)?;
    check_room_caps(state, &room)?;
    let ticket = state.admission().admit(peer.ip())?;
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
    let joined = join_as(
        state.layer(),
        &room,
        requested,
        &identity,
        format,
        resume,
        guest_name,
    )
    .await;
    let (user, joined) = joined.map_err(|err| match err {
        LayerError::NameTaken(taken) => {
            Rejection::new(StatusCode::CONFLICT, "name_taken", taken.to_string())
        }
        err => {
            debug!(%room, %err, "join failed");
            Rejection::from(Refusal::Unavailable)
        }
    })?;
    let response = switching_protocols(&key, offers_v2.then_some(SUBPROTOCOL_V2));
    let on_upgrade = hyper::upgrade::on(request);
    let pending = Box::new(session::Pending {
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
    Ok(response)
}

/// `GET /ws/echo`: echoes every message back, over the same socket
/// settings and close handling as the chat endpoint (for conformance
/// tests; only served with `--echo-endpoint`).
pub async fn ws_echo(State(state): State<AppState>, request: Request) -> Response {
    let key = match handshake_key(request.headers()) {
        Ok(key) => key,
        Err(rejection) => return rejection.respond(&state),
    };
    let response = switching_protocols(&key, None);
    let on_upgrade = hyper::upgrade::on(request);
    state.tracker().spawn(session::echo(
        on_upgrade,
        state.config().max_message_size,
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

/// Checks the WebSocket handshake headers and returns the client's key.
fn handshake_key(headers: &HeaderMap) -> Result<String, Rejection> {
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
        return Err(Rejection::bad_request("not_websocket", reason));
    }
    let version = headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .and_then(|v| v.to_str().ok());
    if version != Some("13") {
        let reason = "only WebSocket version 13 is supported";
        return Err(
            Rejection::new(StatusCode::UPGRADE_REQUIRED, "not_websocket", reason)
                .with_header(header::SEC_WEBSOCKET_VERSION, "13"),
        );
    }
    let mut keys = headers.get_all(header::SEC_WEBSOCKET_KEY).iter();
    let key = keys.next().and_then(|v| v.to_str().ok());
    match key {
        Some(key) if keys.next().is_none() && is_handshake_key(key) => Ok(key.to_owned()),
        _ => Err(Rejection::bad_request(
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

/// Joins `room` under the name the client asked for, or, when it asked for
/// none (the tutorial's clients never do), under a guest name from
/// `guest_name`: if that one is held in the room already, another is
/// tried, since a client that asked for no name must never be refused one.
async fn join_as(
    layer: &Layer,
    room: &RoomName,
    requested: Option<UserName>,
    identity: &Identity,
    format: Format,
    resume: Option<Resume>,
    mut guest_name: impl FnMut() -> UserName,
) -> Result<(UserName, Joined), LayerError> {
    let named_by_server = requested.is_none();
    let mut user = requested.unwrap_or_else(&mut guest_name);
    let mut tried = 1;
    loop {
        match layer
            .join(room, user.as_str(), identity, format, resume.clone())
            .await
        {
            Ok(joined) => return Ok((user, joined)),
            Err(LayerError::NameTaken(_)) if named_by_server && tried < GUEST_NAME_ATTEMPTS => {
                tried += 1;
                user = guest_name();
            }
            Err(err) => return Err(err),
        }
    }
}

/// How many guest names the server tries for a client that gave none,
/// before it reports the room's names as taken (with 16.7 million guest
/// names, a second clash in a row is already a one-in-a-billion event).
const GUEST_NAME_ATTEMPTS: u32 = 8;

/// A display name for a client that gave none.
fn guest_name() -> UserName {
    let name = format!("guest-{:06x}", fastrand::u32(..0x100_0000));
    #[allow(clippy::expect_used)] // "guest-" and six hex digits always satisfy the name rule
    UserName::new(name).expect("guest names are valid display names")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::layer::{HistoryLimits, MemoryLayer};
    use crate::metrics::HistoryMetrics;
    use crate::rooms::RoomRegistry;

    fn memory_layer() -> Layer {
        let limits = HistoryLimits {
            per_room: 10,
            bytes: usize::MAX,
            idle_rooms: 10,
        };
        let registry = Arc::new(RoomRegistry::new(64, usize::MAX));
        Layer::Memory(MemoryLayer::new(
            registry,
            limits,
            HistoryMetrics::default(),
        ))
    }

    fn name(text: &str) -> UserName {
        UserName::new(text).expect("a valid name")
    }

    /// A tutorial client gives no name; the guest name the server picks
    /// may already be someone's in the room (24 random bits: one clash in
    /// ~100,000 connections in rooms of 100, seen in bench/conns-100k.sh
    /// as a 409). The server then picks another instead of refusing.
    #[tokio::test]
    async fn a_guest_name_already_held_is_replaced_by_another_not_refused() {
        let layer = memory_layer();
        let room = RoomName::new("lobby").expect("a valid room");
        let held = Identity::anonymous();
        let (_, _first) = join_as(
            &layer,
            &room,
            Some(name("guest-000001")),
            &held,
            Format::Events,
            None,
            || unreachable!("a client that gave a name keeps it"),
        )
        .await
        .expect("the name is free");

        let mut picks = ["guest-000001", "guest-000001", "guest-000002"].into_iter();
        let (user, _second) = join_as(
            &layer,
            &room,
            None,
            &Identity::anonymous(),
            Format::Events,
            None,
            || name(picks.next().expect("a third pick is enough")),
        )
        .await
        .expect("a guest is never refused a name it did not ask for");
        assert_eq!(user.as_str(), "guest-000002");

        // A name the client asked for is refused, not replaced.
        let refused = join_as(
            &layer,
            &room,
            Some(name("guest-000001")),
            &Identity::anonymous(),
            Format::Events,
            None,
            || unreachable!("a client that gave a name keeps it"),
        )
        .await;
        assert!(matches!(refused, Err(LayerError::NameTaken(_))));
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
