//! Who may connect: the `Host` check against DNS rebinding (see
//! `hosts`), the `Origin` check against cross-site WebSocket hijacking,
//! and the optional bearer token.
//!
//! The origin rule mirrors Channels' `AllowedHostsOriginValidator`: a
//! browser's upgrade is accepted when its `Origin` is this server (the
//! scheme, host and port it asked for, exactly) or an origin on the
//! allow-list; a client that sends no `Origin` (terminals, scripts, bots)
//! is not a browser page and is accepted.
//!
//! The checks of a request against the server's rules are here too
//! (`check_socket`, `check_request_token`, `require_host`), each
//! refusing with a `Rejection`, for the socket endpoint and the pages.

mod hosts;

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::Response;
use subtle::ConstantTimeEq;

use crate::AppState;
use crate::rejection::{Rejection, query_param};

pub use hosts::{AllowedHosts, BadPattern, Host, HostRefusal};

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;

/// Access rules.
#[derive(Clone, Default)]
pub struct Access {
    /// Check `Origin` on WebSocket upgrades.
    pub check_origin: bool,
    /// Origins accepted besides the server's own (`https://app.example`);
    /// `*` accepts any.
    pub allowed_origins: Vec<String>,
    /// `Host` names accepted (`--allowed-host`); empty: the defaults for
    /// the address the server is bound to (see [`AllowedHosts`]).
    pub allowed_hosts: Vec<String>,
    /// Bearer tokens; empty: no token required.
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for Access {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("check_origin", &self.check_origin)
            .field("allowed_origins", &self.allowed_origins)
            .field("allowed_hosts", &self.allowed_hosts)
            .field("tokens", &format_args!("[{} hidden]", self.tokens.len()))
            .finish()
    }
}

impl Access {
    /// The default: origins checked, no token.
    pub fn new() -> Self {
        Self {
            check_origin: true,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            tokens: Vec::new(),
        }
    }

    /// Refuses a browser upgrade from a page of another site: its
    /// `Origin` must be this server exactly (scheme, host and port), as
    /// `host` (the request's `Host`) and `scheme` (`http`, or `https` with
    /// TLS or behind a proxy that says so) name it, or an allowed origin.
    ///
    /// # Errors
    ///
    /// Why not, for a 403 answer.
    pub fn check_origin(
        &self,
        headers: &HeaderMap,
        host: &Host,
        scheme: &str,
    ) -> Result<(), OriginRefusal> {
        let mut origins = headers.get_all(header::ORIGIN).iter();
        let Some(origin) = origins.next() else {
            return Ok(());
        };
        if origins.next().is_some() {
            return Err(OriginRefusal::Duplicate);
        }
        if !self.check_origin {
            return Ok(());
        }
        let text = origin.to_str().unwrap_or("").trim();
        let Some(origin) = Origin::parse(text) else {
            return Err(OriginRefusal::NotAnOrigin(text.to_owned()));
        };
        let allowed = self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || Origin::parse(allowed).as_ref() == Some(&origin));
        let own = Origin::of(scheme, host);
        if allowed || own.as_ref() == Some(&origin) {
            return Ok(());
        }
        Err(OriginRefusal::OtherSite {
            origin,
            server: own.map_or_else(|| host.to_string(), |own| own.to_string()),
        })
    }

    /// Whether a token is required.
    pub fn requires_token(&self) -> bool {
        !self.tokens.is_empty()
    }

    /// Checks the bearer token from `Authorization: Bearer ...` or the
    /// `token` query parameter, in constant time.
    ///
    /// # Errors
    ///
    /// The reason, for a 401 answer (never the token itself).
    pub fn check_token(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<(), &'static str> {
        if self.tokens.is_empty() {
            return Ok(());
        }
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let Some(given) = from_header.or(query_token) else {
            return Err(
                "this server requires a token: send Authorization: Bearer <token>, or add ?token=<token> to the URL",
            );
        };
        // Every configured token is compared, whatever matched, so the time
        // taken says nothing about which one (or how much of one) matched.
        let mut matched = subtle::Choice::from(0);
        for token in &self.tokens {
            matched |= constant_time_eq(given.as_bytes(), token.as_bytes());
        }
        if bool::from(matched) {
            Ok(())
        } else {
            Err("the token is not valid")
        }
    }
}

/// A browser origin, `scheme://host[:port]`, with its port made explicit
/// (the scheme's default when omitted), so that equal origins compare
/// equal however they are written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: &'static str,
    name: String,
    port: u16,
}

