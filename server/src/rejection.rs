//! A request refused before any work is done, and what every handler
//! reads the same way from a request (the room in the path, a query
//! parameter).
//!
//! A check returns `Result<_, Rejection>` and the handler composes the
//! checks with `?`, as axum's own extractors reject. The answer is the
//! status and the reason as plain text; [`Rejection::respond`] also counts
//! it in the metrics (`refusals{reason=label}`).

use axum::http::header::HeaderName;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chat_protocol::{RoomName, RoomNameError};
use tracing::debug;

use crate::AppState;
use crate::limits::Refusal;

/// A refusal: the HTTP status, the metrics label, the reason shown to the
/// client, and at most one header that tells the client what to do next.
#[derive(Debug)]
pub(crate) struct Rejection {
    status: StatusCode,
    label: &'static str,
    reason: String,
    header: Option<(HeaderName, HeaderValue)>,
}

impl Rejection {
    /// A refusal with `status`, counted under `label`.
    pub(crate) fn new(status: StatusCode, label: &'static str, reason: impl Into<String>) -> Self {
        Self {
            status,
            label,
            reason: reason.into(),
            header: None,
        }
    }

    /// A 400 counted under `label`.
    pub(crate) fn bad_request(label: &'static str, reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, label, reason)
    }

    /// Adds a header to the answer.
    pub(crate) fn with_header(mut self, name: HeaderName, value: &'static str) -> Self {
        self.header = Some((name, HeaderValue::from_static(value)));
        self
    }

    /// The metrics label.
    pub(crate) fn label(&self) -> &'static str {
        self.label
    }

    /// What the client is told.
    pub(crate) fn reason(&self) -> &str {
        &self.reason
    }

    /// Counts the refusal in the metrics and answers it.
    pub(crate) fn respond(self, state: &AppState) -> Response {
        state.metrics().refused(self.label);
        self.into_response()
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let status = self.status;
        debug!(%status, reason = self.reason, "refused a socket request");
        let mut response = (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("{}\n", self.reason),
        )
            .into_response();
        if let Some((name, value)) = self.header {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<Refusal> for Rejection {
    /// A limit reached: the client should not come back at once.
    fn from(refusal: Refusal) -> Self {
        let status =
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        Self::new(status, refusal.label(), refusal.to_string())
            .with_header(header::RETRY_AFTER, "5")
    }
}

/// The room from what follows `/ws/chat/` or `/chat/` (already
/// percent-decoded by the router), with one optional trailing slash.
///
/// # Errors
///
/// Which part of the room name rule the name breaks.
pub(crate) fn parse_room_path(raw: &str) -> Result<RoomName, RoomNameError> {
    let name = raw.strip_suffix('/').unwrap_or(raw);
    RoomName::new(name)
}

/// The first value of the query parameter `name` (decoded leniently: for
/// a token, which is compared, not shown).
pub(crate) fn query_param(uri: &Uri, name: &str) -> Option<String> {
    let query = uri.query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
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
        assert!(
            parse_room_path("</script>/")
                .unwrap_err()
                .to_string()
                .contains('<')
        );
    }
}
