//! The `soak` workload: a bounded run of realistic and hostile clients
//! against chat-server, checking that nothing leaks and nothing is lost.
//!
//! Three kinds of clients run side by side for `--minutes`/`--seconds`:
//!
//! * **Well-behaved** ([`member`]): R rooms × M members, typed clients
//!   (`?v=2`: a `welcome` first, chat events with room ids). Each sends
//!   chat-bench data messages (stream id, sequence number, send time) at a
//!   human rate (1-5 msg/s by default, jittered). A fraction of them churn:
//!   every few seconds they leave cleanly (close 1000) and join a random
//!   room. Loss, duplication and reordering are counted exactly, churners
//!   included, by the id rule of [`ledger`]: a connection must receive
//!   every message of its room whose id lies between its welcome's
//!   `last_id` and the last id it received.
//! * **Slow** ([`slow`]): clients in the busy rooms (the first
//!   `--busy-rooms`, whose members send larger messages) that stop reading
//!   entirely; the server must drop them (close 1008 slow consumer, or the
//!   connection dropped) within its write timeout.
//! * **Abusive** ([`abuser`]): flooders (typed: `error` events then close
//!   1008; plain: slowed down, then 1008), malformed JSON (typed: `error`
//!   events, connection kept; plain: 1007), binary frames (1003), frames
//!   over 64 KiB (1009) and invalid UTF-8 (1007); they reconnect and repeat.
//!
//! Meanwhile the controller (the calling thread) samples the server's RSS
//! and CPU time from `/proc/PID` every second ([`rss`] decides whether RSS
//! stayed flat once warm), shows a progress line, and at the end reads the
//! server's own counts from `/metrics` ([`metrics`]). The report's
//! `failures` list everything that makes the run fail (the binary then
//! exits with status 1): loss, duplicates or reordering among well-behaved
//! clients, unexpected disconnects, RSS growth, a dead server.
//!
//! Every loop is bounded by the run's deadline; every wait by a timeout.

mod abuser;
mod conn;
pub mod ledger;
mod member;
pub mod metrics;
pub mod report;
pub mod rss;
mod slow;
pub mod tally;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::config::Config;
use crate::procstat;
use crate::progress::Progress;
use crate::secs::Secs;

use conn::{Conn, Open, SmallPipe};
use ledger::{Membership, StreamRecord};
use report::{SoakReport, SoakServer, WellBehaved};
use rss::RssPoint;
use tally::Tally;

pub use abuser::Abuse;

/// A soak run: the server, the [`SoakSettings`], a fresh room prefix.
pub type SoakConfig = Config<SoakSettings>;

