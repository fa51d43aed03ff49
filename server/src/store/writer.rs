//! The writer thread: the only connection that writes. It takes whatever
//! is queued, commits it as one transaction (group commit), answers room
//! loads in queue order, fills the (room, id) index and the search index
//! in bulk, applies retention in small steps between batches, and, while
//! the disk refuses writes, keeps its batch and retries.
//!
//! A commit only appends to `messages` (its last pages). The (room, id)
//! index, `message_ids`, is filled later from the rows stored since
//! `ids_through`, many commits at a time: kept up to date at every commit,
//! it cost a page per room written to per commit, more than the messages
//! themselves with many busy rooms. Reads scan the rows not indexed yet
//! (see `read.rs`), which [`IDS_BACKLOG`] keeps few.
//!
//! Under load it sleeps between commits rather than waiting on the queue:
//! a thread blocked on the queue is woken by every message (a system call
//! on the publishing worker and a context switch each), a sleeping one is
//! not, so publishers only pay for a queue push.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use chat_protocol::{ChatEvent, RoomName, unix_millis};
use rusqlite::{Connection, OptionalExtension, params};
use tracing::{error, info, warn};

use super::{BATCH_MAX, CRASH_ID_GAP, Command, LoadedRoom, Shared, StoreConfig, StoreError};

/// Commits at most this often: a commit costs its fsync (a few hundred
/// microseconds of CPU, milliseconds of waiting) whatever its size, so at
/// a trickle of messages the writer gathers for this long instead of
/// committing each alone. It is also the longest a message waits to be
/// written, unless the writer is busy (see [`COMMIT_EVERY_BUSY`]).
const COMMIT_EVERY: Duration = Duration::from_millis(10);

/// When a batch holds at least [`BUSY_BATCH`] messages when
/// [`COMMIT_EVERY`] is up, the writer gathers until this long after the
/// last commit instead (or until [`BATCH_MAX`] messages). A commit's cost
/// is mostly the pages it writes: when the (room, id) index was written at
/// every commit (one leaf per room written to), committing every 50 ms
/// instead of every 10 ms at 100 busy rooms stored a message for about a
/// third less CPU (BENCHMARKS.md, "The cost of keeping history"); with
/// that index filled in bulk the difference is smaller (stand-alone, 880
/// against 4,400 messages a commit: ~0.5 against ~0.45 µs a message).
const COMMIT_EVERY_BUSY: Duration = Duration::from_millis(50);

/// See [`COMMIT_EVERY_BUSY`]: more than 25,000 messages a second.
const BUSY_BATCH: usize = 256;

/// How long to wait before writing again after a failed write.
const RETRY: Duration = Duration::from_millis(500);

/// Rows one retention step deletes at most, so that a large clean-up
/// never holds up the messages queued behind it for long.
const RETENTION_STEP: i64 = 2000;

/// Messages one indexing step adds to the search index (a few to a few
/// tens of milliseconds of work), between looks at the queue. Each step is
/// a transaction, and FTS5 writes a segment per transaction and merges
/// them later: measured on 200,000 messages of 8 words, 2,000 per step
/// cost 4.3 µs per message indexed, 5,000 to 50,000 per step 3.1-3.3 µs.
const INDEX_STEP: i64 = 5000;

/// Indexing waits until nothing has been queued for this long, so that
/// a burst of messages is stored at full speed and indexed after it.
const INDEX_WHEN_IDLE: Duration = Duration::from_millis(50);

/// Past this many messages not indexed, indexing goes on under load too,
/// so that the part of a search that is a scan stays small.
const INDEX_BACKLOG: u64 = 100_000;

/// Past this many stored messages not in `message_ids`, the writer adds
/// them under load too (when idle, at once): every read scans them, so
/// this bounds a page read's extra work (16,384 rows, ~2 MB at 100 bytes a
/// message: a few ms). Each step writes about one page per room in it, so
/// bigger steps cost less per message: measured stand-alone (100 rooms,
/// 200,000 messages), ~0.6-0.7 µs per message indexed at 16,384 per step,
/// against ~1.8 µs more per message stored for the index kept at every
/// commit.
const IDS_BACKLOG: u64 = 16_384;

/// The most messages one step adds to `message_ids` (at start, after a
/// crash, or when idle after a long burst).
const IDS_STEP: i64 = 65_536;

/// Marks the file as in use after an unclean stop: raises every room's
/// `last_id` by [`CRASH_ID_GAP`] when the last server did not close it,
/// then records that a server has it open. Returns the rooms raised, if a
/// recovery was needed.
pub(super) fn recover(conn: &Connection) -> rusqlite::Result<Option<usize>> {
    let clean: Option<String> = conn
        .query_row("SELECT value FROM meta WHERE key = 'clean'", [], |row| {
            row.get(0)
        })
        .optional()?;
    let tx = conn.unchecked_transaction()?;
    // A new file (no flag yet) has handed out no ids.
    let raised = if clean.as_deref().is_some_and(|flag| flag != "1") {
        let gap = i64::try_from(CRASH_ID_GAP).unwrap_or(i64::MAX);
        Some(tx.execute("UPDATE rooms SET last_id = last_id + ?1", [gap])?)
    } else {
        None
    };
    tx.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '0')",
        [],
    )?;
    tx.commit()?;
    Ok(raised)
}

