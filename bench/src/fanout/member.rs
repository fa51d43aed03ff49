//! One member connection of a fan-out run: it receives, checks and times
//! every delivery of its room, and, if it is one of the senders, sends.
//!
//! One task owns the socket, so there is no split and no channel: the loop
//! waits for readiness, drains the socket through its [`FrameReader`] (the
//! thread's shared buffer, frames walked in place), and writes whatever it
//! has to send (messages, pongs) with `try_write`. Nothing is allocated per
//! message.
//!
//! A sender keeps at most `window` of its own messages in flight: a message
//! is in flight from its send until the sender's own copy comes back (every
//! member, the sender included, receives each message of its room). In rate
//! mode it also follows a schedule: message `k` is due `k / (rate / S)`
//! seconds after the start.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::watch;

use super::shard::Shard;
use super::window::SharedWindow;
use super::{Phase, Shared};
use crate::frames::{FrameReader, Message, Status};
use crate::payload::{self, Payload};
use crate::tracker::{Arrival, SeqTracker};
use crate::wire::{self, OP_TEXT, WireError};

/// The sending side of a member that is a sender.
#[derive(Debug)]
struct Sender {
    /// Global sender id (room = id % rooms, member index = id / rooms).
    id: u32,
    /// Messages this sender must send in the run.
    quota: u64,
    /// Messages sent so far.
    sent: u64,
    /// Own messages received back.
    echoed: u64,
    /// Most messages in flight.
    window: u32,
    /// Rate mode: time between two of this sender's messages.
    interval: Option<Duration>,
    /// When the run started (rate schedule), set on entering `Run`.
    start: Option<Instant>,
}

impl Sender {
    /// Messages the window lets this sender send now: its own window less
    /// what it has in flight, or the tickets of the shared window it has
    /// not used yet.
    fn room_left(&self, shared: &Shared) -> u64 {
        if let Some(window) = &shared.window {
            window.granted(self.id).saturating_sub(self.sent)
        } else {
            let in_flight = self.sent - self.echoed.min(self.sent);
            u64::from(self.window).saturating_sub(in_flight)
        }
    }
}

/// Per-connection counters, folded into the local at the end.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemberCounts {
    /// Data frames received, copies included.
    pub deliveries: u64,
    /// Distinct data messages received.
    pub distinct: u64,
    /// Extra copies.
    pub duplicated: u64,
    /// First copies that came after a later message of the same sender.
    pub out_of_order: u64,
    /// Messages sent to this member's room and never received.
    pub lost: u64,
    /// Broken frames, unexpected closes, binary frames, I/O errors.
    pub errors: u64,
    /// `{"message": ...}` frames that chat-bench did not send, or a data
    /// message from a sender of another room.
    pub foreign: u64,
}

impl MemberCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.deliveries += other.deliveries;
        self.distinct += other.distinct;
        self.duplicated += other.duplicated;
        self.out_of_order += other.out_of_order;
        self.lost += other.lost;
        self.errors += other.errors;
        self.foreign += other.foreign;
    }
}

/// One member's state.
#[derive(Debug)]
pub struct Member {
    /// Room index.
    room: u32,
    /// Index of this member in its room.
    index: u32,
    /// Present if this member sends.
    sender: Option<Sender>,
    /// One tracker per sender of this room, indexed by `sender_id / rooms`.
    streams: Vec<SeqTracker>,
    /// Has the warm-up message of the room arrived?
    warm: bool,
    /// Has this member sent its room's warm-up message (member 0 only)?
    warmup_sent: bool,
    /// Bytes to write; `out[out_pos..]` is still unsent.
    out: Vec<u8>,
    out_pos: usize,
    /// Reused buffer for building one message.
    scratch: Vec<u8>,
    /// The socket is finished (closed by the peer or failed).
    closed: bool,
    counts: MemberCounts,
}

/// What woke the member's loop.
enum Wake {
    Ready(std::io::Result<tokio::io::Ready>),
    Phase(Phase, watch::Receiver<Phase>),
    Timer,
}

type PhaseFuture = Pin<Box<dyn Future<Output = (Phase, watch::Receiver<Phase>)>>>;

