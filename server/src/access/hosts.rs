//! Which `Host` names the server answers to, as Django's `ALLOWED_HOSTS`:
//! a defence against DNS rebinding, where a page of `evil.example` makes
//! its name resolve to this server and then reads it as its own origin.
//! The browser still sends `Host: evil.example`, which is refused.
//!
//! * `--allowed-host NAME` (repeatable): `chat.example.com` (any port),
//!   `chat.example.com:8443` (that port), `.example.com` (the domain and
//!   its subdomains), `*` (anything).
//! * Without the flag, bound to loopback: `localhost`, `127.0.0.1` and
//!   `[::1]`.
//! * Without the flag, bound elsewhere: IP addresses and `localhost`. A
//!   rebinding needs a name, so an address is safe; names must be listed
//!   (the start-up log says so).
//!
//! The defaults take any port: the browser always sends the port it
//! connected to, so a port in `Host` stops no rebinding, while an SSH
//! tunnel, a container's port mapping or a local proxy (`ssh -L
//! 9000:127.0.0.1:8000`) makes it differ from the server's own.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use axum::http::{HeaderMap, Uri, header};

/// A `Host` header, parsed: the name or address (lower case, no trailing
/// dot, IPv6 in brackets) and the port, if given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// `chat.example.com`, `127.0.0.1`, `[::1]`.
    pub name: String,
    /// The port, when the header names one.
    pub port: Option<u16>,
}

impl Host {
    /// Parses a `Host` header value (`name`, `name:port`, `[v6]:port`).
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        let (name, port) = if let Some(rest) = value.strip_prefix('[') {
            let (address, after) = rest.split_once(']')?;
            address.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after {
                "" => None,
                after => Some(after.strip_prefix(':')?),
            };
            (format!("[{address}]"), port)
        } else {
            match value.rsplit_once(':') {
                Some((name, port)) => (name.to_owned(), Some(port)),
                None => (value.to_owned(), None),
            }
        };
        let port = match port {
            Some(port) => Some(port.parse().ok()?),
            None => None,
        };
        let name = name.strip_suffix('.').unwrap_or(&name).to_ascii_lowercase();
        let valid = name.starts_with('[')
            || (!name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')));
        valid.then_some(Self { name, port })
    }

    /// Whether the name is an IP address (a rebinding needs a DNS name).
    fn is_address(&self) -> bool {
        self.name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok()
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// One entry of `--allowed-host`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pattern {
    /// A name, `.domain` (with its subdomains), or `*`.
    name: String,
    /// Only this port, when given.
    port: Option<u16>,
}

impl Pattern {
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim();
        if text == "*" {
            return Some(Self {
                name: "*".to_owned(),
                port: None,
            });
        }
        if let Some(domain) = text.strip_prefix('.') {
            let host = Host::parse(domain)?;
            return Some(Self {
                name: format!(".{}", host.name),
                port: host.port,
            });
        }
        let host = Host::parse(text)?;
        Some(Self {
            name: host.name,
            port: host.port,
        })
    }

    fn matches(&self, host: &Host, port: u16) -> bool {
        let name = &host.name;
        let name_matches = self.name == "*"
            || *name == self.name
            || self
                .name
                .strip_prefix('.')
                .is_some_and(|domain| name == domain || name.ends_with(&self.name));
        name_matches && self.port.is_none_or(|p| p == port)
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Why a request is not for this server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostRefusal {
    /// No `Host` header (HTTP/1.1 requires one).
    #[error("the request has no Host header")]
    Missing,
    /// More than one `Host` header.
    #[error("the request has more than one Host header")]
    Duplicate,
    /// Not `name[:port]`.
    #[error("the Host header {0:?} is not a host name")]
    Malformed(String),
    /// A name this server does not answer to.
    #[error(
        "this server does not answer to {host} (it answers to {allowed}); \
         the operator can add it with --allowed-host {name}"
    )]
    NotAllowed {
        /// The host asked for.
        host: Host,
        /// What is accepted, in words.
        allowed: String,
        /// The name to add.
        name: String,
    },
}