/// The writer thread's nice value: below the async workers (0), so that a
/// worker woken by the network preempts the writer on a shared core
/// rather than waiting for its commit to end. The gain in added p99 is
/// within this machine's noise (BENCHMARKS.md, "The cost of keeping
/// history", has the pairs); at 100 × 10 with the core saturated the
/// writer still keeps up at nice 5. Nice 10 did not: its share of a busy
/// core (about 5 %) was less than its work, its queue filled, and
/// publishes were refused.
const WRITER_NICE: i32 = 5;

/// Sets the calling thread's nice value to [`WRITER_NICE`] (Linux: a
/// thread's own priority, `setpriority(PRIO_PROCESS, gettid())`).
#[cfg(target_os = "linux")]
fn lower_priority() {
    let thread = rustix::thread::gettid();
    if let Err(err) = rustix::process::setpriority_process(Some(thread), WRITER_NICE) {
        warn!(%err, "could not lower the database writer thread's priority; it runs at the workers' priority");
    }
}

/// Elsewhere the writer keeps the process's priority.
#[cfg(not(target_os = "linux"))]
fn lower_priority() {}

/// A fresh epoch for a room the file has never seen.
fn new_epoch() -> String {
    format!("{:08x}.{:x}", fastrand::u32(..), unix_millis())
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

/// Whether the writer goes on after a command.
#[derive(Debug, PartialEq, Eq)]
enum Flow {
    Go,
    Stop,
}

pub(super) struct Writer {
    conn: Connection,
    inbox: Receiver<Command>,
    shared: Arc<Shared>,
    /// Room name -> row id, for rooms whose row is committed.
    rids: HashMap<RoomName, i64>,
    /// Row id -> the highest id stored or handed out (the room's
    /// `last_id` when it was read, then each committed message's id), for
    /// every room in `rids`. A room's ids reach the queue in increasing
    /// order (the memory layer queues them under its lock), so a message
    /// at or below it is one already stored: it is not stored again.
    highs: HashMap<i64, u64>,
    /// Messages taken from the queue and not committed yet.
    batch: Vec<Arc<ChatEvent>>,
    /// Topics taken from the queue and not committed yet, in order.
    topics: Vec<(RoomName, String)>,
    /// Bytes of `batch`, released from the queue's budget on commit.
    batch_bytes: usize,
    /// Messages committed so far.
    committed: u64,
    retain_days: Option<u32>,
    retain_messages: Option<u64>,
    retention_interval: Duration,
    /// When retention runs next; `None` while a run is under way.
    next_retention: Instant,
    /// Retention has more to delete.
    retention_busy: bool,
    /// When the last batch was committed.
    last_commit: Instant,
    /// Stored messages not in the search index yet (an upper bound:
    /// at start, unknown, so "many" until indexing finds the end).
    unindexed: u64,
    /// Stored messages not in `message_ids` yet (none at start: see
    /// [`index_all_ids`]).
    ids_unindexed: u64,
}

impl Writer {
    pub(super) fn new(
        conn: Connection,
        inbox: Receiver<Command>,
        shared: Arc<Shared>,
        config: &StoreConfig,
    ) -> Self {
        Self {
            conn,
            inbox,
            shared,
            rids: HashMap::new(),
            highs: HashMap::new(),
            batch: Vec::new(),
            topics: Vec::new(),
            batch_bytes: 0,
            committed: 0,
            retain_days: config.retain_days,
            retain_messages: config.retain_messages,
            retention_interval: config.retention_interval,
            next_retention: Instant::now(),
            retention_busy: false,
            unindexed: INDEX_BACKLOG,
            ids_unindexed: 0,
            last_commit: Instant::now(),
        }
    }

    /// Whether something taken from the queue waits to be committed.
    fn has_pending(&self) -> bool {
        !self.batch.is_empty() || !self.topics.is_empty()
    }

    /// Runs until told to close, or until every handle is gone.
    pub(super) fn run(mut self) {
        lower_priority();
        loop {
            let until_retention = self
                .next_retention
                .saturating_duration_since(Instant::now());
            let wait = if self.has_pending() {
                RETRY
            } else if self.retention_busy
                || self.unindexed >= INDEX_BACKLOG
                || self.ids_unindexed >= IDS_BACKLOG
            {
                Duration::ZERO
            } else if self.unindexed > 0 || self.ids_unindexed > 0 {
                INDEX_WHEN_IDLE.min(until_retention)
            } else {
                until_retention
            };
            let mut idle = false;
            let mut next = match self.inbox.recv_timeout(wait) {
                Ok(command) => Some(command),
                Err(RecvTimeoutError::Timeout) => {
                    idle = true;
                    None
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            };
            loop {
                while let Some(command) = next.take() {
                    if self.take(command) == Flow::Stop {
                        return;
                    }
                    if self.batch.len() >= BATCH_MAX {
                        break;
                    }
                    next = self.inbox.try_recv().ok();
                }
                // Nothing more queued right now: gather until the next
                // commit is due, asleep (see the module's doc).
                let every = if self.batch.len() >= BUSY_BATCH {
                    COMMIT_EVERY_BUSY
                } else {
                    COMMIT_EVERY
                };
                let due = self.last_commit + every;
                let now = Instant::now();
                if self.batch.len() >= BATCH_MAX
                    || !self.has_pending()
                    || self.shared.failing().is_some()
                    || now >= due
                {
                    break;
                }
                // In slices of at most COMMIT_EVERY, taking what has
                // queued meanwhile: asleep for all of COMMIT_EVERY_BUSY, a
                // fast enough stream would fill the queue (and publishes
                // would be refused) while the batch has room.
                std::thread::sleep((due - now).min(COMMIT_EVERY));
                next = self.inbox.try_recv().ok();
                if next.is_none() {
                    break;
                }
            }
            let _ = self.flush();
            if !self.has_pending() && self.next_retention <= Instant::now() {
                self.retention_step();
            } else if !self.has_pending()
                && self.ids_unindexed > 0
                && (idle || self.ids_unindexed >= IDS_BACKLOG)
            {
                self.ids_step();
            } else if !self.has_pending()
                && self.unindexed > 0
                && (idle || self.unindexed >= INDEX_BACKLOG)
            {
                self.index_step();
            }
        }
    }

    /// Takes one command from the queue: a write joins the batch, a load
    /// commits the batch first, a close ends the thread.
    fn take(&mut self, command: Command) -> Flow {
        match command {
            Command::Append(event) => {
                self.batch_bytes += super::queued_size(&event);
                self.batch.push(event);
            }
            Command::Topic { room, topic } => {
                self.batch_bytes += super::topic_size(&room, &topic);
                self.topics.push((room, topic));
            }
            Command::Load {
                room,
                history_len,
                reply,
            } => {
                let loaded = match self.flush() {
                    Ok(()) => self
                        .load(&room, history_len)
                        .map_err(|err| self.failed("loading a room", &err)),
                    Err(err) => Err(err),
                };
                let _ = reply.send(loaded);
            }
            Command::Close(done) => {
                self.close();
                let _ = done.send(());
                return Flow::Stop;
            }
        }
        Flow::Go
    }

    /// Commits the batch; on failure keeps it (to retry) and refuses new
    /// messages until a write succeeds.
    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.has_pending() {
            return Ok(());
        }
        match self.write_batch() {
            Ok(()) => {
                self.last_commit = Instant::now();
                self.committed += self.batch.len() as u64;
                self.unindexed += self.batch.len() as u64;
                self.ids_unindexed += self.batch.len() as u64;
                self.batch.clear();
                self.topics.clear();
                self.shared
                    .queued_bytes
                    .fetch_sub(self.batch_bytes, Ordering::AcqRel);
                self.batch_bytes = 0;
                self.shared.committed.send_replace(self.committed);
                if self.shared.failing().is_some() {
                    info!("the message store writes again; publishing resumes");
                    self.shared.set_failing(None);
                }
                Ok(())
            }
            Err(err) => Err(self.failed("writing messages", &err)),
        }?;
        Ok(())
    }

    /// Adds the next stored messages to the search index, a step at a time.
    fn index_step(&mut self) {
        match self.index_more() {
            Ok(0) => self.unindexed = 0,
            // Not 0 until a step finds nothing left: the count is a bound.
            Ok(done) => self.unindexed = self.unindexed.saturating_sub(done as u64).max(1),
            Err(err) => {
                warn!(%err, "indexing messages for search failed; will retry");
                self.unindexed = 0;
            }
        }
    }

    fn index_more(&mut self) -> rusqlite::Result<usize> {
        index_more(&self.conn, "fts_through", INDEX_STEP, FTS_STEP_SQL)
    }

    /// Adds the messages stored since `ids_through` to `message_ids`.
    fn ids_step(&mut self) {
        match index_ids(&self.conn) {
            Ok(0) => self.ids_unindexed = 0,
            Ok(done) => {
                self.ids_unindexed = self.ids_unindexed.saturating_sub(done as u64).max(1);
            }
            Err(err) => {
                // Reads stay right (they scan what is not indexed); the
                // next commit brings the writer back here.
                warn!(%err, "indexing messages by room and id failed; will retry");
                self.ids_unindexed = 0;
            }
        }
    }

    /// Records a write failure: logged once when it starts, reported by
    /// `/healthz`, and every publish refused until a write succeeds.
    fn failed(&self, what: &str, err: &rusqlite::Error) -> StoreError {
        let reason = describe(err);
        if self.shared.failing().is_none() {
            error!(%err, "the message store cannot write ({what}): {reason}; publishes are refused until it can");
        }
        self.shared.set_failing(Some(reason.clone()));
        StoreError::Failing { reason }
    }

    fn write_batch(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        // Rooms first looked up in this transaction: (name, rid, last_id).
        let mut new_rids = Vec::new();
        // Row id -> highest id with this batch, applied once committed.
        let mut highs: HashMap<i64, u64> = HashMap::new();
        {
            // Each message's room row, looked up once per run of one
            // room's messages; a message whose id is not above its room's
            // highest is one already stored (see `highs`).
            let mut rows: Vec<(i64, &ChatEvent)> = Vec::with_capacity(self.batch.len());
            let mut previous: Option<(&RoomName, i64)> = None;
            for event in &self.batch {
                let rid = match previous {
                    Some((room, rid)) if *room == event.room => rid,
                    _ => {
                        let rid = rid_of(&mut self.rids, &tx, &event.room, &mut new_rids)?;
                        previous = Some((&event.room, rid));
                        rid
                    }
                };
                let high = highs.entry(rid).or_insert_with(|| {
                    self.highs.get(&rid).copied().unwrap_or_else(|| {
                        new_rids
                            .iter()
                            .find(|(_, new, _)| *new == rid)
                            .map_or(0, |&(_, _, last_id)| last_id)
                    })
                });
                if event.id <= *high {
                    warn!(room = %event.room, id = event.id, "a message id was already stored; the new message was not");
                    continue;
                }
                *high = event.id;
                rows.push((rid, event));
            }
            // Whole chunks by one statement of INSERT_ROWS rows (a
            // statement's run costs about as much as its rows), the rest
            // one by one.
            let mut chunk = tx.prepare_cached(&insert_sql(INSERT_ROWS))?;
            let mut single = tx.prepare_cached(&insert_sql(1))?;
            let mut chunks = rows.chunks_exact(INSERT_ROWS);
            for rows in chunks.by_ref() {
                for (row, &(rid, event)) in rows.iter().enumerate() {
                    bind_message(&mut chunk, row * 6, rid, event)?;
                }
                chunk.raw_execute()?;
            }
            for &(rid, event) in chunks.remainder() {
                bind_message(&mut single, 0, rid, event)?;
                single.raw_execute()?;
            }
            let mut raise =
                tx.prepare_cached("UPDATE rooms SET last_id = max(last_id, ?2) WHERE rid = ?1")?;
            for (&rid, &id) in &highs {
                raise.execute(params![rid, to_i64(id)])?;
            }
            let mut topic = tx.prepare_cached("UPDATE rooms SET topic = ?2 WHERE rid = ?1")?;
            for (room, text) in &self.topics {
                let rid = rid_of(&mut self.rids, &tx, room, &mut new_rids)?;
                topic.execute(params![rid, text])?;
            }
        }
        match tx.commit() {
            Ok(()) => {
                for (_, rid, last_id) in new_rids {
                    self.highs.insert(rid, last_id);
                }
                self.highs.extend(highs);
                Ok(())
            }
            Err(err) => {
                // The transaction rolled back: forget rows it created.
                for (room, _, _) in new_rids {
                    self.rids.remove(&room);
                }
                Err(err)
            }
        }
    }

    fn load(&mut self, room: &RoomName, history_len: usize) -> rusqlite::Result<LoadedRoom> {
        let (rid, epoch, last_id) = room_row(&self.conn, room)?;
        self.rids.insert(room.clone(), rid);
        let high = self.highs.entry(rid).or_default();
        *high = (*high).max(to_u64(last_id));
        let mut history = super::read::newest(&self.conn, rid, room, history_len)?;
        history.reverse();
        let topic =
            self.conn
                .query_row("SELECT topic FROM rooms WHERE rid = ?1", [rid], |row| {
                    row.get(0)
                })?;
        Ok(LoadedRoom {
            epoch,
            last_id: to_u64(last_id),
            topic,
            history,
        })
    }

    /// Commits what is queued and marks the file cleanly closed (unless
    /// messages could not be written: then the next start raises ids).
    fn close(&mut self) {
        if self.flush().is_err() {
            error!(
                lost = self.batch.len(),
                "closing the message store with messages it could not write"
            );
            return;
        }
        let marked = self.conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('clean', '1')",
            [],
        );
        match marked {
            Ok(_) => {
                let _ = self.conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)");
                info!(messages = self.committed, "message store closed");
            }
            Err(err) => warn!(%err, "could not mark the message store as cleanly closed"),
        }
    }

    /// Deletes one step's worth of what retention removes; schedules the
    /// next run when nothing is left.
    fn retention_step(&mut self) {
        if self.retain_days.is_none() && self.retain_messages.is_none() {
            self.next_retention = Instant::now() + Duration::from_secs(3600 * 24 * 365);
            return;
        }
        // Retention walks rooms through `message_ids`: index everything
        // stored first (at most a few steps, see IDS_BACKLOG).
        while self.ids_unindexed > 0 {
            self.ids_step();
        }
        match self.delete_expired() {
            Ok(0) => {
                self.retention_busy = false;
                self.next_retention = Instant::now() + self.retention_interval;
            }
            Ok(deleted) => {
                self.retention_busy = true;
                info!(deleted, "retention: removed old messages");
            }
            Err(err) => {
                self.failed("applying retention", &err);
                self.retention_busy = false;
                self.next_retention = Instant::now() + RETRY;
            }
        }
    }

    fn delete_expired(&mut self) -> rusqlite::Result<usize> {
        let rooms: Vec<i64> = {
            let mut statement = self.conn.prepare_cached("SELECT rid FROM rooms")?;
            statement
                .query_map([], |row| row.get(0))?
                .collect::<rusqlite::Result<_>>()?
        };
        if let Some(days) = self.retain_days {
            let cutoff = to_i64(unix_millis()).saturating_sub(i64::from(days) * 86_400_000);
            // A room's oldest messages expire first: walk each room from
            // its first id (no index on the time is kept, it would cost
            // every insert). What is not in `message_ids` yet (stored
            // since the indexing above) is the newest, kept until the
            // next run. A trigger deletes the `message_ids` rows.
            for &rid in &rooms {
                let oldest: Option<i64> = self
                    .conn
                    .query_row(OLDEST_TS_SQL, [rid], |row| row.get(0))
                    .optional()?;
                if oldest.is_some_and(|ts| ts < cutoff) {
                    let deleted = self
                        .conn
                        .execute(DELETE_EXPIRED_SQL, params![rid, cutoff, RETENTION_STEP])?;
                    if deleted > 0 {
                        return Ok(deleted);
                    }
                }
            }
        }
        if let Some(keep) = self.retain_messages {
            for rid in rooms {
                let cut: Option<i64> = self
                    .conn
                    .query_row(KEEP_FROM_SQL, params![rid, to_i64(keep)], |row| row.get(0))
                    .optional()?;
                if let Some(cut) = cut {
                    let deleted = self
                        .conn
                        .execute(DELETE_BEYOND_SQL, params![rid, cut, RETENTION_STEP])?;
                    if deleted > 0 {
                        return Ok(deleted);
                    }
                }
            }
        }
        Ok(0)
    }
}

