//! Where things live on a server: turning what a user types as the server
//! address into the socket, page and API URLs.
//!
//! A server address may be given as `http://`, `https://`, `ws://` or
//! `wss://`, with or without a path prefix (a server mounted under
//! `/chat-app/` behind a proxy), or as a bare `host:port`, which means
//! `ws://host:port`.

use std::fmt;

use url::Url;

use crate::RoomName;

/// Why a server address could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlError {
    /// The address does not parse as a URL.
    #[error("{input:?} is not a valid server address ({reason}); try ws://127.0.0.1:8000")]
    Invalid {
        /// What the user gave.
        input: String,
        /// What the URL parser said.
        reason: String,
    },
    /// The scheme is none of http, https, ws, wss.
    #[error("{input:?} uses the scheme {scheme:?}; use http://, https://, ws:// or wss://")]
    UnsupportedScheme {
        /// What the user gave.
        input: String,
        /// The refused scheme.
        scheme: String,
    },
    /// The address has no host.
    #[error("{input:?} has no host; try ws://127.0.0.1:8000")]
    MissingHost {
        /// What the user gave.
        input: String,
    },
    /// The address carries a query or fragment, which would be lost.
    #[error("{input:?} has a query or fragment; give only the server's base address")]
    QueryOrFragment {
        /// What the user gave.
        input: String,
    },
}

/// A server's base address, normalised: secure or not, host, port, and a
/// path prefix that ends with `/`.
///
/// ```
/// use chat_protocol::{RoomName, ServerUrl};
///
/// let server: ServerUrl = "https://example.com/apps/chat".parse()?;
/// let room = RoomName::new("lobby")?;
/// assert_eq!(server.socket_url(&room).as_str(), "wss://example.com/apps/chat/ws/chat/lobby/");
/// assert_eq!(server.page_url(&room).as_str(), "https://example.com/apps/chat/chat/lobby/");
/// assert_eq!(server.origin(), "https://example.com");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// The base as an `http(s)://host:port/prefix/` URL.
    http_base: Url,
}

impl ServerUrl {
    /// Parses a server address.
    ///
    /// # Errors
    ///
    /// A [`UrlError`] when the address cannot name a chat server.
    pub fn parse(input: &str) -> Result<Self, UrlError> {
        let trimmed = input.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("ws://{trimmed}")
        };
        let mut url = Url::parse(&with_scheme).map_err(|err| UrlError::Invalid {
            input: input.to_owned(),
            reason: err.to_string(),
        })?;
        let http_scheme = match url.scheme() {
            "http" | "ws" => "http",
            "https" | "wss" => "https",
            other => {
                return Err(UrlError::UnsupportedScheme {
                    input: input.to_owned(),
                    scheme: other.to_owned(),
                });
            }
        };
        if url.host_str().is_none_or(str::is_empty) {
            return Err(UrlError::MissingHost {
                input: input.to_owned(),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(UrlError::QueryOrFragment {
                input: input.to_owned(),
            });
        }
        // Switching between the special schemes http/https/ws/wss always
        // succeeds, and keeps an explicit port unless it is the new default.
        let port = url.port_or_known_default();
        url.set_scheme(http_scheme)
            .map_err(|()| UrlError::Invalid {
                input: input.to_owned(),
                reason: "bad scheme".into(),
            })?;
        url.set_port(port.filter(|p| Some(*p) != default_port(http_scheme)))
            .map_err(|()| UrlError::Invalid {
                input: input.to_owned(),
                reason: "bad port".into(),
            })?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Self { http_base: url })
    }

    /// Whether the server is reached over TLS (`https://` or `wss://`).
    pub fn is_secure(&self) -> bool {
        self.http_base.scheme() == "https"
    }

    /// The host name or address.
    pub fn host(&self) -> &str {
        self.http_base.host_str().unwrap_or_default()
    }

