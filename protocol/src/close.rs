//! Close codes the server sends, and what a client should do after each.
//!
//! | code | name              | when the server sends it                        | reconnect?                        |
//! |------|-------------------|-------------------------------------------------|-----------------------------------|
//! | 1000 | normal            | the client asked to close                        | no                                |
//! | 1001 | going away        | the server is shutting down or restarting; keepalive timeout | yes, after a random 1-5 s, backoff |
//! | 1002 | protocol error    | the client broke the WebSocket protocol          | no: fix the client                |
//! | 1003 | unsupported data  | the client sent a binary frame                   | no: fix the client                |
//! | 1007 | invalid payload   | invalid UTF-8, or (plain clients) a frame that is not `{"message": string}` | no: fix the client |
//! | 1008 | policy violation  | rate limit exceeded, or too slow to keep up      | yes, not before 10 s              |
//! | 1009 | message too big   | a frame over the server's size limit             | yes, at once; do not resend it    |
//! | 1011 | internal error    | a server fault                                   | yes, with backoff                 |
//! | 1013 | try again later   | the server, or the room, is full                 | yes, not before 5 s, backoff      |
//!
//! Refusals before the upgrade are HTTP statuses: 400 (bad room or name:
//! do not retry), 401 (token required), 403 (origin not allowed), 409 (the
//! display name is someone else's in this room: pick another), 429 (too
//! many connections from this address) and 503 (server full): see
//! [`Advice::for_http_status`].

use std::time::Duration;

/// Normal closure.
pub const NORMAL: u16 = 1000;
/// The server is going away (shutdown, restart).
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol.
pub const PROTOCOL_ERROR: u16 = 1002;
/// The client sent data the server does not accept (binary frames).
pub const UNSUPPORTED_DATA: u16 = 1003;
/// The client sent a malformed payload.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client broke a policy: rate limit, or too slow to keep up.
pub const POLICY_VIOLATION: u16 = 1008;
/// The client sent a frame over the size limit.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The server hit an internal error.
pub const INTERNAL_ERROR: u16 = 1011;
/// The server (or room) is full: try again later.
pub const TRY_AGAIN_LATER: u16 = 1013;

/// What a client should do after losing its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Advice {
    /// Do not reconnect by yourself: the refusal will repeat (a bad name,
    /// a client bug, a missing token).
    Stop,
    /// Reconnect, waiting at least `min_delay` (plus jitter) and backing off
    /// if it happens again.
    Reconnect {
        /// The shortest wait before the next attempt.
        min_delay: Duration,
    },
}

impl Advice {
    /// The advice for a close code received from the server; `None` (the
    /// connection dropped without a close frame) means reconnect with backoff.
    pub fn for_close_code(code: Option<u16>) -> Self {
        let reconnect = |secs| Self::Reconnect {
            min_delay: Duration::from_secs(secs),
        };
        match code {
            Some(NORMAL | PROTOCOL_ERROR | UNSUPPORTED_DATA | INVALID_PAYLOAD) => Self::Stop,
            Some(GOING_AWAY) => reconnect(1),
            Some(POLICY_VIOLATION) => reconnect(10),
            Some(TRY_AGAIN_LATER) => reconnect(5),
            _ => reconnect(0),
        }
    }

    /// The advice for an HTTP status refusing the upgrade.
    pub fn for_http_status(status: u16) -> Self {
        match status {
            400..=428 | 430..=499 => Self::Stop,
            429 => Self::Reconnect {
                min_delay: Duration::from_secs(10),
            },
            503 => Self::Reconnect {
                min_delay: Duration::from_secs(5),
            },
            _ => Self::Reconnect {
                min_delay: Duration::ZERO,
            },
        }
    }
}

/// Exponential backoff with full jitter, for reconnect loops.
///
/// Each [`Backoff::next_delay`] doubles the ceiling (from `base` up to
/// `cap`) and picks a random delay between half the ceiling and the
/// ceiling, so that clients dropped together do not return together.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    rng: fastrand::Rng,
}

impl Backoff {
    /// A backoff from `base` doubling up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Self {
        Self {
            base,
            cap,
            attempt: 0,
            rng: fastrand::Rng::new(),
        }
    }

    /// The backoff chat clients use: 0.5 s doubling up to 30 s.
    pub fn for_clients() -> Self {
        Self::new(Duration::from_millis(500), Duration::from_secs(30))
    }

    /// The delay before the next attempt, at least `min_delay`.
    pub fn next_delay(&mut self, min_delay: Duration) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << self.attempt.min(16))
            .min(self.cap);
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        let jitter = half.mul_f64(self.rng.f64());
        (half + jitter).max(min_delay.saturating_add(jitter / 4))
    }

    /// How many delays were handed out since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }

    /// Start again from `base` (after a successful connection).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_follows_the_table() {
        assert_eq!(Advice::for_close_code(Some(NORMAL)), Advice::Stop);
        assert_eq!(Advice::for_close_code(Some(UNSUPPORTED_DATA)), Advice::Stop);
        assert!(matches!(
            Advice::for_close_code(Some(GOING_AWAY)),
            Advice::Reconnect { .. }
        ));
        assert_eq!(
            Advice::for_close_code(Some(POLICY_VIOLATION)),
            Advice::Reconnect {
                min_delay: Duration::from_secs(10)
            }
        );
        assert_eq!(
            Advice::for_close_code(None),
            Advice::Reconnect {
                min_delay: Duration::ZERO
            }
        );
        assert_eq!(Advice::for_http_status(400), Advice::Stop);
        assert_eq!(Advice::for_http_status(403), Advice::Stop);
        assert!(matches!(
            Advice::for_http_status(503),
            Advice::Reconnect { .. }
        ));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<_> = (0..10)
            .map(|_| backoff.next_delay(Duration::ZERO))
            .collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[9] >= Duration::from_secs(1), "{delays:?}");
        backoff.reset();
        assert!(backoff.next_delay(Duration::ZERO) <= Duration::from_millis(100));
        assert!(backoff.next_delay(Duration::from_secs(5)) >= Duration::from_secs(5));
    }
}
