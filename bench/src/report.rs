//! The figures a run reports, as JSON (`--json`) or as a readable table.
//!
//! Every report serialises to one JSON object with a `workload` tag, so
//! that `compare.sh` can store runs as files and `chat-bench table` can
//! read them back.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::conns::ConnsSettings;
use crate::fanout::FanoutSettings;
use crate::procstat::Sample;

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Latency {
    /// Deliveries measured.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// A new latency histogram: 1 ns to 10 minutes at 3 significant figures.
///
/// # Panics
///
/// Never: the bounds are constants that hdrhistogram accepts.
pub fn new_histogram() -> Histogram<u64> {
    // Constant bounds that hdrhistogram accepts (low >= 1, high >= 2 * low,
    // sigfig <= 5): this cannot fail.
    Histogram::new_with_bounds(1, 600_000_000_000, 3).expect("valid histogram bounds")
}

/// Percentiles of a histogram of nanoseconds.
#[allow(clippy::cast_precision_loss)]
pub fn latency_summary(hist: &Histogram<u64>) -> Latency {
    let us = |ns: u64| ns as f64 / 1000.0;
    if hist.is_empty() {
        return Latency::default();
    }
    Latency {
        count: hist.len(),
        mean_us: hist.mean() / 1000.0,
        p50_us: us(hist.value_at_quantile(0.50)),
        p90_us: us(hist.value_at_quantile(0.90)),
        p99_us: us(hist.value_at_quantile(0.99)),
        p999_us: us(hist.value_at_quantile(0.999)),
        max_us: us(hist.max()),
    }
}

/// Percentiles of latencies in microseconds (sorts them).
#[allow(clippy::cast_precision_loss)]
pub fn latency_of_micros(values: &mut [u32]) -> Latency {
    values.sort_unstable();
    let at = |q: f64| {
        // Nearest rank; `values` is not empty here.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
        f64::from(values[rank - 1])
    };
    if values.is_empty() {
        return Latency::default();
    }
    Latency {
        count: values.len() as u64,
        mean_us: values.iter().map(|&v| f64::from(v)).sum::<f64>() / values.len() as f64,
        p50_us: at(0.50),
        p90_us: at(0.90),
        p99_us: at(0.99),
        p999_us: at(0.999),
        max_us: at(1.0),
    }
}

/// What the server used over the timed phase (from `/proc/PID`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServerUsage {
    /// The server's PID.
    pub pid: u32,
    /// CPU time (user + system) over the timed phase, seconds.
    pub cpu_s: f64,
    /// CPU time per distinct delivery, microseconds.
    pub cpu_us_per_delivery: f64,
    /// Average cores busy over the timed phase.
    pub cpu_cores: f64,
    /// Resident memory before the timed phase, bytes.
    pub rss_before_bytes: u64,
    /// Resident memory after it, bytes.
    pub rss_after_bytes: u64,
    /// Average threads that were ready to run but waited for a CPU (other
    /// processes on its core): above ~0.1 the figures are disturbed.
    #[serde(default)]
    pub waited_cores: f64,
}

impl ServerUsage {
    /// Figures from two samples around a window in which the server made
    /// `deliveries` deliveries.
    #[allow(clippy::cast_precision_loss)]
    pub fn new(pid: u32, before: Sample, after: Sample, window: Duration, deliveries: u64) -> Self {
        let cpu = after.cpu.saturating_sub(before.cpu).as_secs_f64();
        Self {
            pid,
            cpu_s: cpu,
            cpu_us_per_delivery: if deliveries == 0 {
                0.0
            } else {
                cpu * 1e6 / deliveries as f64
            },
            cpu_cores: cpu / window.as_secs_f64().max(1e-9),
            rss_before_bytes: before.rss_bytes,
            rss_after_bytes: after.rss_bytes,
            waited_cores: after
                .run_delay
                .saturating_sub(before.run_delay)
                .as_secs_f64()
                / window.as_secs_f64().max(1e-9),
        }
    }
}

/// What the load generator itself used over the timed phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LoadGenUsage {
    /// Runtime threads.
    pub threads: usize,
    /// CPU time over the timed phase, seconds.
    pub cpu_s: f64,
    /// Average cores busy.
    pub cpu_cores: f64,
    /// Were its threads (nearly) saturated? If so, the server may have had
    /// capacity left and the throughput is the load generator's.
    pub saturated: bool,
    /// Average threads ready to run but waiting for a CPU: a load
    /// generator starved by other processes looks idle yet falls behind.
    #[serde(default)]
    pub waited_cores: f64,
    /// Did it busy-poll (`--busy-poll`)? Then its CPU use is 100 % by
    /// design and says nothing about saturation.
    #[serde(default)]
    pub busy_poll: bool,
}

