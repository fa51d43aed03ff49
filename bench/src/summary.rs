//! `chat-bench table`: the comparison table from a folder of JSON reports.
//!
//! `compare.sh` stores each run as `DIR/<server>/<workload>-<run>.json`
//! (the `--json` output) and, for a server that could not be installed or
//! started, a `DIR/<server>/FAILED` file with the reason. This module reads
//! them back, takes the median of every figure over the runs, and prints
//! one Markdown table: a column per server, and our ratio to each peer,
//! oriented so that a ratio above 1 always means ours is better.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::Context as _;

use crate::report::Report;

/// One figure of one run.
#[derive(Debug, Clone, Copy)]
struct Figure {
    name: &'static str,
    value: f64,
    /// Is a higher value better (throughput) or a lower one (CPU, latency)?
    higher_is_better: bool,
    /// Decimal places to print.
    decimals: usize,
    /// Is a ratio meaningful (a performance figure), or is this a check
    /// (loss, errors) or a diagnostic (load-generator CPU, CPU wait)?
    ratio: bool,
}

/// A figure shown without a ratio.
const fn check(name: &'static str, value: f64, decimals: usize) -> Figure {
    Figure {
        name,
        value,
        higher_is_better: false,
        decimals,
        ratio: false,
    }
}

const fn fig(name: &'static str, value: f64, higher_is_better: bool, decimals: usize) -> Figure {
    Figure {
        name,
        value,
        higher_is_better,
        decimals,
        ratio: true,
    }
}

/// The figures the table shows for a report.
#[allow(clippy::cast_precision_loss)]
fn figures(report: &Report) -> Vec<Figure> {
    match report {
        Report::Fanout(r) => {
            let mut out = Vec::new();
            if r.settings.rate.is_some() {
                out.push(fig("latency p50 (ms)", r.latency.p50_us / 1000.0, false, 2));
                out.push(fig("latency p99 (ms)", r.latency.p99_us / 1000.0, false, 2));
                out.push(fig("latency max (ms)", r.latency.max_us / 1000.0, false, 1));
            }
            out.push(fig("deliveries/s", r.deliveries_per_sec, true, 0));
            if let Some(s) = &r.server {
                out.push(fig(
                    "server CPU µs/delivery",
                    s.cpu_us_per_delivery,
                    false,
                    2,
                ));
                out.push(check("server CPU cores", s.cpu_cores, 2));
                out.push(check("server CPU wait (threads)", s.waited_cores, 2));
            }
            let faults = r.lost + r.duplicated + r.out_of_order;
            out.push(check("lost+dup+reordered", faults as f64, 0));
            out.push(check("errors", r.errors as f64, 0));
            out.push(check("load-gen CPU cores", r.loadgen.cpu_cores, 2));
            out.push(check(
                "load-gen CPU wait (threads)",
                r.loadgen.waited_cores,
                2,
            ));
            out
        }
        Report::Conns(r) => {
            let mut out = vec![
                check("opened", r.opened as f64, 0),
                fig("open rate (conn/s)", r.open_rate, true, 0),
            ];
            if let Some(per) = r.server_rss_per_conn_bytes {
                out.push(fig("server RSS KiB/conn", per / 1024.0, false, 1));
            }
            out.push(check("probe missing", r.probe_missing as f64, 0));
            if r.probe_latency.count > 0 {
                out.push(check("probe p99 (ms)", r.probe_latency.p99_us / 1000.0, 1));
            }
            out
        }
        Report::Soak(r) => {
            let loss = &r.well_behaved.loss;
            let mut out = vec![check(
                "lost+dup+reordered",
                (loss.lost + loss.duplicated + loss.out_of_order) as f64,
                0,
            )];
            if let Some(server) = &r.server {
                out.push(check("RSS growth %", server.rss.growth_pct, 1));
            }
            out
        }
    }
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        values[n / 2]
    } else {
        f64::midpoint(values[n / 2 - 1], values[n / 2])
    }
}

/// Figures gathered for one (workload, metric): per server, every run's value.
#[derive(Debug, Default)]
struct Row {
    higher_is_better: bool,
    ratio: bool,
    decimals: usize,
    values: BTreeMap<String, Vec<f64>>,
}

/// The order workloads are shown in (others follow, as first seen).
const WORKLOAD_ORDER: [&str; 5] = [
    "pipelined-1x1000",
    "pipelined-100x10",
    "shared-100x10",
    "paced-100x10",
    "conns",
];