/// Waits for the next phase change; owns the receiver so that the future
/// can live across loop iterations (recreated only when a phase changes).
fn next_phase(mut rx: watch::Receiver<Phase>) -> PhaseFuture {
    Box::pin(async move {
        let phase = match rx.changed().await {
            Ok(()) => *rx.borrow_and_update(),
            // The controller is gone: nothing more will happen.
            Err(_) => Phase::Stop,
        };
        (phase, rx)
    })
}

impl Member {
    /// A member of `room` at `index`; it sends if `index * rooms + room`
    /// is below the number of senders.
    pub fn new(shared: &Shared, room: u32, index: u32) -> Self {
        let cfg = &shared.config.settings;
        let rooms = cfg.rooms;
        let sender_id = u64::from(index) * u64::from(rooms) + u64::from(room);
        let sender = (sender_id < u64::from(cfg.senders())).then(|| {
            // Checked just above: below the number of senders, a u32.
            let id = u32::try_from(sender_id).unwrap_or(u32::MAX);
            Sender {
                id,
                quota: cfg.quota(id),
                sent: 0,
                echoed: 0,
                window: cfg.window,
                interval: cfg.rate.map(|rate| {
                    Duration::from_secs_f64(f64::from(cfg.senders()) / rate.max(f64::MIN_POSITIVE))
                }),
                start: None,
            }
        });
        let streams = vec![SeqTracker::default(); cfg.senders_in_room(room) as usize];
        Self {
            room,
            index,
            sender,
            streams,
            warm: false,
            warmup_sent: false,
            out: Vec::with_capacity(4096),
            out_pos: 0,
            scratch: Vec::with_capacity(cfg.size + 64),
            closed: false,
            counts: MemberCounts::default(),
        }
    }

