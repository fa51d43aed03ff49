//! Limits that keep one client, or one address, from hurting the others:
//! admission caps (connections in total and per address, new connections
//! per address per second, rooms, members per room) and the per-connection
//! message rate limit.
//!
//! Admission is decided before the upgrade, so a refusal is a plain HTTP
//! answer with a reason (503 when the server or a room is full, 429 when
//! one address asks for too much). An admitted connection holds a
//! [`Ticket`] that gives its place back when the session ends.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::sync::lock;

/// The limits' settings. `0` turns a cap or rate off.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Messages per second a connection may send, sustained (0: no limit).
    pub rate_per_sec: f64,
    /// How many messages a connection may send at once above the rate.
    pub rate_burst: u32,
    /// How long a plain client may flood (slowed down to the rate) before
    /// it is closed with 1008.
    pub flood_close_after: Duration,
    /// Open WebSocket connections in total.
    pub max_connections: usize,
    /// Open WebSocket connections from one IP address (0: no cap).
    pub max_connections_per_ip: usize,
    /// New WebSocket connections per second from one IP address (0: no cap).
    pub new_connections_per_ip_per_sec: f64,
    /// Rooms with members on this instance (0: no cap).
    pub max_rooms: usize,
    /// Members of one room on this instance (0: no cap).
    pub max_members_per_room: usize,
    /// How often the server looks at its connections: one silent for a
    /// whole interval is pinged, and dropped if it is still silent at the
    /// next (so half-open connections go within two intervals).
    pub ping_interval: Duration,
    /// How long a client may take to send its request headers (and finish
    /// the TLS handshake): slow or silent clients are dropped.
    pub handshake_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            rate_per_sec: 50.0,
            rate_burst: 500,
            flood_close_after: Duration::from_secs(30),
            max_connections: 100_000,
            max_connections_per_ip: 0,
            new_connections_per_ip_per_sec: 0.0,
            max_rooms: 100_000,
            max_members_per_room: 0,
            ping_interval: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Why a connection was not admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The server holds `--max-connections` already.
    #[error("the server is full ({0} connections); try again later")]
    ServerFull(usize),
    /// This address holds `--max-connections-per-ip` already.
    #[error("too many connections from your address ({0}); close some first")]
    AddressFull(usize),
    /// This address opens connections too fast.
    #[error("too many new connections from your address; slow down and retry in a few seconds")]
    TooFast,
    /// The server holds `--max-rooms` rooms already.
    #[error("the server has too many rooms ({0}); join an existing room or try again later")]
    TooManyRooms(usize),
    /// The room holds `--max-members-per-room` members already.
    #[error("the room is full ({0} members); try again later")]
    RoomFull(usize),
    /// The room could not be joined (the shared layer is unavailable).
    #[error("the server cannot join rooms right now; try again later")]
    Unavailable,
}

impl Refusal {
    /// The HTTP status of the refusal.
    pub fn status(&self) -> u16 {
        match self {
            Self::AddressFull(_) | Self::TooFast => 429,
            Self::ServerFull(_) | Self::TooManyRooms(_) | Self::RoomFull(_) | Self::Unavailable => {
                503
            }
        }
    }

    /// A short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::ServerFull(_) => "server_full",
            Self::AddressFull(_) => "address_full",
            Self::TooFast => "too_fast",
            Self::TooManyRooms(_) => "too_many_rooms",
            Self::RoomFull(_) => "room_full",
            Self::Unavailable => "unavailable",
        }
    }
}

/// Counts admitted connections, in total and per address.
#[derive(Debug)]
pub struct Admission {
    limits: Limits,
    open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, PerIp>>,
}

#[derive(Debug)]
struct PerIp {
    open: usize,
    /// New-connection token bucket.
    bucket: TokenBucket,
}