/// Retention: the time of a room's oldest message (rid).
const OLDEST_TS_SQL: &str = "SELECT m.ts FROM message_ids i JOIN messages m ON m.seq = i.seq \
     WHERE i.room = ?1 ORDER BY i.id LIMIT 1";

/// Retention: deletes a room's oldest messages stamped before a time
/// (rid, cutoff, at most).
const DELETE_EXPIRED_SQL: &str = "DELETE FROM messages WHERE seq IN (SELECT i.seq FROM message_ids i \
     JOIN messages m ON m.seq = i.seq WHERE i.room = ?1 AND m.ts < ?2 ORDER BY i.id LIMIT ?3)";

/// Retention: the id of a room's newest message past the number kept
/// (rid, kept).
const KEEP_FROM_SQL: &str =
    "SELECT id FROM message_ids WHERE room = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2";

/// Retention: deletes a room's messages up to an id (rid, id, at most).
const DELETE_BEYOND_SQL: &str = "DELETE FROM messages WHERE seq IN \
     (SELECT seq FROM message_ids WHERE room = ?1 AND id <= ?2 LIMIT ?3)";

/// Indexing: the last seq of the next step (after, at most).
const STEP_END_SQL: &str =
    "SELECT max(seq) FROM (SELECT seq FROM messages WHERE seq > ?1 ORDER BY seq LIMIT ?2)";

