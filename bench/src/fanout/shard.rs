//! One load-generator thread of a fan-out run: a current-thread tokio
//! runtime that opens its share of the members and runs them.
//!
//! Everything a delivery touches lives here, behind one `RefCell` that no
//! task holds across an `.await`: the latency histogram and the time of the
//! last delivery (the read buffer every connection of the thread reads into
//! is [`crate::frames`]'s).
//! Only the run's totals cross threads, as relaxed atomics updated once per
//! read, not once per message.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hdrhistogram::Histogram;
use tokio::sync::{Semaphore, watch};

use super::member::{Member, MemberCounts};
use super::{Phase, Shared};
use crate::wire;

/// The per-thread state that deliveries update.
#[derive(Debug)]
pub struct Shard {
    /// Rooms in the run (to map a sender id to its room).
    pub rooms: u32,
    /// Latency of every first copy, in nanoseconds.
    hist: Histogram<u64>,
    /// When the last first copy arrived, nanoseconds since the origin.
    pub last_delivery_ns: u64,
}

impl Shard {
    /// Records one latency, clamped into the histogram's range.
    #[inline]
    pub fn record_latency(&mut self, ns: u64) {
        self.hist.saturating_record(ns.max(1));
    }
}

/// What a thread hands back at the end.
#[derive(Debug)]
pub struct ShardResult {
    /// Latency histogram (nanoseconds).
    pub hist: Histogram<u64>,
    /// Summed member counts.
    pub counts: MemberCounts,
    /// Last first copy, nanoseconds since the origin (0 if none).
    pub last_delivery_ns: u64,
}

/// Runs the members `(room, index)` of this thread until the `Stop` phase.
///
/// # Errors
///
/// The runtime could not be built.
pub fn run(
    shared: &Arc<Shared>,
    members: Vec<(u32, u32)>,
    rx: &watch::Receiver<Phase>,
    connect_concurrency: usize,
) -> std::io::Result<ShardResult> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tasks_set = tokio::task::LocalSet::new();
    let local = Rc::new(RefCell::new(Shard {
        rooms: shared.config.settings.rooms,
        hist: crate::report::new_histogram(),
        last_delivery_ns: 0,
    }));
    let counts = tasks_set.block_on(&runtime, async {
        if let Some(interval) = shared.config.settings.read_interval() {
            // Batch reads: stall the thread between rounds so that frames
            // pile up in the sockets. See `FanoutConfig::read_interval`.
            let mut rx = rx.clone();
            tokio::task::spawn_local(async move {
                while *rx.borrow_and_update() != Phase::Stop {
                    std::thread::sleep(interval);
                    tokio::task::yield_now().await;
                }
            });
        }
        if shared.config.settings.busy_poll {
            // Keep the runtime from ever sleeping in epoll_wait: with a task
            // always ready, the I/O driver is polled without blocking. See
            // `FanoutConfig::busy_poll` for why.
            let mut rx = rx.clone();
            tokio::task::spawn_local(async move {
                while *rx.borrow_and_update() != Phase::Stop {
                    tokio::task::yield_now().await;
                }
            });
        }
        let gate = Rc::new(Semaphore::new(connect_concurrency.max(1)));
        let mut tasks = Vec::with_capacity(members.len());
        for (room, index) in members {
            let (local, shared, gate, rx) =
                (local.clone(), shared.clone(), gate.clone(), rx.clone());
            tasks.push(tokio::task::spawn_local(async move {
                let connected = {
                    let _permit = gate.acquire().await;
                    let cfg = &shared.config;
                    let path = cfg.path(room);
                    let global = room as usize * cfg.settings.members as usize + index as usize;
                    let sources = &shared.sources;
                    let source = (!sources.is_empty()).then(|| sources[global % sources.len()]);
                    wire::connect(&cfg.server.target, &path, source, cfg.server.setup_timeout).await
                };
                match connected {
                    Ok((stream, leftover)) => {
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                        let member = Member::new(&shared, room, index);
                        Some(
                            member
                                .run(stream, leftover, &local, shared.clone(), rx)
                                .await,
                        )
                    }
                    Err(error) => {
                        shared.connect_failed(&error.to_string());
                        None
                    }
                }
            }));
        }
        let mut total = MemberCounts::default();
        for task in tasks {
            match task.await {
                Ok(Some(counts)) => total.add(&counts),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "member task panicked");
                    total.errors += 1;
                }
            }
        }
        total
    });
    let local =
        Rc::try_unwrap(local).map_or_else(|rc| rc.borrow().clone_result(), RefCell::into_inner);
    Ok(ShardResult {
        hist: local.hist,
        counts,
        last_delivery_ns: local.last_delivery_ns,
    })
}

impl Shard {
    /// A copy of the parts a result needs (only if a task still holds the
    /// shard, which cannot happen once every task has been awaited).
    fn clone_result(&self) -> Shard {
        Shard {
            rooms: self.rooms,
            hist: self.hist.clone(),
            last_delivery_ns: self.last_delivery_ns,
        }
    }
}