    /// The TCP port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.http_base.port_or_known_default().unwrap_or(80)
    }

    /// The path prefix the server is mounted under, ending with `/`.
    pub fn prefix(&self) -> &str {
        self.http_base.path()
    }

    /// The browser origin of the server, e.g. `http://127.0.0.1:8000`: what a
    /// page served by it would send as `Origin`.
    pub fn origin(&self) -> String {
        self.http_base.origin().ascii_serialization()
    }

    /// The WebSocket URL of a room: `ws(s)://host/prefix/ws/chat/<room>/`.
    pub fn socket_url(&self, room: &RoomName) -> Url {
        let mut url = self.join(&format!("ws/chat/{room}/"));
        let ws_scheme = if self.is_secure() { "wss" } else { "ws" };
        // http -> ws and https -> wss are always allowed by the url crate.
        let _ = url.set_scheme(ws_scheme);
        url
    }

    /// The browser page of a room: `http(s)://host/prefix/chat/<room>/`.
    pub fn page_url(&self, room: &RoomName) -> Url {
        self.join(&format!("chat/{room}/"))
    }

    /// The room list API: `http(s)://host/prefix/api/rooms`.
    pub fn rooms_api_url(&self) -> Url {
        self.join("api/rooms")
    }

    /// `GET` this for a page of a room's stored messages
    /// (`/api/rooms/<room>/messages`; add the query with
    /// [`crate::HistoryQuery`]'s parameters).
    pub fn messages_api_url(&self, room: &crate::RoomName) -> Url {
        self.join(&format!("api/rooms/{room}/messages"))
    }

    /// A path below the server's base, as an `http(s)://` URL.
    pub fn http_url(&self, path: &str) -> Url {
        self.join(path.trim_start_matches('/'))
    }

    fn join(&self, relative: &str) -> Url {
        // The base ends with '/' and `relative` is a plain relative path made
        // of validated parts, so joining cannot fail.
        self.http_base
            .join(relative)
            .unwrap_or_else(|_| self.http_base.clone())
    }
}

fn default_port(http_scheme: &str) -> Option<u16> {
    match http_scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl std::str::FromStr for ServerUrl {
    type Err = UrlError;
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for ServerUrl {
    /// Shows the address as a user would type it for a WebSocket client.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut url = self.http_base.clone();
        let _ = url.set_scheme(if self.is_secure() { "wss" } else { "ws" });
        let text = url.as_str();
        // Drop the prefix's closing '/', which `parse` adds back, but not
        // when another '/' precedes it: `parse` would not restore both.
        match text.strip_suffix('/') {
            Some(short) if !short.ends_with('/') => f.write_str(short),
            _ => f.write_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lobby() -> RoomName {
        RoomName::new("lobby").unwrap()
    }

    #[test]
    fn builds_socket_urls_from_every_scheme() {
        let cases = [
            ("ws://127.0.0.1:8000", "ws://127.0.0.1:8000/ws/chat/lobby/"),
            ("ws://127.0.0.1:8000/", "ws://127.0.0.1:8000/ws/chat/lobby/"),
            (
                "http://127.0.0.1:8000",
                "ws://127.0.0.1:8000/ws/chat/lobby/",
            ),
            ("https://chat.example", "wss://chat.example/ws/chat/lobby/"),
            (
                "wss://chat.example:8443",
                "wss://chat.example:8443/ws/chat/lobby/",
            ),
            (
                "wss://chat.example:443",
                "wss://chat.example/ws/chat/lobby/",
            ),
            ("http://h/prefix", "ws://h/prefix/ws/chat/lobby/"),
            ("https://h/a/b/", "wss://h/a/b/ws/chat/lobby/"),
            ("localhost:9000", "ws://localhost:9000/ws/chat/lobby/"),
            ("[::1]:8000", "ws://[::1]:8000/ws/chat/lobby/"),
            ("  ws://h  ", "ws://h/ws/chat/lobby/"),
        ];
        for (input, expected) in cases {
            let server = ServerUrl::parse(input).unwrap();
            assert_eq!(server.socket_url(&lobby()).as_str(), expected, "{input}");
        }
    }

    #[test]
    fn derives_origin_pages_and_api() {
        let server = ServerUrl::parse("ws://127.0.0.1:8000/p").unwrap();
        assert_eq!(server.origin(), "http://127.0.0.1:8000");
        assert_eq!(
            server.page_url(&lobby()).as_str(),
            "http://127.0.0.1:8000/p/chat/lobby/"
        );
        assert_eq!(
            server.rooms_api_url().as_str(),
            "http://127.0.0.1:8000/p/api/rooms"
        );
        assert_eq!(server.to_string(), "ws://127.0.0.1:8000/p");
        assert_eq!(server.port(), 8000);
        assert!(!server.is_secure());
        assert_eq!(ServerUrl::parse("wss://h").unwrap().port(), 443);
        assert_eq!(ServerUrl::parse("https://h").unwrap().origin(), "https://h");
    }

    #[test]
    fn refuses_unusable_addresses() {
        assert!(matches!(
            ServerUrl::parse("ftp://h"),
            Err(UrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            ServerUrl::parse("ws://"),
            Err(UrlError::Invalid { .. } | UrlError::MissingHost { .. })
        ));
        assert!(matches!(
            ServerUrl::parse("ws://h/?x=1"),
            Err(UrlError::QueryOrFragment { .. })
        ));
        assert!(matches!(
            ServerUrl::parse("http://h:99999"),
            Err(UrlError::Invalid { .. })
        ));
        let err = ServerUrl::parse("ftp://h").unwrap_err().to_string();
        assert!(err.contains("ws://"), "{err}");
    }
}
