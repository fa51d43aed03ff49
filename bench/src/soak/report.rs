//! The soak's report: figures, the disconnect table, the RSS series and
//! verdict, and the list of failures that decides the exit status.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ledger::{self, Loss};
use super::metrics::ServerView;
use super::rss::{self, RssPoint, RssVerdict};
use super::tally::{self, DisconnectRow};
use super::{SLOW, Shared, SoakConfig, SoakSettings, lock};
use crate::procstat::Sample;
use crate::report::{Latency, latency_summary};

/// Counts of the well-behaved clients.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WellBehaved {
    /// Connections opened (sessions).
    pub connections: u64,
    /// Clean leaves of churners (each followed by a join elsewhere).
    pub churn_leaves: u64,
    /// Messages sent.
    pub sent: u64,
    /// Messages received (first copies, own echoes included).
    pub received: u64,
    /// Own messages refused by the rate limit (`error` events).
    pub refused: u64,
    /// Frames that were not the expected events (unparseable, a second
    /// welcome, an `error` other than the rate limit, binary).
    pub errors: u64,
    /// Chat messages whose text was not chat-bench's.
    pub foreign: u64,
    /// Messages of abusive clients relayed to well-behaved members.
    pub abuse_seen: u64,
    /// The loss decision (see [`ledger`]).
    #[serde(default)]
    pub loss: Loss,
    /// Send-to-receipt latency of every first copy.
    #[serde(default)]
    pub latency: Latency,
}

impl WellBehaved {
    /// Adds a session's counts.
    pub fn add(&mut self, other: &Self) {
        self.connections += other.connections;
        self.churn_leaves += other.churn_leaves;
        self.sent += other.sent;
        self.received += other.received;
        self.refused += other.refused;
        self.errors += other.errors;
        self.foreign += other.foreign;
        self.abuse_seen += other.abuse_seen;
    }
}

/// The server as seen from `/proc`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakServer {
    /// Its PID.
    pub pid: u32,
    /// Step of `rss_series`, seconds.
    pub rss_every_s: f64,
    /// RSS over time: the peak of each step.
    pub rss_series: Vec<RssPoint>,
    /// Whether RSS stayed flat once warm.
    pub rss: RssVerdict,
    /// CPU time (user + system) over the run, seconds.
    pub cpu_s: Option<f64>,
    /// Average cores busy.
    pub cpu_cores: Option<f64>,
    /// The process was still there at the end.
    pub alive: bool,
}

impl SoakServer {
    /// Figures from the RSS readings and the CPU samples around the run.
    pub fn new(
        pid: u32,
        samples: &[RssPoint],
        config: &SoakConfig,
        cpu: Option<(Sample, Sample)>,
        elapsed: Duration,
        alive: bool,
    ) -> Self {
        let settings = &config.settings;
        let every = settings.rss_every.map_or_else(
            || (settings.duration().as_secs_f64() / 30.0).ceil().max(1.0),
            |d| d.as_f64().max(1.0),
        );
        let cpu_s = cpu.map(|(before, after)| after.cpu.saturating_sub(before.cpu).as_secs_f64());
        Self {
            pid,
            rss_every_s: every,
            rss_series: rss::series(samples, every),
            rss: rss::verdict(
                samples,
                settings.rss_tolerance_fraction(),
                settings.rss_slack_bytes(),
            ),
            cpu_s,
            cpu_cores: cpu_s.map(|s| s / elapsed.as_secs_f64().max(1e-9)),
            alive,
        }
    }
}

/// Smallest, median and largest of some durations, seconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Spread {
    /// Smallest.
    pub min_s: f64,
    /// Median.
    pub median_s: f64,
    /// Largest.
    pub max_s: f64,
}

impl Spread {
    fn of(mut values: Vec<f64>) -> Option<Self> {
        values.sort_by(f64::total_cmp);
        Some(Self {
            min_s: *values.first()?,
            median_s: values[values.len() / 2],
            max_s: *values.last()?,
        })
    }
}

/// The result of one `soak` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakReport {
    /// The server's URL.
    pub url: String,
    /// The run's planned length, seconds.
    pub planned_s: f64,
    /// The run's actual length (wind-down included), seconds.
    pub duration_s: f64,
    /// The run's settings.
    pub setup: SoakSettings,
    /// Connections opened, every kind.
    pub connections_opened: u64,
    /// The well-behaved clients' figures.
    pub well_behaved: WellBehaved,
    /// How long the server took to drop a slow client.
    pub slow_dropped_after: Option<Spread>,
    /// How connections ended, by category, as the clients saw it.
    pub disconnects: Vec<DisconnectRow>,
    /// RSS and CPU, with `--server-pid`.
    pub server: Option<SoakServer>,
    /// The server's own counts (from `/metrics`) over the run.
    pub server_view: Option<ServerView>,
    /// `/healthz` answered 200 at the end.
    pub healthz_ok: Option<bool>,
    /// What failed; empty when the run passed.
    pub failures: Vec<String>,
}