/// A `--allowed-host` entry that is not a host name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a host name: write e.g. chat.example.com, chat.example.com:8443, .example.com or *"
)]
pub struct BadPattern(String);

/// The `Host` names a server answers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHosts {
    rule: Rule,
    /// The port a `Host` without one means (80, or 443 with TLS).
    default_port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `--allowed-host`, or the loopback names.
    Listed(Vec<Pattern>),
    /// Bound beyond loopback without `--allowed-host`: IP addresses and
    /// `localhost`.
    AddressesAndLocalhost,
}

impl AllowedHosts {
    /// The hosts a server on `addr` answers to: `listed` (`--allowed-host`),
    /// or the defaults for that address; `tls` says which port a `Host`
    /// without one means.
    ///
    /// # Errors
    ///
    /// [`BadPattern`] for an entry that is not a host name.
    pub fn new(listed: &[String], addr: SocketAddr, tls: bool) -> Result<Self, BadPattern> {
        let default_port = if tls { 443 } else { 80 };
        if !listed.is_empty() {
            let patterns = listed
                .iter()
                .map(|text| Pattern::parse(text).ok_or_else(|| BadPattern(text.clone())))
                .collect::<Result<_, _>>()?;
            return Ok(Self {
                rule: Rule::Listed(patterns),
                default_port,
            });
        }
        let rule = if addr.ip().is_loopback() {
            let names = ["localhost", "127.0.0.1", "[::1]"];
            Rule::Listed(
                names
                    .iter()
                    .map(|name| Pattern {
                        name: (*name).to_owned(),
                        port: None,
                    })
                    .collect(),
            )
        } else {
            Rule::AddressesAndLocalhost
        };
        Ok(Self { rule, default_port })
    }

    /// Whether a request for `host` is for this server.
    pub fn allows(&self, host: &Host) -> bool {
        let port = host.port.unwrap_or(self.default_port);
        match &self.rule {
            Rule::Listed(patterns) => patterns.iter().any(|p| p.matches(host, port)),
            Rule::AddressesAndLocalhost => host.is_address() || host.name == "localhost",
        }
    }

    /// The host a request is for, if this server answers to it: its one
    /// `Host` header, and the authority of an absolute request target
    /// when there is one (which must be allowed too).
    ///
    /// # Errors
    ///
    /// Why not, for a 400 answer.
    pub fn check(&self, headers: &HeaderMap, uri: &Uri) -> Result<Host, HostRefusal> {
        let mut values = headers.get_all(header::HOST).iter();
        let value = values.next().ok_or(HostRefusal::Missing)?;
        if values.next().is_some() {
            return Err(HostRefusal::Duplicate);
        }
        let text = value.to_str().unwrap_or("");
        let host = Host::parse(text).ok_or_else(|| HostRefusal::Malformed(text.to_owned()))?;
        self.check_one(&host)?;
        if let Some(authority) = uri.authority() {
            let target = Host::parse(authority.as_str())
                .ok_or_else(|| HostRefusal::Malformed(authority.to_string()))?;
            self.check_one(&target)?;
        }
        Ok(host)
    }

    fn check_one(&self, host: &Host) -> Result<(), HostRefusal> {
        if self.allows(host) {
            return Ok(());
        }
        Err(HostRefusal::NotAllowed {
            host: host.clone(),
            allowed: self.describe(),
            name: host.name.clone(),
        })
    }

    /// What is accepted, in words, for the start-up log and refusals.
    pub fn describe(&self) -> String {
        match &self.rule {
            Rule::Listed(patterns) => patterns
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            Rule::AddressesAndLocalhost => "IP addresses and localhost (any port)".to_owned(),
        }
    }

    /// Whether every name is accepted, with or without the flag.
    pub fn is_any(&self) -> bool {
        matches!(&self.rule, Rule::Listed(p) if p.iter().any(|p| p.name == "*"))
    }

