//! The one HTTP call a client makes: `GET /api/rooms`, the list of active
//! rooms that a room picker shows.

use http_body_util::{BodyExt, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use super::transport;
use super::{ClientError, ConnectOptions};
use crate::{RoomList, ServerUrl};

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
    let url = server.rooms_api_url();
    let (tls, timeout) = (options.tls_options(), options.connect_timeout());
    let fetch = async {
        let io = transport::connect(server, tls, timeout).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|err| ClientError::Http(format!("GET {url}: {err}")))?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::debug!(%err, "room list connection ended");
            }
        });
        let authority = match url.port() {
            Some(port) => format!("{}:{port}", server.host()),
            None => server.host().to_owned(),
        };
        let mut request = hyper::Request::get(url.path())
            .header(hyper::header::HOST, authority)
            .header(hyper::header::ACCEPT, "application/json");
        if let Some(token) = options.bearer_token() {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .body(Empty::<Bytes>::new())
            .map_err(|err| ClientError::Http(format!("GET {url}: {err}")))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| ClientError::Http(format!("GET {url}: {err}")))?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_BODY)
            .collect()
            .await
            .map_err(|err| ClientError::Http(format!("GET {url}: reading the body: {err}")))?
            .to_bytes();
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                reason: String::from_utf8_lossy(&body).trim().to_owned(),
            });
        }
        serde_json::from_slice::<RoomList>(&body)
            .map_err(|err| ClientError::Http(format!("GET {url}: not a room list: {err}")))
    };
    tokio::time::timeout(timeout, fetch)
        .await
        .map_err(|_| ClientError::Timeout {
            address: url.to_string(),
            after: timeout,
        })?
}
