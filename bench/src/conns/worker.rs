//! One worker of a `conns` run: opens its share of idle connections, holds
//! them, and on command proves that each still receives.
//!
//! A worker is either a thread of the `conns` process (when one process's
//! file-descriptor limit is enough) or a separate process
//! (`chat-bench conns-worker SPEC`) that talks to the parent in JSON lines:
//! commands on stdin, [`Event`]s on stdout. Either way it runs [`run`].
//!
//! While held, a connection answers pings (Python's `websockets` and
//! Daphne ping every 20 s and drop a client that does not answer), so a
//! long hold measures idle connections, not dead ones.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};

use super::ConnsSettings;
use crate::frames::{FrameReader, Message, Status};
use crate::payload::{self, Payload};
use crate::secs::Secs;
use crate::wire::{self, OP_CLOSE, OP_TEXT, Target};

/// What a worker must do, as the parent hands it over.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerSpec {
    /// Worker number (names its rooms).
    pub worker: usize,
    /// Connections to open.
    pub count: u64,
    /// Index of this worker's first connection in the run (spreads the
    /// sources evenly across workers).
    pub first_index: u64,
    /// Room-name prefix of the run.
    pub room_prefix: String,
    /// The servers: connection `i` of the run goes to server `i % len`.
    pub targets: Vec<Target>,
    /// Limit for one handshake.
    pub setup_timeout: Secs,
    /// The run's settings.
    pub settings: ConnsSettings,
}

/// A command from the parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Command {
    /// Send one probe per room and count who receives it.
    Probe,
    /// Close everything and exit.
    Close,
}

/// A report to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "lowercase")]
pub enum Event {
    /// Progress while opening.
    Opening {
        /// Opened so far.
        opened: u64,
    },
    /// Every connection was attempted.
    Opened {
        /// Opened.
        opened: u64,
        /// Failed.
        failed: u64,
        /// First failure, if any.
        first_error: Option<String>,
        /// Seconds from start to the last attempt's end.
        secs: f64,
    },
    /// The probe finished.
    Probed {
        /// Connections that received their room's probe.
        received: u64,
        /// Connections that did not.
        missing: u64,
        /// Of the missing, those whose socket had ended (closed by the
        /// server or failed) by the end of the probe.
        #[serde(default)]
        closed: u64,
        /// Seconds from the probes' send to the last arrival (or timeout).
        secs: f64,
        /// Each probe's time from the worker's probe start to its arrival,
        /// microseconds.
        #[serde(default)]
        latencies_us: Vec<u32>,
        /// The close code and reason of the first connection the server
        /// closed, if any.
        #[serde(default)]
        first_close: Option<String>,
    },
}

/// The phases a worker's connections go through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Hold,
    Probe,
    Close,
}

/// Counters shared by the worker's tasks (one thread, so `Cell`s).
#[derive(Debug, Default)]
struct Tally {
    opened: Cell<u64>,
    failed: Cell<u64>,
    received: Cell<u64>,
    /// Connections that ended before or during the probe.
    dead: Cell<u64>,
    first_error: RefCell<Option<String>>,
    /// Has room `r` had its probe sent?
    probed: RefCell<Vec<bool>>,
    /// When the probes were sent.
    probe_start: Cell<Option<Instant>>,
    /// Each connection's probe latency, microseconds.
    latencies_us: RefCell<Vec<u32>>,
    /// How the first connection the server closed was closed.
    first_close: RefCell<Option<String>>,
}

