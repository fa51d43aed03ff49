//! The `conns` workload: C idle connections, held, then proven alive.
//!
//! The connections are spread over rooms of `room_size` members, over
//! several loopback source addresses (each gives its own ~28,000 ephemeral
//! ports) and, past what one process may hold, over several worker
//! processes ([`worker`]), each under the file-descriptor limit. The run:
//!
//! 1. sample the server's RSS; start the workers, which open their
//!    connections in parallel (a bounded number of handshakes each);
//! 2. hold every connection idle for the hold time, then sample the
//!    server's RSS again;
//! 3. probe: one member of each room sends a message, and each connection
//!    must receive it, which proves it is still alive and subscribed;
//! 4. close everything and report.

pub mod worker;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::procstat;
use crate::progress::Progress;
use crate::report::ConnsReport;
use crate::secs::Secs;
use worker::{Command, Event, WorkerSpec};

/// A `conns` run: the server, the [`ConnsSettings`], a fresh room prefix.
pub type ConnsConfig = Config<ConnsSettings>;

/// The shape of a `conns` run: what `chat-bench conns` takes on its command
/// line, what the run and its workers follow, and what its report repeats.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct ConnsSettings {
    /// Connections to open (C).
    #[arg(
        long,
        short = 'c',
        env = "CHAT_BENCH_CONNECTIONS",
        default_value_t = 1000
    )]
    pub connections: u64,

    /// Connections per room.
    #[arg(long, env = "CHAT_BENCH_ROOM_SIZE", default_value_t = 100)]
    pub room_size: u32,

    /// Most connections one worker process holds; more connections use more
    /// worker processes (each under the file-descriptor limit, which
    /// chat-bench raises to the hard limit).
    #[arg(long, env = "CHAT_BENCH_PER_WORKER", default_value_t = 10_000)]
    pub per_worker: u64,

    /// Spread connections over this many source addresses 127.0.0.1,
    /// 127.0.0.2, … (each offers ~28,000 ephemeral ports).
    #[arg(long, env = "CHAT_BENCH_SOURCES", default_value_t = 4)]
    pub sources: u8,

    /// Seconds to hold the connections idle before the probe.
    #[arg(long, env = "CHAT_BENCH_HOLD", default_value = "5")]
    pub hold: Secs,

    /// Seconds allowed for every connection to receive the probe.
    #[arg(long, env = "CHAT_BENCH_PROBE_TIMEOUT", default_value = "30")]
    pub probe_timeout: Secs,

    /// Handshakes in progress at once, per worker.
    #[arg(long, env = "CHAT_BENCH_CONNECT_CONCURRENCY", default_value_t = 128)]
    pub connect_concurrency: usize,

    /// Run a single worker as a thread of this process instead of a worker
    /// process (only when the connections fit in one worker).
    #[arg(long, env = "CHAT_BENCH_IN_PROCESS")]
    pub in_process: bool,

    /// More servers to spread the connections over, round-robin with
    /// --url (instances sharing rooms through Redis: every room then has
    /// members on each, and its probe crosses instances). Repeat the flag
    /// or separate URLs with commas.
    #[arg(long, env = "CHAT_BENCH_EXTRA_URL", value_delimiter = ',')]
    pub extra_url: Vec<String>,

    /// PIDs of the --extra-url servers: their RSS is added to
    /// --server-pid's for the memory per connection.
    #[arg(long, env = "CHAT_BENCH_EXTRA_SERVER_PID", value_delimiter = ',')]
    pub extra_server_pid: Vec<u32>,

    /// The executable of the worker processes (tests give the binary's
    /// path; by default, this executable).
    #[arg(skip)]
    #[serde(skip)]
    pub worker_exe: Option<PathBuf>,
}

impl Default for ConnsSettings {
    fn default() -> Self {
        crate::config::defaults()
    }
}

/// A running worker and the way to send it commands.
enum Handle {
    Process { child: Child, stdin: ChildStdin },
    Thread(mpsc::UnboundedSender<Command>, std::thread::JoinHandle<()>),
}

