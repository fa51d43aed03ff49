//! The command line: clap definitions and their conversion into the run
//! configurations of [`crate::fanout`] and [`crate::conns`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand};

use crate::conns::{self, ConnsConfig};
use crate::fanout::{self, FanoutConfig};
use crate::report::Report;
use crate::soak::{self, SoakConfig};
use crate::testserver::TestServer;
use crate::wire::Target;

/// Load generator for servers of the chat room protocol
/// (ws://HOST:PORT/ws/chat/<room>/, {"message": text}).
///
/// Measures any server of the protocol with the same code: our chat-server,
/// Node ws, Python websockets, Django Channels. Traffic stays on loopback;
/// every run is bounded in count and time. A progress line goes to stderr,
/// the report to stdout (a table, or JSON with --json).
#[derive(Debug, Parser)]
#[command(name = "chat-bench", version, max_term_width = 100)]
pub struct Cli {
    /// Print the report as one JSON object instead of a table.
    #[arg(long, global = true)]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short, global = true)]
    pub quiet: bool,

    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fan-out: R rooms × M members, S senders, N messages in all, as fast as
    /// the in-flight window allows or at a fixed rate. Reports deliveries per
    /// second, latency percentiles, lost / duplicated / out-of-order
    /// deliveries, errors, and with --server-pid the server's CPU time per
    /// delivery and RSS.
    Fanout(FanoutArgs),
    /// Idle connections: open C, hold them, then prove each still receives.
    /// Reports the open rate and with --server-pid the server's RSS before and
    /// after (per connection).
    Conns(ConnsArgs),
    /// Soak test of chat-server: for a bounded time, well-behaved clients
    /// (some churning between random rooms), slow clients that stop reading
    /// and abusive ones (floods, malformed, binary, oversize frames).
    /// Reports messages lost among the well-behaved (exactly), disconnects
    /// by reason, and the server's RSS over time with a "flat once warm"
    /// verdict; exits with status 1 if anything failed.
    Soak(SoakArgs),
    /// Print the comparison table (Markdown) from a folder of --json reports
    /// laid out as DIR/<server>/<workload>-<run>.json (what compare.sh writes).
    Table(TableArgs),
    /// Run chat-bench's own reference broadcast server (for trying the tool).
    Serve(ServeArgs),
    /// Internal: one worker process of `conns`.
    #[command(hide = true)]
    ConnsWorker {
        /// The worker's spec, as JSON.
        spec: String,
    },
}

/// The server under test.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The server's base URL; must be a loopback address.
    #[arg(long, env = "CHAT_BENCH_URL", default_value = "ws://127.0.0.1:8000")]
    pub url: String,

    /// Origin header to send (Django Channels refuses a handshake without a
    /// matching one). Default: http://HOST:PORT of --url. "none" sends none.
    #[arg(long, env = "CHAT_BENCH_ORIGIN")]
    pub origin: Option<String>,

    /// PID of the server process: its CPU time (utime+stime) and RSS are
    /// read from /proc/PID and reported.
    #[arg(long, env = "CHAT_BENCH_SERVER_PID")]
    pub server_pid: Option<u32>,

    /// Seconds allowed for one handshake and for the warm-up.
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub setup_timeout: f64,
}

