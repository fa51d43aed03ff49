//! The shared in-flight window (`--shared-window`): at most W messages of
//! all senders together are in flight, as in a room of people typing, where
//! each has about one message on its way (W = S) rather than a pipeline of
//! their own (`--window` per sender).
//!
//! Messages are numbered in one sequence over the run, message `k` being
//! sender `k % S`'s (so each sender still sends its N / S). A message may go
//! once its *ticket* is issued: the first W tickets when the run starts, then
//! one each time a sender's own copy comes back. The ticket goes to the
//! sender of the next message in the sequence, which is woken for it; so a
//! sender may have two messages in flight while another has none, and the
//! total stays at W.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Notify;

/// Tickets of the shared window.
#[derive(Debug)]
pub struct SharedWindow {
    /// Messages in the run (N): no ticket beyond.
    messages: u64,
    /// The next message to get a ticket.
    next: AtomicU64,
    /// Tickets issued to each sender so far.
    granted: Vec<AtomicU64>,
    /// Wakes a sender when it is issued a ticket.
    wake: Vec<Notify>,
}

impl SharedWindow {
    /// A window over `messages` messages of `senders` senders, not open yet.
    pub fn new(senders: u32, messages: u64) -> Self {
        Self {
            messages,
            next: AtomicU64::new(0),
            granted: (0..senders).map(|_| AtomicU64::new(0)).collect(),
            wake: (0..senders).map(|_| Notify::new()).collect(),
        }
    }

    /// Opens the window as the run starts: the first `window` tickets.
    pub fn open(&self, window: u32) {
        for _ in 0..window {
            self.issue();
        }
    }

    /// A message came back to its sender: the next ticket is issued.
    pub fn complete(&self) {
        self.issue();
    }

    /// Tickets issued to `sender` so far (messages it may have sent).
    pub fn granted(&self, sender: u32) -> u64 {
        self.granted
            .get(sender as usize)
            .map_or(0, |g| g.load(Ordering::Acquire))
    }

    /// Resolves when `sender` is issued a ticket (at once if one was issued
    /// since it last waited).
    pub async fn issued(&self, sender: u32) {
        match self.wake.get(sender as usize) {
            Some(wake) => wake.notified().await,
            None => std::future::pending().await,
        }
    }

    fn issue(&self) {
        let k = self.next.fetch_add(1, Ordering::Relaxed);
        if k >= self.messages {
            return;
        }
        let senders = self.granted.len() as u64;
        // Below the number of senders, which is a u32.
        let sender = usize::try_from(k % senders).unwrap_or(0);
        self.granted[sender].fetch_add(1, Ordering::Release);
        self.wake[sender].notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_go_round_the_senders_and_stop_at_the_last_message() {
        let window = SharedWindow::new(3, 7);
        window.open(4);
        assert_eq!(
            (window.granted(0), window.granted(1), window.granted(2)),
            (2, 1, 1)
        );
        for _ in 0..10 {
            window.complete();
        }
        assert_eq!(
            (window.granted(0), window.granted(1), window.granted(2)),
            (3, 2, 2)
        );
    }
}
