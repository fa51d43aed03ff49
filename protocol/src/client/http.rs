//! The HTTP calls a client makes: `GET /api/rooms`, the list of active
//! rooms that a room picker shows, and `GET /api/rooms/<room>/messages`,
//! a page of a room's stored messages.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::transport;
use super::{ClientError, ConnectOptions};
use crate::{HistoryQuery, MessagePage, RoomList, RoomName, ServerUrl};

/// The largest room list accepted, in bytes.
const MAX_BODY: usize = 4 << 20;

/// Fetches the server's active rooms with their member counts, with the
/// TLS settings, timeout and token of `options`.
///
/// # Errors
///
/// A [`ClientError`] when the server cannot be reached, answers with an
/// error status (401 without a valid token), or sends something that is
/// not a room list.
pub async fn fetch_rooms(
    server: &ServerUrl,
    options: &ConnectOptions,
) -> Result<RoomList, ClientError> {
    get_json(server, server.rooms_api_url(), options, "a room list").await
}

/// Fetches one page of `room`'s stored messages (oldest first) over HTTP,
/// with the TLS settings, timeout and token of `options`.
///
/// # Errors
///
/// A [`ClientError`] when the server cannot be reached, refuses the query
/// ([`ClientError::Refused`] with status 400 and the reason), or sends
/// something that is not a page of messages.
pub async fn fetch_messages(
    server: &ServerUrl,
    room: &RoomName,
    query: &HistoryQuery,
    options: &ConnectOptions,
) -> Result<MessagePage, ClientError> {
    let mut url = server.messages_api_url(room);
    {
        let mut pairs = url.query_pairs_mut();
        if let Some(before) = query.before_id() {
            pairs.append_pair("before", &before.to_string());
        }
        if let Some(after) = query.after_id() {
            pairs.append_pair("after", &after.to_string());
        }
        pairs.append_pair("limit", &query.page_size().to_string());
        if let Some(search) = query.search_words() {
            pairs.append_pair("q", search.text());
        }
    }
    get_json(server, url, options, "a page of messages").await
}

/// An HTTP error: `reason` names the request and includes `source`'s text.
fn http_error(reason: String, source: impl Into<super::Cause>) -> ClientError {
    ClientError::Http {
        reason,
        source: source.into(),
    }
}

/// `GET url` and parse the JSON body as `T` (`what` names it in errors).
async fn get_json<T: serde::de::DeserializeOwned>(
    server: &ServerUrl,
    url: url::Url,
    options: &ConnectOptions,
    what: &str,
) -> Result<T, ClientError> {
    let (tls, timeout) = (options.tls_options(), options.connect_timeout());
    let fetch = async {
        let io = transport::connect(server, tls, timeout).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|err| http_error(format!("GET {url}: {err}"), err))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "room list connection ended");
            }
        });
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", server.host()),
            None => server.host().to_owned(),
        };
        let target = match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        };
        let mut request = hyper::Request::get(target)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = options.bearer_token() {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|err| http_error(format!("GET {url}: {err}"), err))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| http_error(format!("GET {url}: {err}"), err))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| http_error(format!("GET {url}: reading the body: {err}"), err))?
            .to_bytes();
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                reason: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        serde_json::from_slice::<T>(&body)
            .map_err(|err| http_error(format!("GET {url}: not {what}: {err}"), err))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::Timeout {
            address: url.to_string(),
            after: timeout,
        })?
}
