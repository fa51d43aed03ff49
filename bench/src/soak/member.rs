//! A well-behaved client: one slot of R × M that keeps a typed connection
//! in a room, talks at a human rate, and checks everything it receives.
//!
//! One connection (a *session*) runs: open `?v=2`, take the `welcome` (its
//! `last_id` and `epoch` bound what this connection is owed, see
//! [`super::ledger`]), then send data messages on a jittered schedule
//! while recording every chat event. A churner leaves after a random stay
//! and the next session joins a random room; a steady member stays until
//! the run stops. Leaving is clean and bounded: wait (at most
//! [`ECHO_WAIT`]) until every own message has come back, so its id is
//! known, then close 1000 and read until the server's close reply (at most
//! [`CLOSE_WAIT`]); what arrives meanwhile still counts.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chat_protocol::{ChatEvent, ErrorCode, ServerEvent};
use hdrhistogram::Histogram;
use tokio::sync::watch;
use tokio::time::Instant;

use super::conn::{Conn, Ended, Incoming, Open};
use super::ledger::{Membership, StreamRecord};
use super::report::WellBehaved;
use super::{Shared, WELL_BEHAVED, lock, pause, sleep_until_opt, stopped};
use crate::payload::{self, Payload};
use crate::report::new_histogram;
use crate::tracker::Arrival;
use crate::wire::OP_TEXT;

/// Longest a leaving member waits for its own messages to come back.
const ECHO_WAIT: Duration = Duration::from_secs(10);

/// Longest a leaving member waits for the server's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Which member this task is.
#[derive(Debug, Clone, Copy)]
pub(super) struct Slot {
    /// Index among all R × M slots.
    pub index: u32,
    /// The room of its first session (slot % R).
    pub home: u32,
    /// Whether it leaves and rejoins random rooms.
    pub churner: bool,
}

/// Runs a member slot until the run stops.
pub(super) async fn run(shared: Arc<Shared>, slot: Slot, mut stop: watch::Receiver<bool>) {
    let mut rng = fastrand::Rng::new();
    let mut latency = new_histogram();
    // Spread the first handshakes over about a second.
    if !pause(
        &mut stop,
        Duration::from_millis(u64::from(slot.index % 200) * 5),
    )
    .await
    {
        return;
    }
    let mut room = slot.home;
    loop {
        let mut session = Session::new(&shared, room, &mut latency);
        let clean = session.run(slot, &mut rng, &mut stop).await;
        session.finish(clean);
        if *stop.borrow() {
            break;
        }
        let wait = if clean {
            Duration::from_millis(rng.u64(100..500))
        } else {
            Duration::from_secs(1)
        };
        if !pause(&mut stop, wait).await {
            break;
        }
        if slot.churner {
            room = rng.u32(..shared.config.settings.rooms);
        }
    }
    if let Err(error) = lock(&shared.latency).add(&latency) {
        tracing::warn!(%error, "merging latency histograms");
    }
}

/// Why a session's main loop ended.
enum Exit {
    /// Time to leave (a churner's stay is over, or the run stops).
    Leave,
    /// The connection ended by itself.
    Broken(Ended),
}

/// One connection of a member.
struct Session<'a> {
    shared: &'a Shared,
    room: u32,
    room_name: String,
    stream: u32,
    /// The room id of each own message by sequence number (0: no echo yet).
    ids: Vec<u64>,
    echoed: usize,
    membership: Membership,
    counts: WellBehaved,
    latency: &'a mut Histogram<u64>,
    scratch: Vec<u8>,
    /// The welcome arrived (this connection is part of the ledger).
    welcomed: bool,
}

impl<'a> Session<'a> {
    fn new(shared: &'a Shared, room: u32, latency: &'a mut Histogram<u64>) -> Self {
        let stream = shared.next_stream();
        Self {
            shared,
            room,
            room_name: shared.config.room_name(room),
            stream,
            ids: Vec::new(),
            echoed: 0,
            membership: Membership {
                stream,
                room,
                ..Membership::default()
            },
            counts: WellBehaved::default(),
            latency,
            scratch: Vec::new(),
            welcomed: false,
        }
    }