impl Handle {
    fn send(&mut self, command: Command) -> anyhow::Result<()> {
        match self {
            Self::Process { stdin, .. } => {
                let line = serde_json::to_string(&command)?;
                writeln!(stdin, "{line}").context("writing to a worker")?;
                stdin.flush().context("writing to a worker")?;
            }
            Self::Thread(tx, _) => {
                tx.send(command).ok().context("worker thread is gone")?;
            }
        }
        Ok(())
    }

    /// Waits for the worker to end (after `Close`); a process that does not
    /// exit within 10 s is killed, by its own handle.
    fn finish(self) {
        match self {
            Self::Process { mut child, stdin } => {
                drop(stdin);
                let deadline = Instant::now() + Duration::from_secs(10);
                loop {
                    match child.try_wait() {
                        Ok(Some(_)) => break,
                        Ok(None) if Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        _ => {
                            let _ = child.kill();
                            let _ = child.wait();
                            break;
                        }
                    }
                }
            }
            Self::Thread(tx, thread) => {
                drop(tx);
                let _ = thread.join();
            }
        }
    }
}

/// Runs one `conns` workload and reports it.
///
/// # Errors
///
/// Bad configuration, a worker that could not start or stopped talking, or
/// an unreadable server `/proc` entry.
pub fn run(config: &ConnsConfig) -> anyhow::Result<ConnsReport> {
    let settings = &config.settings;
    if settings.connections == 0 || settings.room_size == 0 || settings.per_worker == 0 {
        bail!("--connections, --room-size and --per-worker must be at least 1");
    }
    let limit = crate::limits::raise_nofile().context("raising the file-descriptor limit")?;
    let workers = usize::try_from(settings.connections.div_ceil(settings.per_worker))?;
    if workers > 1 && settings.in_process {
        bail!(
            "{} connections need {workers} worker processes: --in-process runs only one",
            settings.connections
        );
    }
    if settings.in_process && settings.connections + 64 > limit {
        bail!(
            "{} connections exceed this process's file-descriptor limit ({limit}); lower --per-worker",
            settings.connections
        );
    }
    let worker_exe = match (&settings.worker_exe, settings.in_process) {
        (_, true) => None,
        (Some(exe), false) => Some(exe.clone()),
        (None, false) => {
            Some(std::env::current_exe().context("finding the chat-bench executable for workers")?)
        }
    };
    let mut targets = vec![config.server.target.clone()];
    for url in &settings.extra_url {
        targets.push(crate::config::target(url, None)?);
    }
    let rss_before = total_rss(&server_pids(config))?;

    let (event_tx, event_rx) = std_mpsc::channel::<(usize, Event)>();
    let mut handles = Vec::with_capacity(workers);
    let mut remaining = settings.connections;
    for w in 0..workers {
        let count = remaining.min(settings.per_worker);
        remaining -= count;
        let spec = WorkerSpec {
            worker: w,
            count,
            first_index: settings.per_worker * w as u64,
            room_prefix: config.room_prefix.clone(),
            targets: targets.clone(),
            setup_timeout: config.server.setup_timeout.into(),
            settings: settings.clone(),
        };
        handles.push(start_worker(worker_exe.as_deref(), spec, event_tx.clone())?);
    }
    drop(event_tx);

    let result = drive(config, &event_rx, &mut handles, workers);
    for handle in &mut handles {
        let _ = handle.send(Command::Close);
    }
    for handle in handles {
        handle.finish();
    }
    let (opened, failed, first_error, open_s, mut probe) = result?;
    let rss_after = probe.rss_after;
    #[allow(clippy::cast_precision_loss)]
    let per_conn = match (rss_before, rss_after) {
        (Some(before), Some(after)) if opened > 0 => {
            Some((after as f64 - before as f64) / opened as f64)
        }
        _ => None,
    };
    #[allow(clippy::cast_precision_loss)]
    Ok(ConnsReport {
        url: config.server.url.clone(),
        settings: settings.clone(),
        opened,
        failed,
        first_error,
        open_s,
        open_rate: opened as f64 / open_s.max(1e-9),
        probe_received: probe.received,
        probe_missing: probe.missing,
        probe_closed: probe.closed,
        probe_first_close: probe.first_close.take(),
        probe_s: probe.secs,
        probe_latency: crate::report::latency_of_micros(&mut probe.latencies_us),
        workers,
        server_pid: config.server.pid,
        server_rss_before_bytes: rss_before,
        server_rss_after_bytes: rss_after,
        server_rss_per_conn_bytes: per_conn,
    })
}

