//! What every workload is given: the server under test, the workload's own
//! settings (one struct per workload, which the command line fills, the
//! run reads and the report repeats), and what is fresh for each run.

use std::net::ToSocketAddrs as _;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, FromArgMatches};

use crate::wire::Target;

/// The server under test, as every workload reaches it.
#[derive(Debug, Clone)]
pub struct Server {
    /// Where to connect, with the `Host` and `Origin` headers.
    pub target: Target,
    /// The URL shown in reports (`ws://127.0.0.1:8000`).
    pub url: String,
    /// The server's PID: its CPU time and memory are read from `/proc`.
    pub pid: Option<u32>,
    /// Limit for one handshake (and for a warm-up or a welcome).
    pub setup_timeout: Duration,
}

/// One run of a workload with settings `S`.
#[derive(Debug, Clone)]
pub struct Config<S> {
    /// The server under test.
    pub server: Server,
    /// The workload's settings.
    pub settings: S,
    /// Prefix of the room names, fresh for each run so that runs never see
    /// each other's messages.
    pub room_prefix: String,
    /// Show a progress line on stderr.
    pub progress: bool,
}

/// The settings `S` as the command line leaves them when no flag is given
/// (environment variables `CHAT_BENCH_*` included): the single source of
/// every default, for `Default` implementations and tests.
///
/// # Panics
///
/// If a flag of `S` has no default; every flag has one (a unit test of each
/// workload's settings checks it).
pub fn defaults<S: Args + FromArgMatches>() -> S {
    let command = S::augment_args(clap::Command::new("defaults").no_binary_name(true));
    let matches = command
        .try_get_matches_from(std::iter::empty::<&str>())
        .expect("every flag has a default");
    S::from_arg_matches(&matches).expect("every flag has a default")
}

/// The first `count` loopback addresses 127.0.0.1, 127.0.0.2, …: each
/// gives its own ~28,000 ephemeral ports.
pub fn loopback_sources(count: u8) -> Vec<std::net::IpAddr> {
    (1..=count)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i).into())
        .collect()
}

/// The target of `url` (`ws://HOST:PORT`): its address, `Host` header and
/// `Origin` (`origin`; by default `http://HOST:PORT`; `"none"` sends none),
/// refusing anything but loopback.
///
/// # Errors
///
/// Not a `ws://` URL, an unknown host, or not a loopback address.
pub fn target(url: &str, origin: Option<&str>) -> anyhow::Result<Target> {
    let parsed = url::Url::parse(url).with_context(|| format!("bad URL {url}"))?;
    if parsed.scheme() != "ws" {
        bail!("the URL must be ws://HOST:PORT (got {url})");
    }
    let host = parsed.host_str().context("the URL has no host")?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let addr = (host.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    if !addr.ip().is_loopback() {
        bail!("load stays on loopback: {addr} is not a loopback address");
    }
    let host_header = format!("{host}:{port}");
    let origin = match origin {
        Some("none") => None,
        Some(origin) => Some(origin.to_owned()),
        None => Some(format!("http://{host_header}")),
    };
    Ok(Target {
        addr,
        host: host_header,
        origin,
    })
}