impl Admission {
    /// Admission under `limits`.
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            open: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Admits a connection from `ip`, or says why not.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Ticket, Refusal> {
        let limits = &self.limits;
        let open = self.open.fetch_add(1, Ordering::AcqRel);
        if open >= limits.max_connections {
            self.open.fetch_sub(1, Ordering::AcqRel);
            return Err(Refusal::ServerFull(limits.max_connections));
        }
        let tracks_ip =
            limits.max_connections_per_ip > 0 || limits.new_connections_per_ip_per_sec > 0.0;
        if tracks_ip {
            let mut per_ip = lock(&self.per_ip);
            let entry = per_ip.entry(ip).or_insert_with(|| PerIp {
                open: 0,
                bucket: TokenBucket::new(
                    limits.new_connections_per_ip_per_sec,
                    limits.new_connections_per_ip_per_sec.ceil().max(1.0),
                ),
            });
            let refusal = if limits.max_connections_per_ip > 0
                && entry.open >= limits.max_connections_per_ip
            {
                Some(Refusal::AddressFull(limits.max_connections_per_ip))
            } else if limits.new_connections_per_ip_per_sec > 0.0
                && !entry.bucket.take(Instant::now())
            {
                Some(Refusal::TooFast)
            } else {
                None
            };
            if let Some(refusal) = refusal {
                drop(per_ip);
                self.open.fetch_sub(1, Ordering::AcqRel);
                return Err(refusal);
            }
            entry.open += 1;
            // Forget addresses with nothing open and a full bucket, so the
            // map does not grow with every address ever seen.
            if per_ip.len() > 4096 {
                let now = Instant::now();
                per_ip.retain(|_, e| e.open > 0 || !e.bucket.is_full(now));
            }
        }
        Ok(Ticket {
            admission: Arc::clone(self),
            ip: tracks_ip.then_some(ip),
        })
    }
}

/// An admitted connection's place; dropping it gives the place back.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// The address, when per-address counts are kept.
    ip: Option<IpAddr>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let admission = &self.admission;
        admission.open.fetch_sub(1, Ordering::AcqRel);
        if let Some(ip) = self.ip {
            let mut per_ip = lock(&admission.per_ip);
            if let Some(entry) = per_ip.get_mut(&ip) {
                entry.open = entry.open.saturating_sub(1);
                if entry.open == 0 && entry.bucket.is_full(Instant::now()) {
                    per_ip.remove(&ip);
                }
            }
        }
    }
}

/// A token bucket: `rate` tokens per second, holding at most `burst`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.updated = now;
    }

    /// Takes a token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Whether the bucket has refilled completely.
    pub fn is_full(&mut self, now: Instant) -> bool {
        self.refill(now);
        self.tokens >= self.burst
    }
}

/// A connection's message rate limit: a token bucket kept in a few bytes
/// (times in milliseconds of a server-wide clock, tokens as `f32`), since
/// every connection carries one; the rate and burst live in [`Limits`].
///
/// Typed clients over the limit get their message refused with an error
/// event, and are closed (1008) when they keep on regardless. Plain
/// (tutorial) clients have no error channel, so their messages are slowed
/// down instead of refused (the session reads their next frame only when
/// the limit allows: TCP pushes back on the sender, nothing is lost); one
/// that floods for `flood_close_after` without pause is closed (1008). A
/// pause is [`FLOOD_PAUSE_MS`] without being slowed down: the odd message
/// let through because the server itself read late (a busy machine) does
/// not end a flood.
#[derive(Debug, Clone, Copy)]
pub struct RateLimit {
    tokens: f32,
    /// When `tokens` was last brought up to date (ms of the clock).
    updated_ms: u32,
    /// When a plain client started being slowed down, without pause (ms
    /// of the clock); 0 when it is not.
    throttled_since_ms: u32,
    /// When a plain client was last slowed down (ms of the clock).
    last_wait_ms: u32,
    refused_in_a_row: u32,
}

/// How long a slowed-down plain client must stay under the limit for its
/// flood to count as over (and its `flood_close_after` to start afresh).
pub const FLOOD_PAUSE_MS: u32 = 1000;

/// What to do with a message under the rate limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit: deliver it.
    Allow,
    /// Over the limit (plain client): deliver it after this wait.
    Wait(Duration),
    /// Over the limit (typed client): refuse it and tell the client.
    Refuse,
    /// Still flooding after being told (or slowed down): close the connection.
    Close,
}

