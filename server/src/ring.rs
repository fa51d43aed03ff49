//! A room's event ring: every published event is stored once and read by
//! each subscriber at its own pace, so that the ring is every subscriber's
//! bounded outbound queue at once.
//!
//! Unlike `tokio::sync::broadcast`, whose slots are all allocated when the
//! channel is created, this ring holds only what some subscriber has not
//! read yet: an idle room costs a few bytes, not `capacity` slots, so a
//! server with thousands of small rooms stays small. Each slot counts the
//! subscribers that still have to read it and is freed when the last one
//! has. The ring is bounded twice: in events (`capacity`) and in bytes
//! (`capacity_bytes`, the sizes of the frames it holds), so that a member
//! that stops reading holds at most that much, however large the messages.
//! A subscriber whose unread events are evicted to keep within either
//! bound gets [`Lagged`].
//!
//! Waiting uses one [`Notify`] per ring: a publish wakes every subscriber
//! that is waiting, and each one then reads what is queued for it.

use std::collections::VecDeque;
use std::pin::pin;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::frames::{Delivery, Format, Frames};
use crate::sync::lock;

/// The subscriber fell this many events behind and missed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

#[derive(Debug)]
struct Slot {
    frames: Frames,
    /// Subscribers that have not read this slot yet.
    unread: u32,
}

#[derive(Debug, Default)]
struct State {
    slots: VecDeque<Slot>,
    /// The position of `slots[0]`; positions only grow.
    base: u64,
    /// Slots before this position were evicted while someone still had to
    /// read them (as opposed to released once read by all who needed them).
    evicted_to: u64,
    /// The frames' bytes held in `slots`.
    bytes: usize,
    /// Subscribers reading typed events.
    events_readers: u32,
    /// Subscribers reading plain frames.
    plain_readers: u32,
}

impl State {
    fn end(&self) -> u64 {
        self.base + self.slots.len() as u64
    }

    fn readers_of(&self, frames: &Frames) -> u32 {
        self.events_readers
            + if frames.plain.is_some() {
                self.plain_readers
            } else {
                0
            }
    }

    fn pop_front(&mut self) {
        if let Some(slot) = self.slots.pop_front() {
            self.bytes -= slot.frames.len();
            self.base += 1;
        }
    }

    /// Frees slots every subscriber has read.
    fn release_read(&mut self) {
        while self.slots.front().is_some_and(|slot| slot.unread == 0) {
            self.pop_front();
        }
        if self.slots.is_empty() && self.slots.capacity() > SHRINK_ABOVE {
            self.slots.shrink_to(SHRINK_ABOVE / 4);
        }
    }
}

/// An empty ring keeps at most this many slots of capacity.
const SHRINK_ABOVE: usize = 256;

/// A room's ring. Shared by the registry and the room's subscribers.
#[derive(Debug)]
pub struct Ring {
    state: Mutex<State>,
    notify: Notify,
    capacity: usize,
    capacity_bytes: usize,
}

impl Ring {
    /// A ring whose subscribers may fall `capacity` events, or
    /// `capacity_bytes` bytes of frames, behind.
    pub fn new(capacity: usize, capacity_bytes: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            notify: Notify::new(),
            capacity: capacity.max(1),
            capacity_bytes,
        })
    }

    /// A new subscriber, reading from the next event published.
    pub fn subscribe(self: &Arc<Self>, format: Format) -> Subscription {
        let mut state = lock(&self.state);
        match format {
            Format::Events => state.events_readers += 1,
            Format::Plain => state.plain_readers += 1,
        }
        let cursor = state.end();
        Subscription {
            ring: Arc::clone(self),
            cursor,
            format,
        }
    }

    /// Stores `frames` for every current subscriber and wakes them.
    /// Returns how many subscribers will read it.
    pub fn publish(&self, frames: Frames) -> usize {
        let mut state = lock(&self.state);
        let readers = state.readers_of(&frames);
        if readers == 0 {
            return 0;
        }
        let size = frames.len();
        while !state.slots.is_empty()
            && (state.slots.len() >= self.capacity || state.bytes + size > self.capacity_bytes)
        {
            // The oldest event is still unread by someone (read slots are
            // released at once): that subscriber is now too far behind and
            // will find it gone (Lagged).
            state.pop_front();
            state.evicted_to = state.base;
        }
        state.bytes += size;
        state.slots.push_back(Slot {
            frames,
            unread: readers,
        });
        drop(state);
        self.notify.notify_waiters();
        readers as usize
    }

    /// Whether anyone reads typed events, and plain frames.
    pub fn formats_read(&self) -> (bool, bool) {
        let state = lock(&self.state);
        (state.events_readers > 0, state.plain_readers > 0)
    }

    /// Current subscribers.
    pub fn subscribers(&self) -> usize {
        let state = lock(&self.state);
        (state.events_readers + state.plain_readers) as usize
    }

    /// Events stored and not yet read by every subscriber.
    pub fn stored(&self) -> usize {
        lock(&self.state).slots.len()
    }

    /// Bytes of frames stored and not yet read by every subscriber.
    #[cfg(test)]
    pub fn stored_bytes(&self) -> usize {
        lock(&self.state).bytes
    }
}