    /// Runs the member until the `Stop` phase, then returns its counts.
    /// `leftover` is what the server sent right after its handshake response.
    pub async fn run(
        mut self,
        stream: TcpStream,
        leftover: Vec<u8>,
        local: &std::cell::RefCell<Shard>,
        shared: Arc<Shared>,
        rx: watch::Receiver<Phase>,
    ) -> MemberCounts {
        let mut phase = *rx.borrow();
        let mut phase_fut = next_phase(rx);
        let mut reader = FrameReader::new(leftover);
        let early = self.receive(&mut reader, None, &mut local.borrow_mut(), &shared);
        if let Err(reason) = early {
            self.fail(phase, &reason, &shared);
        }
        while phase != Phase::Stop {
            if !self.closed {
                self.queue_sends(phase, &shared);
                if let Err(error) = self.flush(&stream) {
                    self.fail(phase, &error, &shared);
                }
            }
            let interest = if self.out_pos < self.out.len() {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            let timer = if self.closed {
                None
            } else {
                self.next_due(phase, &shared)
            };
            // With a shared window, a sender whose window is shut waits for
            // a ticket (another sender's echo frees it).
            let ticket = match (&shared.window, &self.sender) {
                (Some(window), Some(sender))
                    if phase == Phase::Run
                        && sender.sent < sender.quota
                        && sender.room_left(&shared) == 0 =>
                {
                    Some((window, sender.id))
                }
                _ => None,
            };
            let wake = if self.closed {
                let (p, rx) = (&mut phase_fut).await;
                Wake::Phase(p, rx)
            } else {
                tokio::select! {
                    ready = stream.ready(interest) => Wake::Ready(ready),
                    (p, rx) = &mut phase_fut => Wake::Phase(p, rx),
                    () = sleep_until_opt(timer), if timer.is_some() => Wake::Timer,
                    () = issued(ticket), if ticket.is_some() => Wake::Timer,
                }
            };
            match wake {
                Wake::Ready(Ok(ready)) => {
                    if ready.is_readable() || ready.is_read_closed() {
                        let read = self.receive(
                            &mut reader,
                            Some(&stream),
                            &mut local.borrow_mut(),
                            &shared,
                        );
                        if let Err(reason) = read {
                            self.fail(phase, &reason, &shared);
                        }
                    }
                }
                Wake::Ready(Err(error)) => self.fail(phase, &error, &shared),
                Wake::Phase(p, rx) => {
                    phase = p;
                    phase_fut = next_phase(rx);
                    if phase == Phase::Run {
                        if let Some(sender) = &mut self.sender {
                            sender.start = Some(Instant::now());
                        }
                    }
                }
                Wake::Timer => {}
            }
        }
        self.say_goodbye(&stream);
        self.finish(&shared)
    }

    /// Sends a close frame (1000, normal closure) if the socket is still
    /// open, so that servers see a clean close rather than a reset; the
    /// server's reply is not awaited.
    fn say_goodbye(&mut self, stream: &TcpStream) {
        if self.closed {
            return;
        }
        self.out.clear();
        self.out_pos = 0;
        wire::push_frame(
            &mut self.out,
            wire::OP_CLOSE,
            &1000u16.to_be_bytes(),
            wire::mask_key(),
        );
        let _ = stream.try_write(&self.out);
    }

    /// Records the end of the socket: during the run it is an error, after
    /// it a normal end. A sender that cannot send any more is done, so
    /// that the run does not wait for it.
    fn fail(&mut self, phase: Phase, error: &dyn std::fmt::Display, shared: &Shared) {
        if self.closed {
            return;
        }
        self.closed = true;
        if phase != Phase::Stop {
            tracing::debug!(room = self.room, index = self.index, %error, "connection failed");
            self.counts.errors += 1;
            shared.record_error(&error.to_string());
        }
        self.stop_sending(shared);
    }

    /// Ends this member's sending where it is (it failed, or the run's
    /// time is up), so that the run does not wait for the rest of its
    /// quota. `senders_done` is released after `sent_total`, so the run
    /// reads a final count once every sender is done.
    fn stop_sending(&mut self, shared: &Shared) {
        if let Some(sender) = &mut self.sender {
            if sender.sent < sender.quota {
                sender.quota = sender.sent;
                shared.senders_done.fetch_add(1, Ordering::Release);
            }
        }
    }

    /// The time the next scheduled message is due, if this member waits
    /// on its rate schedule rather than on its window.
    fn next_due(&self, phase: Phase, shared: &Shared) -> Option<Instant> {
        let sender = self.sender.as_ref()?;
        if phase != Phase::Run || sender.sent >= sender.quota {
            return None;
        }
        let interval = sender.interval?;
        let start = sender.start?;
        // A full window is freed by an echo (a read, or another sender's
        // ticket), not by the clock: waking on an overdue schedule would spin.
        if sender.room_left(shared) == 0 {
            return None;
        }
        let scheduled = u32::try_from(sender.sent).ok()?;
        Some(start + interval.saturating_mul(scheduled))
    }

    /// Appends to `out` whatever this member may send now.
    fn queue_sends(&mut self, phase: Phase, shared: &Shared) {
        if phase >= Phase::Warmup && self.index == 0 && !self.warmup_sent {
            self.warmup_sent = true;
            self.scratch.clear();
            payload::write_control(&mut self.scratch, b'w', &self.room.to_string());
            wire::push_frame(&mut self.out, OP_TEXT, &self.scratch, wire::mask_key());
        }
        if phase != Phase::Run {
            if phase == Phase::Drain {
                self.stop_sending(shared);
            }
            return;
        }
        let Some(sender) = &mut self.sender else {
            return;
        };
        let cfg = &shared.config.settings;
        let mut allowed = sender
            .room_left(shared)
            .min(sender.quota - sender.sent.min(sender.quota));
        if let (Some(interval), Some(start)) = (sender.interval, sender.start) {
            let elapsed = start.elapsed().as_secs_f64();
            // Truncation is the intent: the number of whole intervals elapsed.
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let due_total = (elapsed / interval.as_secs_f64()) as u64 + 1;
            allowed = allowed.min(due_total.saturating_sub(sender.sent));
        }
        if allowed == 0 {
            return;
        }
        let now_ns = shared.now_ns();
        for _ in 0..allowed {
            self.scratch.clear();
            payload::write_data(&mut self.scratch, sender.id, sender.sent, now_ns, cfg.size);
            wire::push_frame(&mut self.out, OP_TEXT, &self.scratch, wire::mask_key());
            sender.sent += 1;
        }
        shared.sent_by[sender.id as usize].store(sender.sent, Ordering::Relaxed);
        shared.sent_total.fetch_add(allowed, Ordering::Relaxed);
        if sender.sent == sender.quota {
            shared.senders_done.fetch_add(1, Ordering::Release);
        }
    }

    /// Writes as much of `out` as the socket takes.
    fn flush(&mut self, stream: &TcpStream) -> std::io::Result<()> {
        while self.out_pos < self.out.len() {
            match stream.try_write(&self.out[self.out_pos..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(())
    }

    /// Reads what the socket holds (without a socket: the bytes that came
    /// with the handshake) and handles every message; `Err` says why the
    /// stream ended (a close frame, its end, a broken frame).
    fn receive(
        &mut self,
        reader: &mut FrameReader,
        stream: Option<&TcpStream>,
        local: &mut Shard,
        shared: &Shared,
    ) -> Result<(), String> {
        let recv_ns = shared.now_ns();
        let was_warm = self.warm;
        let echoed = self.sender.as_ref().map_or(0, |s| s.echoed);
        let mut distinct = 0;
        let mut close = String::new();
        let on = |message: Message<'_>| match message {
            Message::Text(text) => distinct += self.on_message(text, recv_ns, local),
            // Not a chat message.
            Message::Binary(_) => self.counts.errors += 1,
            Message::Close(payload) => close = wire::describe_close(payload),
        };
        let status = match stream {
            Some(stream) => reader.read(stream, usize::MAX, on),
            None => reader.parse_pending(on),
        };
        if reader.has_replies() {
            self.out.extend_from_slice(&reader.take_replies());
        }
        if distinct > 0 {
            shared.distinct_total.fetch_add(distinct, Ordering::Relaxed);
            local.last_delivery_ns = local.last_delivery_ns.max(recv_ns);
        }
        if self.warm && !was_warm {
            shared.warm.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(window), Some(sender)) = (&shared.window, &self.sender) {
            for _ in echoed..sender.echoed {
                window.complete();
            }
        }
        match status {
            Ok(Status::Drained | Status::Budget) => Ok(()),
            Ok(Status::Closed) => Err(format!("close frame from the server: {close}")),
            Ok(Status::Eof) => Err("connection closed by the server".to_owned()),
            Err(WireError::Io(error)) => Err(error.to_string()),
            Err(error) => {
                tracing::debug!(%error, "bad frame from server");
                Err(format!("broken frame from the server: {error}"))
            }
        }
    }

    /// Handles one text message; returns 1 if it was a first copy of a
    /// data message.
    #[inline]
    fn on_message(&mut self, text: &[u8], recv_ns: u64, local: &mut Shard) -> u64 {
        match payload::parse(text) {
            Ok(Payload::Data {
                sender,
                seq,
                sent_ns,
            }) => {
                let rooms = local.rooms;
                if sender % rooms != self.room {
                    self.counts.foreign += 1;
                    return 0;
                }
                let Some(stream) = self.streams.get_mut((sender / rooms) as usize) else {
                    self.counts.foreign += 1;
                    return 0;
                };
                self.counts.deliveries += 1;
                match stream.record(seq) {
                    Arrival::Duplicate => {
                        self.counts.duplicated += 1;
                        0
                    }
                    arrival => {
                        if arrival == Arrival::OutOfOrder {
                            self.counts.out_of_order += 1;
                        }
                        self.counts.distinct += 1;
                        local.record_latency(recv_ns.saturating_sub(sent_ns));
                        if let Some(own) = &mut self.sender {
                            if own.id == sender {
                                own.echoed += 1;
                            }
                        }
                        1
                    }
                }
            }
            Ok(Payload::Warmup) => {
                self.warm = true;
                0
            }
            Ok(Payload::Probe) => 0,
            Ok(Payload::Foreign) => {
                self.counts.foreign += 1;
                0
            }
            Err(_) => {
                self.counts.errors += 1;
                0
            }
        }
    }

    /// Final counts: the loss of each stream against what its sender sent.
    fn finish(mut self, shared: &Shared) -> MemberCounts {
        let rooms = shared.config.settings.rooms;
        for (i, stream) in self.streams.iter().enumerate() {
            let sender = u32::try_from(i).unwrap_or(u32::MAX) * rooms + self.room;
            let sent = shared
                .sent_by
                .get(sender as usize)
                .map_or(0, |s| s.load(Ordering::Relaxed));
            self.counts.lost += stream.lost(sent);
        }
        self.counts
    }
}

/// Waits for a ticket of the shared window, or forever without one.
async fn issued(ticket: Option<(&SharedWindow, u32)>) {
    match ticket {
        Some((window, sender)) => window.issued(sender).await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    if let Some(deadline) = deadline {
        tokio::time::sleep_until(deadline.into()).await;
    }
}