    /// Opens, talks, and leaves; returns whether the session ended cleanly.
    async fn run(
        &mut self,
        slot: Slot,
        rng: &mut fastrand::Rng,
        stop: &mut watch::Receiver<bool>,
    ) -> bool {
        let cfg = &self.shared.config;
        let name = format!("m{}", slot.index);
        let open = Open {
            room: &self.room_name,
            typed: true,
            name: &name,
            small_pipe: None,
        };
        let (mut conn, _open) = match self.shared.connect(&open).await {
            Ok(opened) => opened,
            Err((outcome, expected, detail)) => {
                self.shared
                    .record(WELL_BEHAVED, &outcome, expected, &detail);
                return false;
            }
        };
        self.counts.connections += 1;
        if let Err(outcome) = self.welcome(&mut conn).await {
            self.shared
                .record(WELL_BEHAVED, &outcome.0, false, &outcome.1);
            return false;
        }

        let settings = &cfg.settings;
        let rate = settings.rate_min + rng.f64() * (settings.rate_max - settings.rate_min);
        let interval = Duration::from_secs_f64(1.0 / rate);
        let size = if self.room < settings.busy_rooms {
            settings.busy_size
        } else {
            settings.size
        };
        let jitter = |rng: &mut fastrand::Rng, mean: Duration| mean.mul_f64(0.5 + rng.f64());
        let mut next_send = Instant::now() + jitter(rng, interval);
        let leave_at = slot
            .churner
            .then(|| Instant::now() + jitter(rng, settings.churn_every.get()));
        let exit = loop {
            tokio::select! {
                biased;
                () = stopped(stop) => break Exit::Leave,
                received = conn.recv() => match received {
                    Ok(message) => self.on_message(message),
                    Err(ended) => break Exit::Broken(ended),
                },
                () = tokio::time::sleep_until(next_send) => {
                    next_send += jitter(rng, interval);
                    if let Err(ended) = self.send(&mut conn, size).await {
                        break Exit::Broken(ended);
                    }
                }
                () = sleep_until_opt(leave_at) => {
                    self.counts.churn_leaves += 1;
                    break Exit::Leave;
                }
            }
        };
        match exit {
            Exit::Leave => self.leave(&mut conn).await,
            Exit::Broken(ended) => {
                // Whatever was read before the end still counts.
                while let Some(message) = conn.try_recv() {
                    self.on_message(message);
                }
                self.shared
                    .record(WELL_BEHAVED, &ended.label(), false, ended.detail());
                false
            }
        }
    }

    /// Takes the welcome: the first message of a typed connection.
    async fn welcome(&mut self, conn: &mut Conn) -> Result<(), (String, String)> {
        let timeout = self.shared.config.server.setup_timeout;
        let first = tokio::time::timeout(timeout, conn.recv()).await;
        let text = match first {
            Ok(Ok(Incoming::Text(text))) => text,
            Ok(Ok(Incoming::Binary)) => return Err(("binary first".into(), String::new())),
            Ok(Err(ended)) => return Err((ended.label(), ended.detail().to_owned())),
            Err(_) => return Err(("no welcome".into(), format!("none within {timeout:?}"))),
        };
        match serde_json::from_slice::<ServerEvent>(&text) {
            Ok(ServerEvent::Welcome(welcome)) => {
                self.membership.joined_after = welcome.last_id;
                self.membership.epoch = welcome.epoch;
                self.welcomed = true;
                Ok(())
            }
            _ => Err((
                "no welcome".into(),
                String::from_utf8_lossy(&text).chars().take(100).collect(),
            )),
        }
    }

    /// Sends the next data message.
    async fn send(&mut self, conn: &mut Conn, size: usize) -> Result<(), Ended> {
        let seq = self.ids.len() as u64;
        self.scratch.clear();
        payload::write_data(
            &mut self.scratch,
            self.stream,
            seq,
            self.shared.now_ns(),
            size,
        );
        self.ids.push(0);
        self.counts.sent += 1;
        self.shared.sent.fetch_add(1, Ordering::Relaxed);
        conn.send(OP_TEXT, &self.scratch).await
    }