impl Origin {
    /// Parses an `Origin` value: `http` or `https`, a host, an optional
    /// port, nothing after (not even a `/`).
    pub fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.trim().split_once("://")?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "http" => "http",
            "https" => "https",
            _ => return None,
        };
        Self::of(scheme, &Host::parse(rest)?)
    }

    /// The origin of `host` served over `scheme` (`http` or `https`).
    fn of(scheme: &str, host: &Host) -> Option<Self> {
        let (scheme, default_port) = match scheme {
            "http" => ("http", 80),
            "https" => ("https", 443),
            _ => return None,
        };
        Some(Self {
            scheme,
            name: host.name.clone(),
            port: host.port.unwrap_or(default_port),
        })
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.name, self.port)
    }
}

/// Why a browser's upgrade was refused for its `Origin`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginRefusal {
    /// More than one `Origin` header: no browser sends that.
    #[error("more than one Origin header")]
    Duplicate,
    /// Not `http(s)://host[:port]`.
    #[error(
        "cross-site WebSocket refused: {0:?} is not a web origin (scheme://host[:port]); \
         the operator can allow an origin with --allowed-origin"
    )]
    NotAnOrigin(String),
    /// A page of another site.
    #[error(
        "cross-site WebSocket refused: the page's origin {origin} is not this server ({server}); \
         the operator can allow it with --allowed-origin"
    )]
    OtherSite {
        /// The page's origin.
        origin: Origin,
        /// This server, as the request named it.
        server: String,
    },
}

/// The token (401), host (400) and origin (403) checks of a socket
/// request.
///
/// # Errors
///
/// The first check that fails.
pub(crate) fn check_socket(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), Rejection> {
    check_request_token(state, headers, uri)?;
    let host = state
        .hosts()
        .check(headers, &Uri::default())
        .map_err(|refusal| Rejection::bad_request("bad_host", refusal.to_string()))?;
    state
        .config()
        .access
        .check_origin(headers, &host, state.scheme(headers))
        .map_err(|refusal| Rejection::new(StatusCode::FORBIDDEN, "origin", refusal.to_string()))
}

/// The token check (401), for sockets and pages alike: the token comes
/// from `Authorization: Bearer` or the `token` query parameter.
///
/// # Errors
///
/// No token, or not a valid one, when the server has tokens.
pub(crate) fn check_request_token(
    state: &AppState,
    headers: &HeaderMap,
    uri: &Uri,
) -> Result<(), Rejection> {
    let token = query_param(uri, "token");
    state
        .config()
        .access
        .check_token(headers, token.as_deref())
        .map_err(|reason| {
            Rejection::new(StatusCode::UNAUTHORIZED, "unauthorized", reason)
                .with_header(header::WWW_AUTHENTICATE, "Bearer")
        })
}

/// Refuses requests for a host this server does not answer to (400): DNS
/// rebinding.
pub(crate) async fn require_host(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match state.hosts().check(request.headers(), request.uri()) {
        Ok(_) => next.run(request).await,
        Err(refusal) => Rejection::bad_request("bad_host", refusal.to_string()).respond(&state),
    }
}

/// Compares two byte strings of up to [`MAX_TOKEN_LEN`] bytes without
/// branching on their contents or lengths.
fn constant_time_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    let mut left = [0u8; MAX_TOKEN_LEN];
    let mut right = [0u8; MAX_TOKEN_LEN];
    let a_len = a.len().min(MAX_TOKEN_LEN);
    let b_len = b.len().min(MAX_TOKEN_LEN);
    left[..a_len].copy_from_slice(&a[..a_len]);
    right[..b_len].copy_from_slice(&b[..b_len]);
    let same_len = (a.len() as u64).ct_eq(&(b.len() as u64));
    left.ct_eq(&right) & same_len
}

/// Why tokens could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token file cannot be read.
    #[error("cannot read the token file {}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// A line is not a token (never shows the line).
    #[error("line {line}: a token is at most {MAX_TOKEN_LEN} bytes with no spaces")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
    },
    /// A bad line in the token file.
    #[error("{}", path.display())]
    InFile {
        /// The file.
        path: std::path::PathBuf,
        /// Which line, and why.
        #[source]
        source: Box<TokenError>,
    },
    /// The token file has no token in it.
    #[error("the token file {} holds no token", path.display())]
    Empty {
        /// The file.
        path: std::path::PathBuf,
    },
}

