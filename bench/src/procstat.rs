//! CPU time, run-queue wait and resident memory of a process, from `/proc`.
//!
//! CPU time is `utime + stime` from `/proc/PID/stat` (every thread of the
//! process, in clock ticks, usually 10 ms); resident memory is `VmRSS`
//! from `/proc/PID/status`. Runs last seconds, so tick resolution is fine.
//!
//! Run-queue wait is the second field of `/proc/PID/task/*/schedstat`,
//! summed over the threads: time a thread was ready to run but waited for
//! a CPU. On a busy machine it shows that a process was starved, which CPU
//! time alone cannot show (a starved load generator looks idle).

use std::time::Duration;

use serde::Serialize;

/// One reading of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Sample {
    /// User plus system CPU time so far.
    pub cpu: Duration,
    /// Resident set size in bytes.
    pub rss_bytes: u64,
    /// Time its threads spent runnable but waiting for a CPU (zero when the
    /// kernel has no schedstat).
    pub run_delay: Duration,
}

/// Reads `/proc/<pid>` (`None` reads this process).
///
/// # Errors
///
/// The process does not exist or its files do not parse.
pub fn sample(pid: Option<u32>) -> std::io::Result<Sample> {
    let dir = match pid {
        Some(pid) => format!("/proc/{pid}"),
        None => "/proc/self".to_owned(),
    };
    let stat = std::fs::read_to_string(format!("{dir}/stat"))?;
    let status = std::fs::read_to_string(format!("{dir}/status"))?;
    let ticks = parse_cpu_ticks(&stat).ok_or_else(|| invalid("/proc/PID/stat"))?;
    let rss_kib = parse_rss_kib(&status).ok_or_else(|| invalid("/proc/PID/status"))?;
    let hz = rustix::param::clock_ticks_per_second().max(1);
    let cpu =
        Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz);
    Ok(Sample {
        cpu,
        rss_bytes: rss_kib * 1024,
        run_delay: run_delay(&dir),
    })
}

/// Sum of the threads' run-queue wait; threads that end meanwhile are
/// skipped.
fn run_delay(dir: &str) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("{dir}/task")) else {
        return Duration::ZERO;
    };
    let ns: u64 = tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|text| parse_run_delay_ns(&text))
        .sum();
    Duration::from_nanos(ns)
}

fn parse_run_delay_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("cannot parse {what}"),
    )
}

/// `utime + stime` in clock ticks: fields 14 and 15, counted after the
/// command name, which may itself hold spaces and parentheses.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn parse_rss_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_ascii_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 1 0 42 1000 200";
        assert_eq!(parse_cpu_ticks(stat), Some(287));
    }

    #[test]
    fn parses_schedstat() {
        assert_eq!(parse_run_delay_ns("123456 7890 12\n"), Some(7890));
        assert_eq!(parse_run_delay_ns(""), None);
    }

    #[test]
    fn parses_rss() {
        let status = "Name:\tnode\nVmPeak:\t  100 kB\nVmRSS:\t   51200 kB\nThreads:\t7\n";
        assert_eq!(parse_rss_kib(status), Some(51200));
    }

    #[test]
    fn reads_this_process() {
        let s = sample(None).unwrap();
        assert!(s.rss_bytes > 0);
        assert!(sample(Some(std::process::id())).is_ok());
    }
}
