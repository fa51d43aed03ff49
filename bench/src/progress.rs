//! The progress line on stderr while a run goes on.
//!
//! On a terminal the line is redrawn in place four times a second; when
//! stderr is a file or a pipe (as under `compare.sh`), a line is written
//! every five seconds so that a log shows the run is alive without
//! filling up.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Throttled progress output.
#[derive(Debug)]
pub struct Progress {
    enabled: bool,
    tty: bool,
    every: Duration,
    last: Option<Instant>,
    drawn: bool,
}

impl Progress {
    /// A progress line, shown only if `enabled`.
    pub fn new(enabled: bool) -> Self {
        let tty = std::io::stderr().is_terminal();
        Self {
            enabled,
            tty,
            every: if tty {
                Duration::from_millis(250)
            } else {
                Duration::from_secs(5)
            },
            last: None,
            drawn: false,
        }
    }

    /// Shows the line that `line` builds, if it is time to.
    pub fn update(&mut self, line: impl FnOnce() -> String) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < self.every)
        {
            return;
        }
        self.last = Some(now);
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[K{}", line());
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{}", line());
        }
        let _ = err.flush();
    }

    /// Clears the line (on a terminal) before the report is printed.
    pub fn finish(&mut self) {
        if self.enabled && self.tty && self.drawn {
            let _ = write!(std::io::stderr(), "\r\x1b[K");
            self.drawn = false;
        }
    }
}