/// The shape of a soak run: what `chat-bench soak` takes on its command
/// line, what the clients follow, and what the report repeats.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct SoakSettings {
    /// Run for this many minutes (the default is 10).
    #[arg(long, env = "CHAT_BENCH_MINUTES", conflicts_with = "seconds")]
    pub minutes: Option<f64>,

    /// Run for this many seconds instead.
    #[arg(long, env = "CHAT_BENCH_SECONDS")]
    pub seconds: Option<Secs>,

    /// Rooms of well-behaved clients (R).
    #[arg(long, env = "CHAT_BENCH_ROOMS", default_value_t = 50)]
    pub rooms: u32,

    /// Well-behaved members per room at the start (M).
    #[arg(long, env = "CHAT_BENCH_MEMBERS", default_value_t = 4)]
    pub members: u32,

    /// Fraction of the well-behaved members that leave and rejoin random
    /// rooms.
    #[arg(long, env = "CHAT_BENCH_CHURN", default_value_t = 0.25)]
    pub churn: f64,

    /// Average stay of a churning member in a room, seconds (each stay is
    /// 0.5 to 1.5 times this).
    #[arg(long, env = "CHAT_BENCH_CHURN_EVERY", default_value = "5")]
    pub churn_every: Secs,

    /// Slowest sending rate of a well-behaved member, messages per second.
    #[arg(long, env = "CHAT_BENCH_RATE_MIN", default_value_t = 1.0)]
    pub rate_min: f64,

    /// Fastest sending rate of a well-behaved member (each session picks a
    /// rate in between; intervals are jittered ±50 %).
    #[arg(long, env = "CHAT_BENCH_RATE_MAX", default_value_t = 5.0)]
    pub rate_max: f64,

    /// Message text size in ordinary rooms, bytes.
    #[arg(long, env = "CHAT_BENCH_SIZE", default_value_t = 100)]
    pub size: usize,

    /// Busy rooms: the first rooms, whose members send --busy-size messages
    /// and where the slow clients go.
    #[arg(long, env = "CHAT_BENCH_BUSY_ROOMS", default_value_t = 3)]
    pub busy_rooms: u32,

    /// Message text size in busy rooms, bytes.
    #[arg(long, env = "CHAT_BENCH_BUSY_SIZE", default_value_t = 2048)]
    pub busy_size: usize,

    /// Slow clients (they never read) at any time.
    #[arg(long, env = "CHAT_BENCH_SLOW", default_value_t = 4)]
    pub slow: u32,

    /// Longest a slow client waits to be dropped before it counts as not
    /// closed (a failure); above the server's --write-timeout.
    #[arg(long, env = "CHAT_BENCH_SLOW_MAX_STALL", default_value = "120")]
    pub slow_max_stall: Secs,

    /// Abusive clients at any time (each goes through every kind of abuse).
    #[arg(long, env = "CHAT_BENCH_ABUSERS", default_value_t = 7)]
    pub abusers: u32,

    /// Longest a flood waits to be closed (the server closes a plain
    /// flooder after 30 s of flooding).
    #[arg(long, env = "CHAT_BENCH_ABUSE_TIMEOUT", default_value = "60")]
    pub abuse_timeout: Secs,

    /// Load-generator runtime threads.
    #[arg(long, env = "CHAT_BENCH_THREADS", default_value_t = 2)]
    pub threads: usize,

    /// Do not read the server's /metrics and /healthz.
    #[arg(long, env = "CHAT_BENCH_NO_METRICS")]
    pub no_metrics: bool,

    /// Step of the reported RSS series, seconds (default: about 30 points).
    #[arg(long, env = "CHAT_BENCH_RSS_EVERY")]
    pub rss_every: Option<Secs>,

    /// RSS growth allowed from the middle third's peak to the last third's,
    /// percent (plus --rss-slack-mib).
    #[arg(
        long,
        env = "CHAT_BENCH_RSS_TOLERANCE",
        default_value_t = 10.0,
        value_name = "PERCENT"
    )]
    pub rss_tolerance: f64,

    /// RSS growth allowed on top of --rss-tolerance, MiB.
    #[arg(
        long,
        env = "CHAT_BENCH_RSS_SLACK_MIB",
        default_value_t = 2.0,
        value_name = "MIB"
    )]
    pub rss_slack_mib: f64,
}

impl Default for SoakSettings {
    fn default() -> Self {
        crate::config::defaults()
    }
}

impl SoakSettings {
    /// How long the clients run: --seconds, --minutes, or ten minutes.
    pub fn duration(&self) -> Duration {
        match (self.seconds, self.minutes) {
            (Some(seconds), _) => seconds.get(),
            (None, Some(minutes)) => Secs::new(minutes * 60.0).map_or(Duration::ZERO, Secs::get),
            (None, None) => Duration::from_secs(600),
        }
    }

    /// The RSS growth allowed, as a fraction (0.10 = 10 %).
    pub fn rss_tolerance_fraction(&self) -> f64 {
        self.rss_tolerance / 100.0
    }

    /// The RSS growth allowed on top, bytes.
    pub fn rss_slack_bytes(&self) -> u64 {
        // Whole bytes; a fraction of a byte does not matter. Negative
        // values are refused by `validate`.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bytes = (self.rss_slack_mib * 1024.0 * 1024.0) as u64;
        bytes
    }

