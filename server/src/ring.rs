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
//! # Delivery: one write pass per room
//!
//! A session waiting with nothing to write lends its TCP socket to the
//! ring ([`Subscription::lend`]). A publish then wakes one task, the
//! room's write pass, instead of every member's: the pass writes each
//! lent member's new frames straight to its socket with one non-blocking
//! write, and no member's task runs at all. What a pass cannot write (a
//! full socket, a broken one, a member that lagged) is handed back: the
//! member's socket is returned, with the frames the pass had taken and how
//! much of them went out, and its session is woken to finish the write
//! itself, with its timeouts and lag checks ([`Subscription::reclaim`]).
//!
//! The pass runs after the publisher's task yields, so a sender that
//! publishes a burst (pipelining) gets it written to each member in one
//! write. Members that did not lend (TLS, or busy writing something of
//! their own) are woken as before, and read the ring themselves
//! ([`Subscription::try_next`]). Only one of the two writes a member's
//! socket at any time: the ring's lock decides, and the session lends only
//! with nothing queued of its own.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use prometheus_client::metrics::counter::Counter;
use slab::Slab;
use tokio::net::TcpStream;

use tokio_tungstenite::tungstenite::Utf8Bytes;

use crate::frames::{Delivery, Format, Frames};
use crate::sync::lock;
use crate::ws;

/// The subscriber fell this many events behind and missed them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lagged(pub u64);

/// Stop adding frames to one write of the pass past this many bytes.
const PASS_BATCH_BYTES: usize = 16 * 1024;

/// Stop adding frames to one write of the pass past this many frames.
const PASS_BATCH_FRAMES: usize = 64;

#[derive(Debug)]
struct Slot {
    frames: Frames,
    /// Subscribers that have not read this slot yet.
    unread: u32,
}

/// What the write pass hands back to a session: what it took from the
/// ring for this member and could not send (at most one batch).
#[derive(Debug, Default)]
pub struct Handback {
    /// The rest of the encoded frames: the session writes them first.
    pub unsent: Bytes,
    /// The socket failed: the session ends.
    pub broken: Option<io::ErrorKind>,
}

/// One subscriber, in the ring.
#[derive(Debug)]
struct Member {
    /// The position of the next event to read.
    cursor: u64,
    format: Format,
    /// Chat messages with an id up to this one were in the welcome (or
    /// predate the join) and are skipped.
    skip_through: u64,
    /// The session's socket, while lent to the write pass.
    lent: Option<Arc<TcpStream>>,
    /// What the pass handed back, until the session takes it.
    handback: Option<Box<Handback>>,
    /// The session's task, while it waits.
    waker: Option<Waker>,
}

impl Member {
    /// Whether `frames` is for this member.
    fn reads(&self, frames: &Frames) -> bool {
        self.format == Format::Events || frames.plain.is_some()
    }
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
    members: Slab<Member>,
    /// Members whose socket is lent to the write pass.
    lent: u32,
    /// Members that did not lend and wait for a wake-up.
    waiting: u32,
    /// The write pass: due, and its task (alive while members lend).
    pass_due: bool,
    pass_task: Option<Waker>,
    pass_spawned: bool,
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

    /// Member `key`'s next event, if any, as `read` makes of its id and
    /// frame; releases read slots only when `release` (the write pass
    /// releases once, after all members).
    fn read_next<R>(
        &mut self,
        key: usize,
        release: bool,
        read: impl FnOnce(u64, &Utf8Bytes) -> R,
    ) -> Result<Option<R>, Lagged> {
        let Self {
            slots,
            base,
            evicted_to,
            members,
            ..
        } = self;
        let member = &mut members[key];
        if member.cursor < *evicted_to {
            return Err(Lagged(*evicted_to - member.cursor));
        }
        // Slots released before this reader got to them were ones it did
        // not need (events-only slots, for a plain reader).
        member.cursor = member.cursor.max(*base);
        let mut released_front = false;
        let found = loop {
            // `cursor - base` is below the ring's length here, which is a usize.
            let index = usize::try_from(member.cursor - *base).unwrap_or(usize::MAX);
            let Some(slot) = slots.get_mut(index) else {
                break None;
            };
            member.cursor += 1;
            // Plain readers were never counted for events-only slots.
            let frame = match member.format {
                Format::Events => &slot.frames.events,
                Format::Plain => match &slot.frames.plain {
                    Some(plain) => plain,
                    None => continue,
                },
            };
            slot.unread -= 1;
            released_front |= slot.unread == 0 && index == 0;
            let id = slot.frames.id;
            if id != 0 && id <= member.skip_through {
                continue;
            }
            break Some(read(id, frame));
        };
        if release && released_front {
            self.release_read();
        }
        Ok(found)
    }

