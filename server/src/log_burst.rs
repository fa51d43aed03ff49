//! Warnings that can come once per connection or per message (a command
//! to an unreachable Redis, say) are logged at most once per window, with
//! a count of those held back, so that an outage with 10,000 connections
//! is a few log lines, not 10,000.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sync::lock;

/// How often one kind of warning may be logged.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// One kind of warning's log budget: the first of a window is logged, the
/// rest are counted and reported with the next one logged.
#[derive(Debug, Default)]
pub(crate) struct LogBurst {
    state: Mutex<BurstState>,
}

#[derive(Debug, Default)]
struct BurstState {
    last_logged: Option<Instant>,
    held_back: u64,
}

impl LogBurst {
    /// Whether to log this occurrence now: `Some(n)` with the number of
    /// occurrences held back since the last one logged, `None` to stay
    /// quiet (it is counted).
    pub(crate) fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = lock(&self.state);
        let due = state
            .last_logged
            .is_none_or(|last| now.duration_since(last) >= WINDOW);
        if due {
            state.last_logged = Some(now);
            Some(std::mem::take(&mut state.held_back))
        } else {
            state.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_window_is_logged_and_the_rest_are_counted_into_the_next() {
        let burst = LogBurst::default();
        let start = Instant::now();
        assert_eq!(burst.admit(start), Some(0));
        for i in 1..=9_999 {
            assert_eq!(burst.admit(start + Duration::from_micros(i)), None);
        }
        assert_eq!(burst.admit(start + Duration::from_millis(9_999)), None);
        assert_eq!(burst.admit(start + WINDOW), Some(10_000));
        assert_eq!(burst.admit(start + WINDOW), None);
        assert_eq!(burst.admit(start + 2 * WINDOW), Some(1));
    }
}