/// `fanout` options.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Rooms (R).
    #[arg(long, short = 'r', default_value_t = 1)]
    pub rooms: u32,

    /// Members per room (M), senders included.
    #[arg(long, short = 'm', default_value_t = 1000)]
    pub members: u32,

    /// Senders (S), spread round-robin over the rooms; each is also a member.
    /// Default: one per room.
    #[arg(long, short = 's')]
    pub senders: Option<u32>,

    /// Messages in all (N), split evenly over the senders.
    #[arg(long, short = 'n', default_value_t = 10_000)]
    pub messages: u64,

    /// Send at this many messages per second in all (e.g. 10000), instead of
    /// as fast as the window allows.
    #[arg(long, value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,

    /// Messages a sender may have in flight (sent, own copy not back yet).
    #[arg(long, short = 'w', default_value_t = 16)]
    pub window: u32,

    /// Message text length in bytes (the sender id, sequence number and
    /// timestamp, padded).
    #[arg(long, default_value_t = 64)]
    pub size: usize,

    /// Load-generator threads (each a single-threaded runtime).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,

    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Spread connections over this many source addresses 127.0.0.1,
    /// 127.0.0.2, …; 0 lets the kernel choose.
    #[arg(long, default_value_t = 0)]
    pub sources: u8,

    /// Longest time the senders send, seconds; what they sent by then is
    /// still awaited and checked.
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub max_time: f64,

    /// After the last send, stop when nothing arrived for this long, seconds
    /// (what is missing then is counted lost).
    #[arg(long, default_value_t = 2.0, value_name = "SECS")]
    pub drain: f64,

    /// Poll the sockets in a busy loop instead of sleeping in epoll_wait.
    /// A sleeping load generator must be woken for every segment, and on
    /// loopback that wake-up is charged to the server's CPU time; busy
    /// polling keeps the server's figures its own but keeps each
    /// load-generator thread 100 % busy (its CPU figure then means nothing).
    #[arg(long)]
    pub busy_poll: bool,

    /// Batch reads: stall the load-generator thread this many microseconds
    /// between rounds of reads, so that frames pile up in the sockets.
    /// Against servers that write each frame separately it saves a wake-up
    /// and a read per delivery (on loopback the wake-up is charged to the
    /// server). Adds up to the interval to latencies: for throughput runs.
    #[arg(long, value_name = "MICROS")]
    pub read_interval: Option<u64>,
}

/// `conns` options.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Connections to open (C).
    #[arg(long, short = 'c', default_value_t = 1000)]
    pub connections: u64,

    /// Connections per room.
    #[arg(long, default_value_t = 100)]
    pub room_size: u32,

    /// Most connections one worker process holds; more connections use more
    /// worker processes (each under the file-descriptor limit, which
    /// chat-bench raises to the hard limit).
    #[arg(long, default_value_t = 10_000)]
    pub per_worker: u64,

    /// Spread connections over this many source addresses 127.0.0.1,
    /// 127.0.0.2, … (each offers ~28,000 ephemeral ports).
    #[arg(long, default_value_t = 4)]
    pub sources: u8,

    /// Seconds to hold the connections idle before the probe.
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub hold: f64,

    /// Seconds allowed for every connection to receive the probe.
    #[arg(long, default_value_t = 30.0, value_name = "SECS")]
    pub probe_timeout: f64,

    /// Handshakes in progress at once, per worker.
    #[arg(long, default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Run a single worker as a thread of this process instead of a worker
    /// process (only when the connections fit in one worker).
    #[arg(long)]
    pub in_process: bool,
}

