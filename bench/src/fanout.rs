//! The `fanout` workload: R rooms × M members, S senders, N messages.
//!
//! The run has four phases, driven by this module's controller (the
//! calling thread) and seen by every member through a `watch` channel:
//!
//! 1. **Connect**: every member opens its socket (a bounded number of
//!    handshakes at a time). Any failure ends the run with an error.
//! 2. **Warm-up**: member 0 of each room sends one message; the phase ends
//!    when every member has received its room's, which proves the server
//!    has subscribed everyone before anything is timed.
//! 3. **Run**: the senders send their share of the N messages, as fast as
//!    their in-flight window allows or on a fixed-rate schedule, until they
//!    are done or the time limit cuts the sending short (**Drain**). The
//!    timed phase ends when every message sent has reached every member of
//!    its room, or when nothing more arrived for the drain time after the
//!    last send (what is missing then is lost).
//! 4. **Stop**: members fold their counts (loss is decided here, against
//!    what each sender really sent) and close.
//!
//! Threads: `threads` current-thread runtimes ([`shard`]), each owning a
//! share of the members; one is enough up to millions of deliveries per
//! second, and the report says when the load generator itself was busy.

mod member;
mod shard;
mod window;

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Config;
use crate::procstat;
use crate::progress::Progress;
use crate::report::{FanoutReport, LoadGenUsage, ServerUsage, latency_summary};
use crate::secs::Secs;

pub use member::MemberCounts;
use window::SharedWindow;

/// A fan-out run: the server, the [`FanoutSettings`], a fresh room prefix.
pub type FanoutConfig = Config<FanoutSettings>;

/// The shape of a fan-out run: what `chat-bench fanout` takes on its
/// command line, what the run follows, and what its report repeats.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct FanoutSettings {
    /// Rooms (R).
    #[arg(long, short = 'r', env = "CHAT_BENCH_ROOMS", default_value_t = 1)]
    pub rooms: u32,

    /// Members per room (M), senders included.
    #[arg(long, short = 'm', env = "CHAT_BENCH_MEMBERS", default_value_t = 1000)]
    pub members: u32,

    /// Senders (S), spread round-robin over the rooms (sender g is member
    /// g / R of room g % R); each is also a member. Default: one per room.
    #[arg(long, short = 's', env = "CHAT_BENCH_SENDERS")]
    pub senders: Option<u32>,

    /// Messages in all (N), split evenly over the senders.
    #[arg(
        long,
        short = 'n',
        env = "CHAT_BENCH_MESSAGES",
        default_value_t = 10_000
    )]
    pub messages: u64,

    /// Send at this many messages per second in all (e.g. 10000), instead of
    /// as fast as the window allows.
    #[arg(long, env = "CHAT_BENCH_RATE", value_name = "MSGS_PER_SEC")]
    pub rate: Option<f64>,

    /// Messages a sender may have in flight (sent, own copy not back yet).
    #[arg(long, short = 'w', env = "CHAT_BENCH_WINDOW", default_value_t = 16)]
    pub window: u32,

    /// Share one in-flight window of --window messages among all senders
    /// instead of giving each sender its own: with --window equal to
    /// --senders, about one message per sender is in flight, as in a room
    /// of people typing (see fanout/window.rs).
    #[arg(long, env = "CHAT_BENCH_SHARED_WINDOW")]
    pub shared_window: bool,

    /// Message text length in bytes (the sender id, sequence number and
    /// timestamp, padded).
    #[arg(long, env = "CHAT_BENCH_SIZE", default_value_t = 64)]
    pub size: usize,

    /// Load-generator threads (each a single-threaded runtime).
    #[arg(long, env = "CHAT_BENCH_THREADS", default_value_t = 1)]
    pub threads: usize,

    /// Handshakes in progress at once.
    #[arg(long, env = "CHAT_BENCH_CONNECT_CONCURRENCY", default_value_t = 64)]
    pub connect_concurrency: usize,

    /// Spread connections over this many source addresses 127.0.0.1,
    /// 127.0.0.2, …; 0 lets the kernel choose.
    #[arg(long, env = "CHAT_BENCH_SOURCES", default_value_t = 0)]
    pub sources: u8,

    /// Longest time the senders send, seconds; what they sent by then is
    /// still awaited and checked.
    #[arg(long, env = "CHAT_BENCH_MAX_TIME", default_value = "60")]
    pub max_time: Secs,

    /// After the last send, stop when nothing arrived for this long, seconds
    /// (what is missing then is counted lost).
    #[arg(long, env = "CHAT_BENCH_DRAIN", default_value = "2")]
    pub drain: Secs,

    /// Poll the sockets in a busy loop instead of sleeping in epoll_wait.
    /// A sleeping load generator must be woken for every segment, and on
    /// loopback that wake-up (an inter-processor interrupt, costly in a VM)
    /// runs in the sender's system call, so it is charged to the server's
    /// CPU time; busy polling keeps the server's figures its own but keeps
    /// each load-generator thread 100 % busy (its CPU figure then means
    /// nothing).
    #[arg(long, env = "CHAT_BENCH_BUSY_POLL")]
    pub busy_poll: bool,

    /// Batch reads: stall the load-generator thread this many microseconds
    /// between rounds of reads, so that frames pile up in the sockets and
    /// one read takes many. Against servers that write each frame
    /// separately it saves a wake-up and a read per delivery (on loopback
    /// the wake-up is charged to the server). Adds up to the interval to
    /// latencies: for throughput runs.
    #[arg(long, env = "CHAT_BENCH_READ_INTERVAL", value_name = "MICROS")]
    pub read_interval: Option<u64>,
}