/// Reads tokens from a file: one per line; blank lines and lines starting
/// with `#` are skipped.
///
/// # Errors
///
/// [`TokenError`], saying what is wrong with the file (never a token).
pub fn read_token_file(path: &std::path::Path) -> Result<Vec<String>, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.to_owned(),
        source,
    })?;
    let tokens = parse_tokens(&text).map_err(|err| TokenError::InFile {
        path: path.to_owned(),
        source: Box::new(err),
    })?;
    if tokens.is_empty() {
        return Err(TokenError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(tokens)
}

/// Tokens from text, one per line.
///
/// # Errors
///
/// [`TokenError::BadLine`] when a token is too long or has spaces.
pub fn parse_tokens(text: &str) -> Result<Vec<String>, TokenError> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_TOKEN_LEN || line.chars().any(char::is_whitespace) {
            return Err(TokenError::BadLine { line: n + 1 });
        }
        tokens.push(line.to_owned());
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn check(
        access: &Access,
        origin: &[&str],
        host: &str,
        scheme: &str,
    ) -> Result<(), OriginRefusal> {
        let mut map = HeaderMap::new();
        for origin in origin {
            map.append(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        access.check_origin(&map, &Host::parse(host).unwrap(), scheme)
    }

    #[test]
    fn the_origin_must_be_this_server_exactly() {
        let access = Access::new();
        assert!(
            check(&access, &[], "127.0.0.1:8000", "http").is_ok(),
            "no Origin: not a browser"
        );
        for same in ["http://127.0.0.1:8000", "HTTP://127.0.0.1:8000"] {
            assert!(
                check(&access, &[same], "127.0.0.1:8000", "http").is_ok(),
                "{same}"
            );
        }
        assert!(check(&access, &["https://chat.example"], "Chat.Example", "https").is_ok());
        assert!(
            check(
                &access,
                &["https://chat.example:443"],
                "chat.example",
                "https"
            )
            .is_ok()
        );
        for other in [
            "https://127.0.0.1:8000",
            "ws://127.0.0.1:8000",
            "evil://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1",
            "http://127.0.0.1:8001",
            "http://evil.example",
            "null",
        ] {
            assert!(
                check(&access, &[other], "127.0.0.1:8000", "http").is_err(),
                "{other}"
            );
        }
        let refused =
            check(&access, &["http://evil.example"], "127.0.0.1:8000", "http").unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("evil.example") && text.contains("--allowed-origin"),
            "{text}"
        );
        assert_eq!(
            check(
                &access,
                &["http://127.0.0.1:8000", "http://evil.example"],
                "127.0.0.1:8000",
                "http"
            ),
            Err(OriginRefusal::Duplicate)
        );
    }

    #[test]
    fn allowed_origins_and_the_switch_off() {
        let allowed = Access {
            allowed_origins: vec!["http://app.example".into()],
            ..Access::new()
        };
        assert!(check(&allowed, &["http://app.example"], "h", "http").is_ok());
        assert!(check(&allowed, &["http://app.example:80"], "h", "http").is_ok());
        assert!(check(&allowed, &["https://app.example"], "h", "http").is_err());
        let any = Access {
            allowed_origins: vec!["*".into()],
            ..Access::new()
        };
        assert!(check(&any, &["http://evil.example"], "h", "http").is_ok());
        let off = Access {
            check_origin: false,
            ..Access::new()
        };
        assert!(check(&off, &["http://evil.example"], "h", "http").is_ok());
        assert!(
            check(&off, &["http://a", "http://b"], "h", "http").is_err(),
            "two Origin headers are refused even so"
        );
    }

    #[test]
    fn tokens_come_from_the_header_or_the_query() {
        let access = Access {
            tokens: vec!["s3cret".into(), "other".into()],
            ..Access::new()
        };
        assert!(
            access
                .check_token(&headers(&[("authorization", "Bearer s3cret")]), None)
                .is_ok()
        );
        assert!(access.check_token(&headers(&[]), Some("other")).is_ok());
        assert!(access.check_token(&headers(&[]), Some("s3cre")).is_err());
        assert!(access.check_token(&headers(&[]), Some("s3cret!")).is_err());
        assert!(
            access
                .check_token(&headers(&[]), None)
                .unwrap_err()
                .contains("requires a token")
        );
        assert!(Access::new().check_token(&headers(&[]), None).is_ok());
        assert!(!format!("{access:?}").contains("s3cret"));
    }

    #[test]
    fn token_files_skip_comments_and_refuse_bad_lines() {
        assert_eq!(
            parse_tokens("# ops\nabc\n\n  def  \n").unwrap(),
            ["abc", "def"]
        );
        assert!(parse_tokens("has space\n").is_err());
        assert!(parse_tokens(&"x".repeat(300)).is_err());
    }
}
