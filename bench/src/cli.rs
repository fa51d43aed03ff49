//! The command line: the subcommands, the flags of the server under test
//! (each workload's own flags are its settings struct, flattened in), and
//! running a command to the text it prints.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Parser, Subcommand};

use crate::config::{Config, Server};
use crate::conns::{self, ConnsSettings};
use crate::fanout::{self, FanoutSettings};
use crate::report::Report;
use crate::secs::Secs;
use crate::soak::{self, SoakSettings};
use crate::testserver::TestServer;

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
    #[arg(long, global = true, env = "CHAT_BENCH_JSON")]
    pub json: bool,

    /// No progress line on stderr.
    #[arg(long, short, global = true, env = "CHAT_BENCH_QUIET")]
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
    /// Write SVG charts of the comparison (deliveries/s and CPU per delivery
    /// by workload, latency, memory per connection) from the same folder.
    Chart(ChartArgs),
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
    #[arg(long, env = "CHAT_BENCH_SETUP_TIMEOUT", default_value = "10")]
    pub setup_timeout: Secs,
}

/// `fanout` options.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub settings: FanoutSettings,
}

/// `conns` options.
#[derive(Debug, Args)]
pub struct ConnsArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub settings: ConnsSettings,
}

/// `soak` options.
#[derive(Debug, Args)]
pub struct SoakArgs {
    #[command(flatten)]
    pub target: TargetArgs,

    #[command(flatten)]
    pub settings: SoakSettings,
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

/// `chart` options.
#[derive(Debug, Args)]
pub struct ChartArgs {
    /// Folder of reports: DIR/<server>/<workload>-<run>.json.
    pub dir: PathBuf,

    /// Server order, ours first (colours and legend).
    #[arg(long, value_delimiter = ',', default_value = "chat-server")]
    pub servers: Vec<String>,

    /// Folder to write the charts into (default: DIR/charts).
    #[arg(long)]
    pub out: Option<PathBuf>,
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
        Command::Fanout(args) => {
            let sources = args.settings.sources;
            let config = config(&args.target, args.settings, sources, "r", progress)?;
            Report::Fanout(fanout::run(&config)?)
        }
        Command::Conns(args) => {
            let sources = args.settings.sources;
            let config = config(&args.target, args.settings, sources, "", progress)?;
            Report::Conns(conns::run(&config)?)
        }
        Command::Soak(args) => {
            let config = config(&args.target, args.settings, 0, "s", progress)?;
            Report::Soak(Box::new(soak::run(&config)?))
        }
        Command::Table(args) => {
            return crate::summary::table(&args.dir, &args.servers).map(|t| Some(Output::text(t)));
        }
        Command::Chart(args) => {
            let out = args.out.unwrap_or_else(|| args.dir.join("charts"));
            let written = crate::chart::charts(&args.dir, &args.servers, &out)?;
            let names: Vec<String> = written.iter().map(|p| p.display().to_string()).collect();
            return Ok(Some(Output::text(format!("{}\n", names.join("\n")))));
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

/// The server under test from `--url` and the other target flags:
/// address, `Host` header and default `Origin`, refusing anything but
/// loopback.
fn server(args: &TargetArgs) -> anyhow::Result<Server> {
    Ok(Server {
        target: crate::config::target(&args.url, args.origin.as_deref())?,
        url: args.url.clone(),
        pid: args.server_pid,
        setup_timeout: args.setup_timeout.get(),
    })
}

/// A fresh room-name prefix, so that runs never see each other's messages.
fn nonce() -> String {
    let mut s = String::from("b");
    for _ in 0..6 {
        s.push(fastrand::alphanumeric().to_ascii_lowercase());
    }
    s
}

/// The configuration of a run against `target` with `settings`; room names
/// start with a fresh prefix and `tag`.
///
/// # Errors
///
/// A bad URL, or source addresses asked for with an IPv6 server.
pub fn config<S>(
    target: &TargetArgs,
    settings: S,
    sources: u8,
    tag: &str,
    progress: bool,
) -> anyhow::Result<Config<S>> {
    let server = server(target)?;
    if sources > 0 && !server.target.addr.is_ipv4() {
        bail!("--sources needs an IPv4 server address");
    }
    Ok(Config {
        server,
        settings,
        room_prefix: format!("{}{tag}", nonce()),
        progress,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_setting_has_a_default() {
        assert_eq!(FanoutSettings::default().members, 1000);
        assert_eq!(ConnsSettings::default().hold.get(), Duration::from_secs(5));
        assert_eq!(SoakSettings::default().rooms, 50);
    }

    #[test]
    fn soak_runs_ten_minutes_unless_told_otherwise() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from([&["chat-bench", "soak"], args].concat())?;
            let Command::Soak(args) = cli.command else {
                unreachable!("parsed the soak subcommand");
            };
            Ok::<_, clap::Error>(
                config(&args.target, args.settings, 0, "s", false).map(|c| c.settings.duration()),
            )
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
        assert!(parse(&["--seconds", "-5"]).is_err());
        assert!(parse(&["--url", "ws://10.0.0.1:8000"]).unwrap().is_err());
    }

    fn target_args(url: &str) -> TargetArgs {
        TargetArgs {
            url: url.into(),
            origin: None,
            server_pid: None,
            setup_timeout: Secs::new(1.0).unwrap(),
        }
    }

    #[test]
    fn refuses_non_loopback_targets() {
        assert!(server(&target_args("ws://10.0.0.1:8000")).is_err());
    }

    #[test]
    fn default_origin_matches_the_host() {
        let t = server(&target_args("ws://127.0.0.1:9001")).unwrap().target;
        assert_eq!(t.host, "127.0.0.1:9001");
        assert_eq!(t.origin.as_deref(), Some("http://127.0.0.1:9001"));
    }
}