/// `soak` options.
#[derive(Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    /// Run for this many minutes (the default is 10).
    #[arg(long, conflicts_with = "seconds")]
    pub minutes: Option<f64>,

    /// Run for this many seconds instead.
    #[arg(long)]
    pub seconds: Option<f64>,

    /// Rooms of well-behaved clients (R).
    #[arg(long, default_value_t = 50)]
    pub rooms: u32,

    /// Well-behaved members per room at the start (M).
    #[arg(long, default_value_t = 4)]
    pub members: u32,

    /// Fraction of the well-behaved members that leave and rejoin random
    /// rooms.
    #[arg(long, default_value_t = 0.25)]
    pub churn: f64,

    /// Average stay of a churning member in a room, seconds (each stay is
    /// 0.5 to 1.5 times this).
    #[arg(long, default_value_t = 5.0, value_name = "SECS")]
    pub churn_every: f64,

    /// Slowest sending rate of a well-behaved member, messages per second.
    #[arg(long, default_value_t = 1.0)]
    pub rate_min: f64,

    /// Fastest sending rate of a well-behaved member (each session picks a
    /// rate in between; intervals are jittered ±50 %).
    #[arg(long, default_value_t = 5.0)]
    pub rate_max: f64,

    /// Message text size in ordinary rooms, bytes.
    #[arg(long, default_value_t = 100)]
    pub size: usize,

    /// Busy rooms: the first rooms, whose members send --busy-size messages
    /// and where the slow clients go.
    #[arg(long, default_value_t = 3)]
    pub busy_rooms: u32,

    /// Message text size in busy rooms, bytes.
    #[arg(long, default_value_t = 2048)]
    pub busy_size: usize,

    /// Slow clients (they never read) at any time.
    #[arg(long, default_value_t = 4)]
    pub slow: u32,

    /// Longest a slow client waits to be dropped before it counts as not
    /// closed (a failure); above the server's --write-timeout.
    #[arg(long, default_value_t = 120.0, value_name = "SECS")]
    pub slow_max_stall: f64,

    /// Abusive clients at any time (each goes through every kind of abuse).
    #[arg(long, default_value_t = 7)]
    pub abusers: u32,

    /// Longest a flood waits to be closed (the server closes a plain
    /// flooder after 30 s of flooding).
    #[arg(long, default_value_t = 60.0, value_name = "SECS")]
    pub abuse_timeout: f64,

    /// Load-generator runtime threads.
    #[arg(long, default_value_t = 2)]
    pub threads: usize,

    /// Do not read the server's /metrics and /healthz.
    #[arg(long)]
    pub no_metrics: bool,

    /// Step of the reported RSS series, seconds (default: about 30 points).
    #[arg(long, value_name = "SECS")]
    pub rss_every: Option<f64>,

    /// RSS growth allowed from the middle third's peak to the last third's,
    /// percent (plus --rss-slack-mib).
    #[arg(long, default_value_t = 10.0, value_name = "PERCENT")]
    pub rss_tolerance: f64,

    /// RSS growth allowed on top of --rss-tolerance, MiB.
    #[arg(long, default_value_t = 2.0, value_name = "MIB")]
    pub rss_slack_mib: f64,
}

/// `table` options.
#[derive(Debug, Args)]
pub struct TableArgs {
    /// Folder of reports: DIR/<server>/<workload>-<run>.json.
    pub dir: PathBuf,

    /// Column order, ours first; ratios are the first against each other.
    #[arg(long, value_delimiter = ',', default_value = "chat-server")]
    pub servers: Vec<String>,
}

/// `serve` options.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (loopback).
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub addr: SocketAddr,

    /// Runtime threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// What a command prints on stdout, and what failed (a soak's verdict).
#[derive(Debug, Clone)]
pub struct Output {
    /// The report.
    pub text: String,
    /// Checks that failed; the binary exits with status 1 if any.
    pub failures: Vec<String>,
}

impl Output {
    fn text(text: String) -> Self {
        Self {
            text,
            failures: Vec::new(),
        }
    }
}

/// Runs the command; returns what to print on stdout.
///
/// # Errors
///
/// Bad arguments, a server that cannot be reached, or a failed run.
pub fn run(cli: Cli) -> anyhow::Result<Option<Output>> {
    let progress = !cli.quiet;
    let report = match cli.command {
        Command::Fanout(args) => Report::Fanout(fanout::run(&fanout_config(&args, progress)?)?),
        Command::Conns(args) => Report::Conns(conns::run(&conns_config(&args, progress)?)?),
        Command::Soak(args) => Report::Soak(Box::new(soak::run(&soak_config(&args, progress)?)?)),
        Command::Table(args) => {
            return crate::summary::table(&args.dir, &args.servers).map(|t| Some(Output::text(t)));
        }
        Command::Serve(args) => {
            if !args.addr.ip().is_loopback() {
                bail!("serve listens on loopback only");
            }
            let server = TestServer::start_on(args.addr, Vec::new(), args.threads)?;
            tracing::info!(addr = %server.addr(), "reference server listening");
            eprintln!("chat-bench reference server on ws://{}", server.addr());
            server.wait();
            return Ok(None);
        }
        Command::ConnsWorker { spec } => {
            conns::worker_main(&spec)?;
            return Ok(None);
        }
    };
    let text = if cli.json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        text
    } else {
        report.to_table()
    };
    let failures = match &report {
        Report::Soak(r) => r.failures.clone(),
        Report::Fanout(_) | Report::Conns(_) => Vec::new(),
    };
    Ok(Some(Output { text, failures }))
}