/// Every figure of a folder of reports: per (workload, figure), every
/// run's value per server.
#[derive(Debug)]
pub struct Summary {
    /// Servers in column order, ours first.
    pub columns: Vec<String>,
    /// (workload, figure) in display order.
    order: Vec<(String, &'static str)>,
    rows: BTreeMap<(String, &'static str), Row>,
    runs: BTreeMap<(String, String), usize>,
    notes: Vec<String>,
}

/// Builds the table from `dir`; `servers` orders the columns (ours first).
///
/// # Errors
///
/// `dir` cannot be read, or a report in it does not parse.
pub fn table(dir: &Path, servers: &[String]) -> anyhow::Result<String> {
    Ok(Summary::read(dir, servers)?.to_markdown())
}

impl Summary {
    /// Reads every report of `dir`; `servers` orders the columns.
    ///
    /// # Errors
    ///
    /// `dir` or a file in it cannot be read.
    pub fn read(dir: &Path, servers: &[String]) -> anyhow::Result<Self> {
        // (workload, metric) in first-seen order.
        let mut order: Vec<(String, &'static str)> = Vec::new();
        let mut rows: BTreeMap<(String, &'static str), Row> = BTreeMap::new();
        let mut runs: BTreeMap<(String, String), usize> = BTreeMap::new();
        let mut notes = Vec::new();
        let mut present: Vec<String> = Vec::new();

        let mut server_dirs: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .collect();
        server_dirs.sort_by_key(std::fs::DirEntry::file_name);
        for server_dir in server_dirs {
            let server = server_dir.file_name().to_string_lossy().into_owned();
            let failed = std::fs::read_to_string(server_dir.path().join("FAILED")).ok();
            let mut files: Vec<_> = std::fs::read_dir(server_dir.path())?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect();
            // Not a server's folder (the `charts` written next to them).
            if files.is_empty() && failed.is_none() {
                continue;
            }
            present.push(server.clone());
            if let Some(reason) = failed {
                notes.push(format!("- {server}: {}", reason.trim()));
            }
            files.sort();
            for file in files {
                let stem = file
                    .file_stem()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .into_owned();
                let workload = stem
                    .rsplit_once('-')
                    .map_or(stem.as_str(), |(w, _)| w)
                    .to_owned();
                let text = std::fs::read_to_string(&file)?;
                let report: Report = match serde_json::from_str(&text) {
                    Ok(report) => report,
                    Err(error) => {
                        // An interrupted run leaves an empty or partial file.
                        notes.push(format!(
                            "- {server}: {} is not a report ({error})",
                            file.display()
                        ));
                        continue;
                    }
                };
                *runs.entry((workload.clone(), server.clone())).or_default() += 1;
                for f in figures(&report) {
                    let key = (workload.clone(), f.name);
                    if !rows.contains_key(&key) {
                        order.push(key.clone());
                    }
                    let row = rows.entry(key).or_default();
                    row.higher_is_better = f.higher_is_better;
                    row.ratio = f.ratio;
                    row.decimals = f.decimals;
                    row.values.entry(server.clone()).or_default().push(f.value);
                }
            }
        }

        let mut columns: Vec<String> = servers
            .iter()
            .filter(|s| present.contains(s))
            .cloned()
            .collect();
        for server in &present {
            if !columns.contains(server) {
                columns.push(server.clone());
            }
        }
        let rank = |w: &str| {
            WORKLOAD_ORDER
                .iter()
                .position(|&k| k == w)
                .unwrap_or(WORKLOAD_ORDER.len())
        };
        // A stable sort: figures keep their order within a workload.
        order.sort_by_key(|(w, _)| rank(w));
        Ok(Self {
            columns,
            order,
            rows,
            runs,
            notes,
        })
    }

    /// The workloads, in display order.
    pub fn workloads(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for (w, _) in &self.order {
            if out.last() != Some(&w.as_str()) {
                out.push(w);
            }
        }
        out
    }

    /// The median of `figure` in `workload` for `server`, if measured.
    pub fn median(&self, workload: &str, figure: &str, server: &str) -> Option<f64> {
        let row = self
            .rows
            .iter()
            .find(|((w, f), _)| w == workload && *f == figure)?
            .1;
        Some(median(&mut row.values.get(server)?.clone()))
    }

    /// The comparison as a Markdown table with notes below.
    pub fn to_markdown(&self) -> String {
        let Self {
            columns,
            order,
            rows,
            runs,
            notes,
        } = self;
        let ours = columns.first().cloned().unwrap_or_default();
        let peers: Vec<&String> = columns.iter().skip(1).collect();

        let mut header = vec!["workload".to_owned(), "figure".to_owned()];
        header.extend(columns.iter().cloned());
        header.extend(peers.iter().map(|p| format!("{ours} vs {p}")));
        let right: Vec<usize> = (2..header.len()).collect();
        let mut lines = Vec::new();
        let mut last_workload = "";
        for key in order {
            let row = &rows[key];
            let shown = if key.0 == last_workload { "" } else { &key.0 };
            last_workload = &key.0;
            let mut line = vec![shown.to_owned(), key.1.to_owned()];
            let medians: BTreeMap<&String, f64> = row
                .values
                .iter()
                .map(|(server, values)| (server, median(&mut values.clone())))
                .collect();
            for c in columns {
                line.push(
                    medians
                        .get(c)
                        .map_or_else(|| "–".to_owned(), |&m| format_value(m, row.decimals)),
                );
            }
            for p in &peers {
                line.push(match (medians.get(&ours), medians.get(*p)) {
                    (Some(&o), Some(&v)) if row.ratio && o > 0.0 && v > 0.0 => {
                        let r = if row.higher_is_better { o / v } else { v / o };
                        format!("{r:.2}×")
                    }
                    _ => "–".to_owned(),
                });
            }
            lines.push(line);
        }
        let mut out = crate::table::markdown(&header, lines, &right);
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "Medians over the runs of each workload; a ratio above 1 means {ours} is better \
         (more deliveries or connections per second, less CPU, latency or memory)."
        );
        let counts: Vec<String> = runs
            .iter()
            .map(|((w, s), n)| format!("{s}/{w}: {n}"))
            .collect();
        let _ = writeln!(out, "Runs: {}.", counts.join(", "));
        if !notes.is_empty() {
            let _ = writeln!(
                out,
                "\nFailures (whole servers or single runs):\n{}",
                notes.join("\n")
            );
        }
        out
    }
}

fn format_value(value: f64, decimals: usize) -> String {
    if !value.is_finite() {
        return "–".to_owned();
    }
    let text = format!("{value:.decimals$}");
    if decimals > 0 {
        return text;
    }
    // Thousands separators for the big integers (deliveries per second).
    let (sign, digits) = text
        .strip_prefix('-')
        .map_or(("", text.as_str()), |d| ("-", d));
    let mut grouped = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(c);
    }
    format!("{sign}{grouped}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_grouping() {
        assert!((median(&mut [3.0, 1.0, 2.0]) - 2.0).abs() < f64::EPSILON);
        assert!((median(&mut [4.0, 1.0, 2.0, 3.0]) - 2.5).abs() < f64::EPSILON);
        assert_eq!(format_value(1_234_567.0, 0), "1,234,567");
        assert_eq!(format_value(999.0, 0), "999");
        assert_eq!(format_value(2.345, 2), "2.35");
    }

    /// The charts folder `compare.sh` writes next to the servers' folders
    /// is not read as a server with no runs.
    #[test]
    fn a_folder_without_reports_is_not_a_server() {
        let dir = std::env::temp_dir().join(format!("chat-bench-summary-{}", std::process::id()));
        // A real `conns` report, from a compare run.
        let report = r#"{"workload":"conns","url":"ws://127.0.0.1:51919","connections":19000,
            "room_size":100,"per_worker":10000,"sources":4,"hold":5.0,"probe_timeout":60.0,
            "connect_concurrency":128,"in_process":false,"extra_url":[],
            "extra_server_pid":[],"opened":19000,"failed":0,"first_error":null,
            "open_s":1.385377467,"open_rate":13714.673764070973,"probe_received":19000,
            "probe_missing":0,"probe_closed":0,"probe_first_close":null,
            "probe_s":0.191015032,"probe_latency":{"count":19000,
            "mean_us":121340.20605263158,"p50_us":128436.0,"p90_us":179240.0,
            "p99_us":187095.0,"p999_us":187840.0,"max_us":187922.0},"workers":2,
            "server_pid":11611,"server_rss_before_bytes":7819264,
            "server_rss_after_bytes":34775040,"server_rss_per_conn_bytes":1418.725052631579}"#;
        std::fs::create_dir_all(dir.join("ours")).unwrap();
        std::fs::create_dir_all(dir.join("theirs")).unwrap();
        std::fs::create_dir_all(dir.join("charts")).unwrap();
        std::fs::write(dir.join("ours/conns-1.json"), report).unwrap();
        std::fs::write(dir.join("theirs/FAILED"), "did not start\n").unwrap();
        std::fs::write(dir.join("charts/cpu.svg"), "<svg/>").unwrap();
        let summary = Summary::read(&dir, &["ours".to_owned()]);
        std::fs::remove_dir_all(&dir).unwrap();
        let summary = summary.unwrap();
        assert_eq!(summary.columns, ["ours", "theirs"]);
        assert!(
            summary
                .notes
                .iter()
                .all(|note| !note.contains("not a report")),
            "{:?}",
            summary.notes
        );
    }
}