/// The PIDs of the servers under test: --server-pid and --extra-server-pid.
fn server_pids(config: &ConnsConfig) -> Vec<u32> {
    let extra = config.settings.extra_server_pid.iter().copied();
    config.server.pid.into_iter().chain(extra).collect()
}

/// The servers' resident memory summed, if any PID is given.
fn total_rss(pids: &[u32]) -> anyhow::Result<Option<u64>> {
    if pids.is_empty() {
        return Ok(None);
    }
    let mut total = 0;
    for &pid in pids {
        let sample = procstat::sample(Some(pid))
            .with_context(|| format!("reading the /proc entry of server {pid}"))?;
        total += sample.rss_bytes;
    }
    Ok(Some(total))
}

/// Probe results summed over the workers.
#[derive(Debug, Default)]
struct ProbeTotals {
    received: u64,
    missing: u64,
    closed: u64,
    secs: f64,
    rss_after: Option<u64>,
    /// Every connection's time from its worker's probe start to its probe.
    latencies_us: Vec<u32>,
    /// How the first connection the server closed was closed.
    first_close: Option<String>,
}

type Outcome = (u64, u64, Option<String>, f64, ProbeTotals);

/// Opening, holding and probing, across every worker.
fn drive(
    config: &ConnsConfig,
    events: &std_mpsc::Receiver<(usize, Event)>,
    handles: &mut [Handle],
    workers: usize,
) -> anyhow::Result<Outcome> {
    let settings = &config.settings;
    let mut progress = Progress::new(config.progress);
    // Generous: every handshake may take its full timeout, a batch at a time.
    let per_worker = settings.connections.div_ceil(workers as u64);
    let batches = u32::try_from(per_worker.div_ceil(settings.connect_concurrency.max(1) as u64))
        .unwrap_or(u32::MAX);
    let open_limit =
        config.server.setup_timeout.saturating_mul(batches.max(1)) + Duration::from_secs(10);
    let mut opening = vec![0u64; workers];
    let mut done = vec![false; workers];
    let (mut opened, mut failed, mut first_error, mut open_s) = (0, 0, None, 0f64);
    let start = Instant::now();
    while done.iter().any(|d| !d) {
        let left = open_limit.saturating_sub(start.elapsed());
        match events.recv_timeout(left.min(Duration::from_millis(250))) {
            Ok((w, Event::Opening { opened })) => opening[w] = opened,
            Ok((
                w,
                Event::Opened {
                    opened: o,
                    failed: f,
                    first_error: e,
                    secs,
                },
            )) => {
                opening[w] = o;
                done[w] = true;
                opened += o;
                failed += f;
                open_s = open_s.max(secs);
                if first_error.is_none() {
                    first_error = e;
                }
            }
            Ok((_, Event::Probed { .. })) => bail!("a worker probed before it was asked to"),
            Err(std_mpsc::RecvTimeoutError::Timeout) if start.elapsed() < open_limit => {}
            Err(std_mpsc::RecvTimeoutError::Timeout) => {
                bail!("workers did not finish opening within {open_limit:?}")
            }
            Err(std_mpsc::RecvTimeoutError::Disconnected) => {
                bail!("a worker exited while opening (see its stderr)")
            }
        }
        progress.update(|| {
            format!(
                "conns: opened {}/{}",
                opening.iter().sum::<u64>(),
                settings.connections
            )
        });
    }

    let hold_end = Instant::now() + settings.hold.get();
    while Instant::now() < hold_end {
        let left = hold_end.saturating_duration_since(Instant::now());
        progress.update(|| {
            format!(
                "conns: holding {opened} connections, {:.0} s left",
                left.as_secs_f64()
            )
        });
        std::thread::sleep(left.min(Duration::from_millis(100)));
    }
    let rss_after = total_rss(&server_pids(config))?;

    progress.update(|| format!("conns: probing {opened} connections"));
    for handle in handles.iter_mut() {
        handle.send(Command::Probe)?;
    }
    let mut probe = ProbeTotals {
        rss_after,
        ..ProbeTotals::default()
    };
    let mut probed = 0;
    let probe_limit = settings.probe_timeout.get() + Duration::from_secs(10);
    while probed < workers {
        match events.recv_timeout(probe_limit) {
            Ok((
                _,
                Event::Probed {
                    received,
                    missing,
                    closed,
                    secs,
                    latencies_us,
                    first_close,
                },
            )) => {
                probe.latencies_us.extend(latencies_us);
                if probe.first_close.is_none() {
                    probe.first_close = first_close;
                }
                probe.received += received;
                probe.missing += missing;
                probe.closed += closed;
                probe.secs = probe.secs.max(secs);
                probed += 1;
            }
            Ok(_) => {}
            Err(_) => bail!("a worker did not report its probe within {probe_limit:?}"),
        }
    }
    progress.finish();
    Ok((opened, failed, first_error, open_s, probe))
}