/// Indexing a step into `message_ids` (after, through).
const IDS_STEP_SQL: &str = "INSERT OR IGNORE INTO message_ids (room, id, seq) \
     SELECT room, id, seq FROM messages WHERE seq > ?1 AND seq <= ?2";

/// Indexing a step for search (after, through).
const FTS_STEP_SQL: &str = "INSERT INTO messages_fts (rowid, text) SELECT seq, text FROM messages WHERE seq > ?1 AND seq <= ?2";

/// Rows per multi-row INSERT (6 parameters each; SQLite allows 32,766).
const INSERT_ROWS: usize = 16;

/// `INSERT` of `rows` messages in one statement.
fn insert_sql(rows: usize) -> String {
    let values: Vec<String> = (0..rows)
        .map(|row| {
            let n = row * 6;
            format!(
                "(?{}, ?{}, ?{}, ?{}, ?{}, ?{})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6
            )
        })
        .collect();
    format!(
        "INSERT INTO messages (room, id, user, text, emote, ts) VALUES {}",
        values.join(", ")
    )
}

/// Binds one message's six values from parameter `offset + 1` on.
fn bind_message(
    statement: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    rid: i64,
    event: &ChatEvent,
) -> rusqlite::Result<()> {
    statement.raw_bind_parameter(offset + 1, rid)?;
    statement.raw_bind_parameter(offset + 2, to_i64(event.id))?;
    statement.raw_bind_parameter(offset + 3, event.user.as_str())?;
    statement.raw_bind_parameter(offset + 4, event.message.as_str())?;
    statement.raw_bind_parameter(offset + 5, event.emote)?;
    statement.raw_bind_parameter(offset + 6, to_i64(event.ts))
}

