//! Slow clients: they join a busy room and never read a byte.
//!
//! A slow client has a small receive pipe ([`PIPE`]: a small receive buffer
//! and an Ethernet-sized segment), so that the server's writes to it block
//! after some tens of kilobytes, as they would for a remote client, not
//! after megabytes as loopback allows; the busy rooms' larger messages
//! fill that in seconds. The
//! server must then drop it: close 1008 ("slow consumer") once the client
//! is `--queue` messages behind or a write has been blocked for
//! `--write-timeout`. Since the client reads nothing, the close frame is
//! usually stuck behind the unread data and the client sees the connection
//! dropped (end of stream or reset) instead; both are expected.
//!
//! To notice the drop without reading, the client writes a tiny ping every
//! second ([`PROBE_EVERY`]): once the server has closed its socket, the
//! server's kernel answers with a reset, which the next readiness check
//! or write reports. Then it reads everything (at most [`DRAIN_WAIT`]) to
//! find a close frame, records the outcome and the time it took, and starts
//! again after a short pause. A client still open after `--slow-max-stall`
//! counts as **not closed**, which fails the run.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::conn::{Conn, Ended, SmallPipe};
use super::{Outcome, Plan, Reconnecting, SLOW, Shared, lock, pause};
use crate::wire::OP_PING;

/// A slow client's pipe: a 4 KiB receive buffer and an Ethernet-sized
/// segment, as a remote client would have (see [`SmallPipe`]).
const PIPE: SmallPipe = SmallPipe {
    recv_buffer: 4 * 1024,
    mss: 1460,
};

/// How often a stalled client checks whether the server has dropped it.
const PROBE_EVERY: Duration = Duration::from_secs(1);

/// Longest the read after a drop may take.
const DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Slow client number `index`.
pub(super) struct Slow {
    shared: Arc<Shared>,
    index: u32,
}

impl Slow {
    pub(super) fn new(shared: Arc<Shared>, index: u32) -> Self {
        Self { shared, index }
    }
}

impl Reconnecting for Slow {
    fn name(&self) -> String {
        format!("slow{}", self.index)
    }

    fn plan(&mut self, cycle: u32, rng: &mut fastrand::Rng) -> Plan {
        Plan {
            category: SLOW,
            room: rng.u32(..self.shared.config.settings.busy_rooms.max(1)),
            typed: (self.index + cycle) % 2 == 0,
            small_pipe: Some(PIPE),
        }
    }

    async fn attempt(
        &mut self,
        conn: &mut Conn,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Outcome> {
        stall(&self.shared, conn, stop).await
    }
}

/// A connection that stops reading; `None` if the run stopped first.
async fn stall(
    shared: &Shared,
    conn: &mut Conn,
    stop: &mut watch::Receiver<bool>,
) -> Option<Outcome> {
    let cfg = &shared.config;
    let slow_max_stall = cfg.settings.slow_max_stall.get();
    let started = Instant::now();
    loop {
        if !pause(stop, PROBE_EVERY).await {
            return None;
        }
        conn.queue(OP_PING, b"");
        conn.try_flush();
        if conn.peer_gone() {
            break;
        }
        if started.elapsed() > slow_max_stall {
            conn.start_close(1000);
            return Some((
                "not closed".into(),
                false,
                format!("still open after {slow_max_stall:?} without reading"),
            ));
        }
    }
    let took = started.elapsed();
    lock(&shared.slow_drops).push(took.as_secs_f64());
    // The close frame, if the server got to send one, is behind everything
    // it had queued: read it all.
    let deadline = tokio::time::Instant::now() + DRAIN_WAIT;
    let ended = loop {
        match tokio::time::timeout_at(deadline, conn.recv()).await {
            Ok(Ok(_)) => {}
            Ok(Err(ended)) => break Some(ended),
            Err(_) => break None,
        }
    };
    let detail = format!("after {:.1} s", took.as_secs_f64());
    Some(match ended {
        Some(Ended::Close {
            code: Some(1008),
            reason,
        }) => ("close 1008".into(), true, format!("{reason} ({detail})")),
        Some(Ended::Eof | Ended::Reset(_)) => ("dropped".into(), true, detail),
        Some(other) => (
            other.label(),
            false,
            format!("{} ({detail})", other.detail()),
        ),
        None => (
            "gone, but data kept coming".into(),
            false,
            format!("still reading after {DRAIN_WAIT:?} ({detail})"),
        ),
    })
}