/// Assembles the report once every client has stopped.
pub(super) fn build(
    shared: &Shared,
    elapsed: Duration,
    server: Option<SoakServer>,
    server_view: Option<ServerView>,
    healthz_ok: Option<bool>,
    died_at: Option<f64>,
    wound_down: bool,
) -> SoakReport {
    let cfg = &shared.config;
    let mut well_behaved = lock(&shared.counters).clone();
    well_behaved.loss = ledger::reconcile(&lock(&shared.streams), &lock(&shared.members));
    well_behaved.latency = latency_summary(&lock(&shared.latency));
    let disconnects = lock(&shared.tally).rows();
    let mut report = SoakReport {
        url: cfg.server.url.clone(),
        planned_s: cfg.settings.duration().as_secs_f64(),
        duration_s: elapsed.as_secs_f64(),
        setup: cfg.settings.clone(),
        connections_opened: shared.opened.load(Ordering::Relaxed),
        well_behaved,
        slow_dropped_after: Spread::of(lock(&shared.slow_drops).clone()),
        disconnects,
        server,
        server_view,
        healthz_ok,
        failures: Vec::new(),
    };
    report.failures = failures(&report, died_at, wound_down);
    report
}

/// Everything that makes the run fail.
fn failures(report: &SoakReport, died_at: Option<f64>, wound_down: bool) -> Vec<String> {
    let mut out = Vec::new();
    let wb = &report.well_behaved;
    let loss = &wb.loss;
    if !loss.is_clean() {
        let mut text = format!(
            "well-behaved clients: {} lost ({} of them unechoed), {} duplicated, {} out of order, \
             {} id regressions, {} early, {} misrouted, {} from unknown streams",
            loss.lost,
            loss.unechoed,
            loss.duplicated,
            loss.out_of_order,
            loss.id_regressions,
            loss.early,
            loss.misrouted,
            loss.unknown_stream
        );
        if let Some(first) = loss.examples.first() {
            let _ = write!(text, "; first: {first}");
        }
        out.push(text);
    }
    if wb.refused > 0 {
        out.push(format!(
            "{} well-behaved messages were refused by the rate limit",
            wb.refused
        ));
    }
    if wb.errors > 0 {
        out.push(format!(
            "well-behaved clients received {} unexpected frames",
            wb.errors
        ));
    }
    for row in tally::unexpected(&report.disconnects) {
        out.push(format!(
            "{}: {} connection(s) ended with '{}' ({})",
            row.category, row.count, row.outcome, row.example
        ));
    }
    if let Some(server) = &report.server {
        if server.rss.flat == Some(false) {
            out.push(format!(
                "server RSS not flat once warm: the last third peaked at {}, over the limit {} \
                 (middle third's peak {} + tolerance + slack; growth {:.1} %)",
                mib(server.rss.last_max_bytes),
                mib(server.rss.limit_bytes),
                mib(server.rss.middle_max_bytes),
                server.rss.growth_pct
            ));
        }
    }
    if let Some(at) = died_at {
        out.push(format!("the server process exited {at:.0} s into the run"));
    }
    if report.healthz_ok == Some(false) {
        out.push("the server did not answer /healthz with 200 after the run".into());
    }
    if !wound_down {
        out.push("clients did not finish within 30 s after the run's end".into());
    }
    out
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl SoakReport {
    /// Whether the run passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }

    /// Expected outcomes (drops, closes) of slow clients.
    pub fn slow_dropped(&self) -> u64 {
        tally::expected_count(&self.disconnects, SLOW)
    }

    /// Expected outcomes of abusive clients of `category`.
    pub fn abuse_answered(&self, category: &str) -> u64 {
        tally::expected_count(&self.disconnects, category)
    }

    /// The report as a readable table.
    #[allow(clippy::cast_precision_loss)]
    pub fn to_table(&self) -> String {
        let wb = &self.well_behaved;
        let loss = &wb.loss;
        let s = &self.setup;
        let mut rows = vec![
            ("server", self.url.clone()),
            (
                "duration",
                format!(
                    "{:.0} s planned, {:.1} s with wind-down",
                    self.planned_s, self.duration_s
                ),
            ),
            (
                "clients",
                format!(
                    "{} rooms × {} members ({:.0} % churn every ~{} s, {}-{} msg/s, {} B; \
                     {} busy rooms of {} B), {} slow, {} abusive",
                    s.rooms,
                    s.members,
                    s.churn * 100.0,
                    s.churn_every,
                    s.rate_min,
                    s.rate_max,
                    s.size,
                    s.busy_rooms,
                    s.busy_size,
                    s.slow,
                    s.abusers
                ),
            ),
            ("connections opened", self.connections_opened.to_string()),
            (
                "well-behaved",
                format!(
                    "{} connections, {} churn leaves, {} sent, {} received",
                    wb.connections, wb.churn_leaves, wb.sent, wb.received
                ),
            ),
            (
                "  deliveries owed/made",
                format!("{} / {}", loss.expected, loss.delivered),
            ),
            (
                "  lost / dup / reordered",
                format!(
                    "{} / {} / {}{}",
                    loss.lost,
                    loss.duplicated,
                    loss.out_of_order,
                    if loss.is_clean() { "" } else { "  FAIL" }
                ),
            ),
            (
                "  other checks",
                format!(
                    "unechoed {}, unconfirmed {}, id regressions {}, early {}, misrouted {}, \
                     unknown {}, refused {}, bad frames {}",
                    loss.unechoed,
                    loss.unconfirmed,
                    loss.id_regressions,
                    loss.early,
                    loss.misrouted,
                    loss.unknown_stream,
                    wb.refused,
                    wb.errors
                ),
            ),
            (
                "  latency",
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    wb.latency.p50_us / 1000.0,
                    wb.latency.p99_us / 1000.0,
                    wb.latency.max_us / 1000.0
                ),
            ),
            (
                "  abusers' messages seen",
                format!("{} (foreign {})", wb.abuse_seen, wb.foreign),
            ),
        ];
        if let Some(spread) = &self.slow_dropped_after {
            rows.push((
                "slow clients dropped",
                format!(
                    "after {:.1} s (min) / {:.1} s (median) / {:.1} s (max)",
                    spread.min_s, spread.median_s, spread.max_s
                ),
            ));
        }
        if let Some(view) = &self.server_view {
            let list = |map: &std::collections::BTreeMap<String, u64>| {
                let items: Vec<String> = map.iter().map(|(k, v)| format!("{k} {v}")).collect();
                if items.is_empty() {
                    "none".to_owned()
                } else {
                    items.join(", ")
                }
            };
            rows.push(("server's disconnects", list(&view.disconnects)));
            rows.push(("server's refusals", list(&view.refusals)));
            rows.push((
                "server's counts",
                format!(
                    "rate limited {}, connections {}, messages in {} / out {}",
                    view.rate_limited, view.connections_opened, view.messages_in, view.messages_out
                ),
            ));
        }
        if let Some(server) = &self.server {
            let series: Vec<String> = server
                .rss_series
                .iter()
                .map(|p| format!("{:.1}", p.rss_bytes as f64 / (1024.0 * 1024.0)))
                .collect();
            rows.push((
                "server RSS (MiB)",
                format!(
                    "peak of every {:.0} s: {}",
                    server.rss_every_s,
                    series.join(" ")
                ),
            ));
            let v = &server.rss;
            rows.push((
                "RSS verdict",
                format!(
                    "{}: last third peak {} vs middle third {} (limit {}, {:+.1} %)",
                    match v.flat {
                        Some(true) => "flat once warm",
                        Some(false) => "GROWING",
                        None => "no verdict (too few samples)",
                    },
                    mib(v.last_max_bytes),
                    mib(v.middle_max_bytes),
                    mib(v.limit_bytes),
                    v.growth_pct
                ),
            ));
            if let Some(per) = v.growth_per_connection_bytes {
                rows.push((
                    "RSS growth once warm",
                    format!("{per:+.0} B per connection opened since the warm-up"),
                ));
            }
            if let (Some(cpu), Some(cores)) = (server.cpu_s, server.cpu_cores) {
                rows.push(("server CPU", format!("{cpu:.1} s ({cores:.2} cores)")));
            }
            let healthz = match self.healthz_ok {
                Some(true) => ", /healthz 200",
                Some(false) => ", /healthz FAILED",
                None => "",
            };
            let alive = if server.alive { "yes" } else { "NO" };
            rows.push(("server alive", format!("{alive}{healthz}")));
        }
        let disconnects = self
            .disconnects
            .iter()
            .map(|d| {
                let unexpected = if d.expected { "" } else { "UNEXPECTED" };
                vec![
                    d.category.clone(),
                    d.outcome.clone(),
                    d.count.to_string(),
                    unexpected.to_owned(),
                    d.example.clone(),
                ]
            })
            .collect();
        let mut out = crate::table::key_values("chat-bench soak", rows);
        out.push_str(&crate::table::grid(
            "disconnects (client view)",
            &["category", "outcome", "count", "", "example"],
            disconnects,
            &[2],
        ));
        let verdict = if self.failures.is_empty() {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(out, "verdict: {verdict}");
        for failure in &self.failures {
            let _ = writeln!(out, "  - {failure}");
        }
        out
    }
}