/// The row id of `room` (known in `rids`, or read or created in `tx` and
/// then listed in `new_rids` with its `last_id`, to be forgotten if `tx`
/// rolls back).
fn rid_of(
    rids: &mut HashMap<RoomName, i64>,
    tx: &Connection,
    room: &RoomName,
    new_rids: &mut Vec<(RoomName, i64, u64)>,
) -> rusqlite::Result<i64> {
    if let Some(&rid) = rids.get(room) {
        return Ok(rid);
    }
    let (rid, _, last_id) = room_row(tx, room)?;
    new_rids.push((room.clone(), rid, to_u64(last_id)));
    rids.insert(room.clone(), rid);
    Ok(rid)
}

/// One indexing step: runs `insert` (parameters: after, through) over the
/// next at most `step` messages past the seq in `meta`'s `key`, and moves
/// `key` past them, in one transaction. Returns the messages indexed.
fn index_more(conn: &Connection, key: &str, step: i64, insert: &str) -> rusqlite::Result<usize> {
    let tx = conn.unchecked_transaction()?;
    let through = super::read::through(&tx, key)?;
    let last: Option<i64> = tx.query_row(STEP_END_SQL, params![through, step], |row| row.get(0))?;
    let Some(last) = last else {
        return Ok(0);
    };
    let indexed = tx.execute(insert, params![through, last])?;
    tx.execute(
        "UPDATE meta SET value = ?2 WHERE key = ?1",
        params![key, last.to_string()],
    )?;
    tx.commit()?;
    Ok(indexed)
}