impl Default for FanoutSettings {
    fn default() -> Self {
        crate::config::defaults()
    }
}

impl FanoutSettings {
    /// Senders (S): as given, or one per room.
    pub fn senders(&self) -> u32 {
        self.senders.unwrap_or(self.rooms)
    }

    /// Messages sender `id` sends: N / S, the first N % S senders one more.
    pub fn quota(&self, id: u32) -> u64 {
        let senders = u64::from(self.senders().max(1));
        self.messages / senders + u64::from(u64::from(id) < self.messages % senders)
    }

    /// Senders in room `room`.
    pub fn senders_in_room(&self, room: u32) -> u32 {
        let senders = self.senders();
        if room >= senders {
            0
        } else {
            (senders - room).div_ceil(self.rooms)
        }
    }

    /// The source addresses to spread connections over (empty: the
    /// kernel's choice).
    pub fn source_addrs(&self) -> Vec<IpAddr> {
        crate::config::loopback_sources(self.sources)
    }

    /// The stall between rounds of reads, if any.
    pub fn read_interval(&self) -> Option<Duration> {
        self.read_interval
            .filter(|&us| us > 0)
            .map(Duration::from_micros)
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.rooms == 0 || self.members == 0 {
            bail!("--rooms and --members must be at least 1");
        }
        let total = u64::from(self.rooms) * u64::from(self.members);
        if self.senders() == 0 || u64::from(self.senders()) > total {
            bail!("--senders must be between 1 and rooms × members ({total})");
        }
        if self.window == 0 {
            bail!("--window must be at least 1");
        }
        if self.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
            bail!("--rate must be a positive number of messages per second");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        Ok(())
    }
}

impl FanoutConfig {
    /// The WebSocket path of room `room`.
    pub fn path(&self, room: u32) -> String {
        format!("/ws/chat/{}{room}/", self.room_prefix)
    }
}

/// Where a run is; members act on each change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Opening sockets.
    Connect,
    /// Proving every member is subscribed.
    Warmup,
    /// The timed phase: senders send.
    Run,
    /// Sending was cut short by the time limit; what was sent may still
    /// arrive.
    Drain,
    /// Fold counts and close.
    Stop,
}