    /// Whether these are the defaults for an address beyond loopback (no
    /// `--allowed-host`): DNS names are refused until listed.
    pub fn names_need_listing(&self) -> bool {
        self.rule == Rule::AddressesAndLocalhost
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(text: &str) -> Host {
        Host::parse(text).unwrap()
    }

    fn allowed(listed: &[&str], addr: &str) -> AllowedHosts {
        let listed: Vec<String> = listed.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new(&listed, addr.parse().unwrap(), false).unwrap()
    }

    #[test]
    fn host_headers_parse_with_and_without_ports() {
        assert_eq!(
            host("Chat.Example.COM."),
            Host {
                name: "chat.example.com".into(),
                port: None
            }
        );
        assert_eq!(host("127.0.0.1:8000").port, Some(8000));
        assert_eq!(host("[::1]:8000").name, "[::1]");
        assert_eq!(host("[::1]").port, None);
        for bad in [
            "",
            ":80",
            "a b",
            "x:port",
            "[zz]:1",
            "x:99999",
            "evil.example/x",
            "[::1]x",
            "::1",
        ] {
            assert!(Host::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_request_has_one_allowed_host_and_an_allowed_target() {
        use axum::http::HeaderValue;
        let hosts = allowed(&[], "127.0.0.1:8000");
        let request = |values: &[&str], uri: &str| {
            let mut map = HeaderMap::new();
            for value in values {
                map.append(header::HOST, HeaderValue::from_str(value).unwrap());
            }
            hosts.check(&map, &uri.parse().unwrap())
        };
        assert_eq!(
            request(&["127.0.0.1:8000"], "/chat/").unwrap().port,
            Some(8000)
        );
        assert_eq!(request(&[], "/"), Err(HostRefusal::Missing));
        assert_eq!(
            request(&["127.0.0.1:8000", "evil.example"], "/"),
            Err(HostRefusal::Duplicate)
        );
        assert!(matches!(
            request(&["a b"], "/"),
            Err(HostRefusal::Malformed(_))
        ));
        let refused = request(&["evil.example:8000"], "/").unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("evil.example:8000") && text.contains("--allowed-host evil.example"),
            "{text}"
        );
        assert!(
            request(&["127.0.0.1:8000"], "http://evil.example:8000/chat/").is_err(),
            "an absolute target names the host too"
        );
    }

    #[test]
    fn loopback_defaults_are_the_loopback_names() {
        let hosts = allowed(&[], "127.0.0.1:8000");
        for ok in [
            "localhost:8000",
            "127.0.0.1:8000",
            "[::1]:8000",
            "LOCALHOST:8000",
            "localhost:9000",
            "localhost",
        ] {
            assert!(hosts.allows(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example:8000",
            "10.0.0.1:8000",
            "localhost.evil.example",
        ] {
            assert!(!hosts.allows(&host(refused)), "{refused}");
        }
    }

    #[test]
    fn beyond_loopback_names_must_be_listed() {
        let hosts = allowed(&[], "0.0.0.0:8000");
        assert!(hosts.names_need_listing());
        for ok in ["192.168.1.5:8000", "[fe80::1]", "localhost:1234"] {
            assert!(hosts.allows(&host(ok)), "{ok}");
        }
        assert!(!hosts.allows(&host("evil.example:8000")));
    }

    #[test]
    fn listed_hosts_are_names_domains_ports_or_anything() {
        let hosts = allowed(
            &["chat.example.com", ".example.org", "api.example.net:8443"],
            "0.0.0.0:8000",
        );
        for ok in [
            "chat.example.com",
            "chat.example.com:8000",
            "example.org",
            "a.b.example.org:1",
            "api.example.net:8443",
        ] {
            assert!(hosts.allows(&host(ok)), "{ok}");
        }
        for refused in [
            "evil.example",
            "notexample.org",
            "api.example.net",
            "api.example.net:8000",
            "192.168.1.5",
        ] {
            assert!(!hosts.allows(&host(refused)), "{refused}");
        }
        assert!(allowed(&["*"], "127.0.0.1:8000").allows(&host("evil.example")));
        assert!(allowed(&["*"], "127.0.0.1:8000").is_any());
        let listed = vec!["not a host".to_owned()];
        let err = AllowedHosts::new(&listed, "127.0.0.1:8000".parse().unwrap(), false).unwrap_err();
        assert!(err.to_string().contains("chat.example.com"), "{err}");
    }
}
