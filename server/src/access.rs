//! Who may connect: the `Origin` check against cross-site WebSocket
//! hijacking, and the optional bearer token.
//!
//! The origin rule mirrors Channels' `AllowedHostsOriginValidator`: a
//! browser's upgrade is accepted when its `Origin` names this server (the
//! `Host` it asked for) or an origin on the allow-list; a client that sends
//! no `Origin` (terminals, scripts, bots) is not a browser page and is
//! accepted.

use axum::http::{HeaderMap, header};
use subtle::ConstantTimeEq;

/// The longest token accepted, in bytes.
pub const MAX_TOKEN_LEN: usize = 256;

/// Access rules.
#[derive(Clone, Default)]
pub struct Access {
    /// Check `Origin` on WebSocket upgrades.
    pub check_origin: bool,
    /// Origins accepted besides the server's own (`https://app.example`),
    /// lower case; `*` accepts any.
    pub allowed_origins: Vec<String>,
    /// Bearer tokens; empty: no token required.
    pub tokens: Vec<String>,
}

impl std::fmt::Debug for Access {
    /// Never prints the tokens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("check_origin", &self.check_origin)
            .field("allowed_origins", &self.allowed_origins)
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
            tokens: Vec::new(),
        }
    }

    /// Refuses a browser upgrade from a page of another site.
    ///
    /// # Errors
    ///
    /// The reason, for a 403 answer.
    pub fn check_origin(&self, headers: &HeaderMap) -> Result<(), String> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if !self.check_origin {
            return Ok(());
        }
        let origin = origin.to_str().unwrap_or("").trim().to_ascii_lowercase();
        if self
            .allowed_origins
            .iter()
            .any(|allowed| allowed == "*" || *allowed == origin)
        {
            return Ok(());
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let origin_host = origin
            .split_once("://")
            .map_or("", |(_, rest)| rest.trim_end_matches('/'));
        if !host.is_empty() && origin_host == host {
            return Ok(());
        }
        Err(format!(
            "cross-site WebSocket refused: the page's origin {origin:?} is not this server ({host:?}); \
             the operator can allow it with --allowed-origin"
        ))
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

/// Reads tokens from a file: one per line; blank lines and lines starting
/// with `#` are skipped.
///
/// # Errors
///
/// A message saying what is wrong with the file (never a token).
pub fn read_token_file(path: &std::path::Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the token file {}: {err}", path.display()))?;
    let tokens = parse_tokens(&text).map_err(|err| format!("{}: {err}", path.display()))?;
    if tokens.is_empty() {
        return Err(format!("the token file {} holds no token", path.display()));
    }
    Ok(tokens)
}

/// Tokens from text, one per line.
///
/// # Errors
///
/// When a token is too long or has spaces.
pub fn parse_tokens(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() > MAX_TOKEN_LEN || line.chars().any(char::is_whitespace) {
            return Err(format!(
                "line {}: a token is at most {MAX_TOKEN_LEN} bytes with no spaces",
                n + 1
            ));
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

    #[test]
    fn same_origin_and_no_origin_pass_others_do_not() {
        let access = Access::new();
        assert!(
            access
                .check_origin(&headers(&[("host", "127.0.0.1:8000")]))
                .is_ok()
        );
        assert!(
            access
                .check_origin(&headers(&[
                    ("host", "127.0.0.1:8000"),
                    ("origin", "http://127.0.0.1:8000")
                ]))
                .is_ok()
        );
        assert!(
            access
                .check_origin(&headers(&[
                    ("host", "Chat.Example"),
                    ("origin", "https://chat.example")
                ]))
                .is_ok()
        );
        let refused = access
            .check_origin(&headers(&[
                ("host", "127.0.0.1:8000"),
                ("origin", "http://evil.example"),
            ]))
            .unwrap_err();
        assert!(
            refused.contains("evil.example") && refused.contains("--allowed-origin"),
            "{refused}"
        );
        assert!(
            access
                .check_origin(&headers(&[("host", "h"), ("origin", "null")]))
                .is_err()
        );
        let allowed = Access {
            allowed_origins: vec!["http://evil.example".into()],
            ..Access::new()
        };
        assert!(
            allowed
                .check_origin(&headers(&[
                    ("host", "h"),
                    ("origin", "http://evil.example")
                ]))
                .is_ok()
        );
        let off = Access {
            check_origin: false,
            ..Access::new()
        };
        assert!(
            off.check_origin(&headers(&[
                ("host", "h"),
                ("origin", "http://evil.example")
            ]))
            .is_ok()
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