/// State shared by the controller and every thread: the configuration and
/// relaxed counters (each is read for progress and stop decisions only; the
/// exact figures come from the members' own counts at the end).
#[derive(Debug)]
pub struct Shared {
    config: FanoutConfig,
    /// The source addresses connections are spread over.
    sources: Vec<IpAddr>,
    /// The clock every timestamp counts from.
    origin: Instant,
    connected: AtomicU64,
    failed: AtomicU64,
    warm: AtomicU64,
    sent_total: AtomicU64,
    distinct_total: AtomicU64,
    senders_done: AtomicU64,
    /// Messages sent by each sender, final once the run stops.
    sent_by: Vec<AtomicU64>,
    /// The window all senders share, with `--shared-window`.
    window: Option<SharedWindow>,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    /// Nanoseconds since the run's origin.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn connect_failed(&self, error: &str) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.record_error(error);
    }

    /// Keeps the first error of the run for the report.
    fn record_error(&self, error: &str) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| error.to_owned());
        }
    }
}

/// Runs one fan-out workload and reports it.
///
/// # Errors
///
/// Bad configuration, a connection that could not be opened, a room whose
/// members did not all receive the warm-up message, or a thread that could
/// not start.
pub fn run(config: &FanoutConfig) -> anyhow::Result<FanoutReport> {
    let settings = &config.settings;
    settings.validate()?;
    let total_members = u64::from(settings.rooms) * u64::from(settings.members);
    let (tx, rx) = watch::channel(Phase::Connect);
    let shared = Arc::new(Shared {
        sent_by: (0..settings.senders()).map(|_| AtomicU64::new(0)).collect(),
        config: config.clone(),
        sources: settings.source_addrs(),
        window: settings
            .shared_window
            .then(|| SharedWindow::new(settings.senders(), settings.messages)),
        origin: Instant::now(),
        connected: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        warm: AtomicU64::new(0),
        sent_total: AtomicU64::new(0),
        distinct_total: AtomicU64::new(0),
        senders_done: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });

    let mut assignments: Vec<Vec<(u32, u32)>> = vec![Vec::new(); settings.threads];
    let mut next = 0usize;
    for room in 0..settings.rooms {
        for index in 0..settings.members {
            assignments[next % settings.threads].push((room, index));
            next += 1;
        }
    }
    let per_thread_concurrency = settings.connect_concurrency.div_ceil(settings.threads);
    let mut threads = Vec::with_capacity(settings.threads);
    for (i, members) in assignments.into_iter().enumerate() {
        let (shared, rx) = (shared.clone(), rx.clone());
        threads.push(
            std::thread::Builder::new()
                .name(format!("fanout-{i}"))
                .spawn(move || shard::run(&shared, members, &rx, per_thread_concurrency))
                .context("cannot start a load-generator thread")?,
        );
    }
    drop(rx);

    let mut progress = Progress::new(config.progress);
    let outcome = drive(&shared, &tx, total_members, &mut progress);
    progress.finish();
    // Whatever happened, stop every member and collect the threads.
    let _ = tx.send(Phase::Stop);
    let mut results = Vec::with_capacity(threads.len());
    for thread in threads {
        match thread.join() {
            Ok(Ok(result)) => results.push(result),
            Ok(Err(error)) => return Err(error).context("load-generator thread failed"),
            Err(_) => bail!("a load-generator thread panicked"),
        }
    }
    let timed = outcome?;

    let mut hist = crate::report::new_histogram();
    let mut counts = MemberCounts::default();
    let mut last_delivery_ns = 0;
    for result in &results {
        // Same bounds everywhere, so adding cannot fail.
        hist.add(&result.hist)
            .context("merging latency histograms")?;
        counts.add(&result.counts);
        last_delivery_ns = last_delivery_ns.max(result.last_delivery_ns);
    }
    let window = timed.end.duration_since(timed.start);
    let active = if last_delivery_ns > timed.start_ns {
        Duration::from_nanos(last_delivery_ns - timed.start_ns)
    } else {
        window
    };
    let sent = shared.sent_total.load(Ordering::Relaxed);
    let secs = active.as_secs_f64().max(1e-9);
    let server = match (config.server.pid, timed.server_before, timed.server_after) {
        (Some(pid), Some(before), Some(after)) => Some(ServerUsage::new(
            pid,
            before,
            after,
            window,
            counts.distinct,
        )),
        _ => None,
    };
    let self_cpu = timed.self_after.cpu.saturating_sub(timed.self_before.cpu);
    let self_cores = self_cpu.as_secs_f64() / window.as_secs_f64().max(1e-9);
    #[allow(clippy::cast_precision_loss)]
    let report = FanoutReport {
        url: config.server.url.clone(),
        settings: FanoutSettings {
            senders: Some(settings.senders()),
            ..settings.clone()
        },
        sent,
        expected_deliveries: sent * u64::from(settings.members),
        deliveries: counts.deliveries,
        distinct: counts.distinct,
        lost: counts.lost,
        duplicated: counts.duplicated,
        out_of_order: counts.out_of_order,
        errors: counts.errors,
        foreign: counts.foreign,
        first_error: shared.first_error.lock().ok().and_then(|e| e.clone()),
        stopped_by: timed.stopped_by.to_owned(),
        duration_s: secs,
        send_rate: timed
            .all_sent_ns
            .filter(|&ns| ns > timed.start_ns)
            .map_or(0.0, |ns| sent as f64 / ((ns - timed.start_ns) as f64 / 1e9)),
        deliveries_per_sec: counts.distinct as f64 / secs,
        latency: latency_summary(&hist),
        server,
        loadgen: LoadGenUsage {
            threads: settings.threads,
            cpu_s: self_cpu.as_secs_f64(),
            cpu_cores: self_cores,
            // The controller thread adds a little; 90 % of every runtime
            // thread busy means the figures may be the load generator's.
            saturated: !settings.busy_poll && self_cores >= 0.9 * settings.threads as f64,
            busy_poll: settings.busy_poll,
            waited_cores: timed
                .self_after
                .run_delay
                .saturating_sub(timed.self_before.run_delay)
                .as_secs_f64()
                / window.as_secs_f64().max(1e-9),
        },
    };
    Ok(report)
}

