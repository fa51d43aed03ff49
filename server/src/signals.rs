//! What the server tells every session at once: keepalive ticks and the
//! shutdown.
//!
//! One shared signal instead of a timer per connection keeps idle
//! connections small. A session waits with [`Signals::changed_since`],
//! whose state is a `Notify` registration and a counter (about 80 bytes of
//! the task every idle connection holds; a `watch` receiver's `changed()`
//! is 120).

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// Keepalive ticks and the shutdown, for every session to watch.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Counts signals sent: every tick, and the shutdown.
    sent: AtomicU64,
    shutting_down: AtomicBool,
    notify: Notify,
}

impl Signals {
    /// A keepalive tick (one per ping interval).
    pub(crate) fn tick(&self) {
        self.send();
    }

    /// The server is shutting down.
    pub(crate) fn shut_down(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        self.send();
    }

    fn send(&self) {
        self.sent.fetch_add(1, Ordering::SeqCst);
        self.notify.notify_waiters();
    }

    /// How many signals were sent so far: what a session has seen.
    pub(crate) fn seen(&self) -> u64 {
        self.sent.load(Ordering::SeqCst)
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::SeqCst)
    }

    /// Returns once a signal was sent after the `seen`th: at once if one
    /// already was, so that none sent between reading [`Self::seen`] and
    /// waiting is missed.
    pub(crate) async fn changed_since(&self, seen: u64) {
        let mut notified = pin!(self.notify.notified());
        // Registered from here on: a signal sent after the check below
        // wakes this wait.
        notified.as_mut().enable();
        if self.seen() != seen {
            return;
        }
        notified.await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_wait_returns_for_a_signal_sent_before_or_during_it() {
        let signals = Arc::new(Signals::default());
        let seen = signals.seen();
        signals.tick();
        // Sent before the wait began: not missed.
        tokio::time::timeout(Duration::from_secs(5), signals.changed_since(seen))
            .await
            .expect("a tick sent before waiting ends the wait");

        let seen = signals.seen();
        let waiting = tokio::spawn({
            let signals = Arc::clone(&signals);
            async move { signals.changed_since(seen).await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "nothing sent: still waiting");
        signals.shut_down();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the shutdown ends the wait")
            .expect("no panic");
        assert!(signals.shutting_down());
    }
}
