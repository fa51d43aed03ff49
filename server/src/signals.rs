//! What the server tells every session at once: keepalive ticks and the
//! shutdown.
//!
//! One shared signal instead of a timer per connection keeps idle
//! connections small. A session waits with [`Signals::changed_since`],
//! whose state is a `Notify` registration and a counter (about 100 bytes
//! of the task every idle connection holds; a `watch` receiver's
//! `changed()` is 120).
//!
//! Every wait registers with a `Notify` and leaves it when the session
//! wakes for anything else, under that `Notify`'s lock: the sessions are
//! spread over [`SHARDS`] of them, as tokio's `watch` spreads its
//! receivers, so that worker threads waking sessions do not all take one
//! lock.

use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::sync::Notify;

/// How many `Notify`s the waiting sessions are spread over (sessions pass
/// their drain batch, 0-9, which spreads them evenly).
const SHARDS: usize = 10;

/// Keepalive ticks and the shutdown, for every session to watch.
#[derive(Debug, Default)]
pub(crate) struct Signals {
    /// Counts signals sent: every tick, and the shutdown.
    sent: AtomicU64,
    shutting_down: AtomicBool,
    notify: [Notify; SHARDS],
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
        for notify in &self.notify {
            notify.notify_waiters();
        }
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
    /// waiting is missed. `shard` spreads the waiting sessions (any
    /// number; the same one each time is cheapest).
    pub(crate) async fn changed_since(&self, seen: u64, shard: u8) {
        let notify = &self.notify[usize::from(shard) % SHARDS];
        let mut notified = pin!(notify.notified());
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
        tokio::time::timeout(Duration::from_secs(5), signals.changed_since(seen, 0))
            .await
            .expect("a tick sent before waiting ends the wait");

        // Waits on every shard (and past the last) are all woken.
        let seen = signals.seen();
        let waiting: Vec<_> = (0..=u8::try_from(SHARDS).unwrap())
            .map(|shard| {
                let signals = Arc::clone(&signals);
                tokio::spawn(async move { signals.changed_since(seen, shard).await })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            waiting.iter().all(|wait| !wait.is_finished()),
            "nothing sent: still waiting"
        );
        signals.shut_down();
        for wait in waiting {
            tokio::time::timeout(Duration::from_secs(5), wait)
                .await
                .expect("the shutdown ends every wait")
                .expect("no panic");
        }
        assert!(signals.shutting_down());
    }
}