/// What the controller measured around the timed phase.
struct Timed {
    start: Instant,
    start_ns: u64,
    end: Instant,
    all_sent_ns: Option<u64>,
    stopped_by: &'static str,
    server_before: Option<procstat::Sample>,
    server_after: Option<procstat::Sample>,
    self_before: procstat::Sample,
    self_after: procstat::Sample,
}

/// Takes the run through its phases; returns the timed phase's figures.
fn drive(
    shared: &Shared,
    tx: &watch::Sender<Phase>,
    total_members: u64,
    progress: &mut Progress,
) -> anyhow::Result<Timed> {
    const POLL: Duration = Duration::from_millis(2);
    /// After the time limit, how long senders get to notice it and stop.
    const SENDERS_STOP_WAIT: Duration = Duration::from_secs(1);
    let cfg = &shared.config;
    let settings = &cfg.settings;

    // Connect.
    loop {
        let connected = shared.connected.load(Ordering::Relaxed);
        let failed = shared.failed.load(Ordering::Relaxed);
        progress.update(|| format!("fanout: connecting {connected}/{total_members}"));
        if connected + failed >= total_members {
            if failed > 0 {
                let first = shared
                    .first_error
                    .lock()
                    .ok()
                    .and_then(|e| e.clone())
                    .unwrap_or_default();
                bail!("{failed} of {total_members} connections failed (first error: {first})");
            }
            break;
        }
        std::thread::sleep(POLL);
    }

    // Warm-up.
    let _ = tx.send(Phase::Warmup);
    let warm_deadline = Instant::now() + cfg.server.setup_timeout;
    loop {
        let warm = shared.warm.load(Ordering::Relaxed);
        progress.update(|| format!("fanout: warm-up {warm}/{total_members}"));
        if warm >= total_members {
            break;
        }
        if Instant::now() > warm_deadline {
            bail!(
                "only {warm} of {total_members} members received their room's warm-up message \
                 within {:?}: does the server broadcast to every member of a room?",
                cfg.server.setup_timeout
            );
        }
        std::thread::sleep(POLL);
    }

    // Run.
    let server_before = cfg
        .server
        .pid
        .map(|pid| procstat::sample(Some(pid)))
        .transpose()
        .context("reading the server's /proc entry")?;
    let self_before = procstat::sample(None).context("reading /proc/self")?;
    let start = Instant::now();
    let start_ns = shared.now_ns();
    if let Some(window) = &shared.window {
        window.open(settings.window);
    }
    let _ = tx.send(Phase::Run);
    let senders = u64::from(settings.senders());
    let members = u64::from(settings.members);
    let mut all_sent_ns = None;
    let mut last_distinct = 0;
    let mut last_change = start;
    let mut cut = false;
    // After the send phase, stragglers get `drain` without progress, and
    // never more than this in all.
    let drain_cap = settings
        .drain
        .get()
        .saturating_mul(5)
        .max(Duration::from_secs(10));
    let stopped_by = loop {
        std::thread::sleep(POLL);
        let now = Instant::now();
        let elapsed = now.duration_since(start);
        if !cut && elapsed >= settings.max_time.get() {
            // Time is up for sending; what was sent may still arrive.
            cut = true;
            let _ = tx.send(Phase::Drain);
        }
        // Done sending once every sender says so: after the cut, a sender
        // may still be sending until it sees the drain (and a sender that
        // never answers is given up on after a second).
        let done = shared.senders_done.load(Ordering::Acquire) >= senders
            || (cut && elapsed >= settings.max_time.get() + SENDERS_STOP_WAIT);
        let sent = shared.sent_total.load(Ordering::Relaxed);
        let distinct = shared.distinct_total.load(Ordering::Relaxed);
        if done && all_sent_ns.is_none() {
            all_sent_ns = Some(shared.now_ns());
            last_change = now;
        }
        if distinct != last_distinct {
            last_distinct = distinct;
            last_change = now;
        }
        progress.update(|| {
            #[allow(clippy::cast_precision_loss)]
            let rate = distinct as f64 / elapsed.as_secs_f64().max(1e-9);
            format!(
                "fanout: {:>5.1}s sent {sent}/{} delivered {distinct}/{} ({:.0}/s){}",
                elapsed.as_secs_f64(),
                settings.messages,
                sent * members,
                rate,
                if done { ", draining" } else { "" }
            )
        });
        let drained_for = now.duration_since(last_change);
        let since_sent = all_sent_ns.map_or(Duration::ZERO, |ns| {
            Duration::from_nanos(shared.now_ns().saturating_sub(ns))
        });
        if done
            && (distinct >= sent * members
                || drained_for >= settings.drain.get()
                || since_sent >= drain_cap)
        {
            break match (cut, distinct >= sent * members) {
                (true, _) => "max-time",
                (false, true) => "complete",
                (false, false) => "drain",
            };
        }
    };
    let end = Instant::now();
    let server_after = cfg
        .server
        .pid
        .map(|pid| procstat::sample(Some(pid)))
        .transpose()
        .context("reading the server's /proc entry")?;
    let self_after = procstat::sample(None).context("reading /proc/self")?;
    Ok(Timed {
        start,
        start_ns,
        end,
        all_sent_ns,
        stopped_by,
        server_before,
        server_after,
        self_before,
        self_after,
    })
}