/// One step of filling `message_ids` (see the module's doc). In seq order:
/// a room's new ids come after its indexed ones, so each room's rows are
/// appended to its part of the index.
fn index_ids(conn: &Connection) -> rusqlite::Result<usize> {
    index_more(conn, "ids_through", IDS_STEP, IDS_STEP_SQL)
}

/// Adds every stored message to `message_ids` (at start: what the last
/// server stored since its last step). Returns how many.
pub(super) fn index_all_ids(conn: &Connection) -> rusqlite::Result<usize> {
    let mut total = 0;
    loop {
        match index_ids(conn)? {
            0 => return Ok(total),
            done => total += done,
        }
    }
}

/// The row of `room`: (rid, epoch, last_id), created (new epoch, no ids
/// yet) if missing.
fn room_row(conn: &Connection, room: &RoomName) -> rusqlite::Result<(i64, String, i64)> {
    let select = "SELECT rid, epoch, last_id FROM rooms WHERE name = ?1";
    let read = |conn: &Connection| {
        conn.query_row(select, [room.as_str()], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()
    };
    if let Some(row) = read(conn)? {
        return Ok(row);
    }
    conn.execute(
        "INSERT INTO rooms (name, epoch, last_id) VALUES (?1, ?2, 0)",
        params![room.as_str(), new_epoch()],
    )?;
    read(conn)?.ok_or(rusqlite::Error::QueryReturnedNoRows)
}

/// A short reason for an operator: what SQLite's error means here.
fn describe(err: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the disk (or the database's size cap) is full".to_owned(),
        Some(ErrorCode::ReadOnly) => "the database is read-only".to_owned(),
        Some(ErrorCode::SystemIoFailure) => format!("an I/O error: {err}"),
        Some(ErrorCode::CannotOpen) => "the database file cannot be opened".to_owned(),
        _ => err.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chat_protocol::{ChatEvent, RoomName};
    use rusqlite::Connection;

    use chat_protocol::{HistoryQuery, SearchWords};

    use super::{INSERT_ROWS, Writer, index_all_ids, index_more};
    use crate::store::{Shared, StoreConfig, read, schema};

    fn event(room: &RoomName, id: u64, text: &str) -> Arc<ChatEvent> {
        Arc::new(ChatEvent {
            message: text.to_owned(),
            user: format!("user{}", id % 3),
            room: room.clone(),
            id,
            ts: 1_700_000_000_000 + id,
            emote: id % 5 == 0,
        })
    }

    /// One batch: whole multi-row chunks and the rows left over, two rooms
    /// interleaved, and ids already stored (kept, not replaced) inside a
    /// chunk and among the rows left over.
    #[test]
    fn a_batch_is_stored_in_chunks_and_the_rest_one_by_one() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let config = StoreConfig::new(&path);
        let (conn, _) = schema::open_writer(&path, None).expect("open");
        let (_commands, inbox) = std::sync::mpsc::sync_channel(1);
        let shared = Arc::new(Shared::new());
        let mut writer = Writer::new(conn, inbox, shared, &config);
        let (a, b) = (RoomName::new("a").unwrap(), RoomName::new("b").unwrap());
        let mut expected = Vec::new();
        for id in 1..=30 {
            writer.batch.push(event(&a, id, &format!("a{id}")));
            expected.push(("a".to_owned(), id, format!("a{id}")));
            if id % 3 == 0 {
                let id = id / 3;
                writer.batch.push(event(&b, id, &format!("b{id}")));
                expected.push(("b".to_owned(), id, format!("b{id}")));
            }
            if id == 12 {
                // The first row of the second chunk.
                assert_eq!(writer.batch.len(), INSERT_ROWS);
                writer.batch.push(event(&a, 5, "again"));
            }
        }
        writer.batch.push(event(&b, 10, "again"));
        assert_eq!(writer.batch.len() % INSERT_ROWS, 10, "rows are left over");
        writer.flush().expect("committed");
        drop(writer);

        let conn = Connection::open(&path).expect("reopen");
        let mut statement = conn
            .prepare(
                "SELECT r.name, m.id, m.text, m.user, m.emote, m.ts FROM messages m \
                 JOIN rooms r ON r.rid = m.room ORDER BY m.seq",
            )
            .expect("prepare");
        let rows: Vec<(String, i64, String, String, bool, i64)> = statement
            .query_map([], |row| {
                Ok((
                    row.get(0)?,
                    row.get(1)?,
                    row.get(2)?,
                    row.get(3)?,
                    row.get(4)?,
                    row.get(5)?,
                ))
            })
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(rows.len(), 40, "every message once, the repeated ids not");
        for (row, (room, id, text)) in rows.iter().zip(&expected) {
            assert_eq!((&row.0, row.1, &row.2), (room, super::to_i64(*id), text));
            assert_eq!(row.3, format!("user{}", id % 3));
            assert_eq!(row.4, id % 5 == 0);
            assert_eq!(row.5, super::to_i64(1_700_000_000_000 + id));
        }
        let last: Vec<(String, i64)> = conn
            .prepare("SELECT name, last_id FROM rooms ORDER BY name")
            .expect("prepare")
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .expect("query")
            .collect::<rusqlite::Result<_>>()
            .expect("rows");
        assert_eq!(last, [("a".to_owned(), 30), ("b".to_owned(), 10)]);
    }

    /// Every id of `room` walking back from the newest with `before`, then
    /// forward from 0 with `after`, `limit` at a time: each page oldest
    /// first, no id twice, none missing.
    fn walk(
        conn: &Connection,
        room: &RoomName,
        limit: u32,
        search: Option<&str>,
    ) -> (Vec<u64>, Vec<u64>) {
        let query = |q: HistoryQuery| match search {
            Some(words) => q.search(SearchWords::parse(words).unwrap()),
            None => q,
        };
        let mut back = Vec::new();
        let mut page = read::page(conn, room, &query(HistoryQuery::new().limit(limit))).unwrap();
        loop {
            let ids: Vec<u64> = page.messages.iter().map(|e| e.id).collect();
            assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first: {ids:?}");
            back.splice(0..0, ids);
            if !page.more {
                break;
            }
            let q = HistoryQuery::new().before(back[0]).limit(limit);
            page = read::page(conn, room, &query(q)).unwrap();
        }
        let mut forward: Vec<u64> = Vec::new();
        loop {
            let after = forward.last().copied().unwrap_or(0);
            let q = HistoryQuery::new().after(after).limit(limit);
            let page = read::page(conn, room, &query(q)).unwrap();
            forward.extend(page.messages.iter().map(|e| e.id));
            if !page.more {
                break;
            }
        }
        (back, forward)
    }

    /// Reads combine `message_ids` (seq up to `ids_through`) and a scan of
    /// the rows stored since: paging back and forth, searching and loading
    /// the newest see every message exactly once with nothing indexed, with
    /// the mark in the middle of both rooms' messages, and all indexed.
    #[test]
    fn reads_see_every_message_once_across_the_indexed_mark() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("chat.db");
        let config = StoreConfig::new(&path);
        let (conn, _) = schema::open_writer(&path, None).expect("open");
        let (_commands, inbox) = std::sync::mpsc::sync_channel(1);
        let mut writer = Writer::new(conn, inbox, Arc::new(Shared::new()), &config);
        let (a, b) = (RoomName::new("a").unwrap(), RoomName::new("b").unwrap());
        // Room a: 1..=300, room b: 1..=100 interleaved, in batches of 37.
        let mut events = Vec::new();
        for id in 1..=300 {
            let word = if id % 10 == 0 { "tenth" } else { "plain" };
            events.push(event(&a, id, &format!("{word} a{id}")));
            if id % 3 == 0 {
                events.push(event(&b, id / 3, &format!("{word} b{}", id / 3)));
            }
        }
        for batch in events.chunks(37) {
            writer.batch.extend(batch.iter().cloned());
            writer.flush().expect("committed");
        }
        let all_a: Vec<u64> = (1..=300).collect();
        let tenths: Vec<u64> = (1..=30).map(|n| n * 10).collect();
        let check = |conn: &Connection, state: &str| {
            for limit in [1, 7, 50, 500] {
                assert_eq!(
                    walk(conn, &a, limit, None),
                    (all_a.clone(), all_a.clone()),
                    "{state}, limit {limit}"
                );
                let b_ids: Vec<u64> = (1..=100).collect();
                assert_eq!(
                    walk(conn, &b, limit, None),
                    (b_ids.clone(), b_ids),
                    "{state}, limit {limit}"
                );
                assert_eq!(
                    walk(conn, &a, limit, Some("tenth")),
                    (tenths.clone(), tenths.clone()),
                    "{state}, search, limit {limit}"
                );
            }
            let newest: Vec<u64> = read::newest(conn, 1, &a, 25)
                .unwrap()
                .iter()
                .map(|e| e.id)
                .collect();
            assert_eq!(newest, (276..=300).rev().collect::<Vec<_>>(), "{state}");
        };
        let through = |conn: &Connection, key: &str| read::through(conn, key).unwrap();
        assert_eq!(through(&writer.conn, "ids_through"), 0);
        check(&writer.conn, "nothing indexed");
        // The mark in the middle: a's ids 1..=150ish and b's 1..=50ish indexed.
        let ids_sql = super::IDS_STEP_SQL;
        assert_eq!(
            index_more(&writer.conn, "ids_through", 200, ids_sql).unwrap(),
            200
        );
        let fts_sql = super::FTS_STEP_SQL;
        assert_eq!(
            index_more(&writer.conn, "fts_through", 123, fts_sql).unwrap(),
            123
        );
        check(&writer.conn, "ids indexed through 200, search through 123");
        assert_eq!(index_all_ids(&writer.conn).unwrap(), 200);
        check(&writer.conn, "ids all indexed, search through 123");
        assert_eq!(
            index_more(&writer.conn, "fts_through", 1000, fts_sql).unwrap(),
            277
        );
        check(&writer.conn, "all indexed");
        // Retention deletes index rows with the messages.
        writer.retain_messages = Some(10);
        writer.retention_step();
        writer.retention_step();
        assert_eq!(
            walk(&writer.conn, &a, 7, None).0,
            (291..=300).collect::<Vec<_>>()
        );
        let left: i64 = writer
            .conn
            .query_row("SELECT count(*) FROM message_ids", [], |row| row.get(0))
            .unwrap();
        assert_eq!(left, 20, "a's and b's 10 newest");
    }

    /// No read, retention or indexing statement scans a whole table: each
    /// goes through a key (the search index itself is a virtual table).
    #[test]
    fn no_statement_scans_a_table() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (conn, _) = schema::open_writer(&dir.path().join("chat.db"), None).expect("open");
        let mut statements = vec![
            read::TAIL_SQL.to_owned(),
            super::OLDEST_TS_SQL.to_owned(),
            super::DELETE_EXPIRED_SQL.to_owned(),
            super::KEEP_FROM_SQL.to_owned(),
            super::DELETE_BEYOND_SQL.to_owned(),
            super::STEP_END_SQL.to_owned(),
            super::IDS_STEP_SQL.to_owned(),
            super::FTS_STEP_SQL.to_owned(),
            "DELETE FROM message_ids WHERE room = ?1 AND id = ?2 AND seq = ?3".to_owned(),
        ];
        for search in [false, true] {
            for order in ["ASC", "DESC"] {
                statements.push(read::indexed_sql(search, order));
            }
        }
        for sql in statements {
            let mut plan = conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .expect("plan");
            let nulls = vec![rusqlite::types::Null; plan.parameter_count()];
            let details: Vec<String> = plan
                .query_map(rusqlite::params_from_iter(nulls), |row| row.get(3))
                .expect("query")
                .collect::<rusqlite::Result<_>>()
                .expect("rows");
            for detail in &details {
                assert!(
                    !detail.starts_with("SCAN") || detail.contains("VIRTUAL TABLE"),
                    "{sql}: {details:?}"
                );
            }
        }
    }
}