impl RateLimit {
    /// A full bucket at `now_ms`.
    #[allow(clippy::cast_precision_loss)] // bursts are far below where f32 loses whole numbers
    pub fn new(limits: &Limits, now_ms: u32) -> Self {
        Self {
            tokens: limits.rate_burst as f32,
            updated_ms: now_ms,
            throttled_since_ms: 0,
            last_wait_ms: 0,
            refused_in_a_row: 0,
        }
    }

    /// The verdict on one more message at `now_ms`; `can_wait` says the
    /// client is a plain one, to be slowed down rather than refused.
    #[allow(clippy::cast_possible_truncation, clippy::cast_precision_loss)] // rates and bursts are small
    pub fn check(&mut self, limits: &Limits, now_ms: u32, can_wait: bool) -> Verdict {
        if limits.rate_per_sec <= 0.0 {
            return Verdict::Allow;
        }
        let rate = limits.rate_per_sec as f32;
        let elapsed_ms = now_ms.wrapping_sub(self.updated_ms);
        self.tokens =
            (self.tokens + elapsed_ms as f32 / 1000.0 * rate).min(limits.rate_burst.max(1) as f32);
        self.updated_ms = now_ms;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            self.refused_in_a_row = 0;
            if now_ms.wrapping_sub(self.last_wait_ms) > FLOOD_PAUSE_MS {
                self.throttled_since_ms = 0;
            }
            return Verdict::Allow;
        }
        if can_wait {
            if self.throttled_since_ms == 0 {
                self.throttled_since_ms = now_ms.max(1);
            }
            self.last_wait_ms = now_ms;
            let flooding_ms = now_ms.wrapping_sub(self.throttled_since_ms);
            if u128::from(flooding_ms) > limits.flood_close_after.as_millis() {
                return Verdict::Close;
            }
            // Take the token that is not there yet: the bucket goes into
            // debt, and the wait is how long until it would have been there.
            self.tokens -= 1.0;
            return Verdict::Wait(Duration::from_secs_f32((-self.tokens / rate).max(0.0)));
        }
        self.refused_in_a_row += 1;
        if self.refused_in_a_row > limits.rate_burst.max(1) {
            Verdict::Close
        } else {
            Verdict::Refuse
        }
    }

    /// The limit in words.
    pub fn describe(limits: &Limits) -> String {
        format!(
            "{} messages per second (bursts of {})",
            limits.rate_per_sec, limits.rate_burst
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 3,
            max_connections_per_ip: 2,
            new_connections_per_ip_per_sec: 0.0,
            ..Limits::default()
        }
    }

    /// A message rate limit of `rate_per_sec` with bursts of `rate_burst`.
    fn bucket(rate_per_sec: f64, rate_burst: u32) -> Limits {
        Limits {
            rate_per_sec,
            rate_burst,
            ..Limits::default()
        }
    }

    /// A duration in whole milliseconds, as the limit's clock counts.
    fn ms(duration: Duration) -> u32 {
        u32::try_from(duration.as_millis()).unwrap()
    }

    #[test]
    fn admission_caps_total_and_per_address() {
        let admission = Arc::new(Admission::new(limits()));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let t1 = admission.admit(a).unwrap();
        let t2 = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::AddressFull(2));
        let t3 = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::ServerFull(3));
        drop(t1);
        assert!(admission.admit(a).is_ok());
        drop((t2, t3));
        assert_eq!(admission.open(), 0);
        assert_eq!(Refusal::ServerFull(1).status(), 503);
        assert_eq!(Refusal::TooFast.status(), 429);
    }

    #[test]
    fn new_connections_per_address_are_rate_limited() {
        let admission = Arc::new(Admission::new(Limits {
            new_connections_per_ip_per_sec: 2.0,
            ..limits()
        }));
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let first = admission.admit(a).unwrap();
        drop(first);
        let second = admission.admit(a).unwrap();
        drop(second);
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::TooFast);
    }

    #[test]
    fn the_rate_limit_refuses_then_closes_a_typed_flood() {
        let limits = bucket(1.0, 3);
        let now = 1000;
        let mut limit = RateLimit::new(&limits, now);
        for _ in 0..3 {
            assert_eq!(limit.check(&limits, now, false), Verdict::Allow);
        }
        for _ in 0..3 {
            assert_eq!(limit.check(&limits, now, false), Verdict::Refuse);
        }
        assert_eq!(limit.check(&limits, now, false), Verdict::Close);
        // A client that slows down is forgiven.
        let mut limit = RateLimit::new(&limits, now);
        for _ in 0..4 {
            limit.check(&limits, now, false);
        }
        assert_eq!(limit.check(&limits, now + 2000, false), Verdict::Allow);
        let off = Limits {
            rate_per_sec: 0.0,
            ..Limits::default()
        };
        let mut limit = RateLimit::new(&off, now);
        assert!((0..10_000).all(|_| limit.check(&off, now, false) == Verdict::Allow));
    }

    #[test]
    fn a_plain_flood_is_slowed_down_then_closed() {
        let limits = bucket(2.0, 2);
        let now = 1000;
        let mut limit = RateLimit::new(&limits, now);
        assert_eq!(limit.check(&limits, now, true), Verdict::Allow);
        assert_eq!(limit.check(&limits, now, true), Verdict::Allow);
        assert_eq!(
            limit.check(&limits, now, true),
            Verdict::Wait(Duration::from_millis(500))
        );
        assert_eq!(
            limit.check(&limits, now, true),
            Verdict::Wait(Duration::from_secs(1))
        );
        // A client that keeps sending as fast as it is let through is
        // closed once it has flooded for `flood_close_after`.
        let mut t = now + 1000;
        let closed_at = loop {
            match limit.check(&limits, t, true) {
                Verdict::Wait(wait) => t += ms(wait),
                Verdict::Close => break t,
                other => panic!("{other:?}"),
            }
        };
        let flood = ms(limits.flood_close_after);
        assert!(
            closed_at - now > flood && closed_at - now < flood + 2000,
            "{closed_at}"
        );
    }

    #[test]
    fn a_plain_flood_read_late_now_and_then_is_still_closed() {
        // A busy server reads the flooder's next frame late every so often,
        // so the odd message finds a token; that is no pause in the flood.
        let limits = bucket(50.0, 10);
        let now = 1000;
        let mut limit = RateLimit::new(&limits, now);
        let mut t = now;
        let mut allowed_late = 0;
        let closed_at = (0..10_000)
            .find_map(|i| {
                let verdict = limit.check(&limits, t, true);
                let late = if i % 50 == 0 { 40 } else { 0 };
                match verdict {
                    Verdict::Allow => t += late,
                    Verdict::Wait(wait) => t += ms(wait) + late,
                    Verdict::Close => return Some(t),
                    Verdict::Refuse => panic!("a plain client is never refused"),
                }
                if verdict == Verdict::Allow && t - now > 1000 {
                    allowed_late += 1;
                }
                None
            })
            .expect("the flood is closed");
        assert!(allowed_late > 0, "the test lets some messages through late");
        let flood = ms(limits.flood_close_after);
        assert!(closed_at - now < flood + 2000, "closed at {closed_at}");
    }

    #[test]
    fn a_plain_client_that_pauses_starts_afresh() {
        let limits = bucket(10.0, 1);
        let mut limit = RateLimit::new(&limits, 1000);
        let mut t = 1000;
        // Floods for most of the window, pauses, and floods again: never
        // closed, since no single flood lasts `flood_close_after`.
        let flood = ms(limits.flood_close_after);
        for _ in 0..3 {
            let start = t;
            while t - start < flood - 5000 {
                match limit.check(&limits, t, true) {
                    Verdict::Wait(wait) => t += ms(wait),
                    Verdict::Allow => {}
                    other => panic!("{other:?} at {t}"),
                }
            }
            t += FLOOD_PAUSE_MS + 200;
        }
    }
}