    /// Encodes member `key`'s next events into `buf` as text frames, up
    /// to one batch: how many frames and payload bytes, and whether the
    /// member lagged (it gets nothing more then).
    fn encode_batch(&mut self, key: usize, buf: &mut Vec<u8>) -> (usize, usize, bool) {
        let (mut frames, mut bytes) = (0, 0);
        while frames < PASS_BATCH_FRAMES && bytes < PASS_BATCH_BYTES {
            let encoded = self.read_next(key, false, |_, frame| {
                ws::encode_text(buf, frame.as_bytes());
                frame.len()
            });
            match encoded {
                Ok(Some(len)) => {
                    frames += 1;
                    bytes += len;
                }
                Ok(None) => return (frames, bytes, false),
                Err(Lagged(_)) => return (frames, bytes, true),
            }
        }
        (frames, bytes, false)
    }

    /// Whether member `key` has an event to read (or lagged).
    fn has_news(&self, member: &Member) -> bool {
        member.cursor < self.evicted_to
            || self
                .slots
                .range(
                    usize::try_from(member.cursor.saturating_sub(self.base))
                        .unwrap_or(usize::MAX)
                        .min(self.slots.len())..,
                )
                .any(|slot| member.reads(&slot.frames))
    }

    /// Returns member `key`'s socket to its session with `handback`, and
    /// wakes it.
    fn hand_back(&mut self, key: usize, handback: Handback) {
        let member = &mut self.members[key];
        if member.lent.take().is_some() {
            self.lent -= 1;
        }
        if !handback.unsent.is_empty() || handback.broken.is_some() {
            member.handback = Some(Box::new(handback));
        }
        if let Some(waker) = member.waker.take() {
            waker.wake();
        }
    }
}

/// An empty ring keeps at most this many slots of capacity.
const SHRINK_ABOVE: usize = 256;

/// What the write pass counts: frames and their payload bytes written.
#[derive(Debug, Clone, Default)]
pub struct OutCounters {
    /// Frames written.
    pub frames: Counter,
    /// Payload bytes written.
    pub bytes: Counter,
}

/// A room's ring. Shared by the registry and the room's subscribers.
#[derive(Debug)]
pub struct Ring {
    state: Mutex<State>,
    capacity: usize,
    capacity_bytes: usize,
    counters: OutCounters,
}

impl Ring {
    /// A ring whose subscribers may fall `capacity` events, or
    /// `capacity_bytes` bytes of frames, behind.
    #[cfg(test)]
    pub fn new(capacity: usize, capacity_bytes: usize) -> Arc<Self> {
        Self::counted(capacity, capacity_bytes, OutCounters::default())
    }