/// The result of one `fanout` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FanoutReport {
    /// The server's URL.
    pub url: String,
    /// The run's settings (senders resolved).
    #[serde(flatten)]
    pub settings: FanoutSettings,
    /// Messages actually sent.
    pub sent: u64,
    /// `sent × members`: deliveries a correct server makes.
    pub expected_deliveries: u64,
    /// Data frames received, copies included.
    pub deliveries: u64,
    /// Distinct deliveries (each message once per member).
    pub distinct: u64,
    /// Deliveries that never arrived.
    pub lost: u64,
    /// Extra copies received.
    pub duplicated: u64,
    /// First copies received after a later message of the same sender.
    pub out_of_order: u64,
    /// Broken frames, unexpected closes, binary frames, socket errors.
    pub errors: u64,
    /// Messages that were not chat-bench's, or reached the wrong room.
    pub foreign: u64,
    /// The first error, if any (e.g. the server's close code and reason).
    #[serde(default)]
    pub first_error: Option<String>,
    /// Why the timed phase ended: `complete` (every delivery made), `drain`
    /// (nothing more arrived for the drain time) or `max-time` (sending was
    /// cut short by the time limit, then drained).
    pub stopped_by: String,
    /// From the first send to the last delivery, seconds.
    pub duration_s: f64,
    /// Messages sent per second, from the start until the last send.
    pub send_rate: f64,
    /// Distinct deliveries per second over `duration_s`.
    pub deliveries_per_sec: f64,
    /// Latency from send to receipt, every first copy.
    pub latency: Latency,
    /// The server's CPU and memory, when its PID was given.
    pub server: Option<ServerUsage>,
    /// The load generator's CPU.
    pub loadgen: LoadGenUsage,
}

/// The result of one `conns` run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnsReport {
    /// The server's URL.
    pub url: String,
    /// The run's settings.
    #[serde(flatten)]
    pub settings: ConnsSettings,
    /// Connections opened.
    pub opened: u64,
    /// Connections that could not be opened.
    pub failed: u64,
    /// First error seen while opening, if any.
    pub first_error: Option<String>,
    /// Time to open them all, seconds (workers open in parallel).
    pub open_s: f64,
    /// Connections opened per second.
    pub open_rate: f64,
    /// Connections that received their room's probe message after the hold.
    pub probe_received: u64,
    /// Connections that did not (closed, or silent until the probe timeout).
    pub probe_missing: u64,
    /// Of the missing, connections the server had closed (or that failed).
    #[serde(default)]
    pub probe_closed: u64,
    /// The close code and reason of the first connection the server
    /// closed while held or probed, if any.
    #[serde(default)]
    pub probe_first_close: Option<String>,
    /// Time from the probes' send until the last arrived, seconds.
    pub probe_s: f64,
    /// Each connection's probe latency: from its worker's sending the
    /// probes until it received its room's.
    #[serde(default)]
    pub probe_latency: Latency,
    /// Worker processes used.
    pub workers: usize,
    /// The server's PID, when given.
    pub server_pid: Option<u32>,
    /// The server's resident memory before any connection, bytes.
    pub server_rss_before_bytes: Option<u64>,
    /// The server's resident memory with every connection open and idle,
    /// after the hold, bytes.
    pub server_rss_after_bytes: Option<u64>,
    /// `(after - before) / opened`, bytes.
    pub server_rss_per_conn_bytes: Option<f64>,
}

/// A report of either workload, tagged for JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "workload", rename_all = "lowercase")]
pub enum Report {
    /// A `fanout` run.
    Fanout(FanoutReport),
    /// A `conns` run.
    Conns(ConnsReport),
    /// A `soak` run (boxed: it is much larger than the others).
    Soak(Box<crate::soak::report::SoakReport>),
}

/// How much a process waited for a CPU, with a warning when it matters.
fn contention(waited_cores: f64) -> String {
    let note = if waited_cores > 0.1 {
        "  CONTENDED: other processes took its CPU; figures are noisy"
    } else {
        ""
    };
    format!("{waited_cores:.2} threads waiting on average{note}")
}

