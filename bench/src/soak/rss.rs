//! The server's resident memory over the run, and whether it stayed flat.
//!
//! The soak samples `VmRSS` once a second. The verdict ignores the first
//! third of the run (warm-up: rooms fill their history, the allocator
//! reaches its working set) and compares the **largest** RSS of the last
//! third with the largest of the middle third. It is flat when
//!
//! ```text
//! max(last third) <= max(middle third) × (1 + tolerance) + slack
//! ```
//!
//! with a default tolerance of 10 % and slack of 2 MiB: maxima, because a
//! steady workload with churn has a sawtooth (connections come and go,
//! slow clients hold a full buffer until dropped) whose peaks, not its
//! average, would grow with a leak; the slack absorbs allocator noise on a
//! small server (a few MiB in all). A leak of a few kilobytes per
//! connection shows within minutes: 10 minutes of churn open thousands of
//! connections, and the report adds the growth per connection opened since
//! the warm-up as a finer, informational figure. Under six samples there
//! is no verdict.

use serde::{Deserialize, Serialize};

/// Fewer connections opened after the warm-up than this give no
/// per-connection figure: allocator noise would dominate it.
const MIN_CONNECTIONS: u64 = 100;

/// One reading.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RssPoint {
    /// Seconds since the start of the run.
    pub t_s: f64,
    /// Resident memory, bytes (for a series point: the largest reading of
    /// its window).
    pub rss_bytes: u64,
    /// Connections the soak had opened by then.
    #[serde(default)]
    pub opened: u64,
}

/// The flatness verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RssVerdict {
    /// Readings taken.
    pub samples: usize,
    /// End of the warm-up (the first third), seconds.
    pub warm_until_s: f64,
    /// Largest RSS in the middle third, bytes.
    pub middle_max_bytes: u64,
    /// Largest RSS in the last third, bytes.
    pub last_max_bytes: u64,
    /// The most the last third may reach, bytes.
    pub limit_bytes: u64,
    /// Growth of the last third's maximum over the middle third's, percent.
    pub growth_pct: f64,
    /// That growth divided by the connections opened from the middle
    /// third's start to the end, bytes (informational: a leak per
    /// connection shows here before it breaks the rule).
    #[serde(default)]
    pub growth_per_connection_bytes: Option<f64>,
    /// `Some(true)` when flat, `None` when there are too few readings.
    pub flat: Option<bool>,
}

/// The verdict over `samples` (in time order) with `tolerance` (a
/// fraction: 0.10 is 10 %) and `slack_bytes`.
pub fn verdict(samples: &[RssPoint], tolerance: f64, slack_bytes: u64) -> RssVerdict {
    let n = samples.len();
    let (first, second) = (n / 3, 2 * n / 3);
    let max_of = |range: &[RssPoint]| range.iter().map(|p| p.rss_bytes).max().unwrap_or(0);
    let middle = max_of(&samples[first..second]);
    let last = max_of(&samples[second..]);
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let limit = (middle as f64 * (1.0 + tolerance)) as u64 + slack_bytes;
    #[allow(clippy::cast_precision_loss)]
    let growth_pct = if middle == 0 {
        0.0
    } else {
        (last as f64 - middle as f64) * 100.0 / middle as f64
    };
    let opened = samples
        .last()
        .map_or(0, |p| p.opened)
        .saturating_sub(samples.get(first).map_or(0, |p| p.opened));
    #[allow(clippy::cast_precision_loss)]
    let growth_per_connection_bytes =
        (opened >= MIN_CONNECTIONS).then(|| (last as f64 - middle as f64) / opened as f64);
    RssVerdict {
        samples: n,
        growth_per_connection_bytes,
        warm_until_s: samples.get(first).map_or(0.0, |p| p.t_s),
        middle_max_bytes: middle,
        last_max_bytes: last,
        limit_bytes: limit,
        growth_pct,
        flat: (n >= 6).then_some(last <= limit),
    }
}

/// A compact series: the largest reading of each `every_s` window.
pub fn series(samples: &[RssPoint], every_s: f64) -> Vec<RssPoint> {
    let every_s = every_s.max(1e-3);
    let mut out: Vec<RssPoint> = Vec::new();
    let mut window_end = every_s;
    for point in samples {
        match out.last_mut() {
            Some(last) if point.t_s <= window_end => {
                last.rss_bytes = last.rss_bytes.max(point.rss_bytes);
                last.t_s = point.t_s;
                last.opened = point.opened;
            }
            _ => {
                while point.t_s > window_end {
                    window_end += every_s;
                }
                out.push(*point);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    fn points(values: &[u64]) -> Vec<RssPoint> {
        (1u32..)
            .zip(values)
            .map(|(t, &mib)| RssPoint {
                t_s: f64::from(t),
                rss_bytes: mib * MIB,
                opened: u64::from(t) * 100,
            })
            .collect()
    }

    #[test]
    fn a_warm_up_then_a_plateau_is_flat() {
        let v = verdict(&points(&[5, 20, 30, 30, 31, 30, 32, 31, 30]), 0.10, 2 * MIB);
        assert_eq!(v.flat, Some(true), "{v:?}");
        assert_eq!((v.middle_max_bytes, v.last_max_bytes), (31 * MIB, 32 * MIB));
        assert!((v.warm_until_s - 4.0).abs() < 1e-9);
        // 1 MiB more over the 500 connections opened from t = 4 s to 9 s.
        let per = v.growth_per_connection_bytes.unwrap();
        assert!((per - 1024.0 * 1024.0 / 500.0).abs() < 1e-6, "{per}");
    }

    #[test]
    fn steady_growth_is_not_flat() {
        let values: Vec<u64> = (0..30).map(|i| 20 + i).collect();
        let v = verdict(&points(&values), 0.10, 2 * MIB);
        assert_eq!(v.flat, Some(false), "{v:?}");
        assert!(v.growth_pct > 10.0);
    }

    #[test]
    fn too_few_samples_give_no_verdict() {
        assert_eq!(verdict(&points(&[1, 2, 3]), 0.1, 0).flat, None);
        assert_eq!(verdict(&[], 0.1, 0).flat, None);
    }

    #[test]
    fn series_keeps_the_peak_of_each_window() {
        let s = series(&points(&[1, 5, 2, 2, 9, 3, 4]), 3.0);
        let mib: Vec<u64> = s.iter().map(|p| p.rss_bytes / MIB).collect();
        assert_eq!(mib, vec![5, 9, 4]);
    }
}