    /// [`Ring::new`], counting what its write pass writes in `counters`.
    pub fn counted(capacity: usize, capacity_bytes: usize, counters: OutCounters) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            capacity: capacity.max(1),
            capacity_bytes,
            counters,
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
        let key = state.members.insert(Member {
            cursor,
            format,
            skip_through: 0,
            lent: None,
            handback: None,
            waker: None,
        });
        Subscription {
            ring: Arc::clone(self),
            key,
        }
    }

    /// Stores `frames` for every current subscriber, and has them written
    /// (lent sockets) or wakes their sessions. Returns how many
    /// subscribers will read it.
    pub fn publish(self: &Arc<Self>, frames: Frames) -> usize {
        let mut state = lock(&self.state);
        let readers = state.readers_of(&frames);
        if readers == 0 {
            return 0;
        }
        PUBLISHED.fetch_add(1, Ordering::Relaxed);
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
        let plain = frames.plain.is_some();
        state.slots.push_back(Slot {
            frames,
            unread: readers,
        });
        if state.waiting > 0 {
            let mut still_waiting = 0;
            for (_, member) in &mut state.members {
                if member.lent.is_some() || member.waker.is_none() {
                    continue;
                }
                if plain || member.format == Format::Events {
                    if let Some(waker) = member.waker.take() {
                        waker.wake();
                    }
                } else {
                    still_waiting += 1;
                }
            }
            state.waiting = still_waiting;
        }
        if state.lent > 0 && !state.pass_due {
            state.pass_due = true;
            self.schedule_pass(&mut state);
        }
        readers as usize
    }

    /// Wakes the write pass's task, or starts it.
    fn schedule_pass(self: &Arc<Self>, state: &mut State) {
        if state.pass_spawned {
            if let Some(waker) = &state.pass_task {
                waker.wake_by_ref();
            }
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            state.pass_spawned = true;
            runtime.spawn(write_passes(Arc::downgrade(self)));
            return;
        }
        // No runtime (a plain thread): hand every lent socket back.
        state.pass_due = false;
        let lent: Vec<usize> = state
            .members
            .iter()
            .filter(|(_, member)| member.lent.is_some())
            .map(|(key, _)| key)
            .collect();
        for key in lent {
            state.hand_back(key, Handback::default());
        }
    }

    /// One write pass: every lent member's new frames, encoded into the
    /// thread's scratch buffer and sent to its socket; members the pass
    /// cannot finish get their socket back, with what was not sent.
    fn write_pass(&self, state: &mut State) {
        let (mut frames_out, mut bytes_out) = (0u64, 0u64);
        ws::with_scratch(|buf| {
            // By index: the slab is not borrowed across a member's writes.
            for key in 0..state.members.capacity() {
                if state
                    .members
                    .get(key)
                    .is_none_or(|member| member.lent.is_none())
                {
                    continue;
                }
                loop {
                    buf.clear();
                    let (frames, bytes, lagged) = state.encode_batch(key, buf);
                    if frames == 0 {
                        if lagged {
                            // The session finds out from the ring, and ends.
                            state.hand_back(key, Handback::default());
                        }
                        break;
                    }
                    let Some(tcp) = &state.members[key].lent else {
                        break;
                    };
                    let sent = match ws::send_now(tcp, buf) {
                        Ok(sent) => sent,
                        Err(err) if err.kind() == io::ErrorKind::WouldBlock => 0,
                        Err(err) => {
                            let broken = Some(err.kind());
                            let handback = Handback {
                                broken,
                                ..Handback::default()
                            };
                            state.hand_back(key, handback);
                            break;
                        }
                    };
                    frames_out += frames as u64;
                    bytes_out += bytes as u64;
                    if sent < buf.len() {
                        // A full socket: its session waits for it to drain.
                        let unsent = Bytes::copy_from_slice(&buf[sent..]);
                        state.hand_back(
                            key,
                            Handback {
                                unsent,
                                broken: None,
                            },
                        );
                        break;
                    }
                }
            }
        });
        state.release_read();
        self.counters.frames.inc_by(frames_out);
        self.counters.bytes.inc_by(bytes_out);
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

impl Drop for Ring {
    fn drop(&mut self) {
        // Let the write pass's task see the ring is gone, and end.
        let state = self
            .state
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(waker) = state.pass_task.take() {
            waker.wake();
        }
    }
}

/// The room's write-pass task: runs a pass whenever one is due, and ends
/// when no member lends its socket any more (the next publish to a lent
/// member starts it again) or the ring is gone.
/// Publishes on this server so far: how the write pass tells a busy
/// server from an idle one.
static PUBLISHED: AtomicU64 = AtomicU64::new(0);

/// At most this many scheduler rounds a write pass waits for.
const MAX_DEFERRED_ROUNDS: usize = 8;

/// Lets the scheduler run other tasks (and poll the I/O driver) before a
/// write pass, for as long as they keep publishing, up to
/// [`MAX_DEFERRED_ROUNDS`] rounds, and only while the room's ring is less
/// than a quarter full. On a busy server, what other senders publish
/// meanwhile joins the pass, and a member gets several frames in one
/// `send` (see BENCHMARKS.md, shared window); on an idle server the first
/// round publishes nothing and the pass writes at once, so that paced
/// latency is kept. The ring's bound keeps a burst from evicting what
/// members have not been sent yet.
async fn defer_while_busy(ring: &Weak<Ring>) {
    let mut seen = PUBLISHED.load(Ordering::Relaxed);
    for _ in 0..MAX_DEFERRED_ROUNDS {
        tokio::task::yield_now().await;
        let now = PUBLISHED.load(Ordering::Relaxed);
        let filling = ring
            .upgrade()
            .is_none_or(|ring| ring.stored() >= ring.capacity / 4);
        if now == seen || filling {
            return;
        }
        seen = now;
    }
}

async fn write_passes(ring: Weak<Ring>) {
    loop {
        let due = std::future::poll_fn(|cx| {
            let Some(ring) = ring.upgrade() else {
                return Poll::Ready(false);
            };
            let mut state = lock(&ring.state);
            if state.pass_due {
                return Poll::Ready(true);
            }
            if state.lent == 0 {
                state.pass_spawned = false;
                state.pass_task = None;
                return Poll::Ready(false);
            }
            if !state
                .pass_task
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                state.pass_task = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await;
        if !due {
            return;
        }
        // Let the I/O driver run once first: what the senders that are
        // ready now publish to this room goes out in the same writes (a
        // busy server batches more; an idle one polls the driver at once).
        defer_while_busy(&ring).await;
        let Some(ring) = ring.upgrade() else {
            return;
        };
        let mut state = lock(&ring.state);
        state.pass_due = false;
        ring.write_pass(&mut state);
    }
}

/// One subscriber's place in a ring. Dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    ring: Arc<Ring>,
    key: usize,
}

/// Why a session's wait on its subscription ended.
#[derive(Debug)]
pub enum Wanted {
    /// Events to read (or a lag to find out about).
    News,
    /// The write pass handed the socket back with this to finish.
    Handback(Box<Handback>),
}

impl Subscription {
    /// The next queued event, if any, without waiting. Chat messages up
    /// to [`Subscription::skip_through`] are skipped.
    ///
    /// # Errors
    ///
    /// [`Lagged`] when events this subscriber had not read were evicted.
    pub fn try_next(&mut self) -> Result<Option<Delivery>, Lagged> {
        lock(&self.ring.state).read_next(self.key, true, |id, frame| Delivery {
            id,
            frame: frame.clone(),
        })
    }

    /// Skips chat messages with an id up to `id` (the welcome held them).
    pub fn skip_through(&mut self, id: u64) {
        lock(&self.ring.state).members[self.key].skip_through = id;
    }

    /// Lends `tcp` to the room's write pass while the session waits with
    /// nothing of its own to write. Refused (`false`) when events are
    /// already waiting for this member: the session reads them first.
    pub fn lend(&mut self, tcp: &Arc<TcpStream>) -> bool {
        let mut state = lock(&self.ring.state);
        let member = &state.members[self.key];
        if member.lent.is_some() {
            return true;
        }
        if member.handback.is_some() || state.has_news(member) {
            return false;
        }
        state.members[self.key].lent = Some(Arc::clone(tcp));
        state.lent += 1;
        true
    }

    /// Takes the socket back from the write pass (the session is about to
    /// write, or to end): what the pass handed back, if anything.
    pub fn reclaim(&mut self) -> Option<Box<Handback>> {
        let mut state = lock(&self.ring.state);
        let member = &mut state.members[self.key];
        member.waker = None;
        let handback = member.handback.take();
        if member.lent.take().is_some() {
            state.lent -= 1;
        }
        handback
    }

    /// Waits until the session has something to do for the room: events
    /// to read (when its socket is not lent) or a hand-back from the pass.
    ///
    /// Cancel-safe: nothing is consumed but the hand-back it returns.
    pub fn poll_wanted(&mut self, cx: &mut Context<'_>) -> Poll<Wanted> {
        let mut state = lock(&self.ring.state);
        let member = &mut state.members[self.key];
        if let Some(handback) = member.handback.take() {
            return Poll::Ready(Wanted::Handback(handback));
        }
        let lent = member.lent.is_some();
        if !lent && state.has_news(&state.members[self.key]) {
            return Poll::Ready(Wanted::News);
        }
        let member = &mut state.members[self.key];
        let fresh = member.waker.is_none();
        if !member
            .waker
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            member.waker = Some(cx.waker().clone());
        }
        if fresh && !lent {
            state.waiting += 1;
        }
        Poll::Pending
    }

    /// Waits for the next event (for sessions that do not lend).
    #[cfg(test)]
    ///
    /// Cancel-safe: nothing is consumed until it is returned.
    ///
    /// # Errors
    ///
    /// [`Lagged`] when events this subscriber had not read were evicted.
    pub async fn next(&mut self) -> Result<Delivery, Lagged> {
        loop {
            if let Some(delivery) = self.try_next()? {
                return Ok(delivery);
            }
            std::future::poll_fn(|cx| match self.poll_wanted(cx) {
                Poll::Ready(_) => Poll::Ready(()),
                Poll::Pending => Poll::Pending,
            })
            .await;
        }
    }

    /// Events stored in the ring: how far the room's slowest subscriber is
    /// behind.
    pub fn room_backlog(&self) -> usize {
        self.ring.stored()
    }

    /// Events queued for this subscriber and not read yet.
    pub fn backlog(&self) -> u64 {
        let state = lock(&self.ring.state);
        state.end().saturating_sub(state.members[self.key].cursor)
    }

    /// Whether events this subscriber had not read were evicted: its next
    /// read is [`Lagged`].
    pub fn has_lagged(&self) -> bool {
        let state = lock(&self.ring.state);
        state.members[self.key].cursor < state.evicted_to
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = lock(&self.ring.state);
        let member = state.members.remove(self.key);
        match member.format {
            Format::Events => state.events_readers -= 1,
            Format::Plain => state.plain_readers -= 1,
        }
        if member.lent.is_some() {
            state.lent -= 1;
        }
        let skip = usize::try_from(member.cursor.saturating_sub(state.base)).unwrap_or(usize::MAX);
        for slot in state.slots.iter_mut().skip(skip) {
            if member.reads(&slot.frames) {
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

    /// The write pass writes a lent socket's frames without waking its
    /// session; once the socket is full it hands the socket back with what
    /// it could not send, and the session's writes continue the stream:
    /// the client gets every frame whole and in order.
    #[tokio::test]
    async fn the_write_pass_writes_lent_sockets_and_hands_full_ones_back() {
        use std::time::Duration;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        use tokio::net::{TcpListener, TcpStream};

        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let connect = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(connect, listener.accept());
        let mut client = client.unwrap();
        let tcp = Arc::new(accepted.unwrap().0);
        let frame = |payload: &str| {
            let mut encoded = Vec::new();
            ws::encode_text(&mut encoded, payload.as_bytes());
            encoded
        };
        let ring = Ring::new(100_000, usize::MAX);
        let mut member = ring.subscribe(Format::Events);
        assert!(member.lend(&tcp));

        ring.publish(chat(1));
        let mut got = vec![0; frame("e1").len()];
        tokio::time::timeout(Duration::from_secs(5), client.read_exact(&mut got))
            .await
            .expect("the pass wrote the frame")
            .unwrap();
        assert_eq!(got, frame("e1"));
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(
            member.poll_wanted(&mut cx).is_pending(),
            "no wake-up needed"
        );

        // Big frames nobody reads: the socket fills, and is handed back.
        let big = |id: u64| Frames {
            id,
            events: format!("{id}:{}", "x".repeat(9000)).into(),
            plain: None,
        };
        let mut expected = Vec::new();
        let mut handback = None;
        for id in 2..=2000 {
            ring.publish(big(id));
            expected.extend(frame(big(id).events.as_str()));
            tokio::task::yield_now().await;
            if let Poll::Ready(wanted) = member.poll_wanted(&mut cx) {
                handback = Some(wanted);
                break;
            }
        }
        let Some(Wanted::Handback(handback)) = handback else {
            panic!("a full socket was not handed back");
        };
        assert!(!handback.unsent.is_empty() && handback.broken.is_none());

        let reader = tokio::spawn(async move {
            let mut got = vec![0; expected.len()];
            client.read_exact(&mut got).await.unwrap();
            assert!(got == expected, "the stream differs from the frames");
        });
        let mut stream = ws::Stream::Tcp(Arc::clone(&tcp));
        stream.write_all(&handback.unsent).await.unwrap();
        while let Some(delivery) = member.try_next().unwrap() {
            stream
                .write_all(&frame(delivery.frame.as_str()))
                .await
                .unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), reader)
            .await
            .expect("every byte arrived")
            .unwrap();
        drop(member);
        assert_eq!(ring.stored(), 0);
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