    fn validate(&self) -> anyhow::Result<()> {
        if self.minutes.is_some_and(|m| Secs::new(m * 60.0).is_err()) {
            bail!("--minutes must be a non-negative number");
        }
        if self.rooms == 0 || self.members == 0 {
            bail!("--rooms and --members must be at least 1");
        }
        if self.busy_rooms > self.rooms {
            bail!("--busy-rooms cannot exceed --rooms");
        }
        if !(0.0..=1.0).contains(&self.churn) {
            bail!("--churn is a fraction between 0 and 1");
        }
        if !(self.rate_min > 0.0 && self.rate_max >= self.rate_min && self.rate_max.is_finite()) {
            bail!("--rate-min and --rate-max must be positive, min <= max");
        }
        if !(self.rss_tolerance >= 0.0 && self.rss_slack_mib >= 0.0) {
            bail!("--rss-tolerance and --rss-slack-mib must not be negative");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        if self.duration().is_zero() {
            bail!("the run must last at least a second");
        }
        let connections = u64::from(self.rooms) * u64::from(self.members)
            + u64::from(self.slow)
            + u64::from(self.abusers);
        if connections > 10_000 {
            bail!("{connections} connections at once is more than a soak needs (at most 10000)");
        }
        Ok(())
    }
}

impl SoakConfig {
    /// The room name of room `index`.
    pub fn room_name(&self, index: u32) -> String {
        format!("{}{index}", self.room_prefix)
    }
}

/// Client categories in the disconnect table.
pub const WELL_BEHAVED: &str = "well-behaved";
/// The category of slow clients.
pub const SLOW: &str = "slow";

/// State shared by the controller and every client task.
#[derive(Debug)]
struct Shared {
    config: SoakConfig,
    origin: Instant,
    next_stream: AtomicU32,
    /// Connections open now, all kinds.
    open: AtomicU64,
    /// Connections opened, all kinds.
    opened: AtomicU64,
    /// Well-behaved messages sent.
    sent: AtomicU64,
    /// Well-behaved messages received (first copies).
    delivered: AtomicU64,
    /// Slow and abusive connections that ended as expected (progress only).
    closed_as_expected: AtomicU64,
    /// Seconds from each slow client's connect to the server dropping it.
    slow_drops: Mutex<Vec<f64>>,
    counters: Mutex<WellBehaved>,
    streams: Mutex<Vec<StreamRecord>>,
    members: Mutex<Vec<Membership>>,
    tally: Mutex<Tally>,
    latency: Mutex<Histogram<u64>>,
}

impl Shared {
    /// Nanoseconds since the start of the run.
    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn next_stream(&self) -> u32 {
        self.next_stream.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connection as open until the guard drops.
    fn open_guard(&self) -> OpenGuard<'_> {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.opened.fetch_add(1, Ordering::Relaxed);
        OpenGuard(&self.open)
    }

    /// Opens a client's connection, counted as open until the guard drops;
    /// a failure is the attempt's outcome.
    async fn connect(&self, open: &Open<'_>) -> Result<(Conn, OpenGuard<'_>), Outcome> {
        let server = &self.config.server;
        match Conn::open(&server.target, server.setup_timeout, open).await {
            Ok(conn) => Ok((conn, self.open_guard())),
            Err(error) => Err(("connect failed".into(), false, error.to_string())),
        }
    }