/// Runs one worker to the end.
///
/// # Errors
///
/// The runtime could not be built.
pub fn run(
    spec: &WorkerSpec,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut emit: impl FnMut(Event),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let settings = &spec.settings;
    let room_size = u64::from(settings.room_size.max(1));
    let rooms = usize::try_from(spec.count.div_ceil(room_size)).unwrap_or(0);
    let tally = Rc::new(Tally {
        probed: RefCell::new(vec![false; rooms]),
        ..Tally::default()
    });
    let sources = crate::config::loopback_sources(settings.sources);
    local.block_on(&runtime, async {
        let (phase_tx, phase_rx) = watch::channel(Phase::Hold);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<()>();
        let gate = Rc::new(Semaphore::new(settings.connect_concurrency.max(1)));
        let start = Instant::now();
        let setup_timeout = spec.setup_timeout.get();
        let mut tasks = Vec::new();
        for i in 0..spec.count {
            let room = i / room_size;
            let path = format!("/ws/chat/{}w{}r{room}/", spec.room_prefix, spec.worker);
            let global = usize::try_from(spec.first_index + i).unwrap_or(0);
            let source = (!sources.is_empty()).then(|| sources[global % sources.len()]);
            let Some(target) = spec.targets.get(global % spec.targets.len().max(1)) else {
                break;
            };
            let (tally, gate, target, phase_rx, done_tx) = (
                tally.clone(),
                gate.clone(),
                target.clone(),
                phase_rx.clone(),
                done_tx.clone(),
            );
            tasks.push(tokio::task::spawn_local(async move {
                let connected = {
                    let _permit = gate.acquire().await;
                    wire::connect(&target, &path, source, setup_timeout).await
                };
                match connected {
                    Ok((stream, leftover)) => {
                        tally.opened.set(tally.opened.get() + 1);
                        let _ = done_tx.send(());
                        let room = usize::try_from(room).unwrap_or(usize::MAX);
                        hold(stream, leftover, room, &tally, phase_rx).await;
                    }
                    Err(error) => {
                        tally.failed.set(tally.failed.get() + 1);
                        tally
                            .first_error
                            .borrow_mut()
                            .get_or_insert_with(|| error.to_string());
                        let _ = done_tx.send(());
                    }
                }
            }));
        }
        drop(done_tx);

        // Opening.
        let mut attempted = 0;
        let mut last_report = Instant::now();
        while attempted < spec.count {
            if done_rx.recv().await.is_none() {
                break;
            }
            attempted += 1;
            if last_report.elapsed() >= Duration::from_millis(500) {
                last_report = Instant::now();
                emit(Event::Opening {
                    opened: tally.opened.get(),
                });
            }
        }
        emit(Event::Opened {
            opened: tally.opened.get(),
            failed: tally.failed.get(),
            first_error: tally.first_error.borrow().clone(),
            secs: start.elapsed().as_secs_f64(),
        });

        // Holding, until told to probe or close.
        while let Some(command) = commands.recv().await {
            match command {
                Command::Probe => {
                    let probe_start = Instant::now();
                    let deadline = probe_start + settings.probe_timeout.get();
                    tally.probe_start.set(Some(probe_start));
                    let _ = phase_tx.send(Phase::Probe);
                    let opened = tally.opened.get();
                    while tally.received.get() + tally.dead.get() < opened
                        && Instant::now() < deadline
                    {
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    let received = tally.received.get();
                    emit(Event::Probed {
                        received,
                        missing: opened - received.min(opened),
                        closed: tally.dead.get(),
                        secs: probe_start.elapsed().as_secs_f64(),
                        latencies_us: tally.latencies_us.take(),
                        first_close: tally.first_close.borrow().clone(),
                    });
                }
                Command::Close => break,
            }
        }
        let _ = phase_tx.send(Phase::Close);
        // Let every connection send its close frame and drop its socket.
        let all = futures_util::future::join_all(tasks);
        let _ = tokio::time::timeout(Duration::from_secs(5), all).await;
    });
    Ok(())
}

/// Holds one connection: answers pings, and in the probe phase sends its
/// room's probe (if no one of the room has) and waits for it to arrive.
async fn hold(
    stream: TcpStream,
    leftover: Vec<u8>,
    room: usize,
    tally: &Tally,
    mut phase_rx: watch::Receiver<Phase>,
) {
    let mut phase = *phase_rx.borrow_and_update();
    let mut received = false;
    let mut reader = FrameReader::new(leftover);
    let mut out = Vec::new();
    // Probes are only sent in the probe phase, but this task may see one
    // before it sees the phase change.
    let mut on = |message: Message<'_>| {
        if let Message::Close(payload) = message {
            let mut first = tally.first_close.borrow_mut();
            first.get_or_insert_with(|| wire::describe_close(payload));
        }
        if let Message::Text(text) = message {
            if payload::parse(text) == Ok(Payload::Probe) {
                if !received {
                    received = true;
                    tally.received.set(tally.received.get() + 1);
                    if let Some(start) = tally.probe_start.get() {
                        let us = u32::try_from(start.elapsed().as_micros()).unwrap_or(u32::MAX);
                        tally.latencies_us.borrow_mut().push(us);
                    }
                }
            } else {
                tracing::debug!(
                    text = %String::from_utf8_lossy(text),
                    "unexpected message on an idle connection"
                );
            }
        }
    };
    let mut status = reader.parse_pending(&mut on);
    loop {
        if !matches!(status, Ok(Status::Drained | Status::Budget)) {
            // The socket ended before the close phase (a close frame, its
            // end, an error).
            break;
        }
        if phase == Phase::Close {
            // A clean close (1000) rather than a reset; not awaited.
            out.clear();
            wire::push_frame(&mut out, OP_CLOSE, &1000u16.to_be_bytes(), wire::mask_key());
            let _ = stream.try_write(&out);
            return;
        }
        if phase == Phase::Probe {
            let mut probed = tally.probed.borrow_mut();
            if let Some(slot) = probed.get_mut(room) {
                if !*slot {
                    *slot = true;
                    let mut text = Vec::new();
                    payload::write_control(&mut text, b'p', &room.to_string());
                    wire::push_frame(&mut out, OP_TEXT, &text, wire::mask_key());
                }
            }
        }
        out.extend_from_slice(&reader.take_replies());
        if !out.is_empty() {
            // A few bytes on an idle socket: the send buffer takes them.
            match stream.try_write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => break,
            }
        }
        tokio::select! {
            ready = stream.readable() => {
                status = match ready {
                    Ok(()) => reader.read(&stream, usize::MAX, &mut on),
                    Err(error) => Err(error.into()),
                };
            }
            changed = phase_rx.changed() => {
                phase = if changed.is_ok() { *phase_rx.borrow_and_update() } else { Phase::Close };
            }
        }
    }
    if !received {
        tally.dead.set(tally.dead.get() + 1);
    }
}