#[allow(clippy::cast_precision_loss)]
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl FanoutReport {
    /// The report as a readable table.
    pub fn to_table(&self) -> String {
        let l = &self.latency;
        let settings = &self.settings;
        let mut rows = vec![
            ("server", self.url.clone()),
            (
                "workload",
                format!(
                    "{} rooms × {} members, {} senders, {} messages of {} B, {}",
                    settings.rooms,
                    settings.members,
                    settings.senders(),
                    settings.messages,
                    settings.size,
                    match settings.rate {
                        Some(rate) => format!("{rate:.0} msg/s, window {}", settings.window),
                        None => format!("as fast as possible, window {}", settings.window),
                    }
                ),
            ),
            (
                "deliveries/s",
                format!(
                    "{:.0}  ({} in {:.3} s)",
                    self.deliveries_per_sec, self.distinct, self.duration_s
                ),
            ),
            (
                "sent",
                format!("{} ({:.0} msg/s)", self.sent, self.send_rate),
            ),
            (
                "latency",
                format!(
                    "p50 {:.0} µs  p90 {:.0} µs  p99 {:.0} µs  p99.9 {:.0} µs  max {:.0} µs",
                    l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us
                ),
            ),
            (
                "lost / dup / reordered",
                format!(
                    "{} / {} / {}",
                    self.lost, self.duplicated, self.out_of_order
                ),
            ),
            (
                "errors / foreign",
                format!("{} / {}", self.errors, self.foreign),
            ),
            (
                "first error",
                self.first_error
                    .clone()
                    .unwrap_or_else(|| "none".to_owned()),
            ),
            ("stopped by", self.stopped_by.clone()),
        ];
        if let Some(s) = &self.server {
            rows.push((
                "server CPU",
                format!(
                    "{:.3} µs/delivery  ({:.2} s, {:.2} cores)",
                    s.cpu_us_per_delivery, s.cpu_s, s.cpu_cores
                ),
            ));
            rows.push((
                "server RSS",
                format!("{} → {}", mib(s.rss_before_bytes), mib(s.rss_after_bytes)),
            ));
            rows.push(("server CPU wait", contention(s.waited_cores)));
        }
        let g = &self.loadgen;
        rows.push((
            "load generator CPU",
            format!(
                "{:.2} cores on {} thread(s){}{}",
                g.cpu_cores,
                g.threads,
                if g.busy_poll { ", busy polling" } else { "" },
                if g.saturated {
                    "  SATURATED: the figures may be the load generator's"
                } else {
                    ""
                }
            ),
        ));
        rows.push(("load generator CPU wait", contention(g.waited_cores)));
        crate::table::key_values("chat-bench fanout", rows)
    }
}

impl ConnsReport {
    /// The report as a readable table.
    pub fn to_table(&self) -> String {
        let settings = &self.settings;
        let sources: Vec<String> = crate::config::loopback_sources(settings.sources)
            .iter()
            .map(ToString::to_string)
            .collect();
        let mut rows = vec![
            ("server", self.url.clone()),
            (
                "opened",
                format!(
                    "{} of {} ({} failed) in {:.2} s: {:.0} conn/s",
                    self.opened, settings.connections, self.failed, self.open_s, self.open_rate
                ),
            ),
            (
                "held",
                format!(
                    "{:.1} s, {} per room",
                    settings.hold.as_f64(),
                    settings.room_size
                ),
            ),
            (
                "probe",
                format!(
                    "{} received, {} missing of which {} closed ({:.2} s)",
                    self.probe_received, self.probe_missing, self.probe_closed, self.probe_s
                ),
            ),
            (
                "probe latency",
                format!(
                    "p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms",
                    self.probe_latency.p50_us / 1000.0,
                    self.probe_latency.p99_us / 1000.0,
                    self.probe_latency.max_us / 1000.0
                ),
            ),
            (
                "load generator",
                format!(
                    "{} worker process(es), sources {}",
                    self.workers,
                    sources.join(" ")
                ),
            ),
            ("servers", (1 + settings.extra_url.len()).to_string()),
        ];
        if let Some(error) = &self.first_error {
            rows.push(("first error", error.clone()));
        }
        if let Some(close) = &self.probe_first_close {
            rows.push(("first close", close.clone()));
        }
        if let (Some(before), Some(after)) =
            (self.server_rss_before_bytes, self.server_rss_after_bytes)
        {
            rows.push((
                "server RSS",
                format!(
                    "{} → {}  ({:.2} KiB per connection)",
                    mib(before),
                    mib(after),
                    self.server_rss_per_conn_bytes.unwrap_or(0.0) / 1024.0
                ),
            ));
        }
        crate::table::key_values("chat-bench conns", rows)
    }
}

impl Report {
    /// The report as a readable table.
    pub fn to_table(&self) -> String {
        match self {
            Self::Fanout(r) => r.to_table(),
            Self::Conns(r) => r.to_table(),
            Self::Soak(r) => r.to_table(),
        }
    }
}