/// The server's address, `Host` header and default `Origin` from `--url`,
/// refusing anything but loopback.
fn target(args: &TargetArgs) -> anyhow::Result<Target> {
    let url = url::Url::parse(&args.url).with_context(|| format!("bad --url {}", args.url))?;
    if url.scheme() != "ws" {
        bail!("--url must be ws://HOST:PORT (got {})", url.scheme());
    }
    let host = url.host_str().context("--url has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let addr = (host.trim_matches(|c| c == '[' || c == ']'), port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .next()
        .with_context(|| format!("{host} has no address"))?;
    if !addr.ip().is_loopback() {
        bail!("load stays on loopback: {addr} is not a loopback address");
    }
    let host_header = format!("{host}:{port}");
    let origin = match args.origin.as_deref() {
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

fn sources(count: u8) -> Vec<IpAddr> {
    (1..=count)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, i)))
        .collect()
}

/// A fresh room-name prefix, so that runs never see each other's messages.
fn nonce() -> String {
    let mut s = String::from("b");
    for _ in 0..6 {
        s.push(fastrand::alphanumeric().to_ascii_lowercase());
    }
    s
}

fn secs(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .with_context(|| format!("{flag} must be a non-negative number of seconds"))
}

/// The fan-out configuration of `args`.
///
/// # Errors
///
/// A bad URL or duration.
pub fn fanout_config(args: &FanoutArgs, progress: bool) -> anyhow::Result<FanoutConfig> {
    let target = target(&args.target)?;
    if args.sources > 0 && !target.addr.is_ipv4() {
        bail!("--sources needs an IPv4 server address");
    }
    Ok(FanoutConfig {
        target,
        url: args.target.url.clone(),
        room_prefix: format!("{}r", nonce()),
        rooms: args.rooms,
        members: args.members,
        senders: args.senders.unwrap_or(args.rooms),
        messages: args.messages,
        rate: args.rate,
        window: args.window,
        size: args.size,
        threads: args.threads,
        connect_concurrency: args.connect_concurrency,
        sources: sources(args.sources),
        server_pid: args.target.server_pid,
        max_time: secs(args.max_time, "--max-time")?,
        drain: secs(args.drain, "--drain")?,
        setup_timeout: secs(args.target.setup_timeout, "--setup-timeout")?,
        progress,
        busy_poll: args.busy_poll,
        read_interval: args
            .read_interval
            .filter(|&us| us > 0)
            .map(Duration::from_micros),
    })
}

/// The `conns` configuration of `args`.
///
/// # Errors
///
/// A bad URL or duration, or no way to find this executable for workers.
pub fn conns_config(args: &ConnsArgs, progress: bool) -> anyhow::Result<ConnsConfig> {
    let target = target(&args.target)?;
    if args.sources > 0 && !target.addr.is_ipv4() {
        bail!("--sources needs an IPv4 server address");
    }
    let worker_exe = if args.in_process {
        None
    } else {
        Some(std::env::current_exe().context("finding the chat-bench executable for workers")?)
    };
    Ok(ConnsConfig {
        target,
        url: args.target.url.clone(),
        room_prefix: nonce(),
        connections: args.connections,
        room_size: args.room_size,
        per_worker: args.per_worker,
        sources: sources(args.sources),
        hold: secs(args.hold, "--hold")?,
        probe_timeout: secs(args.probe_timeout, "--probe-timeout")?,
        setup_timeout: secs(args.target.setup_timeout, "--setup-timeout")?,
        connect_concurrency: args.connect_concurrency,
        server_pid: args.target.server_pid,
        worker_exe,
        progress,
    })
}