    fn record(&self, category: &str, outcome: &str, expected: bool, detail: &str) {
        lock(&self.tally).record(category, outcome, expected, detail);
        if expected && category != WELL_BEHAVED {
            self.closed_as_expected.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Decrements the open-connection count on drop.
#[derive(Debug)]
struct OpenGuard<'a>(&'a AtomicU64);

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Locks `mutex`, taking the data even if a task panicked while holding it
/// (counts stay meaningful: every update is a single step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How long the end of the run may take: members await their echoes and
/// the server's close reply, each bounded.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// Runs a soak and reports it.
///
/// # Errors
///
/// Bad configuration, or a runtime that cannot start. Problems of the
/// server are not errors: they are in the report's `failures`.
pub fn run(config: &SoakConfig) -> anyhow::Result<SoakReport> {
    let settings = &config.settings;
    settings.validate()?;
    let _ = crate::limits::raise_nofile();
    let shared = Arc::new(Shared {
        config: config.clone(),
        origin: Instant::now(),
        next_stream: AtomicU32::new(0),
        open: AtomicU64::new(0),
        opened: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        closed_as_expected: AtomicU64::new(0),
        slow_drops: Mutex::new(Vec::new()),
        counters: Mutex::new(WellBehaved::default()),
        streams: Mutex::new(Vec::new()),
        members: Mutex::new(Vec::new()),
        tally: Mutex::new(Tally::default()),
        latency: Mutex::new(crate::report::new_histogram()),
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(settings.threads)
        .enable_all()
        .thread_name("soak")
        .build()
        .context("cannot start the soak runtime")?;
    let scrape = |path: &str| {
        (!settings.no_metrics).then(|| {
            runtime.block_on(metrics::get(
                &config.server.target,
                path,
                Duration::from_secs(5),
            ))
        })
    };
    let counters = |path: &str| match scrape(path) {
        Some(Ok((200, body))) => Some(metrics::parse_prometheus(&body)),
        _ => None,
    };
    let metrics_before = counters("/metrics");
    let cpu_before = config
        .server
        .pid
        .map(|pid| procstat::sample(Some(pid)))
        .transpose()
        .context("reading the server's /proc entry (is --server-pid right?)")?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let tasks = spawn_clients(&runtime, &shared, &stop_rx);

    let mut progress = Progress::new(config.progress);
    let watched = watch_server(&shared, &mut progress);
    progress.finish();

    let _ = stop_tx.send(true);
    let wound_down = runtime.block_on(async {
        tokio::time::timeout(WIND_DOWN, futures_util::future::join_all(tasks))
            .await
            .is_ok()
    });
    let elapsed = shared.origin.elapsed();

    let metrics_after = counters("/metrics");
    let healthz = scrape("/healthz").map(|r| matches!(r, Ok((200, _))));
    runtime.shutdown_timeout(Duration::from_secs(1));
    let cpu_after = config
        .server
        .pid
        .and_then(|pid| procstat::sample(Some(pid)).ok());
    let server = config.server.pid.map(|pid| {
        SoakServer::new(
            pid,
            &watched.rss,
            config,
            cpu_before.zip(cpu_after),
            elapsed,
            cpu_after.is_some() && watched.died_at.is_none(),
        )
    });
    let server_view = metrics_before
        .zip(metrics_after)
        .map(|(before, after)| metrics::ServerView::between(&before, &after));
    Ok(report::build(
        &shared,
        elapsed,
        server,
        server_view,
        healthz,
        watched.died_at,
        wound_down,
    ))
}

/// Starts every client task.
fn spawn_clients(
    runtime: &tokio::runtime::Runtime,
    shared: &Arc<Shared>,
    stop: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let cfg = &shared.config.settings;
    let mut tasks = Vec::new();
    let total = cfg.rooms * cfg.members;
    // Spread the churners evenly over the slots.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let churners = (f64::from(total) * cfg.churn).round() as u32;
    for index in 0..total {
        let churner = churners > 0
            && u64::from(index) * u64::from(churners) / u64::from(total)
                != (u64::from(index) + 1) * u64::from(churners) / u64::from(total);
        let slot = member::Slot {
            index,
            home: index % cfg.rooms,
            churner,
        };
        tasks.push(runtime.spawn(member::run(shared.clone(), slot, stop.clone())));
    }
    for index in 0..cfg.slow {
        let client = slow::Slow::new(shared.clone(), index);
        // Let the members join first, so that the busy rooms are busy.
        let first_wait = Duration::from_millis(1500 + u64::from(index) * 250);
        let life = reconnecting(shared.clone(), client, first_wait, stop.clone());
        tasks.push(runtime.spawn(life));
    }
    for index in 0..cfg.abusers {
        let client = abuser::Abuser::new(shared.clone(), index);
        let first_wait = Duration::from_millis(1000 + u64::from(index) * 100);
        let life = reconnecting(shared.clone(), client, first_wait, stop.clone());
        tasks.push(runtime.spawn(life));
    }
    tasks
}

/// What the controller saw of the server during the run.
struct Watched {
    rss: Vec<RssPoint>,
    /// Seconds into the run when the server's /proc entry vanished.
    died_at: Option<f64>,
}

/// Waits out the run: samples the server every second, shows progress, and
/// stops early if the server dies.
fn watch_server(shared: &Shared, progress: &mut Progress) -> Watched {
    let cfg = &shared.config;
    let deadline = shared.origin + cfg.settings.duration();
    let mut rss = Vec::new();
    let mut next_sample = Instant::now();
    let mut died_at = None;
    while Instant::now() < deadline {
        let now = Instant::now();
        if now >= next_sample {
            next_sample += Duration::from_secs(1);
            if let Some(pid) = cfg.server.pid {
                let Ok(sample) = procstat::sample(Some(pid)) else {
                    died_at = Some(shared.origin.elapsed().as_secs_f64());
                    break;
                };
                rss.push(RssPoint {
                    t_s: shared.origin.elapsed().as_secs_f64(),
                    rss_bytes: sample.rss_bytes,
                    opened: shared.opened.load(Ordering::Relaxed),
                });
            }
        }
        progress.update(|| progress_line(shared, rss.last()));
        std::thread::sleep(Duration::from_millis(100).min(deadline.saturating_duration_since(now)));
    }
    Watched { rss, died_at }
}

fn progress_line(shared: &Shared, rss: Option<&RssPoint>) -> String {
    let cfg = &shared.config;
    #[allow(clippy::cast_precision_loss)]
    let rss = rss.map_or_else(String::new, |p| {
        format!("  RSS {:.1} MiB", p.rss_bytes as f64 / (1024.0 * 1024.0))
    });
    format!(
        "soak: {:>4.0}/{:.0} s  open {}  opened {}  sent {}  delivered {}  dropped as expected {}{rss}",
        shared.origin.elapsed().as_secs_f64(),
        cfg.settings.duration().as_secs_f64(),
        shared.open.load(Ordering::Relaxed),
        shared.opened.load(Ordering::Relaxed),
        shared.sent.load(Ordering::Relaxed),
        shared.delivered.load(Ordering::Relaxed),
        shared.closed_as_expected.load(Ordering::Relaxed),
    )
}

/// Sleeps until `deadline`, or forever without one (for `select!`).
async fn sleep_until_opt(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the run is stopping (the flag is set or the controller
/// is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        let stopping = *stop.borrow_and_update();
        if stopping || stop.changed().await.is_err() {
            return;
        }
    }
}

/// What one connection of a slow or abusive client saw: the outcome label,
/// whether it is what a correct server does, and a detail for the report.
type Outcome = (String, bool, String);

/// How a slow or abusive client opens its next connection.
struct Plan {
    /// Its category in the disconnect table.
    category: &'static str,
    /// Its room (an index).
    room: u32,
    /// Typed events or plain frames.
    typed: bool,
    /// A small receive pipe (slow clients).
    small_pipe: Option<SmallPipe>,
}

/// A slow or abusive client, one connection at a time.
trait Reconnecting {
    /// Its display name.
    fn name(&self) -> String;

    /// Chooses connection number `cycle`.
    fn plan(&mut self, cycle: u32, rng: &mut fastrand::Rng) -> Plan;

    /// Drives the open connection to its outcome; `None` if the run
    /// stopped first.
    fn attempt(
        &mut self,
        conn: &mut Conn,
        stop: &mut watch::Receiver<bool>,
    ) -> impl Future<Output = Option<Outcome>> + Send;
}

/// The life of a slow or abusive client: after `first_wait`, connection
/// after connection until the run stops, each outcome recorded, with a
/// pause of 0.5 to 1.5 s between them.
async fn reconnecting(
    shared: Arc<Shared>,
    mut client: impl Reconnecting,
    first_wait: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut rng = fastrand::Rng::new();
    if !pause(&mut stop, first_wait).await {
        return;
    }
    let name = client.name();
    for cycle in 0u32.. {
        let plan = client.plan(cycle, &mut rng);
        let room = shared.config.room_name(plan.room);
        let open = Open {
            room: &room,
            typed: plan.typed,
            name: &name,
            small_pipe: plan.small_pipe,
        };
        let (outcome, expected, detail) = match shared.connect(&open).await {
            Ok((mut conn, _open)) => {
                let Some(outcome) = client.attempt(&mut conn, &mut stop).await else {
                    conn.start_close(1000);
                    break;
                };
                outcome
            }
            Err(failed) => failed,
        };
        shared.record(plan.category, &outcome, expected, &detail);
        if !pause(&mut stop, Duration::from_millis(rng.u64(500..1500))).await {
            break;
        }
    }
}

/// Sleeps `duration`, returning early (`false`) if the run stops.
async fn pause(stop: &mut watch::Receiver<bool>, duration: Duration) -> bool {
    tokio::select! {
        () = stopped(stop) => false,
        () = tokio::time::sleep(duration) => true,
    }
}