/// One subscriber's place in a ring. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    ring: Arc<Ring>,
    /// The position of the next event to read.
    cursor: u64,
    format: Format,
}

impl Subscription {
    /// The next queued event, if any, without waiting.
    ///
    /// # Errors
    ///
    /// [`Lagged`] when events this subscriber had not read were evicted.
    pub fn try_next(&mut self) -> Result<Option<Delivery>, Lagged> {
        let mut state = lock(&self.ring.state);
        if self.cursor < state.evicted_to {
            return Err(Lagged(state.evicted_to - self.cursor));
        }
        // Slots released before this reader got to them were ones it did
        // not need (events-only slots, for a plain reader).
        self.cursor = self.cursor.max(state.base);
        loop {
            // `cursor - base` is below the ring's length here, which is a usize.
            let index = usize::try_from(self.cursor - state.base).unwrap_or(usize::MAX);
            let Some(slot) = state.slots.get_mut(index) else {
                return Ok(None);
            };
            self.cursor += 1;
            let frame = match self.format {
                Format::Events => Some(&slot.frames.events),
                Format::Plain => slot.frames.plain.as_ref(),
            };
            // Plain readers were never counted for events-only slots.
            let Some(frame) = frame.cloned() else {
                continue;
            };
            let id = slot.frames.id;
            slot.unread -= 1;
            if slot.unread == 0 && index == 0 {
                state.release_read();
            }
            return Ok(Some(Delivery { id, frame }));
        }
    }

    /// Waits for the next event.
    ///
    /// Cancel-safe: nothing is consumed until it is returned.
    ///
    /// # Errors
    ///
    /// [`Lagged`] when events this subscriber had not read were evicted.
    pub async fn next(&mut self) -> Result<Delivery, Lagged> {
        let ring = Arc::clone(&self.ring);
        loop {
            // Register for the wake-up before looking, so that a publish
            // between the look and the wait is not missed.
            let mut notified = pin!(ring.notify.notified());
            notified.as_mut().enable();
            if let Some(delivery) = self.try_next()? {
                return Ok(delivery);
            }
            notified.await;
        }
    }

    /// Events stored in the ring: how far the room's slowest subscriber is
    /// behind.
    pub fn room_backlog(&self) -> usize {
        self.ring.stored()
    }

    /// Events queued for this subscriber and not read yet.
    pub fn backlog(&self) -> u64 {
        lock(&self.ring.state).end().saturating_sub(self.cursor)
    }