/// The soak configuration of `args`.
///
/// # Errors
///
/// A bad URL, duration or percentage.
pub fn soak_config(args: &SoakArgs, progress: bool) -> anyhow::Result<SoakConfig> {
    let duration = match (args.minutes, args.seconds) {
        (_, Some(secs_value)) => secs(secs_value, "--seconds")?,
        (Some(minutes), None) => secs(minutes * 60.0, "--minutes")?,
        (None, None) => Duration::from_secs(600),
    };
    if !(args.rss_tolerance >= 0.0 && args.rss_slack_mib >= 0.0) {
        bail!("--rss-tolerance and --rss-slack-mib must not be negative");
    }
    Ok(SoakConfig {
        target: target(&args.target)?,
        url: args.target.url.clone(),
        room_prefix: format!("{}s", nonce()),
        duration,
        rooms: args.rooms,
        members: args.members,
        churn: args.churn,
        churn_every: secs(args.churn_every, "--churn-every")?,
        rate_min: args.rate_min,
        rate_max: args.rate_max,
        size: args.size,
        busy_rooms: args.busy_rooms,
        busy_size: args.busy_size,
        slow: args.slow,
        slow_max_stall: secs(args.slow_max_stall, "--slow-max-stall")?,
        abusers: args.abusers,
        abuse_timeout: secs(args.abuse_timeout, "--abuse-timeout")?,
        threads: args.threads,
        server_pid: args.target.server_pid,
        metrics: !args.no_metrics,
        rss_every: args.rss_every.map(|s| secs(s, "--rss-every")).transpose()?,
        rss_tolerance: args.rss_tolerance / 100.0,
        // Whole bytes; a fraction of a byte does not matter.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        rss_slack: (args.rss_slack_mib * 1024.0 * 1024.0) as u64,
        setup_timeout: secs(args.target.setup_timeout, "--setup-timeout")?,
        progress,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn soak_runs_ten_minutes_unless_told_otherwise() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["chat-bench", "soak"], args].concat())?;
            let Command::Soak(args) = cli.command else {
                unreachable!("parsed the soak subcommand");
            };
            Ok::<_, clap::Error>(soak_config(&args, false).map(|c| c.duration))
        };
        assert_eq!(parse(&[]).unwrap().unwrap(), Duration::from_secs(600));
        assert_eq!(
            parse(&["--minutes", "1.5"]).unwrap().unwrap(),
            Duration::from_secs(90)
        );
        assert_eq!(
            parse(&["--seconds", "60"]).unwrap().unwrap(),
            Duration::from_secs(60)
        );
        assert!(parse(&["--minutes", "1", "--seconds", "5"]).is_err());
        assert!(parse(&["--url", "ws://10.0.0.1:8000"]).unwrap().is_err());
    }

    #[test]
    fn refuses_non_loopback_targets() {
        let args = TargetArgs {
            url: "ws://10.0.0.1:8000".into(),
            origin: None,
            server_pid: None,
            setup_timeout: 1.0,
        };
        assert!(target(&args).is_err());
    }

    #[test]
    fn default_origin_matches_the_host() {
        let args = TargetArgs {
            url: "ws://127.0.0.1:9001".into(),
            origin: None,
            server_pid: None,
            setup_timeout: 1.0,
        };
        let t = target(&args).unwrap();
        assert_eq!(t.host, "127.0.0.1:9001");
        assert_eq!(t.origin.as_deref(), Some("http://127.0.0.1:9001"));
    }
}