    /// Leaves cleanly: awaits the own echoes, then closes with 1000.
    async fn leave(&mut self, conn: &mut Conn) -> bool {
        let deadline = Instant::now() + ECHO_WAIT;
        while self.echoed < self.ids.len() {
            match tokio::time::timeout_at(deadline, conn.recv()).await {
                Ok(Ok(message)) => self.on_message(message),
                Ok(Err(ended)) => {
                    self.shared
                        .record(WELL_BEHAVED, &ended.label(), false, ended.detail());
                    return false;
                }
                // Missing echoes stay at id 0: the ledger counts them lost.
                Err(_) => break,
            }
        }
        conn.start_close(1000);
        let ended = conn.finish(CLOSE_WAIT).await;
        while let Some(message) = conn.try_recv() {
            self.on_message(message);
        }
        match ended {
            Some(Ended::Close {
                code: Some(1000), ..
            }) => {
                self.shared.record(WELL_BEHAVED, "left (1000)", true, "");
                true
            }
            Some(ended) => {
                self.shared.record(
                    WELL_BEHAVED,
                    &format!("leaving: {}", ended.label()),
                    false,
                    ended.detail(),
                );
                false
            }
            None => {
                self.shared.record(
                    WELL_BEHAVED,
                    "leaving: no close reply",
                    false,
                    &format!("none within {CLOSE_WAIT:?}"),
                );
                false
            }
        }
    }

    fn on_message(&mut self, message: Incoming) {
        let Incoming::Text(text) = message else {
            self.counts.errors += 1;
            return;
        };
        match serde_json::from_slice::<ServerEvent>(&text) {
            Ok(ServerEvent::Chat(chat)) => self.on_chat(&chat),
            Ok(ServerEvent::Error(error)) if error.code == ErrorCode::RateLimited => {
                self.counts.refused += 1;
            }
            Ok(ServerEvent::Error(_) | ServerEvent::Welcome(_)) | Err(_) => self.counts.errors += 1,
            Ok(_) => {}
        }
    }

    fn on_chat(&mut self, chat: &ChatEvent) {
        let m = &mut self.membership;
        if chat.id <= m.seen_through {
            m.id_regressions += 1;
        } else {
            m.seen_through = chat.id;
        }
        if chat.id <= m.joined_after {
            m.early += 1;
        }
        if chat.room.as_str() != self.room_name {
            m.wrong_room += 1;
        }
        match payload::parse_text(chat.message.as_bytes()) {
            Payload::Data {
                sender,
                seq,
                sent_ns,
            } => {
                let arrival = m.received.entry(sender).or_default().insert(seq);
                match arrival {
                    Arrival::Duplicate => {
                        m.duplicated += 1;
                        return;
                    }
                    Arrival::OutOfOrder => m.out_of_order += 1,
                    Arrival::InOrder => {}
                }
                self.counts.received += 1;
                self.shared.delivered.fetch_add(1, Ordering::Relaxed);
                self.latency
                    .saturating_record(self.shared.now_ns().saturating_sub(sent_ns).max(1_000));
                if sender == self.stream {
                    if let Some(id) = usize::try_from(seq).ok().and_then(|s| self.ids.get_mut(s)) {
                        *id = chat.id;
                        self.echoed += 1;
                    }
                }
            }
            _ if chat.message.starts_with(super::abuser::TEXT_TAG) => self.counts.abuse_seen += 1,
            _ => self.counts.foreign += 1,
        }
    }

    /// Hands the session's records and counts to the run.
    fn finish(self, clean: bool) {
        let shared = self.shared;
        lock(&shared.counters).add(&self.counts);
        if !self.welcomed {
            return;
        }
        lock(&shared.streams).push(StreamRecord {
            stream: self.stream,
            room: self.room,
            epoch: self.membership.epoch.clone(),
            ids: self.ids,
            clean,
        });
        lock(&shared.members).push(self.membership);
    }
}