/// Starts worker `spec` as a process (when there is an executable) or as a
/// thread; its events go to `events`, tagged with its number.
fn start_worker(
    exe: Option<&Path>,
    spec: WorkerSpec,
    events: std_mpsc::Sender<(usize, Event)>,
) -> anyhow::Result<Handle> {
    let w = spec.worker;
    if let Some(exe) = exe {
        let mut child = std::process::Command::new(exe)
            .arg("conns-worker")
            .arg(serde_json::to_string(&spec)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting worker process {}", exe.display()))?;
        let stdin = child.stdin.take().context("worker stdin")?;
        let stdout = child.stdout.take().context("worker stdout")?;
        std::thread::Builder::new()
            .name(format!("conns-worker-{w}"))
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    match serde_json::from_str::<Event>(&line) {
                        Ok(event) => {
                            if events.send((w, event)).is_err() {
                                break;
                            }
                        }
                        Err(error) => {
                            tracing::warn!(worker = w, %error, line, "bad line from worker");
                        }
                    }
                }
            })
            .context("starting a worker reader thread")?;
        Ok(Handle::Process { child, stdin })
    } else {
        let (tx, rx) = mpsc::unbounded_channel();
        let thread = std::thread::Builder::new()
            .name(format!("conns-worker-{w}"))
            .spawn(move || {
                let emit = |event| {
                    let _ = events.send((w, event));
                };
                if let Err(error) = worker::run(&spec, rx, emit) {
                    tracing::error!(%error, "conns worker failed");
                }
            })
            .context("starting a worker thread")?;
        Ok(Handle::Thread(tx, thread))
    }
}

/// The body of `chat-bench conns-worker SPEC`: commands from stdin, events
/// to stdout as JSON lines.
///
/// # Errors
///
/// A malformed spec, or a runtime that could not start.
pub fn worker_main(spec_json: &str) -> anyhow::Result<()> {
    let spec: WorkerSpec = serde_json::from_str(spec_json).context("parsing the worker spec")?;
    let limit = crate::limits::raise_nofile().context("raising the file-descriptor limit")?;
    if spec.count + 64 > limit {
        bail!(
            "worker {} must hold {} connections but may open {limit} files",
            spec.worker,
            spec.count
        );
    }
    let (tx, rx) = mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Command>(&line) {
                    Ok(command) => {
                        if tx.send(command).is_err() {
                            break;
                        }
                    }
                    Err(error) => tracing::warn!(%error, line, "bad command"),
                }
            }
            // End of input: the parent is gone, so close.
            let _ = tx.send(Command::Close);
        })
        .context("starting the stdin thread")?;
    let emit = |event: Event| {
        if let Ok(line) = serde_json::to_string(&event) {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    worker::run(&spec, rx, emit)?;
    Ok(())
}