    /// Whether events this subscriber had not read were evicted: its next
    /// read is [`Lagged`].
    pub fn has_lagged(&self) -> bool {
        self.cursor < lock(&self.ring.state).evicted_to
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = lock(&self.ring.state);
        match self.format {
            Format::Events => state.events_readers -= 1,
            Format::Plain => state.plain_readers -= 1,
        }
        let skip = usize::try_from(self.cursor.saturating_sub(state.base)).unwrap_or(usize::MAX);
        let format = self.format;
        for slot in state.slots.iter_mut().skip(skip) {
            if format == Format::Events || slot.frames.plain.is_some() {
                slot.unread -= 1;
            }
        }
        state.release_read();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(id: u64) -> Frames {
        Frames {
            id,
            events: format!("e{id}").into(),
            plain: Some(format!("p{id}").into()),
        }
    }

    fn notice() -> Frames {
        Frames {
            id: 0,
            events: "notice".into(),
            plain: None,
        }
    }

    #[test]
    fn each_format_reads_its_own_frames_in_order() {
        let ring = Ring::new(8, usize::MAX);
        let mut events = ring.subscribe(Format::Events);
        let mut plain = ring.subscribe(Format::Plain);
        assert_eq!(ring.publish(chat(1)), 2);
        assert_eq!(ring.publish(notice()), 1);
        assert_eq!(ring.publish(chat(2)), 2);
        let read = |s: &mut Subscription| {
            std::iter::from_fn(|| s.try_next().unwrap())
                .map(|d| d.frame.to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(read(&mut events), ["e1", "notice", "e2"]);
        assert_eq!(read(&mut plain), ["p1", "p2"]);
        assert_eq!(ring.stored(), 0, "every slot read is freed");
    }

    #[test]
    fn a_late_subscriber_starts_at_the_next_event() {
        let ring = Ring::new(8, usize::MAX);
        let _early = ring.subscribe(Format::Events);
        ring.publish(chat(1));
        let mut late = ring.subscribe(Format::Events);
        assert!(late.try_next().unwrap().is_none());
        ring.publish(chat(2));
        assert_eq!(late.try_next().unwrap().unwrap().id, 2);
    }

    #[test]
    fn nothing_is_stored_without_subscribers_and_dropping_frees() {
        let ring = Ring::new(8, usize::MAX);
        assert_eq!(ring.publish(chat(1)), 0);
        assert_eq!(ring.stored(), 0);
        let reader = ring.subscribe(Format::Plain);
        ring.publish(chat(2));
        ring.publish(notice());
        assert_eq!(
            ring.stored(),
            1,
            "events-only slots are not kept for plain readers"
        );
        drop(reader);
        assert_eq!(ring.stored(), 0);
        assert_eq!(ring.subscribers(), 0);
    }

    #[test]
    fn a_reader_that_falls_capacity_behind_lags_and_the_ring_stays_bounded() {
        let ring = Ring::new(4, usize::MAX);
        let mut slow = ring.subscribe(Format::Events);
        let mut fast = ring.subscribe(Format::Events);
        for id in 1..=10 {
            ring.publish(chat(id));
            assert_eq!(fast.try_next().unwrap().unwrap().id, id);
            assert!(ring.stored() <= 4);
        }
        assert_eq!(slow.backlog(), 10);
        assert!(matches!(slow.try_next(), Err(Lagged(6))));
        drop(slow);
        assert_eq!(ring.stored(), 0);
    }

    #[test]
    fn the_ring_is_bounded_in_bytes_too() {
        let big = |id| Frames {
            id,
            events: "x".repeat(100).into(),
            plain: None,
        };
        let ring = Ring::new(1000, 350);
        let mut slow = ring.subscribe(Format::Events);
        let mut fast = ring.subscribe(Format::Events);
        for id in 1..=10 {
            ring.publish(big(id));
            assert_eq!(fast.try_next().unwrap().unwrap().id, id);
            assert!(ring.stored_bytes() <= 350, "{}", ring.stored_bytes());
        }
        assert_eq!(
            ring.stored(),
            3,
            "what the slow reader has not read, within 350 bytes"
        );
        assert!(slow.has_lagged());
        assert!(matches!(slow.try_next(), Err(Lagged(7))));
        drop(slow);
        assert_eq!((ring.stored(), ring.stored_bytes()), (0, 0));
        // An event larger than the bound still goes out, alone.
        let mut reader = ring.subscribe(Format::Events);
        ring.publish(Frames {
            id: 11,
            events: "y".repeat(1000).into(),
            plain: None,
        });
        assert_eq!(reader.try_next().unwrap().unwrap().id, 11);
    }

    #[tokio::test]
    async fn next_waits_for_a_publish() {
        let ring = Ring::new(4, usize::MAX);
        let mut reader = ring.subscribe(Format::Plain);
        let publisher = {
            let ring = Arc::clone(&ring);
            tokio::spawn(async move {
                tokio::task::yield_now().await;
                ring.publish(chat(7));
            })
        };
        let delivery = tokio::time::timeout(std::time::Duration::from_secs(5), reader.next())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(delivery.frame.as_str(), "p7");
        publisher.await.unwrap();
    }

    /// A lost message fails the test instead of hanging it: a reader
    /// stops once every publisher has finished and nothing is left for it.
    #[test]
    fn many_threads_publish_and_read_without_loss() {
        use std::sync::atomic::{AtomicBool, Ordering};

        let ring = Ring::new(1 << 16, usize::MAX);
        let published = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..4).map(|_| ring.subscribe(Format::Events)).collect();
        let publishers: Vec<_> = (0..4u64)
            .map(|p| {
                let ring = Arc::clone(&ring);
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        ring.publish(chat(p * 10_000 + n));
                    }
                })
            })
            .collect();
        let consumers: Vec<_> = readers
            .into_iter()
            .map(|mut reader| {
                let published = Arc::clone(&published);
                std::thread::spawn(move || {
                    let mut seen = Vec::new();
                    while seen.len() < 4000 {
                        // Read the flag before looking: when it was already
                        // set, an empty ring means nothing more will come.
                        let done = published.load(Ordering::Acquire);
                        match reader.try_next().unwrap() {
                            Some(d) => seen.push(d.id),
                            None if done => break,
                            None => std::thread::yield_now(),
                        }
                    }
                    seen
                })
            })
            .collect();
        for p in publishers {
            p.join().unwrap();
        }
        published.store(true, Ordering::Release);
        let orders: Vec<Vec<u64>> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        for order in &orders {
            assert_eq!(order.len(), 4000, "every message read");
            assert_eq!(order, &orders[0], "one order for all");
        }
        assert_eq!(ring.stored(), 0);
    }
}
