//! Sending no faster than the server takes: a token bucket a little inside
//! the limits the server announced in its welcome (`rate` messages a
//! second, `burst` at once), so that a script's burst is slowed down here
//! instead of refused there.

use std::time::Duration;

use chat_protocol::Limits;
use tokio::time::Instant;

/// The share of the server's rate the client uses: the gap absorbs clock
/// and network jitter (two messages sent 1/rate apart can arrive closer).
const RATE_SHARE: f64 = 0.9;

/// A token bucket. `None` from [`Pacer::new`] means no pacing (no limits
/// announced, or no rate limit).
#[derive(Debug, Clone)]
pub struct Pacer {
    /// Tokens a second.
    rate: f64,
    /// The most tokens held.
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl Pacer {
    /// A pacer inside `limits`, full at `now`.
    pub fn new(limits: Option<&Limits>, now: Instant) -> Option<Self> {
        let limits = limits?;
        if !(limits.rate.is_finite() && limits.rate > 0.0) {
            return None;
        }
        // Half the burst: the server's bucket also counts what is still
        // in flight towards it.
        let burst = (f64::from(limits.burst) / 2.0).floor().max(1.0);
        Some(Self {
            rate: limits.rate * RATE_SHARE,
            burst,
            tokens: burst,
            last: now,
        })
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.last = now;
    }

    /// When the next message may go.
    pub fn ready_at(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + Duration::from_secs_f64((1.0 - self.tokens) / self.rate)
        }
    }

    /// One message went.
    pub fn take(&mut self, now: Instant) {
        self.refill(now);
        self.tokens -= 1.0;
    }

    /// The server refused for rate anyway: its bucket is empty, so is ours.
    pub fn refused(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = self.tokens.min(0.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rate: f64, burst: u32) -> Limits {
        Limits {
            rate,
            burst,
            max_message_bytes: 0,
        }
    }

    #[test]
    fn bursts_then_paces_inside_the_servers_rate() {
        let start = Instant::now();
        let mut pacer = Pacer::new(Some(&limits(10.0, 8)), start).unwrap();
        for _ in 0..4 {
            assert_eq!(pacer.ready_at(start), start, "half the burst at once");
            pacer.take(start);
        }
        let next = pacer.ready_at(start);
        let gap = next - start;
        assert!(
            gap > Duration::from_millis(100) && gap < Duration::from_millis(120),
            "then 1/(0.9 rate): {gap:?}"
        );
        // Over a long run, never faster than the server's rate.
        let mut now = next;
        let mut sent = 0u32;
        while now < start + Duration::from_secs(10) {
            now = pacer.ready_at(now);
            pacer.take(now);
            sent += 1;
        }
        assert!(sent <= 4 + 100, "{sent} in 10 s at 10/s");
        assert!(sent >= 85, "and not much slower: {sent}");
    }

    #[test]
    fn no_limits_no_pacing() {
        let now = Instant::now();
        assert!(Pacer::new(None, now).is_none());
        assert!(Pacer::new(Some(&limits(0.0, 10)), now).is_none());
        let mut pacer = Pacer::new(Some(&limits(2.0, 0)), now).unwrap();
        assert_eq!(pacer.ready_at(now), now, "at least one at once");
        pacer.take(now);
        pacer.refused(now);
        assert!(pacer.ready_at(now) > now);
    }
}
